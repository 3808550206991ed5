//! A split virtqueue as the device side walks it (VIRTIO 1.2 section 2.7): the
//! driver's descriptor table and available ring, the device's used ring, all
//! in the partition's memory and reached only through a [`GuestMemory`].
//!
//! Invariants (tested on the host, and property-tested with random rings):
//! - nothing is taken from guest memory without being checked first: the
//!   available index may move by at most the queue size, a head and every
//!   `next` index must be inside the queue, a chain may be at most as long as
//!   the queue (longer is a loop), and indirect descriptors are refused;
//! - a chain is copied out of guest memory whole ([`Chain`]) before any device
//!   acts on it, so the driver cannot change it under the device;
//! - [`Queue::peek`] changes nothing; only [`Queue::consume`] moves past a
//!   chain, so a device that cannot act on a chain yet leaves it where it is;
//! - every read and write is of guest memory the partition has now, checked
//!   page by page by the [`GuestMemory`]; a failure is [`Violation::BadAddress`]
//!   and writes nothing.

use septum_abi::virtio::{QUEUE_SIZE_MAX, Violation, descriptor};

/// Guest memory of the partition that owns a queue, as the device reaches it.
pub trait GuestMemory {
    /// Copies the partition's memory at guest-physical `address` into `buffer`;
    /// `Err` (and nothing read) unless every byte is memory it has now.
    fn read(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), Violation>;
    /// Copies `bytes` to the partition's memory at guest-physical `address`;
    /// `Err` (and nothing written) unless every byte is memory it has now.
    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), Violation>;
    /// `Ok` if every byte of `len` at `address` is memory it has now.
    fn check(&mut self, address: u64, len: u64) -> Result<(), Violation>;
}

/// Most buffers of one chain a device takes (longer chains are refused as
/// [`Violation::BadChain`]; the devices here use one or two).
pub const CHAIN_MAX: usize = 4;

/// One buffer of a chain, as copied out of the descriptor table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address.
    pub address: u64,
    /// Bytes.
    pub len: u32,
    /// The device writes it (else it reads it).
    pub writable: bool,
}

/// A descriptor chain the driver made available, copied out and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Index of its first descriptor: what the used ring returns.
    pub head: u16,
    buffers: [Buffer; CHAIN_MAX],
    count: usize,
}

impl Chain {
    /// Its buffers, in chain order.
    pub fn buffers(&self) -> &[Buffer] {
        &self.buffers[..self.count]
    }

    /// Its device-readable buffers' total length, if it has only those.
    pub fn readable_len(&self) -> Option<u64> {
        let buffers = self.buffers();
        (!buffers.iter().any(|b| b.writable))
            .then(|| buffers.iter().map(|b| u64::from(b.len)).sum())
    }

    /// Copies its device-readable bytes (in chain order, up to `out.len()`)
    /// into `out`; returns how many.
    pub fn read(&self, memory: &mut impl GuestMemory, out: &mut [u8]) -> Result<usize, Violation> {
        let mut done = 0;
        for buffer in self.buffers().iter().filter(|b| !b.writable) {
            let take = (buffer.len as usize).min(out.len() - done);
            memory.read(buffer.address, &mut out[done..done + take])?;
            done += take;
        }
        Ok(done)
    }

    /// Copies `bytes` into its device-writable buffers in chain order; returns
    /// how many fit.
    pub fn write(&self, memory: &mut impl GuestMemory, bytes: &[u8]) -> Result<usize, Violation> {
        let mut done = 0;
        for buffer in self.buffers().iter().filter(|b| b.writable) {
            let take = (buffer.len as usize).min(bytes.len() - done);
            memory.write(buffer.address, &bytes[done..done + take])?;
            done += take;
        }
        Ok(done)
    }
}

/// One queue's set-up (written by the driver through the transport) and the
/// device's place in its rings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// Buffers it holds (QueueNum): a power of two up to [`QUEUE_SIZE_MAX`].
    pub size: u16,
    /// The driver marked it ready.
    pub ready: bool,
    /// Guest-physical address of the descriptor table.
    pub desc: u64,
    /// Guest-physical address of the available ring.
    pub driver: u64,
    /// Guest-physical address of the used ring.
    pub device: u64,
    /// The available ring index of the next chain the device takes.
    next_avail: u16,
    /// The used ring index of the next chain the device returns.
    next_used: u16,
}

fn u16_at(memory: &mut impl GuestMemory, address: u64) -> Result<u16, Violation> {
    let mut bytes = [0; 2];
    memory.read(address, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

impl Queue {
    /// Whether its set-up can be used: a size that is a power of two up to the
    /// maximum, and rings aligned as the specification requires (descriptor
    /// table 16, available ring 2, used ring 4) whose ends do not wrap.
    pub fn layout_ok(&self) -> bool {
        let size = u64::from(self.size);
        let fits = |base: u64, len: u64, align: u64| {
            base.is_multiple_of(align) && base.checked_add(len).is_some()
        };
        self.size.is_power_of_two()
            && self.size <= QUEUE_SIZE_MAX
            && fits(self.desc, size * descriptor::SIZE, 16)
            && fits(self.driver, 6 + 2 * size, 2)
            && fits(self.device, 6 + 8 * size, 4)
    }

    /// Marks it ready, the device at the start of both rings.
    pub fn enable(&mut self) {
        self.ready = true;
        self.next_avail = 0;
        self.next_used = 0;
    }

    /// Guest-physical start and length of its used ring.
    pub fn used_ring(&self) -> (u64, u64) {
        (self.device, 4 + 8 * u64::from(self.size))
    }

    /// The next chain the driver made available, copied out and checked
    /// (see the module invariants), without moving past it; `None` if there
    /// is none. A chain is returned only while its used ring is memory the
    /// partition has, so the device can give it back.
    pub fn peek(&self, memory: &mut impl GuestMemory) -> Result<Option<Chain>, Violation> {
        let (used, used_len) = self.used_ring();
        memory.check(used, used_len)?;
        let available = u16_at(memory, self.driver + 2)?;
        let pending = available.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(Violation::AvailJump);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = u16_at(memory, self.driver + 4 + 2 * slot)?;
        let mut chain = Chain {
            head,
            buffers: [Buffer::default(); CHAIN_MAX],
            count: 0,
        };
        let mut index = head;
        let mut too_long = false;
        for step in 0..=self.size {
            // A bad index is named as such even after `size` descriptors: only
            // an index in the table at that point proves a descriptor repeated.
            if index >= self.size {
                return Err(Violation::BadDescriptor);
            }
            if step == self.size {
                return Err(Violation::Loop);
            }
            let mut raw = [0; descriptor::SIZE as usize];
            memory.read(self.desc + u64::from(index) * descriptor::SIZE, &mut raw)?;
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            if flags & descriptor::INDIRECT != 0 {
                return Err(Violation::BadDescriptor);
            }
            match chain.buffers.get_mut(chain.count) {
                Some(buffer) => {
                    *buffer = Buffer {
                        address: u64::from_le_bytes(raw[..8].try_into().expect("8 bytes")),
                        len: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
                        writable: flags & descriptor::WRITE != 0,
                    };
                    chain.count += 1;
                }
                None => too_long = true,
            }
            if flags & descriptor::NEXT == 0 {
                break;
            }
            index = u16::from_le_bytes([raw[14], raw[15]]);
        }
        if too_long {
            return Err(Violation::BadChain);
        }
        Ok(Some(chain))
    }

    /// Moves past the chain [`Queue::peek`] returned.
    pub fn consume(&mut self) {
        self.next_avail = self.next_avail.wrapping_add(1);
    }

    /// Returns chain `head` to the driver with `written` bytes written into it:
    /// its used element, then the used index.
    pub fn push_used(
        &mut self,
        memory: &mut impl GuestMemory,
        head: u16,
        written: u32,
    ) -> Result<(), Violation> {
        let (used, used_len) = self.used_ring();
        memory.check(used, used_len)?;
        let slot = u64::from(self.next_used % self.size);
        let mut element = [0; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        memory.write(self.device + 4 + 8 * slot, &element)?;
        let next = self.next_used.wrapping_add(1);
        memory.write(self.device + 2, &next.to_le_bytes())?;
        self.next_used = next;
        Ok(())
    }
}
