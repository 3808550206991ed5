//! Which core the kernel is running on: each core keeps its index (0 for the boot
//! core, then 1, 2, ... in device-tree order) in TPIDR_EL2, set once when it enters
//! the kernel and never changed.

use core::arch::asm;

/// Bytes of stack per core: a 96 KiB boot stack (the kernel's state is built in
/// the boot arena, not here; the boot core's lies just above the system package,
/// whose images restarts reload, so an overflow there corrupts them), then a
/// 32 KiB trap stack.
pub const STACKS_PER_CORE: u64 = 0x20000;

/// Bytes of each core's boot stack, the first part of its [`STACKS_PER_CORE`];
/// its trap stack is the rest.
pub const BOOT_STACK_BYTES: u64 = STACKS_PER_CORE - 0x8000;

/// What the boot core's boot stack holds before it is used (`boot.rs` paints it):
/// the words still holding it after boot were never written.
pub const BOOT_STACK_PAINT: u64 = 0x5354_4b21_5354_4b21;

/// Bytes of the boot core's boot stack that boot must leave unwritten. Boot
/// stops with a panic when it comes closer than this to the bottom, below which
/// lies the system package: an overflow there corrupts the images restarts
/// reload, and it happened once, silently.
pub const BOOT_STACK_MARGIN: u64 = 16 * 1024;

/// Checks that boot left at least [`BOOT_STACK_MARGIN`] of the boot core's boot
/// stack, which starts at `stacks_start`, unwritten; returns the bytes it used.
pub fn check_boot_stack(stacks_start: u64) -> u64 {
    let bottom = stacks_start as *const u64;
    let words = (BOOT_STACK_BYTES / 8) as usize;
    let untouched = (0..words)
        // SAFETY: the boot stack lies in the memory the Image header claims,
        // mapped normal; the words read are below the stack pointer, so nothing
        // writes them meanwhile.
        .take_while(|&i| unsafe { bottom.add(i).read_volatile() } == BOOT_STACK_PAINT)
        .count() as u64
        * 8;
    assert!(
        untouched >= BOOT_STACK_MARGIN,
        "boot used {} of the boot stack's {} bytes, closer than {} to the system package below: raise STACKS_PER_CORE",
        BOOT_STACK_BYTES - untouched,
        BOOT_STACK_BYTES,
        BOOT_STACK_MARGIN
    );
    BOOT_STACK_BYTES - untouched
}

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
