//! The x86_64 pieces of the SDK: the entry stub, the `vmcall` instruction and the
//! counter. Everything else in the SDK is architecture-neutral.

use core::arch::{asm, global_asm};

// Entry state set by the kernel (see the README, "Partition entry state"): 64-bit
// mode, interrupts off, rdi = RAM size in bytes, rsi = boot argument, all RAM
// outside the image zeroed. The stack goes at the top of RAM.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    mov rsp, {ram_base}",
    "    add rsp, rdi",
    "    call {main}",
    "2:  hlt",
    "    jmp 2b",
    ram_base = const septum_abi::layout::RAM_BASE,
    main = sym crate::start,
);

/// Makes hypercall `number` with six arguments; returns the status and three results.
#[inline(always)]
pub fn hypercall(number: u64, args: [u64; 6]) -> (u64, [u64; 3]) {
    let (status, r1, r2, r3);
    // SAFETY: `vmcall` exits to the Septum kernel, which reads rax, rdi, rsi, rdx,
    // r10, r8 and r9 and writes rax, rdi, rsi and rdx only, as the ABI says; it
    // touches no memory of ours except buffers the arguments name, which the callers
    // in this crate pass as valid slices.
    unsafe {
        asm!(
            "vmcall",
            inlateout("rax") number => status,
            inlateout("rdi") args[0] => r1,
            inlateout("rsi") args[1] => r2,
            inlateout("rdx") args[2] => r3,
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            options(nostack),
        );
    }
    (status, [r1, r2, r3])
}

/// The time-stamp counter: ticks since an arbitrary start.
#[inline(always)]
pub fn counter() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `lfence; rdtsc` reads the time-stamp counter; no memory is touched.
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Counter ticks per second: not reported by every x86 CPU (or by Bochs), so the
/// counter is given in ticks.
pub fn counter_frequency() -> Option<u64> {
    None
}

/// Waits for an event; the kernel takes it as giving up the turn.
pub fn wait() {
    // SAFETY: HLT exits to the kernel, which treats it as a yield.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}
