//! Checks that processor state does not pass between partitions. The writer
//! (argument 0) plants distinctive values in registers that survive its own calls
//! and yields, many times, checking each time that it gets its values back; the
//! reader (argument 1), on the same core, checks each time it runs that it never
//! sees them.
//!
//! | | aarch64 | x86_64 |
//! |---|---|---|
//! | planted | FP/SIMD d8 and TPIDR_EL0 | the x87 control word |
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

/// Rounds of planting (writer) or looking (reader).
const ROUNDS: u32 = 50;

fn main(boot: Boot) -> u64 {
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

    /// A control word no partition starts with (the reset value is 0x037f).
    const PLANTED: u16 = 0x0f7f;

    /// Plants the control word, yields (`vmcall`, call 3, self slot), and reports
    /// whether it came back.
    pub fn plant_yield_and_check() -> bool {
        let planted = PLANTED;
        let mut back: u16 = 0;
        // SAFETY: the yield hypercall reads rax and rdi and writes rax, rdi, rsi,
        // rdx, which are declared; the x87 control word belongs to this partition.
        unsafe {
            asm!(
                "fldcw [{planted}]",
                "vmcall",
                "fnstcw [{back}]",
                planted = in(reg) &planted,
                back = in(reg) &mut back,
                inout("rax") 3u64 => _,
                inout("rdi") super::slot::SELF => _,
                out("rsi") _, out("rdx") _,
            );
        }
        back == PLANTED
    }

    /// Whether this partition's own control word is the writer's.
    pub fn sees_planted() -> bool {
        let mut word: u16 = 0;
        // SAFETY: storing this partition's own control word to a local.
        unsafe { asm!("fnstcw [{}]", in(reg) &mut word) };
        word == PLANTED
    }
}
