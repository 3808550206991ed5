//! The queue hypercalls: `send`, `send_batch`, `receive`, `release`, `reclaim` and
//! `wait`, decoded against the caller's capabilities and carried out on the
//! [`Flip`](crate::flip::Flip) ledger.
//!
//! Invariants:
//! - a queue is reached only through a capability for one of its ends, of the
//!   right type and with the right (`send` or `receive`); the badge the receiver
//!   learns is the one in the sender's capability, never an argument;
//! - a partition blocked in `wait` runs again only when its queue end has work,
//!   its peer restarted or ended, or it is itself restarted or stopped;
//! - a partition that exits or is stopped keeps no page of another: what it held
//!   or had waiting goes home, what it sent stays to be received, and the other
//!   end's sends (and receives and waits, once nothing is left) answer
//!   `peer-ended` until it is restarted;
//! - an immediate send switches to the receiver only when the receiver waits on
//!   that queue on the same core; the receiver then runs in the sender's window
//!   ([`System::decide`]) until it waits or yields.

use septum_abi::queue::{BATCH_MAX, BatchEntry, COPY_MAX, Received, flags};
use septum_abi::{Call, Error};

use super::dispatch::Caller;
use super::lifecycle::WaitOn;
use super::{Dispatch, Next, Platform, Reply, System};
use crate::caps::Cap;
use crate::flip::{End, Outgoing, ReceiveAt};

/// A validated queue call: small, so that it costs nothing to the calls that are
/// not sends (a batch's list is read when the send is carried out).
#[derive(Clone, Copy, Debug)]
pub(super) enum Request {
    Send {
        queue: usize,
        badge: u16,
        pages: Pages,
        immediate: bool,
    },
    SendCopy {
        queue: usize,
        badge: u16,
        from: u64,
        len: u64,
        immediate: bool,
    },
    Receive {
        queue: usize,
        at: ReceiveAt,
    },
    Release {
        queue: usize,
        guest: u64,
        count: u64,
    },
    Reclaim(usize),
}

/// The pages of a send by flip.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pages {
    /// One message (`send`).
    One(Outgoing),
    /// A list of [`BatchEntry`] words in the caller's RAM, checked to lie there
    /// (`send_batch`).
    List { at: u64, count: usize },
}

impl System {
    /// `send`: one message, flipped or (with the copy flag) copied.
    pub(super) fn decode_send(
        &self,
        caller: usize,
        cap: Cap,
        [a2, a3, a4]: [u64; 3],
    ) -> Result<Request, Error> {
        let immediate = known_flags(a4)?;
        let (queue, badge) = (usize::from(cap.object), cap.badge);
        if a4 & flags::COPY == 0 {
            let pages = Pages::One(Outgoing { guest: a2, len: a3 });
            return Ok(Request::Send {
                queue,
                badge,
                pages,
                immediate,
            });
        }
        if a3 > COPY_MAX {
            return Err(Error::TooLong);
        }
        let from = self.guest_buffer(caller, a2, a3)?;
        Ok(Request::SendCopy {
            queue,
            badge,
            from: from.start,
            len: a3,
            immediate,
        })
    }

    /// `send_batch`: the list of `a3` words at `a2` in the caller's RAM.
    pub(super) fn decode_send_batch(
        &self,
        caller: usize,
        cap: Cap,
        [a2, a3, a4]: [u64; 3],
    ) -> Result<Request, Error> {
        let immediate = known_flags(a4)?;
        if a4 & flags::COPY != 0 || a3 == 0 {
            return Err(Error::InvalidArgument);
        }
        if a3 > BATCH_MAX as u64 {
            return Err(Error::TooLong);
        }
        let list = self.guest_buffer(caller, a2, a3 * 8)?;
        Ok(Request::Send {
            queue: usize::from(cap.object),
            badge: cap.badge,
            pages: Pages::List {
                at: list.start,
                count: a3 as usize,
            },
            immediate,
        })
    }

    /// `receive`: into the window at `a2`, or a copy into the buffer at `a3`.
    pub(super) fn decode_receive(&self, caller: usize, cap: Cap, [a2, a3, _]: [u64; 3]) -> Request {
        let copy_buffer = self.guest_buffer(caller, a3, COPY_MAX).ok();
        Request::Receive {
            queue: usize::from(cap.object),
            at: ReceiveAt {
                window: a2,
                copy_buffer: copy_buffer.map(|range| range.start),
            },
        }
    }

    pub(super) fn invoke_queue(
        &mut self,
        caller: usize,
        request: Request,
        platform: &mut impl Platform,
    ) -> Dispatch {
        // Sending to, or receiving from, a partition that ended is flow news, like
        // a full queue: answered, not audited.
        let needs_peer = match request {
            Request::Send { queue, .. } | Request::SendCopy { queue, .. } => {
                Some((queue, Call::Send))
            }
            // What the peer sent before it ended can still be received.
            Request::Receive { queue, .. } if self.flip.waiting(queue) == 0 => {
                Some((queue, Call::Receive))
            }
            _ => None,
        };
        if let Some((queue, call)) = needs_peer
            && let Err(error) = self.peer_alive(queue, caller)
        {
            return self.reply_queue(caller, call, Err(error), platform);
        }
        let result = match request {
            Request::Send {
                queue,
                badge,
                pages,
                immediate,
            } => self
                .send_pages(caller, queue, badge, pages, platform)
                .map(|waiting| (queue, waiting, immediate)),
            Request::SendCopy {
                queue,
                badge,
                from,
                len,
                immediate,
            } => self
                .flip
                .send_copy(queue, badge, from, len, platform)
                .map(|waiting| (queue, waiting, immediate)),
            Request::Receive { queue, at } => {
                let result = self.flip.receive(queue, at, platform);
                // A sender told the queue was full can go on now.
                if result.is_ok() && self.flip.has_work(queue, End::Send) {
                    self.wake_on_queue(self.flip.ends(queue).0, queue, platform);
                }
                let result = result.map(|delivered| {
                    Received {
                        len: delivered.len,
                        badge: delivered.badge,
                        pages: delivered.pages,
                    }
                    .to_results()
                });
                return self.reply_queue(caller, Call::Receive, result, platform);
            }
            Request::Release {
                queue,
                guest,
                count,
            } => {
                let result = self.flip.release(queue, guest, count, platform);
                if result.is_ok() {
                    self.wake_on_queue(self.flip.ends(queue).0, queue, platform);
                }
                return self.reply_queue(caller, Call::Release, result.map(|()| [0; 3]), platform);
            }
            Request::Reclaim(queue) => {
                let result = self.flip.reclaim(queue).map(|guest| [guest, 1, 0]);
                return self.reply_queue(caller, Call::Reclaim, result, platform);
            }
        };
        match result {
            Ok((queue, waiting, immediate)) => {
                let receiver = self.flip.ends(queue).1;
                let woken = self.wake_on_queue(receiver, queue, platform);
                let reply = Reply::ok([waiting as u64, 0, 0]);
                // Queue ends belong to partitions of one vCPU (the package's rule).
                let receiver_vcpu = self.partitions[receiver].vcpus.start;
                let same_core = self.partitions[receiver].cpu == self.partitions[caller].cpu;
                if immediate && woken && same_core {
                    self.lend(caller, receiver_vcpu);
                    return Dispatch::new(Some(reply), Next::Switch(receiver_vcpu));
                }
                Dispatch::resume(reply)
            }
            Err(error) => self.reply_queue(caller, Call::Send, Err(error), platform),
        }
    }

    /// Flips the pages of a send. Kept out of line: its list buffer would
    /// otherwise sit in the frame of every hypercall.
    #[inline(never)]
    fn send_pages(
        &mut self,
        caller: usize,
        queue: usize,
        badge: u16,
        pages: Pages,
        platform: &mut impl Platform,
    ) -> Result<usize, Error> {
        let mut messages = [Outgoing { guest: 0, len: 0 }; BATCH_MAX];
        let count = match pages {
            Pages::One(message) => {
                messages[0] = message;
                1
            }
            Pages::List { at, count } => {
                let mut words = [0u8; BATCH_MAX * 8];
                platform.read_ram(at, &mut words[..count * 8]);
                for (message, word) in messages.iter_mut().zip(words.chunks_exact(8)) {
                    let entry = BatchEntry::from_word(u64::from_le_bytes(
                        word.try_into().expect("8 bytes"),
                    ));
                    *message = Outgoing {
                        guest: entry.page,
                        len: entry.len,
                    };
                }
                count
            }
        };
        self.flip
            .send(caller, queue, badge, &messages[..count], platform)
    }

    /// `wait` on a queue end: returns at once (result 1) if the end has work, else
    /// blocks the caller until it has, or its peer restarts or ends.
    pub(super) fn queue_wait(
        &mut self,
        caller: Caller,
        queue: usize,
        end: End,
        platform: &mut impl Platform,
    ) -> Dispatch {
        if self.flip.has_work(queue, end) {
            return Dispatch::resume(Reply::ok([1, 0, 0]));
        }
        if let Err(error) = self.peer_alive(queue, caller.partition) {
            return self.reply_queue(caller.partition, Call::Wait, Err(error), platform);
        }
        self.block_caller(caller, WaitOn::Queue(queue))
    }

    /// Wakes `partition` if it waits on `queue`. Returns whether it did.
    fn wake_on_queue(
        &mut self,
        partition: usize,
        queue: usize,
        platform: &mut impl Platform,
    ) -> bool {
        let now_us = platform.now_us();
        let woken = self.partitions[partition]
            .life
            .wake(WaitOn::Queue(queue), now_us);
        if woken {
            self.note_may_run(partition);
        }
        woken
    }

    /// Resumes the caller with `result`. A refusal is audited like any other,
    /// except those that are normal flow control on a queue (nothing to receive, a
    /// full queue, too much in flight, a peer restart).
    fn reply_queue(
        &mut self,
        caller: usize,
        number: Call,
        result: Result<[u64; 3], Error>,
        platform: &mut impl Platform,
    ) -> Dispatch {
        match result {
            Ok(results) => Dispatch::resume(Reply::ok(results)),
            Err(error) => {
                let flow = matches!(
                    error,
                    Error::Empty
                        | Error::QueueFull
                        | Error::FlightLimit
                        | Error::PeerRestarted
                        | Error::PeerEnded
                );
                if !flow {
                    self.note_refusal(caller, number as u64, error, platform);
                }
                Dispatch::resume(Reply::error(error))
            }
        }
    }

    /// Fails with [`Error::PeerEnded`] when the end of `queue` that is not
    /// `caller` belongs to a partition that exited or was stopped.
    fn peer_alive(&self, queue: usize, caller: usize) -> Result<(), Error> {
        let (sender, receiver) = self.flip.ends(queue);
        let peer = if sender == caller { receiver } else { sender };
        if self.partitions[peer].life.ended() {
            return Err(Error::PeerEnded);
        }
        Ok(())
    }
}

/// The flags of a send: whether it is immediate; unknown bits are refused.
fn known_flags(value: u64) -> Result<bool, Error> {
    if value & !flags::ALL != 0 {
        Err(Error::InvalidArgument)
    } else {
        Ok(value & flags::IMMEDIATE != 0)
    }
}
