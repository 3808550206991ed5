//! The balloon hypercalls: a guest's `inflate`, `deflate`, `balloon_report` and
//! `wait` on its balloon, and the service VM's `set_memory_target` and
//! `memory_info`, decoded against the caller's capabilities and carried out on
//! the [`Balloon`](crate::balloon::Balloon).
//!
//! Invariants:
//! - a guest reaches only its own balloon, through its balloon capability; the
//!   service VM reaches a guest's target and counts only through a control
//!   capability for it, with the right `set-memory-target` or `inspect`;
//! - the counts the service VM reads are the kernel's (pages held, target,
//!   limits); what the guest claims (free, used, failures) is shown beside them,
//!   never instead of them;
//! - a target is set only within the guest's minimum and maximum;
//! - a guest blocked in a balloon wait runs again when its target changes, or
//!   when it is restarted or stopped;
//! - at most one memory event per guest waits in the service VM's queue.

use septum_abi::balloon::{BATCH_MAX, Info};
use septum_abi::layout::PAGE_SIZE;
use septum_abi::{Call, Error};

use super::dispatch::Caller;
use super::lifecycle::WaitOn;
use super::{Dispatch, Platform, Reply, System};
use crate::balloon::Direction;
use crate::memory::Range;

impl System {
    /// The list of an `inflate` or `deflate`: `count` page addresses at `list` in
    /// the caller's kept memory.
    pub(super) fn decode_batch(
        &self,
        caller: usize,
        list: u64,
        count: u64,
    ) -> Result<Range, Error> {
        if count == 0 {
            return Err(Error::InvalidArgument);
        }
        if count > BATCH_MAX as u64 {
            return Err(Error::TooLong);
        }
        self.guest_buffer(caller, list, count * 8)
    }

    /// Whether `pages` is a target `target` may have: it has a balloon, and the
    /// target lies within its minimum and maximum.
    pub(super) fn check_target(&self, target: usize, pages: u64) -> Result<(), Error> {
        let memory = self.balloon.memory(target).ok_or(Error::BadState)?;
        if pages < memory.min {
            return Err(Error::BelowMinimum);
        }
        if pages > memory.max {
            return Err(Error::AboveMaximum);
        }
        Ok(())
    }

    /// `balloon_report`: records what the caller claims and tells the service VM;
    /// the caller learns its target, what it holds and its maximum.
    pub(super) fn balloon_report(
        &mut self,
        caller: usize,
        free: u64,
        used: u64,
        failures: u64,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let memory = self.balloon.report(caller, free, used, failures);
        self.post_memory(caller, platform);
        Dispatch::resume(Reply::ok([memory.target, memory.held, memory.max]))
    }

    /// `wait` on a balloon: returns a target the caller was not told, or blocks
    /// until there is one (or the pool refills).
    pub(super) fn balloon_wait(&mut self, caller: Caller) -> Dispatch {
        if self.balloon.has_news(caller.partition) {
            let target = self.balloon.tell(caller.partition);
            return Dispatch::resume(Reply::ok([target, 0, 0]));
        }
        self.block_caller(caller, WaitOn::Balloon)
    }

    /// `set_memory_target`: the service VM sets the target's target (checked by
    /// [`System::check_target`]) and wakes it if it waits on its balloon.
    pub(super) fn set_target(
        &mut self,
        target: usize,
        pages: u64,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let changed = self
            .balloon
            .set_target(target, pages)
            .expect("checked by decode");
        if changed {
            let now_us = platform.now_us();
            if self.partitions[target].life.wake(WaitOn::Balloon, now_us) {
                self.note_may_run(target);
            }
            self.virtio_target_changed(target, platform);
        }
        Dispatch::resume(Reply::ok([0; 3]))
    }

    /// `memory_info`: the target's memory into `buffer`; its shares and the pool
    /// in the results.
    pub(super) fn memory_info(
        &mut self,
        target: usize,
        buffer: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let info = match self.balloon.memory(target) {
            Some(memory) => Info {
                held: memory.held,
                target: memory.target,
                min: memory.min,
                max: memory.max,
                initial: memory.initial,
                free: memory.report.free,
                used: memory.report.used,
                failures: memory.report.failures,
                reports: memory.report.reports,
            },
            None => {
                // Without a balloon its memory is fixed.
                let pages = self.partitions[target].host_ram.size() / PAGE_SIZE;
                Info {
                    held: pages,
                    target: pages,
                    min: pages,
                    max: pages,
                    initial: pages,
                    ..Info::default()
                }
            }
        };
        platform.write_ram(buffer.start, &info.to_bytes());
        self.virtio_wants_stats(target, platform);
        let shares = self.balloon.memory(target).map_or(0, |m| m.shares);
        // Frames given up and being scrubbed are on their way to the pool.
        let pool = self.balloon.free() + self.balloon.leaving();
        Dispatch::resume(Reply::ok([u64::from(shares), pool, 0]))
    }

    /// Frames a partition gave up have all reached the pool: wakes every
    /// partition waiting on its balloon, so one whose deflate found the pool
    /// empty tries again (its wait returns 0: woken, call again).
    pub(super) fn pool_refilled(&mut self, platform: &mut impl Platform) {
        self.virtio_pool_refilled();
        let now_us = platform.now_us();
        for index in 0..self.partitions.len() {
            if self.partitions[index].life.wake(WaitOn::Balloon, now_us) {
                self.note_may_run(index);
            }
        }
    }

    /// Bytes of RAM partition `index` holds: its balloon's count, or its fixed RAM.
    pub(super) fn held_bytes(&self, index: usize) -> u64 {
        self.balloon
            .memory(index)
            .map_or(self.partitions[index].host_ram.size(), |m| {
                m.held * PAGE_SIZE
            })
    }

    /// Carries out an inflate or deflate of the `list` (checked to lie in the
    /// caller's kept memory). Kept out of line: its 1 KiB of buffers would
    /// otherwise sit in the frame of every hypercall.
    #[inline(never)]
    pub(super) fn balloon_batch(
        &mut self,
        caller: usize,
        direction: Direction,
        list: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let count = (list.size() / 8) as usize;
        let mut bytes = [0u8; BATCH_MAX * 8];
        platform.read_ram(list.start, &mut bytes[..count * 8]);
        let mut pages = [0u64; BATCH_MAX];
        for (page, word) in pages.iter_mut().zip(bytes.chunks_exact(8)) {
            *page = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        }
        let flip = &self.flip;
        let in_flight = |guest| flip.in_flight(caller, guest);
        let result = self
            .balloon
            .batch(caller, direction, &pages[..count], in_flight, platform);
        match result {
            Ok(memory) => Dispatch::resume(Reply::ok([memory.held, memory.target, 0])),
            Err(error) => {
                // Waiting for the pool to fill is normal under contention.
                if error != Error::PoolEmpty {
                    let number = match direction {
                        Direction::Inflate => Call::Inflate,
                        Direction::Deflate => Call::Deflate,
                    };
                    self.note_refusal(caller, number as u64, error, platform);
                }
                Dispatch::resume(Reply::error(error))
            }
        }
    }
}
