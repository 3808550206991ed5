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

use septum_abi::balloon::{BATCH_MAX, INFO_WORDS, Info};
use septum_abi::event::Kind as EventKind;
use septum_abi::layout::PAGE_SIZE;
use septum_abi::{Call, Error};

use super::{Dispatch, Platform, Reply, State, System};
use crate::balloon::Direction;
use crate::caps::{self, CapType, Rights};
use crate::memory::Range;

/// What a partition blocked in a balloon wait has in its `waiting` field: no
/// queue has this index.
pub(super) const BALLOON_WAIT: u8 = u8::MAX;

/// A validated balloon call.
#[derive(Clone, Copy, Debug)]
pub(super) enum Request {
    Batch { direction: Direction, list: Range },
    Report { free: u64, used: u64, failures: u64 },
    Wait,
    SetTarget { target: usize, pages: u64 },
    Info { target: usize, buffer: Range },
}

impl System {
    /// Whether `slot` of `caller` holds a balloon capability a wait may name.
    pub(super) fn balloon_wait(&self, caller: usize, slot: u64) -> bool {
        let table = &self.partitions[caller].caps;
        caps::lookup(table, slot, CapType::Balloon, Rights::INFLATE).is_ok()
    }

    pub(super) fn decode_balloon(
        &self,
        caller: usize,
        call: Call,
        args: [u64; 6],
    ) -> Result<Request, Error> {
        let table = &self.partitions[caller].caps;
        let [slot, a2, a3, a4, ..] = args;
        let need = |ty, right| caps::lookup(table, slot, ty, right);
        match call {
            Call::Inflate | Call::Deflate => {
                let (direction, right) = if call == Call::Inflate {
                    (Direction::Inflate, Rights::INFLATE)
                } else {
                    (Direction::Deflate, Rights::DEFLATE)
                };
                need(CapType::Balloon, right)?;
                if a3 == 0 {
                    return Err(Error::InvalidArgument);
                }
                if a3 > BATCH_MAX as u64 {
                    return Err(Error::TooLong);
                }
                let list = self.guest_buffer(caller, a2, a3 * 8)?;
                Ok(Request::Batch { direction, list })
            }
            Call::BalloonReport => {
                need(CapType::Balloon, Rights::INFLATE)?;
                Ok(Request::Report {
                    free: a2,
                    used: a3,
                    failures: a4,
                })
            }
            Call::SetMemoryTarget => {
                let target = usize::from(need(CapType::Control, Rights::SET_MEMORY_TARGET)?.object);
                let generation = self.partitions[target].generation;
                if a2 != 0 && a2 != u64::from(generation) {
                    return Err(Error::PeerRestarted);
                }
                let memory = self.balloon.memory(target).ok_or(Error::BadState)?;
                if a3 < memory.min {
                    return Err(Error::BelowMinimum);
                }
                if a3 > memory.max {
                    return Err(Error::AboveMaximum);
                }
                Ok(Request::SetTarget { target, pages: a3 })
            }
            Call::MemoryInfo => {
                let target = usize::from(need(CapType::Control, Rights::INSPECT)?.object);
                let buffer = self.guest_buffer(caller, a2, (INFO_WORDS * 8) as u64)?;
                Ok(Request::Info { target, buffer })
            }
            _ => unreachable!("only balloon calls are decoded here"),
        }
    }

    /// Frames a partition gave up have all reached the pool: wakes every
    /// partition waiting on its balloon, so one whose deflate found the pool
    /// empty tries again (its wait returns 0: woken, call again).
    pub(super) fn pool_refilled(&mut self, platform: &mut impl Platform) {
        for index in 0..self.partitions.len() {
            self.wake(index, usize::from(BALLOON_WAIT), platform);
        }
    }

    pub(super) fn invoke_balloon(
        &mut self,
        caller: usize,
        request: Request,
        platform: &mut impl Platform,
    ) -> Dispatch {
        match request {
            Request::Batch { direction, list } => {
                self.balloon_batch(caller, direction, list, platform)
            }
            Request::Report {
                free,
                used,
                failures,
            } => {
                let memory = self.balloon.report(caller, free, used, failures);
                self.post_memory(caller, platform);
                self.resume_caller(caller, Reply::ok([memory.target, memory.held, memory.max]))
            }
            Request::Wait => {
                if self.balloon.has_news(caller) {
                    let target = self.balloon.tell(caller);
                    return self.resume_caller(caller, Reply::ok([target, 0, 0]));
                }
                let partition = &mut self.partitions[caller];
                partition.state = State::Blocked;
                partition.waiting = Some(BALLOON_WAIT);
                self.end_loan(caller);
                let next = self.after(caller, platform);
                Dispatch::new(Some(Reply::ok([0; 3])), next)
            }
            Request::SetTarget { target, pages } => {
                let changed = self
                    .balloon
                    .set_target(target, pages)
                    .expect("checked by decode");
                if changed {
                    self.wake(target, usize::from(BALLOON_WAIT), platform);
                }
                self.resume_caller(caller, Reply::ok([0; 3]))
            }
            Request::Info { target, buffer } => {
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
                let shares = self.balloon.memory(target).map_or(0, |m| m.shares);
                // Frames given up and being scrubbed are on their way to the pool.
                let pool = self.balloon.free() + self.balloon.leaving();
                self.resume_caller(caller, Reply::ok([u64::from(shares), pool, 0]))
            }
        }
    }

    /// Carries out an inflate or deflate of the `list` (checked to lie in the
    /// caller's kept memory). Kept out of line: its 1 KiB of buffers would
    /// otherwise sit in the frame of every hypercall.
    #[inline(never)]
    fn balloon_batch(
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
            Ok(memory) => self.resume_caller(caller, Reply::ok([memory.held, memory.target, 0])),
            Err(error) => {
                // Waiting for the pool to fill is normal under contention.
                if error != Error::PoolEmpty {
                    let number = match direction {
                        Direction::Inflate => Call::Inflate,
                        Direction::Deflate => Call::Deflate,
                    };
                    self.note_refusal(caller, number as u64, error, platform);
                }
                self.resume_caller(caller, Reply::error(error))
            }
        }
    }

    /// Tells the service VM that `index` reported its memory, unless an event
    /// saying so already waits.
    fn post_memory(&mut self, index: usize, platform: &mut impl Platform) {
        let queued = self
            .events
            .queue
            .iter()
            .any(|record| record.kind == EventKind::Memory && record.partition == index as u64);
        if queued || self.partitions[0].state.ended() {
            return;
        }
        let record = self.record(EventKind::Memory, index, platform);
        self.post(record, platform);
    }
}

/// The memory a partition holds, in bytes, as [`Call::Inspect`] reports it.
pub(super) fn held_bytes(system: &System, index: usize) -> u64 {
    system
        .balloon
        .memory(index)
        .map_or(system.partitions[index].host_ram.size(), |m| {
            m.held * PAGE_SIZE
        })
}
