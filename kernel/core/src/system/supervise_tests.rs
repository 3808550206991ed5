//! Host tests of supervision (`system/supervise.rs`): suspension of a trapped or
//! faulted guest and the service VM's event queue, `resume` / `restart` / `stop`
//! with their generation and budget checks, the restart of the service VM itself,
//! the watchdog, trap policy changes before `ready`, the audit ring, the console
//! escape, and control of a partition live on another core (the property test is
//! in `supervise_props.rs`).

use super::supervise_rig::*;
use super::*;
use crate::package::MAX_PARTITIONS;

/// Verifies: SK-HM-002, SK-HM-008
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

/// Verifies: SK-HM-004, SK-HM-002, SK-HM-011
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

/// Verifies: SK-HM-005, SK-REC-003
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

/// Verifies: SK-AUD-004, SK-HM-012
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

/// Verifies: SK-HM-002, SK-HM-004, SK-REC-006
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

/// Verifies: SK-TMP-006
#[test]
fn an_idle_core_sleeps_until_work_for_it_appears_and_is_kicked() {
    let mut t = rig_with([0, 0, 1], [Supervision::default(); 3]);
    t.svc(Call::Ready, &[SYSTEM]);
    // Beta runs on core 1 and is stopped there: core 1 has nothing left, and
    // nothing but a kick ends its wait (beta has no watchdog).
    t.sys.loaded[1] = Some(2);
    let d = t.svc(Call::Stop, &[CTL_BETA, 0]);
    assert_eq!((results(&d), d.kick), ([1, 0, 0], 0b10));
    let d = enter(&mut t.sys, 1, Entry::Trap(&Trap::Kicked), &mut t.m);
    t.says("@@ partition beta stop gen=1 by=service");
    assert_eq!(d.run, Run::Idle { until_us: u64::MAX });
    // Calls that give core 1 nothing to do do not kick it.
    let d = t.call(1, Call::Null, &[]);
    assert_eq!(d.kick, 0);
    // The service VM restarts beta from core 0: core 1 is kicked, once.
    let d = t.svc(Call::Restart, &[CTL_BETA, 0]);
    assert_eq!((results(&d), d.kick), ([0, 0, 0], 0b10));
    assert_eq!(t.svc(Call::Null, &[]).kick, 0, "kicked once only");
    // Core 1 wakes, reloads beta in its turn and runs it.
    let d = enter(&mut t.sys, 1, Entry::Resume, &mut t.m);
    assert_eq!(effect(&d), None);
    t.says("@@ partition beta restart gen=2");
    let mut run = d.run;
    while let Run::Idle { until_us } = run {
        assert_eq!(until_us, t.m.now_us, "between slices of its reload only");
        run = enter(&mut t.sys, 1, Entry::Resume, &mut t.m).run;
    }
    assert_eq!(run, Run::Vcpu(2));
    // Stopped again while it runs there: core 1 lets it go and sleeps again.
    let d = t.svc(Call::Stop, &[CTL_BETA, 0]);
    assert_eq!(d.kick, 0b10, "beta is live on core 1");
    let d = enter(&mut t.sys, 1, Entry::Trap(&Trap::Kicked), &mut t.m);
    t.says("@@ partition beta stop gen=2 by=service");
    assert_eq!(d.run, Run::Idle { until_us: u64::MAX });
}

/// A service VM that polls a device between events asks without blocking;
/// it alone learns where its RAM is in machine memory.
/// Verifies: SK-HM-002
#[test]
fn wait_event_without_waiting_returns_at_once_and_the_service_vm_learns_its_base() {
    let mut t = running();
    let d = t.svc(
        Call::WaitEvent,
        &[SYSTEM, BUFFER, septum_abi::event::NO_WAIT],
    );
    assert_eq!((results(&d), d.run), ([0, 0, 2], Run::Vcpu(0)));
    assert_eq!(t.state(0), PartitionState::Runnable);
    t.fault(1, trap(0x9000_0000, 4));
    let d = t.svc(
        Call::WaitEvent,
        &[SYSTEM, BUFFER, septum_abi::event::NO_WAIT],
    );
    assert_eq!(results(&d), [TRAP, 1, 2]);
    let d = t.svc(Call::MachineBase, &[SYSTEM]);
    assert_eq!(results(&d)[0], t.sys.partitions()[0].host_ram.start);
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
        (0, Call::WaitEvent, [SYSTEM, BUFFER, 2], InvalidArgument),
        (0, Call::MachineBase, [CTL_ALPHA, 0, 0], WrongType),
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

/// Verifies: SK-HM-002, SK-HM-005, SK-HM-010
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
/// Verifies: SK-HM-002, SK-HM-010
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

/// A suspended Linux partition may be resumed by taking an undefined-instruction
/// exception at the trapped instruction; a native one may not, nor may the flag
/// come with `SKIP` or without an instruction to take it at. `inspect` tells a
/// Linux partition apart.
/// Verifies: SK-LNX-008, SK-HM-001
#[test]
fn a_linux_partition_can_be_resumed_into_its_own_undefined_instruction_vector() {
    let mut t = linux_running();
    t.fault(1, trap(0x9000_0000, 4));
    let d = t.svc(Call::Resume, &[CTL_ALPHA, 0, UNDEFINED]);
    assert_eq!(refused(&d), Error::InvalidArgument, "alpha is native");
    assert_eq!(t.state(1), PartitionState::Suspended);
    let inspected = |t: &mut Rig, slot| {
        septum_abi::Inspected::from_results(results(&t.svc(Call::Inspect, &[slot, 0]))).unwrap()
    };
    assert!(!inspected(&mut t, CTL_ALPHA).linux);
    assert!(inspected(&mut t, CTL_BETA).linux);

    t.fault(2, trap(0x9000_0000, 0));
    let d = t.svc(Call::Resume, &[CTL_BETA, 0, UNDEFINED]);
    assert_eq!(
        refused(&d),
        Error::CannotSkip,
        "no instruction to take it at"
    );
    t.svc(Call::Resume, &[CTL_BETA, 0, 0]);
    t.fault(2, trap(0x9000_0000, 4));
    let d = t.svc(Call::Resume, &[CTL_BETA, 0, UNDEFINED | SKIP]);
    assert_eq!(refused(&d), Error::InvalidArgument);
    let d = t.svc(Call::Resume, &[CTL_BETA, 0, UNDEFINED]);
    assert_eq!(effect(&d), Some(Effect::Undefined { vcpu: 2 }));
    assert_eq!(t.state(2), PartitionState::Runnable);
    t.says("@@ partition beta resume gen=1 skip=0 undefined=1");
}

/// Ctrl-T moves console input from nobody to the service VM, then to each
/// Linux partition (whose UART receives what is typed), then back to nobody.
/// Verifies: SK-LNX-007
#[test]
fn console_focus_cycles_through_the_service_vm_and_linux_partitions() {
    use crate::vgic::Access;
    use septum_abi::virt::UART_BASE;
    let mut t = linux_running();
    let uart_read = |t: &mut Rig| {
        t.sys
            .emulate_access(2, UART_BASE, 4, Access::Read, &mut t.m)
            .unwrap()
            .value
    };
    t.key(b'x');
    assert_eq!(uart_read(&mut t), 0, "nobody has focus: dropped");
    t.key(ESCAPE);
    t.says("@@ kernel console owner=service");
    t.key(ESCAPE);
    t.says("@@ kernel console owner=beta");
    t.key(b'l');
    t.key(b's');
    assert_eq!(uart_read(&mut t), u64::from(b'l'));
    assert_eq!(uart_read(&mut t), u64::from(b's'));
    t.key(ESCAPE);
    t.says("@@ kernel console owner=none");
    t.key(b'y');
    assert_eq!(uart_read(&mut t), 0);
    assert!(
        t.sys
            .emulate_access(1, UART_BASE, 4, Access::Read, &mut t.m)
            .is_none(),
        "alpha is native: it has no UART"
    );
}

/// A guest whose watchdog expires while nobody supervises it (the service VM
/// has exited) is stopped at once, as an unsupervised guest's fault stops
/// it; the other guests run on.
/// Verifies: SK-HM-003, SK-HM-001, SK-HM-008
#[test]
fn a_late_guest_nobody_supervises_is_stopped() {
    let none = Supervision::default();
    let mut t = rig_with([0; 3], [none, watchdog(5), none]);
    t.svc(Call::Ready, &[SYSTEM]);
    t.svc(Call::Exit, &[SELF, 0]);
    assert_eq!(t.state(0), PartitionState::Exited);
    assert_eq!(t.watchdogs(0, 5_000), None, "not late yet");
    assert_eq!(t.state(1), PartitionState::Runnable);
    assert_eq!(t.watchdogs(0, 5_001), None);
    t.says("@@ partition alpha watchdog gen=1 period_ms=5 late_us=1");
    t.says("@@ partition alpha stop gen=1 by=policy");
    assert_eq!(t.state(1), PartitionState::Stopped);
    assert_eq!(t.state(2), PartitionState::Runnable, "beta runs on");
}
