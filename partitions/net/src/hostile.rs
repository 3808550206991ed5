//! The hostile role: a virtio-net driver of its own (the SDK's raw driver,
//! [`septum_sdk::virtio`], on rings of [`SIZE`]) that sends frames no stack
//! would, one case after another, and then breaks the rings' rules. Every
//! frame case must be dropped and counted by the router under its reason
//! (the kernel's `@@ net hostile` line at the end gives each count), with
//! nothing delivered anywhere: after each, the transmit chain must be used,
//! the device still live and nothing written into this partition's own
//! receive buffers. Every ring case must put the device in
//! `DEVICE_NEEDS_RESET` (the kernel's `@@ partition hostile device net
//! needs-reset` line), after which the device is reset and set up again.
//!
//! The frames aim at the victim (a bystander that counts what it receives)
//! and at the deaf partition (whose driver posts no receive buffer): a flood
//! of well-formed datagrams there is dropped as no buffer.

use core::ptr::NonNull;

use septum_abi::net::{Address, FRAME_MAX, ROUTER_MAC};
use septum_abi::virtio::net::{HEADER_SIZE, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use septum_sdk::net::BUFFER_LEN;
use septum_sdk::println;
use septum_sdk::virtio::{Device, DeviceMemory, Queue, Rings, Transport, feature};

use crate::frames::{self, Builder, ETHERTYPE_IPV6, IPV4_HEADER};

/// Buffers of each hand-built queue.
const SIZE: u16 = 8;
/// Receive buffers posted after each set-up.
const POSTED: usize = 4;
/// Datagrams of the flood at the deaf partition.
const FLOOD: usize = 64;
/// Room for the largest frame a case sends (past the router's limit).
const FRAME_ROOM: usize = 2048;

static RINGS: [DeviceMemory<Rings>; 2] = [
    DeviceMemory::new(Rings::new()),
    DeviceMemory::new(Rings::new()),
];
static HEADER: DeviceMemory<[u8; HEADER_SIZE]> = DeviceMemory::new([0; HEADER_SIZE]);
static FRAME: DeviceMemory<[u8; FRAME_ROOM]> = DeviceMemory::new([0; FRAME_ROOM]);
static RECEIVE: DeviceMemory<[[u8; BUFFER_LEN]; POSTED]> =
    DeviceMemory::new([[0; BUFFER_LEN]; POSTED]);

/// The device, its rings and buffers, and whom the cases aim at.
struct Lab {
    transport: Transport,
    rx: Queue,
    tx: Queue,
    header: u64,
    frame: NonNull<[u8; FRAME_ROOM]>,
    receive: u64,
    mac: [u8; 6],
    own: [u8; 4],
    victim: [u8; 4],
    deaf: [u8; 4],
    failures: u32,
}

/// Runs every case; `Err` only if the set-up fails.
pub fn run(own: Address, victim: [u8; 4], deaf: [u8; 4]) -> Result<(), &'static str> {
    let queue = |memory| Queue::new(memory, SIZE).ok_or("ring memory taken");
    let mut lab = Lab {
        transport: Transport::new(Device::Net),
        rx: queue(&RINGS[0])?,
        tx: queue(&RINGS[1])?,
        header: HEADER.take().ok_or("header taken")?.as_ptr() as u64,
        frame: FRAME.take().ok_or("frame taken")?,
        receive: RECEIVE.take().ok_or("buffers taken")?.as_ptr() as u64,
        mac: [0; 6],
        own: own.ip,
        victim,
        deaf,
        failures: 0,
    };
    lab.up(true)?;
    println!("hostile: device up, mac {:02x?}, queues of {SIZE}", lab.mac);
    lab.arp("arp-request");
    lab.frames();
    lab.flood();
    lab.rings()?;
    lab.arp("arp-after-reset");
    match lab.failures {
        0 => Ok(()),
        _ => Err("a case went wrong"),
    }
}

impl Lab {
    /// Resets the device and sets it up again: features, both queues, and
    /// (with `post`) [`POSTED`] receive buffers.
    fn up(&mut self, post: bool) -> Result<(), &'static str> {
        self.rx.reset();
        self.tx.reset();
        let wanted = feature::NET_MAC | feature::NET_MTU | feature::NET_STATUS;
        let t = &self.transport;
        t.negotiate(Device::Net, wanted).map_err(|e| e.name())?;
        t.set_queue(RECEIVE_QUEUE as u16, &self.rx)
            .map_err(|e| e.name())?;
        t.set_queue(TRANSMIT_QUEUE as u16, &self.tx)
            .map_err(|e| e.name())?;
        t.driver_ok().map_err(|e| e.name())?;
        for (i, byte) in self.mac.iter_mut().enumerate() {
            *byte = (t.config(i as u64 & !3) >> (8 * (i % 4))) as u8;
        }
        if post {
            for index in 0..POSTED {
                self.post(index, BUFFER_LEN as u32, true);
            }
        }
        Ok(())
    }

    /// Posts receive buffer `index` as `len` bytes, device-writable or not.
    fn post(&mut self, index: usize, len: u32, writable: bool) {
        let address = self.receive + (index * BUFFER_LEN) as u64;
        if self.rx.add(&[(address, len, writable)]).is_err() {
            self.fail("no room to post a receive buffer");
        }
        self.transport.notify(RECEIVE_QUEUE as u16);
    }

    fn fail(&mut self, why: &str) {
        println!("hostile: FAILED: {why}");
        self.failures += 1;
    }

    /// The frame buffer, to build a case in.
    fn buffer(&mut self) -> &mut [u8] {
        // SAFETY: the buffer is this lab's alone (taken from `DeviceMemory`),
        // and the device reads it only while a send is in flight, which ends
        // before `send` returns.
        unsafe { &mut *self.frame.as_ptr() }
    }

    /// Sends the first `len` bytes of the frame buffer after a zero header
    /// (0: the header alone). True if the chain came back.
    fn send(&mut self, len: usize) -> bool {
        let frame = self.frame.as_ptr() as u64;
        let chain = [
            (self.header, HEADER_SIZE as u32, false),
            (frame, len as u32, false),
        ];
        self.send_chain(&chain[..if len == 0 { 1 } else { 2 }])
    }

    /// Sends the chain of `buffers`. True if it came back.
    fn send_chain(&mut self, buffers: &[(u64, u32, bool)]) -> bool {
        if self.tx.add(buffers).is_err() {
            self.fail("no room to send");
            return false;
        }
        self.transport.notify(TRANSMIT_QUEUE as u16);
        self.tx.take_used().is_some()
    }

    /// Sends a frame case that the router must drop: its chain comes back,
    /// the device stays live, and nothing arrives.
    fn dropped(&mut self, name: &str, len: usize) {
        let used = self.send(len);
        self.judge(name, used);
    }

    /// Judges a case the router must drop whose chain came back (`used`).
    fn judge(&mut self, name: &str, used: bool) {
        let broken = self.transport.needs_reset();
        let arrived = self.rx.take_used().is_some();
        match (used, broken, arrived) {
            (true, false, false) => println!("hostile: {name}: dropped"),
            _ => {
                println!(
                    "hostile: {name}: FAILED used={used} needs-reset={broken} arrived={arrived}"
                );
                self.failures += 1;
            }
        }
    }

    /// A proper ARP request for the victim's address: the router answers.
    fn arp(&mut self, name: &str) {
        let (mac, own, victim) = (self.mac, self.own, self.victim);
        let len = frames::arp(self.buffer(), mac, 1, own, victim).len();
        let used = self.send(len);
        let answer = self.rx.take_used();
        let from_router = answer.is_some_and(|(head, _)| {
            // SAFETY: the buffer at `head` was posted by `post` and the device
            // has given it back; nothing else writes it.
            let bytes = unsafe {
                &*((self.receive + u64::from(head) * BUFFER_LEN as u64) as *const [u8; BUFFER_LEN])
            };
            bytes[HEADER_SIZE + 6..HEADER_SIZE + 12] == ROUTER_MAC
                && bytes[HEADER_SIZE + 14 + 8..HEADER_SIZE + 14 + 14] == ROUTER_MAC
        });
        match (used, from_router) {
            (true, true) => println!("hostile: {name}: answered with the router's MAC"),
            _ => self.fail(name),
        }
        if let Some((head, _)) = answer {
            self.post(usize::from(head), BUFFER_LEN as u32, true);
        }
    }

    /// The frame cases, each dropped under the reason its name says.
    fn frames(&mut self) {
        let (mac, own, victim, deaf) = (self.mac, self.own, self.victim, self.deaf);
        let data = b"not for you";
        // Spoofed: a source that is not its own.
        let len = frames::udp(self.buffer(), mac, victim, deaf, data).len();
        self.dropped("spoofed: the victim's source", len);
        let unowned = [own[0], own[1], own[2], 99];
        let len = frames::udp(self.buffer(), mac, unowned, victim, data).len();
        self.dropped("spoofed: an unowned source", len);
        let len = frames::udp(self.buffer(), mac, [192, 168, 7, 7], victim, data).len();
        self.dropped("spoofed: a foreign source", len);
        let len = frames::arp(self.buffer(), mac, 1, victim, deaf).len();
        self.dropped("spoofed: an ARP request as the victim", len);
        // Malformed: headers that contradict themselves or are cut short.
        type Spoil = fn(&mut [u8]);
        let spoils: [(&str, Spoil, bool); 5] = [
            ("malformed: bad checksum", |h| h[10] ^= 0xff, false),
            ("malformed: IHL 4", |h| h[0] = 0x44, true),
            (
                "malformed: IHL 15 past the total length",
                |h| h[0] = 0x4f,
                true,
            ),
            (
                "malformed: total length past the frame",
                |h| h[2..4].copy_from_slice(&1400u16.to_be_bytes()),
                true,
            ),
            ("malformed: version 6", |h| h[0] = 0x65, true),
        ];
        for (name, spoil, fix) in spoils {
            let len = frames::udp(self.buffer(), mac, own, victim, data).len();
            frames::spoil_ipv4(self.buffer(), spoil, fix);
            self.dropped(name, len);
        }
        let len = Builder::ethernet(self.buffer(), mac, 0x0800)
            .pad(IPV4_HEADER / 2)
            .len();
        self.dropped("malformed: IPv4 header cut short", len);
        self.dropped("malformed: Ethernet header cut short", 10);
        self.dropped("malformed: the virtio header alone", 0);
        // Oversize: a chain longer than a header and the largest frame.
        frames::udp(self.buffer(), mac, own, victim, data);
        self.dropped("oversize: a frame of 1515 bytes", FRAME_MAX + 1);
        let frame = self.frame.as_ptr() as u64;
        let used = self.send_chain(&[
            (self.header, HEADER_SIZE as u32, false),
            (frame, FRAME_MAX as u32, false),
            (frame + FRAME_MAX as u64, 1, false),
        ]);
        self.judge(
            "oversize: a third buffer one byte past the largest frame",
            used,
        );
        // Not IPv4.
        let len = Builder::ethernet(self.buffer(), mac, ETHERTYPE_IPV6)
            .pad(60)
            .len();
        self.dropped("not-ipv4: IPv6", len);
        let len = frames::arp(self.buffer(), mac, 2, own, victim).len();
        self.dropped("not-ipv4: an ARP reply", len);
        let len = Builder::ethernet(self.buffer(), mac, 0x88b5).pad(46).len();
        self.dropped("not-ipv4: an unknown type", len);
        // No route: no single host's address, or no port's and no uplink.
        for (name, to) in [
            (
                "no-route: the subnet's broadcast",
                [own[0], own[1], own[2], 255],
            ),
            ("no-route: the limited broadcast", [255; 4]),
            ("no-route: multicast", [224, 0, 0, 1]),
            ("no-route: off the subnet, no uplink", [10, 9, 9, 9]),
        ] {
            let len = frames::udp(self.buffer(), mac, own, to, data).len();
            self.dropped(name, len);
        }
    }

    /// Well-formed datagrams at the deaf partition, which posts no buffer.
    fn flood(&mut self) {
        let (mac, own, deaf) = (self.mac, self.own, self.deaf);
        let mut quiet = 0;
        for round in 0..FLOOD {
            let len = frames::udp(self.buffer(), mac, own, deaf, &[round as u8; 64]).len();
            let used = self.send(len);
            if used && !self.transport.needs_reset() && self.rx.take_used().is_none() {
                quiet += 1;
            }
        }
        match quiet {
            FLOOD => println!("hostile: flood: {FLOOD} datagrams at the deaf partition sent"),
            _ => self.fail("flood"),
        }
    }

    /// The ring cases, each a violation the device must answer with
    /// `DEVICE_NEEDS_RESET`; the device is set up again after each.
    fn rings(&mut self) -> Result<(), &'static str> {
        // A transmit chain with a device-writable buffer.
        let frame = self.frame.as_ptr() as u64;
        let chain = [(self.header, HEADER_SIZE as u32, false), (frame, 64, true)];
        if self.tx.add(&chain).is_err() {
            self.fail("no room to send");
        }
        self.transport.notify(TRANSMIT_QUEUE as u16);
        self.needs_reset("a device-writable transmit buffer")?;
        // Receive buffers the router cannot write its ARP answer into.
        for (name, len, writable) in [
            ("a read-only receive buffer", BUFFER_LEN as u32, false),
            ("a receive buffer too small for a frame", 40, true),
        ] {
            self.up(false)?;
            self.post(0, len, writable);
            let (mac, own, victim) = (self.mac, self.own, self.victim);
            let len = frames::arp(self.buffer(), mac, 1, own, victim).len();
            self.send(len);
            self.needs_reset(name)?;
        }
        Ok(())
    }

    /// Checks the device asks for a reset after case `name`, then sets it up again.
    fn needs_reset(&mut self, name: &str) -> Result<(), &'static str> {
        match self.transport.needs_reset() {
            true => println!("hostile: {name}: needs-reset"),
            false => {
                println!("hostile: {name}: NO-RESET");
                self.failures += 1;
            }
        }
        self.up(true)
    }
}
