//! Translation tables with a 4 KiB granule and 512 entries per table, as both
//! back ends use for second-stage translation (aarch64 stage 2, x86 EPT). A
//! [`Format`] says how descriptors are encoded; [`Tables::map`] does the walk once
//! for every format.
//!
//! Levels are numbered as in the ARM ARM: a level-3 entry maps 4 KiB, level 2
//! 2 MiB, level 1 1 GiB, level 0 512 GiB.
//!
//! Invariants:
//! - regions are mapped with the largest block the format allows that fits the
//!   alignment of both addresses, and 4 KiB pages elsewhere;
//! - a mapping never overwrites a valid entry: overlapping requests fail and leave
//!   what was already mapped in place;
//! - table pages come from the caller's frame pool, zeroed, and belong to one
//!   hierarchy only.

use septum_core::memory::{FreeRanges, MemoryError, Range};

/// Bytes in a page and a table.
pub const PAGE: u64 = 4096;
const ENTRIES: usize = 512;

/// How one kind of translation table encodes its descriptors.
pub trait Format {
    /// The level of the root table.
    const ROOT_LEVEL: u32;
    /// The largest level whose entries may map a block directly.
    const LARGEST_BLOCK_LEVEL: u32;
    /// Bits of an entry that hold the next table's or the block's address.
    const ADDRESS_MASK: u64;
    /// A descriptor pointing at the next-level table at `address`.
    fn table(address: u64) -> u64;
    /// A descriptor mapping `address` at `level` with the back end's `attributes`.
    fn leaf(address: u64, level: u32, attributes: u64) -> u64;
    /// Whether `entry`, found at `level` (above 3), points at a next-level table.
    fn is_table(entry: u64, level: u32) -> bool;
    /// Whether `entry` maps or points at anything.
    fn is_valid(entry: u64) -> bool;
}

/// One hierarchy of tables in format `F`.
#[derive(Debug)]
pub struct Tables<F> {
    root: u64,
    format: core::marker::PhantomData<F>,
}

/// Bytes an entry at `level` maps.
pub fn level_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

/// Takes a zeroed page for a table from the frame pool.
fn new_table<const N: usize>(frames: &mut FreeRanges<N>) -> Result<u64, MemoryError> {
    let page = frames.allocate(PAGE, PAGE)?;
    // SAFETY: the page was free RAM, now owned by this hierarchy alone, and both back
    // ends map RAM at its physical address.
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

impl<F: Format> Tables<F> {
    /// Empty tables: every address faults.
    pub fn new<const N: usize>(frames: &mut FreeRanges<N>) -> Result<Self, MemoryError> {
        Ok(Tables {
            root: new_table(frames)?,
            format: core::marker::PhantomData,
        })
    }

    /// The root table's physical address.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `guest` to machine memory starting at `host` with `attributes`.
    pub fn map<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
        host: u64,
        attributes: u64,
    ) -> Result<(), MemoryError> {
        let covered = level_size(F::ROOT_LEVEL) * ENTRIES as u64;
        let aligned = guest.start.is_multiple_of(PAGE)
            && guest.end.is_multiple_of(PAGE)
            && host.is_multiple_of(PAGE);
        if !aligned || guest.is_empty() || guest.end > covered {
            return Err(MemoryError::BadRequest);
        }
        let (mut from, mut to) = (guest.start, host);
        while from < guest.end {
            let left = guest.end - from;
            let level = (F::LARGEST_BLOCK_LEVEL.max(F::ROOT_LEVEL)..3)
                .find(|&level| {
                    let size = level_size(level);
                    from.is_multiple_of(size) && to.is_multiple_of(size) && left >= size
                })
                .unwrap_or(3);
            self.set_leaf(frames, from, F::leaf(to, level, attributes), level)?;
            from += level_size(level);
            to += level_size(level);
        }
        Ok(())
    }

    fn set_leaf<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        address: u64,
        descriptor: u64,
        leaf_level: u32,
    ) -> Result<(), MemoryError> {
        let mut current = self.root;
        for level in F::ROOT_LEVEL..leaf_level {
            // SAFETY: `current` is the root or a table this hierarchy allocated.
            let entry = unsafe { &mut table(current)[index(address, level)] };
            if F::is_valid(*entry) && !F::is_table(*entry, level) {
                // Already covered by a larger block: regions must not overlap.
                return Err(MemoryError::BadRequest);
            }
            if !F::is_valid(*entry) {
                *entry = F::table(new_table(frames)?);
            }
            current = *entry & F::ADDRESS_MASK;
        }
        // SAFETY: as above.
        let entry = unsafe { &mut table(current)[index(address, leaf_level)] };
        if F::is_valid(*entry) {
            return Err(MemoryError::BadRequest);
        }
        *entry = descriptor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! On the host, "physical" addresses are addresses in a heap buffer, so the walk
    //! runs unchanged over real memory.
    use super::*;

    /// A toy format: bit 0 valid, bit 1 table, bit 2 block; attributes above.
    enum Toy {}

    impl Format for Toy {
        const ROOT_LEVEL: u32 = 1;
        const LARGEST_BLOCK_LEVEL: u32 = 2;
        const ADDRESS_MASK: u64 = !0xfff;
        fn table(address: u64) -> u64 {
            address | 0b011
        }
        fn leaf(address: u64, level: u32, attributes: u64) -> u64 {
            address | attributes | 0b001 | if level < 3 { 0b100 } else { 0 }
        }
        fn is_table(entry: u64, _level: u32) -> bool {
            entry & 0b010 != 0
        }
        fn is_valid(entry: u64) -> bool {
            entry & 0b001 != 0
        }
    }

    /// A 64-page pool of zeroed, page-aligned memory.
    fn pool() -> (Vec<[u8; PAGE as usize]>, FreeRanges<8>) {
        let pages = vec![[0u8; PAGE as usize]; 65];
        let start = (pages.as_ptr() as u64).next_multiple_of(PAGE);
        let mut frames = FreeRanges::new();
        frames
            .add(Range::from_start_size(start, 64 * PAGE).unwrap())
            .unwrap();
        (pages, frames)
    }

    fn lookup(tables: &Tables<Toy>, address: u64) -> Option<(u64, u32)> {
        let mut current = tables.root();
        for level in Toy::ROOT_LEVEL..=3 {
            // SAFETY: `current` is a table of `tables`, allocated from the pool.
            let entry = unsafe { table(current)[index(address, level)] };
            if !Toy::is_valid(entry) {
                return None;
            }
            if level == 3 || !Toy::is_table(entry, level) {
                let offset = address % level_size(level);
                return Some(((entry & Toy::ADDRESS_MASK) + offset, level));
            }
            current = entry & Toy::ADDRESS_MASK;
        }
        None
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn blocks_where_aligned_pages_elsewhere() {
        let (_memory, mut frames) = pool();
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        let two_mib = level_size(2);
        let region = Range::from_start_size(0x4000_0000, 2 * two_mib + 3 * PAGE).unwrap();
        tables.map(&mut frames, region, 0x8000_0000, 0x100).unwrap();
        assert_eq!(lookup(&tables, 0x4000_1234), Some((0x8000_1234, 2)));
        assert_eq!(lookup(&tables, 0x4020_0008), Some((0x8020_0008, 2)));
        assert_eq!(lookup(&tables, 0x4040_2000), Some((0x8040_2000, 3)));
        assert_eq!(lookup(&tables, 0x4040_3000), None);
        assert_eq!(lookup(&tables, 0x3fff_f000), None);
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn overlaps_and_misalignment_are_refused_without_change() {
        let (_memory, mut frames) = pool();
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        let page = Range::from_start_size(0x4000_0000, PAGE).unwrap();
        tables.map(&mut frames, page, 0x9000_0000, 0).unwrap();
        assert_eq!(
            tables.map(&mut frames, page, 0xa000_0000, 0),
            Err(MemoryError::BadRequest)
        );
        assert_eq!(lookup(&tables, 0x4000_0000), Some((0x9000_0000, 3)));
        let odd = Range {
            start: 0x4000_0800,
            end: 0x4000_1800,
        };
        assert_eq!(
            tables.map(&mut frames, odd, 0, 0),
            Err(MemoryError::BadRequest)
        );
        let too_high = Range::from_start_size(1 << 40, PAGE).unwrap();
        assert_eq!(
            tables.map(&mut frames, too_high, 0, 0),
            Err(MemoryError::BadRequest)
        );
    }
}
