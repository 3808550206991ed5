//! The virtio-balloon device's own state and wire formats: its configuration
//! (`num_pages`, `actual`), the page lists of its inflate and deflate queues,
//! and the statistics buffer it holds. What a page list does is the balloon
//! ledger's ([`crate::balloon`]): this model only reads and checks what the
//! driver sent (`system/virtio.rs` joins the two).
//!
//! Invariants:
//! - a page list is one to [`PFNS_MAX`] 32-bit page frame numbers in
//!   device-readable buffers, copied out whole before the ledger sees it;
//!   anything else is [`Violation::BadChain`];
//! - the device holds at most one statistics buffer, and hands it back only
//!   to ask for fresh statistics, at most once per [`STATS_PERIOD_US`].

use septum_abi::virtio::Violation;
use septum_abi::virtio::balloon::{
    CONFIG_ACTUAL, CONFIG_SIZE, PFN_SHIFT, PFNS_MAX, STAT_AVAILABLE, STAT_MEMFREE, STAT_MEMTOTAL,
    STAT_SIZE, STATS_MAX,
};

use super::queue::{Chain, GuestMemory};
use super::transport::read_config;
use crate::balloon::Report;

/// Least time between two requests for statistics (a quarter second): the
/// memory scheduler asks on every round, and a guest answers at once.
pub const STATS_PERIOD_US: u64 = 250_000;
/// A guest whose available memory is under this share of its total (1/16)
/// counts as under pressure in its report.
const RESERVE_DIVISOR: u64 = 16;
const PAGE: u64 = 1 << PFN_SHIFT;

/// The balloon device's state.
#[derive(Clone, Copy, Debug, Default)]
pub struct BalloonModel {
    /// Pages the driver says it has given up (`actual`).
    pub actual: u32,
    /// The head of the statistics chain the device holds.
    stats: Option<u16>,
    /// When statistics were last asked for, if ever (µs).
    asked_us: Option<u64>,
    /// Statistics are to be asked for.
    pub stats_wanted: bool,
    /// A deflate waits for free frames or for its target to allow it.
    pub deflate_waits: bool,
    /// Reports under pressure since the device was reset.
    pressured: u64,
}

impl BalloonModel {
    /// A byte-wise read of its configuration, `width` bytes at `offset`, with
    /// `num_pages` as the ledger says now (bytes past it read as zero).
    pub fn config_read(&self, offset: u64, width: u8, num_pages: u32) -> u64 {
        let mut config = [0u8; CONFIG_SIZE as usize];
        config[..4].copy_from_slice(&num_pages.to_le_bytes());
        config[4..].copy_from_slice(&self.actual.to_le_bytes());
        read_config(&config, offset, width)
    }

    /// A write of its configuration: only `actual`, whole.
    pub fn config_write(&mut self, offset: u64, width: u8, value: u64) -> Result<(), Violation> {
        if offset != CONFIG_ACTUAL || width != 4 {
            return Err(Violation::BadRegister);
        }
        self.actual = value as u32;
        Ok(())
    }

    /// Copies the page list of an inflate or deflate chain into `out` as
    /// guest-physical page addresses; returns how many.
    pub fn page_list(
        chain: &Chain,
        memory: &mut impl GuestMemory,
        out: &mut [u64; PFNS_MAX],
    ) -> Result<usize, Violation> {
        let len = chain.readable_len().ok_or(Violation::BadChain)?;
        if len == 0 || !len.is_multiple_of(4) || len > 4 * PFNS_MAX as u64 {
            return Err(Violation::BadChain);
        }
        let mut raw = [0u8; 4 * PFNS_MAX];
        let count = chain.read(memory, &mut raw[..len as usize])? / 4;
        for (address, pfn) in out.iter_mut().zip(raw.chunks_exact(4)).take(count) {
            let pfn = u32::from_le_bytes(pfn.try_into().expect("4 bytes"));
            *address = u64::from(pfn) << PFN_SHIFT;
        }
        Ok(count)
    }

    /// Takes a statistics chain: reads it into a report and holds it.
    pub fn take_stats(
        &mut self,
        chain: &Chain,
        memory: &mut impl GuestMemory,
    ) -> Result<Report, Violation> {
        let len = chain.readable_len().ok_or(Violation::BadChain)?;
        let too_long = len > (STAT_SIZE * STATS_MAX) as u64;
        if self.stats.is_some() || too_long || !len.is_multiple_of(STAT_SIZE as u64) {
            return Err(Violation::BadChain);
        }
        let mut raw = [0u8; STAT_SIZE * STATS_MAX];
        let read = chain.read(memory, &mut raw[..len as usize])?;
        let (mut free, mut total, mut available) = (None, None, None);
        for stat in raw[..read].chunks_exact(STAT_SIZE) {
            let value = u64::from_le_bytes(stat[2..].try_into().expect("8 bytes"));
            match u16::from_le_bytes([stat[0], stat[1]]) {
                STAT_MEMFREE => free = Some(value / PAGE),
                STAT_MEMTOTAL => total = Some(value / PAGE),
                STAT_AVAILABLE => available = Some(value / PAGE),
                _ => {}
            }
        }
        self.stats = Some(chain.head);
        self.stats_wanted = false;
        let free = available.or(free).unwrap_or(0);
        let total = total.unwrap_or(0);
        if free < total / RESERVE_DIVISOR {
            self.pressured += 1;
        }
        Ok(Report {
            free,
            used: total.saturating_sub(free),
            failures: self.pressured,
            reports: 0,
        })
    }

    /// Asks for statistics at `now_us` if it holds a buffer and did not ask
    /// within [`STATS_PERIOD_US`]; true if that is work for the device now.
    pub fn want_stats(&mut self, now_us: u64) -> bool {
        let due = self
            .asked_us
            .is_none_or(|asked| now_us.saturating_sub(asked) >= STATS_PERIOD_US);
        if self.stats.is_some() && due {
            self.stats_wanted = true;
            self.asked_us = Some(now_us);
        }
        self.stats_wanted
    }

    /// The statistics chain to hand back, if statistics are wanted: the device
    /// no longer holds it.
    pub fn take_stats_request(&mut self) -> Option<u16> {
        if !self.stats_wanted {
            return None;
        }
        self.stats_wanted = false;
        self.stats.take()
    }

    /// Whether it has work of its own (statistics to ask for).
    pub fn has_work(&self) -> bool {
        self.stats_wanted && self.stats.is_some()
    }
}
