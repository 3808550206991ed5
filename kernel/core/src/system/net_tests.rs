//! Host tests of the network inside the running system (`net.rs`): two native
//! partitions bring their virtio-net devices up through the fast lane; a frame
//! one sends is carried in its own turn into the other's posted buffer, with
//! the kernel's header; a receiver with no buffer, or a bad one, loses the
//! frame and nothing else; the service VM reads the counters. A driver reads
//! its port's configuration; a frame too short or too long is dropped and
//! counted, one the device cannot read breaks the sender's device alone.

use super::tests::*;
use super::*;
use crate::package::{Kind, PartitionSpec};
use crate::resources::{NetPort, Resources};
use crate::supervision::Supervision;
use crate::vgic::Access;
use septum_abi::Call;
use septum_abi::net::{
    Address, COUNTER_WORDS, Counters, DropReason, ETHERNET_HEADER, FRAME_MAX, MTU, ROUTER_MAC,
    port_mac,
};
use septum_abi::virtio::net::{
    CONFIG_MAC, CONFIG_MAX_QUEUE_PAIRS, CONFIG_MTU, CONFIG_STATUS, HEADER_SIZE, RECEIVE_QUEUE,
    STATUS_LINK_UP, TRANSMIT_QUEUE,
};
use septum_abi::virtio::{Device, descriptor, feature, register, status};

const ALPHA: usize = 1;
const BETA: usize = 2;
/// Where each driver keeps its queues (one page per ring, receive first) and
/// its buffers, as guest addresses.
const RINGS: u64 = GUEST_BASE + 0x1000;
const BUFFERS: u64 = GUEST_BASE + 0x8000;
/// The service VM's control capability for beta.
const CTL_BETA: u64 = 3;

fn port(ip: [u8; 4]) -> Resources {
    let mut resources = Resources::on_cores(RAM, RAM, &[0]);
    resources.set_net(NetPort {
        address: Address { ip, prefix: 24 },
        uplink: false,
    });
    resources
}

/// The service VM and alpha (10.0.0.2) and beta (10.0.0.3), both running.
fn network() -> (System, FakeMachine) {
    let image = [0u8; 16];
    let mut service_caps = caps_for(Kind::Service);
    service_caps[CTL_BETA as usize] = Some(crate::caps::Cap {
        ty: crate::caps::CapType::Control,
        rights: crate::caps::CapType::Control.possible_rights(),
        object: BETA as u16,
        badge: 0,
    });
    let spec = |name, kind, caps, resources| PartitionSpec {
        name,
        kind,
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps,
        resources,
        supervision: Supervision::default(),
    };
    let specs = [
        spec(
            "service",
            Kind::Service,
            service_caps,
            Resources::on_cores(RAM, RAM, &[0]),
        ),
        spec(
            "alpha",
            Kind::Guest,
            caps_for(Kind::Guest),
            port([10, 0, 0, 2]),
        ),
        spec(
            "beta",
            Kind::Guest,
            caps_for(Kind::Guest),
            port([10, 0, 0, 3]),
        ),
    ];
    let (mut sys, mut m) = placed(&specs, None);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    (sys, m)
}

struct Net {
    sys: System,
    m: FakeMachine,
    /// Chains offered so far, per partition and queue.
    offered: [[u16; 2]; 3],
}

impl Net {
    fn new() -> Net {
        let (sys, m) = network();
        let mut net = Net {
            sys,
            m,
            offered: [[0; 2]; 3],
        };
        net.bring_up(ALPHA);
        net.bring_up(BETA);
        net
    }

    fn write(&mut self, index: usize, offset: u64, value: u64) -> Completed {
        self.sys
            .emulate_access(
                index,
                Device::Net.window() + offset,
                4,
                Access::Write(value),
                &mut self.m,
            )
            .expect("the partition's own device")
    }

    fn poke(&mut self, index: usize, guest: u64, bytes: &[u8]) {
        let host = HOST_BASE + index as u64 * RAM + (guest - GUEST_BASE);
        self.m.write_ram(host, bytes);
    }

    fn peek(&mut self, index: usize, guest: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        let host = HOST_BASE + index as u64 * RAM + (guest - GUEST_BASE);
        self.m.read_ram(host, &mut bytes);
        bytes
    }

    fn ring(queue: usize) -> (u64, u64, u64) {
        let base = RINGS + queue as u64 * 0x3000;
        (base, base + 0x1000, base + 0x2000)
    }

    fn bring_up(&mut self, index: usize) {
        let driver = u64::from(status::ACKNOWLEDGE | status::DRIVER);
        self.write(index, register::STATUS, driver);
        self.write(index, register::DRIVER_FEATURES_SEL, 1);
        self.write(index, register::DRIVER_FEATURES, feature::VERSION_1 >> 32);
        let features_ok = driver | u64::from(status::FEATURES_OK);
        self.write(index, register::STATUS, features_ok);
        for queue in [RECEIVE_QUEUE, TRANSMIT_QUEUE] {
            let (desc, avail, used) = Net::ring(queue);
            self.write(index, register::QUEUE_SEL, queue as u64);
            self.write(index, register::QUEUE_NUM, 8);
            self.write(index, register::QUEUE_DESC_LOW, desc);
            self.write(index, register::QUEUE_DRIVER_LOW, avail);
            self.write(index, register::QUEUE_DEVICE_LOW, used);
            self.write(index, register::QUEUE_READY, 1);
        }
        self.write(
            index,
            register::STATUS,
            features_ok | u64::from(status::DRIVER_OK),
        );
    }

    /// Offers one buffer of `len` bytes at `address` on `queue` of `index`.
    fn offer(&mut self, index: usize, queue: usize, address: u64, len: u32, flags: u16) {
        let (desc, avail, _) = Net::ring(queue);
        let n = self.offered[index][queue];
        let slot = u64::from(n % 8);
        let mut raw = [0; 16];
        raw[..8].copy_from_slice(&address.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        self.poke(index, desc + slot * 16, &raw);
        self.poke(index, avail + 4 + 2 * slot, &(slot as u16).to_le_bytes());
        self.poke(index, avail + 2, &(n + 1).to_le_bytes());
        self.offered[index][queue] = n + 1;
    }

    /// Posts a receive buffer for `index`.
    fn post(&mut self, index: usize, flags: u16) {
        let address = BUFFERS + 0x1000 * u64::from(self.offered[index][RECEIVE_QUEUE] % 4);
        self.offer(index, RECEIVE_QUEUE, address, 2048, flags);
        self.write(index, register::QUEUE_NOTIFY, RECEIVE_QUEUE as u64);
        self.work(index);
    }

    /// `index` sends `frame` and the kernel carries it in its turn.
    fn send(&mut self, index: usize, frame: &[u8]) {
        let address = BUFFERS + 0x4000;
        let mut bytes = vec![0u8; HEADER_SIZE];
        bytes.extend_from_slice(frame);
        self.poke(index, address, &bytes);
        self.offer(index, TRANSMIT_QUEUE, address, bytes.len() as u32, 0);
        let completed = self.write(index, register::QUEUE_NOTIFY, TRANSMIT_QUEUE as u64);
        assert!(completed.reschedule, "a send is work the sender owes");
        self.work(index);
    }

    fn work(&mut self, index: usize) {
        while self.sys.owes_work(index) && self.sys.work(index, &mut self.m) {}
    }

    fn counters(&mut self, index: usize) -> Counters {
        self.sys.router.counters(index)
    }
}

/// An IPv4 datagram from `source` to `destination`.
fn datagram(source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&source);
    ip.extend_from_slice(&destination);
    let sum = septum_abi::net::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(b"8 bytes!");
    let mut frame = ROUTER_MAC.to_vec();
    frame.extend_from_slice(&port_mac(ALPHA));
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame
}

/// Verifies: SK-IFC-002, SK-IFC-004, SK-RIP-004
#[test]
fn a_datagram_lands_in_the_receivers_posted_buffer_with_the_kernels_header() {
    let mut net = Net::new();
    net.post(BETA, descriptor::WRITE);
    let sent = datagram([10, 0, 0, 2], [10, 0, 0, 3]);
    net.send(ALPHA, &sent);
    let got = net.peek(BETA, BUFFERS, HEADER_SIZE + sent.len());
    let mut header = [0u8; HEADER_SIZE];
    header[10] = 1; // num_buffers
    assert_eq!(&got[..HEADER_SIZE], &header);
    let frame = &got[HEADER_SIZE..];
    assert_eq!(&frame[..6], &port_mac(BETA));
    assert_eq!(&frame[6..12], &ROUTER_MAC);
    assert_eq!(&frame[12..], &sent[12..]);
    // The used ring gives the chain back with the bytes written.
    let (_, _, used) = Net::ring(RECEIVE_QUEUE);
    assert_eq!(net.peek(BETA, used + 2, 2), 1u16.to_le_bytes());
    let len = u32::from_le_bytes(net.peek(BETA, used + 8, 4).try_into().unwrap());
    assert_eq!(len as usize, HEADER_SIZE + sent.len());
    assert_eq!(
        (net.counters(ALPHA).routed, net.counters(BETA).received),
        (1, 1)
    );

    // With no buffer posted, the frame is dropped and counted on both sides.
    net.send(ALPHA, &sent);
    assert_eq!(
        net.counters(ALPHA).dropped[DropReason::NoBuffer.number()],
        1
    );
    assert_eq!(net.counters(BETA).missed, 1);
    // A spoofed one is dropped, with a buffer there.
    net.post(BETA, descriptor::WRITE);
    net.send(ALPHA, &datagram([10, 0, 0, 9], [10, 0, 0, 3]));
    assert_eq!(net.counters(ALPHA).dropped[DropReason::Spoofed.number()], 1);
    assert_eq!(net.counters(BETA).received, 1);

    // The service VM reads beta's counters through its control capability.
    let buffer = GUEST_BASE + 0x2000;
    hcall(
        &mut net.sys,
        &mut net.m,
        0,
        call(Call::NetInfo, &[CTL_BETA, buffer]),
    );
    let bytes = net.peek(0, buffer, COUNTER_WORDS * 8);
    let words: Vec<u64> = bytes
        .chunks(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect();
    let counters = Counters::from_words(&words.try_into().unwrap());
    assert_eq!(counters, net.counters(BETA));
    net.sys.report_net(&mut net.m);
    assert!(net.m.console.contains(
        "@@ net beta address=10.0.0.3/24 sent=0 routed=0 arp=0 received=1 missed=1 dropped=0"
    ));
}

/// Verifies: SK-MED-003, SK-IFC-004
#[test]
fn a_bad_receive_buffer_breaks_the_receivers_device_only() {
    let mut net = Net::new();
    // A device-readable buffer where the device must write.
    net.post(BETA, 0);
    net.send(ALPHA, &datagram([10, 0, 0, 2], [10, 0, 0, 3]));
    assert!(
        net.m
            .console
            .contains("@@ partition beta device net needs-reset bad-chain")
    );
    assert_eq!(
        net.counters(ALPHA).dropped[DropReason::NoBuffer.number()],
        1
    );
    // The sender's device still works: it gets its chain back.
    let (_, _, used) = Net::ring(TRANSMIT_QUEUE);
    assert_eq!(net.peek(ALPHA, used + 2, 2), 1u16.to_le_bytes());
    assert!(!net.m.console.contains("partition alpha device"));
}

/// A driver reads its port's configuration: its MAC address, the link up,
/// one queue pair and the MTU.
/// Verifies: SK-API-003
#[test]
fn the_device_shows_the_ports_mac_link_and_mtu() {
    let mut net = Net::new();
    let mut config = |index: usize, offset: u64, width: u8| {
        let address = Device::Net.window() + register::CONFIG + offset;
        net.sys
            .emulate_access(index, address, width, Access::Read, &mut net.m)
            .expect("the partition's own device")
            .value
    };
    for index in [ALPHA, BETA] {
        let low = config(index, CONFIG_MAC, 4).to_le_bytes();
        let high = config(index, CONFIG_MAC + 4, 2).to_le_bytes();
        let mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
        assert_eq!(mac, port_mac(index));
    }
    assert_eq!(config(ALPHA, CONFIG_STATUS, 2), u64::from(STATUS_LINK_UP));
    assert_eq!(config(ALPHA, CONFIG_MAX_QUEUE_PAIRS, 2), 1);
    assert_eq!(config(ALPHA, CONFIG_MTU, 2), MTU as u64);
    assert_eq!(config(ALPHA, CONFIG_MTU + 2, 4), 0, "past the end");
}

/// A frame that is shorter than the header or an Ethernet header, or longer
/// than the largest frame, is dropped and counted by reason on the sender's
/// port; a transmit buffer the device would have to write is a violation of
/// the sender's device alone.
/// Verifies: SK-IFC-004, SK-MED-003
#[test]
fn short_long_and_unreadable_frames_are_dropped_or_break_the_senders_device() {
    let mut net = Net::new();
    net.post(BETA, descriptor::WRITE);
    let address = BUFFERS + 0x4000;
    let cases = [
        (HEADER_SIZE as u32 - 1, DropReason::Malformed),
        (
            (HEADER_SIZE + ETHERNET_HEADER) as u32 - 1,
            DropReason::Malformed,
        ),
        ((HEADER_SIZE + FRAME_MAX) as u32 + 1, DropReason::Oversize),
    ];
    for (sent, (len, reason)) in cases.into_iter().enumerate() {
        net.offer(ALPHA, TRANSMIT_QUEUE, address, len, 0);
        net.write(ALPHA, register::QUEUE_NOTIFY, TRANSMIT_QUEUE as u64);
        net.work(ALPHA);
        let (_, _, used) = Net::ring(TRANSMIT_QUEUE);
        let back = (sent + 1) as u16;
        assert_eq!(net.peek(ALPHA, used + 2, 2), back.to_le_bytes(), "{len}");
        assert!(net.counters(ALPHA).dropped[reason.number()] > 0, "{len}");
    }
    let dropped = net.counters(ALPHA).dropped;
    assert_eq!(
        (
            dropped[DropReason::Malformed.number()],
            dropped[DropReason::Oversize.number()]
        ),
        (2, 1)
    );
    assert_eq!(net.counters(BETA).received, 0, "nothing was carried");

    net.offer(ALPHA, TRANSMIT_QUEUE, address, 64, descriptor::WRITE);
    net.write(ALPHA, register::QUEUE_NOTIFY, TRANSMIT_QUEUE as u64);
    net.work(ALPHA);
    assert!(
        net.m
            .console
            .contains("@@ partition alpha device net needs-reset bad-chain")
    );
    let status_of = |net: &mut Net, index: usize| {
        let address = Device::Net.window() + register::STATUS;
        net.sys
            .emulate_access(index, address, 4, Access::Read, &mut net.m)
            .expect("the partition's own device")
            .value as u32
    };
    assert_ne!(status_of(&mut net, ALPHA) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(status_of(&mut net, BETA) & status::DEVICE_NEEDS_RESET, 0);
    assert!(!net.m.console.contains("partition beta device"));
}
