//! Host tests of the transport and the queue walker: the bring-up a driver
//! does, each register written in the wrong state, each malformed ring, and
//! (property-tested) random rings that never make the walker read outside the
//! queue, loop, or take a chain it should refuse.

use std::collections::BTreeSet;

use proptest::prelude::*;
use septum_abi::virtio::{Device, Violation, descriptor, feature, interrupt, register, status};

use super::queue::{CHAIN_MAX, GuestMemory, Queue};
use super::transport::{Read, Transport, Written};

/// Guest memory: `size` bytes from `BASE`, with some pages missing (holes).
struct FakeMemory {
    bytes: Vec<u8>,
    holes: BTreeSet<u64>,
}

const BASE: u64 = 0x4000_0000;
const PAGE: u64 = 4096;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const DATA: u64 = BASE + 0x3000;

impl FakeMemory {
    fn new() -> FakeMemory {
        FakeMemory {
            bytes: vec![0; 8 * PAGE as usize],
            holes: BTreeSet::new(),
        }
    }

    fn range(&self, address: u64, len: u64) -> Result<std::ops::Range<usize>, Violation> {
        let start = address.checked_sub(BASE).ok_or(Violation::BadAddress)?;
        let end = start.checked_add(len).ok_or(Violation::BadAddress)?;
        let hole = (start / PAGE..end.div_ceil(PAGE)).any(|p| self.holes.contains(&p));
        if end > self.bytes.len() as u64 || hole {
            return Err(Violation::BadAddress);
        }
        Ok(start as usize..end as usize)
    }

    fn put(&mut self, address: u64, bytes: &[u8]) {
        let range = self.range(address, bytes.len() as u64).unwrap();
        self.bytes[range].copy_from_slice(bytes);
    }

    fn descriptor(&mut self, index: u16, address: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0; 16];
        raw[..8].copy_from_slice(&address.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.put(DESC + u64::from(index) * 16, &raw);
    }

    /// Makes `heads` available, from ring slot 0.
    fn offer(&mut self, heads: &[u16]) {
        for (slot, head) in heads.iter().enumerate() {
            self.put(AVAIL + 4 + 2 * slot as u64, &head.to_le_bytes());
        }
        self.put(AVAIL + 2, &(heads.len() as u16).to_le_bytes());
    }
}

impl GuestMemory for FakeMemory {
    fn read(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), Violation> {
        let range = self.range(address, buffer.len() as u64)?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }
    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), Violation> {
        let range = self.range(address, bytes.len() as u64)?;
        self.bytes[range].copy_from_slice(bytes);
        Ok(())
    }
    fn check(&mut self, address: u64, len: u64) -> Result<(), Violation> {
        self.range(address, len).map(|_| ())
    }
}

fn queue(size: u16) -> Queue {
    let mut queue = Queue::default();
    (queue.size, queue.desc, queue.driver, queue.device) = (size, DESC, AVAIL, USED);
    assert!(queue.layout_ok());
    queue.enable();
    queue
}

/// Verifies: SK-API-003
#[test]
fn a_well_formed_chain_is_copied_out_taken_and_returned() {
    let mut memory = FakeMemory::new();
    let mut queue = queue(8);
    memory.descriptor(3, DATA, 16, descriptor::NEXT, 5);
    memory.descriptor(5, DATA + 16, 8, descriptor::WRITE, 0);
    memory.offer(&[3]);
    let chain = queue.peek(&mut memory).unwrap().unwrap();
    assert_eq!(chain.head, 3);
    assert_eq!(chain.buffers().len(), 2);
    assert!(!chain.buffers()[0].writable && chain.buffers()[1].writable);
    assert_eq!(chain.readable_len(), None, "it has a writable buffer");
    assert_eq!(
        queue.peek(&mut memory).unwrap(),
        Some(chain),
        "peek takes nothing"
    );
    queue.consume();
    assert_eq!(queue.peek(&mut memory).unwrap(), None);
    queue.push_used(&mut memory, 3, 8).unwrap();
    let mut used = [0; 12];
    memory.read(USED, &mut used[..4]).unwrap();
    memory.read(USED + 4, &mut used[4..]).unwrap();
    assert_eq!(u16::from_le_bytes([used[2], used[3]]), 1, "used index");
    assert_eq!(&used[4..], &[3, 0, 0, 0, 8, 0, 0, 0], "used element");
}

/// Writes a case's rings.
type Setup = fn(&mut FakeMemory);

/// Verifies: SK-MED-003
#[test]
fn each_malformed_ring_is_its_own_violation() {
    let cases: [(&str, Setup, Violation); 7] = [
        (
            "loop",
            |m| {
                m.descriptor(0, DATA, 4, descriptor::NEXT, 1);
                m.descriptor(1, DATA, 4, descriptor::NEXT, 0);
                m.offer(&[0]);
            },
            Violation::Loop,
        ),
        (
            "head past the queue",
            |m| m.offer(&[8]),
            Violation::BadDescriptor,
        ),
        (
            "next past the queue",
            |m| {
                m.descriptor(0, DATA, 4, descriptor::NEXT, 9);
                m.offer(&[0]);
            },
            Violation::BadDescriptor,
        ),
        (
            // Every descriptor once, then out of the table: a bad index, not a
            // loop (the walker once called it a loop after `size` steps).
            "next past the queue after every descriptor",
            |m| {
                for i in 0..7 {
                    m.descriptor(i, DATA, 4, descriptor::NEXT, i + 1);
                }
                m.descriptor(7, DATA, 4, descriptor::NEXT, 8);
                m.offer(&[0]);
            },
            Violation::BadDescriptor,
        ),
        (
            "indirect",
            |m| {
                m.descriptor(0, DATA, 16, descriptor::INDIRECT, 0);
                m.offer(&[0]);
            },
            Violation::BadDescriptor,
        ),
        (
            "too many buffers",
            |m| {
                for i in 0..5 {
                    m.descriptor(i, DATA, 4, descriptor::NEXT, i + 1);
                }
                m.descriptor(5, DATA, 4, 0, 0);
                m.offer(&[0]);
            },
            Violation::BadChain,
        ),
        (
            "avail jump",
            |m| m.put(AVAIL + 2, &9u16.to_le_bytes()),
            Violation::AvailJump,
        ),
    ];
    for (name, make, violation) in cases {
        let mut memory = FakeMemory::new();
        make(&mut memory);
        let queue = queue(8);
        assert_eq!(queue.peek(&mut memory), Err(violation), "{name}");
    }
}

/// Verifies: SK-MED-003
#[test]
fn rings_in_holes_are_refused_and_nothing_is_written() {
    let mut memory = FakeMemory::new();
    let mut queue = queue(8);
    memory.descriptor(0, DATA, 4, 0, 0);
    memory.offer(&[0]);
    let chain = queue.peek(&mut memory).unwrap().unwrap();
    memory.holes.insert(2); // the used ring's page
    let before = memory.bytes.clone();
    assert_eq!(
        queue.push_used(&mut memory, chain.head, 0),
        Err(Violation::BadAddress)
    );
    assert_eq!(memory.bytes, before);
    assert_eq!(
        queue.peek(&mut memory),
        Err(Violation::BadAddress),
        "no chain is taken that could not be given back"
    );
    memory.holes.remove(&2);
    memory.holes.insert(1); // the available ring's page
    assert_eq!(queue.peek(&mut memory), Err(Violation::BadAddress));
    let mut misaligned = queue;
    misaligned.desc = DESC + 8;
    assert!(!misaligned.layout_ok());
    let mut wrapping = queue;
    wrapping.device = u64::MAX - 3;
    assert!(!wrapping.layout_ok());
}

/// A transport brought up as a driver does, with one queue of 8 ready.
fn live(device: Device) -> Transport {
    let mut t = Transport::new(device);
    let w = |t: &mut Transport, offset, value| t.write(offset, 4, value).unwrap();
    assert_eq!(
        t.read(register::MAGIC_VALUE, 4),
        Ok(Read::Value(register::MAGIC))
    );
    assert_eq!(t.read(register::VERSION, 4), Ok(Read::Value(2)));
    assert_eq!(t.read(register::DEVICE_ID, 4), Ok(Read::Value(device.id())));
    w(
        &mut t,
        register::STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER),
    );
    w(&mut t, register::DEVICE_FEATURES_SEL, 1);
    assert_eq!(t.read(register::DEVICE_FEATURES, 4), Ok(Read::Value(1)));
    w(&mut t, register::DRIVER_FEATURES_SEL, 1);
    w(&mut t, register::DRIVER_FEATURES, 1);
    let features_ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    w(&mut t, register::STATUS, u64::from(features_ok));
    assert_eq!(t.read(register::STATUS, 4), Ok(Read::Value(features_ok)));
    w(&mut t, register::QUEUE_SEL, 0);
    assert_eq!(t.read(register::QUEUE_NUM_MAX, 4), Ok(Read::Value(256)));
    w(&mut t, register::QUEUE_NUM, 8);
    w(&mut t, register::QUEUE_DESC_LOW, DESC);
    w(&mut t, register::QUEUE_DRIVER_LOW, AVAIL);
    w(&mut t, register::QUEUE_DEVICE_LOW, USED);
    w(&mut t, register::QUEUE_READY, 1);
    w(
        &mut t,
        register::STATUS,
        u64::from(features_ok | status::DRIVER_OK),
    );
    assert!(t.live());
    t
}

/// Verifies: SK-API-003
#[test]
fn a_driver_brings_the_device_up_and_notifies_it() {
    let mut t = live(Device::Balloon);
    assert!(t.queue(0).is_some());
    assert!(t.negotiated(feature::VERSION_1));
    assert_eq!(t.write(register::QUEUE_NOTIFY, 4, 0), Ok(Written::Work));
    assert_eq!(t.next_notified(), Some(0));
    assert_eq!(t.next_notified(), None);
    assert_eq!(t.write(register::STATUS, 4, 0), Ok(Written::Reset));
    assert!(
        !t.live() && t.queue(0).is_none(),
        "a reset forgets everything"
    );
}

/// Verifies: SK-API-003
#[test]
fn features_without_version_1_are_not_accepted() {
    let mut t = Transport::new(Device::Console);
    let driver = u64::from(status::ACKNOWLEDGE | status::DRIVER);
    t.write(register::STATUS, 4, driver).unwrap();
    t.write(register::STATUS, 4, driver | u64::from(status::FEATURES_OK))
        .unwrap();
    assert_eq!(
        t.read(register::STATUS, 4),
        Ok(Read::Value(driver as u32)),
        "FEATURES_OK reads back clear"
    );
    assert_eq!(
        t.write(register::STATUS, 4, driver | u64::from(status::DRIVER_OK)),
        Err(Violation::BadRegister),
        "DRIVER_OK without FEATURES_OK"
    );
    let both = driver | u64::from(status::FEATURES_OK | status::DRIVER_OK);
    assert_eq!(
        t.write(register::STATUS, 4, both),
        Err(Violation::BadRegister),
        "DRIVER_OK with features the device did not accept, in one write"
    );
    assert!(!t.live());
}

/// Verifies: SK-MED-003
#[test]
fn register_writes_in_the_wrong_state_are_violations_that_change_nothing() {
    let base = live(Device::Balloon);
    let cases: [(&str, u64, u8, u64); 8] = [
        ("queue size after DRIVER_OK", register::QUEUE_NUM, 4, 8),
        (
            "features after FEATURES_OK",
            register::DRIVER_FEATURES,
            4,
            1,
        ),
        (
            "status bit dropped",
            register::STATUS,
            4,
            u64::from(status::DRIVER_OK),
        ),
        ("notify of a queue it lacks", register::QUEUE_NOTIFY, 4, 3),
        ("narrow register write", register::QUEUE_SEL, 2, 0),
        ("unaligned register", register::QUEUE_SEL + 1, 4, 0),
        ("read-only register", register::MAGIC_VALUE, 4, 0),
        ("ready again after DRIVER_OK", register::QUEUE_READY, 4, 1),
    ];
    for (name, offset, width, value) in cases {
        let mut t = base;
        assert_eq!(
            t.write(offset, width, value),
            Err(Violation::BadRegister),
            "{name}"
        );
        assert_eq!(
            format!("{t:?}"),
            format!("{base:?}"),
            "{name} changed nothing"
        );
    }
    let mut fresh = Transport::new(Device::Balloon);
    fresh
        .write(
            register::STATUS,
            4,
            u64::from(status::ACKNOWLEDGE | status::DRIVER),
        )
        .unwrap();
    assert_eq!(
        fresh.write(register::QUEUE_NUM, 4, 6),
        Err(Violation::BadRegister),
        "not a power of two"
    );
    assert_eq!(
        fresh.write(register::QUEUE_NUM, 4, 512),
        Err(Violation::BadRegister)
    );
}

/// Verifies: SK-MED-003
#[test]
fn a_device_that_needs_a_reset_takes_nothing_until_reset() {
    let mut t = live(Device::Console);
    t.write(register::QUEUE_NOTIFY, 4, 1).unwrap();
    t.needs_reset();
    assert!(!t.live() && t.next_notified().is_none());
    assert_eq!(t.write(register::QUEUE_NOTIFY, 4, 1), Ok(Written::Done));
    let Ok(Read::Value(value)) = t.read(register::STATUS, 4) else {
        panic!("status reads");
    };
    assert_ne!(value & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(t.write(register::STATUS, 4, 0), Ok(Written::Reset));
    assert_eq!(t.read(register::STATUS, 4), Ok(Read::Value(0)));
}

/// What the driver set up reads back as it wrote it (ring addresses whole,
/// both halves), the registers it does not write read as the specification
/// says, and the interrupt status and configuration generation follow the
/// device.
/// Verifies: SK-API-003
#[test]
fn the_driver_reads_back_its_set_up_and_the_fixed_registers() {
    let mut t = Transport::new(Device::Balloon);
    let value = |t: &mut Transport, offset| match t.read(offset, 4) {
        Ok(Read::Value(value)) => value,
        other => panic!("{offset:#x}: {other:?}"),
    };
    let w = |t: &mut Transport, offset, value| t.write(offset, 4, value);
    assert_eq!(value(&mut t, register::VENDOR_ID), register::VENDOR);
    let features = Device::Balloon.features();
    for (sel, expected) in [(0, features as u32), (1, (features >> 32) as u32), (2, 0)] {
        w(&mut t, register::DEVICE_FEATURES_SEL, sel).unwrap();
        assert_eq!(
            value(&mut t, register::DEVICE_FEATURES),
            expected,
            "word {sel}"
        );
    }
    for shm in [register::SHM_LEN_LOW, register::SHM_LEN_HIGH] {
        assert_eq!(value(&mut t, shm), u32::MAX, "no shared memory regions");
    }
    assert_eq!(t.read(register::STATUS, 2), Err(Violation::BadRegister));

    // Feature words beyond the two it has take only zeros.
    w(
        &mut t,
        register::STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER),
    )
    .unwrap();
    w(&mut t, register::DRIVER_FEATURES_SEL, 0).unwrap();
    assert_eq!(w(&mut t, register::DRIVER_FEATURES, 0), Ok(Written::Done));
    w(&mut t, register::DRIVER_FEATURES_SEL, 2).unwrap();
    assert_eq!(w(&mut t, register::DRIVER_FEATURES, 0), Ok(Written::Done));
    assert_eq!(
        w(&mut t, register::DRIVER_FEATURES, 1),
        Err(Violation::BadRegister)
    );

    w(&mut t, register::QUEUE_SEL, 1).unwrap();
    w(&mut t, register::QUEUE_NUM, 16).unwrap();
    let rings = [
        (
            register::QUEUE_DESC_LOW,
            register::QUEUE_DESC_HIGH,
            0x1_4000_0000u64,
        ),
        (
            register::QUEUE_DRIVER_LOW,
            register::QUEUE_DRIVER_HIGH,
            0x2_4000_1000,
        ),
        (
            register::QUEUE_DEVICE_LOW,
            register::QUEUE_DEVICE_HIGH,
            0x3_4000_2000,
        ),
    ];
    for (low, high, address) in rings {
        w(&mut t, low, address & 0xffff_ffff).unwrap();
        w(&mut t, high, address >> 32).unwrap();
    }
    assert_eq!(value(&mut t, register::QUEUE_NUM), 16);
    assert_eq!(value(&mut t, register::QUEUE_READY), 0);
    for (low, high, address) in rings {
        let read = u64::from(value(&mut t, high)) << 32 | u64::from(value(&mut t, low));
        assert_eq!(read, address, "{low:#x}");
    }
    w(&mut t, register::QUEUE_SEL, 3).unwrap();
    assert_eq!(
        value(&mut t, register::QUEUE_NUM_MAX),
        0,
        "a queue it lacks"
    );
    assert_eq!(value(&mut t, register::QUEUE_NUM), 0);

    assert!(t.interrupt(interrupt::USED_BUFFER), "the line rises");
    assert!(!t.interrupt(interrupt::USED_BUFFER), "already high");
    assert_eq!(
        value(&mut t, register::INTERRUPT_STATUS),
        interrupt::USED_BUFFER
    );
    w(
        &mut t,
        register::INTERRUPT_ACK,
        u64::from(interrupt::USED_BUFFER),
    )
    .unwrap();
    assert_eq!(value(&mut t, register::INTERRUPT_STATUS), 0);
    assert_eq!(value(&mut t, register::CONFIG_GENERATION), 0);
    assert!(!t.config_changed(), "no interrupt before DRIVER_OK");
    assert_eq!(value(&mut t, register::CONFIG_GENERATION), 1);

    // A ready queue may be taken down, even while the driver is live.
    let mut t = live(Device::Console);
    assert_eq!(w(&mut t, register::QUEUE_READY, 0), Ok(Written::Done));
    assert!(t.queue(0).is_none());
}

/// A descriptor: address, length, flags, next.
type RawDescriptor = (u64, u32, u16, u16);

/// A random queue: its size, descriptor table, one available head and the
/// available index.
fn ring() -> impl Strategy<Value = (u16, Vec<RawDescriptor>, u16, u16)> {
    (0u32..4).prop_flat_map(|shift| {
        let size = 2u16 << shift;
        (
            Just(size),
            prop::collection::vec(
                (
                    prop_oneof![Just(DATA), Just(DATA + 0x123), 0u64..u64::MAX],
                    0u32..64,
                    0u16..8,
                    0..size + 2,
                ),
                usize::from(size),
            ),
            0..size + 2,
            0u16..20,
        )
    })
}

proptest! {
    /// Verifies: SK-MED-003
    #[test]
    fn random_rings_never_lead_the_walker_astray((size, table, head, avail) in ring()) {
        let mut memory = FakeMemory::new();
        for (index, &(address, len, flags, next)) in table.iter().enumerate() {
            memory.descriptor(index as u16, address, len, flags, next);
        }
        memory.put(AVAIL + 4, &head.to_le_bytes());
        memory.put(AVAIL + 2, &avail.to_le_bytes());
        let queue = queue(size);
        let before = memory.bytes.clone();
        let result = queue.peek(&mut memory);
        prop_assert_eq!(&memory.bytes, &before, "peeking writes nothing");
        // The reference walk: follow `next` from the head.
        let expected = if avail == 0 {
            Ok(None)
        } else if avail > size {
            Err(Violation::AvailJump)
        } else {
            let mut seen = BTreeSet::new();
            let mut index = head;
            let mut chain = Vec::new();
            loop {
                if index >= size {
                    break Err(Violation::BadDescriptor);
                }
                if !seen.insert(index) {
                    break Err(Violation::Loop);
                }
                let (_, _, flags, next) = table[usize::from(index)];
                if flags & descriptor::INDIRECT != 0 {
                    break Err(Violation::BadDescriptor);
                }
                chain.push(index);
                if flags & descriptor::NEXT == 0 {
                    break if chain.len() > CHAIN_MAX { Err(Violation::BadChain) } else { Ok(Some(chain.len())) };
                }
                index = next;
            }
        };
        prop_assert_eq!(result.map(|c| c.map(|c| c.buffers().len())), expected);
    }
}
