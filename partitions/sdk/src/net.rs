//! IP networking for native partitions: the partition's port on the kernel's
//! router ([`septum_abi::net`]), reached through its virtio-net device
//! ([`Device::Net`]) with the `virtio-drivers` crate's MMIO transport and
//! `VirtIONet` driver ([`Port`]), and the `smoltcp` stack (IPv4, ARP, UDP) on
//! top of it ([`Stack`]). The same code runs on both architectures.
//!
//! **Its address.** A native partition learns its port's address from its
//! boot argument: bits 0-39 hold [`Address::to_word`] (the IPv4 address in
//! bits 8-39, the prefix length in bits 0-7), the word the package and
//! `net_info` carry; bits 40-62 are the program's own ([`ARGUMENT_ADDRESS_BITS`],
//! [`address`]). So `10.0.0.2/24` is `argument = 0x0a_0000_0218`. The router
//! enforces the address of the description's `net = { address }`, not this
//! one: a program told another address has every datagram it sends dropped as
//! spoofed, and the kernel's `@@ net` line says so.
//!
//! **The link.** The router answers ARP for every other address of the subnet
//! with its own MAC (proxy ARP), so the stack resolves each peer once, to the
//! router, and sends it every datagram; frames it receives come from the
//! router, addressed to the MAC the device's configuration gives
//! ([`septum_abi::net::port_mac`]).
//!
//! **Memory.** The driver takes its rings (whole pages, [`Hal`]) and its
//! buffers from the SDK's heap ([`crate::heap`]), which the program gives
//! memory before [`Port::open`]. A native partition addresses its RAM by
//! identity (see [`crate::virtio`]), so a buffer's address is the
//! guest-physical address the device uses: [`Hal`] shares a buffer by handing
//! out its address as it is, with nothing to copy or map.
//!
//! **Beyond the subnet.** The stack's default route goes to [`gateway`], an
//! address of the subnet, so a datagram for an address outside it goes to the
//! router too, which sends it to the uplink.
//!
//! **Polling.** Native partitions get no virtio interrupt. A frame sent is
//! carried by the kernel in the sender's own turn before the notifying store
//! returns, so a send never waits; frames for this partition land in its
//! posted receive buffers whenever a peer sends, and [`Stack::poll`] takes
//! them. A program waiting for frames gives up its turn between polls
//! ([`crate::yield_now`]) so that its peers can run.

mod hal;
mod mmio;

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use septum_abi::net::{Address, FRAME_MAX};
use septum_abi::virtio::{Device, WINDOW_STRIDE};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

pub use hal::Hal;
pub use smoltcp;
pub use virtio_drivers;

/// Bits of the boot argument that hold the port's address ([`address`]).
pub const ARGUMENT_ADDRESS_BITS: u32 = 40;
/// Buffers in each of the device's queues.
pub const QUEUE_SIZE: usize = 16;
/// Bytes of each receive buffer: the device's header and the largest frame,
/// rounded up to whole words (`VirtIONet` allocates its buffers in words and
/// drops a partial one, then refuses a buffer shorter than a frame).
pub const BUFFER_LEN: usize =
    (septum_abi::virtio::net::HEADER_SIZE + FRAME_MAX).next_multiple_of(8);
/// Largest UDP payload one frame carries (the MTU less the IPv4 and UDP
/// headers, neither with options).
pub const UDP_PAYLOAD_MAX: usize = septum_abi::net::MTU - 20 - 8;

/// The virtio-net driver of a partition's port.
pub type Driver = VirtIONet<Hal, MmioTransport<'static>, QUEUE_SIZE>;

/// The port's address, from the boot argument (see the module doc); `None`
/// if its low bits are not a host address of a subnet.
pub fn address(argument: u64) -> Option<Address> {
    Address::from_word(argument & ((1 << ARGUMENT_ADDRESS_BITS) - 1)).filter(|a| a.is_host())
}

/// The bits of the boot argument above the address: the program's own.
pub fn program_bits(argument: u64) -> u64 {
    argument >> ARGUMENT_ADDRESS_BITS
}

/// The stack's clock: the counter in microseconds. On x86, where the counter's
/// frequency is not known, a tick is taken as a nanosecond; the clock only
/// paces ARP (its retries and how long an answer is kept).
pub fn now() -> Instant {
    let hz = crate::arch::counter_frequency().unwrap_or(1_000_000_000);
    let micros = u128::from(crate::arch::counter()) * 1_000_000 / u128::from(hz);
    Instant::from_micros(micros as i64)
}

/// Why the port could not be opened.
#[derive(Debug)]
pub enum Error {
    /// No virtio-net device answers at its window.
    Absent,
    /// The driver gave up.
    Driver(virtio_drivers::Error),
}

/// The partition's port: its virtio-net device, live, with every receive
/// buffer posted. It is a `smoltcp` device (one frame a token).
///
/// Dropping it resets the device, so that the kernel forgets its queues; the
/// driver itself is never dropped, and its memory stays taken: `VirtIONet`'s
/// own clean-up writes the queue registers of a live device, which the
/// kernel's device refuses as a violation.
pub struct Port {
    driver: ManuallyDrop<RefCell<Driver>>,
}

impl Drop for Port {
    fn drop(&mut self) {
        crate::virtio::Transport::new(Device::Net).reset();
    }
}

impl Port {
    /// Brings the device up: features, both queues, [`QUEUE_SIZE`] receive
    /// buffers posted. The heap must have memory.
    pub fn open() -> Result<Port, Error> {
        let window =
            NonNull::new(Device::Net.window() as *mut VirtIOHeader).ok_or(Error::Absent)?;
        // SAFETY: the window is the net device's register block, which the
        // kernel emulates for every partition with a port; nothing else in this
        // program addresses it, and it stays for the program's life.
        let transport = unsafe { MmioTransport::new(window, WINDOW_STRIDE as usize) }
            .map_err(|_| Error::Absent)?;
        if transport.device_type() != DeviceType::Network {
            return Err(Error::Absent);
        }
        let driver = VirtIONet::new(transport, BUFFER_LEN).map_err(Error::Driver)?;
        Ok(Port {
            driver: ManuallyDrop::new(RefCell::new(driver)),
        })
    }

    /// The MAC address the device's configuration gives.
    pub fn mac(&self) -> [u8; 6] {
        self.driver.borrow().mac_address()
    }

    /// The driver, for what the stack does not do (raw frames, counting).
    pub fn driver(&mut self) -> &mut Driver {
        self.driver.get_mut()
    }
}

/// A received frame, handed to the stack; its buffer is posted again after.
pub struct Rx<'a> {
    driver: &'a RefCell<Driver>,
    buffer: RxBuffer,
}

/// Room for one frame to send.
pub struct Tx<'a> {
    driver: &'a RefCell<Driver>,
}

impl phy::Device for Port {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buffer = self.driver.get_mut().receive().ok()?;
        let driver = &self.driver;
        Some((Rx { driver, buffer }, Tx { driver }))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        let can_send = self.driver.get_mut().can_send();
        can_send.then_some(Tx {
            driver: &self.driver,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = FRAME_MAX;
        capabilities.max_burst_size = Some(QUEUE_SIZE);
        capabilities
    }
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.buffer.packet());
        // Posting it again fails only if the device needs a reset, and then
        // nothing arrives in any buffer.
        let _ = self.driver.borrow_mut().recycle_rx_buffer(self.buffer);
        result
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut driver = self.driver.borrow_mut();
        let mut buffer = driver.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        // A send fails only if the device needs a reset: the frame is lost,
        // as on any link.
        let _ = driver.send(buffer);
        result
    }
}

/// The IP stack on a port: one interface with the port's address, and its
/// sockets.
pub struct Stack {
    /// The port.
    pub port: Port,
    /// The interface.
    pub iface: Interface,
    /// Its sockets.
    pub sockets: SocketSet<'static>,
}

/// The gateway a port sends off-subnet datagrams to: the subnet's first host
/// address, or its second if that is the port's own. Any address of the
/// subnet would do: the router answers ARP for all of them.
pub fn gateway(address: Address) -> [u8; 4] {
    let first = (address.value() & address.mask()) + 1;
    let gateway = if first == address.value() {
        first + 1
    } else {
        first
    };
    gateway.to_be_bytes()
}

impl Stack {
    /// The stack on `port` with `address`.
    pub fn new(mut port: Port, address: Address) -> Stack {
        let mac = HardwareAddress::Ethernet(EthernetAddress(port.mac()));
        let mut config = Config::new(mac);
        config.random_seed = crate::arch::counter();
        let mut iface = Interface::new(config, &mut port, now());
        let ip = IpAddress::Ipv4(Ipv4Address::from(address.ip));
        iface.update_ip_addrs(|addresses| {
            // The interface starts with none, and has room for one.
            let _ = addresses.push(IpCidr::new(ip, address.prefix));
        });
        // Off-subnet destinations go to a gateway: the router answers ARP for
        // it like for any address of the subnet, and routes by destination,
        // so they reach the uplink.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::from(gateway(address)));
        Stack {
            port,
            iface,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    /// A UDP socket bound to `port`, with room for `packets` datagrams each way.
    pub fn udp(&mut self, port: u16, packets: usize) -> Result<SocketHandle, udp::BindError> {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; packets],
                vec![0; packets * UDP_PAYLOAD_MAX],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(port)?;
        Ok(self.sockets.add(socket))
    }

    /// The UDP socket `handle`.
    pub fn socket(&mut self, handle: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut(handle)
    }

    /// Moves frames both ways: takes what arrived, sends what waits. True if
    /// a socket's state changed.
    pub fn poll(&mut self) -> bool {
        let result = self.iface.poll(now(), &mut self.port, &mut self.sockets);
        result == PollResult::SocketStateChanged
    }
}
