//! A property test of supervision over random sequences of supervision calls,
//! faults, watchdog checks, console keys and clock advances.

use super::supervise_rig::*;
use super::*;
use proptest::prelude::*;

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
            let live = after[1..]
                .iter()
                .filter(|(s, _)| !matches!(s, PartitionState::Exited | PartitionState::Stopped))
                .count() as u64;
            prop_assert_eq!(t.sys.live_guests(), live);
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
