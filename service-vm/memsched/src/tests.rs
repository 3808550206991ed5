use proptest::prelude::*;

use super::*;

const POLICY: Policy = Policy {
    idle_tax_percent: 75,
    step: 256,
    dead_band: 0,
};

fn guest(min: u64, max: u64, current: u64, used: u64) -> Guest {
    Guest {
        min,
        max,
        shares: 100,
        current,
        used,
        pressure: false,
        target: current,
    }
}

/// Runs `rounds` rounds of the scheduler and returns the last targets. Each
/// round's targets are the next round's last targets; with `follow`, each guest
/// also comes to hold its target (a cooperative balloon), else its memory and
/// use stay still.
fn run(
    policy: &Policy,
    available: u64,
    guests: &mut [Guest],
    rounds: usize,
    follow: bool,
) -> Targets {
    let mut last = Targets::new();
    for _ in 0..rounds {
        last = targets(policy, available, guests).unwrap();
        for (guest, &target) in guests.iter_mut().zip(&last) {
            guest.target = target;
            if follow {
                guest.current = target;
            }
        }
    }
    last
}

/// Verifies: SK-BAL-003
#[test]
fn an_idle_guest_gives_memory_to_one_under_pressure() {
    // 64 MiB for two guests of 16..48 MiB: A idle, B needs all it can get.
    let (min, max) = (4096, 12288);
    let mut guests = [guest(min, max, 8192, 100), guest(min, max, 8192, 8192)];
    guests[1].pressure = true;
    let before = run(&POLICY, 16384, &mut guests, 1, true);
    assert!(before[1] > 8192 && before[0] < 8192, "{before:?}");
    let after = run(&POLICY, 16384, &mut guests, 40, true);
    assert_eq!(after.iter().sum::<u64>(), 16384);
    // At a 75 % tax A keeps idle pages worth a quarter of B's used ones:
    // 0.25 * 4,096 + (A - 4,096) = 0.25 * B with A + B = 16,384: A = 5,734.
    assert!(after[0].abs_diff(5734) <= QUANTUM, "{after:?}");
    let steep = Policy {
        idle_tax_percent: 99,
        ..POLICY
    };
    let after = run(&steep, 16384, &mut guests, 40, true);
    assert!(
        after[1] > 12_100,
        "at 99 % B gets nearly its maximum: {after:?}"
    );
}

/// Verifies: SK-BAL-003
#[test]
fn a_decrease_within_the_dead_band_is_held_only_while_the_targets_fit() {
    let policy = Policy {
        idle_tax_percent: 99,
        step: 4096,
        dead_band: 512,
    };
    // A is idle; B, under pressure, is entitled to its maximum, which leaves A
    // 3,072 pages: 192 below A's last target, within the dead band.
    let mut a = guest(1024, 18432, 3264, 1088);
    let mut b = guest(1024, 18432, 18048, 18048);
    b.pressure = true;
    assert_eq!(entitlement(&policy, 21504, &[a, b]).unwrap(), [3072, 18432]);
    // Holding A there would promise B memory that nobody gives back.
    assert_eq!(targets(&policy, 21504, &[a, b]).unwrap(), [3072, 18432]);
    // When B's rise is held back by the rate limit, the targets fit with A's
    // small decrease held, and it is.
    b.current = 14000;
    b.target = 14000;
    b.used = 14000;
    a.target = 3264;
    let next = targets(&policy, 21504, &[a, b]).unwrap();
    assert_eq!(next[0], 3264, "{next:?}");
    assert!(next.iter().sum::<u64>() <= 21504);
}

/// Verifies: SK-BAL-003
#[test]
fn pressure_lasts_until_the_guest_reports_again_without_new_failures() {
    let mut pressure = Pressure::default();
    assert!(!pressure.update(1, 0), "a first report without failures");
    assert!(pressure.update(2, 3), "new failures");
    assert!(
        pressure.update(2, 3),
        "a round on another guest's report keeps it"
    );
    assert!(pressure.update(3, 5), "more failures");
    assert!(
        !pressure.update(4, 5),
        "a report without new failures ends it"
    );
    assert!(!pressure.update(4, 5));
}

/// Verifies: SK-BAL-003
#[test]
fn busy_guests_split_memory_by_shares() {
    let mut a = guest(0, 100_000, 10_000, 10_000);
    let mut b = a;
    a.shares = 200;
    b.shares = 100;
    let targets = entitlement(&POLICY, 30_000, &[a, b]).unwrap();
    // Both demand 10,000 and get it; then the ratios of shares to tax-weighted
    // pages (a used page costs 0.25 of an idle one at a 75 % tax) even out: A's
    // weighted pages are twice B's, 2,500 + (A - 10,000) = 2 (2,500 + (B -
    // 10,000)), so A = 17,500 and B = 12,500 (to a quantum).
    assert_eq!(targets.iter().sum::<u64>(), 30_000);
    assert!(targets[0].abs_diff(17_500) <= QUANTUM, "{targets:?}");
}

/// Verifies: SK-BAL-003
#[test]
fn a_guest_claiming_more_use_than_it_holds_gains_nothing() {
    let honest = [guest(0, 8192, 1024, 1024), guest(0, 8192, 4096, 100)];
    let mut lying = honest;
    lying[0].used = 1_000_000;
    assert_eq!(
        entitlement(&POLICY, 6000, &honest),
        entitlement(&POLICY, 6000, &lying)
    );
}

/// Verifies: SK-BAL-003
#[test]
fn impossible_inputs_are_refused() {
    let two = [guest(4096, 8192, 4096, 0), guest(4096, 8192, 4096, 0)];
    assert_eq!(
        targets(&POLICY, 8191, &two),
        Err(PolicyError::Overcommitted)
    );
    let taxed_out = Policy {
        idle_tax_percent: 100,
        ..POLICY
    };
    assert_eq!(targets(&taxed_out, 8192, &two), Err(PolicyError::Invalid));
    let inverted = [guest(10, 5, 5, 0)];
    assert_eq!(targets(&POLICY, 100, &inverted), Err(PolicyError::Invalid));
}

fn guests() -> impl Strategy<Value = Vec<Guest>> {
    let one = (
        0u64..4096,
        0u64..8192,
        1u32..1000,
        0u64..16384,
        0u64..20000,
        any::<bool>(),
        0u64..16384,
    )
        .prop_map(
            |(min, extra, shares, current, used, pressure, target)| Guest {
                min,
                max: min + extra,
                shares,
                current,
                used,
                pressure,
                target,
            },
        );
    // The service VM balances the guests it holds control capabilities for: at
    // most a capability table's worth, far fewer than MAX_PARTITIONS.
    proptest::collection::vec(one, 1..=septum_abi::CAP_SLOTS)
}

fn policy() -> impl Strategy<Value = Policy> {
    (0u8..100, 1u64..2048, prop_oneof![Just(0u64), 0u64..1024]).prop_map(
        |(idle_tax_percent, step, dead_band)| Policy {
            idle_tax_percent,
            step,
            dead_band,
        },
    )
}

proptest! {
    /// Verifies: SK-BAL-003
    #[test]
    fn targets_fit_the_memory_and_the_limits(
        guests in guests(),
        policy in policy(),
        spare in 0u64..40000,
    ) {
        let available = guests.iter().map(|g| g.min).sum::<u64>() + spare;
        for result in [
            targets(&policy, available, &guests),
            entitlement(&policy, available, &guests),
        ] {
            let result = result.unwrap();
            prop_assert!(result.iter().sum::<u64>() <= available);
            for (guest, target) in guests.iter().zip(&result) {
                prop_assert!(guest.min <= *target && *target <= guest.max);
            }
        }
    }

    /// Verifies: SK-BAL-003
    #[test]
    fn targets_move_at_most_a_step_unless_the_memory_shrank(
        guests in guests(),
        policy in policy(),
        spare in 0u64..40000,
    ) {
        let last = |g: &Guest| g.target.clamp(g.min, g.max);
        // The memory did not shrink: there is at least what the last targets gave.
        let available = (guests.iter().map(|g| g.min).sum::<u64>() + spare)
            .max(guests.iter().map(last).sum::<u64>());
        let next = targets(&policy, available, &guests).unwrap();
        for (guest, target) in guests.iter().zip(&next) {
            prop_assert!(last(guest).abs_diff(*target) <= policy.step);
        }
    }

    /// Verifies: SK-BAL-003
    #[test]
    fn targets_reach_the_entitlement_within_bounded_rounds(
        mut guests in guests(),
        policy in policy(),
        spare in 0u64..40000,
    ) {
        let available = guests.iter().map(|g| g.min).sum::<u64>() + spare;
        let ideal = entitlement(&policy, available, &guests).unwrap();
        let gap = guests
            .iter()
            .zip(&ideal)
            .map(|(g, &i)| g.target.clamp(g.min, g.max).abs_diff(i))
            .max()
            .unwrap_or(0);
        let rounds = 2 * gap.div_ceil(policy.step) as usize + 1;
        let reached = run(&policy, available, &mut guests, rounds, false);
        for (target, ideal) in reached.iter().zip(&ideal) {
            prop_assert!(target.abs_diff(*ideal) <= policy.dead_band, "{:?} for {:?}", reached, ideal);
        }
    }

    /// Verifies: SK-BAL-003
    #[test]
    fn a_rising_demand_never_loses_memory_to_the_others(
        guests in guests(),
        policy in policy(),
        spare in 0u64..40000,
        who in 0usize..MAX_PARTITIONS,
        rise in 1u64..8192,
    ) {
        let available = guests.iter().map(|g| g.min).sum::<u64>() + spare;
        let who = who % guests.len();
        let before = entitlement(&policy, available, &guests).unwrap();
        let mut busier = guests.clone();
        busier[who].current += rise;
        busier[who].used = busier[who].used.min(guests[who].current) + rise;
        let after = entitlement(&policy, available, &busier).unwrap();
        prop_assert!(after[who] + QUANTUM >= before[who], "{:?} -> {:?}", before, after);
    }
}
