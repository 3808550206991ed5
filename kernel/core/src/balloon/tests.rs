//! The balloon's invariants: each bad batch gets its own code and changes
//! nothing, restarts restore the initial memory, and under random sequences of
//! inflates, deflates, targets, restarts and ends every frame stays in one place,
//! every partition stays within its limits, the pool stays scrubbed, and a fake
//! translation table always agrees with the map.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::fake_pages::FakePages;

const DEVICE: u64 = 0x0900_0000;

fn page(p: u64) -> u64 {
    RAM_BASE + p * PAGE_SIZE
}

/// Two ballooning partitions around one without a balloon (1): 0 is native
/// (4..24 pages, starting with 16, its first 4 pinned), 2 is as Linux is
/// (4..32 pages, starting with 8, none pinned: any page may go, but it never
/// holds fewer than 4).
fn specs() -> [Option<Spec>; 3] {
    let mut devices = [Range::default(); MAX_MMIO];
    devices[0] = Range::from_start_size(DEVICE, PAGE_SIZE).unwrap();
    let spec = |pinned, min, initial, max, natural| Spec {
        min,
        pinned,
        max,
        initial,
        shares: 100,
        natural,
        devices,
    };
    [
        Some(spec(4, 4, 16, 24, 0x1_0000_0000)),
        None,
        Some(spec(0, 4, 8, 32, 0x2_0000_0000)),
    ]
}

/// The balloon of [`specs`], with its balloon pages mapped in the fake tables as
/// the loader maps them.
fn setup() -> (Balloon, FakePages) {
    let specs = specs();
    let words = vec![0; Balloon::words_needed(&specs)].leak();
    let balloon = Balloon::new(&specs, words).unwrap();
    let mut pages = FakePages::default();
    for (index, spec) in specs.iter().enumerate() {
        let Some(spec) = spec else { continue };
        for p in spec.pinned..spec.initial {
            pages.map_page(index, page(p), spec.natural + p * PAGE_SIZE);
        }
    }
    (balloon, pages)
}

/// What must not change when a call is refused.
fn snapshot(balloon: &Balloon) -> (Vec<u32>, Vec<u32>, Vec<Option<Memory>>) {
    (
        balloon.map.to_vec(),
        balloon.pool[..balloon.free].to_vec(),
        (0..3).map(|i| balloon.memory(i)).collect(),
    )
}

/// Scrubs every frame the partitions owe into the pool, as the kernel does in
/// their turns.
fn pay_all(balloon: &mut Balloon, pages: &mut FakePages) {
    for index in 0..3 {
        while balloon.scrub_owed(index, pages) {}
        assert_eq!(balloon.owed(index), 0);
    }
}

/// Checks every invariant of the module docs against the fake tables.
fn check(balloon: &Balloon, pages: &FakePages, total: u64) {
    assert_eq!(balloon.total(), total, "frames are conserved");
    let mut seen = BTreeSet::new();
    for &frame in &balloon.pool[..balloon.free] {
        assert!(seen.insert(frame), "a frame is in two places");
        let frame = frame_address(frame);
        assert!(!pages.dirty.contains(&frame), "a pool frame holds data");
        assert!(
            !pages.mapped.values().any(|&f| f == frame),
            "a pool frame is mapped"
        );
    }
    for (index, guest) in balloon.guests.iter().enumerate() {
        let Some(guest) = guest else { continue };
        let m = guest.memory;
        let (mut backed, mut leaving) = (0, 0);
        for p in guest.pinned..m.max {
            let entry = balloon.map[guest.slot(page(p)).unwrap()];
            assert_eq!(entry & MARK, 0, "a mark was left behind");
            let mapped = pages.mapped.get(&(index, page(p))).copied();
            if entry == HOLE {
                assert_eq!(mapped, None, "a hole is mapped");
            } else if entry & LEAVING != 0 {
                assert_eq!(mapped, None, "a page leaving is mapped");
                assert!(seen.insert(entry & !LEAVING), "a frame is in two places");
                leaving += 1;
            } else {
                backed += 1;
                assert!(seen.insert(entry), "a frame is in two places");
                assert_eq!(mapped, Some(frame_address(entry)), "tables disagree");
            }
        }
        assert_eq!(m.held, guest.pinned + backed, "held is counted right");
        assert_eq!(
            balloon.owed(index),
            leaving,
            "what it owes is counted right"
        );
        // Only an ended partition holds less than its minimum: its pinned prefix.
        let floor = m.held >= m.min || (guest.ended && m.held == guest.pinned);
        assert!(floor && m.held <= m.max && (m.min..=m.max).contains(&m.target));
    }
}

/// Verifies: SK-BAL-004, SK-BAL-008
#[test]
fn each_bad_batch_gets_its_own_code_and_changes_nothing() {
    let (mut balloon, mut pages) = setup();
    let window = 0x8000_0000;
    let in_flight = |address: u64| address == window;
    let cases: [(Direction, Vec<u64>, Error); 12] = [
        (Direction::Inflate, vec![], Error::InvalidArgument),
        (
            Direction::Inflate,
            vec![page(8) + 8],
            Error::InvalidArgument,
        ),
        (Direction::Inflate, vec![page(20)], Error::NotOwned),
        (Direction::Inflate, vec![0x1000], Error::NotOwned),
        (
            Direction::Inflate,
            vec![page(8), page(9), page(8)],
            Error::Duplicate,
        ),
        (Direction::Inflate, vec![DEVICE], Error::DevicePage),
        (Direction::Inflate, vec![window], Error::InFlight),
        (Direction::Inflate, vec![page(3)], Error::BelowMinimum),
        (
            Direction::Inflate,
            vec![page(8); LIST_MAX + 1],
            Error::TooLong,
        ),
        (Direction::Deflate, vec![page(24)], Error::AboveMaximum),
        (Direction::Deflate, vec![page(8)], Error::AlreadyBacked),
        (Direction::Deflate, vec![page(16)], Error::OverTarget),
    ];
    let before = snapshot(&balloon);
    for (direction, list, error) in cases {
        let result = balloon.batch(0, direction, &list, in_flight, &mut pages);
        assert_eq!(result, Err(error), "{direction:?} {list:x?}");
        assert_eq!(snapshot(&balloon), before, "{error:?} changed nothing");
    }
    // Within the target, but the pool is empty until someone inflates.
    balloon.set_target(0, 20).unwrap();
    let before = snapshot(&balloon);
    let result = balloon.batch(0, Direction::Deflate, &[page(16)], in_flight, &mut pages);
    assert_eq!(result, Err(Error::PoolEmpty));
    assert_eq!(snapshot(&balloon), before);
    assert_eq!(pages.flushes, 0, "nothing reached the tables");
    // Partition 2 pins nothing, but never holds fewer than its minimum.
    let five: Vec<u64> = (0..5).map(page).collect();
    let result = balloon.batch(2, Direction::Inflate, &five, in_flight, &mut pages);
    assert_eq!(result, Err(Error::BelowMinimum));
    assert_eq!(snapshot(&balloon), before);
    let memory = balloon
        .batch(2, Direction::Inflate, &five[..4], in_flight, &mut pages)
        .unwrap();
    assert_eq!(memory.held, 4, "any page of an unpinned partition may go");
}

/// Verifies: SK-BAL-001, SK-BAL-002, SK-RIP-003
#[test]
fn memory_moves_through_the_scrubbed_pool_within_the_limits() {
    let (mut balloon, mut pages) = setup();
    let total = balloon.total();
    let no_flight = |_| false;
    // Partition 0 wrote to the pages it gives back.
    let given: Vec<u64> = (8..16).map(page).collect();
    for &address in &given {
        pages.dirty.insert(pages.mapped[&(0, address)]);
    }
    balloon.set_target(0, 8).unwrap();
    let memory = balloon
        .batch(0, Direction::Inflate, &given, no_flight, &mut pages)
        .unwrap();
    assert_eq!((memory.held, balloon.free(), balloon.owed(0)), (8, 0, 8));
    check(&balloon, &pages, total);
    assert_eq!(
        balloon.batch(0, Direction::Inflate, &given[..1], no_flight, &mut pages),
        Err(Error::InFlight),
        "a page leaving is the kernel's until scrubbed"
    );
    // The kernel scrubs them in partition 0's turns, a page at a time.
    for left in (0..8).rev() {
        assert_eq!(balloon.scrub_owed(0, &mut pages), left > 0);
        assert_eq!(balloon.free(), 8 - left);
    }
    assert!(!balloon.scrub_owed(0, &mut pages), "nothing more owed");
    check(&balloon, &pages, total);
    // Partition 2 takes them, up to its target and no further.
    balloon.set_target(2, 16).unwrap();
    let taken: Vec<u64> = (8..16).map(page).collect();
    let memory = balloon
        .batch(2, Direction::Deflate, &taken, no_flight, &mut pages)
        .unwrap();
    assert_eq!((memory.held, balloon.free()), (16, 0));
    check(&balloon, &pages, total);
    assert_eq!(
        balloon.set_target(2, 33),
        Err(Error::AboveMaximum),
        "no target above the maximum"
    );
    assert_eq!(balloon.set_target(2, 3), Err(Error::BelowMinimum));
    assert!(pages.dirty.is_empty(), "the new owner reads zeros");
}

/// Verifies: SK-BAL-005
#[test]
fn a_restart_restores_the_initial_memory_or_is_refused_whole() {
    let (mut balloon, mut pages) = setup();
    let total = balloon.total();
    let no_flight = |_| false;
    let given: Vec<u64> = (4..16).map(page).collect();
    balloon
        .batch(0, Direction::Inflate, &given, no_flight, &mut pages)
        .unwrap();
    pay_all(&mut balloon, &mut pages);
    balloon.set_target(2, 20).unwrap();
    let taken: Vec<u64> = (8..20).map(page).collect();
    balloon
        .batch(2, Direction::Deflate, &taken, no_flight, &mut pages)
        .unwrap();
    // Partition 2 holds what 0 needs back: 0 cannot restart yet.
    assert_eq!(balloon.can_restart(0), Err(Error::PoolEmpty));
    // Partition 2 restarts: back to 8 pages, and its extra 12 frames go free.
    balloon.can_restart(2).unwrap();
    balloon.restart(2, &mut pages);
    assert_eq!(balloon.memory(2).unwrap().held, 8);
    check(&balloon, &pages, total);
    assert_eq!(
        balloon.owed(2),
        12,
        "its extra frames leave as work it owes"
    );
    pay_all(&mut balloon, &mut pages);
    balloon.can_restart(0).unwrap();
    balloon.restart(0, &mut pages);
    let memory = balloon.memory(0).unwrap();
    assert_eq!((memory.held, memory.target), (16, 16));
    check(&balloon, &pages, total);
    // An ended partition gives all its balloon memory back.
    balloon.end(0, &mut pages);
    assert_eq!(balloon.memory(0).unwrap().held, 4);
    check(&balloon, &pages, total);
    pay_all(&mut balloon, &mut pages);
    assert_eq!(balloon.free(), 12);
    check(&balloon, &pages, total);
}

/// One random step.
#[derive(Clone, Debug)]
enum Op {
    Batch(usize, bool, Vec<u64>),
    Target(usize, u64),
    Restart(usize),
    End(usize),
    Dirty(usize, u64),
    /// The kernel scrubs up to this many frames partition `.0` owes.
    Pay(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let index = prop_oneof![Just(0usize), Just(2usize)];
    prop_oneof![
        4 => (index.clone(), any::<bool>(), prop::collection::vec(0u64..36, 1..8))
            .prop_map(|(i, inflate, pages)| Op::Batch(i, inflate, pages)),
        2 => (index.clone(), 0u64..36).prop_map(|(i, t)| Op::Target(i, t)),
        1 => index.clone().prop_map(Op::Restart),
        1 => index.clone().prop_map(Op::End),
        2 => (index.clone(), 0u64..36).prop_map(|(i, p)| Op::Dirty(i, p)),
        2 => (index, 0usize..8).prop_map(|(i, n)| Op::Pay(i, n)),
    ]
}

proptest! {
    /// Verifies: SK-BAL-001, SK-BAL-002, SK-BAL-004
    #[test]
    fn random_balloon_traffic_keeps_every_invariant(ops in prop::collection::vec(op(), 1..60)) {
        let (mut balloon, mut pages) = setup();
        let total = balloon.total();
        let in_flight = |address: u64| address == page(30);
        for op in ops {
            let before = snapshot(&balloon);
            match op {
                Op::Batch(index, inflate, list) => {
                    let direction = if inflate { Direction::Inflate } else { Direction::Deflate };
                    let list: Vec<u64> = list.into_iter().map(page).collect();
                    if balloon.batch(index, direction, &list, in_flight, &mut pages).is_err() {
                        prop_assert_eq!(snapshot(&balloon), before);
                    }
                }
                Op::Target(index, target) => {
                    if balloon.set_target(index, target).is_err() {
                        prop_assert_eq!(snapshot(&balloon), before);
                    }
                }
                Op::Restart(index) => match balloon.can_restart(index) {
                    Ok(()) => {
                        balloon.restart(index, &mut pages);
                        let m = balloon.memory(index).unwrap();
                        prop_assert_eq!((m.held, m.target), (m.initial, m.initial));
                    }
                    Err(_) => prop_assert_eq!(snapshot(&balloon), before),
                },
                Op::End(index) => balloon.end(index, &mut pages),
                Op::Dirty(index, p) => {
                    if let Some(&frame) = pages.mapped.get(&(index, page(p))) {
                        pages.dirty.insert(frame);
                    }
                }
                Op::Pay(index, count) => {
                    for _ in 0..count {
                        balloon.scrub_owed(index, &mut pages);
                    }
                }
            }
            check(&balloon, &pages, total);
        }
    }
}
