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
