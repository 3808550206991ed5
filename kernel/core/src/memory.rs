//! Physical memory bookkeeping: address ranges and the list of free RAM the kernel
//! carves partitions out of.
//!
//! Invariants of [`FreeRanges`], property-tested below:
//! - the free ranges are sorted, non-empty and pairwise disjoint (and never touch:
//!   adjacent ranges are merged);
//! - an allocation returns a range that was wholly free, is aligned as asked, and
//!   is no longer free afterwards;
//! - every operation either succeeds completely or changes nothing.

/// A half-open range of addresses `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// First address in the range.
    pub start: u64,
    /// First address past the range.
    pub end: u64,
}

impl Range {
    /// The range of `size` bytes from `start`; `None` if it would wrap around.
    pub fn from_start_size(start: u64, size: u64) -> Option<Range> {
        Some(Range {
            start,
            end: start.checked_add(size)?,
        })
    }

    /// Number of bytes in the range.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether every byte of `other` lies in `self`.
    pub fn contains_range(&self, other: &Range) -> bool {
        other.start >= self.start && other.end <= self.end && other.start <= other.end
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Why a free-list operation failed. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The list has no room for another range.
    TooFragmented,
    /// No free range can hold the request.
    OutOfMemory,
    /// The request was empty, wrapped around, or its alignment was not a power of two.
    BadRequest,
}

/// A sorted list of free physical ranges with room for `N` entries.
#[derive(Clone, Debug, Default)]
pub struct FreeRanges<const N: usize> {
    ranges: heapless::Vec<Range, N>,
}

impl<const N: usize> FreeRanges<N> {
    /// An empty list.
    pub const fn new() -> Self {
        FreeRanges {
            ranges: heapless::Vec::new(),
        }
    }

    /// The free ranges, sorted by address.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.ranges.iter().map(Range::size).sum()
    }

    /// Marks `range` free. It must not overlap anything already free.
    pub fn add(&mut self, range: Range) -> Result<(), MemoryError> {
        if range.is_empty() {
            return Err(MemoryError::BadRequest);
        }
        if self.ranges.iter().any(|r| r.overlaps(&range)) {
            return Err(MemoryError::BadRequest);
        }
        let mut next = self.ranges.clone();
        let at = next
            .iter()
            .position(|r| r.start > range.start)
            .unwrap_or(next.len());
        next.insert(at, range)
            .map_err(|_| MemoryError::TooFragmented)?;
        self.ranges = merge_adjacent(next);
        Ok(())
    }

    /// Marks `range` as not free (it may be partly free, wholly free or not free).
    pub fn remove(&mut self, range: Range) -> Result<(), MemoryError> {
        if range.is_empty() {
            return Ok(());
        }
        let mut next = heapless::Vec::<Range, N>::new();
        for r in &self.ranges {
            if !r.overlaps(&range) {
                next.push(*r).map_err(|_| MemoryError::TooFragmented)?;
                continue;
            }
            if r.start < range.start {
                next.push(Range {
                    start: r.start,
                    end: range.start,
                })
                .map_err(|_| MemoryError::TooFragmented)?;
            }
            if range.end < r.end {
                next.push(Range {
                    start: range.end,
                    end: r.end,
                })
                .map_err(|_| MemoryError::TooFragmented)?;
            }
        }
        self.ranges = next;
        Ok(())
    }

    /// Takes exactly `range`, which must be wholly free.
    pub fn take(&mut self, range: Range) -> Result<Range, MemoryError> {
        if range.is_empty() {
            return Err(MemoryError::BadRequest);
        }
        if !self.ranges.iter().any(|r| r.contains_range(&range)) {
            return Err(MemoryError::OutOfMemory);
        }
        self.remove(range)?;
        Ok(range)
    }

    /// Takes `size` bytes starting at a multiple of `align` from the lowest free
    /// range that can hold them.
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, MemoryError> {
        if size == 0 || !align.is_power_of_two() {
            return Err(MemoryError::BadRequest);
        }
        let found = self.ranges.iter().find_map(|r| {
            let start = r.start.checked_next_multiple_of(align)?;
            let candidate = Range::from_start_size(start, size)?;
            r.contains_range(&candidate).then_some(candidate)
        });
        let range = found.ok_or(MemoryError::OutOfMemory)?;
        self.remove(range)?;
        Ok(range)
    }
}

fn merge_adjacent<const N: usize>(ranges: heapless::Vec<Range, N>) -> heapless::Vec<Range, N> {
    let mut merged = heapless::Vec::<Range, N>::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            // Cannot fail: `merged` never holds more entries than `ranges`.
            _ => merged.push(r).expect("merge never grows the list"),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn well_formed<const N: usize>(free: &FreeRanges<N>) -> bool {
        free.ranges().iter().all(|r| !r.is_empty())
            && free.ranges().windows(2).all(|w| w[0].end < w[1].start)
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn carve_kernel_and_blob_then_allocate_aligned() {
        let mut free = FreeRanges::<8>::new();
        free.add(Range::from_start_size(0x4000_0000, 512 * MIB).unwrap())
            .unwrap();
        free.remove(Range::from_start_size(0x4020_0000, 3 * MIB).unwrap())
            .unwrap();
        free.remove(Range::from_start_size(0x4800_0000, 0x10_0000).unwrap())
            .unwrap();
        let a = free.allocate(2 * MIB, 2 * MIB).unwrap();
        assert_eq!(a.start, 0x4000_0000);
        let b = free.allocate(4 * MIB, 2 * MIB).unwrap();
        assert_eq!(b.start, 0x4060_0000);
        assert!(well_formed(&free));
        assert_eq!(free.allocate(1 << 40, 4096), Err(MemoryError::OutOfMemory));
        assert_eq!(free.allocate(4096, 3), Err(MemoryError::BadRequest));
    }

    /// Verifies: SK-ISO-004
    #[test]
    fn take_claims_exactly_a_free_range() {
        let mut free = FreeRanges::<4>::new();
        free.add(Range {
            start: 0x10_0000,
            end: 0x50_0000,
        })
        .unwrap();
        let wanted = Range {
            start: 0x20_0000,
            end: 0x40_0000,
        };
        assert_eq!(free.take(wanted), Ok(wanted));
        assert_eq!(free.take(wanted), Err(MemoryError::OutOfMemory));
        let straddling = Range {
            start: 0x0f_0000,
            end: 0x11_0000,
        };
        assert_eq!(free.take(straddling), Err(MemoryError::OutOfMemory));
        assert_eq!(free.free_bytes(), 0x20_0000);
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn overlapping_add_is_refused_and_changes_nothing() {
        let mut free = FreeRanges::<4>::new();
        free.add(Range {
            start: 0x1000,
            end: 0x3000,
        })
        .unwrap();
        let before = free.clone();
        assert_eq!(
            free.add(Range {
                start: 0x2000,
                end: 0x4000
            }),
            Err(MemoryError::BadRequest)
        );
        assert_eq!(free.ranges(), before.ranges());
        free.add(Range {
            start: 0x3000,
            end: 0x4000,
        })
        .unwrap();
        assert_eq!(
            free.ranges(),
            &[Range {
                start: 0x1000,
                end: 0x4000
            }]
        );
    }

    /// Verifies: SK-ISO-001
    #[test]
    fn fragmentation_beyond_capacity_is_refused_and_changes_nothing() {
        let mut free = FreeRanges::<2>::new();
        free.add(Range {
            start: 0,
            end: 0x10000,
        })
        .unwrap();
        free.remove(Range {
            start: 0x1000,
            end: 0x2000,
        })
        .unwrap();
        let before = free.clone();
        assert_eq!(
            free.remove(Range {
                start: 0x4000,
                end: 0x5000
            }),
            Err(MemoryError::TooFragmented)
        );
        assert_eq!(free.ranges(), before.ranges());
    }

    proptest! {
        /// Random carve-outs and allocations keep the list well formed, never hand
        /// out a byte twice, and never hand out a byte that was carved out.
        /// Verifies: SK-ISO-001
        #[test]
        fn allocations_are_disjoint_aligned_and_free(
            removals in proptest::collection::vec((0u64..256, 1u64..16), 0..6),
            requests in proptest::collection::vec((1u64..32, 0u32..6), 1..20),
        ) {
            let page = 4096;
            let ram = Range { start: 0x4000_0000, end: 0x4000_0000 + 256 * page };
            let mut free = FreeRanges::<16>::new();
            free.add(ram).unwrap();
            let mut carved = Vec::new();
            for (at, pages) in removals {
                let r = Range::from_start_size(ram.start + at * page, pages * page).unwrap();
                free.remove(r).unwrap();
                carved.push(r);
            }
            let mut given: Vec<Range> = Vec::new();
            for (pages, align_log) in requests {
                let align = page << align_log;
                let before = free.free_bytes();
                match free.allocate(pages * page, align) {
                    Ok(r) => {
                        prop_assert_eq!(r.start % align, 0);
                        prop_assert!(ram.contains_range(&r));
                        prop_assert!(carved.iter().all(|c| !c.overlaps(&r)));
                        prop_assert!(given.iter().all(|g| !g.overlaps(&r)));
                        prop_assert_eq!(free.free_bytes(), before - r.size());
                        given.push(r);
                    }
                    Err(_) => prop_assert_eq!(free.free_bytes(), before),
                }
                prop_assert!(well_formed(&free));
            }
        }
    }
}
