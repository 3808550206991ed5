//! The kernel's stacks and their guard pages.
//!
//! `link.ld` reserves, in the `.boot` section: the boot core's boot stack, one
//! trap stack per core (the VMCS host RSP of the partitions pinned to it), and one
//! start-up stack per other core. The lowest page of each is its guard page: the
//! boot code maps the first 4 GiB with 2 MiB pages, and [`unmap_guard_pages`]
//! splits the 2 MiB pages that hold the stacks into 4 KiB pages, leaving the
//! guard pages out. A push into one faults at once; the page fault and double
//! fault vectors run on a per-core fault stack (the TSS's first interrupt stack,
//! `cpu.rs`), so the report does not need the stack that overflowed.
//!
//! Invariants: a guard page is never mapped once [`unmap_guard_pages`] has run
//! (on the boot core, before any other core starts); every other page keeps the
//! translation the boot map gave it (identity, writable).

use core::cell::UnsafeCell;

use septum_core::event::KernelStack;
use septum_core::system::MAX_CPUS;
use x86_64::registers::control::Cr3;

use crate::boot::STACK_BYTES;

/// Bytes of a guard page.
pub const GUARD_BYTES: u64 = 4096;
const LARGE_PAGE: u64 = 2 << 20;

unsafe extern "C" {
    static __boot_pd: u8;
    static __boot_stack_bottom: u8;
    static __trap_stacks: u8;
    static __secondary_stacks: u8;
}

/// Every guard page, with the core and stack it protects.
fn guard_pages() -> impl Iterator<Item = (u64, usize, KernelStack)> {
    let boot = &raw const __boot_stack_bottom as u64;
    let trap = &raw const __trap_stacks as u64;
    let secondary = &raw const __secondary_stacks as u64;
    let traps =
        (0..MAX_CPUS).map(move |cpu| (trap + cpu as u64 * STACK_BYTES, cpu, KernelStack::Trap));
    let start_ups = (1..MAX_CPUS).map(move |cpu| {
        (
            secondary + (cpu as u64 - 1) * STACK_BYTES,
            cpu,
            KernelStack::Boot,
        )
    });
    [(boot, 0, KernelStack::Boot)]
        .into_iter()
        .chain(traps)
        .chain(start_ups)
}

/// The core and stack whose guard page holds `address`, if one does.
pub fn guarded_stack(address: u64) -> Option<(usize, KernelStack)> {
    guard_pages()
        .find(|&(page, _, _)| (page..page + GUARD_BYTES).contains(&address))
        .map(|(_, cpu, stack)| (cpu, stack))
}

/// A page table: 512 entries of 4 KiB pages.
#[repr(C, align(4096))]
struct PageTable(UnsafeCell<[u64; 512]>);

// SAFETY: written only by `unmap_guard_pages`, once, on the boot core before any
// other core starts; afterwards only the MMU reads the tables.
unsafe impl Sync for PageTable {}

/// The page tables that replace the 2 MiB pages holding the stacks (the
/// `.boot` stacks take about 1 MiB, so they touch at most two).
static SPLIT: [PageTable; 2] = [
    PageTable(UnsafeCell::new([0; 512])),
    PageTable(UnsafeCell::new([0; 512])),
];

const PRESENT_WRITABLE: u64 = 0b11;
const LARGE: u64 = 1 << 7;

/// Splits the boot map's 2 MiB pages that hold the stacks into 4 KiB pages,
/// every one mapped as before except the guard pages, and flushes the TLB.
/// Panics if the stacks touch more than two 2 MiB pages.
///
/// # Safety
/// Once, on the boot core, with interrupts disabled, before any other core
/// starts and while the boot page tables are the ones in CR3; no guard page holds
/// anything in use.
pub unsafe fn unmap_guard_pages() {
    let directory = &raw const __boot_pd as *mut u64;
    let mut split: [Option<u64>; 2] = [None; 2];
    for (page, _, _) in guard_pages() {
        let large = page / LARGE_PAGE;
        let slot = match split.iter().position(|&l| l == Some(large)) {
            Some(slot) => slot,
            None => {
                let slot = split
                    .iter()
                    .position(Option::is_none)
                    .expect("the stacks touch at most two 2 MiB pages");
                split[slot] = Some(large);
                // SAFETY: per this function's contract nothing else uses the
                // table; the directory entry for this 2 MiB page exists (the boot
                // map covers the first 4 GiB and the kernel lies below) and is
                // replaced by one with the same translations but for the guards.
                unsafe {
                    let table = &mut *SPLIT[slot].0.get();
                    for (index, entry) in table.iter_mut().enumerate() {
                        *entry =
                            (large * LARGE_PAGE + index as u64 * GUARD_BYTES) | PRESENT_WRITABLE;
                    }
                    let entry = directory.add(large as usize);
                    assert!(entry.read() & LARGE != 0, "a 2 MiB page of the boot map");
                    entry.write(SPLIT[slot].0.get() as u64 | PRESENT_WRITABLE);
                }
                slot
            }
        };
        // SAFETY: as above; the entry is the guard page's.
        unsafe { (*SPLIT[slot].0.get())[((page % LARGE_PAGE) / GUARD_BYTES) as usize] = 0 };
    }
    let (frame, flags) = Cr3::read();
    // SAFETY: reloading CR3 with its own value flushes the non-global
    // translations (the boot map has no global pages), so the split takes effect.
    unsafe { Cr3::write(frame, flags) };
}
