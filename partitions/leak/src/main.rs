//! Checks that processor state does not pass between partitions. The writer
//! (argument 0) plants distinctive values in registers that survive its own calls
//! and yields, many times, checking each time that it gets its values back; the
//! reader (argument 1), on the same core, checks each time it runs that it never
//! sees them.
//!
//! Argument 2 makes it a masker: it raises its interrupt priority mask as high as
//! it goes and then yields [`MASKING_TURNS`] times, so that a device interrupt of
//! another partition on its core arrives while (or just after) it ran: it must
//! still reach its owner.
//!
//! | | aarch64 | x86_64 |
//! |---|---|---|
//! | planted | FP/SIMD d8 and TPIDR_EL0 | the x87 control word, CR2, DR0-DR3, DR6, CR8 (the task priority) and IA32_KERNEL_GS_BASE (through CR4.FSGSBASE, WRGSBASE and SWAPGS) |
//! | masked | ICC_PMR_EL1 = 0 | CR8 = 15 |
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

/// Rounds of planting (writer) or looking (reader).
const ROUNDS: u32 = 50;
/// Turns a masker yields with its priority mask raised.
const MASKING_TURNS: u32 = 5_000;

fn main(boot: Boot) -> u64 {
    if boot.argument == 2 {
        state::mask_all_interrupts();
        for _ in 0..MASKING_TURNS {
            let _ = septum_sdk::yield_now(slot::SELF);
        }
        println!("masker: held every interrupt masked for {MASKING_TURNS} turns");
        return 0;
    }
    let writer = boot.argument == 0;
    let mut bad = 0;
    for _ in 0..ROUNDS {
        if writer {
            bad += u32::from(!state::plant_yield_and_check());
        } else {
            bad += u32::from(state::sees_planted());
            let _ = septum_sdk::yield_now(slot::SELF);
        }
    }
    let role = if writer {
        "writer got its own state back"
    } else {
        "reader never saw the writer's state"
    };
    println!("{role}: {}", if bad == 0 { "ok" } else { "LEAKED" });
    u64::from(bad != 0)
}

#[cfg(target_arch = "aarch64")]
mod state {
    use core::arch::asm;

    const MAGIC: u64 = 0x5eb7_1eaf_0000_beef;

    /// Plants the values, yields (`hvc #0`, call 3, self slot), and reports
    /// whether both came back.
    pub fn plant_yield_and_check() -> bool {
        let (simd, thread): (u64, u64);
        // SAFETY: the yield hypercall reads x0-x1 and writes x0-x3, which are
        // declared; d8 and TPIDR_EL0 belong to this partition alone.
        unsafe {
            asm!(
                "fmov d8, {magic}",
                "msr tpidr_el0, {magic}",
                "mov x0, #3",
                "mov x1, #{self_slot}",
                "hvc #0",
                "fmov {simd}, d8",
                "mrs {thread}, tpidr_el0",
                magic = in(reg) MAGIC,
                self_slot = const super::slot::SELF,
                simd = out(reg) simd,
                thread = out(reg) thread,
                out("x0") _, out("x1") _, out("x2") _, out("x3") _, out("d8") _,
            );
        }
        simd == MAGIC && thread == MAGIC
    }

    /// Masks every interrupt priority at this partition's (virtual) CPU interface.
    pub fn mask_all_interrupts() {
        // SAFETY: the priority mask of this partition's own virtual CPU interface.
        unsafe { asm!("msr icc_pmr_el1, xzr", "isb") };
    }

    /// Whether this partition's own d8 or TPIDR_EL0 holds the writer's value.
    pub fn sees_planted() -> bool {
        let (simd, thread): (u64, u64);
        // SAFETY: reading this partition's own registers has no effects.
        unsafe {
            asm!("fmov {simd}, d8", "mrs {thread}, tpidr_el0", simd = out(reg) simd, thread = out(reg) thread);
        }
        simd == MAGIC || thread == MAGIC
    }
}

#[cfg(target_arch = "x86_64")]
mod state {
    use core::arch::asm;

    /// Registers a partition can write without a VM exit and that are not in the
    /// VMCS guest area, so the kernel must switch them itself.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Registers {
        control_word: u16,
        cr2: u64,
        debug: [u64; 4],
        dr6: u64,
        cr8: u64,
        kernel_gs_base: u64,
    }

    /// Values no partition starts with (canonical addresses, which WRGSBASE needs).
    const PLANTED: Registers = Registers {
        control_word: 0x0f7f,
        cr2: 0x5eb7_1eaf_0000_0c02,
        debug: [
            0x5eb7_1eaf_0000_0d00,
            0x5eb7_1eaf_0000_0d01,
            0x5eb7_1eaf_0000_0d02,
            0x5eb7_1eaf_0000_0d03,
        ],
        // B0 and B2 (the other bits read as the CPU fixes them).
        dr6: 0b0101,
        cr8: 13,
        kernel_gs_base: 0x0000_5eb7_0000_06b5,
    };
    const DR6_HITS: u64 = 0b1111;
    const CR4_FSGSBASE: u64 = 1 << 16;

    /// Raises this partition's task priority to the highest class (CR8 = 15).
    pub fn mask_all_interrupts() {
        // SAFETY: CR8 is this partition's own task priority (the kernel's TPR
        // shadow); it masks only this partition's interrupts.
        unsafe { asm!("mov cr8, {}", in(reg) 15u64, options(nostack)) };
    }

    /// Lets this partition use RDGSBASE/WRGSBASE (its own CR4, no exit).
    fn enable_fsgsbase() {
        // SAFETY: setting CR4.FSGSBASE only enables instructions; the kernel masks
        // only CR4.VMXE.
        unsafe {
            asm!(
                "mov {cr4}, cr4",
                "or {cr4}, {bit}",
                "mov cr4, {cr4}",
                cr4 = out(reg) _,
                bit = in(reg) CR4_FSGSBASE,
                options(nostack),
            )
        }
    }

    fn read() -> Registers {
        let mut control_word: u16 = 0;
        let (cr2, cr8, dr0, dr1, dr2, dr3, dr6, kernel_gs_base): (
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
        );
        // SAFETY: reads of this partition's own registers at CPL 0; the two
        // SWAPGS put GS back as it was.
        unsafe {
            asm!(
                "fnstcw [{cw}]",
                "mov {cr2}, cr2",
                "mov {cr8}, cr8",
                "mov {dr0}, dr0",
                "mov {dr1}, dr1",
                "mov {dr2}, dr2",
                "mov {dr3}, dr3",
                "mov {dr6}, dr6",
                "swapgs",
                "rdgsbase {kgs}",
                "swapgs",
                cw = in(reg) &mut control_word,
                cr2 = out(reg) cr2,
                cr8 = out(reg) cr8,
                dr0 = out(reg) dr0,
                dr1 = out(reg) dr1,
                dr2 = out(reg) dr2,
                dr3 = out(reg) dr3,
                dr6 = out(reg) dr6,
                kgs = out(reg) kernel_gs_base,
                options(nostack),
            )
        };
        Registers {
            control_word,
            cr2,
            debug: [dr0, dr1, dr2, dr3],
            dr6,
            cr8,
            kernel_gs_base,
        }
    }

    fn plant() {
        let p = PLANTED;
        // SAFETY: writes of this partition's own registers: breakpoints stay
        // disabled (DR7 is untouched), and CR8 only masks its own interrupts; the
        // SWAPGS pair leaves GS as it was and the planted value in
        // IA32_KERNEL_GS_BASE.
        unsafe {
            asm!(
                "fldcw [{cw}]",
                "mov cr2, {cr2}",
                "mov cr8, {cr8}",
                "mov dr0, {dr0}",
                "mov dr1, {dr1}",
                "mov dr2, {dr2}",
                "mov dr3, {dr3}",
                "mov dr6, {dr6}",
                "swapgs",
                "wrgsbase {kgs}",
                "swapgs",
                cw = in(reg) &p.control_word,
                cr2 = in(reg) p.cr2,
                cr8 = in(reg) p.cr8,
                dr0 = in(reg) p.debug[0],
                dr1 = in(reg) p.debug[1],
                dr2 = in(reg) p.debug[2],
                dr3 = in(reg) p.debug[3],
                dr6 = in(reg) 0xffff_0ff0 | p.dr6,
                kgs = in(reg) p.kernel_gs_base,
                options(nostack),
            )
        }
    }

    /// The register names, in the order of [`planted_in`]'s bits.
    const NAMES: [&str; 9] = [
        "fcw",
        "cr2",
        "dr0",
        "dr1",
        "dr2",
        "dr3",
        "dr6",
        "cr8",
        "kernel_gs_base",
    ];
    const ALL: u16 = (1 << NAMES.len()) - 1;

    /// Bit `n` set: register [`NAMES`]`[n]` of `seen` holds its planted value.
    fn planted_in(seen: &Registers) -> u16 {
        let p = PLANTED;
        [
            seen.control_word == p.control_word,
            seen.cr2 == p.cr2,
            seen.debug[0] == p.debug[0],
            seen.debug[1] == p.debug[1],
            seen.debug[2] == p.debug[2],
            seen.debug[3] == p.debug[3],
            seen.dr6 & DR6_HITS == p.dr6,
            seen.cr8 == p.cr8,
            seen.kernel_gs_base == p.kernel_gs_base,
        ]
        .iter()
        .enumerate()
        .fold(0, |bits, (n, &hit)| bits | (u16::from(hit) << n))
    }

    /// Prints `what` and the names of the registers in `bits`.
    fn report(what: &str, bits: u16) {
        use core::fmt::Write;
        let mut console = septum_sdk::Console;
        let _ = write!(console, "{what}:");
        for (n, name) in NAMES.iter().enumerate() {
            if bits & (1 << n) != 0 {
                let _ = write!(console, " {name}");
            }
        }
        let _ = writeln!(console);
    }

    /// Plants the values, yields, and reports whether all came back.
    pub fn plant_yield_and_check() -> bool {
        enable_fsgsbase();
        plant();
        let _ = septum_sdk::yield_now(super::slot::SELF);
        let kept = planted_in(&read());
        if kept != ALL {
            report("writer lost", ALL & !kept);
        }
        kept == ALL
    }

    /// Whether any of this partition's registers holds a planted value.
    pub fn sees_planted() -> bool {
        enable_fsgsbase();
        let seen = planted_in(&read());
        if seen != 0 {
            report("reader sees the writer's", seen);
        }
        seen != 0
    }
}
