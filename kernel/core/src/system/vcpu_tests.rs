//! Host tests of partitions with several vCPUs: starting a secondary vCPU (with
//! `vcpu_start` and with PSCI), a fault of one vCPU suspending the whole
//! partition on every core (kicking the cores where its other vCPUs run, whose
//! traps are then held), a restart that brings back vCPU 0 alone, vCPUs sharing a
//! core within their partition's window, and a property test: whatever the vCPUs
//! and the service VM do, no core runs a vCPU of a partition that may not run.

use super::run::Decision;
use super::tests::{CONSOLE, FakeMachine, GUEST_BASE, RAM, SELF, SYSTEM, call, placed};
use super::tests::{enter, hcall, start, trap};
use super::*;
use crate::caps::{CAP_SLOTS, Cap, CapTable, CapType};
use crate::event::{Fault, Reason};
use crate::package::{Kind, PartitionSpec};
use crate::resources::{Resources, Window};
use crate::supervision::Supervision;
use proptest::prelude::*;
use septum_abi::resume::SKIP;
use septum_abi::{Call, PartitionState};
use smccc::psci;

/// The service VM's control capability for the pair.
const CTL_PAIR: u64 = 3;
/// Where the pair's vCPUs start.
const ENTRY: u64 = GUEST_BASE + 0x800;

/// vCPU numbers: the service VM's, the pair's two, the bystander's.
const SERVICE: usize = 0;
const PAIR_0: usize = 1;
const PAIR_1: usize = 2;
const BYSTANDER: usize = 3;

/// The service VM on core 0, "pair" with vCPUs on `pair_cores`, and a bystander
/// on core 3; with windows `windows` (core, offset, length) for the pair if any
/// (then every partition has a 10 ms frame: the service VM 0-2 ms on core 0, the
/// bystander 0-10 ms on core 3). Started and ready.
fn system(pair_cores: [u8; 2], windows: &[(u32, u32, u32)]) -> (System, FakeMachine) {
    let image = [0u8; 16];
    let cap = |ty: CapType, object| {
        Some(Cap {
            ty,
            rights: ty.possible_rights(),
            object,
            badge: 0,
        })
    };
    let specs: Vec<PartitionSpec> = [
        ("service", Kind::Service, vec![0]),
        ("pair", Kind::Guest, pair_cores.to_vec()),
        ("bystander", Kind::Guest, vec![3]),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, (name, kind, cores))| {
        let mut caps: CapTable = [None; CAP_SLOTS];
        caps[CONSOLE as usize] = cap(CapType::Console, 0);
        caps[SELF as usize] = cap(CapType::SelfPartition, 0);
        if kind == Kind::Service {
            caps[SYSTEM as usize] = cap(CapType::System, 0);
            caps[CTL_PAIR as usize] = cap(CapType::Control, 1);
        }
        let mut resources = Resources::on_cores(RAM, RAM, &cores);
        let own: Vec<(u32, u32, u32)> = match (windows.is_empty(), index) {
            (true, _) => vec![],
            (false, 0) => vec![(0, 0, 2_000)],
            (false, 1) => windows.to_vec(),
            (false, _) => vec![(3, 0, 10_000)],
        };
        for (cpu, offset_us, length_us) in own {
            let window = Window {
                cpu,
                offset_us,
                length_us,
            };
            resources.add_window(window).unwrap();
        }
        PartitionSpec {
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
        }
    })
    .collect();
    let frame = (!windows.is_empty()).then_some(10_000);
    let (mut sys, mut m) = placed(&specs, frame);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, SERVICE, call(Call::Ready, &[SYSTEM]));
    (sys, m)
}

fn status(o: &Outcome) -> i64 {
    o.reply.expect("a reply").status as i64
}

fn state(sys: &System) -> PartitionState {
    sys.partitions()[1].life().abi()
}

/// Verifies: SK-VCPU-001, SK-VCPU-002
#[test]
fn vcpu_0_starts_vcpu_1_on_its_own_core() {
    let (mut sys, mut m) = system([1, 2], &[]);
    let pair = &sys.partitions()[1];
    assert_eq!(pair.vcpus(), 1..3);
    assert_eq!(sys.vcpus()[PAIR_1].cpu(), 2);
    // Core 2 has nothing before vCPU 1 is started.
    assert!(matches!(
        enter(&mut sys, 2, Entry::Resume, &mut m).run,
        Run::Idle { .. }
    ));
    let o = hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 7]),
    );
    assert_eq!(status(&o), 0);
    let power_on = Effect::PowerOn {
        vcpu: PAIR_1,
        entry: ENTRY,
        context: 7,
    };
    assert_eq!(
        (o.effects.to_vec(), o.run),
        (vec![power_on], Run::Vcpu(PAIR_0))
    );
    assert!(
        m.console
            .contains("@@ partition pair vcpu 1 start gen=1 cpu=2")
    );
    let o = enter(&mut sys, 2, Entry::Resume, &mut m);
    assert_eq!((o.load, o.run), (Some(PAIR_1), Run::Vcpu(PAIR_1)));
    // Its own lines are labelled with its index.
    m.ram[RAM as usize + 0x100..][..3].copy_from_slice(b"hi\n");
    hcall(
        &mut sys,
        &mut m,
        PAIR_1,
        call(Call::ConsoleWrite, &[CONSOLE, GUEST_BASE + 0x100, 3]),
    );
    assert!(m.console.ends_with("[pair/1] hi\n"), "{}", m.console);
}

/// Verifies: SK-VCPU-002, SK-MED-002
#[test]
fn bad_vcpu_starts_are_refused_and_change_nothing() {
    use septum_abi::Error::{BadAddress, BadState, InvalidArgument};
    let (mut sys, mut m) = system([1, 2], &[]);
    let cases = [
        (PAIR_0, [0, ENTRY], InvalidArgument),
        (PAIR_0, [2, ENTRY], InvalidArgument),
        (PAIR_0, [u64::MAX, ENTRY], InvalidArgument),
        (PAIR_0, [1, GUEST_BASE - 4], BadAddress),
        (PAIR_0, [1, GUEST_BASE + RAM - 2], BadAddress),
        (PAIR_0, [1, u64::MAX - 1], BadAddress),
        (BYSTANDER, [1, ENTRY], InvalidArgument),
        (SERVICE, [1, ENTRY], InvalidArgument),
    ];
    for (caller, [vcpu, entry], error) in cases {
        let console = m.console.len();
        let o = hcall(
            &mut sys,
            &mut m,
            caller,
            call(Call::VcpuStart, &[vcpu, entry, 0]),
        );
        assert_eq!(status(&o), error.code(), "{caller} {vcpu} {entry:#x}");
        assert!(o.effects.is_empty());
        assert_eq!(sys.partitions()[1].life().vcpu_state(1), VcpuState::Off);
        assert!(!m.console[console..].contains("start"));
    }
    hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    let o = hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    assert_eq!(status(&o), BadState.code(), "already on");
}

/// Verifies: SK-VCPU-002
#[test]
fn psci_starts_vcpus_and_answers_what_it_knows() {
    let (mut sys, mut m) = system([1, 2], &[]);
    let smccc = |sys: &mut System, m: &mut FakeMachine, function: u32, args: &[u64]| {
        let mut registers = call(Call::Null, args);
        registers.number = u64::from(function);
        status(&trap(sys, m, PAIR_0, Trap::Smccc(registers)))
    };
    assert_eq!(smccc(&mut sys, &mut m, psci::PSCI_VERSION, &[]), 0x1_0001);
    let features = psci::PSCI_FEATURES;
    assert_eq!(
        smccc(&mut sys, &mut m, features, &[psci::PSCI_CPU_ON_64.into()]),
        0
    );
    let off = psci::PSCI_SYSTEM_OFF.into();
    assert_eq!(smccc(&mut sys, &mut m, features, &[off]), 0);
    let suspend = psci::PSCI_CPU_SUSPEND_64.into();
    assert_eq!(smccc(&mut sys, &mut m, features, &[suspend]), -1);
    assert!(
        !m.console.contains("denied"),
        "a feature query is no refusal"
    );
    assert_eq!(
        smccc(&mut sys, &mut m, psci::PSCI_MIGRATE_INFO_TYPE, &[]),
        2
    );
    assert_eq!(smccc(&mut sys, &mut m, psci::PSCI_CPU_SUSPEND_64, &[]), -1);
    // A refusal is audited and reported like a refused hypercall.
    let suspend = u64::from(psci::PSCI_CPU_SUSPEND_64);
    let denied = format!("@@ partition pair denied call={suspend} error=unknown-call");
    assert!(m.console.contains(&denied), "{}", m.console);
    let affinity = psci::PSCI_AFFINITY_INFO_64;
    assert_eq!(
        smccc(&mut sys, &mut m, affinity, &[0x8000_0001, 0]),
        1,
        "off"
    );
    assert_eq!(smccc(&mut sys, &mut m, affinity, &[2, 0]), -2, "no vCPU 2");
    let cpu_on = psci::PSCI_CPU_ON_64;
    assert_eq!(
        smccc(&mut sys, &mut m, cpu_on, &[0x100, ENTRY, 0]),
        -2,
        "affinity 1"
    );
    assert_eq!(
        smccc(&mut sys, &mut m, cpu_on, &[1, 0x10, 0]),
        -9,
        "bad address"
    );
    assert_eq!(smccc(&mut sys, &mut m, cpu_on, &[0x8000_0001, ENTRY, 9]), 0);
    assert!(
        m.console
            .contains("@@ partition pair vcpu 1 start gen=1 cpu=2")
    );
    assert_eq!(smccc(&mut sys, &mut m, affinity, &[1, 0]), 0, "on");
    assert_eq!(
        smccc(&mut sys, &mut m, cpu_on, &[1, ENTRY, 9]),
        -4,
        "already on"
    );
    assert_eq!(
        smccc(&mut sys, &mut m, cpu_on, &[0, ENTRY, 9]),
        -2,
        "vCPU 0"
    );
}

/// `SYSTEM_OFF` ends the calling partition alone, with exit code 0;
/// `SYSTEM_RESET` is a supervision event about it alone.
/// Verifies: SK-LNX-006
#[test]
fn psci_system_off_and_reset_act_on_the_caller_alone() {
    let smccc = |function: u32| {
        let mut registers = call(Call::Null, &[]);
        registers.number = u64::from(function);
        Trap::Smccc(registers)
    };
    let (mut sys, mut m) = system([1, 2], &[]);
    trap(&mut sys, &mut m, PAIR_0, smccc(psci::PSCI_SYSTEM_OFF));
    assert!(
        m.console.contains("@@ partition pair exit code=0"),
        "{}",
        m.console
    );
    assert!(
        !m.console.contains("@@ kernel shutdown"),
        "the machine stays on"
    );
    let (mut sys, mut m) = system([1, 2], &[]);
    trap(&mut sys, &mut m, PAIR_0, smccc(psci::PSCI_SYSTEM_RESET));
    assert!(
        m.console.contains("@@ partition pair fault reason=reset"),
        "{}",
        m.console
    );
    assert!(!m.console.contains("@@ partition bystander fault"));
    assert!(!m.console.contains("@@ kernel shutdown"));
}

/// Verifies: SK-VCPU-003
#[test]
fn a_fault_of_one_vcpu_suspends_the_partition_on_every_core() {
    let (mut sys, mut m) = system([1, 2], &[]);
    hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    enter(&mut sys, 2, Entry::Resume, &mut m);
    assert_eq!((sys.loaded(1), sys.loaded(2)), (Some(PAIR_0), Some(PAIR_1)));
    // vCPU 1 faults on core 2: it leaves core 2, and core 1 is kicked.
    let fault = Fault {
        length: 4,
        ..Fault::new(Reason::Stage2Data, 0x9000_0000, 0x46)
    };
    let o = trap(&mut sys, &mut m, PAIR_1, Trap::Fault(fault));
    assert_eq!(state(&sys), PartitionState::Suspended);
    assert!(m.console.contains("action=suspend vcpu=1"));
    assert_eq!((o.store, o.kick), (Some(PAIR_1), 0b10));
    assert!(matches!(o.run, Run::Idle { .. }));
    assert_eq!(sys.loaded(2), None);
    // Core 1 is kicked once only, however often others enter the core meanwhile.
    let o = enter(&mut sys, 3, Entry::Resume, &mut m);
    assert_eq!(o.kick, 0);
    // A call vCPU 0 made before the kick landed is held: no reply, no skip, and
    // it leaves its core; it makes the call again when resumed.
    let console = m.console.len();
    let o = enter(
        &mut sys,
        1,
        Entry::Trap(&Trap::Hypercall(call(Call::Exit, &[SELF, 0]))),
        &mut m,
    );
    assert_eq!((o.reply, o.skip, o.store), (None, false, Some(PAIR_0)));
    assert!(matches!(o.run, Run::Idle { .. }));
    assert_eq!(state(&sys), PartitionState::Suspended);
    assert!(!m.console[console..].contains("exit"));
    assert!(m.console[console..].contains("@@ partition pair vcpu 0 left cpu=1 state=suspended"));
    // Resume with skip moves vCPU 1, the one that faulted, past its access; both
    // vCPUs run again.
    let o = hcall(
        &mut sys,
        &mut m,
        SERVICE,
        call(Call::Resume, &[CTL_PAIR, 0, SKIP]),
    );
    let skip = Effect::Skip {
        vcpu: PAIR_1,
        length: 4,
    };
    assert_eq!(o.effects.to_vec(), vec![skip]);
    assert_eq!(
        enter(&mut sys, 1, Entry::Resume, &mut m).run,
        Run::Vcpu(PAIR_0)
    );
    assert_eq!(
        enter(&mut sys, 2, Entry::Resume, &mut m).run,
        Run::Vcpu(PAIR_1)
    );
}

/// Verifies: SK-VCPU-003
#[test]
fn a_restart_waits_for_every_core_and_brings_back_vcpu_0_alone() {
    let (mut sys, mut m) = system([1, 2], &[]);
    hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    enter(&mut sys, 2, Entry::Resume, &mut m);
    let o = hcall(
        &mut sys,
        &mut m,
        SERVICE,
        call(Call::Restart, &[CTL_PAIR, 0]),
    );
    assert_eq!(
        (o.reply.unwrap().results[0], o.kick),
        (1, 0b110),
        "deferred"
    );
    // Core 1 lets vCPU 0 go; vCPU 1 is still live on core 2, so nothing yet.
    let o = enter(&mut sys, 1, Entry::Trap(&Trap::Kicked), &mut m);
    assert_eq!((o.store, o.effects.len()), (Some(PAIR_0), 0));
    assert_eq!(sys.partitions()[1].generation(), 1);
    // The last core to let go restarts it: vCPU 0 is reset, vCPU 1 is off.
    let o = enter(&mut sys, 2, Entry::Trap(&Trap::Kicked), &mut m);
    let reset = Effect::Restart {
        vcpu: PAIR_0,
        generation: 2,
    };
    assert_eq!((o.store, o.effects.to_vec()), (Some(PAIR_1), vec![reset]));
    assert_eq!(sys.partitions()[1].life().vcpu_state(1), VcpuState::Off);
    assert!(matches!(
        enter(&mut sys, 2, Entry::Resume, &mut m).run,
        Run::Idle { .. }
    ));
    // Core 1 reloads it in vCPU 0's turn and runs vCPU 0, which may start vCPU 1.
    assert_eq!(
        enter(&mut sys, 1, Entry::Resume, &mut m).run,
        Run::Vcpu(PAIR_0)
    );
    let o = hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    assert_eq!(status(&o), 0);
    assert!(
        m.console
            .contains("@@ partition pair vcpu 1 start gen=2 cpu=2")
    );
}

/// Verifies: SK-VCPU-001, SK-TMP-001
#[test]
fn vcpus_sharing_a_core_take_turns_in_their_window() {
    // The pair has core 1 for 2-8 ms of each 10 ms frame, both its vCPUs there.
    let (mut sys, mut m) = system([1, 1], &[(1, 2_000, 6_000)]);
    m.now_us = 2_000;
    assert_eq!(
        sys.decide(1, None, Next::Yield, &mut m),
        Decision::Run {
            vcpu: PAIR_0,
            end: TurnEnd::At(8_000)
        },
        "alone, vCPU 0 has the whole window"
    );
    hcall(
        &mut sys,
        &mut m,
        PAIR_0,
        call(Call::VcpuStart, &[1, ENTRY, 0]),
    );
    let mut turns = Vec::new();
    let mut now = 2_000;
    while now < 8_000 {
        m.now_us = now;
        let running = sys.loaded(1).unwrap_or(PAIR_0);
        let o = trap(&mut sys, &mut m, running, Trap::Preempted);
        let Run::Vcpu(vcpu) = o.run else {
            panic!("idle in its own window at {now}");
        };
        let Some(TurnEnd::At(end)) = o.turn else {
            panic!("no new turn at {now}");
        };
        assert_eq!(end, (now + VCPU_SLICE_US).min(8_000));
        turns.push(vcpu);
        now = end;
    }
    assert_eq!(turns, [PAIR_1, PAIR_0, PAIR_1, PAIR_0, PAIR_1, PAIR_0]);
    // After the window, core 1 idles until the next one.
    m.now_us = 8_000;
    let o = trap(&mut sys, &mut m, PAIR_0, Trap::Preempted);
    assert_eq!(o.run, Run::Idle { until_us: 12_000 });
}

#[derive(Clone, Debug)]
enum Op {
    /// vCPU `.0` starts vCPU 1.
    Start(usize),
    /// vCPU `.0` faults.
    Fault(usize),
    /// vCPU `.0` makes a null call, waits, or is preempted.
    Trap(usize, u8),
    /// Core `.0` enters after a kick or an idle wait.
    Enter(usize, bool),
    /// The service VM resumes, restarts or stops the pair, or takes an event.
    Control(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let vcpu = 0usize..4;
    prop_oneof![
        vcpu.clone().prop_map(Op::Start),
        vcpu.clone().prop_map(Op::Fault),
        (vcpu, 0u8..3).prop_map(|(v, t)| Op::Trap(v, t)),
        (0usize..4, any::<bool>()).prop_map(|(c, k)| Op::Enter(c, k)),
        (0u8..4).prop_map(Op::Control),
        (0u64..3_000).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Whatever the vCPUs and the service VM do, on one core or two, with or
    /// without a schedule: no core is told to run, or keeps loaded after it
    /// settles, a vCPU whose partition may not run; every vCPU of a suspended
    /// partition agrees it may not run; a vCPU runs only on its own core; and a
    /// restart is carried out only once no vCPU of the pair is live on another
    /// core.
    /// Verifies: SK-VCPU-001, SK-VCPU-003
    #[test]
    fn no_core_runs_a_vcpu_of_a_partition_that_may_not_run(
        shared in any::<bool>(),
        scheduled in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let cores = if shared { [1, 1] } else { [1, 2] };
        let windows: &[(u32, u32, u32)] = match (scheduled, shared) {
            (false, _) => &[],
            (true, true) => &[(1, 2_000, 6_000)],
            (true, false) => &[(1, 2_000, 6_000), (2, 0, 10_000)],
        };
        let (mut sys, mut m) = system(cores, windows);
        let mut event = [0u8; 128];
        for op in ops {
            let generation = sys.partitions()[1].generation();
            let loaded_before: Vec<Option<usize>> = (0..MAX_CPUS).map(|c| sys.loaded(c)).collect();
            let outcome = match op {
                Op::Start(vcpu) if sys.loaded(sys.vcpus()[vcpu].cpu()) == Some(vcpu) => {
                    let cpu = sys.vcpus()[vcpu].cpu();
                    let regs = call(Call::VcpuStart, &[1, ENTRY, 0]);
                    Some((cpu, enter(&mut sys, cpu, Entry::Trap(&Trap::Hypercall(regs)), &mut m)))
                }
                Op::Fault(vcpu) | Op::Trap(vcpu, _) if sys.loaded(sys.vcpus()[vcpu].cpu()) == Some(vcpu) => {
                    let cpu = sys.vcpus()[vcpu].cpu();
                    let trap = match op {
                        Op::Fault(_) => Trap::Fault(Fault::new(Reason::Stage2Data, 0x9000_0000, 0)),
                        Op::Trap(_, 0) => Trap::Hypercall(call(Call::Null, &[])),
                        Op::Trap(_, 1) => Trap::Wait,
                        _ => Trap::Preempted,
                    };
                    Some((cpu, enter(&mut sys, cpu, Entry::Trap(&trap), &mut m)))
                }
                Op::Enter(cpu, kicked) => {
                    let entry = match sys.loaded(cpu) {
                        Some(_) if kicked => Entry::Trap(&Trap::Kicked),
                        Some(_) => Entry::Trap(&Trap::Preempted),
                        None => Entry::Resume,
                    };
                    Some((cpu, enter(&mut sys, cpu, entry, &mut m)))
                }
                Op::Control(what) if sys.loaded(0) == Some(SERVICE) => {
                    let regs = match what {
                        0 => call(Call::Resume, &[CTL_PAIR, 0, 0]),
                        1 => call(Call::Restart, &[CTL_PAIR, 0]),
                        2 => call(Call::Stop, &[CTL_PAIR, 0]),
                        _ => call(Call::WaitEvent, &[SYSTEM, GUEST_BASE + 0x200]),
                    };
                    let outcome = enter(&mut sys, 0, Entry::Trap(&Trap::Hypercall(regs)), &mut m);
                    m.ram[0x200..0x280].copy_from_slice(&event);
                    Some((0, outcome))
                }
                Op::Advance(us) => {
                    m.now_us += us;
                    None
                }
                _ => None,
            };
            event.copy_from_slice(&m.ram[0x200..0x280]);
            let life = sys.partitions()[1].life();
            for index in 0..2 {
                prop_assert!(!life.vcpu_runnable(index) || life.runnable());
                if life.suspension().is_some() {
                    prop_assert!(!life.vcpu_runnable(index));
                }
            }
            if let Some((cpu, outcome)) = outcome {
                match outcome.run {
                    Run::Vcpu(vcpu) => {
                        let slot = &sys.vcpus()[vcpu];
                        prop_assert_eq!(slot.cpu(), cpu);
                        prop_assert!(sys.partitions()[slot.partition()].life().vcpu_runnable(slot.index()));
                        prop_assert_eq!(sys.loaded(cpu), Some(vcpu));
                    }
                    Run::Idle { .. } => prop_assert_eq!(sys.loaded(cpu), None),
                    Run::PowerOff { .. } => break,
                }
                if sys.partitions()[1].generation() > generation {
                    // Restarted: no other core had a vCPU of it live, and this
                    // core let its own go first.
                    let pair = |v: &Option<usize>| v.is_some_and(|v| sys.vcpus()[v].partition() == 1);
                    let elsewhere = (0..MAX_CPUS).any(|c| c != cpu && pair(&loaded_before[c]));
                    prop_assert!(!elsewhere, "restarted while live on another core");
                    prop_assert!(!pair(&loaded_before[cpu]) || outcome.store == loaded_before[cpu]);
                }
            }
        }
    }
}

/// `CPU_OFF` powers a started vCPU off (it leaves its core and is off until
/// `CPU_ON` starts it again); vCPU 0 is refused (`DENIED`).
/// Verifies: SK-LNX-006, SK-VCPU-002
#[test]
fn psci_cpu_off_stops_a_vcpu_until_it_is_started_again() {
    let (mut sys, mut m) = system([1, 2], &[]);
    let smccc = |sys: &mut System, m: &mut FakeMachine, vcpu, function: u32, args: &[u64]| {
        let mut registers = call(Call::Null, args);
        registers.number = u64::from(function);
        trap(sys, m, vcpu, Trap::Smccc(registers))
    };
    let status = |o: &Outcome| o.reply.map(|r| r.status as i64);
    let on = smccc(
        &mut sys,
        &mut m,
        PAIR_0,
        psci::PSCI_CPU_ON_64,
        &[1, ENTRY, 0],
    );
    assert_eq!(status(&on), Some(0));
    enter(&mut sys, 2, Entry::Resume, &mut m);
    assert_eq!(sys.loaded(2), Some(PAIR_1));
    let off = smccc(&mut sys, &mut m, PAIR_1, psci::PSCI_CPU_OFF, &[]);
    assert!(
        m.console.contains("@@ partition pair vcpu 1 off cpu=2"),
        "{}",
        m.console
    );
    assert_eq!(sys.loaded(2), None, "it left its core: {off:?}");
    assert_eq!(sys.partitions()[1].life().vcpu_state(1), VcpuState::Off);
    let affinity = smccc(
        &mut sys,
        &mut m,
        PAIR_0,
        psci::PSCI_AFFINITY_INFO_64,
        &[1, 0],
    );
    assert_eq!(status(&affinity), Some(1), "off");
    let denied = smccc(&mut sys, &mut m, PAIR_0, psci::PSCI_CPU_OFF, &[]);
    assert_eq!(status(&denied), Some(-3), "vCPU 0 stays on");
    assert_eq!(sys.partitions()[1].life().vcpu_state(0), VcpuState::Ready);
    let again = smccc(
        &mut sys,
        &mut m,
        PAIR_0,
        psci::PSCI_CPU_ON_64,
        &[1, ENTRY, 0],
    );
    assert_eq!(status(&again), Some(0));
    assert_eq!(sys.partitions()[1].life().vcpu_state(1), VcpuState::Ready);
}
