//! Stage-2 translation: one table hierarchy per partition that maps its
//! guest-physical addresses to the machine memory it was granted.
//!
//! Format: 4 KiB granule, 39-bit guest-physical space, walks start at level 1
//! (VTCR_EL2.SL0 = 1). Regions are mapped with the largest block that fits
//! (1 GiB, 2 MiB) and 4 KiB pages elsewhere.
//!
//! Invariants:
//! - a partition's tables map exactly the regions the kernel granted it; every
//!   other guest-physical address faults to EL2;
//! - table pages come from the kernel's frame pool and are used by one hierarchy only;
//! - tables are built before the partition first runs; later changes (ballooning,
//!   page flips) must invalidate the TLB for the partition's VMID.

use aarch64_cpu::asm::barrier;
use septum_core::memory::{FreeRanges, MemoryError, Range};

use crate::mmu;

const PAGE: u64 = 4096;
const ENTRIES: usize = 512;

// Descriptor bits (stage 2).
const TABLE: u64 = 0b11;
const BLOCK: u64 = 0b01;
const PAGE_DESCRIPTOR: u64 = 0b11;
const S2AP_READ_WRITE: u64 = 0b11 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Guest-physical address bits covered by the tables.
pub const IPA_BITS: u64 = 39;

/// One partition's stage-2 tables.
#[derive(Debug)]
pub struct Stage2 {
    root: u64,
}

/// Takes a zeroed page for a table from the kernel's frame pool.
fn new_table<const N: usize>(frames: &mut FreeRanges<N>) -> Result<u64, MemoryError> {
    let page = frames.allocate(PAGE, PAGE)?;
    // SAFETY: the page was free RAM, now owned by this table alone, and RAM is
    // identity-mapped as normal memory in the kernel's address space.
    unsafe { core::ptr::write_bytes(page.start as *mut u8, 0, PAGE as usize) };
    Ok(page.start)
}

/// The table at physical address `address`.
///
/// # Safety
/// `address` must be a table page allocated by [`new_table`] for a hierarchy the
/// caller holds exclusively.
unsafe fn table<'a>(address: u64) -> &'a mut [u64; ENTRIES] {
    // SAFETY: forwarded from the caller; the page is identity-mapped and aligned.
    unsafe { &mut *(address as *mut [u64; ENTRIES]) }
}

impl Stage2 {
    /// Empty tables: every guest-physical address faults.
    pub fn new<const N: usize>(frames: &mut FreeRanges<N>) -> Result<Stage2, MemoryError> {
        Ok(Stage2 {
            root: new_table(frames)?,
        })
    }

    /// The root table's physical address, for VTTBR_EL2.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps guest-physical `guest` to machine RAM starting at `host`, as normal
    /// write-back memory, readable, writable and executable.
    pub fn map_ram<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
        host: u64,
    ) -> Result<(), MemoryError> {
        let aligned = guest.start.is_multiple_of(PAGE)
            && guest.end.is_multiple_of(PAGE)
            && host.is_multiple_of(PAGE);
        if !aligned || guest.is_empty() || guest.end > 1 << IPA_BITS {
            return Err(MemoryError::BadRequest);
        }
        let attributes = AF | SH_INNER | S2AP_READ_WRITE | MEMATTR_NORMAL_WB;
        let mut ipa = guest.start;
        let mut pa = host;
        while ipa < guest.end {
            let left = guest.end - ipa;
            // Level 1 maps 1 GiB, level 2 maps 2 MiB, level 3 maps 4 KiB.
            let level = [1u32, 2]
                .into_iter()
                .find(|&level| {
                    let size = level_size(level);
                    ipa.is_multiple_of(size) && pa.is_multiple_of(size) && left >= size
                })
                .unwrap_or(3);
            self.set_leaf(frames, ipa, pa | attributes, level)?;
            ipa += level_size(level);
            pa += level_size(level);
        }
        barrier::dsb(barrier::ISHST);
        Ok(())
    }

    fn set_leaf<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        ipa: u64,
        descriptor: u64,
        leaf_level: u32,
    ) -> Result<(), MemoryError> {
        let mut current = self.root;
        for level in 1..leaf_level {
            let index = table_index(ipa, level);
            // SAFETY: `current` is the root or a table this hierarchy allocated.
            let entry = unsafe { &mut table(current)[index] };
            if *entry & 0b11 == BLOCK {
                // Already covered by a larger block: regions must not overlap.
                return Err(MemoryError::BadRequest);
            }
            if *entry & 0b11 != TABLE {
                *entry = new_table(frames)? | TABLE;
            }
            current = *entry & ADDRESS_MASK;
        }
        let kind = if leaf_level == 3 {
            PAGE_DESCRIPTOR
        } else {
            BLOCK
        };
        // SAFETY: as above.
        let entry = unsafe { &mut table(current)[table_index(ipa, leaf_level)] };
        if *entry != 0 {
            return Err(MemoryError::BadRequest);
        }
        *entry = descriptor | kind;
        Ok(())
    }
}

fn level_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

fn table_index(ipa: u64, level: u32) -> usize {
    ((ipa >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

/// The VTCR_EL2 value for these tables: 4 KiB granule, 39-bit guest-physical space
/// starting at level 1, inner-shareable write-back table walks.
pub fn vtcr() -> u64 {
    const RES1: u64 = 1 << 31;
    let t0sz = 64 - IPA_BITS;
    let sl0_level1 = 0b01 << 6;
    let irgn0_wb = 0b01 << 8;
    let orgn0_wb = 0b01 << 10;
    let sh0_inner = 0b11 << 12;
    let tg0_4k = 0b00 << 14;
    let ps = mmu::physical_address_size_field() << 16;
    RES1 | t0sz | sl0_level1 | irgn0_wb | orgn0_wb | sh0_inner | tg0_4k | ps
}
