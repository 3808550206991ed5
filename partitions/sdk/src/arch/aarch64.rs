//! The aarch64 pieces of the SDK: the entry stub, the `hvc` instruction and the
//! counter. Everything else in the SDK is architecture-neutral.

use core::arch::{asm, global_asm};

// Entry state set by the kernel (see the README, "Partition entry state"): EL1h with
// interrupts masked, stage-1 MMU off, x0 = RAM size in bytes, x1 = boot argument,
// all RAM outside the image zeroed. The stack goes at the top of RAM.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x9, #{ram_base}",
    "    add x9, x9, x0",
    "    mov sp, x9",
    "    bl {main}",
    "1:  wfi",
    "    b 1b",
    ram_base = const septum_abi::layout::RAM_BASE,
    main = sym crate::start,
);

/// Makes hypercall `number` with six arguments; returns the status and three results.
#[inline(always)]
pub fn hypercall(number: u64, args: [u64; 6]) -> (u64, [u64; 3]) {
    let (status, r1, r2, r3);
    // SAFETY: `hvc #0` traps to the Septum kernel, which reads x0-x6 and writes
    // x0-x3 only, as the ABI says; it touches no memory of ours except buffers the
    // arguments name, which the callers in this crate pass as valid slices.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") number => status,
            inlateout("x1") args[0] => r1,
            inlateout("x2") args[1] => r2,
            inlateout("x3") args[2] => r3,
            in("x4") args[3],
            in("x5") args[4],
            in("x6") args[5],
            options(nostack),
        );
    }
    (status, [r1, r2, r3])
}

/// The virtual counter (CNTVCT_EL0): ticks since an arbitrary start.
#[inline(always)]
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; the ISB orders it after
    // the instructions before it.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

/// Counter ticks per second (CNTFRQ_EL0).
pub fn counter_frequency() -> Option<u64> {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    Some(hz)
}

/// Waits for an event; the kernel takes it as giving up the turn.
pub fn wait() {
    // SAFETY: WFI traps to the kernel, which treats it as a yield.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}
