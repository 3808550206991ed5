//! Host tests of what runs next without and with a schedule (`system/run.rs`):
//! the call decides without one; with one, only the window's owner runs, until
//! its window ends; each core takes turns among its own partitions.

use super::run::Decision;
use super::tests::*;
use super::*;
use crate::package::{Kind, PartitionSpec};
use crate::resources::Resources;
use crate::supervision::Supervision;
use septum_abi::{Call, PartitionState};

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
            let mut resources = Resources::on_cores(RAM, RAM, &[0]);
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
                profile: crate::package::Profile::Native,
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
    placed(&specs, Some(10_000))
}

/// What core `cpu` runs at `now_us` after a trap of `trapped` that asked for
/// `next`.
fn decide_at(
    sys: &System,
    m: &mut FakeMachine,
    now_us: u64,
    cpu: usize,
    trapped: Option<usize>,
    next: Next,
) -> Decision {
    m.now_us = now_us;
    sys.decide(cpu, trapped, next, m)
}

/// Verifies: SK-TMP-001
#[test]
fn without_a_schedule_the_call_decides() {
    let (mut sys, mut m) = system(1);
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    assert_eq!(
        decide_at(&sys, &mut m, 123, 0, Some(0), Next::Switch(1)),
        Decision::Run {
            vcpu: 1,
            end: TurnEnd::Slice
        }
    );
    assert_eq!(
        decide_at(&sys, &mut m, 0, 0, Some(0), Next::PowerOff { clean: true }),
        Decision::PowerOff { clean: true }
    );
}

/// Verifies: SK-TMP-001
#[test]
fn with_a_schedule_only_the_window_owner_runs_until_its_window_ends() {
    let (mut sys, mut m) = scheduled();
    start(&mut sys, &mut m);
    // Before ready, the guests' windows are idle: they may not run.
    assert_eq!(
        decide_at(&sys, &mut m, 500, 0, Some(0), Next::Caller),
        Decision::Run {
            vcpu: 0,
            end: TurnEnd::At(2_000)
        }
    );
    assert_eq!(
        decide_at(&sys, &mut m, 2_500, 0, Some(0), Next::Caller),
        Decision::Idle { until_us: 6_000 }
    );
    m.now_us = 0;
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    // Whatever the call asked for, the owner of the window runs.
    assert_eq!(
        decide_at(&sys, &mut m, 2_500, 0, Some(0), Next::Caller),
        Decision::Run {
            vcpu: 1,
            end: TurnEnd::At(6_000)
        }
    );
    assert_eq!(
        decide_at(&sys, &mut m, 16_000, 0, Some(1), Next::Caller),
        Decision::Run {
            vcpu: 2,
            end: TurnEnd::At(20_000)
        }
    );
    // A partition that has exited leaves its window to the service VM while the
    // service VM has not yet taken the news; nobody else gets it.
    m.now_us = 2_500;
    hcall(&mut sys, &mut m, 1, call(Call::Exit, &[SELF, 0]));
    assert_eq!(
        decide_at(&sys, &mut m, 12_000, 0, Some(2), Next::Caller),
        Decision::Run {
            vcpu: 0,
            end: TurnEnd::At(16_000)
        }
    );
    let buffer = GUEST_BASE + 0x100;
    m.now_us = 0;
    hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::WaitEvent, &[SYSTEM, buffer]),
    );
    hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::WaitEvent, &[SYSTEM, buffer]),
    );
    assert_eq!(sys.partitions()[0].life().abi(), PartitionState::Blocked);
    assert_eq!(
        decide_at(&sys, &mut m, 12_000, 0, Some(2), Next::Caller),
        Decision::Idle { until_us: 16_000 }
    );
    assert_eq!(
        decide_at(
            &sys,
            &mut m,
            12_000,
            0,
            Some(2),
            Next::PowerOff { clean: false }
        ),
        Decision::PowerOff { clean: false }
    );
}

/// Verifies: SK-TMP-002
#[test]
fn each_core_round_robins_its_own_partitions_and_waits_for_others() {
    use crate::resources::Resources;
    let image = [0u8; 16];
    let specs: Vec<PartitionSpec> = [
        ("service", Kind::Service, 0),
        ("near", Kind::Guest, 0),
        ("far", Kind::Guest, 1),
    ]
    .into_iter()
    .map(|(name, kind, cpus)| PartitionSpec {
        name,
        kind,
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: caps_for(kind),
        resources: Resources::on_cores(RAM, RAM, &[cpus]),
        supervision: Supervision::default(),
    })
    .collect();
    let (mut sys, mut m) = placed(&specs, None);
    assert_eq!(sys.partitions()[2].cpu(), 1);
    start(&mut sys, &mut m);
    // Core 1 has nothing it may run before `ready`: it waits until kicked, it
    // does not halt; `ready` starts its partition and kicks it.
    m.now_us = 500;
    assert_eq!(
        enter(&mut sys, 1, Entry::Resume, &mut m).run,
        Run::Idle { until_us: u64::MAX }
    );
    let ready = hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    assert_eq!(ready.kick, 0b10);
    assert_eq!(enter(&mut sys, 1, Entry::Resume, &mut m).run, Run::Vcpu(2));
    // Yielding on core 0 never hands core 0 to the partition of core 1.
    assert_eq!(
        hcall(&mut sys, &mut m, 0, call(Call::Yield, &[SELF])).run,
        Run::Vcpu(1)
    );
    assert_eq!(
        hcall(&mut sys, &mut m, 1, call(Call::Yield, &[SELF])).run,
        Run::Vcpu(0)
    );
    // When core 1's only partition exits, core 1 waits while core 0 has work
    // (until kicked).
    assert_eq!(
        hcall(&mut sys, &mut m, 2, call(Call::Exit, &[SELF, 0])).run,
        Run::Idle { until_us: u64::MAX }
    );
}
