//! Page-flip messaging: the queues between partitions and the ledger of every frame
//! that has left its place.
//!
//! **Model (a loan).** Each page of a partition's RAM has a *slot*: normally it is
//! backed by its natural frame (the frame at the same offset of the partition's
//! machine RAM) and mapped. Sending a page lends its frame: the page is unmapped
//! from the sender (its slot becomes a hole), the frame travels on the queue, is
//! mapped into the receiver's receive window when received, may be sent onward, and
//! when a receiver releases it, it is scrubbed and mapped back into its slot, and
//! the sender finds its page again with `reclaim`. So every partition's frame count
//! (the slots of its RAM, present or lent) stays its RAM size, inside the
//! `[min, max]` of its description, whatever it sends or receives; frames in a
//! receive window are charged to the slot they belong to.
//!
//! **Restarts.** A restarted partition gets all its slots back at once: frames still
//! on a queue come home; a frame that a receiver holds stays with the receiver (its
//! mappings are not touched, so no other core's translations go stale) and becomes
//! an *orphan*, while the slot is filled with a frame from the kernel's *pool*; an
//! orphan goes to the pool, scrubbed, when it is released. A restarted receiver's
//! held frames are unmapped, scrubbed and sent home, and the messages waiting for
//! it go home unread. The surviving end of each queue of a restarted partition gets
//! [`Error::PeerRestarted`] once on its next call.
//!
//! Invariants (checked by the census in the tests, and property-tested there):
//! - every tracked frame is in exactly one place: mapped in one partition (in a RAM
//!   slot or in its window), in one queue, or free in the pool; the total never
//!   changes;
//! - a frame is mapped in at most one partition, at one address;
//! - a queue's pages away (sent from their slot through it and not yet home or
//!   released) never exceed its `max_in_flight`, and its messages never exceed its
//!   depth; orphans count against the queue they left by until released, which
//!   bounds the pool: it holds the sum of every queue's `max_in_flight` frames, and
//!   a restart always finds enough free frames for its holes;
//! - every operation checks all its arguments first and changes nothing when it
//!   fails.

use alloc::boxed::Box;
use alloc::vec::Vec;

use septum_abi::Error;
use septum_abi::layout::{PAGE_SIZE, RAM_BASE, RECEIVE_WINDOW_BASE};
use septum_abi::queue::{BATCH_MAX, COPY_MAX, MESSAGE_MAX};

use crate::fixed::{FixedDeque, FixedVec};
use crate::memory::Range;
use crate::package::{Package, QueueSpec};
use crate::resources::{MAX_MMIO, Mmio};

/// Most queues in a system.
pub const MAX_QUEUES: usize = 64;
/// Most messages, and most pages, one queue holds (its depth is at most this).
pub const QUEUE_MAX: usize = 64;
/// Most pages away from their slots at once in the whole system. A queue's
/// `max_in_flight` is at most its depth, so this holds by construction; the pool
/// the kernel keeps for them is sized from the package, not from this.
pub const FLIGHT_MAX: usize = MAX_QUEUES * QUEUE_MAX;
/// Most pages of one message.
const MESSAGE_PAGES: usize = (MESSAGE_MAX / PAGE_SIZE) as usize;

/// What the kernel does to second-stage mappings and frames for the ledger.
pub trait Pages {
    /// Maps guest page `guest` of `partition` to `frame`.
    fn map_page(&mut self, partition: usize, guest: u64, frame: u64);
    /// Unmaps guest page `guest` of `partition`.
    fn unmap_page(&mut self, partition: usize, guest: u64);
    /// Makes the unmaps of `partition` so far take effect before it next runs.
    fn flush_translations(&mut self, partition: usize);
    /// Fills `frame` with zeros.
    fn scrub_page(&mut self, frame: u64);
    /// Copies `len` bytes of machine memory from `from` to `to`.
    fn copy(&mut self, from: u64, to: u64, len: u64);
}

/// Why a system's queues could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlipError {
    /// More queues than [`MAX_QUEUES`].
    TooManyQueues,
    /// The kernel memory handed over is not the size [`Flip::kernel_memory`] asked.
    KernelMemory,
}

/// What the ledger needs to know of a partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct Geometry {
    /// Its machine RAM (its natural frames, in guest order).
    pub host_ram: Range,
    /// Bytes of its receive window.
    pub window: u64,
    /// Its granted MMIO blocks (unused entries empty).
    pub devices: [Mmio; MAX_MMIO],
}

/// One partition as the ledger keeps it.
#[derive(Clone, Copy, Debug, Default)]
struct Layout {
    guest_ram: Range,
    host_ram: Range,
    window: Range,
    devices: [Range; MAX_MMIO],
}

/// A page travelling on a queue.
#[derive(Clone, Copy, Debug)]
struct Page {
    frame: u64,
    /// The queue it left its slot by (counts against that queue's flight limit).
    origin: u8,
}

/// A message on a queue: its pages are the next `pages` entries of the page ring,
/// or its bytes are in copy slot `copy_slot`.
#[derive(Clone, Copy, Debug)]
struct Message {
    len: u32,
    badge: u16,
    pages: u8,
    copy_slot: Option<u8>,
}

/// One queue: a ring of messages from `sender` to `receiver`.
#[derive(Debug)]
struct Queue {
    sender: usize,
    receiver: usize,
    depth: usize,
    max_in_flight: usize,
    /// Room for `depth` messages.
    messages: FixedDeque<Message>,
    /// Room for [`QUEUE_MAX`] pages (forwarded pages count against the queue
    /// they first left by, so this is not `max_in_flight`).
    pages: FixedDeque<Page>,
    /// Pages that left their slot through this queue and are not home yet.
    away: usize,
    /// Guest addresses of the sender's pages that came home, for `reclaim`.
    /// Room for `max_in_flight` addresses.
    returned: FixedDeque<u64>,
    /// Copy slots in use (bit `i`: slot `i`).
    copy_used: u64,
    /// Machine address of copy slot 0.
    copy_base: u64,
    /// Per end (0 sender, 1 receiver): its peer restarted and it has not been told.
    peer_restarted: [bool; 2],
    /// The sender was last told the queue is full: room is work for it.
    told_full: bool,
}

/// A RAM slot not backed by its natural frame and mapped.
#[derive(Clone, Copy, Debug)]
struct Displaced {
    partition: u8,
    guest: u64,
    /// The frame that belongs to the slot: its natural one, or a pool substitute.
    frame: u64,
    /// Whether that frame is in the slot (else it is away on a queue or held).
    present: bool,
}

/// A frame mapped in a receive window.
#[derive(Clone, Copy, Debug)]
struct Held {
    partition: u8,
    guest: u64,
    frame: u64,
    /// The queue it arrived on (release names it).
    via: u8,
    /// The queue it first left its slot by.
    origin: u8,
}

/// Which end of a queue a partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The send end.
    Send,
    /// The receive end.
    Receive,
}

/// A message to send by page flip: `len` bytes in the pages from `guest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Page-aligned guest address of its first page.
    pub guest: u64,
    /// Length in bytes, 1 to [`MESSAGE_MAX`].
    pub len: u64,
}

/// What a receive delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Bytes.
    pub len: u64,
    /// The sender's badge.
    pub badge: u16,
    /// Pages mapped at the receive address; 0 for a copied message.
    pub pages: u64,
}

/// Where the receiver wants a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveAt {
    /// Guest address in its receive window for flipped pages.
    pub window: u64,
    /// Machine address of its copy buffer ([`COPY_MAX`] bytes, checked by the
    /// caller), if it gave a valid one.
    pub copy_buffer: Option<u64>,
}

/// Frame totals by place, for the console and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Frames mapped in partitions (RAM slots and receive windows).
    pub mapped: u64,
    /// Frames on queues.
    pub queued: u64,
    /// Free frames in the pool.
    pub free: u64,
}

impl Totals {
    /// Every tracked frame.
    pub fn total(&self) -> u64 {
        self.mapped + self.queued + self.free
    }
}

/// The queues and the frame ledger.
#[derive(Debug)]
pub struct Flip {
    parts: Box<[Layout]>,
    queues: Box<[Queue]>,
    /// Room for every page in flight (the sum of the queues' `max_in_flight`).
    pool: FixedVec<u64>,
    /// RAM slots not backed by their natural frame, present or not: room for two
    /// per page in flight (one lent, one substituted after a restart).
    displaced: FixedVec<Displaced>,
    /// Room for every page in flight.
    held: FixedVec<Held>,
}

fn pages_of(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE)
}

impl Flip {
    /// Bytes of kernel memory `queues` need: the pool (one frame per page any
    /// queue may have away) and each queue's copy slots.
    pub fn kernel_memory(queues: impl Iterator<Item = QueueSpec>) -> u64 {
        queues
            .map(|q| u64::from(q.max_in_flight) * PAGE_SIZE + u64::from(q.depth) * COPY_MAX)
            .sum::<u64>()
            .next_multiple_of(PAGE_SIZE)
    }

    /// The ledger for the partitions of `package`, which got `host_ram` (in package
    /// order), and its queues, with `kernel` ([`Flip::kernel_memory`] bytes,
    /// page-aligned, zeroed) for the pool and the copy slots.
    pub fn new(
        package: &Package<'_>,
        host_ram: &[Range],
        kernel: Range,
    ) -> Result<Flip, FlipError> {
        let parts = package.partitions().zip(host_ram).map(|(spec, host)| {
            let mut devices = [Mmio::default(); MAX_MMIO];
            devices[..spec.resources.mmio().len()].copy_from_slice(spec.resources.mmio());
            Geometry {
                host_ram: *host,
                window: spec.resources.receive_window,
                devices,
            }
        });
        let queues: Vec<QueueSpec> = package.queues().collect();
        Flip::from_parts(parts, &queues, kernel)
    }

    /// The ledger for partitions of `parts` and `queues`; see [`Flip::new`].
    pub fn from_parts(
        parts: impl Iterator<Item = Geometry>,
        queues: &[QueueSpec],
        kernel: Range,
    ) -> Result<Flip, FlipError> {
        if queues.len() > MAX_QUEUES {
            return Err(FlipError::TooManyQueues);
        }
        let mut layouts = Vec::new();
        for part in parts {
            let mut devices = [Range::default(); MAX_MMIO];
            for (slot, block) in devices.iter_mut().zip(part.devices.iter()) {
                *slot = Range::from_start_size(block.base, block.size).unwrap_or_default();
            }
            let layout = Layout {
                guest_ram: Range::from_start_size(RAM_BASE, part.host_ram.size())
                    .unwrap_or_default(),
                host_ram: part.host_ram,
                window: Range::from_start_size(RECEIVE_WINDOW_BASE, part.window)
                    .unwrap_or_default(),
                devices,
            };
            layouts.push(layout);
        }
        if kernel.size() != Flip::kernel_memory(queues.iter().copied())
            || !kernel.start.is_multiple_of(PAGE_SIZE)
        {
            return Err(FlipError::KernelMemory);
        }
        let in_flight: u64 = queues.iter().map(|q| u64::from(q.max_in_flight)).sum();
        let flight = in_flight as usize;
        let mut pool = FixedVec::with_capacity(flight);
        for page in 0..in_flight {
            // Cannot fail: the pool has room for exactly these.
            let _ = pool.push(kernel.start + page * PAGE_SIZE);
        }
        let mut copy_base = kernel.start + in_flight * PAGE_SIZE;
        let mut rings = Vec::with_capacity(queues.len());
        for spec in queues {
            let queue = Queue {
                sender: spec.sender,
                receiver: spec.receiver,
                depth: spec.depth as usize,
                max_in_flight: spec.max_in_flight as usize,
                messages: FixedDeque::with_capacity(spec.depth as usize),
                pages: FixedDeque::with_capacity(QUEUE_MAX),
                away: 0,
                returned: FixedDeque::with_capacity(spec.max_in_flight as usize),
                copy_used: 0,
                copy_base,
                peer_restarted: [false; 2],
                told_full: false,
            };
            copy_base += u64::from(spec.depth) * COPY_MAX;
            rings.push(queue);
        }
        Ok(Flip {
            parts: layouts.into_boxed_slice(),
            queues: rings.into_boxed_slice(),
            pool,
            displaced: FixedVec::with_capacity(2 * flight),
            held: FixedVec::with_capacity(flight),
        })
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The partitions at the two ends of `queue`: (sender, receiver).
    pub fn ends(&self, queue: usize) -> (usize, usize) {
        let q = &self.queues[queue];
        (q.sender, q.receiver)
    }

    /// Whether guest range `buffer` of `partition` lies in RAM pages backed by
    /// their natural frames, so the kernel may reach it at the same offset of the
    /// partition's machine RAM.
    pub fn natural(&self, partition: usize, buffer: Range) -> bool {
        !self.displaced.iter().any(|d| {
            usize::from(d.partition) == partition
                && buffer.overlaps(&Range {
                    start: d.guest,
                    end: d.guest + PAGE_SIZE,
                })
        })
    }

    /// The frame backing RAM page `guest` of `partition` (its slot's frame, present
    /// or not).
    pub fn slot_frame(&self, partition: usize, guest: u64) -> u64 {
        self.displaced
            .iter()
            .find(|d| usize::from(d.partition) == partition && d.guest == guest)
            .map_or_else(
                || {
                    let g = &self.parts[partition];
                    g.host_ram.start + (guest - g.guest_ram.start)
                },
                |d| d.frame,
            )
    }

    /// The frame mapped at kept RAM page `guest` of `partition` now: its natural
    /// frame, or the substitute a restart gave it; `None` while the page is away
    /// (sent, and not home yet).
    pub fn present_frame(&self, partition: usize, guest: u64) -> Option<u64> {
        match self
            .displaced
            .iter()
            .find(|d| usize::from(d.partition) == partition && d.guest == guest)
        {
            Some(d) => d.present.then_some(d.frame),
            None => Some(self.slot_frame(partition, guest)),
        }
    }

    /// Whether page `guest` of `partition` is on a queue or held from one: a RAM
    /// page it sent that is not home yet, or a page in its receive window.
    pub fn in_flight(&self, partition: usize, guest: u64) -> bool {
        let away = self
            .displaced
            .iter()
            .any(|d| usize::from(d.partition) == partition && d.guest == guest && !d.present);
        away || self
            .held
            .iter()
            .any(|h| usize::from(h.partition) == partition && h.guest == guest)
    }

    /// Tells the end `end` of `queue` held by the caller, once, that its peer
    /// restarted.
    fn take_peer_restarted(&mut self, queue: usize, end: End) -> Result<(), Error> {
        let flag = &mut self.queues[queue].peer_restarted[end as usize];
        if core::mem::take(flag) {
            return Err(Error::PeerRestarted);
        }
        Ok(())
    }

    /// Where page `guest` of `partition` stands as a page to send: `Ok(None)` for
    /// a present RAM page, `Ok(Some(i))` for held window page `held[i]`.
    fn sendable(&self, partition: usize, guest: u64) -> Result<Option<usize>, Error> {
        let g = &self.parts[partition];
        let page = Range {
            start: guest,
            end: guest + PAGE_SIZE,
        };
        if g.devices.iter().any(|d| d.overlaps(&page)) {
            return Err(Error::DevicePage);
        }
        if g.guest_ram.contains_range(&page) {
            let away = self
                .displaced
                .iter()
                .any(|d| usize::from(d.partition) == partition && d.guest == guest && !d.present);
            return if away { Err(Error::InFlight) } else { Ok(None) };
        }
        self.held
            .iter()
            .position(|h| usize::from(h.partition) == partition && h.guest == guest)
            .map(Some)
            .ok_or(Error::NotOwned)
    }

    /// Sends `messages` (one, or a batch of one-page messages) from `sender` on
    /// `queue` with badge `badge`. Returns the messages now waiting.
    pub fn send(
        &mut self,
        sender: usize,
        queue: usize,
        badge: u16,
        messages: &[Outgoing],
        pages: &mut impl Pages,
    ) -> Result<usize, Error> {
        self.take_peer_restarted(queue, End::Send)?;
        let mut seen = heapless::Vec::<u64, { MESSAGE_PAGES * BATCH_MAX }>::new();
        let mut from_slots = 0;
        for message in messages {
            if message.len == 0 || message.len > MESSAGE_MAX {
                return Err(Error::TooLong);
            }
            if !message.guest.is_multiple_of(PAGE_SIZE) {
                return Err(Error::InvalidArgument);
            }
            for index in 0..pages_of(message.len) {
                let guest = message
                    .guest
                    .checked_add(index * PAGE_SIZE)
                    .ok_or(Error::NotOwned)?;
                if seen.contains(&guest) {
                    return Err(Error::InvalidArgument);
                }
                let _ = seen.push(guest);
                if self.sendable(sender, guest)?.is_none() {
                    from_slots += 1;
                }
            }
        }
        let q = &mut self.queues[queue];
        if q.messages.len() + messages.len() > q.depth
            || q.pages.len() + seen.len() > q.pages.capacity()
        {
            q.told_full = true;
            return Err(Error::QueueFull);
        }
        if q.away + from_slots > q.max_in_flight {
            return Err(Error::FlightLimit);
        }
        // Everything is checked: carry it out.
        q.told_full = false;
        for message in messages {
            for index in 0..pages_of(message.len) {
                let guest = message.guest + index * PAGE_SIZE;
                let page = match self.sendable(sender, guest).expect("checked above") {
                    None => {
                        let frame = self.slot_frame(sender, guest);
                        self.mark_away(sender, guest, frame);
                        self.queues[queue].away += 1;
                        Page {
                            frame,
                            origin: queue as u8,
                        }
                    }
                    Some(held) => {
                        let held = self.held.swap_remove(held);
                        Page {
                            frame: held.frame,
                            origin: held.origin,
                        }
                    }
                };
                pages.unmap_page(sender, guest);
                let _ = self.queues[queue].pages.push_back(page);
            }
            let _ = self.queues[queue].messages.push_back(Message {
                len: message.len as u32,
                badge,
                pages: pages_of(message.len) as u8,
                copy_slot: None,
            });
        }
        pages.flush_translations(sender);
        Ok(self.queues[queue].messages.len())
    }

    fn mark_away(&mut self, partition: usize, guest: u64, frame: u64) {
        if let Some(d) = self
            .displaced
            .iter_mut()
            .find(|d| usize::from(d.partition) == partition && d.guest == guest)
        {
            d.present = false;
            return;
        }
        // Cannot fail: at most FLIGHT_MAX slots are away and FLIGHT_MAX substituted.
        let _ = self.displaced.push(Displaced {
            partition: partition as u8,
            guest,
            frame,
            present: false,
        });
    }

    /// Copies `len` bytes at machine address `from` (the sender's buffer, checked
    /// by the caller) into a copy slot of `queue`. Returns the messages waiting.
    pub fn send_copy(
        &mut self,
        queue: usize,
        badge: u16,
        from: u64,
        len: u64,
        pages: &mut impl Pages,
    ) -> Result<usize, Error> {
        self.take_peer_restarted(queue, End::Send)?;
        if len > COPY_MAX {
            return Err(Error::TooLong);
        }
        let q = &mut self.queues[queue];
        if q.messages.len() >= q.depth {
            q.told_full = true;
            return Err(Error::QueueFull);
        }
        q.told_full = false;
        let slot = (!q.copy_used).trailing_zeros() as u8;
        q.copy_used |= 1 << slot;
        pages.copy(from, q.copy_base + u64::from(slot) * COPY_MAX, len);
        let _ = q.messages.push_back(Message {
            len: len as u32,
            badge,
            pages: 0,
            copy_slot: Some(slot),
        });
        Ok(q.messages.len())
    }

    /// Whether the end `end` of `queue` has work: a message to receive, a page to
    /// reclaim, room on a queue its sender was last told is full, or news that its
    /// peer restarted.
    pub fn has_work(&self, queue: usize, end: End) -> bool {
        let q = &self.queues[queue];
        q.peer_restarted[end as usize]
            || match end {
                End::Receive => !q.messages.is_empty(),
                End::Send => !q.returned.is_empty() || (q.told_full && q.messages.len() < q.depth),
            }
    }

    /// Takes the oldest message of `queue` for its receiver.
    pub fn receive(
        &mut self,
        queue: usize,
        at: ReceiveAt,
        pages: &mut impl Pages,
    ) -> Result<Delivered, Error> {
        self.take_peer_restarted(queue, End::Receive)?;
        let receiver = self.queues[queue].receiver;
        let message = *self.queues[queue].messages.front().ok_or(Error::Empty)?;
        if let Some(slot) = message.copy_slot {
            let to = at.copy_buffer.ok_or(Error::BadAddress)?;
            let q = &mut self.queues[queue];
            pages.copy(
                q.copy_base + u64::from(slot) * COPY_MAX,
                to,
                u64::from(message.len),
            );
            q.copy_used &= !(1 << slot);
            q.messages.pop_front();
            return Ok(Delivered {
                len: u64::from(message.len),
                badge: message.badge,
                pages: 0,
            });
        }
        let count = u64::from(message.pages);
        let window = self.parts[receiver].window;
        let wanted =
            Range::from_start_size(at.window, count * PAGE_SIZE).ok_or(Error::BadWindow)?;
        let busy = self.held.iter().any(|h| {
            usize::from(h.partition) == receiver
                && wanted.contains_range(&Range {
                    start: h.guest,
                    end: h.guest + PAGE_SIZE,
                })
        });
        if !at.window.is_multiple_of(PAGE_SIZE) || !window.contains_range(&wanted) || busy {
            return Err(Error::BadWindow);
        }
        let q = &mut self.queues[queue];
        q.messages.pop_front();
        for index in 0..count {
            let page = q
                .pages
                .pop_front()
                .expect("a message's pages are on its ring");
            let guest = at.window + index * PAGE_SIZE;
            pages.map_page(receiver, guest, page.frame);
            // Cannot fail: at most FLIGHT_MAX pages are away, held ones included.
            let _ = self.held.push(Held {
                partition: receiver as u8,
                guest,
                frame: page.frame,
                via: queue as u8,
                origin: page.origin,
            });
        }
        Ok(Delivered {
            len: u64::from(message.len),
            badge: message.badge,
            pages: count,
        })
    }

    /// Gives back `count` pages at window address `guest` of `queue`'s receiver,
    /// received on `queue`: unmapped, scrubbed, and home (or to the pool).
    pub fn release(
        &mut self,
        queue: usize,
        guest: u64,
        count: u64,
        pages: &mut impl Pages,
    ) -> Result<(), Error> {
        self.take_peer_restarted(queue, End::Receive)?;
        let receiver = self.queues[queue].receiver;
        if count == 0 || count > MESSAGE_PAGES as u64 || !guest.is_multiple_of(PAGE_SIZE) {
            return Err(Error::InvalidArgument);
        }
        for index in 0..count {
            let page = guest
                .checked_add(index * PAGE_SIZE)
                .ok_or(Error::NotOwned)?;
            let held = self.held.iter().any(|h| {
                usize::from(h.partition) == receiver
                    && h.guest == page
                    && usize::from(h.via) == queue
            });
            if !held {
                return Err(Error::NotOwned);
            }
        }
        for index in 0..count {
            let page = guest + index * PAGE_SIZE;
            let at = self
                .held
                .iter()
                .position(|h| usize::from(h.partition) == receiver && h.guest == page)
                .expect("checked above");
            let held = self.held.swap_remove(at);
            pages.unmap_page(receiver, page);
            self.go_home(held.frame, usize::from(held.origin), pages);
        }
        pages.flush_translations(receiver);
        Ok(())
    }

    /// Scrubs `frame`, which left its slot through `origin`, and puts it back in its
    /// slot (or in the pool if it is an orphan). Every frame coming back is
    /// scrubbed: a receiver may have written to it, and one that was not received
    /// costs one page of zeros.
    fn go_home(&mut self, frame: u64, origin: usize, pages: &mut impl Pages) {
        pages.scrub_page(frame);
        self.queues[origin].away -= 1;
        let slot = self
            .displaced
            .iter()
            .position(|d| d.frame == frame && !d.present);
        let Some(slot) = slot else {
            // Cannot fail: the pool holds at most FLIGHT_MAX frames.
            let _ = self.pool.push(frame);
            return;
        };
        let d = self.displaced[slot];
        let partition = usize::from(d.partition);
        pages.map_page(partition, d.guest, frame);
        let natural = self.parts[partition].host_ram.start
            + (d.guest - self.parts[partition].guest_ram.start);
        if frame == natural {
            self.displaced.swap_remove(slot);
        } else {
            self.displaced[slot].present = true;
        }
        let q = &mut self.queues[origin];
        if q.sender == partition {
            // Cannot fail: at most max_in_flight pages are away through a queue.
            let _ = q.returned.push_back(d.guest);
        }
    }

    /// Takes back a page of `queue`'s sender that came home.
    pub fn reclaim(&mut self, queue: usize) -> Result<u64, Error> {
        self.take_peer_restarted(queue, End::Send)?;
        self.queues[queue].returned.pop_front().ok_or(Error::Empty)
    }

    /// Frames by place.
    pub fn totals(&self) -> Totals {
        let slots: u64 = self
            .parts
            .iter()
            .map(|g| g.guest_ram.size() / PAGE_SIZE)
            .sum();
        let away = self.displaced.iter().filter(|d| !d.present).count() as u64;
        let queued: u64 = self.queues.iter().map(|q| q.pages.len() as u64).sum();
        Totals {
            mapped: slots - away + self.held.len() as u64,
            queued,
            free: self.pool.len() as u64,
        }
    }

    /// Pages away through `queue` (sent from a slot, not home yet).
    pub fn away(&self, queue: usize) -> usize {
        self.queues[queue].away
    }

    /// Messages waiting on `queue`.
    pub fn waiting(&self, queue: usize) -> usize {
        self.queues[queue].messages.len()
    }

    /// The most messages `queue` holds (its description's depth).
    pub fn depth(&self, queue: usize) -> usize {
        self.queues[queue].depth
    }
}

mod restart;
#[cfg(test)]
mod tests;
