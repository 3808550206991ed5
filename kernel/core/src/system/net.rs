//! The network joined to the rest of the kernel: a frame a partition's
//! virtio-net driver sends is copied into kernel storage, handed to the router
//! ([`crate::net`]), and written into the receiver's next posted buffer; the
//! service VM reads a port's counters with [`Call::NetInfo`](septum_abi::Call::NetInfo).
//!
//! Invariants:
//! - one unit of the sender's owed work carries one frame, whole: taken from
//!   its transmit queue, routed, and written into at most one receive queue
//!   (or dropped), all in the sender's turn, so the copy counts against the
//!   sender's time and never against the receiver's;
//! - the receiver sees the kernel's copy, never the sender's buffer: the
//!   sender cannot change a frame after the router read it;
//! - a violation by the sender's driver breaks the sender's device, one by the
//!   receiver's (a bad receive chain) the receiver's; the frame is then not
//!   delivered, and the other partition's device is untouched.

use septum_abi::net::{COUNTER_WORDS, DropReason};
use septum_abi::virtio::net::{RECEIVE_QUEUE, TRANSMIT_QUEUE};
use septum_abi::virtio::{Device, Violation, interrupt};

use super::{Dispatch, Platform, Reply, System, emit};
use crate::event::Event;
use crate::memory::Range;
use crate::net::{Frame, Route};
use crate::virtio::net::{read_frame, write_frame};

impl System {
    /// One unit of partition `index`'s virtio-net work: one frame from its
    /// transmit queue, routed and delivered (in its turn).
    pub(super) fn net_work(&mut self, index: usize, platform: &mut impl Platform) {
        let mut frame = Frame::default();
        let taken = self.take_frame(index, &mut frame, platform);
        let route = match taken {
            Err(violation) => {
                self.device_broken(index, Device::Net, violation.into(), platform);
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(reason))) => self.router.drop_unread(index, reason),
            Ok(Some(Ok(()))) => self.router.route(index, &mut frame),
        };
        if let Route::Deliver { to, .. } = route {
            let written = self.deliver(to, &frame, platform);
            self.router.delivered(index, route, written);
        }
    }

    /// Takes the next chain of partition `index`'s transmit queue and copies
    /// its frame into `frame` (or says why it is dropped unread), and gives
    /// the chain back. `Ok(None)`: nothing to take (a receive notification).
    fn take_frame(
        &mut self,
        index: usize,
        frame: &mut Frame,
        platform: &mut impl Platform,
    ) -> Result<Option<Result<(), DropReason>>, Violation> {
        let Some(mut devices) = self.partitions[index].virtio.take() else {
            return Ok(None);
        };
        let virtio = devices.get_mut(Device::Net).expect("it has work");
        let transport = &mut virtio.transport;
        let mut taken = Ok(None);
        // Posted receive buffers wait for frames: nothing to do for them.
        if transport.next_notified() == Some(TRANSMIT_QUEUE)
            && let Some(queue) = transport.queue(TRANSMIT_QUEUE)
        {
            let mut memory = self.memory(index, platform);
            taken = queue.peek(&mut memory).and_then(|chain| {
                let Some(chain) = chain else {
                    return Ok(None);
                };
                let read = read_frame(&chain, &mut memory, frame)?;
                queue.consume();
                queue.push_used(&mut memory, chain.head, 0)?;
                Ok(Some(read))
            });
            if let Ok(Some(_)) = taken {
                transport.renotify(TRANSMIT_QUEUE);
            }
        }
        let raise = matches!(taken, Ok(Some(_))) && transport.interrupt(interrupt::USED_BUFFER);
        self.partitions[index].virtio = Some(devices);
        if raise {
            self.raise_device_interrupt(index, Device::Net);
        }
        taken
    }

    /// Writes `frame` into partition `to`'s next posted receive buffer; false
    /// if it has none (or its driver is not running, or broke the rules).
    fn deliver(&mut self, to: usize, frame: &Frame, platform: &mut impl Platform) -> bool {
        let Some(mut devices) = self.partitions[to].virtio.take() else {
            return false;
        };
        let written = devices
            .get_mut(Device::Net)
            .filter(|virtio| virtio.transport.live())
            .and_then(|virtio| {
                let transport = &mut virtio.transport;
                let queue = transport.queue(RECEIVE_QUEUE)?;
                let mut memory = self.memory(to, platform);
                let written = queue.peek(&mut memory).and_then(|chain| {
                    let Some(chain) = chain else {
                        return Ok(false);
                    };
                    let len = write_frame(&chain, &mut memory, frame)?;
                    queue.consume();
                    queue.push_used(&mut memory, chain.head, len)?;
                    Ok(true)
                });
                let raise = written == Ok(true) && transport.interrupt(interrupt::USED_BUFFER);
                Some((written, raise))
            });
        self.partitions[to].virtio = Some(devices);
        match written {
            None => false,
            Some((Err(violation), _)) => {
                self.device_broken(to, Device::Net, violation.into(), platform);
                false
            }
            Some((Ok(written), raise)) => {
                if raise {
                    self.raise_device_interrupt(to, Device::Net);
                }
                if written {
                    self.note_may_run(to);
                }
                written
            }
        }
    }

    /// Every port's counters, as the system ends.
    pub(super) fn report_net(&self, platform: &mut impl Platform) {
        for (index, partition) in self.partitions.iter().enumerate() {
            let counters = self.router.counters(index);
            if counters.address != 0 {
                let name = partition.name();
                emit(platform, Event::NetCounters { name, counters });
            }
        }
    }

    /// [`Call::NetInfo`](septum_abi::Call::NetInfo): partition `target`'s port
    /// counters into the service VM's `buffer`.
    pub(super) fn net_info(
        &mut self,
        target: usize,
        buffer: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let words = self.router.counters(target).to_words();
        let mut bytes = [0u8; COUNTER_WORDS * 8];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        platform.write_ram(buffer.start, &bytes);
        Dispatch::resume(Reply::ok([0; 3]))
    }
}
