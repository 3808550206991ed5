//! A split virtqueue (VIRTIO 1.2 section 2.7) in the partition's own RAM: the
//! descriptor table, the available ring the driver writes and the used ring the
//! device writes, all in one [`Rings`] block of [`QUEUE_SIZE_MAX`] entries (a
//! queue may use fewer). No indirect descriptors, no event index.
//!
//! Free descriptors are chained through their `next` fields, as the device never
//! reads a descriptor outside a chain it was given. Every access to the rings is
//! volatile: the device (the kernel) reads and writes them behind the program's
//! back. Besides [`Queue::add`] and [`Queue::take_used`], the raw
//! [`Queue::set_descriptor`], [`Queue::publish`] and [`Queue::set_avail_index`]
//! let a device-testing program build chains no driver would.

use core::ptr::{NonNull, addr_of, addr_of_mut};
use core::sync::atomic::{Ordering, fence};

use super::{DeviceMemory, Error, QUEUE_SIZE_MAX};
use septum_abi::virtio::descriptor::{NEXT, WRITE};

const MAX: usize = QUEUE_SIZE_MAX as usize;

/// One descriptor: a buffer, its flags and the next descriptor of its chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub address: u64,
    /// Its length in bytes.
    pub length: u32,
    /// [`NEXT`], [`WRITE`] (the device writes it), `INDIRECT`.
    pub flags: u16,
    /// The next descriptor of the chain, with [`NEXT`].
    pub next: u16,
}

#[repr(C)]
struct Avail {
    flags: u16,
    index: u16,
    ring: [u16; MAX],
    used_event: u16,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct UsedElement {
    id: u32,
    length: u32,
}

#[repr(C)]
struct Used {
    flags: u16,
    index: u16,
    ring: [UsedElement; MAX],
    avail_event: u16,
}

/// The memory of one queue: descriptor table, available ring, used ring.
#[repr(C, align(4096))]
pub struct Rings {
    descriptors: [Descriptor; MAX],
    avail: Avail,
    used: Used,
}

impl Rings {
    /// Zeroed rings.
    pub const fn new() -> Rings {
        const EMPTY: Descriptor = Descriptor {
            address: 0,
            length: 0,
            flags: 0,
            next: 0,
        };
        Rings {
            descriptors: [EMPTY; MAX],
            avail: Avail {
                flags: 0,
                index: 0,
                ring: [0; MAX],
                used_event: 0,
            },
            used: Used {
                flags: 0,
                index: 0,
                ring: [UsedElement { id: 0, length: 0 }; MAX],
                avail_event: 0,
            },
        }
    }
}

impl Default for Rings {
    fn default() -> Rings {
        Rings::new()
    }
}

/// The driver's side of one split virtqueue.
pub struct Queue {
    rings: NonNull<Rings>,
    size: u16,
    free_head: u16,
    free: u16,
    next_avail: u16,
    last_used: u16,
}

impl Queue {
    /// A queue of `size` buffers (a power of two, at most [`QUEUE_SIZE_MAX`]) in
    /// `memory`; `None` if the size is bad or the memory taken.
    pub fn new(memory: &'static DeviceMemory<Rings>, size: u16) -> Option<Queue> {
        if !size.is_power_of_two() || size > QUEUE_SIZE_MAX {
            return None;
        }
        let mut queue = Queue {
            rings: memory.take()?,
            size,
            free_head: 0,
            free: 0,
            next_avail: 0,
            last_used: 0,
        };
        queue.reset();
        Some(queue)
    }

    /// Its size in buffers.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest-physical addresses of its descriptor table, available (driver) ring
    /// and used (device) ring.
    pub fn addresses(&self) -> [u64; 3] {
        let rings = self.rings.as_ptr();
        // SAFETY: field projections of the queue's own rings; nothing is read.
        unsafe {
            [
                addr_of!((*rings).descriptors) as u64,
                addr_of!((*rings).avail) as u64,
                addr_of!((*rings).used) as u64,
            ]
        }
    }

    /// Forgets every buffer, as after a device reset: rings zeroed, every
    /// descriptor free.
    pub fn reset(&mut self) {
        let rings = self.rings.as_ptr();
        // SAFETY: the rings are this queue's alone (taken from `DeviceMemory`),
        // and a reset device no longer reads or writes them.
        unsafe { rings.write_volatile(Rings::new()) };
        for index in 0..self.size {
            let next = (index + 1) % self.size;
            self.set_descriptor(
                index,
                Descriptor {
                    next,
                    ..Descriptor::default()
                },
            );
        }
        self.free_head = 0;
        self.free = self.size;
        self.next_avail = 0;
        self.last_used = 0;
    }

    /// Writes descriptor `index` (taken modulo the size).
    pub fn set_descriptor(&mut self, index: u16, descriptor: Descriptor) {
        let index = usize::from(index % self.size);
        let rings = self.rings.as_ptr();
        // SAFETY: `index` is below the size, so inside the table; volatile, as
        // the device reads the table.
        unsafe { addr_of_mut!((*rings).descriptors[index]).write_volatile(descriptor) };
    }

    fn descriptor(&self, index: u16) -> Descriptor {
        let rings = self.rings.as_ptr();
        let index = usize::from(index % self.size);
        // SAFETY: inside the table, as in `set_descriptor`.
        unsafe { addr_of!((*rings).descriptors[index]).read_volatile() }
    }

    /// Puts the chain of `buffers` (address, length, whether the device writes
    /// it) in free descriptors and makes it available; returns its head. Tell
    /// the device with [`Transport::notify`](super::Transport::notify).
    pub fn add(&mut self, buffers: &[(u64, u32, bool)]) -> Result<u16, Error> {
        if buffers.is_empty() || buffers.len() > usize::from(self.free) {
            return Err(Error::QueueFull);
        }
        let head = self.free_head;
        let mut index = head;
        for (i, &(address, length, writes)) in buffers.iter().enumerate() {
            let next = self.descriptor(index).next;
            let last = i + 1 == buffers.len();
            let flags = if writes { WRITE } else { 0 } | if last { 0 } else { NEXT };
            self.set_descriptor(
                index,
                Descriptor {
                    address,
                    length,
                    flags,
                    next,
                },
            );
            self.free -= 1;
            if last {
                self.free_head = next;
            }
            index = next;
        }
        self.publish(head);
        Ok(head)
    }

    /// Makes the chain at `head` available (the next avail ring entry, then the
    /// index), without checking it.
    pub fn publish(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size);
        let rings = self.rings.as_ptr();
        // SAFETY: `slot` is below the size; volatile, as the device reads it.
        unsafe { addr_of_mut!((*rings).avail.ring[slot]).write_volatile(head) };
        self.next_avail = self.next_avail.wrapping_add(1);
        self.set_avail_index(self.next_avail);
    }

    /// Writes the available ring's index, after every earlier write to the rings.
    pub fn set_avail_index(&mut self, index: u16) {
        fence(Ordering::Release);
        let rings = self.rings.as_ptr();
        // SAFETY: a field of the queue's own rings.
        unsafe { addr_of_mut!((*rings).avail.index).write_volatile(index) };
    }

    /// The available ring's index as the driver last wrote it.
    pub fn avail_index(&self) -> u16 {
        self.next_avail
    }

    /// The next chain the device has used: its head and the bytes it wrote.
    /// Its descriptors are free again.
    pub fn take_used(&mut self) -> Option<(u16, u32)> {
        let rings = self.rings.as_ptr();
        // SAFETY: a field of the queue's own rings; the device writes it.
        let index = unsafe { addr_of!((*rings).used.index).read_volatile() };
        if index == self.last_used {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = usize::from(self.last_used % self.size);
        // SAFETY: `slot` is below the size.
        let element = unsafe { addr_of!((*rings).used.ring[slot]).read_volatile() };
        self.last_used = self.last_used.wrapping_add(1);
        let head = element.id as u16 % self.size;
        self.free_chain(head);
        Some((head, element.length))
    }

    /// Puts the chain at `head` back on the free list.
    fn free_chain(&mut self, head: u16) {
        let mut last = head;
        let mut count = 1;
        loop {
            let descriptor = self.descriptor(last);
            if descriptor.flags & NEXT == 0 || count >= self.size {
                break;
            }
            last = descriptor.next;
            count += 1;
        }
        let tail = self.descriptor(last);
        self.set_descriptor(
            last,
            Descriptor {
                flags: 0,
                next: self.free_head,
                ..tail
            },
        );
        self.free_head = head;
        self.free = (self.free + count).min(self.size);
    }
}
