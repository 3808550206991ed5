//! Queues: typed wrappers over `send`, `send_batch`, `receive`, `release`,
//! `reclaim` and `wait`.
//!
//! A [`Sender`] owns the capability slot of a queue's send end; a [`Receiver`] the
//! receive end's. [`Sender::send`] picks the path by length: at most
//! [`COPY_THRESHOLD`] bytes are copied through the kernel, longer messages are
//! flipped (their pages leave this partition until the receiver releases them;
//! [`Sender::reclaim`] hands them back). A received flip is mapped in this
//! partition's receive window; [`Received::release`] gives its pages back.

use septum_abi::layout::{PAGE_SIZE, RECEIVE_WINDOW_BASE};
use septum_abi::queue::{self, BatchEntry, flags};
pub use septum_abi::queue::{BATCH_MAX, COPY_MAX};

use crate::{Call, Error, typed};

/// The longest message [`Sender::send`] copies rather than flips: one page.
/// Chosen from the flip-versus-copy benchmark (README, "Messaging"): up to a page
/// a copy costs less than the remaps, the invalidations, the scrub and the
/// reclaim of a flip; above it a flip costs less than the copies.
pub const COPY_THRESHOLD: u64 = COPY_MAX;

/// How a send reaches the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver is woken (if it waits) and runs in its next window.
    Deferred,
    /// If the receiver waits on the same core, it runs at once, in the rest of
    /// the sender's window.
    Immediate,
}

impl Delivery {
    fn flags(self) -> u64 {
        match self {
            Delivery::Deferred => 0,
            Delivery::Immediate => flags::IMMEDIATE,
        }
    }
}

/// The send end of a queue.
#[derive(Clone, Copy, Debug)]
pub struct Sender {
    slot: u64,
}

impl Sender {
    /// The send end whose capability is in `slot`.
    pub const fn new(slot: u64) -> Sender {
        Sender { slot }
    }

    /// Sends `len` bytes at `address`: copied if `len` is at most
    /// [`COPY_THRESHOLD`], else flipped (then `address` must be page-aligned, and
    /// the pages leave this partition). Returns the messages now waiting.
    pub fn send(&self, address: u64, len: u64, delivery: Delivery) -> Result<u64, Error> {
        if len <= COPY_THRESHOLD {
            self.send_copy(address, len, delivery)
        } else {
            self.send_flip(address, len, delivery)
        }
    }

    /// Sends the pages holding `len` bytes from page-aligned `address` by flipping
    /// them, whatever the length.
    pub fn send_flip(&self, address: u64, len: u64, delivery: Delivery) -> Result<u64, Error> {
        typed(
            Call::Send,
            [self.slot, address, len, delivery.flags(), 0, 0],
        )
        .map(|r| r[0])
    }

    /// Copies `len` (at most [`COPY_MAX`]) bytes at `address` into the kernel.
    pub fn send_copy(&self, address: u64, len: u64, delivery: Delivery) -> Result<u64, Error> {
        let flags = flags::COPY | delivery.flags();
        typed(Call::Send, [self.slot, address, len, flags, 0, 0]).map(|r| r[0])
    }

    /// Flips several one-page messages with one call, one translation
    /// invalidation and one wake-up: `(page address, length)` pairs, at most
    /// [`BATCH_MAX`]. All are sent or none.
    pub fn send_batch(&self, pages: &[(u64, u64)], delivery: Delivery) -> Result<u64, Error> {
        if pages.is_empty() || pages.len() > BATCH_MAX {
            return Err(Error::InvalidArgument);
        }
        let mut list = [0u64; BATCH_MAX];
        for (word, &(page, len)) in list.iter_mut().zip(pages) {
            *word = BatchEntry { page, len }
                .to_word()
                .ok_or(Error::InvalidArgument)?;
        }
        let args = [
            self.slot,
            list.as_ptr() as u64,
            pages.len() as u64,
            delivery.flags(),
            0,
            0,
        ];
        typed(Call::SendBatch, args).map(|r| r[0])
    }

    /// A page of this partition that a receiver released, usable again.
    pub fn reclaim(&self) -> Result<Option<u64>, Error> {
        match typed(Call::Reclaim, [self.slot, 0, 0, 0, 0, 0]) {
            Ok([address, ..]) => Ok(Some(address)),
            Err(Error::Empty) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Blocks until a page can be reclaimed (or the receiver restarted: then the
    /// next call says [`Error::PeerRestarted`]).
    pub fn wait(&self) -> Result<(), Error> {
        wait(self.slot)
    }
}

/// The receive end of a queue.
#[derive(Clone, Copy, Debug)]
pub struct Receiver {
    slot: u64,
}

/// A message taken off a queue.
#[derive(Debug)]
pub struct Received<'a> {
    /// Its bytes: in the receive window for a flip, in the caller's copy buffer
    /// for a copy.
    pub bytes: &'a [u8],
    /// The sender's badge (its partition index).
    pub badge: u16,
    /// Pages mapped in the receive window (0 for a copy).
    pub pages: u64,
    address: u64,
    slot: u64,
}

impl Received<'_> {
    /// Gives a flipped message's pages back to their sender (nothing to do for a
    /// copy).
    pub fn release(self) -> Result<(), Error> {
        if self.pages == 0 {
            return Ok(());
        }
        typed(
            Call::Release,
            [self.slot, self.address, self.pages, 0, 0, 0],
        )
        .map(|_| ())
    }

    /// Where a flipped message is mapped (for sending it onward).
    pub fn address(&self) -> u64 {
        self.address
    }
}

/// A buffer for copied messages.
#[repr(C, align(8))]
pub struct CopyBuffer(pub [u8; COPY_MAX as usize]);

impl Default for CopyBuffer {
    fn default() -> Self {
        CopyBuffer([0; COPY_MAX as usize])
    }
}

impl Receiver {
    /// The receive end whose capability is in `slot`.
    pub const fn new(slot: u64) -> Receiver {
        Receiver { slot }
    }

    /// Takes the oldest message without waiting: a flip is mapped at `window_page`
    /// (page index in this partition's receive window), a copy lands in `buffer`.
    /// `Ok(None)` when the queue is empty.
    pub fn try_receive<'a>(
        &self,
        window_page: u64,
        buffer: &'a mut CopyBuffer,
    ) -> Result<Option<Received<'a>>, Error> {
        let at = RECEIVE_WINDOW_BASE + window_page * PAGE_SIZE;
        let args = [self.slot, at, buffer.0.as_mut_ptr() as u64, 0, 0, 0];
        let results = match typed(Call::Receive, args) {
            Ok(results) => results,
            Err(Error::Empty) => return Ok(None),
            Err(error) => return Err(error),
        };
        let delivered = queue::Received::from_results(results).ok_or(Error::InvalidArgument)?;
        let bytes = if delivered.pages > 0 {
            // SAFETY: the kernel just mapped `pages` pages at `at` for this
            // partition alone; they stay mapped until released, which consumes the
            // `Received` that borrows them.
            unsafe { core::slice::from_raw_parts(at as *const u8, delivered.len as usize) }
        } else {
            &buffer.0[..delivered.len as usize]
        };
        Ok(Some(Received {
            bytes,
            badge: delivered.badge,
            pages: delivered.pages,
            address: at,
            slot: self.slot,
        }))
    }

    /// Like [`Receiver::try_receive`], but waits (using no CPU) while the queue is
    /// empty.
    pub fn receive<'a>(
        &self,
        window_page: u64,
        buffer: &'a mut CopyBuffer,
    ) -> Result<Received<'a>, Error> {
        wait(self.slot)?;
        self.try_receive(window_page, buffer)?.ok_or(Error::Empty)
    }

    /// Blocks until a message waits (or the sender restarted).
    pub fn wait(&self) -> Result<(), Error> {
        wait(self.slot)
    }
}

/// Waits until the queue end in `slot` has work (the kernel answers 0 when it
/// woke the caller, which then asks again, and 1 when work is there).
fn wait(slot: u64) -> Result<(), Error> {
    while typed(Call::Wait, [slot, 0, 0, 0, 0, 0])?[0] == 0 {}
    Ok(())
}
