//! The boot arena: the memory the kernel's state is built in.
//!
//! The kernel's state (the core's `System`, the back end's vCPUs and address
//! spaces) is sized from the system package, so it cannot live in a static sized
//! at compile time, and building it on a boot stack makes the stack grow with the
//! number of partitions. Instead each back end declares a [`BootArena`] as its
//! global allocator, gives it memory reserved at boot from the package's needs
//! ([`reserve_bytes`]), builds the state there, and closes the arena before the
//! first partition runs.
//!
//! Invariants:
//! - the arena hands out memory only between [`BootArena::give`] and
//!   [`BootArena::close`]; an allocation at any other time stops the kernel with
//!   a panic that says so (no kernel path allocates while partitions run);
//! - blocks never overlap and never leave the memory given; a block that is
//!   freed or shrunk gives its memory back only if it is the last one handed
//!   out, which is what vectors filled at boot do.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use septum_core::event::Event;
use septum_core::memory::Range;
use septum_core::package::Package;

use crate::paging::PAGE;

/// Bytes of arena every system gets, whatever its size.
const BASE_BYTES: u64 = 64 * 1024;
/// Bytes of arena per partition (its record, vCPU slots, capability table,
/// ledger layout, balloon record and schedule windows, with room to spare).
const PARTITION_BYTES: u64 = 8 * 1024;
/// Bytes of arena per queue message slot and per page in flight.
const QUEUE_ENTRY_BYTES: u64 = 256;
/// Bytes of arena per page of a devirtualizable partition's RAM: its
/// relocation's back map and pool track each page and two frames (its home and
/// a lent one), some twenty bytes each.
const RELOCATION_BYTES_PER_PAGE: u64 = 64;

/// Bytes of arena the kernel reserves for `package`, whose vCPUs each take
/// `vcpu_bytes` and address spaces `space_bytes` in the back end: an upper bound,
/// with room to spare (`@@ kernel state` reports what was used).
pub fn reserve_bytes(package: &Package<'_>, vcpu_bytes: usize, space_bytes: usize) -> u64 {
    let partitions = package.len() as u64;
    let vcpus = package.vcpu_count() as u64;
    let queue_entries: u64 = package
        .queues()
        .map(|queue| u64::from(queue.depth) + u64::from(queue.max_in_flight) * 3)
        .sum();
    let relocatable_pages: u64 = package
        .partitions()
        .filter(|spec| spec.resources.devirtualize)
        .map(|spec| spec.ram_size / PAGE)
        .sum();
    let bytes = BASE_BYTES
        + partitions * (PARTITION_BYTES + space_bytes as u64)
        + vcpus * 2 * vcpu_bytes as u64
        + queue_entries * QUEUE_ENTRY_BYTES
        + relocatable_pages * RELOCATION_BYTES_PER_PAGE;
    bytes.next_multiple_of(PAGE)
}

/// A bump allocator over memory given at boot (see the module documentation).
pub struct BootArena {
    /// The first free byte.
    next: AtomicU64,
    /// The end of the memory given.
    end: AtomicU64,
    /// The start of the memory given.
    start: AtomicU64,
    open: AtomicBool,
}

impl Default for BootArena {
    fn default() -> Self {
        Self::new()
    }
}

impl BootArena {
    /// An arena with no memory yet.
    pub const fn new() -> Self {
        BootArena {
            next: AtomicU64::new(0),
            end: AtomicU64::new(0),
            start: AtomicU64::new(0),
            open: AtomicBool::new(false),
        }
    }

    /// Gives the arena `memory` (once, at boot, on the boot core): kernel memory,
    /// mapped at its physical address, that nothing else uses for as long as the
    /// kernel runs.
    pub fn give(&self, memory: Range) {
        assert!(
            self.end.load(Ordering::Relaxed) == 0,
            "the boot arena was given memory twice"
        );
        self.start.store(memory.start, Ordering::Relaxed);
        self.next.store(memory.start, Ordering::Relaxed);
        self.end.store(memory.end, Ordering::Relaxed);
        self.open.store(true, Ordering::Release);
    }

    /// Closes the arena: from now on an allocation stops the kernel. Returns the
    /// bytes used.
    pub fn close(&self) -> u64 {
        self.open.store(false, Ordering::Release);
        self.next.load(Ordering::Relaxed) - self.start.load(Ordering::Relaxed)
    }

    /// Closes the arena (see [`BootArena::close`]) and says on `console` how much
    /// of it the kernel's state took.
    pub fn close_and_report(&self, console: &mut impl fmt::Write) {
        let used = self.close();
        let reserved = self.end.load(Ordering::Relaxed) - self.start.load(Ordering::Relaxed);
        let _ = writeln!(console, "{}", Event::KernelState { used, reserved });
    }

    fn check_open(&self, layout: Layout) {
        assert!(
            self.open.load(Ordering::Acquire),
            "kernel allocation of {} bytes outside boot (the kernel's state is built \
             at boot and never grows)",
            layout.size()
        );
    }
}

// SAFETY: `alloc` returns blocks aligned to the layout and inside the memory
// given, which nothing else uses; blocks never overlap because `next` only moves
// past a block once it is handed out, and moves back only over the last block
// when it is freed or shrunk. Boot runs on one core, and the compare-exchange on
// `next` keeps that true even if it did not.
unsafe impl GlobalAlloc for BootArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check_open(layout);
        let align = layout.align() as u64;
        let size = layout.size() as u64;
        let end = self.end.load(Ordering::Relaxed);
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = next.next_multiple_of(align);
            let block_end = start.checked_add(size).filter(|&e| e <= end);
            let Some(block_end) = block_end else {
                panic!(
                    "the boot arena is exhausted: {size} bytes wanted, {} left",
                    end - next
                );
            };
            match self
                .next
                .compare_exchange(next, block_end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return start as *mut u8,
                Err(now) => next = now,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block_end = ptr as u64 + layout.size() as u64;
        // Only the last block's memory comes back; other blocks stay used.
        let _ =
            self.next
                .compare_exchange(block_end, ptr as u64, Ordering::Relaxed, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check_open(layout);
        let old_end = ptr as u64 + layout.size() as u64;
        let new_end = ptr as u64 + new_size as u64;
        // The last block grows or shrinks where it is.
        if new_end <= self.end.load(Ordering::Relaxed)
            && self
                .next
                .compare_exchange(old_end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller's layout with the new size is valid (GlobalAlloc's
        // contract); the new block is disjoint from the old one, which stays
        // valid until it is freed below, and the new block is larger.
        unsafe {
            let grown = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(grown);
            core::ptr::copy_nonoverlapping(ptr, new, layout.size());
            self.dealloc(ptr, layout);
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena_over(buffer: &mut [u8]) -> BootArena {
        let arena = BootArena::new();
        let start = buffer.as_mut_ptr() as u64;
        arena.give(Range {
            start,
            end: start + buffer.len() as u64,
        });
        arena
    }

    /// Verifies: SK-INIT-006
    #[test]
    fn blocks_are_aligned_disjoint_and_inside() {
        let mut buffer = vec![0u8; 8192];
        let range = buffer.as_ptr() as u64..buffer.as_ptr() as u64 + 8192;
        let arena = arena_over(&mut buffer);
        let mut blocks = Vec::new();
        for (size, align) in [(3, 1), (16, 8), (100, 64), (8, 4096), (1, 2)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero-size layout.
            let block = unsafe { arena.alloc(layout) } as u64;
            assert_eq!(block % align as u64, 0);
            assert!(range.contains(&block) && block + size as u64 <= range.end);
            blocks.push(block..block + size as u64);
        }
        for (i, a) in blocks.iter().enumerate() {
            for b in &blocks[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
            }
        }
    }

    /// Verifies: SK-INIT-006
    #[test]
    fn the_last_block_grows_in_place() {
        let mut buffer = vec![0u8; 3 * 4096];
        let arena = arena_over(&mut buffer);
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: valid layouts; the block is the arena's last when resized.
        let (block, grown) = unsafe {
            let block = arena.alloc(layout);
            (block, arena.realloc(block, layout, 4096))
        };
        assert_eq!(block, grown);
        assert_eq!(arena.close(), 4096);
    }

    /// Verifies: SK-INIT-006
    #[test]
    #[should_panic(expected = "outside boot")]
    fn a_closed_arena_refuses() {
        let mut buffer = vec![0u8; 4096];
        let arena = arena_over(&mut buffer);
        arena.close();
        // SAFETY: a valid layout (the call panics).
        unsafe { arena.alloc(Layout::from_size_align(8, 8).unwrap()) };
    }

    /// Verifies: SK-INIT-006
    #[test]
    #[should_panic(expected = "exhausted")]
    fn an_exhausted_arena_says_so() {
        let mut buffer = vec![0u8; 4096];
        let arena = arena_over(&mut buffer);
        // SAFETY: a valid layout (the call panics).
        unsafe { arena.alloc(Layout::from_size_align(8192, 8).unwrap()) };
    }
}
