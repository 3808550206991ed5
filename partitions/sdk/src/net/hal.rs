//! What `virtio-drivers` asks of the platform ([`virtio_drivers::Hal`]), for a
//! native partition: DMA memory is whole pages of the SDK's heap, and a
//! device address is the address itself (the partition's RAM is identity
//! mapped, and the kernel's device reads guest-physical addresses).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use septum_abi::layout::PAGE_SIZE;
use virtio_drivers::{BufferDirection, PhysAddr};

/// The platform of a native partition.
pub struct Hal;

fn pages_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE as usize)?, PAGE_SIZE as usize).ok()
}

// SAFETY: `dma_alloc` hands out zeroed, page-aligned heap memory that nothing
// else holds until `dma_dealloc` gives it back; every address handed to the
// device is the memory's own (identity mapping), valid while it is shared.
unsafe impl virtio_drivers::Hal for Hal {
    fn dma_alloc(pages: usize, _: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let memory = pages_layout(pages)
            .filter(|layout| layout.size() > 0)
            // SAFETY: the layout has a non-zero size.
            .and_then(|layout| NonNull::new(unsafe { alloc_zeroed(layout) }));
        match memory {
            Some(memory) => (memory.as_ptr() as PhysAddr, memory),
            // Address 0 tells the driver the allocation failed.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        match pages_layout(pages) {
            Some(layout) => {
                // SAFETY: the caller gives back memory `dma_alloc` handed out
                // for this many pages, so with this layout.
                unsafe { dealloc(vaddr.as_ptr(), layout) };
                0
            }
            None => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _: usize) -> NonNull<u8> {
        // Identity mapped: the address is the pointer (only the PCI transport
        // asks, and a partition has none).
        NonNull::new(paddr as *mut u8).expect("a device register is never at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_: PhysAddr, _: NonNull<[u8]>, _: BufferDirection) {}
}
