//! Runs in a Linux partition (entered by Linux's boot protocol, its vCPU seeing the
//! emulated GICv3 of `septum_abi::virt`) and probes the kernel's emulation of the
//! distributor: it reads the distributor's type and identification registers and
//! prints what it read, then times reads and writes of a distributor register,
//! each a trap the kernel completes itself, beside a plain load of its own RAM.
//! It times a byte written to its emulated UART the same way. Last it reads
//! ACTLR_EL1, which the kernel traps and does not emulate: the
//! service VM has it take an undefined-instruction exception, which it catches
//! in its own vector table and reports. On qemu-virt only: the emulated GIC is
//! an aarch64 partition's.
#![no_std]
#![no_main]

use septum_sdk::{Boot, arch, println};

septum_sdk::entry!(main);

/// Accesses timed per figure.
const ROUNDS: u64 = 2_000;

fn main(boot: Boot) -> u64 {
    println!(
        "vgic probe: {} KiB of RAM below the device tree",
        boot.ram_size / 1024
    );
    probe::run();
    0
}

#[cfg(target_arch = "aarch64")]
mod probe {
    use super::*;
    use core::arch::{asm, global_asm};
    use core::sync::atomic::{AtomicU64, Ordering};
    use partition_bench::report;
    use septum_sdk::abi::virt::{GICD_BASE, UART_BASE};

    /// ESR_EL1 as the probe's synchronous-exception handler found it (0: none
    /// taken).
    #[unsafe(no_mangle)]
    static VGIC_PROBE_ESR: AtomicU64 = AtomicU64::new(0);

    // The probe's EL1 vector table: a synchronous exception from EL1 (with
    // SP_EL1, at + 0x200) records ESR_EL1 and returns past the instruction
    // (x9 and x10 are the caller's declared scratch); every other vector spins.
    global_asm!(
        ".section .text.vgic_probe_vectors, \"ax\"",
        ".balign 2048",
        ".global vgic_probe_vectors",
        "vgic_probe_vectors:",
        ".rept 4",
        "    b .",
        "    .balign 0x80",
        ".endr",
        "    mrs x9, esr_el1",
        "    adrp x10, VGIC_PROBE_ESR",
        "    add x10, x10, :lo12:VGIC_PROBE_ESR",
        "    str x9, [x10]",
        "    mrs x9, elr_el1",
        "    add x9, x9, #4",
        "    msr elr_el1, x9",
        "    eret",
        "    .balign 0x80",
        ".rept 11",
        "    b .",
        "    .balign 0x80",
        ".endr",
    );

    unsafe extern "C" {
        static vgic_probe_vectors: u8;
    }

    /// Reads ACTLR_EL1 with the probe's vectors installed and reports the
    /// exception it took.
    fn undefined_instruction() {
        let vectors = &raw const vgic_probe_vectors as u64;
        // SAFETY: the vector table above is 2 KiB aligned and handles the
        // exception this read causes, returning past it; x9 and x10, which its
        // handler uses, are declared clobbered.
        unsafe {
            asm!(
                "msr vbar_el1, {vectors}",
                "isb",
                "mrs {value}, actlr_el1",
                vectors = in(reg) vectors,
                value = out(reg) _,
                out("x9") _,
                out("x10") _,
            );
        }
        let esr = VGIC_PROBE_ESR.load(Ordering::Relaxed);
        println!("vgic probe: reading ACTLR_EL1 took an exception: ESR_EL1={esr:#x}");
    }

    /// GICD_TYPER: the distributor's shape.
    const TYPER: u64 = GICD_BASE + 0x0004;
    /// GICD_PIDR2: the architecture revision.
    const PIDR2: u64 = GICD_BASE + 0xffe8;
    /// GICD_IPRIORITYR8: the priorities of SPIs 32-35.
    const IPRIORITYR8: u64 = GICD_BASE + 0x0420;

    fn read(address: u64) -> u32 {
        // SAFETY: an emulated distributor register of this partition; the kernel
        // completes the load.
        unsafe { core::ptr::read_volatile(address as *const u32) }
    }

    fn write(address: u64, value: u32) {
        // SAFETY: as for `read`; priorities of this partition's own SPIs.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }

    pub fn run() {
        let typer = read(TYPER);
        let pidr2 = read(PIDR2);
        println!("vgic probe: GICD_TYPER={typer:#x} GICD_PIDR2={pidr2:#x}");
        write(IPRIORITYR8, 0xa0a0_a0a0);
        println!(
            "vgic probe: GICD_IPRIORITYR8 reads back {:#x}",
            read(IPRIORITYR8)
        );
        let timed = |access: &dyn Fn()| {
            let start = arch::counter();
            for _ in 0..ROUNDS {
                access();
            }
            arch::counter() - start
        };
        let own = 0u32;
        let ram = timed(&|| {
            // SAFETY: a local of this function.
            let _ = unsafe { core::ptr::read_volatile(&own) };
        });
        report("vgic-plain-load", "loads", ROUNDS, ram, "load");
        let reads = timed(&|| {
            let _ = read(TYPER);
        });
        report("vgic-distributor-read", "reads", ROUNDS, reads, "read");
        let writes = timed(&|| write(IPRIORITYR8, 0x8080_8080));
        report("vgic-distributor-write", "writes", ROUNDS, writes, "write");
        // A carriage return: the whole path of a transmitted byte, which the
        // kernel's line buffer then drops, so the figure prints nothing.
        let sent = timed(&|| write(UART_BASE, u32::from(b'\r')));
        report("vgic-uart-write", "writes", ROUNDS, sent, "write");
        undefined_instruction();
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod probe {
    use super::*;

    pub fn run() {
        println!("vgic probe: there is no emulated GIC on this architecture");
        let _ = (ROUNDS, arch::counter());
    }
}
