//! The lifecycle's invariants under random transition sequences, for partitions
//! of one to four vCPUs: the watchdog is armed exactly while a watched partition
//! is runnable, a suspended partition has exactly one suspension and none of its
//! vCPUs may run (they all agree on it), vCPU 0 is never off while the partition
//! runs, the generation only grows, the budget holds, and a refused transition
//! changes nothing.

use proptest::prelude::*;
use septum_abi::event::Kind;

use super::*;
use crate::supervision::RestartBudget;

fn suspension(vcpu: usize, detail: u64) -> Suspension {
    let mut record = Record::new(Kind::Fault, 1, 1, 0);
    record.detail = detail;
    Suspension {
        record,
        vcpu,
        length: 4,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Start,
    StartVcpu(usize),
    StopVcpu(usize),
    Block(usize, WaitOn),
    Wake(WaitOn),
    Suspend(usize, u64),
    Resume,
    Restart,
    Reload,
    Exit(u64),
    Stop,
    Heartbeat,
    Missed,
    Defer(bool),
    TakeDeferred,
    Wait(u64),
}

fn wait_on() -> impl Strategy<Value = WaitOn> {
    prop_oneof![
        Just(WaitOn::Event),
        (0usize..3).prop_map(WaitOn::Queue),
        Just(WaitOn::Balloon),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        2 => (0usize..5).prop_map(Op::StartVcpu),
        1 => (0usize..5).prop_map(Op::StopVcpu),
        1 => ((0usize..5), wait_on()).prop_map(|(vcpu, on)| Op::Block(vcpu, on)),
        1 => wait_on().prop_map(Op::Wake),
        1 => ((0usize..5), any::<u64>()).prop_map(|(vcpu, detail)| Op::Suspend(vcpu, detail)),
        1 => Just(Op::Resume),
        3 => Just(Op::Restart),
        3 => Just(Op::Reload),
        1 => any::<u64>().prop_map(Op::Exit),
        1 => Just(Op::Stop),
        1 => Just(Op::Heartbeat),
        1 => Just(Op::Missed),
        1 => any::<bool>().prop_map(Op::Defer),
        1 => Just(Op::TakeDeferred),
        1 => (0u64..20_000).prop_map(Op::Wait),
    ]
}

const RAM: u64 = 4 * 4096;

proptest! {
    /// Verifies: SK-HM-002, SK-HM-003, SK-HM-004
    #[test]
    fn transitions_keep_the_lifecycle_invariants(
        watchdog_ms in 0u32..3,
        restarts in 0u16..4,
        vcpus in 1usize..=4,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let supervision = Supervision {
            watchdog_ms,
            budget: RestartBudget { restarts, period_ms: 10 },
            ..Supervision::default()
        };
        let mut life = Lifecycle::new(supervision, vcpus);
        let mut now = 0u64;
        let mut restart_times: Vec<u64> = Vec::new();
        for op in ops {
            let before = life.clone();
            let changed = match op {
                Op::Start => life.start(now).is_ok(),
                Op::StartVcpu(vcpu) => life.start_vcpu(vcpu, now).is_ok(),
                Op::StopVcpu(vcpu) => {
                    let stopped = life.stop_vcpu(vcpu, now).is_ok();
                    prop_assert!(!stopped || (vcpu != 0 && life.vcpu_state(vcpu) == VcpuState::Off));
                    stopped
                }
                Op::Block(vcpu, on) => life.block(vcpu, on).is_ok(),
                Op::Wake(on) => life.wake(on, now),
                Op::Suspend(vcpu, detail) => life.suspend(suspension(vcpu, detail)).is_ok(),
                Op::Resume => life.resume(now).is_ok(),
                Op::Restart => match life.restart(now) {
                    Ok(Ok(generation)) => {
                        prop_assert_eq!(generation, before.generation() + 1);
                        restart_times.push(now);
                        true
                    }
                    Ok(Err(BudgetSpent)) | Err(Refused) => false,
                },
                Op::Reload => life.reloaded_page(RAM, 4096, now).is_ok(),
                Op::Exit(code) => life.exit(code).is_ok(),
                Op::Stop => life.stop().is_ok(),
                Op::Heartbeat => {
                    life.heartbeat(now);
                    true
                }
                Op::Missed => {
                    let late = life.late_by(now);
                    prop_assert_eq!(late.is_some(), life.heartbeat_due_us().is_some_and(|due| now > due));
                    false
                }
                Op::Defer(restart) => {
                    life.defer(if restart { Deferred::Restart } else { Deferred::Stop });
                    true
                }
                Op::TakeDeferred => life.take_deferred().is_some(),
                Op::Wait(us) => {
                    now += us;
                    false
                }
            };
            if !changed {
                prop_assert_eq!(format!("{life:?}"), format!("{before:?}"), "{:?} refused, yet changed", op);
            }
            // The watchdog is armed exactly while a watched partition is runnable.
            let armed = life.heartbeat_due_us().is_some();
            prop_assert_eq!(armed, life.runnable() && watchdog_ms > 0);
            prop_assert_eq!(life.suspension().is_some(), matches!(life.state(), State::Suspended(_)));
            // All vCPUs agree: none may run unless the partition runs.
            let any_may_run = (0..MAX_VCPUS).any(|vcpu| life.vcpu_runnable(vcpu));
            prop_assert_eq!(any_may_run, life.runnable());
            prop_assert!(life.state() == &State::Running || !any_may_run);
            if let Some(suspended) = life.suspension() {
                prop_assert!(suspended.vcpu < vcpus);
            }
            if matches!(life.state(), State::Running | State::Loading(_)) {
                prop_assert_ne!(life.vcpu_state(0), VcpuState::Off);
            }
            prop_assert!((vcpus..MAX_VCPUS).all(|vcpu| life.vcpu_state(vcpu) == VcpuState::Off));
            prop_assert!(life.generation() >= before.generation());
            let period_us = 10_000;
            for (i, &at) in restart_times.iter().enumerate() {
                let within = restart_times[i..].iter().filter(|&&t| t - at < period_us).count();
                prop_assert!(within <= usize::from(restarts));
            }
        }
    }
}

/// Verifies: SK-HM-004
#[test]
fn a_restart_past_the_budget_is_refused_and_changes_nothing() {
    let supervision = Supervision {
        budget: RestartBudget {
            restarts: 1,
            period_ms: 10,
        },
        ..Supervision::default()
    };
    let mut life = Lifecycle::new(supervision, 1);
    life.start(0).unwrap();
    assert_eq!(life.restart(0), Ok(Ok(2)));
    assert_eq!(life.state(), &State::Loading(0));
    let before = format!("{life:?}");
    assert_eq!(life.restart(9_999), Ok(Err(BudgetSpent)));
    assert_eq!(format!("{life:?}"), before);
    assert_eq!(life.restart(10_000), Ok(Ok(3)), "a period later");
}

/// Verifies: SK-HM-003
#[test]
fn a_reload_ends_runnable_with_the_watchdog_armed_from_then() {
    let supervision = Supervision {
        watchdog_ms: 5,
        ..Supervision::default()
    };
    let mut life = Lifecycle::new(supervision, 1);
    life.start(0).unwrap();
    life.restart(100).unwrap().unwrap();
    assert_eq!(life.heartbeat_due_us(), None);
    assert_eq!(life.reloaded_page(8192, 4096, 200), Ok(true));
    assert_eq!(life.reloaded_page(8192, 4096, 300), Ok(false));
    assert!(life.runnable());
    assert_eq!(life.heartbeat_due_us(), Some(5_300));
    assert_eq!(life.reloaded_page(8192, 4096, 400), Err(Refused));
}
