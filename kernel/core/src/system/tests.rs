//! Host tests of the system state machine, including property tests of its
//! invariants: nothing runs before it may, and a refused call changes nothing.

use super::*;
use crate::caps::{CAP_SLOTS, Cap, CapTable};
use crate::caps::{CapType, Rights};
use crate::event::{Fault, Reason};
use crate::package::{Kind, PartitionSpec, encode};
use crate::resources::Resources;
use crate::supervision::Supervision;
use proptest::prelude::*;
use septum_abi::{CONSOLE_WRITE_MAX, Call, PartitionState};

pub(super) const GUEST_BASE: u64 = 0x4000_0000;
pub(super) const RAM: u64 = 0x1_0000;
pub(super) const HOST_BASE: u64 = 0x8000_0000;
/// The slot layout every test partition has: its console, itself, and (service VM
/// only) the system.
pub(super) const CONSOLE: u64 = 0;
pub(super) const SELF: u64 = 1;
pub(super) const SYSTEM: u64 = 2;

pub(super) fn caps_for(kind: Kind) -> CapTable {
    let mut caps: CapTable = [None; CAP_SLOTS];
    let all = |ty: CapType| {
        Some(Cap {
            ty,
            rights: ty.possible_rights(),
            object: 0,
            badge: 0,
        })
    };
    caps[CONSOLE as usize] = all(CapType::Console);
    caps[SELF as usize] = all(CapType::SelfPartition);
    if kind == Kind::Service {
        caps[SYSTEM as usize] = all(CapType::System);
    }
    caps
}

/// Machine RAM backed by a vector, a console captured as a string, and a clock the
/// test sets.
pub(super) struct FakeMachine {
    pub(super) ram: Vec<u8>,
    pub(super) console: String,
    pub(super) now_us: u64,
}

impl fmt::Write for FakeMachine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.push_str(s);
        Ok(())
    }
}

/// The fake has no translation tables: page flips are tested in `flip::tests`
/// and end to end on the emulators.
impl Pages for FakeMachine {
    fn map_page(&mut self, _partition: usize, _guest: u64, _frame: u64) {}
    fn unmap_page(&mut self, _partition: usize, _guest: u64) {}
    fn flush_translations(&mut self, _partition: usize) {}
    fn scrub_page(&mut self, frame: u64) {
        self.write_ram(frame, &[0; 4096]);
    }
    fn copy(&mut self, from: u64, to: u64, len: u64) {
        let mut bytes = vec![0; len as usize];
        self.read_ram(from, &mut bytes);
        self.write_ram(to, &bytes);
    }
}

impl Platform for FakeMachine {
    fn write_guest(&mut self, _partition: usize, text: &str) {
        self.console.push_str(text);
    }

    fn take_console_dropped(&mut self, _partition: usize, _now: bool) -> Option<u64> {
        None
    }

    fn reload_page(&mut self, _partition: usize, _offset: u64, frame: u64) {
        self.write_ram(frame, &[0; 4096]);
    }

    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]) {
        let at = (addr - HOST_BASE) as usize;
        buffer.copy_from_slice(&self.ram[at..at + buffer.len()]);
    }

    fn write_ram(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr - HOST_BASE) as usize;
        self.ram[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn now_us(&mut self) -> u64 {
        self.now_us
    }
}

pub(super) fn system(guests: usize) -> (System, FakeMachine) {
    system_with(guests, caps_for)
}

/// A service VM and `guests` guests, with capability tables from `caps`.
pub(super) fn system_with(guests: usize, caps: impl Fn(Kind) -> CapTable) -> (System, FakeMachine) {
    let names = ["service", "alpha", "beta", "gamma"];
    let image = [0u8; 16];
    let specs: Vec<PartitionSpec> = (0..=guests)
        .map(|i| {
            let kind = if i == 0 { Kind::Service } else { Kind::Guest };
            PartitionSpec {
                name: names[i],
                kind,
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps: caps(kind),
                resources: Resources::new(RAM, RAM, 1),
                supervision: Supervision::default(),
            }
        })
        .collect();
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..=guests as u64)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let system = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    let machine = FakeMachine {
        ram: vec![0; RAM as usize * (guests + 1)],
        console: String::new(),
        now_us: 0,
    };
    (system, machine)
}

pub(super) fn call(number: Call, args: &[u64]) -> CallRegisters {
    let mut regs = CallRegisters {
        number: number as u64,
        args: [0; 6],
    };
    regs.args[..args.len()].copy_from_slice(args);
    regs
}

/// Each partition's state, as the ABI names it, and generation.
pub(super) fn states(system: &System) -> Vec<(PartitionState, u32)> {
    system
        .partitions()
        .iter()
        .map(|p| (p.state().abi(), p.generation()))
        .collect()
}

/// Verifies: SK-INIT-001
#[test]
fn service_vm_starts_alone_and_guests_follow_ready() {
    let (mut sys, mut m) = system(2);
    assert_eq!(sys.start(&mut m), Next::Run(0));
    assert_eq!(sys.partitions()[1].state().abi(), PartitionState::Waiting);
    let d = sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    assert_eq!(d.next, Next::Run(0));
    assert_eq!(d.reply, Some(Reply::ok([0; 3])));
    assert!(
        sys.partitions()
            .iter()
            .all(|p| p.state().abi() == PartitionState::Runnable)
    );
    assert_eq!(
        m.console,
        "@@ partition service start gen=1 cpu=0\n@@ partition service ready\n\
         @@ partition alpha start gen=1 cpu=0\n@@ partition beta start gen=1 cpu=0\n"
    );
}

/// Verifies: SK-TMP-002
#[test]
fn yield_is_round_robin_and_counts_the_others() {
    let (mut sys, mut m) = system(2);
    sys.start(&mut m);
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    let d = sys.hypercall(0, call(Call::Yield, &[SELF]), &mut m);
    assert_eq!(
        d,
        Dispatch {
            reply: Some(Reply::ok([2, 0, 0])),
            next: Next::Run(1),
            effect: None,
        }
    );
    let d = sys.hypercall(1, call(Call::Yield, &[SELF]), &mut m);
    assert_eq!(d.next, Next::Run(2));
    let d = sys.hypercall(2, call(Call::Yield, &[SELF]), &mut m);
    assert_eq!(d.next, Next::Run(0));
}

/// Verifies: SK-AUD-002
#[test]
fn console_write_prefixes_and_reports_length() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    m.ram[0x100..0x106].copy_from_slice(b"hi!\nab");
    m.console.clear();
    let d = sys.hypercall(
        0,
        call(Call::ConsoleWrite, &[CONSOLE, GUEST_BASE + 0x100, 6]),
        &mut m,
    );
    assert_eq!(d.reply, Some(Reply::ok([6, 0, 0])));
    assert_eq!(m.console, "[service] hi!\n");
    sys.hypercall(0, call(Call::Shutdown, &[SYSTEM, 0]), &mut m);
    assert!(
        m.console
            .ends_with("[service] ab\n@@ kernel shutdown status=ok code=0\n")
    );
}

/// Verifies: SK-MED-002
#[test]
fn hostile_console_arguments_are_refused() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    let cases = [
        (GUEST_BASE - 1, 4, Error::BadAddress),
        (GUEST_BASE + RAM - 2, 4, Error::BadAddress),
        (u64::MAX - 2, 8, Error::BadAddress),
        (HOST_BASE, 4, Error::BadAddress),
        (GUEST_BASE, CONSOLE_WRITE_MAX + 1, Error::TooLong),
        (GUEST_BASE, u64::MAX, Error::TooLong),
    ];
    for (addr, len, error) in cases {
        let d = sys.hypercall(0, call(Call::ConsoleWrite, &[CONSOLE, addr, len]), &mut m);
        assert_eq!(
            d,
            Dispatch {
                reply: Some(Reply::error(error)),
                next: Next::Run(0),
                effect: None,
            }
        );
    }
}

/// Verifies: SK-CAP-003, SK-INIT-001
#[test]
fn guests_hold_no_system_cap_and_ready_is_once() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    let d = sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    assert_eq!(d.reply, Some(Reply::error(Error::BadState)));
    for number in [Call::Ready, Call::Shutdown] {
        let d = sys.hypercall(1, call(number, &[SYSTEM]), &mut m);
        assert_eq!(d.reply, Some(Reply::error(Error::NoSuchSlot)));
    }
    let d = sys.hypercall(
        1,
        CallRegisters {
            number: 999,
            args: [0; 6],
        },
        &mut m,
    );
    assert_eq!(d.reply, Some(Reply::error(Error::UnknownCall)));
    assert!(
        m.console
            .contains("@@ partition alpha denied call=999 error=unknown-call")
    );
}

/// Verifies: SK-CAP-001, SK-MED-002
#[test]
fn each_call_needs_its_capability_type_and_right() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    let cases = [
        (
            call(Call::ConsoleWrite, &[SELF, GUEST_BASE, 1]),
            Error::WrongType,
        ),
        (
            call(Call::ConsoleWrite, &[9, GUEST_BASE, 1]),
            Error::NoSuchSlot,
        ),
        (
            call(Call::ConsoleWrite, &[u64::MAX, GUEST_BASE, 1]),
            Error::NoSuchSlot,
        ),
        (call(Call::Ready, &[CONSOLE]), Error::WrongType),
        (call(Call::Yield, &[SYSTEM]), Error::WrongType),
        (call(Call::Exit, &[CONSOLE, 0]), Error::WrongType),
        (call(Call::Shutdown, &[SELF, 0]), Error::WrongType),
        // The slot is checked before the other arguments.
        (
            call(Call::ConsoleWrite, &[SELF, 0, u64::MAX]),
            Error::WrongType,
        ),
    ];
    for (regs, error) in cases {
        let d = sys.hypercall(0, regs, &mut m);
        assert_eq!(d.reply, Some(Reply::error(error)), "{regs:?}");
    }
    let image = [0u8; 8];
    let mut caps = caps_for(Kind::Service);
    caps[SELF as usize] = Some(Cap {
        ty: CapType::SelfPartition,
        rights: Rights::YIELD,
        object: 0,
        badge: 0,
    });
    let spec = PartitionSpec {
        name: "s",
        kind: Kind::Service,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps,
        resources: Resources::new(RAM, RAM, 1),
        supervision: Supervision::default(),
    };
    let bytes = encode(&[spec], &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host = [Range::from_start_size(HOST_BASE, RAM).unwrap()];
    let mut sys = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    sys.start(&mut m);
    let d = sys.hypercall(0, call(Call::Exit, &[SELF, 0]), &mut m);
    assert_eq!(d.reply, Some(Reply::error(Error::MissingRight)));
    assert_eq!(sys.partitions()[0].state().abi(), PartitionState::Runnable);
}

/// Verifies: SK-HM-001, SK-AUD-001
#[test]
fn a_fault_stops_only_the_culprit() {
    let (mut sys, mut m) = system(2);
    sys.start(&mut m);
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    let fault = Fault::new(Reason::Stage2Data, 0x9000_0000, 0x9200_0046);
    let d = sys.fault(1, fault, &mut m);
    // The service VM runs first, to learn that alpha was stopped.
    assert_eq!(
        d,
        Dispatch {
            reply: None,
            next: Next::Run(0),
            effect: None,
        }
    );
    assert_eq!(sys.partitions()[1].state().abi(), PartitionState::Stopped);
    assert!(
        m.console
            .contains("@@ partition alpha fault reason=stage2-data addr=0x90000000")
    );
    let d = sys.hypercall(2, call(Call::Yield, &[SELF]), &mut m);
    assert_eq!(d.next, Next::Run(0));
}

/// Verifies: SK-HM-001
#[test]
fn the_system_halts_when_nothing_can_run() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    sys.hypercall(1, call(Call::Exit, &[SELF, 3]), &mut m);
    let d = sys.hypercall(0, call(Call::Exit, &[SELF, 0]), &mut m);
    assert_eq!(d.next, Next::PowerOff { clean: false });
    assert!(m.console.contains("@@ partition alpha exit code=3"));
    assert!(
        m.console
            .ends_with("@@ kernel halt reason=no-runnable-partition\n")
    );
}

/// Verifies: SK-INIT-002
#[test]
fn placements_must_match_the_package() {
    let image = [0u8; 8];
    let spec = |name, kind| PartitionSpec {
        name,
        kind,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: caps_for(kind),
        resources: Resources::new(RAM, RAM, 1),
        supervision: Supervision::default(),
    };
    let specs = [spec("s", Kind::Service), spec("g", Kind::Guest)];
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let a = Range::from_start_size(HOST_BASE, RAM).unwrap();
    let overlapping = Range::from_start_size(HOST_BASE + 0x1000, RAM).unwrap();
    let small = Range::from_start_size(HOST_BASE + RAM, 0x1000).unwrap();
    assert_eq!(
        System::new(&package, GUEST_BASE, &[a], Range::default()).unwrap_err(),
        SystemError::PlacementCount
    );
    assert_eq!(
        System::new(&package, GUEST_BASE, &[a, overlapping], Range::default()).unwrap_err(),
        SystemError::BadPlacement(1)
    );
    assert_eq!(
        System::new(&package, GUEST_BASE, &[a, small], Range::default()).unwrap_err(),
        SystemError::BadPlacement(1)
    );
}

fn any_call() -> impl Strategy<Value = (usize, CallRegisters)> {
    let number = prop_oneof![0u64..8, any::<u64>()];
    let arg = prop_oneof![
        0u64..4,
        Just(GUEST_BASE),
        GUEST_BASE..GUEST_BASE + RAM,
        0u64..(CONSOLE_WRITE_MAX + 8),
        any::<u64>()
    ];
    (0usize..3, number, proptest::array::uniform6(arg))
        .prop_map(|(caller, number, args)| (caller, CallRegisters { number, args }))
}

/// The capability type and right each call needs.
fn needed(number: u64) -> Option<(CapType, Rights)> {
    Some(match Call::from_number(number)? {
        Call::Null => return None,
        Call::ConsoleWrite => (CapType::Console, Rights::WRITE),
        Call::Ready => (CapType::System, Rights::READY),
        Call::Yield => (CapType::SelfPartition, Rights::YIELD),
        Call::Exit => (CapType::SelfPartition, Rights::EXIT),
        Call::Shutdown => (CapType::System, Rights::SHUTDOWN),
        Call::WaitEvent | Call::AuditRead => (CapType::System, Rights::MONITOR),
        Call::Inspect => (CapType::Control, Rights::INSPECT),
        Call::Resume => (CapType::Control, Rights::RESUME),
        Call::Restart => (CapType::Control, Rights::RESTART),
        Call::Stop | Call::SetPolicy => (CapType::Control, Rights::STOP),
        Call::Heartbeat => (CapType::Watchdog, Rights::HEARTBEAT),
        Call::Panic => (CapType::SelfPartition, Rights::EXIT),
        Call::Identify => return None,
        Call::Send | Call::SendBatch | Call::Reclaim => (CapType::QueueSend, Rights::SEND),
        Call::Receive | Call::Release => (CapType::QueueReceive, Rights::RECEIVE),
        // Either end of a queue, or a balloon, will do.
        Call::Wait => return None,
        Call::Inflate | Call::BalloonReport => (CapType::Balloon, Rights::INFLATE),
        Call::Deflate => (CapType::Balloon, Rights::DEFLATE),
        Call::SetMemoryTarget => (CapType::Control, Rights::SET_MEMORY_TARGET),
        Call::MemoryInfo => (CapType::Control, Rights::INSPECT),
    })
}

proptest! {
    /// Whatever sequence of calls the partitions make: no guest becomes runnable
    /// before the service VM's `ready`; a call that returns an error leaves every
    /// partition's state and generation unchanged; a call that succeeds named a
    /// capability of its type with its right in the caller's own table; and no
    /// capability table ever changes, so no partition gains a right its
    /// description did not grant.
    /// Verifies: SK-MED-002, SK-INIT-001, SK-CAP-002
    #[test]
    fn refused_calls_change_nothing_and_guests_wait_for_ready(
        calls in proptest::collection::vec(any_call(), 1..60)
    ) {
        let (mut sys, mut m) = system(2);
        sys.start(&mut m);
        for (caller, regs) in calls {
            if sys.partitions()[caller].state().abi() != PartitionState::Runnable {
                continue;
            }
            let before = states(&sys);
            let ready_before = sys.service_ready();
            let d = sys.hypercall(caller, regs, &mut m);
            let tables: Vec<CapTable> = sys.partitions().iter().map(|p| *p.caps()).collect();
            let granted: Vec<CapTable> = (0..3)
                .map(|i| caps_for(if i == 0 { Kind::Service } else { Kind::Guest }))
                .collect();
            prop_assert_eq!(tables, granted);
            let succeeded = d.reply.is_none_or(|r| r.status == 0);
            if let (true, Some((ty, right))) = (succeeded, needed(regs.number)) {
                let cap = usize::try_from(regs.args[0]).ok().and_then(|s| sys.partitions()[caller].caps().get(s).copied().flatten());
                prop_assert!(cap.is_some_and(|c| c.ty == ty && c.rights.contains(right)));
            }
            if let Some(reply) = d.reply.filter(|r| r.status != 0) {
                prop_assert_eq!(states(&sys), before);
                prop_assert_eq!(sys.service_ready(), ready_before);
                prop_assert_eq!(d.next, Next::Run(caller));
                prop_assert!(Error::from_status(reply.status).unwrap_err().is_ok());
            }
            if !sys.service_ready() {
                prop_assert!(sys.partitions()[1..].iter().all(|p| p.state().abi() == PartitionState::Waiting));
            }
            if let Next::Run(next) = d.next {
                prop_assert_eq!(sys.partitions()[next].state().abi(), PartitionState::Runnable);
            } else {
                break;
            }
        }
    }
}

/// A system of the service VM and two guests on a 10 ms frame: service 0-2 ms,
/// alpha 2-6 ms, beta 6-10 ms.
fn scheduled() -> (System, FakeMachine) {
    use crate::resources::Window;
    let image = [0u8; 16];
    let names = ["service", "alpha", "beta"];
    let windows = [(0, 2_000), (2_000, 4_000), (6_000, 4_000)];
    let specs: Vec<PartitionSpec> = (0..3)
        .map(|i| {
            let kind = if i == 0 { Kind::Service } else { Kind::Guest };
            let mut resources = Resources::new(RAM, RAM, 1);
            let (offset_us, length_us) = windows[i];
            resources
                .add_window(Window {
                    cpu: 0,
                    offset_us,
                    length_us,
                })
                .unwrap();
            PartitionSpec {
                name: names[i],
                kind,
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps: caps_for(kind),
                resources,
                supervision: Supervision::default(),
            }
        })
        .collect();
    let bytes = encode(&specs, &[], Some(10_000)).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..3)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let system = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    let machine = FakeMachine {
        ram: vec![0; RAM as usize * 3],
        console: String::new(),
        now_us: 0,
    };
    (system, machine)
}

/// Verifies: SK-TMP-001
#[test]
fn without_a_schedule_the_call_decides() {
    let (sys, _) = system(1);
    assert_eq!(
        sys.decide(Next::Run(1), 0, || 123),
        Decision::Run {
            partition: 1,
            deadline_us: None
        }
    );
    assert_eq!(
        sys.decide(Next::PowerOff { clean: true }, 0, || 0),
        Decision::PowerOff { clean: true }
    );
}

/// Verifies: SK-TMP-001
#[test]
fn with_a_schedule_only_the_window_owner_runs_until_its_window_ends() {
    let (mut sys, mut m) = scheduled();
    sys.start(&mut m);
    // Before ready, the guests' windows are idle: they may not run.
    assert_eq!(
        sys.decide(Next::Run(0), 0, || 500),
        Decision::Run {
            partition: 0,
            deadline_us: Some(2_000)
        }
    );
    assert_eq!(
        sys.decide(Next::Run(0), 0, || 2_500),
        Decision::Idle { until_us: 6_000 }
    );
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    // Whatever the call asked for, the owner of the window runs.
    assert_eq!(
        sys.decide(Next::Run(0), 0, || 2_500),
        Decision::Run {
            partition: 1,
            deadline_us: Some(6_000)
        }
    );
    assert_eq!(
        sys.decide(Next::Run(1), 0, || 16_000),
        Decision::Run {
            partition: 2,
            deadline_us: Some(20_000)
        }
    );
    // A partition that has exited leaves its window to the service VM while the
    // service VM has not yet taken the news; nobody else gets it.
    sys.hypercall(1, call(Call::Exit, &[SELF, 0]), &mut m);
    assert_eq!(
        sys.decide(Next::Run(2), 0, || 12_000),
        Decision::Run {
            partition: 0,
            deadline_us: Some(16_000)
        }
    );
    let buffer = GUEST_BASE + 0x100;
    sys.hypercall(0, call(Call::WaitEvent, &[SYSTEM, buffer]), &mut m);
    sys.hypercall(0, call(Call::WaitEvent, &[SYSTEM, buffer]), &mut m);
    assert_eq!(sys.partitions()[0].state().abi(), PartitionState::Blocked);
    assert_eq!(
        sys.decide(Next::Run(2), 0, || 12_000),
        Decision::Idle { until_us: 16_000 }
    );
    assert_eq!(
        sys.decide(Next::PowerOff { clean: false }, 0, || 12_000),
        Decision::PowerOff { clean: false }
    );
}

/// Verifies: SK-TMP-002
#[test]
fn each_core_round_robins_its_own_partitions_and_waits_for_others() {
    use crate::resources::Resources;
    let image = [0u8; 16];
    let specs: Vec<PartitionSpec> = [
        ("service", Kind::Service, 0b01),
        ("near", Kind::Guest, 0b01),
        ("far", Kind::Guest, 0b10),
    ]
    .into_iter()
    .map(|(name, kind, cpus)| PartitionSpec {
        name,
        kind,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: caps_for(kind),
        resources: Resources::new(RAM, RAM, cpus),
        supervision: Supervision::default(),
    })
    .collect();
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..3)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let mut sys = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    let mut m = FakeMachine {
        ram: vec![0; RAM as usize * 3],
        console: String::new(),
        now_us: 0,
    };
    assert_eq!(sys.partitions()[2].cpu(), 1);
    sys.start(&mut m);
    // Core 1 has nothing it may run before `ready`: it waits, it does not halt.
    assert_eq!(sys.pick(1, None, &mut m), Next::Wait);
    assert_eq!(
        sys.decide(Next::Wait, 1, || 500),
        Decision::Idle {
            until_us: 500 + POLL_US
        }
    );
    sys.hypercall(0, call(Call::Ready, &[SYSTEM]), &mut m);
    assert_eq!(sys.pick(1, None, &mut m), Next::Run(2));
    // Yielding on core 0 never hands core 0 to the partition of core 1.
    assert_eq!(
        sys.hypercall(0, call(Call::Yield, &[SELF]), &mut m).next,
        Next::Run(1)
    );
    assert_eq!(
        sys.hypercall(1, call(Call::Yield, &[SELF]), &mut m).next,
        Next::Run(0)
    );
    // When core 1's only partition exits, core 1 waits while core 0 has work.
    assert_eq!(
        sys.hypercall(2, call(Call::Exit, &[SELF, 0]), &mut m).next,
        Next::Wait
    );
}

/// Verifies: SK-AUD-001
#[test]
fn refused_calls_beyond_the_console_limit_are_counted_not_lost() {
    let (mut sys, mut m) = system(1);
    sys.start(&mut m);
    for _ in 0..DENIED_LINES + 5 {
        sys.hypercall(
            0,
            CallRegisters {
                number: 999,
                args: [0; 6],
            },
            &mut m,
        );
    }
    let shown = m
        .console
        .matches("@@ partition service denied call=999")
        .count() as u64;
    assert_eq!(shown, DENIED_LINES);
    sys.hypercall(0, call(Call::Shutdown, &[SYSTEM, 0]), &mut m);
    let total = format!(
        "@@ partition service denied-total count={}",
        DENIED_LINES + 5
    );
    assert!(m.console.contains(&total), "{}", m.console);
}

/// The kernel reads guest memory only inside the partition's RAM, from the frames
/// that back it, across page boundaries; a refused read leaves the buffer alone.
/// Verifies: SK-ISO-001
#[test]
fn guest_memory_is_read_from_its_own_frames_only() {
    let (sys, mut m) = system(2);
    for (at, byte) in m.ram.iter_mut().enumerate() {
        *byte = (at / 7) as u8;
    }
    let mut code = [0u8; 15];
    let guest = GUEST_BASE + 0x1000 - 5;
    sys.read_guest(2, guest, &mut code, &mut m).unwrap();
    let host = (2 * RAM + 0x1000 - 5) as usize;
    assert_eq!(code[..], m.ram[host..host + 15]);
    for (address, len) in [
        (GUEST_BASE + RAM - 8, 15),
        (GUEST_BASE - 1, 2),
        (u64::MAX - 4, 8),
    ] {
        let mut buffer = [0xaa; 15];
        let refused = sys.read_guest(1, address, &mut buffer[..len], &mut m);
        assert_eq!(refused, Err(Error::BadAddress), "{address:#x}");
        assert_eq!(buffer, [0xaa; 15]);
    }
}
