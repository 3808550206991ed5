//! Host tests of the virtio devices inside the running system (`virtio.rs`): a
//! Linux partition's driver brings its balloon and console up through the fast
//! lane, and the kernel walks their queues as work the partition owes,
//! carrying page lists out on the balloon ledger, statistics into the memory
//! report and output onto the console; a violation needs a reset of that
//! device and changes nothing else; a restart resets the devices.

use super::tests::*;
use super::*;
use crate::package::{Kind, PartitionSpec};
use crate::resources::Resources;
use crate::supervision::Supervision;
use crate::vgic::Access;
use crate::virtio::balloon::STATS_PERIOD_US;
use septum_abi::Call;
use septum_abi::balloon::{INFO_WORDS, Info};
use septum_abi::event::{Kind as EventKind, NO_WAIT};
use septum_abi::virtio::balloon::{
    CONFIG_ACTUAL, CONFIG_NUM_PAGES, STAT_AVAILABLE, STAT_MEMFREE, STAT_MEMTOTAL, STATS_QUEUE,
};
use septum_abi::virtio::{Device, descriptor, register, status};

/// The service VM's control capability for linux.
const SLOT: u64 = 3;
const LINUX: usize = 1;
const PAGE: u64 = 4096;
/// linux never holds fewer than 8 pages and starts with all 32 it may have.
const MIN: u64 = 8;
const MAX: u64 = 32;
/// Where its driver keeps a queue's rings and buffers (guest addresses).
const DESC: u64 = GUEST_BASE;
const AVAIL: u64 = GUEST_BASE + 0x1000;
const USED: u64 = GUEST_BASE + 0x2000;
const DATA: u64 = GUEST_BASE + 0x3000;

/// The service VM and linux, a Linux partition with a virtio balloon and
/// console; both run.
fn virtio_system() -> (System, FakeMachine) {
    let mut resources = Resources::on_cores(MIN * PAGE, MAX * PAGE, &[0]);
    resources.add_virtio(Device::Balloon);
    resources.add_virtio(Device::Console);
    supervising(
        SLOT,
        PartitionSpec {
            name: "linux",
            kind: Kind::Guest,
            profile: crate::package::Profile::Linux,
            ram_size: MAX * PAGE,
            image: &[0; 16],
            entry_offset: 0,
            argument: 0,
            caps: caps_for(Kind::Guest),
            resources,
            supervision: Supervision::default(),
        },
    )
}

/// linux's driver's view of the system.
struct Driver {
    sys: System,
    m: FakeMachine,
}

impl Driver {
    fn new() -> Driver {
        let (sys, m) = virtio_system();
        Driver { sys, m }
    }

    fn access(&mut self, device: Device, offset: u64, access: Access) -> Completed {
        self.sys
            .emulate_access(LINUX, device.window() + offset, 4, access, &mut self.m)
            .expect("the fast lane takes the partition's own device registers")
    }

    fn read(&mut self, device: Device, offset: u64) -> u32 {
        self.access(device, offset, Access::Read).value as u32
    }

    fn write(&mut self, device: Device, offset: u64, value: u64) -> Completed {
        self.access(device, offset, Access::Write(value))
    }

    /// Writes `bytes` into linux's RAM at guest address `guest`.
    fn poke(&mut self, guest: u64, bytes: &[u8]) {
        self.m
            .write_ram(HOST_BASE + RAM + (guest - GUEST_BASE), bytes);
    }

    fn peek_u16(&mut self, guest: u64) -> u16 {
        let mut bytes = [0; 2];
        self.m
            .read_ram(HOST_BASE + RAM + (guest - GUEST_BASE), &mut bytes);
        u16::from_le_bytes(bytes)
    }

    /// Brings `device` up with queue `index` (8 buffers) at the rings above;
    /// every other queue stays off.
    fn bring_up(&mut self, device: Device, index: u64) {
        self.poke(USED + 2, &0u16.to_le_bytes());
        let driver = u64::from(status::ACKNOWLEDGE | status::DRIVER);
        self.write(device, register::STATUS, driver);
        self.write(device, register::DRIVER_FEATURES_SEL, 1);
        self.write(device, register::DRIVER_FEATURES, 1);
        let features_ok = driver | u64::from(status::FEATURES_OK);
        self.write(device, register::STATUS, features_ok);
        self.write(device, register::QUEUE_SEL, index);
        self.write(device, register::QUEUE_NUM, 8);
        self.write(device, register::QUEUE_DESC_LOW, DESC);
        self.write(device, register::QUEUE_DRIVER_LOW, AVAIL);
        self.write(device, register::QUEUE_DEVICE_LOW, USED);
        self.write(device, register::QUEUE_READY, 1);
        self.write(
            device,
            register::STATUS,
            features_ok | u64::from(status::DRIVER_OK),
        );
        assert_eq!(
            self.read(device, register::STATUS) & status::DRIVER_OK,
            status::DRIVER_OK
        );
    }

    /// Offers the `n`th chain (from 1): one buffer of `len` bytes at `DATA`.
    fn offer(&mut self, n: u16, len: u32, flags: u16) {
        let mut raw = [0; 16];
        raw[..8].copy_from_slice(&DATA.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        self.poke(DESC, &raw);
        self.poke(AVAIL + 4 + 2 * u64::from((n - 1) % 8), &0u16.to_le_bytes());
        self.poke(AVAIL + 2, &n.to_le_bytes());
    }

    /// Notifies queue `index` of `device` and has the kernel do the work.
    fn notify(&mut self, device: Device, index: u64) {
        let completed = self.write(device, register::QUEUE_NOTIFY, index);
        assert!(completed.reschedule, "a notify is work the partition owes");
        while self.sys.owes_work(LINUX) && self.sys.work(LINUX, &mut self.m) {}
    }

    fn pfns(&mut self, pages: &[u64]) -> u32 {
        let list: Vec<u8> = pages
            .iter()
            .flat_map(|page| ((GUEST_BASE / PAGE + page) as u32).to_le_bytes())
            .collect();
        self.poke(DATA, &list);
        list.len() as u32
    }

    fn held(&self) -> u64 {
        self.sys.balloon.memory(LINUX).unwrap().held
    }

    fn target(&mut self, pages: u64) {
        let o = hcall(
            &mut self.sys,
            &mut self.m,
            0,
            call(Call::SetMemoryTarget, &[SLOT, 1, pages]),
        );
        assert_eq!(o.reply.unwrap().status, 0, "target {pages} set");
    }
}

/// Verifies: SK-BAL-007, SK-BAL-008
#[test]
fn linux_inflates_any_page_through_virtio_and_the_ledger_follows() {
    let mut d = Driver::new();
    assert_eq!(d.read(Device::Balloon, register::DEVICE_ID), 5);
    d.target(MAX - 4);
    assert_eq!(
        d.read(Device::Balloon, register::CONFIG),
        4,
        "num_pages: its maximum minus its target"
    );
    d.bring_up(Device::Balloon, 0);
    // Pages 0 and 1 would be kept memory for a native partition.
    let len = d.pfns(&[0, 1, 20, 21]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 0);
    assert_eq!(d.held(), MAX - 4);
    assert_eq!(d.peek_u16(USED + 2), 1, "the chain went back to the driver");
    assert!(
        d.m.console
            .contains("@@ partition linux balloon at-target held=112K")
    );
    assert!(!d.sys.owes_work(LINUX), "the pages it gave are scrubbed");
    assert_eq!(d.sys.balloon.free(), 4);
}

/// Verifies: SK-BAL-007, SK-MED-003
#[test]
fn a_page_list_the_ledger_refuses_needs_a_reset_and_changes_nothing() {
    let mut d = Driver::new();
    d.target(MIN);
    d.bring_up(Device::Balloon, 0);
    let len = d.pfns(&[5, 5]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 0);
    assert_eq!(d.held(), MAX, "a duplicate page: nothing given");
    assert_eq!(d.peek_u16(USED + 2), 0, "nothing went back");
    let status = d.read(Device::Balloon, register::STATUS);
    assert_ne!(status & status::DEVICE_NEEDS_RESET, 0);
    assert!(
        d.m.console
            .contains("@@ partition linux device balloon needs-reset refused error=duplicate")
    );
    let record = core::iter::from_fn(|| d.sys.audit.pop())
        .find(|record| record.kind == crate::audit::AuditKind::Device)
        .expect("the violation is audited");
    let code = u64::from(septum_abi::virtio::Violation::Refused.number())
        | (septum_abi::Error::Duplicate as u64) << 8;
    assert_eq!(
        (record.partition, record.detail),
        (LINUX as u8, [5, code]),
        "device ID 5, the violation and the ledger's error"
    );
    // A device that needs a reset takes nothing more...
    let len = d.pfns(&[6]);
    d.offer(2, len, 0);
    assert!(
        !d.write(Device::Balloon, register::QUEUE_NOTIFY, 0)
            .reschedule
    );
    assert_eq!(d.held(), MAX);
    // ...until its driver resets it.
    d.write(Device::Balloon, register::STATUS, 0);
    assert_eq!(d.read(Device::Balloon, register::STATUS), 0);
    // Fewer than its minimum: refused whole.
    d.bring_up(Device::Balloon, 0);
    let pages: Vec<u64> = (0..MAX - MIN + 1).collect();
    let len = d.pfns(&pages);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 0);
    assert_eq!(d.held(), MAX);
    // A device-writable page list is the wrong chain for the queue.
    d.write(Device::Balloon, register::STATUS, 0);
    d.bring_up(Device::Balloon, 0);
    d.offer(1, 4, descriptor::WRITE);
    d.notify(Device::Balloon, 0);
    assert!(
        d.m.console
            .contains("@@ partition linux device balloon needs-reset bad-chain")
    );
}

/// Verifies: SK-BAL-007, SK-BAL-008
#[test]
fn a_deflate_past_the_target_waits_and_goes_through_when_it_is_raised() {
    let mut d = Driver::new();
    d.target(MAX - 4);
    d.bring_up(Device::Balloon, 0);
    let len = d.pfns(&[20, 21, 22, 23]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 0);
    assert_eq!(d.held(), MAX - 4);
    // Deflate two: over its target, so it waits at the head of its queue.
    d.write(Device::Balloon, register::STATUS, 0);
    d.bring_up(Device::Balloon, 1);
    let len = d.pfns(&[20, 21]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 1);
    assert_eq!(d.held(), MAX - 4);
    assert_eq!(d.peek_u16(USED + 2), 0, "it waits");
    assert_eq!(
        d.read(Device::Balloon, register::STATUS) & status::DEVICE_NEEDS_RESET,
        0,
        "waiting is no violation"
    );
    assert!(!d.sys.owes_work(LINUX), "a waiting deflate is not work");
    d.target(MAX - 2);
    while d.sys.owes_work(LINUX) && d.sys.work(LINUX, &mut d.m) {}
    assert_eq!(d.held(), MAX - 2);
    assert_eq!(d.peek_u16(USED + 2), 1);
}

/// Verifies: SK-API-004
#[test]
fn console_output_becomes_lines_of_the_partitions_second_console() {
    let mut d = Driver::new();
    d.bring_up(Device::Console, 1);
    d.poke(DATA, b"hello from hvc0\n");
    d.offer(1, 16, 0);
    d.notify(Device::Console, 1);
    assert!(d.m.console.contains("[linux:hvc0] hello from hvc0"));
    assert_eq!(d.peek_u16(USED + 2), 1);
}

/// Verifies: SK-API-004
#[test]
fn typed_bytes_reach_the_console_only_with_focus_and_wait_for_buffers() {
    let mut d = Driver::new();
    // The driver sets up its receive queue (0) only.
    d.bring_up(Device::Console, 0);
    d.sys.console_input(b'x', &mut d.m);
    assert!(!d.sys.owes_work(LINUX), "nobody has focus: dropped");
    for _ in 0..3 {
        d.sys.console_input(ESCAPE, &mut d.m);
    }
    assert!(d.m.console.contains("@@ kernel console owner=linux:hvc0"));
    d.offer(1, 8, descriptor::WRITE);
    d.sys.console_input(b'l', &mut d.m);
    d.sys.console_input(b's', &mut d.m);
    while d.sys.owes_work(LINUX) && d.sys.work(LINUX, &mut d.m) {}
    assert_eq!(d.peek_u16(USED + 2), 1, "delivered into the posted buffer");
    let mut typed = [0; 2];
    d.m.read_ram(HOST_BASE + RAM + (DATA - GUEST_BASE), &mut typed);
    assert_eq!(&typed, b"ls");
    // No buffer posted: the next byte waits, and that is no violation.
    d.sys.console_input(b'\r', &mut d.m);
    while d.sys.owes_work(LINUX) && d.sys.work(LINUX, &mut d.m) {}
    assert!(!d.sys.owes_work(LINUX));
    assert_eq!(
        d.read(Device::Console, register::STATUS) & status::DEVICE_NEEDS_RESET,
        0
    );
}

/// Where the service VM has `memory_info` and `wait_event` write.
const SERVICE_BUFFER: u64 = GUEST_BASE + 0x800;

impl Driver {
    /// Writes the statistics `stats` (tag, pages) at `DATA`; their length.
    fn stats(&mut self, stats: &[(u16, u64)]) -> u32 {
        let bytes: Vec<u8> = stats
            .iter()
            .flat_map(|&(tag, pages)| {
                let mut stat = tag.to_le_bytes().to_vec();
                stat.extend_from_slice(&(pages * PAGE).to_le_bytes());
                stat
            })
            .collect();
        self.poke(DATA, &bytes);
        bytes.len() as u32
    }

    /// The service VM's `memory_info` about linux.
    fn info(&mut self) -> Info {
        let o = hcall(
            &mut self.sys,
            &mut self.m,
            0,
            call(Call::MemoryInfo, &[SLOT, SERVICE_BUFFER]),
        );
        assert_eq!(o.reply.unwrap().status, 0);
        let mut bytes = [0u8; INFO_WORDS * 8];
        self.m
            .read_ram(HOST_BASE + (SERVICE_BUFFER - GUEST_BASE), &mut bytes);
        let words = core::array::from_fn(|i| {
            u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap())
        });
        Info::from_words(&words)
    }

    /// linux is given the turns to do the work it owes.
    fn work(&mut self) {
        while self.sys.owes_work(LINUX) && self.sys.work(LINUX, &mut self.m) {}
    }

    fn status(&mut self, device: Device) -> u32 {
        self.read(device, register::STATUS)
    }
}

/// The driver's statistics buffer becomes the guest's memory report: the
/// service VM is told, and reads it beside the kernel's counts (available
/// memory as free, use beyond the minimum, too little free as pressure). The
/// device holds the buffer and hands it back, asking for fresh statistics,
/// when the service VM reads the guest's memory, at most once a period.
/// Verifies: SK-BAL-006, SK-BAL-007
#[test]
fn statistics_become_the_memory_report_and_are_asked_for_at_most_once_a_period() {
    let mut d = Driver::new();
    d.bring_up(Device::Balloon, STATS_QUEUE as u64);
    let len = d.stats(&[(STAT_MEMTOTAL, MAX), (STAT_MEMFREE, 3), (STAT_AVAILABLE, 1)]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, STATS_QUEUE as u64);
    assert_eq!(d.peek_u16(USED + 2), 0, "the device holds the buffer");
    let event = hcall(
        &mut d.sys,
        &mut d.m,
        0,
        call(Call::WaitEvent, &[SYSTEM, SERVICE_BUFFER, NO_WAIT]),
    );
    let results = event.reply.unwrap().results;
    assert_eq!(
        results[..2],
        [EventKind::Memory as u64, LINUX as u64],
        "the service VM is told"
    );
    let info = d.info();
    assert_eq!(
        (info.held, info.free, info.used, info.failures),
        (MAX, 1, MAX - 1 - MIN, 1)
    );
    d.work();
    assert_eq!(d.peek_u16(USED + 2), 1, "handed back for fresh statistics");

    let len = d.stats(&[(STAT_MEMTOTAL, MAX), (STAT_MEMFREE, 16)]);
    d.offer(2, len, 0);
    d.notify(Device::Balloon, STATS_QUEUE as u64);
    let info = d.info();
    assert_eq!(
        (info.free, info.used, info.failures),
        (16, MAX - 16 - MIN, 1),
        "no new pressure; the count stays"
    );
    d.work();
    assert_eq!(d.peek_u16(USED + 2), 1, "not again within the period");
    d.m.now_us = STATS_PERIOD_US;
    d.info();
    d.work();
    assert_eq!(d.peek_u16(USED + 2), 2);
}

/// The driver may write only `actual` in the balloon's configuration.
/// Writing `num_pages`, the console's configuration or a read-only transport
/// register puts that device alone in DEVICE_NEEDS_RESET, interrupting a
/// live driver, reported and audited; the console's configuration reads as
/// zero.
/// Verifies: SK-MED-003, SK-BAL-007
#[test]
fn bad_register_writes_need_a_reset_of_that_device_only() {
    let mut d = Driver::new();
    d.target(MAX - 6);
    d.bring_up(Device::Balloon, 0);
    let actual = register::CONFIG + CONFIG_ACTUAL;
    assert!(!d.write(Device::Balloon, actual, 6).interrupts);
    assert_eq!(d.read(Device::Balloon, actual), 6);
    let broken = d.write(Device::Balloon, register::CONFIG + CONFIG_NUM_PAGES, 0);
    assert!(broken.interrupts, "the live driver is interrupted");
    assert_ne!(d.status(Device::Balloon) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.read(Device::Balloon, register::CONFIG), 6, "num_pages");
    assert_eq!(d.read(Device::Balloon, actual), 6, "actual as it was");
    assert!(
        d.m.console
            .contains("@@ partition linux device balloon needs-reset bad-register\n")
    );
    assert_eq!(d.status(Device::Console), 0, "the console is untouched");

    assert_eq!(d.read(Device::Console, register::CONFIG), 0);
    assert!(!d.write(Device::Console, register::CONFIG, 1).interrupts);
    assert_ne!(d.status(Device::Console) & status::DEVICE_NEEDS_RESET, 0);
    d.write(Device::Console, register::STATUS, 0);
    d.write(Device::Console, register::MAGIC_VALUE, 0);
    assert_ne!(d.status(Device::Console) & status::DEVICE_NEEDS_RESET, 0);
    let console = "@@ partition linux device console needs-reset bad-register\n";
    assert_eq!(d.m.console.matches(console).count(), 2);
    let audited: Vec<u64> = core::iter::from_fn(|| d.sys.audit.pop())
        .filter(|record| record.kind == crate::audit::AuditKind::Device)
        .map(|record| record.detail[0])
        .collect();
    let (balloon, console) = (
        u64::from(Device::Balloon.id()),
        u64::from(Device::Console.id()),
    );
    assert_eq!(audited, [balloon, console, console]);
}

/// Typed bytes wait until the driver posts a receive buffer and notifies the
/// receive queue; then they are delivered into it.
/// Verifies: SK-API-004
#[test]
fn typed_bytes_wait_for_a_receive_buffer_and_go_when_one_is_notified() {
    let mut d = Driver::new();
    d.bring_up(Device::Console, 0);
    for _ in 0..3 {
        d.sys.console_input(ESCAPE, &mut d.m);
    }
    d.sys.console_input(b'x', &mut d.m);
    d.work();
    assert_eq!(d.peek_u16(USED + 2), 0, "no buffer: it waits");
    d.offer(1, 8, descriptor::WRITE);
    d.notify(Device::Console, 0);
    assert_eq!(d.peek_u16(USED + 2), 1, "delivered once notified");
    let mut typed = [0; 1];
    d.m.read_ram(HOST_BASE + RAM + (DATA - GUEST_BASE), &mut typed);
    assert_eq!(&typed, b"x");
}

/// A restart resets the partition's virtio devices, as its driver's reset
/// would, and gives it its initial memory back; its driver starts over.
/// Verifies: SK-BAL-005, SK-BAL-007
#[test]
fn a_restart_resets_the_devices_and_restores_the_memory() {
    let mut d = Driver::new();
    d.target(MAX - 4);
    d.bring_up(Device::Balloon, 0);
    let len = d.pfns(&[20, 21, 22, 23]);
    d.offer(1, len, 0);
    d.notify(Device::Balloon, 0);
    assert_eq!(d.held(), MAX - 4);
    let restart = hcall(&mut d.sys, &mut d.m, 0, call(Call::Restart, &[SLOT, 0]));
    assert_eq!(restart.reply.unwrap().status, 0);
    d.work();
    assert_eq!(d.status(Device::Balloon), 0, "reset");
    assert_eq!(d.held(), MAX, "its initial memory");
    assert_eq!(d.read(Device::Balloon, register::CONFIG), 0, "num_pages");
    d.bring_up(Device::Balloon, 0);
}
