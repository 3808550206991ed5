//! The uplink: the service VM carries datagrams between the kernel's router and
//! the board's NIC, so that partitions reach addresses no partition owns.
//!
//! Two virtio-net devices, both driven with `virtio-drivers`:
//! - its **port** on the router (the kernel's emulated device, at
//!   [`Device::Net`]'s window): the router delivers here every datagram for an
//!   address no partition owns, and takes from here what comes from outside;
//! - the **NIC** (QEMU's `virtio-net-device`, granted as device `nic` at
//!   [`QEMU_VIRT_NIC`]), a real device that reads and writes machine memory by
//!   DMA. Its buffers are in this partition's RAM, and it is given their
//!   machine addresses ([`supervise::machine_base`]): the service VM's RAM is
//!   one fixed, contiguous block, and the NIC can reach all of machine memory,
//!   so the service VM and the NIC it drives are part of the trusted base.
//!
//! What crosses, and how:
//! - port → NIC: an IPv4 datagram for an outside address leaves with the NIC's
//!   MAC as source and, as destination, the MAC last seen sending from that
//!   address (else broadcast); one for the port's own address is dropped (the
//!   service VM has no IP stack);
//! - NIC → port: an IPv4 datagram goes to the router as it came (the router
//!   checks that its source is no partition's address and routes it by its
//!   destination); an ARP request for an address of the port's subnet is
//!   answered with the NIC's MAC, so an outside router sends that subnet here;
//!   anything else is dropped. Each is counted ([`Counts`]).
//!
//! It runs only between events: the service VM polls ([`Uplink::poll`]) while
//! it has an uplink, instead of blocking for events.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use septum_abi::layout::{PAGE_SIZE, RAM_BASE};
use septum_abi::net::{
    Address, ETHERNET_HEADER, ETHERTYPE_ARP, ETHERTYPE_IPV4, QEMU_VIRT_NIC, QEMU_VIRT_NIC_SIZE,
    ROUTER_MAC,
};
use septum_abi::virtio::{Device, WINDOW_STRIDE};
use septum_sdk::{println, slot, supervise};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Buffers in each receive queue.
const QUEUE: usize = 16;
/// Bytes of a receive or transmit buffer: the 12-byte header and a frame.
const BUFFER: usize = 12 + septum_abi::net::FRAME_MAX;
/// Pages the devices' rings and buffers may take.
const DMA_PAGES: usize = 64;
/// Outside hosts whose MAC addresses it remembers.
const NEIGHBOURS: usize = 16;
/// Bytes of heap for the drivers (the NIC offers indirect descriptors, whose
/// tables `virtio-drivers` allocates).
const HEAP_SIZE: usize = 64 << 10;

static mut HEAP: [core::mem::MaybeUninit<u8>; HEAP_SIZE] =
    [core::mem::MaybeUninit::uninit(); HEAP_SIZE];

#[repr(C, align(4096))]
struct DmaPool([u8; DMA_PAGES * PAGE_SIZE as usize]);

static mut DMA_POOL: DmaPool = DmaPool([0; DMA_PAGES * PAGE_SIZE as usize]);
static DMA_USED: AtomicUsize = AtomicUsize::new(0);
static MACHINE_BASE: AtomicU64 = AtomicU64::new(0);

/// Zeroed pages from the pool, never given back (the devices live as long as
/// the service VM).
fn dma_pages(pages: usize) -> NonNull<u8> {
    let bytes = pages * PAGE_SIZE as usize;
    let offset = DMA_USED.fetch_add(bytes, Ordering::Relaxed);
    assert!(
        offset + bytes <= DMA_PAGES * PAGE_SIZE as usize,
        "DMA pool exhausted"
    );
    // SAFETY: each call takes a range of the pool no other call took; the pool
    // is never reached otherwise.
    unsafe { NonNull::new_unchecked((&raw mut DMA_POOL.0).cast::<u8>().add(offset)) }
}

/// The kernel's emulated device: it reads guest-physical addresses, which are
/// this partition's own (its MMU is off).
struct PortHal;
/// The NIC: it reads machine addresses.
struct NicHal;

fn guest_address(pointer: NonNull<u8>) -> PhysAddr {
    pointer.as_ptr() as u64
}

fn machine_address(pointer: NonNull<u8>) -> PhysAddr {
    guest_address(pointer) - RAM_BASE + MACHINE_BASE.load(Ordering::Relaxed)
}

// SAFETY: the pages are page-aligned, zeroed, never aliased (`dma_pages`), and
// the address given is the one the device reaches them at.
unsafe impl Hal for PortHal {
    fn dma_alloc(pages: usize, _: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let pointer = dma_pages(pages);
        (guest_address(pointer), pointer)
    }
    unsafe fn dma_dealloc(_: PhysAddr, _: NonNull<u8>, _: usize) -> i32 {
        0
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("a device window is not at 0")
    }
    unsafe fn share(buffer: NonNull<[u8]>, _: BufferDirection) -> PhysAddr {
        guest_address(buffer.cast())
    }
    unsafe fn unshare(_: PhysAddr, _: NonNull<[u8]>, _: BufferDirection) {}
}

// SAFETY: as for `PortHal`, with the machine address of the same memory.
unsafe impl Hal for NicHal {
    fn dma_alloc(pages: usize, _: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let pointer = dma_pages(pages);
        (machine_address(pointer), pointer)
    }
    unsafe fn dma_dealloc(_: PhysAddr, _: NonNull<u8>, _: usize) -> i32 {
        0
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("a device window is not at 0")
    }
    unsafe fn share(buffer: NonNull<[u8]>, _: BufferDirection) -> PhysAddr {
        machine_address(buffer.cast())
    }
    unsafe fn unshare(_: PhysAddr, _: NonNull<[u8]>, _: BufferDirection) {}
}

/// One side: a device and its receive buffers.
struct Side<H: Hal> {
    device: VirtIONetRaw<H, MmioTransport<'static>, QUEUE>,
    buffers: [&'static mut [u8]; QUEUE],
    /// The receive token of each buffer (its index in the queue).
    tokens: [u16; QUEUE],
}

impl<H: Hal> Side<H> {
    /// Drives the device at `window`, with every receive buffer posted.
    fn new(window: u64, size: usize) -> Option<Side<H>> {
        let header = NonNull::new(window as *mut VirtIOHeader)?;
        // SAFETY: `window` is a virtio-mmio register window this partition is
        // granted (the kernel's device or the NIC), used by nothing else.
        let transport = unsafe { MmioTransport::new(header, size) }.ok()?;
        let device = VirtIONetRaw::new(transport).ok()?;
        let per_page = PAGE_SIZE as usize / BUFFER;
        let mut next = None;
        let buffers = core::array::from_fn(|index| {
            if index % per_page == 0 {
                next = Some(dma_pages(1));
            }
            let page = next.expect("set above");
            // SAFETY: the page is this side's alone; buffer `index` is its
            // own BUFFER bytes of it.
            unsafe {
                core::slice::from_raw_parts_mut(
                    page.as_ptr().add(index % per_page * BUFFER),
                    BUFFER,
                )
            }
        });
        let mut side = Side {
            device,
            buffers,
            tokens: [0; QUEUE],
        };
        for index in 0..QUEUE {
            side.post(index).ok()?;
        }
        Some(side)
    }

    fn post(&mut self, index: usize) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer stays untouched until the device gives it back.
        self.tokens[index] = unsafe { self.device.receive_begin(&mut *self.buffers[index]) }?;
        Ok(())
    }

    /// The next frame received (copied into `out`), its buffer posted again.
    fn receive(&mut self, out: &mut [u8; BUFFER]) -> Option<usize> {
        let token = self.device.poll_receive()?;
        let index = self.tokens.iter().position(|&t| t == token)?;
        // SAFETY: `token` is the one `post` got for this buffer.
        let received = unsafe {
            self.device
                .receive_complete(token, &mut *self.buffers[index])
        };
        let frame = received.ok().map(|(header, len)| {
            out[..len].copy_from_slice(&self.buffers[index][header..header + len]);
            len
        });
        self.post(index).ok()?;
        frame
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        self.device.send(frame).is_ok()
    }
}

/// What the uplink carried and dropped.
#[derive(Default)]
pub struct Counts {
    /// Datagrams from the router sent out through the NIC.
    pub out: u64,
    /// Datagrams from the NIC handed to the router.
    pub into: u64,
    /// ARP requests from outside answered.
    pub arp: u64,
    /// Frames dropped (not IPv4, for the port's own address, or not sent).
    pub dropped: u64,
}

/// The bridge between the router and the NIC.
pub struct Uplink {
    port: Side<PortHal>,
    nic: Side<NicHal>,
    address: Address,
    nic_mac: [u8; 6],
    /// Outside hosts: (IPv4 address, MAC), the oldest first.
    neighbours: heapless::Vec<([u8; 4], [u8; 6]), NEIGHBOURS>,
    /// What it did.
    pub counts: Counts,
}

impl Uplink {
    /// The uplink, if the kernel gives this partition the system's uplink
    /// port; `None` (and a line saying why) if it is there but cannot start.
    pub fn start() -> Option<Uplink> {
        let own = supervise::net_info(slot::SYSTEM).ok()?;
        let address = Address::from_word(own.address)?;
        if own.uplink == 0 {
            return None;
        }
        // SAFETY: `start` runs once per instance, and this is the only
        // reference to the heap's memory ever made; the heap keeps it.
        let heap = unsafe { (&raw mut HEAP).as_mut() }
            .is_some_and(|memory| septum_sdk::heap::give(memory));
        let started = supervise::machine_base(slot::SYSTEM).ok().and_then(|base| {
            heap.then_some(())?;
            MACHINE_BASE.store(base, Ordering::Relaxed);
            let port = Side::new(Device::Net.window(), WINDOW_STRIDE as usize)?;
            let nic = Side::new(QEMU_VIRT_NIC, QEMU_VIRT_NIC_SIZE)?;
            Some((port, nic))
        });
        let Some((port, nic)) = started else {
            println!("uplink {address}: its port or its NIC did not start");
            return None;
        };
        let nic_mac = nic.device.mac_address();
        println!("uplink {address} up: NIC at {QEMU_VIRT_NIC:#x}, MAC {nic_mac:02x?}");
        Some(Uplink {
            port,
            nic,
            address,
            nic_mac,
            neighbours: heapless::Vec::new(),
            counts: Counts::default(),
        })
    }

    /// Carries what waits on either side; whether anything did.
    pub fn poll(&mut self) -> bool {
        let mut frame = [0u8; BUFFER];
        let mut moved = false;
        while let Some(len) = self.port.receive(&mut frame) {
            self.outward(&mut frame[..len]);
            moved = true;
        }
        while let Some(len) = self.nic.receive(&mut frame) {
            self.inward(&mut frame[..len]);
            moved = true;
        }
        moved
    }

    /// A datagram the router routed to the uplink.
    fn outward(&mut self, frame: &mut [u8]) {
        let Some(destination) = ipv4_destination(frame) else {
            self.counts.dropped += 1;
            return;
        };
        if destination == self.address.ip {
            self.counts.dropped += 1;
            return;
        }
        let mac = self
            .neighbours
            .iter()
            .find(|(ip, _)| *ip == destination)
            .map_or([0xff; 6], |&(_, mac)| mac);
        frame[..6].copy_from_slice(&mac);
        frame[6..12].copy_from_slice(&self.nic_mac);
        let sent = self.nic.send(frame);
        self.count(sent, true);
    }

    /// A frame from outside.
    fn inward(&mut self, frame: &mut [u8]) {
        if frame.len() < ETHERNET_HEADER {
            self.counts.dropped += 1;
            return;
        }
        let mut source_mac = [0; 6];
        source_mac.copy_from_slice(&frame[6..12]);
        match u16::from_be_bytes([frame[12], frame[13]]) {
            ETHERTYPE_IPV4 if frame.len() >= ETHERNET_HEADER + 20 => {
                let ip = &frame[ETHERNET_HEADER..];
                self.remember([ip[12], ip[13], ip[14], ip[15]], source_mac);
                frame[..6].copy_from_slice(&ROUTER_MAC);
                frame[6..12].copy_from_slice(&self.port.device.mac_address());
                let sent = self.port.send(frame);
                self.count(sent, false);
            }
            ETHERTYPE_ARP => self.answer_arp(frame, source_mac),
            _ => self.counts.dropped += 1,
        }
    }

    /// Answers an outside ARP request for an address of the port's subnet.
    fn answer_arp(&mut self, frame: &mut [u8], asker_mac: [u8; 6]) {
        let arp = ETHERNET_HEADER;
        let request = frame.len() >= arp + 28 && frame[arp + 6..arp + 8] == [0, 1];
        let target = frame
            .get(arp + 24..arp + 28)
            .map(|t| [t[0], t[1], t[2], t[3]]);
        let Some(target) = target.filter(|&t| request && self.address.contains(t)) else {
            self.counts.dropped += 1;
            return;
        };
        let mut asker_ip = [0; 4];
        asker_ip.copy_from_slice(&frame[arp + 14..arp + 18]);
        self.remember(asker_ip, asker_mac);
        frame[..6].copy_from_slice(&asker_mac);
        frame[6..12].copy_from_slice(&self.nic_mac);
        frame[arp + 7] = 2;
        frame[arp + 8..arp + 14].copy_from_slice(&self.nic_mac);
        frame[arp + 14..arp + 18].copy_from_slice(&target);
        frame[arp + 18..arp + 24].copy_from_slice(&asker_mac);
        frame[arp + 24..arp + 28].copy_from_slice(&asker_ip);
        if self.nic.send(&frame[..arp + 28]) {
            self.counts.arp += 1;
        } else {
            self.counts.dropped += 1;
        }
    }

    fn remember(&mut self, ip: [u8; 4], mac: [u8; 6]) {
        if let Some(at) = self.neighbours.iter().position(|(known, _)| *known == ip) {
            self.neighbours.remove(at);
        } else if self.neighbours.is_full() {
            self.neighbours.remove(0);
        }
        let _ = self.neighbours.push((ip, mac));
    }

    fn count(&mut self, sent: bool, out: bool) {
        match (sent, out) {
            (false, _) => self.counts.dropped += 1,
            (true, true) => self.counts.out += 1,
            (true, false) => self.counts.into += 1,
        }
    }
}

/// The destination of an IPv4 frame.
fn ipv4_destination(frame: &[u8]) -> Option<[u8; 4]> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_HEADER + 16..ETHERNET_HEADER + 20)?;
    (ethertype == ETHERTYPE_IPV4).then(|| [ip[0], ip[1], ip[2], ip[3]])
}
