//! Ballooning: how a partition's memory is laid out when it holds a balloon
//! capability, and the limits and records of [`Call::Inflate`](crate::Call::Inflate),
//! [`Call::Deflate`](crate::Call::Deflate), [`Call::BalloonReport`](crate::Call::BalloonReport)
//! and [`Call::MemoryInfo`](crate::Call::MemoryInfo).
//!
//! **Layout.** A partition with a balloon sees RAM from
//! [`RAM_BASE`](crate::layout::RAM_BASE) up to its description's `memory.max`. The
//! first `memory.min` bytes are its *kept memory*: always backed, never given
//! back; its image, stack and every buffer it hands the kernel live there, and the
//! kernel passes their size as the RAM size in the first argument register at
//! entry. The rest, up to `memory.max`, is its *balloon memory*: at entry (and
//! after every restart) the pages up to its description's `ram` are backed and the
//! pages above are holes; afterwards each page is backed or a hole as the
//! partition inflates and deflates.

/// Most pages in one inflate or deflate batch. A batch is carried out within the
/// call, so this bounds the kernel work one call does: 64 pages take about 12,000
/// instructions (0.25 ms under Bochs at 50 MIPS), well within the 50 per mille of
/// a 10 ms frame by which no call may overrun its caller's window (the scrubbing
/// of pages given back is done later, in the caller's own turns). With 512 a
/// batch, one call overran a co-tenant's window by a millisecond under Bochs.
pub const BATCH_MAX: usize = 64;

/// Words of a [`Call::MemoryInfo`](crate::Call::MemoryInfo) record.
pub const INFO_WORDS: usize = 9;

/// The words of a [`Call::MemoryInfo`](crate::Call::MemoryInfo) record, in order
/// (sizes in pages). The first five are the kernel's own counts; the last four are
/// what the guest last claimed with [`Call::BalloonReport`](crate::Call::BalloonReport).
pub mod info {
    /// Pages the guest holds (kept and balloon memory backed), as the kernel counts.
    pub const HELD: usize = 0;
    /// Its current target.
    pub const TARGET: usize = 1;
    /// Its description's minimum.
    pub const MIN: usize = 2;
    /// Its description's maximum.
    pub const MAX: usize = 3;
    /// Its memory at entry (its description's `ram`).
    pub const INITIAL: usize = 4;
    /// Reported: pages free in its allocator.
    pub const FREE: usize = 5;
    /// Reported: pages in use.
    pub const USED: usize = 6;
    /// Reported: allocations that failed since it started.
    pub const FAILURES: usize = 7;
    /// Reports since it started.
    pub const REPORTS: usize = 8;
}

/// A guest's memory as [`Call::MemoryInfo`](crate::Call::MemoryInfo) reports it
/// (pages): the kernel's counts, then what the guest last claimed. Only
/// [`Info::to_words`] and [`Info::from_words`] know the order of [`info`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Pages it holds, as the kernel counts them.
    pub held: u64,
    /// Its target.
    pub target: u64,
    /// Its minimum.
    pub min: u64,
    /// Its maximum.
    pub max: u64,
    /// Its memory at entry.
    pub initial: u64,
    /// Claimed: free pages in its allocator.
    pub free: u64,
    /// Claimed: pages in use.
    pub used: u64,
    /// Claimed: failed allocations since it started.
    pub failures: u64,
    /// Reports since it started.
    pub reports: u64,
}

impl Info {
    /// The record's words.
    pub fn to_words(&self) -> [u64; INFO_WORDS] {
        let mut words = [0; INFO_WORDS];
        words[info::HELD] = self.held;
        words[info::TARGET] = self.target;
        words[info::MIN] = self.min;
        words[info::MAX] = self.max;
        words[info::INITIAL] = self.initial;
        words[info::FREE] = self.free;
        words[info::USED] = self.used;
        words[info::FAILURES] = self.failures;
        words[info::REPORTS] = self.reports;
        words
    }

    /// The record's bytes (its words, little-endian).
    pub fn to_bytes(&self) -> [u8; INFO_WORDS * 8] {
        let mut bytes = [0; INFO_WORDS * 8];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Reads the record from its words.
    pub fn from_words(words: &[u64; INFO_WORDS]) -> Info {
        Info {
            held: words[info::HELD],
            target: words[info::TARGET],
            min: words[info::MIN],
            max: words[info::MAX],
            initial: words[info::INITIAL],
            free: words[info::FREE],
            used: words[info::USED],
            failures: words[info::FAILURES],
            reports: words[info::REPORTS],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn memory_info_round_trips_in_the_documented_order() {
        let info = Info {
            held: 1,
            target: 2,
            min: 3,
            max: 4,
            initial: 5,
            free: 6,
            used: 7,
            failures: 8,
            reports: 9,
        };
        assert_eq!(info.to_words(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(Info::from_words(&info.to_words()), info);
        assert_eq!(info.to_bytes()[8..16], 2u64.to_le_bytes());
    }
}
