//! Which core the kernel is running on, and where each core's stacks are: each
//! core keeps its index (0 for the boot core, then 1, 2, ... in device-tree order)
//! in TPIDR_EL2, set once when it enters the kernel and never changed.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use septum_core::event::KernelStack;
use septum_core::system::MAX_CPUS;

/// Bytes of stack per core: a 96 KiB boot stack (the kernel's state is built in
/// the boot arena, not here), then a 32 KiB trap stack. The first page of each is
/// its guard page ([`guard_pages`]), never mapped, so an overflow faults at once
/// instead of running into what lies below (for the boot core's boot stack, the
/// system package, whose images restarts reload).
pub const STACKS_PER_CORE: u64 = 0x20000;

/// Bytes of each core's boot stack, guard page included, the first part of its
/// [`STACKS_PER_CORE`]; its trap stack is the rest.
pub const BOOT_STACK_BYTES: u64 = STACKS_PER_CORE - 0x8000;

/// Bytes of a guard page.
pub const GUARD_BYTES: u64 = 4096;

/// Where the stacks start (the first byte of core 0's), once boot has found it.
static STACKS_START: AtomicU64 = AtomicU64::new(0);

/// Records where the stacks start (once, at boot, on the boot core).
pub fn set_stacks_start(start: u64) {
    STACKS_START.store(start, Ordering::Relaxed);
}

/// The guard pages of every core's stacks, which start at `stacks_start`: per
/// core, the first page of its boot stack and of its trap stack.
pub fn guard_pages(stacks_start: u64) -> [u64; 2 * MAX_CPUS] {
    core::array::from_fn(|index| {
        let core_stacks = stacks_start + (index / 2) as u64 * STACKS_PER_CORE;
        core_stacks + (index % 2) as u64 * BOOT_STACK_BYTES
    })
}

/// The core and stack whose guard page holds `address`, if one does.
pub fn guarded_stack(address: u64) -> Option<(usize, KernelStack)> {
    let stacks_start = STACKS_START.load(Ordering::Relaxed);
    if stacks_start == 0 {
        return None;
    }
    guard_pages(stacks_start)
        .iter()
        .position(|&page| (page..page + GUARD_BYTES).contains(&address))
        .map(|index| {
            let stack = if index % 2 == 0 {
                KernelStack::Boot
            } else {
                KernelStack::Trap
            };
            (index / 2, stack)
        })
}

/// Bytes of stack for all cores. The stacks are not part of the image file: they
/// occupy the last `STACKS_BYTES` of the memory the Image header's `image_size`
/// claims, after the appended system package (see `boot.rs`).
pub const STACKS_BYTES: u64 = STACKS_PER_CORE * MAX_CPUS as u64;

/// This core's index.
pub fn index() -> usize {
    let index: u64;
    // SAFETY: reading TPIDR_EL2, which holds only this core's index, has no effects.
    unsafe { asm!("mrs {}, tpidr_el2", out(reg) index, options(nomem, nostack, preserves_flags)) };
    index as usize
}
