//! Translation tables with a 4 KiB granule and 512 entries per table, as both
//! back ends use for second-stage translation (aarch64 stage 2, x86 EPT). A
//! [`Format`] says how descriptors are encoded; [`Tables::map`] does the walk once
//! for every format.
//!
//! Levels are numbered as in the ARM ARM: a level-3 entry maps 4 KiB, level 2
//! 2 MiB, level 1 1 GiB, level 0 512 GiB.
//!
//! Two phases. At boot, [`Tables::map`], [`Tables::map_pages`] and
//! [`Tables::reserve`] build the hierarchy, taking table pages from a frame pool.
//! At run time, [`Tables::set_page`] changes one level-3 entry of a table that
//! exists already, so mapping and unmapping single pages (page flips) never
//! allocates and never changes the shape of the hierarchy.
//!
//! Invariants:
//! - [`Tables::map`] maps a region with the largest block the format allows that
//!   fits the alignment of both addresses, and 4 KiB pages elsewhere;
//!   [`Tables::map_pages`] maps with 4 KiB pages only, and [`Tables::reserve`]
//!   allocates the level-3 tables of a range with every entry left invalid; so
//!   every page of a region mapped or reserved either way has its own level-3 entry;
//! - a mapping never overwrites a valid entry: overlapping requests fail and leave
//!   what was already mapped in place (a boot-time request that fails part way may
//!   have mapped its first pages and allocated tables; boot stops on such errors);
//! - [`Tables::set_page`] writes exactly one level-3 entry, in one single-copy
//!   atomic store, or nothing if the walk meets no level-3 table (a missing entry
//!   or a block) or it would map over a valid entry; it allocates nothing and frees
//!   nothing, so table pages live as long as the hierarchy;
//! - table pages come from the caller's frame pool, zeroed, and belong to one
//!   hierarchy only.
//!
//! Changing an entry the hardware may have cached is the back end's business: the
//! stores here carry no barrier, and the back end orders them and invalidates its
//! TLBs (see each back end's `Vcpu::flush_translations`). A page is mapped only
//! over an invalid entry, so an unmap comes between two mappings of one address;
//! the caller must also have the TLBs invalidated between the two (break before
//! make), or the old translation may still be used after the new one is written.

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
    /// The bits of a leaf's attributes that let the guest write (stage 2:
    /// S2AP\[1\]; EPT: W). A leaf without them is read-only.
    const WRITE: u64;
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

    /// Maps `guest` to machine memory starting at `host` with `attributes`, in
    /// blocks where alignment allows.
    pub fn map<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
        host: u64,
        attributes: u64,
    ) -> Result<(), MemoryError> {
        self.map_with(frames, guest, host, attributes, true)
    }

    /// Maps `guest` to machine memory starting at `host` with `attributes`, with
    /// 4 KiB pages only, so that [`Tables::set_page`] can later change any page.
    pub fn map_pages<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
        host: u64,
        attributes: u64,
    ) -> Result<(), MemoryError> {
        self.map_with(frames, guest, host, attributes, false)
    }

    /// Allocates the level-3 tables covering `guest` and leaves their entries
    /// invalid: every address there faults until [`Tables::set_page`] maps it.
    /// Tables that exist already are kept; an address already covered by a block
    /// is refused.
    pub fn reserve<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
    ) -> Result<(), MemoryError> {
        check(guest, 0, level_size(F::ROOT_LEVEL) * ENTRIES as u64)?;
        // One walk per level-3 table: each covers one level-2 entry's span.
        let span = level_size(2);
        let mut from = guest.start;
        while from < guest.end {
            self.walk_to(from, 3, || new_table(frames))?;
            from = (from / span + 1) * span;
        }
        Ok(())
    }

    /// Sets the level-3 entry for guest page `guest`: a page mapping machine frame
    /// `host` with `attributes` if `descriptor` is `Some((host, attributes))`, else
    /// invalid (whatever it held). Never allocates: the level-3 table must exist
    /// ([`Tables::map_pages`] or [`Tables::reserve`] made it). Refuses, changing
    /// nothing, an unaligned address, one outside the tables, one whose walk ends
    /// before level 3 (no table there, or a block), and a mapping over a valid
    /// entry (unmap it first).
    pub fn set_page(
        &mut self,
        guest: u64,
        descriptor: Option<(u64, u64)>,
    ) -> Result<(), MemoryError> {
        let covered = level_size(F::ROOT_LEVEL) * ENTRIES as u64;
        if !guest.is_multiple_of(PAGE) || guest >= covered {
            return Err(MemoryError::BadRequest);
        }
        let value = match descriptor {
            Some((host, attributes)) if host.is_multiple_of(PAGE) => F::leaf(host, 3, attributes),
            Some(_) => return Err(MemoryError::BadRequest),
            None => 0,
        };
        let last = self.walk_to(guest, 3, || Err(MemoryError::BadRequest))?;
        // SAFETY: `last` is a level-3 table of this hierarchy.
        let entry = unsafe { &mut table(last)[index(guest, 3)] };
        if descriptor.is_some() && F::is_valid(*entry) {
            return Err(MemoryError::BadRequest);
        }
        // SAFETY: `entry` is a valid, aligned reference. One 64-bit volatile store:
        // a hardware walk that races with it reads the old descriptor or the new
        // one, never a mix.
        unsafe { core::ptr::write_volatile(entry, value) };
        Ok(())
    }

    /// The level-3 entry for guest page `guest`, if one is valid; `None` where
    /// nothing maps the page, or a block or no table covers it.
    pub fn page(&self, guest: u64) -> Option<u64> {
        let covered = level_size(F::ROOT_LEVEL) * ENTRIES as u64;
        if guest >= covered {
            return None;
        }
        let mut current = self.root;
        for above in F::ROOT_LEVEL..3 {
            // SAFETY: `current` is the root or a table this hierarchy allocated;
            // it is only read here.
            let entry = unsafe { table(current)[index(guest, above)] };
            if !F::is_valid(entry) || !F::is_table(entry, above) {
                return None;
            }
            current = entry & F::ADDRESS_MASK;
        }
        // SAFETY: `current` is a level-3 table of this hierarchy.
        let entry = unsafe { table(current)[index(guest, 3)] };
        F::is_valid(entry).then_some(entry)
    }

    /// Rewrites the valid level-3 entry for guest page `guest` with the same
    /// frame and `attributes` (a change of permissions, which needs no
    /// break-before-make). Refuses, changing nothing, a page no level-3 entry maps.
    pub fn set_page_attributes(&mut self, guest: u64, attributes: u64) -> Result<(), MemoryError> {
        let host = self.page(guest).ok_or(MemoryError::BadRequest)? & F::ADDRESS_MASK;
        let last = self.walk_to(guest, 3, || Err(MemoryError::BadRequest))?;
        // SAFETY: `last` is a level-3 table of this hierarchy; one 64-bit volatile
        // store, which a hardware walk sees whole.
        unsafe {
            core::ptr::write_volatile(
                &mut table(last)[index(guest, 3)],
                F::leaf(host, 3, attributes),
            )
        };
        Ok(())
    }

    /// Calls `visit(guest, level, entry)` for every valid leaf of the hierarchy (a
    /// block above level 3 or a page at level 3), in address order: what the
    /// hardware would translate, read from the tables themselves.
    pub fn leaves(&self, visit: &mut impl FnMut(u64, u32, u64)) {
        Self::leaves_under(self.root, F::ROOT_LEVEL, 0, visit);
    }

    fn leaves_under(address: u64, level: u32, base: u64, visit: &mut impl FnMut(u64, u32, u64)) {
        // SAFETY: `address` is the root or a table this hierarchy allocated (a
        // table descriptor's address); it is only read here.
        let entries: &[u64; ENTRIES] = unsafe { table(address) };
        for (slot, &entry) in entries.iter().enumerate() {
            if !F::is_valid(entry) {
                continue;
            }
            let guest = base + slot as u64 * level_size(level);
            if level < 3 && F::is_table(entry, level) {
                Self::leaves_under(entry & F::ADDRESS_MASK, level + 1, guest, visit);
            } else {
                visit(guest, level, entry);
            }
        }
    }

    fn map_with<const N: usize>(
        &mut self,
        frames: &mut FreeRanges<N>,
        guest: Range,
        host: u64,
        attributes: u64,
        blocks: bool,
    ) -> Result<(), MemoryError> {
        check(guest, host, level_size(F::ROOT_LEVEL) * ENTRIES as u64)?;
        let (mut from, mut to) = (guest.start, host);
        while from < guest.end {
            let left = guest.end - from;
            let level = (F::LARGEST_BLOCK_LEVEL.max(F::ROOT_LEVEL)..3)
                .find(|&level| {
                    let size = level_size(level);
                    blocks && from.is_multiple_of(size) && to.is_multiple_of(size) && left >= size
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
        let last = self.walk_to(address, leaf_level, || new_table(frames))?;
        // SAFETY: `last` is a table of this hierarchy.
        let entry = unsafe { &mut table(last)[index(address, leaf_level)] };
        if F::is_valid(*entry) {
            return Err(MemoryError::BadRequest);
        }
        *entry = descriptor;
        Ok(())
    }

    /// Walks from the root to the table at `level` on the way to `address`, and
    /// returns its address. A missing table on the way is made by `make_table`
    /// (which may refuse); a block on the way is an error.
    fn walk_to(
        &mut self,
        address: u64,
        level: u32,
        mut make_table: impl FnMut() -> Result<u64, MemoryError>,
    ) -> Result<u64, MemoryError> {
        let mut current = self.root;
        for above in F::ROOT_LEVEL..level {
            // SAFETY: `current` is the root or a table this hierarchy allocated.
            let entry = unsafe { &mut table(current)[index(address, above)] };
            if !F::is_valid(*entry) {
                *entry = F::table(make_table()?);
            } else if !F::is_table(*entry, above) {
                // Covered by a larger block: regions must not overlap.
                return Err(MemoryError::BadRequest);
            }
            current = *entry & F::ADDRESS_MASK;
        }
        Ok(current)
    }
}

/// Checks that `guest` is a non-empty, page-aligned range below `covered` and
/// `host` is page-aligned.
fn check(guest: Range, host: u64, covered: u64) -> Result<(), MemoryError> {
    let aligned = guest.start.is_multiple_of(PAGE)
        && guest.end.is_multiple_of(PAGE)
        && host.is_multiple_of(PAGE);
    if !aligned || guest.is_empty() || guest.end > covered {
        return Err(MemoryError::BadRequest);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! On the host, "physical" addresses are addresses in a heap buffer, so the walk
    //! runs unchanged over real memory.
    use super::*;

    /// A toy format: bit 0 valid, bit 1 table, bit 2 block; attributes above.
    pub(crate) enum Toy {}

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
        const WRITE: u64 = 0b1000;
    }

    /// A 64-page pool of zeroed, page-aligned memory.
    pub(crate) fn pool() -> (Vec<[u8; PAGE as usize]>, FreeRanges<8>) {
        let pages = vec![[0u8; PAGE as usize]; 65];
        let start = (pages.as_ptr() as u64).next_multiple_of(PAGE);
        let mut frames = FreeRanges::new();
        frames
            .add(Range::from_start_size(start, 64 * PAGE).unwrap())
            .unwrap();
        (pages, frames)
    }

    /// Verifies: SK-TST-002
    #[test]
    fn the_table_check_finds_stray_wrong_and_missing_leaves() {
        use crate::table_check::{Grant, TableFault, check};
        let (_pages, mut frames) = pool();
        let ram = Grant {
            guest: Range::from_start_size(0x4000_0000, 0x40_0000).unwrap(),
            host: 0x8020_0000,
            attributes: 0x100,
        };
        let device = Grant {
            guest: Range::from_start_size(0x0900_0000, PAGE).unwrap(),
            host: 0x0900_0000,
            attributes: 0x200,
        };
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        for grant in [ram, device] {
            tables
                .map(&mut frames, grant.guest, grant.host, grant.attributes)
                .unwrap();
        }
        // Two 2 MiB blocks of RAM (the host is only 2 MiB aligned) and a page.
        assert_eq!(check(&tables, &[ram, device]), Ok(3));
        // A grant the tables lack, or attributes they do not have.
        assert_eq!(
            check(&tables, &[ram]),
            Err(TableFault::Stray {
                guest: 0x0900_0000,
                level: 3,
                entry: Toy::leaf(0x0900_0000, 3, 0x200)
            })
        );
        let other = Grant {
            attributes: 0x300,
            ..device
        };
        assert!(matches!(
            check(&tables, &[ram, other]),
            Err(TableFault::Wrong { .. })
        ));
        let more = Grant {
            guest: Range::from_start_size(0x0900_0000, 2 * PAGE).unwrap(),
            ..device
        };
        assert_eq!(
            check(&tables, &[ram, more]),
            Err(TableFault::Missing {
                guest: 0x0900_0000,
                mapped: PAGE,
                size: 2 * PAGE
            })
        );
        // A reserved range maps nothing; a stray alias of the RAM is found.
        let window = Range::from_start_size(0x8000_0000, 4 * PAGE).unwrap();
        tables.reserve(&mut frames, window).unwrap();
        assert_eq!(check(&tables, &[ram, device]), Ok(3));
        let alias = Range::from_start_size(0x1000, PAGE).unwrap();
        tables
            .map(&mut frames, alias, ram.host, ram.attributes)
            .unwrap();
        assert!(matches!(
            check(&tables, &[ram, device]),
            Err(TableFault::Stray {
                guest: 0x1000,
                level: 3,
                ..
            })
        ));
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

    /// Verifies: SK-ISO-001
    #[test]
    fn pages_only_even_where_blocks_would_fit() {
        let (_memory, mut frames) = pool();
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        let two_mib = level_size(2);
        let region = Range::from_start_size(0x4000_0000, two_mib + 2 * PAGE).unwrap();
        tables
            .map_pages(&mut frames, region, 0x8000_0000, 0x100)
            .unwrap();
        for page in [0, 1, 511, 512, 513] {
            let address = 0x4000_0000 + page * PAGE + 8;
            assert_eq!(
                lookup(&tables, address),
                Some((0x8000_0008 + page * PAGE, 3))
            );
        }
        assert_eq!(lookup(&tables, 0x4000_0000 + 514 * PAGE), None);
        // Pages only: every page of the region can be changed on its own.
        tables.set_page(0x4000_1000, None).unwrap();
        assert_eq!(lookup(&tables, 0x4000_1000), None);
        assert_eq!(lookup(&tables, 0x4000_2000), Some((0x8000_2000, 3)));
    }

    /// Verifies: SK-ISO-001, SK-MSG-001
    #[test]
    fn reserved_pages_fault_until_set_and_after_clear() {
        let (_memory, mut frames) = pool();
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        // Three pages across a 2 MiB boundary: two level-3 tables.
        let window = Range::from_start_size(0x8000_0000 - PAGE, 3 * PAGE).unwrap();
        tables.reserve(&mut frames, window).unwrap();
        for address in (window.start..window.end).step_by(PAGE as usize) {
            assert_eq!(lookup(&tables, address), None);
        }
        let free = frames.free_bytes();
        tables
            .set_page(0x8000_0000 - PAGE, Some((0x9000_0000, 0x100)))
            .unwrap();
        tables
            .set_page(0x8000_1000, Some((0x9abc_d000, 0x100)))
            .unwrap();
        assert_eq!(lookup(&tables, 0x7fff_f010), Some((0x9000_0010, 3)));
        assert_eq!(lookup(&tables, 0x8000_1ff8), Some((0x9abc_dff8, 3)));
        assert_eq!(lookup(&tables, 0x8000_0000), None);
        // Mapping over a mapped page is refused; clearing unmaps (twice is fine);
        // then the page can be mapped again. None of it allocates.
        assert_eq!(
            tables.set_page(0x8000_1000, Some((0x9000_5000, 0x100))),
            Err(MemoryError::BadRequest)
        );
        assert_eq!(lookup(&tables, 0x8000_1000), Some((0x9abc_d000, 3)));
        tables.set_page(0x8000_1000, None).unwrap();
        tables.set_page(0x8000_1000, None).unwrap();
        assert_eq!(lookup(&tables, 0x8000_1000), None);
        tables
            .set_page(0x8000_1000, Some((0x9000_5000, 0x100)))
            .unwrap();
        assert_eq!(lookup(&tables, 0x8000_1000), Some((0x9000_5000, 3)));
        tables.set_page(0x7fff_f000, None).unwrap();
        assert_eq!(lookup(&tables, 0x7fff_f000), None);
        assert_eq!(frames.free_bytes(), free);
        // Reserving again keeps the tables and what they map.
        tables.reserve(&mut frames, window).unwrap();
        assert_eq!(frames.free_bytes(), free);
        assert_eq!(lookup(&tables, 0x8000_1000), Some((0x9000_5000, 3)));
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn set_page_refuses_without_a_level_3_table_and_changes_nothing() {
        let (_memory, mut frames) = pool();
        let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
        let block = Range::from_start_size(0x4000_0000, level_size(2)).unwrap();
        tables.map(&mut frames, block, 0x8000_0000, 0).unwrap();
        let free = frames.free_bytes();
        let page = Some((0x9000_0000, 0));
        // Inside a block, where nothing is mapped at all, and beyond the tables.
        for address in [0x4000_1000, 0x4040_0000, 0x1_0000_0000, 1 << 40] {
            assert_eq!(tables.set_page(address, page), Err(MemoryError::BadRequest));
            assert_eq!(tables.set_page(address, None), Err(MemoryError::BadRequest));
        }
        assert_eq!(lookup(&tables, 0x4000_1000), Some((0x8000_1000, 2)));
        assert_eq!(lookup(&tables, 0x4040_0000), None);
        // Misaligned addresses, even where a level-3 table exists.
        let window = Range::from_start_size(0x8000_0000, PAGE).unwrap();
        tables.reserve(&mut frames, window).unwrap();
        let free_after_reserve = frames.free_bytes();
        assert!(free_after_reserve < free);
        assert_eq!(
            tables.set_page(0x8000_0800, page),
            Err(MemoryError::BadRequest)
        );
        assert_eq!(
            tables.set_page(0x8000_0000, Some((0x9000_0800, 0))),
            Err(MemoryError::BadRequest)
        );
        assert_eq!(lookup(&tables, 0x8000_0000), None);
        assert_eq!(frames.free_bytes(), free_after_reserve);
        // Reserving over a block is refused too.
        assert_eq!(
            tables.reserve(&mut frames, block),
            Err(MemoryError::BadRequest)
        );
    }
}
