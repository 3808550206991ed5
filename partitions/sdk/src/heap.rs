//! The partition's heap: the global allocator every program linking the SDK
//! has, empty until the program gives it memory ([`give`]). Only what needs
//! `alloc` uses it (the network stack, [`crate::net`], and its driver); a
//! program that never gives it memory never allocates, and an allocation then
//! fails (the `alloc` error handler panics, which ends the partition as any
//! panic does).
//!
//! The memory is the program's own (a static in its RAM), given once: the
//! heap never grows or moves, so what it hands out stays where a device was
//! told it is.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static GIVEN: AtomicBool = AtomicBool::new(false);

/// Gives the heap `memory` (the first call only); false if it has some.
pub fn give(memory: &'static mut [MaybeUninit<u8>]) -> bool {
    if GIVEN.swap(true, Ordering::AcqRel) {
        return false;
    }
    HEAP.lock().init_from_slice(memory);
    true
}
