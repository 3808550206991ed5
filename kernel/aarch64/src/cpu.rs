//! Which core the kernel is running on: each core keeps its index (0 for the boot
//! core, then 1, 2, ... in device-tree order) in TPIDR_EL2, set once when it enters
//! the kernel and never changed.

use core::arch::asm;

/// Bytes of stack per core: a 224 KiB boot stack (the boot core moves the whole
/// kernel state through it once; the boot core's lies just above the system
/// package, whose images restarts reload, so an overflow there corrupts them),
/// then a 32 KiB trap stack.
pub const STACKS_PER_CORE: u64 = 0x40000;

/// Bytes of stack for all cores. The stacks are not part of the image file: they
/// occupy the last `STACKS_BYTES` of the memory the Image header's `image_size`
/// claims, after the appended system package (see `boot.rs`).
pub const STACKS_BYTES: u64 = STACKS_PER_CORE * septum_core::system::MAX_CPUS as u64;

/// This core's index.
pub fn index() -> usize {
    let index: u64;
    // SAFETY: reading TPIDR_EL2, which holds only this core's index, has no effects.
    unsafe { asm!("mrs {}, tpidr_el2", out(reg) index, options(nomem, nostack, preserves_flags)) };
    index as usize
}
