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
    /// The devirtualizable partition's tables and frames, as relocation sees
    /// them (empty unless a test sets them up).
    pub(super) relocation: crate::relocation::model::Machine,
    /// Every translation change asked for: (partition, on).
    pub(super) translations: Vec<(usize, bool)>,
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

    fn set_translation(&mut self, partition: usize, on: bool) {
        self.translations.push((partition, on));
    }

    fn relocation_machine(
        &mut self,
        _partition: usize,
        work: &mut dyn FnMut(&mut dyn crate::relocation::Machine),
    ) {
        work(&mut self.relocation);
    }
}

/// The service VM, holding in slot `slot` a control capability for `guest`
/// (partition 1, given RAM of its `ram_size`, with a balloon when it has one),
/// both started and the service VM ready.
pub(super) fn supervising(slot: u64, guest: PartitionSpec<'_>) -> (System, FakeMachine) {
    let image = [0u8; 16];
    let mut service_caps = caps_for(Kind::Service);
    service_caps[slot as usize] = Some(Cap {
        ty: CapType::Control,
        rights: CapType::Control.possible_rights(),
        object: 1,
        badge: 0,
    });
    let service = PartitionSpec {
        name: "service",
        kind: Kind::Service,
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: service_caps,
        resources: Resources::on_cores(RAM, RAM, &[0]),
        supervision: Supervision::default(),
    };
    let bytes = encode(&[service, guest], &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host = [
        Range::from_start_size(HOST_BASE, RAM).unwrap(),
        Range::from_start_size(HOST_BASE + RAM, guest.ram_size).unwrap(),
    ];
    let specs = crate::balloon::specs(&package, &host);
    let words = vec![0u32; crate::balloon::Balloon::words_needed(&specs)].leak();
    let mut sys =
        System::with_balloon(&package, GUEST_BASE, &host, Range::default(), words).unwrap();
    let mut m = FakeMachine {
        ram: vec![0; (RAM + guest.ram_size) as usize],
        console: String::new(),
        now_us: 0,
        relocation: Default::default(),
        translations: Vec::new(),
    };
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    (sys, m)
}

/// The system of partitions `specs` (each with [`RAM`] bytes, placed one
/// after the other from [`HOST_BASE`]) and major frame `frame`, built and not
/// started, with a machine whose RAM holds them all.
pub(super) fn placed(specs: &[PartitionSpec<'_>], frame: Option<u32>) -> (System, FakeMachine) {
    let bytes = encode(specs, &[], frame).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..specs.len() as u64)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let system = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    let machine = FakeMachine {
        ram: vec![0; RAM as usize * specs.len()],
        console: String::new(),
        now_us: 0,
        relocation: Default::default(),
        translations: Vec::new(),
    };
    (system, machine)
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
                profile: crate::package::Profile::Native,
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps: caps(kind),
                resources: Resources::on_cores(RAM, RAM, &[0]),
                supervision: Supervision::default(),
            }
        })
        .collect();
    placed(&specs, None)
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
        .map(|p| (p.life().abi(), p.generation()))
        .collect()
}

/// Core `cpu` enters the core with `entry`; what it is told.
pub(super) fn enter(sys: &mut System, cpu: usize, entry: Entry, m: &mut FakeMachine) -> Outcome {
    let mut out = Outcome::new();
    sys.handle(cpu, entry, m, &mut out);
    out
}

/// The boot core starts the system.
pub(super) fn start(sys: &mut System, m: &mut FakeMachine) -> Outcome {
    enter(sys, 0, Entry::Start, m)
}

/// vCPU `vcpu` traps on its core, where it is live (as it would be on a machine
/// when it runs).
pub(super) fn trap(sys: &mut System, m: &mut FakeMachine, vcpu: usize, trap: Trap) -> Outcome {
    let cpu = sys.vcpus()[vcpu].cpu();
    sys.loaded[cpu] = Some(vcpu);
    enter(sys, cpu, Entry::Trap(&trap), m)
}

/// vCPU `vcpu` makes a call.
pub(super) fn hcall(
    sys: &mut System,
    m: &mut FakeMachine,
    vcpu: usize,
    call: CallRegisters,
) -> Outcome {
    trap(sys, m, vcpu, Trap::Hypercall(call))
}

/// What an outcome hands back and runs, and the effects it asks for.
pub(super) fn answer(o: &Outcome) -> (Option<Reply>, Run, Vec<Effect>) {
    (o.reply, o.run, o.effects.to_vec())
}

/// Verifies: SK-INIT-001
#[test]
fn service_vm_starts_alone_and_guests_follow_ready() {
    let (mut sys, mut m) = system(2);
    assert_eq!(start(&mut sys, &mut m).run, Run::Vcpu(0));
    assert_eq!(sys.partitions()[1].life().abi(), PartitionState::Waiting);
    let d = hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    assert_eq!(d.run, Run::Vcpu(0));
    assert_eq!(d.reply, Some(Reply::ok([0; 3])));
    assert!(
        sys.partitions()
            .iter()
            .all(|p| p.life().abi() == PartitionState::Runnable)
    );
    assert_eq!(
        m.console,
        "@@ partition service start gen=1 cpu=0\n@@ partition service ready\n\
         @@ partition alpha start gen=1 cpu=0\n@@ partition beta start gen=1 cpu=0\n\
         @@ kernel running partitions=3 us=0\n"
    );
}

/// Verifies: SK-TMP-002
#[test]
fn yield_is_round_robin_and_counts_the_others() {
    let (mut sys, mut m) = system(2);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    let d = hcall(&mut sys, &mut m, 0, call(Call::Yield, &[SELF]));
    assert_eq!(
        answer(&d),
        (Some(Reply::ok([2, 0, 0])), Run::Vcpu(1), vec![])
    );
    let d = hcall(&mut sys, &mut m, 1, call(Call::Yield, &[SELF]));
    assert_eq!(d.run, Run::Vcpu(2));
    let d = hcall(&mut sys, &mut m, 2, call(Call::Yield, &[SELF]));
    assert_eq!(d.run, Run::Vcpu(0));
}

/// Verifies: SK-AUD-002
#[test]
fn console_write_prefixes_and_reports_length() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    m.ram[0x100..0x106].copy_from_slice(b"hi!\nab");
    m.console.clear();
    let d = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::ConsoleWrite, &[CONSOLE, GUEST_BASE + 0x100, 6]),
    );
    assert_eq!(d.reply, Some(Reply::ok([6, 0, 0])));
    assert_eq!(m.console, "[service] hi!\n");
    hcall(&mut sys, &mut m, 0, call(Call::Shutdown, &[SYSTEM, 0]));
    assert!(
        m.console
            .ends_with("[service] ab\n@@ kernel shutdown status=ok code=0\n")
    );
}

/// Verifies: SK-MED-002
#[test]
fn hostile_console_arguments_are_refused() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    let cases = [
        (GUEST_BASE - 1, 4, Error::BadAddress),
        (GUEST_BASE + RAM - 2, 4, Error::BadAddress),
        (u64::MAX - 2, 8, Error::BadAddress),
        (HOST_BASE, 4, Error::BadAddress),
        (GUEST_BASE, CONSOLE_WRITE_MAX + 1, Error::TooLong),
        (GUEST_BASE, u64::MAX, Error::TooLong),
    ];
    for (addr, len, error) in cases {
        let d = hcall(
            &mut sys,
            &mut m,
            0,
            call(Call::ConsoleWrite, &[CONSOLE, addr, len]),
        );
        assert_eq!(
            answer(&d),
            (Some(Reply::error(error)), Run::Vcpu(0), vec![])
        );
    }
}

/// Verifies: SK-CAP-003, SK-INIT-001
#[test]
fn guests_hold_no_system_cap_and_ready_is_once() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    let d = hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    assert_eq!(d.reply, Some(Reply::error(Error::BadState)));
    for number in [Call::Ready, Call::Shutdown] {
        let d = hcall(&mut sys, &mut m, 1, call(number, &[SYSTEM]));
        assert_eq!(d.reply, Some(Reply::error(Error::NoSuchSlot)));
    }
    let d = hcall(
        &mut sys,
        &mut m,
        1,
        CallRegisters {
            number: 999,
            args: [0; 6],
        },
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
    start(&mut sys, &mut m);
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
        let d = hcall(&mut sys, &mut m, 0, regs);
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
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps,
        resources: Resources::on_cores(RAM, RAM, &[0]),
        supervision: Supervision::default(),
    };
    let bytes = encode(&[spec], &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host = [Range::from_start_size(HOST_BASE, RAM).unwrap()];
    let mut sys = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    start(&mut sys, &mut m);
    let d = hcall(&mut sys, &mut m, 0, call(Call::Exit, &[SELF, 0]));
    assert_eq!(d.reply, Some(Reply::error(Error::MissingRight)));
    assert_eq!(sys.partitions()[0].life().abi(), PartitionState::Runnable);
}

/// Verifies: SK-HM-001, SK-AUD-001
#[test]
fn a_fault_stops_only_the_culprit() {
    let (mut sys, mut m) = system(2);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    let fault = Fault::new(Reason::Stage2Data, 0x9000_0000, 0x9200_0046);
    let d = trap(&mut sys, &mut m, 1, Trap::Fault(fault));
    // The service VM runs first, to learn that alpha was stopped.
    assert_eq!(answer(&d), (None, Run::Vcpu(0), vec![]));
    assert_eq!(sys.partitions()[1].life().abi(), PartitionState::Stopped);
    assert!(
        m.console
            .contains("@@ partition alpha fault reason=stage2-data addr=0x90000000")
    );
    let d = hcall(&mut sys, &mut m, 2, call(Call::Yield, &[SELF]));
    assert_eq!(d.run, Run::Vcpu(0));
}

/// Verifies: SK-HM-001
#[test]
fn the_system_halts_when_nothing_can_run() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    hcall(&mut sys, &mut m, 1, call(Call::Exit, &[SELF, 3]));
    let d = hcall(&mut sys, &mut m, 0, call(Call::Exit, &[SELF, 0]));
    assert_eq!(d.run, Run::PowerOff { clean: false });
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
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: caps_for(kind),
        resources: Resources::on_cores(RAM, RAM, &[0]),
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

/// Each partition's record says what the package and the placement gave it:
/// its name and kind, its RAM where the partition sees it and where the
/// machine holds it, its core and vCPUs; nothing runs before the start.
/// Verifies: SK-INIT-002, SK-ISO-004
#[test]
fn each_partition_is_placed_where_the_package_and_placement_say() {
    let (mut sys, mut m) = system(2);
    for (index, partition) in sys.partitions().iter().enumerate() {
        let kind = if index == 0 {
            Kind::Service
        } else {
            Kind::Guest
        };
        assert_eq!(partition.name(), ["service", "alpha", "beta"][index]);
        assert_eq!(partition.kind(), kind);
        assert_eq!(
            partition.guest_ram(),
            Range::from_start_size(GUEST_BASE, RAM).unwrap()
        );
        let host = HOST_BASE + index as u64 * RAM;
        assert_eq!(
            partition.host_ram(),
            Range::from_start_size(host, RAM).unwrap()
        );
        assert_eq!((partition.cpu(), partition.vcpus()), (0, index..index + 1));
        assert_eq!(*partition.state(), State::Waiting);
    }
    start(&mut sys, &mut m);
    assert_ne!(*sys.partitions()[0].state(), State::Waiting, "started");
    assert_eq!(*sys.partitions()[1].state(), State::Waiting, "not yet");
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
        Call::WaitEvent | Call::AuditRead | Call::MachineBase => (CapType::System, Rights::MONITOR),
        Call::Inspect => (CapType::Control, Rights::INSPECT),
        Call::Resume => (CapType::Control, Rights::RESUME),
        Call::Restart => (CapType::Control, Rights::RESTART),
        Call::Stop | Call::SetPolicy | Call::Evacuate | Call::Devirtualize | Call::Relocate => {
            (CapType::Control, Rights::STOP)
        }
        Call::Virtualize => (CapType::SelfPartition, Rights::YIELD),
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
        // A guest's port through its control capability, or its own.
        Call::NetInfo | Call::Usage => return None,
        Call::VcpuStart => return None,
    })
}

proptest! {
    /// Whatever sequence of calls the partitions make: no guest becomes runnable
    /// before the service VM's `ready`; a call that returns an error leaves every
    /// partition's state and generation unchanged; a call that succeeds named a
    /// capability of its type with its right in the caller's own table; and no
    /// capability table ever changes, so no partition gains a right its
    /// description did not grant.
    /// Verifies: SK-MED-002, SK-INIT-001, SK-CAP-002, SK-IFC-001
    #[test]
    fn refused_calls_change_nothing_and_guests_wait_for_ready(
        calls in proptest::collection::vec(any_call(), 1..60)
    ) {
        let (mut sys, mut m) = system(2);
        start(&mut sys, &mut m);
        for (caller, regs) in calls {
            if sys.partitions()[caller].life().abi() != PartitionState::Runnable {
                continue;
            }
            let before = states(&sys);
            let ready_before = sys.service_ready();
            let d = hcall(&mut sys, &mut m, caller, regs);
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
                // The caller goes on, unless the service VM has an event to take.
                let service_first = sys.service_urgent(0, None) && d.run == Run::Vcpu(0);
                prop_assert!(d.run == Run::Vcpu(caller) || service_first);
                prop_assert!(Error::from_status(reply.status).unwrap_err().is_ok());
            }
            if !sys.service_ready() {
                prop_assert!(sys.partitions()[1..].iter().all(|p| p.life().abi() == PartitionState::Waiting));
            }
            if let Run::Vcpu(next) = d.run {
                prop_assert_eq!(sys.partitions()[next].life().abi(), PartitionState::Runnable);
            } else {
                break;
            }
        }
    }
}

/// Verifies: SK-AUD-001
#[test]
fn refused_calls_beyond_the_console_limit_are_counted_not_lost() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    for _ in 0..DENIED_LINES + 5 {
        hcall(
            &mut sys,
            &mut m,
            0,
            CallRegisters {
                number: 999,
                args: [0; 6],
            },
        );
    }
    let shown = m
        .console
        .matches("@@ partition service denied call=999")
        .count() as u64;
    assert_eq!(shown, DENIED_LINES);
    hcall(&mut sys, &mut m, 0, call(Call::Shutdown, &[SYSTEM, 0]));
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
