//! A virtio-balloon driver for native partitions: the second front end of the
//! kernel's balloon ledger, beside the inflate and deflate hypercalls of
//! [`crate::balloon`], over the same page [`Allocator`].
//!
//! The device says how many 4 KiB pages it wants in the balloon (`num_pages`:
//! the partition's maximum less its target); the driver inflates by sending
//! chains of one device-readable buffer of page frame numbers (guest-physical
//! address >> 12, at most [`PFNS_MAX`] a chain) on the inflate queue, deflates
//! on the deflate queue, and writes how many pages it has in the balloon
//! (`actual`). A native partition's balloon memory above its RAM at entry
//! starts as holes, so those pages start in the balloon. Statistics (free,
//! total and available bytes) go in one buffer on the statistics queue, which
//! the device keeps and hands back when it wants fresh figures.
//!
//! The kernel handles a notified chain before the notifying store returns, so
//! the driver sends one chain at a time from one buffer of frame numbers and
//! polls for it; a deflate that waits for memory completes later, and the driver
//! gives up its turns until it does.

use core::ptr::NonNull;

use septum_abi::layout::PAGE_SIZE;
pub use septum_abi::virtio::balloon::{
    CONFIG_ACTUAL, CONFIG_NUM_PAGES, DEFLATE_QUEUE, INFLATE_QUEUE, PFN_SHIFT, PFNS_MAX,
    STAT_AVAILABLE, STAT_MEMFREE, STAT_MEMTOTAL, STAT_SIZE, STATS_QUEUE,
};

use super::{Device, DeviceMemory, Error, Queue, Rings, Transport, feature};
use crate::balloon::Allocator;

/// Statistics the driver sends: free, total and available bytes.
const STATS: usize = 3;
/// Bytes of its statistics buffer.
pub const STATS_BYTES: usize = STATS * STAT_SIZE;

/// The memory the device reads: three queues, the frame numbers of one chain,
/// the statistics buffer. Declare one as a static and hand it to
/// [`Balloon::new`].
pub struct BalloonMemory {
    rings: [DeviceMemory<Rings>; 3],
    pfns: DeviceMemory<[u32; PFNS_MAX]>,
    stats: DeviceMemory<[u8; STATS_BYTES]>,
}

impl BalloonMemory {
    /// Zeroed memory.
    pub const fn new() -> BalloonMemory {
        BalloonMemory {
            rings: [
                DeviceMemory::new(Rings::new()),
                DeviceMemory::new(Rings::new()),
                DeviceMemory::new(Rings::new()),
            ],
            pfns: DeviceMemory::new([0; PFNS_MAX]),
            stats: DeviceMemory::new([0; STATS_BYTES]),
        }
    }
}

impl Default for BalloonMemory {
    fn default() -> BalloonMemory {
        BalloonMemory::new()
    }
}

/// What one [`Balloon::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Pages the device asked for (`num_pages`).
    pub num_pages: u32,
    /// Pages in the balloon after the step (`actual`).
    pub actual: u32,
    /// Pages inflated this step.
    pub inflated: u32,
    /// Pages deflated this step.
    pub deflated: u32,
}

/// The driver of the partition's virtio-balloon device.
pub struct Balloon {
    transport: Transport,
    queues: [Queue; 3],
    pfns: NonNull<[u32; PFNS_MAX]>,
    stats: NonNull<[u8; STATS_BYTES]>,
    actual: u32,
    /// Free pages the driver never gives back.
    pub reserve: u64,
    stats_queue: bool,
}

impl Balloon {
    /// A driver over `memory` with queues of `queue_size` buffers, keeping
    /// `reserve` free pages; `None` if the memory is taken or the size bad.
    pub fn new(memory: &'static BalloonMemory, queue_size: u16, reserve: u64) -> Option<Balloon> {
        let [inflate, deflate, stats] = &memory.rings;
        Some(Balloon {
            transport: Transport::new(Device::Balloon),
            queues: [
                Queue::new(inflate, queue_size)?,
                Queue::new(deflate, queue_size)?,
                Queue::new(stats, queue_size)?,
            ],
            pfns: memory.pfns.take()?,
            stats: memory.stats.take()?,
            actual: 0,
            reserve,
            stats_queue: false,
        })
    }

    /// Brings the device up (reset, features, queues, `DRIVER_OK`), writes
    /// `actual` = `in_balloon` (the pages of balloon memory not backed now) and
    /// hands the device its first statistics.
    pub fn start(&mut self, allocator: &Allocator, in_balloon: u32) -> Result<(), Error> {
        for queue in &mut self.queues {
            queue.reset();
        }
        let wanted = feature::BALLOON_MUST_TELL_HOST | feature::BALLOON_STATS_VQ;
        let accepted = self.transport.negotiate(Device::Balloon, wanted)?;
        self.stats_queue = accepted & feature::BALLOON_STATS_VQ != 0;
        let queues = if self.stats_queue { 3 } else { 2 };
        for (index, queue) in self.queues[..queues].iter().enumerate() {
            self.transport.set_queue(index as u16, queue)?;
        }
        self.transport.driver_ok()?;
        self.set_actual(in_balloon);
        if self.stats_queue {
            self.give_stats(allocator)?;
        }
        self.transport.check()
    }

    /// Pages the device wants in the balloon.
    pub fn num_pages(&self) -> u32 {
        self.transport.config(CONFIG_NUM_PAGES)
    }

    fn set_actual(&mut self, pages: u32) {
        self.actual = pages;
        self.transport.set_config(CONFIG_ACTUAL, pages);
    }

    /// Gives the pages at `pages` (at most [`PFNS_MAX`] guest addresses) to the
    /// device in one chain; returns once it has used it. `actual` is the
    /// caller's to update.
    pub fn inflate(&mut self, pages: &[u64]) -> Result<(), Error> {
        self.send(INFLATE_QUEUE, pages)
    }

    /// Takes the pages at `pages` (holes) back in one chain; returns once the
    /// device has used it (they are backed then).
    pub fn deflate(&mut self, pages: &[u64]) -> Result<(), Error> {
        self.send(DEFLATE_QUEUE, pages)
    }

    fn send(&mut self, queue: usize, pages: &[u64]) -> Result<(), Error> {
        if pages.is_empty() || pages.len() > PFNS_MAX {
            return Err(Error::QueueFull);
        }
        let pfns = self.pfns.as_ptr();
        for (i, &page) in pages.iter().enumerate() {
            // SAFETY: `i` is below PFNS_MAX; the buffer is the driver's, and the
            // device holds it only between `add` and its use below.
            unsafe {
                pfns.cast::<u32>()
                    .add(i)
                    .write_volatile((page >> PFN_SHIFT) as u32)
            };
        }
        let bytes = (pages.len() * 4) as u32;
        self.queues[queue].add(&[(pfns as u64, bytes, false)])?;
        self.transport.notify(queue as u16);
        self.wait_used(queue).map(|_| ())
    }

    /// Polls queue `queue` until the device has used a chain, giving up turns
    /// meanwhile; `Err(NeedsReset)` if the device found an error instead.
    fn wait_used(&mut self, queue: usize) -> Result<u32, Error> {
        loop {
            if let Some((_, length)) = self.queues[queue].take_used() {
                return Ok(length);
            }
            self.transport.check()?;
            crate::arch::wait();
        }
    }

    fn give_stats(&mut self, allocator: &Allocator) -> Result<(), Error> {
        let free = allocator.free_pages() * PAGE_SIZE;
        let total = allocator.held_pages() * PAGE_SIZE;
        let mut bytes = [0u8; STATS_BYTES];
        for (entry, (tag, value)) in bytes.chunks_exact_mut(STAT_SIZE).zip([
            (STAT_MEMFREE, free),
            (STAT_MEMTOTAL, total),
            (STAT_AVAILABLE, free),
        ]) {
            entry[..2].copy_from_slice(&tag.to_le_bytes());
            entry[2..].copy_from_slice(&value.to_le_bytes());
        }
        let stats = self.stats.as_ptr();
        // SAFETY: the device handed the buffer back (or never had it).
        unsafe { stats.write_volatile(bytes) };
        self.queues[STATS_QUEUE].add(&[(stats as u64, STATS_BYTES as u32, false)])?;
        self.transport.notify(STATS_QUEUE as u16);
        Ok(())
    }

    /// If the device handed the statistics buffer back, fills it with fresh
    /// figures and gives it again; `true` if it did.
    pub fn update_stats(&mut self, allocator: &Allocator) -> Result<bool, Error> {
        if !self.stats_queue || self.queues[STATS_QUEUE].take_used().is_none() {
            return Ok(false);
        }
        self.give_stats(allocator).map(|()| true)
    }

    /// Moves toward `num_pages` by at most one chain: inflates free pages of
    /// `allocator` (highest first, keeping the reserve), or deflates holes
    /// (lowest first), then writes `actual`; refreshes the statistics if the
    /// device asked.
    pub fn step(&mut self, allocator: &mut Allocator) -> Result<Step, Error> {
        self.transport.check()?;
        self.update_stats(allocator)?;
        let num_pages = self.num_pages();
        let mut step = Step {
            num_pages,
            ..Step::default()
        };
        let mut list = [0u64; PFNS_MAX];
        if num_pages > self.actual {
            let spare = allocator.free_pages().saturating_sub(self.reserve);
            let want = u64::from(num_pages - self.actual).min(spare) as usize;
            let taken = allocator.take_for_balloon(&mut list[..want.min(PFNS_MAX)]);
            if taken > 0 {
                if let Err(error) = self.inflate(&list[..taken]) {
                    allocator.mark_backed_free(&list[..taken]);
                    return Err(error);
                }
                step.inflated = taken as u32;
                self.set_actual(self.actual + taken as u32);
            }
        } else if num_pages < self.actual {
            let want = ((self.actual - num_pages) as usize).min(PFNS_MAX);
            let found = allocator.holes(&mut list[..want]);
            if found > 0 {
                self.deflate(&list[..found])?;
                allocator.mark_backed_free(&list[..found]);
                step.deflated = found as u32;
                self.set_actual(self.actual - found as u32);
            }
        }
        step.actual = self.actual;
        Ok(step)
    }
}
