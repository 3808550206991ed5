//! Host tests of supervision (`system/supervise.rs`): suspension of a trapped or
//! faulted guest and the service VM's event queue, `resume` / `restart` / `stop`
//! with their generation and budget checks, the restart of the service VM itself,
//! the watchdog, trap policy changes before `ready`, the audit ring, the console
//! escape, control of a partition live on another core, and a property test over
//! random sequences of supervision calls, faults and clock advances.

use super::tests::{CONSOLE, FakeMachine, GUEST_BASE, HOST_BASE, RAM, SELF, SYSTEM, call};
use super::tests::{answer, enter, hcall, start, trap as trap_on};
use super::*;
use crate::audit::AuditKind;
use crate::caps::CapType;
use crate::caps::{CAP_SLOTS, Cap, CapTable};
use crate::event::{Fault, Reason};
use crate::package::{Kind, PartitionSpec, encode};
use crate::resources::Resources;
use crate::supervision::{Supervision, TrapAction, TrapClass};
use proptest::prelude::*;
use septum_abi::event::{Kind as EventKind, RECORD_SIZE, WORD_DETAIL, WORD_GENERATION};
use septum_abi::event::{WORD_KIND, WORD_PARTITION, WORD_REASON, WORD_TIME};
use septum_abi::resume::SKIP;
use septum_abi::{Call, PartitionState};

/// Service VM slots beyond the common ones: control of alpha, of beta, and its own
/// watchdog. Guests hold their watchdog in slot 2.
const CTL_ALPHA: u64 = 3;
const CTL_BETA: u64 = 4;
const SERVICE_WATCHDOG: u64 = 5;
const WATCHDOG: u64 = 2;
/// The service VM's event buffer, and where it lies in the fake machine's RAM (the
/// service VM's RAM comes first).
const BUFFER: u64 = GUEST_BASE + 0x200;
const AT: usize = 0x200;
const END: u64 = GUEST_BASE + RAM;
const TRAP: u64 = EventKind::Trap as u64;
const INPUT: u64 = EventKind::Input as u64;

fn cap(ty: CapType, object: u16) -> Option<Cap> {
    let rights = ty.possible_rights();
    Some(Cap {
        ty,
        rights,
        object,
        badge: 0,
    })
}

/// Only a watchdog of `ms` milliseconds.
fn watchdog(ms: u32) -> Supervision {
    Supervision {
        watchdog_ms: ms,
        ..Supervision::default()
    }
}

/// An unassigned MMIO access by an instruction of `length` bytes.
fn trap(addr: u64, length: u8) -> Fault {
    let snapshot = [0x4000_1000, 0x4000_8000, 0x3c5, 10, 11, 12, 13, 14];
    let syndrome = 0x9200_0046;
    let kind = Reason::Stage2Data;
    Fault {
        kind,
        addr,
        syndrome,
        length,
        snapshot,
    }
}

/// What an outcome without a reply runs, and its effect.
fn dispatch(run: Run, effect: Option<Effect>) -> (Option<Reply>, Run, Vec<Effect>) {
    (None, run, effect.into_iter().collect())
}

/// The last effect an outcome asks for.
fn effect(o: &Outcome) -> Option<Effect> {
    o.effects.last().copied()
}

fn results(d: &Outcome) -> [u64; 3] {
    let reply = d.reply.expect("a reply");
    assert_eq!(reply.status, 0, "{:?}", Error::from_status(reply.status));
    reply.results
}

fn refused(d: &Outcome) -> Error {
    let status = d.reply.expect("a reply").status;
    Error::from_status(status).unwrap_err().expect("known")
}

/// The service VM, alpha and beta on a fake machine.
struct Rig {
    sys: System,
    m: FakeMachine,
}

/// Started, on core 0 all three, with default supervision; not yet ready.
fn rig() -> Rig {
    rig_with([0; 3], [Default::default(); 3])
}

/// As [`rig`], and ready.
fn running() -> Rig {
    let mut t = rig();
    t.svc(Call::Ready, &[SYSTEM]);
    t
}

/// Started, pinned to the cores `cpus` gives, supervised as `sup` says.
fn rig_with(cpus: [u8; 3], sup: [Supervision; 3]) -> Rig {
    let image = [0u8; 16];
    let names = ["service", "alpha", "beta"];
    let specs: Vec<PartitionSpec> = (0..3)
        .map(|i| {
            let kind = if i == 0 { Kind::Service } else { Kind::Guest };
            let mut caps: CapTable = [None; CAP_SLOTS];
            caps[CONSOLE as usize] = cap(CapType::Console, 0);
            caps[SELF as usize] = cap(CapType::SelfPartition, 0);
            if i == 0 {
                caps[SYSTEM as usize] = cap(CapType::System, 0);
                caps[CTL_ALPHA as usize] = cap(CapType::Control, 1);
                caps[CTL_BETA as usize] = cap(CapType::Control, 2);
                caps[SERVICE_WATCHDOG as usize] = cap(CapType::Watchdog, 0);
            } else {
                caps[WATCHDOG as usize] = cap(CapType::Watchdog, 0);
            }
            PartitionSpec {
                name: names[i],
                kind,
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps,
                resources: Resources::on_cores(RAM, RAM, &[cpus[i]]),
                supervision: sup[i],
            }
        })
        .collect();
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..3)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let (ram, console) = (vec![0; RAM as usize * 3], String::new());
    let m = FakeMachine {
        ram,
        console,
        now_us: 0,
    };
    let mut t = Rig {
        sys: System::new(&package, GUEST_BASE, &host, Range::default()).unwrap(),
        m,
    };
    start(&mut t.sys, &mut t.m);
    t
}

impl Rig {
    /// Partition `caller` makes a call. As on a machine, a partition runs only
    /// once it owes no work: a restarted one is reloaded first.
    fn call(&mut self, caller: usize, number: Call, args: &[u64]) -> Outcome {
        while self.sys.owes_work(caller) {
            self.sys.work(caller, &mut self.m);
        }
        hcall(&mut self.sys, &mut self.m, caller, call(number, args))
    }
    /// The service VM makes a call.
    fn svc(&mut self, number: Call, args: &[u64]) -> Outcome {
        self.call(0, number, args)
    }
    fn wait(&mut self) -> [u64; 3] {
        results(&self.svc(Call::WaitEvent, &[SYSTEM, BUFFER]))
    }
    fn fault(&mut self, culprit: usize, fault: Fault) -> Outcome {
        trap_on(&mut self.sys, &mut self.m, culprit, Trap::Fault(fault))
    }
    /// Checks the watchdogs of core `cpu` at `now_us` (the clock stays where it
    /// was); returns the vCPU reset it asks for, if any.
    fn watchdogs(&mut self, cpu: usize, now_us: u64) -> Option<Effect> {
        let clock = core::mem::replace(&mut self.m.now_us, now_us);
        let mut out = Outcome::new();
        self.sys.check_watchdogs(cpu, &mut out, &mut self.m);
        self.m.now_us = clock;
        effect(&out)
    }
    fn key(&mut self, byte: u8) {
        self.sys.console_input(byte, &mut self.m);
    }
    fn state(&self, index: usize) -> PartitionState {
        self.sys.partitions()[index].life().abi()
    }
    fn states(&self) -> Vec<(PartitionState, u32)> {
        super::tests::states(&self.sys)
    }
    fn says(&self, text: &str) {
        let console = &self.m.console;
        assert!(console.contains(text), "{text:?} not in\n{console}");
    }
    /// `count` little-endian words of the fake RAM at byte offset `at`.
    fn words(&self, at: usize, count: usize) -> Vec<u64> {
        let bytes = &self.m.ram[at..at + count * 8];
        bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }
    /// The header of the event record last written to the buffer.
    fn header(&self) -> Vec<u64> {
        self.words(AT, 8)
    }
    /// Reads up to `max` audit records into the buffer and decodes them as [time,
    /// partition, kind, generation, detail 0, detail 1].
    fn audit(&mut self, max: u64) -> ([u64; 3], Vec<[u64; 6]>) {
        let got = results(&self.svc(Call::AuditRead, &[SYSTEM, BUFFER, max]));
        let decode = |w: &[u64]| [w[0], w[1] & 0xff, w[1] >> 8 & 0xff, w[1] >> 32, w[2], w[3]];
        let raw = self.words(AT, got[0] as usize * 4);
        (got, raw.chunks_exact(4).map(decode).collect())
    }
    /// The service VM makes call `number`, which does not exist.
    fn unknown(&mut self, number: u64) {
        let args = [0; 6];
        hcall(
            &mut self.sys,
            &mut self.m,
            0,
            CallRegisters { number, args },
        );
    }
}

/// Verifies: SK-HM-002
#[test]
fn a_trap_suspends_the_guest_and_the_service_vm_gets_its_record() {
    let mut t = running();
    t.m.now_us = 1234;
    let fault = trap(0x9000_0000, 4);
    assert_eq!(answer(&t.fault(1, fault)), dispatch(Run::Vcpu(0), None));
    assert_eq!(t.state(1), PartitionState::Suspended);
    t.says("@@ partition alpha fault reason=stage2-data addr=0x90000000 syndrome=0x92000046 gen=1 action=suspend");
    let d = t.svc(Call::WaitEvent, &[SYSTEM, BUFFER]);
    assert_eq!((results(&d), d.run), ([TRAP, 1, 2], Run::Vcpu(0)));
    // Kind, partition, generation, reason (stage-2 data), address, syndrome,
    // detail, time; then the snapshot. Exactly 128 bytes were written.
    let record = t.words(AT, RECORD_SIZE / 8);
    let expected = [TRAP, 1, 1, 1, 0x9000_0000, 0x9200_0046, 0, 1234];
    assert_eq!(record[..8], expected);
    assert_eq!(record[8..], fault.snapshot);
    let zero = |range: core::ops::Range<usize>| t.m.ram[range].iter().all(|&b| b == 0);
    assert!(zero(0..AT) && zero(AT + RECORD_SIZE..RAM as usize));

    let d = t.svc(Call::Resume, &[CTL_ALPHA, 1, SKIP]);
    assert_eq!(
        (results(&d), effect(&d)),
        ([0; 3], Some(Effect::Skip { vcpu: 1, length: 4 }))
    );
    assert_eq!(t.state(1), PartitionState::Runnable);
    t.says("@@ partition alpha resume gen=1 skip=1");
    let d = t.svc(Call::Resume, &[CTL_ALPHA, 0, 0]);
    assert_eq!(refused(&d), Error::BadState);

    // The kernel does not know the length: it cannot skip, and nothing changes.
    t.fault(1, trap(0x9000_0000, 0));
    let before = t.states();
    let d = t.svc(Call::Resume, &[CTL_ALPHA, 0, SKIP]);
    assert_eq!(refused(&d), Error::CannotSkip);
    assert_eq!(
        (t.states(), before[1].0),
        (before, PartitionState::Suspended)
    );
    let d = t.svc(Call::Resume, &[CTL_ALPHA, 0, 0]);
    assert_eq!((results(&d), effect(&d)), ([0; 3], None));
    assert_eq!(t.state(1), PartitionState::Runnable);
}

/// Verifies: SK-AUD-001, SK-AUD-004
#[test]
fn a_trap_storm_is_reported_line_by_line_only_at_first_but_audited_whole() {
    let mut t = running();
    for _ in 0..TRAP_LINES + 4 {
        t.fault(1, trap(0x9000_0000, 4));
        t.svc(Call::Resume, &[CTL_ALPHA, 0, SKIP]);
    }
    let lines = |what: &str| t.m.console.matches(what).count() as u32;
    assert_eq!(lines("@@ partition alpha fault "), TRAP_LINES);
    assert_eq!(lines("@@ partition alpha resume "), TRAP_LINES);
    // Every trap and every resume is in the audit ring.
    let d = t.svc(Call::AuditRead, &[SYSTEM, BUFFER, 64]);
    assert_eq!(results(&d), [2 * u64::from(TRAP_LINES + 4), 0, 0]);
}

/// Verifies: SK-HM-004, SK-HM-002
#[test]
fn restarts_bump_the_generation_within_the_budget_then_stop() {
    let mut t = running();
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 0]);
    let reload = Some(Effect::Restart {
        vcpu: 1,
        generation: 2,
    });
    assert_eq!((results(&d), effect(&d)), ([0; 3], reload));
    assert_eq!(t.states()[1], (PartitionState::Loading, 2));
    t.says("@@ partition alpha restart gen=2");
    // A caller that saw generation 1 is told the partition has moved on.
    let before = t.states();
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 1]);
    assert_eq!((refused(&d), t.states()), (Error::PeerRestarted, before));
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 2]);
    assert_eq!(
        effect(&d),
        Some(Effect::Restart {
            vcpu: 1,
            generation: 3
        })
    );
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 3]);
    assert_eq!(
        effect(&d),
        Some(Effect::Restart {
            vcpu: 1,
            generation: 4
        })
    );
    let d = t.svc(Call::Inspect, &[CTL_ALPHA, BUFFER]);
    assert_eq!(
        results(&d),
        [PartitionState::Loading as u64, 4 | (3 << 32), RAM]
    );
    assert_eq!(t.m.ram[AT..AT + 16], *b"alpha\0\0\0\0\0\0\0\0\0\0\0");
    // The fourth restart within 10 s stops it for good.
    t.m.now_us = 9_999_999;
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 0]);
    assert_eq!((refused(&d), effect(&d)), (Error::BudgetExhausted, None));
    assert_eq!(t.states()[1], (PartitionState::Stopped, 4));
    t.says("@@ partition alpha stop gen=4 by=budget");
    let d = t.svc(Call::Inspect, &[CTL_ALPHA]);
    assert_eq!(results(&d)[0], septum_abi::PartitionState::Stopped as u64);
    // Once the period has passed, it may be restarted again.
    t.m.now_us = 10_000_000;
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 0]);
    assert_eq!(
        effect(&d),
        Some(Effect::Restart {
            vcpu: 1,
            generation: 5
        })
    );
    assert_eq!(t.state(1), PartitionState::Loading);
    assert_eq!(t.sys.partitions()[1].restarts(), 4);
}

/// Verifies: SK-HM-002
#[test]
fn wait_event_blocks_until_a_fault_wakes_the_service_vm() {
    let mut t = running();
    let d = t.svc(Call::WaitEvent, &[SYSTEM, BUFFER]);
    assert_eq!((results(&d), d.run), ([0, 0, 2], Run::Vcpu(1)));
    assert_eq!(t.state(0), PartitionState::Blocked);
    let d = t.fault(2, trap(0x9000_0000, 4));
    assert_eq!(
        (t.state(0), d.run),
        (PartitionState::Runnable, Run::Vcpu(0))
    );
    assert_eq!(t.wait(), [TRAP, 2, 2]);
    // Guests that ended no longer count as live.
    t.call(1, Call::Exit, &[SELF, 7]);
    assert_eq!(t.wait(), [EventKind::Exited as u64, 1, 1]);
    assert_eq!(t.header()[WORD_DETAIL], 7);
}

/// Verifies: SK-HM-005
#[test]
fn a_service_vm_fault_reloads_it_and_it_is_told_again_about_suspended_guests() {
    let mut t = running();
    t.fault(1, trap(0x9000_0000, 4));
    assert_eq!(t.wait(), [TRAP, 1, 2]);
    t.fault(2, trap(0x9100_0000, 4));
    t.key(ESCAPE);
    let d = t.fault(0, Fault::new(Reason::UnhandledException, 0x4000_0010, 0));
    let reset = Effect::Restart {
        vcpu: 0,
        generation: 2,
    };
    assert_eq!(answer(&d), dispatch(Run::Vcpu(0), Some(reset)));
    // Its core reloaded it in the same entry (the fake clock stands still, so the
    // first slice of the work covers all its RAM) before running it.
    assert_eq!(t.states()[0], (PartitionState::Runnable, 2));
    t.says("@@ partition service fault reason=unhandled-exception addr=0x40000010 syndrome=0x0 gen=1 action=restart");
    t.says("@@ partition service restart gen=2");
    // The guests stay suspended, and the queue holds exactly one event for each:
    // the one handed to the old instance is told again, the console event is gone.
    assert_eq!([t.state(1), t.state(2)], [PartitionState::Suspended; 2]);
    assert_eq!(t.wait(), [TRAP, 1, 2]);
    assert_eq!(t.wait(), [TRAP, 2, 2]);
    assert_eq!(t.header()[4], 0x9100_0000);
    // The restarted service VM may report ready again; it changes nothing.
    let before = t.states();
    let d = t.svc(Call::Ready, &[SYSTEM]);
    assert_eq!((results(&d), t.states()), ([1, 0, 0], before));
    t.svc(Call::Resume, &[CTL_ALPHA, 1, 0]);
    assert_eq!(t.wait(), [0, 0, 2]);
}

/// Verifies: SK-HM-003, SK-HM-005
#[test]
fn a_late_guest_is_suspended_heartbeats_rearm_and_a_late_service_vm_is_reloaded() {
    let none = Supervision::default();
    let mut t = rig_with([0; 3], [none, watchdog(5), none]);
    t.svc(Call::Ready, &[SYSTEM]);
    assert_eq!(t.watchdogs(0, 5_000), None);
    assert_eq!(t.watchdogs(1, 900_000), None, "another core");
    assert_eq!(t.state(1), PartitionState::Runnable);
    t.m.now_us = 3_000;
    assert_eq!(results(&t.call(1, Call::Heartbeat, &[WATCHDOG])), [0; 3]);
    assert_eq!(t.watchdogs(0, 8_000), None);
    assert_eq!(t.state(1), PartitionState::Runnable);
    // Beta has no watchdog: its heartbeat is refused.
    let d = t.call(2, Call::Heartbeat, &[WATCHDOG]);
    assert_eq!(refused(&d), Error::BadState);
    t.m.now_us = 8_250;
    assert_eq!(t.watchdogs(0, 8_250), None);
    assert_eq!(t.state(1), PartitionState::Suspended);
    t.says("@@ partition alpha watchdog gen=1 period_ms=5 late_us=250");
    assert_eq!(t.wait(), [EventKind::Watchdog as u64, 1, 2]);
    let expected = [3, 1, 1, Reason::Watchdog as u64, 0, 0, 250, 8_250];
    assert_eq!(t.header(), expected);
    let d = t.svc(Call::Resume, &[CTL_ALPHA, 0, SKIP]);
    assert_eq!(refused(&d), Error::CannotSkip);
    t.svc(Call::Resume, &[CTL_ALPHA, 0, 0]);
    // Resumed at 8,250 µs: due again at 13,250 µs.
    assert_eq!(t.watchdogs(0, 13_250), None);
    assert_eq!(t.state(1), PartitionState::Runnable);
    t.watchdogs(0, 13_251);
    assert_eq!(t.state(1), PartitionState::Suspended);

    let mut t = rig_with([0; 3], [watchdog(10), none, none]);
    assert_eq!(t.watchdogs(0, 10_000), None);
    assert_eq!(
        t.watchdogs(0, 10_001),
        Some(Effect::Restart {
            vcpu: 0,
            generation: 2
        })
    );
    assert_eq!(t.states()[0], (PartitionState::Loading, 2));
    t.says("@@ partition service watchdog gen=1 period_ms=10 late_us=1");
}

/// Verifies: SK-INIT-005, SK-MED-002
#[test]
fn policies_only_tighten_and_only_before_ready() {
    let mut t = rig();
    let policy = |t: &Rig, i: usize| t.sys.partitions()[i].supervision().policy;
    assert_eq!(results(&t.svc(Call::SetPolicy, &[CTL_ALPHA, 0, 1])), [0; 3]);
    assert_eq!(policy(&t, 1).action(TrapClass::Mmio), TrapAction::Stop);
    t.says("@@ partition alpha policy class=mmio action=stop");
    // The same again is no loosening.
    assert_eq!(results(&t.svc(Call::SetPolicy, &[CTL_ALPHA, 0, 1])), [0; 3]);
    let cases = [
        (CTL_ALPHA, 0, 0, Error::Loosening),
        (CTL_ALPHA, 4, 1, Error::InvalidArgument),
        (CTL_ALPHA, u64::MAX, 1, Error::InvalidArgument),
        (CTL_ALPHA, 1, 2, Error::InvalidArgument),
        (SYSTEM, 0, 1, Error::WrongType),
    ];
    for (slot, class, action, error) in cases {
        let before = policy(&t, 1);
        let d = t.svc(Call::SetPolicy, &[slot, class, action]);
        assert_eq!((refused(&d), policy(&t, 1)), (error, before));
    }
    t.svc(Call::Ready, &[SYSTEM]);
    for class in 0..4 {
        let d = t.svc(Call::SetPolicy, &[CTL_BETA, class, 1]);
        assert_eq!(refused(&d), Error::BadState);
    }
    assert_eq!(policy(&t, 2), Default::default());
    // Enforced: alpha is stopped at once, beta (still `service`) is suspended.
    let d = t.fault(1, trap(0x9000_0000, 4));
    assert_eq!((d.run, t.state(1)), (Run::Vcpu(0), PartitionState::Stopped));
    t.says("addr=0x90000000 syndrome=0x92000046 gen=1 action=stop");
    t.says("@@ partition alpha stop gen=1 by=policy");
    t.fault(2, trap(0x9000_0000, 4));
    assert_eq!(t.state(2), PartitionState::Suspended);
    assert_eq!(t.wait(), [EventKind::Stopped as u64, 1, 1]);
    assert_eq!(t.header()[WORD_DETAIL], 2, "stopped by its policy");
    assert_eq!(t.wait(), [TRAP, 2, 1]);
}

/// Verifies: SK-AUD-004
#[test]
fn the_audit_ring_keeps_refusals_and_traps_in_order_and_counts_losses() {
    let mut t = running();
    t.m.now_us = 10;
    t.svc(Call::Resume, &[SYSTEM]);
    t.m.now_us = 20;
    t.call(1, Call::Restart, &[CTL_ALPHA]);
    t.m.now_us = 30;
    t.fault(1, trap(0x9000_0000, 4));
    t.m.now_us = 40;
    t.svc(Call::Restart, &[CTL_ALPHA]);
    let (got, records) = t.audit(8);
    assert_eq!(got, [4, 0, 0]);
    let (resume, restart) = (Call::Resume as u64, Call::Restart as u64);
    let (wrong, empty) = (Error::WrongType.code(), Error::NoSuchSlot.code());
    let (refusal, wrong, empty) = (
        AuditKind::CapabilityError as u64,
        wrong as u64,
        empty as u64,
    );
    let expected = [
        [10, 0, refusal, 1, resume, wrong],
        [20, 1, refusal, 1, restart, empty],
        [30, 1, AuditKind::Trap as u64, 1, 1, 0x9000_0000],
        [40, 1, AuditKind::Restart as u64, 2, 2, 1],
    ];
    assert_eq!(records, expected);
    // 66 refusals: the two oldest are lost, and counted.
    (100..166).for_each(|number| t.unknown(number));
    let (got, records) = t.audit(64);
    assert_eq!(got, [64, 2, 0]);
    let numbers: Vec<u64> = records.iter().map(|r| r[4]).collect();
    assert_eq!(numbers, (102..166).collect::<Vec<u64>>());
    assert_eq!(t.audit(64).0, [0, 2, 0]);
    // A partial read leaves the rest, oldest first.
    (200..205).for_each(|number| t.unknown(number));
    let (got, records) = t.audit(2);
    assert_eq!((got, records[0][4], records[1][4]), ([2, 2, 3], 200, 201));
}

/// Verifies: SK-HM-006
#[test]
fn the_escape_key_hands_the_console_to_the_service_vm_and_back() {
    let mut t = running();
    t.key(b'x');
    assert_eq!(t.wait(), [0, 0, 2], "dropped");
    t.key(ESCAPE);
    assert!(t.m.console.ends_with("@@ kernel console owner=service\n"));
    assert_eq!(t.state(0), PartitionState::Runnable);
    assert_eq!(t.wait(), [EventKind::Console as u64, 0, 2]);
    b"hello".iter().for_each(|&byte| t.key(byte));
    assert_eq!(t.wait(), [INPUT, 0, 2]);
    let record = t.words(AT, RECORD_SIZE / 8);
    assert_eq!((record[WORD_DETAIL], &record[9..]), (5, &[0; 7][..]));
    assert_eq!(t.m.ram[AT + 64..AT + 69], *b"hello");
    // 70 bytes: 64 in one event, the other 6 in the next.
    let typed: Vec<u8> = (0..70).map(|i| b'a' + (i % 26)).collect();
    typed.iter().for_each(|&byte| t.key(byte));
    for bytes in [&typed[..64], &typed[64..]] {
        assert_eq!(t.wait()[0], INPUT);
        assert_eq!(t.header()[WORD_DETAIL], bytes.len() as u64);
        assert_eq!(t.m.ram[AT + 64..][..bytes.len()], *bytes);
    }
    t.key(ESCAPE);
    assert!(t.m.console.ends_with("@@ kernel console owner=none\n"));
    t.key(b'z');
    assert_eq!(t.wait(), [0, 0, 2], "dropped again");
}

/// Verifies: SK-HM-002, SK-HM-004
#[test]
fn control_of_a_partition_live_on_another_core_waits_for_that_core() {
    let mut t = rig_with([0, 0, 1], [Supervision::default(); 3]);
    t.svc(Call::Ready, &[SYSTEM]);
    // Beta runs on core 1.
    t.sys.loaded[1] = Some(2);
    let before = t.states();
    let d = t.svc(Call::Restart, &[CTL_BETA, 1]);
    assert_eq!((results(&d), effect(&d)), ([1, 0, 0], None));
    assert_eq!(d.kick, 0b10, "core 1 is asked to let beta go");
    assert_eq!(t.states(), before);
    let d = t.call(1, Call::Null, &[]);
    assert_eq!(
        (effect(&d), d.kick, t.states()),
        (None, 0, before),
        "nothing for alpha"
    );
    // Core 1 takes the kick: beta leaves it and is restarted there, and core 1
    // reloads it in its turn.
    let d = enter(&mut t.sys, 1, Entry::Trap(&Trap::Kicked), &mut t.m);
    let reload = Effect::Restart {
        vcpu: 2,
        generation: 2,
    };
    assert_eq!((d.store, effect(&d)), (Some(2), Some(reload)));
    assert_eq!(t.states()[2].1, 2);
    t.says("@@ partition beta restart gen=2");
    assert_eq!(d.run, Run::Vcpu(2), "reloaded, it runs");
    let d = t.svc(Call::Stop, &[CTL_BETA, 2]);
    assert_eq!(
        (results(&d), t.state(2)),
        ([1, 0, 0], PartitionState::Runnable)
    );
    let d = enter(&mut t.sys, 1, Entry::Trap(&Trap::Preempted), &mut t.m);
    assert_eq!((d.store, effect(&d)), (Some(2), None));
    assert_eq!(t.state(2), PartitionState::Stopped);
    t.says("@@ partition beta stop gen=2 by=service");
    assert!(matches!(d.run, Run::Idle { .. }), "core 1 has nothing left");
    // A partition on the service VM's own core is controlled at once.
    let d = t.svc(Call::Restart, &[CTL_ALPHA, 0]);
    assert_eq!(
        effect(&d),
        Some(Effect::Restart {
            vcpu: 1,
            generation: 2
        })
    );
}

/// Verifies: SK-MED-002
#[test]
fn bad_supervision_arguments_change_nothing() {
    use Error::{BadAddress, BadState, InvalidArgument, NoSuchSlot, PeerRestarted};
    use Error::{TooLong, WrongType};
    let mut t = running();
    t.fault(1, trap(0x9000_0000, 4));
    let (ram, before) = (t.m.ram.clone(), t.states());
    let cases = [
        (0, Call::WaitEvent, [SYSTEM, END - 64, 0], BadAddress),
        (0, Call::WaitEvent, [SYSTEM, 0x1000, 0], BadAddress),
        (0, Call::WaitEvent, [SYSTEM, u64::MAX - 8, 0], BadAddress),
        (0, Call::WaitEvent, [CTL_ALPHA, BUFFER, 0], WrongType),
        (0, Call::Resume, [CTL_ALPHA, 0, 2], InvalidArgument),
        (0, Call::Resume, [CTL_ALPHA, 7, 0], PeerRestarted),
        (0, Call::Resume, [SYSTEM, 0, 0], WrongType),
        (0, Call::Restart, [CTL_ALPHA, 2, 0], PeerRestarted),
        (0, Call::Stop, [CTL_ALPHA, 9, 0], PeerRestarted),
        (0, Call::Stop, [16, 0, 0], NoSuchSlot),
        (0, Call::AuditRead, [SYSTEM, BUFFER, 65], TooLong),
        (0, Call::AuditRead, [SYSTEM, BUFFER, u64::MAX], TooLong),
        (0, Call::AuditRead, [SYSTEM, END - 32, 2], BadAddress),
        (0, Call::Inspect, [SYSTEM, 0, 0], WrongType),
        (0, Call::Inspect, [CTL_ALPHA, END - 8, 0], BadAddress),
        (0, Call::Heartbeat, [SYSTEM, 0, 0], WrongType),
        (0, Call::Heartbeat, [SERVICE_WATCHDOG, 0, 0], BadState),
        (2, Call::Restart, [CTL_ALPHA, 0, 0], NoSuchSlot),
        (2, Call::WaitEvent, [SYSTEM, BUFFER, 0], WrongType),
    ];
    for (caller, number, args, error) in cases {
        let d = t.call(caller, number, &args);
        let got = (refused(&d), d.run);
        // The service VM runs next: it made the call, or it has an event to take
        // (the trap above), which comes before a guest's turn goes on.
        assert!(t.sys.service_urgent(0, None));
        assert_eq!(got, (error, Run::Vcpu(0)), "{number:?}");
        assert_eq!((t.states(), &t.m.ram), (before.clone(), &ram));
    }
    // The event is still there; every refusal was audited after the trap.
    assert_eq!(t.wait(), [TRAP, 1, 2]);
    let (got, records) = t.audit(64);
    assert_eq!(got[0], cases.len() as u64 + 1);
    let refusal = AuditKind::CapabilityError as u64;
    assert!(records[1..].iter().all(|r| r[2] == refusal));
}

/// Verifies: SK-HM-002, SK-HM-005
#[test]
fn a_panic_suspends_a_guest_and_reloads_the_service_vm() {
    let mut t = running();
    let d = t.call(1, Call::Panic, &[SELF, 0x77]);
    assert_eq!((results(&d), d.run), ([0; 3], Run::Vcpu(0)));
    assert_eq!(t.state(1), PartitionState::Suspended);
    assert_eq!(t.wait(), [EventKind::Fault as u64, 1, 2]);
    assert_eq!(t.header()[WORD_REASON], Reason::Panic as u64);
    let d = t.svc(Call::Panic, &[SELF, 1]);
    assert_eq!(
        effect(&d),
        Some(Effect::Restart {
            vcpu: 0,
            generation: 2
        })
    );
    // Reloaded in the same entry, as above.
    assert_eq!(t.states()[0], (PartitionState::Runnable, 2));
}

/// The ABI (`septum_abi::event::WORD_DETAIL`) says the detail word of a panic's
/// event is the panic code.
/// Verifies: SK-HM-002
#[test]
fn a_panic_event_carries_the_code_in_its_detail_word() {
    let mut t = running();
    t.call(1, Call::Panic, &[SELF, 0x77]);
    t.wait();
    assert_eq!(t.header()[WORD_DETAIL], 0x77, "{:x?}", t.header());
}

/// A service VM that resumes a suspended guest without taking its event leaves the
/// event queued; enough of those fill the queue, and the next suspension of any
/// guest is then dropped, against "events that suspend a guest are never dropped".
/// Verifies: SK-HM-002
#[test]
fn a_suspension_is_never_dropped_even_after_resumes_without_waiting() {
    let mut t = running();
    for _ in 0..2 * (MAX_PARTITIONS + 16) {
        t.fault(1, trap(0x9000_0000, 4));
        assert_eq!(results(&t.svc(Call::Resume, &[CTL_ALPHA, 0, 0])), [0; 3]);
    }
    t.fault(2, trap(0x9100_0000, 4));
    assert_eq!(t.state(2), PartitionState::Suspended);
    let mut told = false;
    for _ in 0..64 {
        let got = t.wait();
        if got[0] == 0 {
            break;
        }
        told |= got[..2] == [TRAP, 2];
    }
    assert!(told, "the service VM was never told that beta is suspended");
}

#[derive(Clone, Debug)]
enum Op {
    Call(usize, u64, [u64; 3]),
    Fault(usize, Reason, u8),
    Advance(u64),
    Watchdogs,
    Ready,
    Key(u8),
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly the control slots and generations that may be current.
    let slot = prop_oneof![2 => CTL_ALPHA..=CTL_BETA, 1 => 0u64..7];
    let a2 = prop_oneof![
        4 => 0u64..2,
        1 => 2u64..6,
        2 => Just(BUFFER),
        1 => Just(END - 64),
        1 => Just(0x1000)
    ];
    let a3 = prop_oneof![0u64..4, Just(64u64), Just(65u64)];
    let caller = prop_oneof![3 => Just(0usize), 1 => 1usize..3];
    // Any supervision call; more often wait_event, resume, restart and stop.
    let number = prop_oneof![2 => 6u64..=15, 2 => 8u64..=10, 1 => Just(6u64)];
    let culprit = prop_oneof![1 => Just(0usize), 6 => 1usize..3];
    let reason = proptest::sample::select(Reason::ALL.to_vec());
    let us = [0, 1_000, 6_000, 300_000, 2_000_000, 11_000_000];
    prop_oneof![
        8 => (caller, number, slot, a2, a3)
            .prop_map(|(c, n, s, a2, a3)| Op::Call(c, n, [s, a2, a3])),
        4 => (culprit, reason, 0u8..5).prop_map(|(g, r, l)| Op::Fault(g, r, l)),
        2 => proptest::sample::select(us.to_vec()).prop_map(Op::Advance),
        1 => Just(Op::Watchdogs),
        1 => Just(Op::Ready),
        1 => prop_oneof![Just(ESCAPE), Just(b'a')].prop_map(Op::Key),
    ]
}

/// What the test knows of the service VM's events: for each guest, when it was
/// last suspended and whether the current service VM instance has been handed an
/// event about that suspension.
#[derive(Default)]
struct Told {
    since: [u64; 3],
    told: [bool; 3],
}

impl Told {
    /// Notes the event `got` that WaitEvent wrote at `at`.
    fn handed(&mut self, t: &Rig, at: usize, got: [u64; 3]) {
        let record = t.words(at, 8);
        assert_eq!([record[WORD_KIND], record[WORD_PARTITION]], got[..2]);
        let g = got[1] as usize;
        let suspends = EventKind::from_number(got[0]).is_some_and(EventKind::suspends);
        if suspends
            && g > 0
            && t.state(g) == PartitionState::Suspended
            && record[WORD_GENERATION] == u64::from(t.sys.partitions()[g].generation())
            && record[WORD_TIME] >= self.since[g]
        {
            self.told[g] = true;
        }
    }
}

proptest! {
    /// Whatever the service VM calls and whatever the guests do: a call refused with
    /// any error but `BudgetExhausted` changes no partition's state or generation;
    /// generations never go down and rise by at most one per step; no partition
    /// is restarted more often than its budget within any period; the service VM is
    /// never suspended; a partition is suspended exactly when a suspension is on
    /// record, and then has no heartbeat due; with the service VM ended no guest
    /// stays suspended; and every suspended guest's event has been handed to the
    /// current service VM instance or is still queued.
    /// Verifies: SK-HM-002, SK-HM-003, SK-HM-004, SK-HM-005, SK-MED-002
    #[test]
    fn supervision_keeps_its_invariants(
        ready in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let mut beta = Supervision::default();
        beta.budget.restarts = 1;
        beta.budget.period_ms = 5_000;
        let mut t = rig_with([0; 3], [watchdog(500), watchdog(5), beta]);
        if ready {
            t.svc(Call::Ready, &[SYSTEM]);
        }
        let mut restarts: [Vec<u64>; 3] = Default::default();
        let mut model = Told::default();
        let mut powered_off = false;
        for op in ops {
            let before = t.states();
            let runnable = |t: &Rig, i| t.state(i) == PartitionState::Runnable;
            let (mut error, mut next) = (None, None);
            match op {
                Op::Call(caller, number, args) if runnable(&t, caller) => {
                    let d = t.call(caller, Call::from_number(number).unwrap(), &args);
                    next = Some(d.run);
                    let reply = d.reply.expect("a supervision call replies");
                    if reply.status != 0 {
                        error = Some(Error::from_status(reply.status).unwrap_err().unwrap());
                    } else if number == Call::WaitEvent as u64 && reply.results[0] != 0 {
                        model.handed(&t, (args[1] - GUEST_BASE) as usize, reply.results);
                    }
                }
                Op::Fault(culprit, reason, length) if runnable(&t, culprit) => {
                    let fault = Fault { length, ..Fault::new(reason, 0x9000_0000, 0x46) };
                    next = Some(t.fault(culprit, fault).run);
                }
                Op::Advance(us) => t.m.now_us += us,
                Op::Watchdogs => {
                    t.watchdogs(0, t.m.now_us);
                }
                Op::Ready if runnable(&t, 0) => next = Some(t.svc(Call::Ready, &[SYSTEM]).run),
                Op::Key(byte) => t.key(byte),
                _ => {}
            }
            let after = t.states();
            if let Some(error) = error.filter(|&e| e != Error::BudgetExhausted) {
                prop_assert_eq!(&after, &before, "{:?}", error);
            }
            if after[0].1 > before[0].1 {
                model.told = [false; 3];
            }
            for (i, partition) in t.sys.partitions().iter().enumerate() {
                let ((was, old), (now, new)) = (before[i], after[i]);
                prop_assert!(new == old || (new == old + 1 && (old > 0 || i > 0)));
                if new > old && old > 0 {
                    restarts[i].push(t.m.now_us);
                }
                let budget = partition.supervision().budget;
                if let Some(&first) = restarts[i].iter().rev().nth(budget.restarts.into()) {
                    prop_assert!(t.m.now_us - first >= u64::from(budget.period_ms) * 1000);
                }
                prop_assert_eq!(now == PartitionState::Suspended, partition.life().suspension().is_some());
                if now == PartitionState::Suspended {
                    prop_assert!(partition.life().heartbeat_due_us().is_none());
                    if was != PartitionState::Suspended {
                        (model.told[i], model.since[i]) = (false, t.m.now_us);
                    }
                }
            }
            prop_assert_ne!(after[0].0, PartitionState::Suspended);
            if matches!(after[0].0, PartitionState::Exited | PartitionState::Stopped) {
                prop_assert!(after.iter().all(|(s, _)| *s != PartitionState::Suspended));
            }
            match next {
                // Only a partition that may run, or that owes work (done in its
                // turn before it runs), is chosen.
                Some(Run::Vcpu(p)) => {
                    prop_assert!(t.state(p) == PartitionState::Runnable || t.sys.owes_work(p));
                }
                Some(Run::PowerOff { .. }) => {
                    powered_off = true;
                    break;
                }
                _ => {}
            }
        }
        // Take what is still queued, then every suspended guest must have been told.
        while !powered_off && matches!(t.state(0), PartitionState::Runnable | PartitionState::Loading) {
            let got = t.wait();
            if got[0] == 0 {
                break;
            }
            model.handed(&t, AT, got);
        }
        for i in 1..3 {
            prop_assert!(t.state(i) != PartitionState::Suspended || model.told[i], "guest {} never told", i);
        }
    }
}

/// A restarted partition owes the reload of its RAM: it is chosen for its turns
/// (which the kernel spends on the reload), and its watchdog starts only once the
/// reload is done, so a long reload cannot count as a missed heartbeat.
/// Verifies: SK-TMP-005, SK-HM-003
#[test]
fn a_restart_is_owed_work_and_the_watchdog_waits_for_it() {
    let mut t = rig_with([0; 3], [watchdog(0), watchdog(5), watchdog(0)]);
    t.svc(Call::Ready, &[SYSTEM]);
    t.m.ram[RAM as usize..][..8].copy_from_slice(&[0x5e; 8]);
    t.svc(Call::Restart, &[CTL_ALPHA, 0]);
    assert!(t.sys.owes_work(1));
    t.m.now_us = 1_000_000;
    assert_eq!(
        t.watchdogs(0, 1_000_000),
        None,
        "no heartbeat is due while it reloads"
    );
    let mut pages = 1;
    while t.sys.work(1, &mut t.m) {
        pages += 1;
    }
    assert_eq!(
        pages,
        RAM / septum_abi::layout::PAGE_SIZE,
        "one page a step"
    );
    assert!(!t.sys.owes_work(1));
    assert_eq!(
        t.m.ram[RAM as usize..][..8],
        [0; 8],
        "its RAM was rewritten"
    );
    // Reloaded at 1 s: its 5 ms heartbeat is due from then.
    assert_eq!(t.watchdogs(0, 1_005_000), None);
    t.watchdogs(0, 1_005_001);
    assert_eq!(t.state(1), PartitionState::Suspended);
}
