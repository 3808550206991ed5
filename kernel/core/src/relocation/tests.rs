//! Unit tests of relocation: each refusal (and that it changed nothing), one
//! move stage by stage, a write that waits, and devirtualization of chains and
//! cycles.

use super::model::{Machine, Write};
use super::*;

/// Eight pages, identity-placed at 1 GiB; four extra frames at 2 GiB (the
/// spare, and three in the pool).
pub(super) const LAYOUT: Layout = Layout {
    guest_base: GuestPage(0x4_0000),
    home: Frame(0x4_0000),
    pages: 8,
    extra: FrameRange {
        first: Frame(0x8_0000),
        count: 4,
    },
};

/// What a guest page holds before anything moves.
pub(super) fn initial(page: GuestPage) -> u64 {
    0x1000 + page.0
}

fn setup() -> (Relocation, Machine) {
    (
        Relocation::new(LAYOUT).unwrap(),
        Machine::identity(&LAYOUT, initial),
    )
}

fn page(index: u64) -> GuestPage {
    GuestPage(LAYOUT.guest_base.0 + index)
}

fn home(index: u64) -> Frame {
    LAYOUT.home_of(page(index))
}

fn extra(index: u64) -> Frame {
    Frame(LAYOUT.extra.first.0 + index)
}

fn range(first: Frame, count: u64) -> FrameRange {
    FrameRange { first, count }
}

/// Everything a refused request must leave as it was.
fn snapshot(relocation: &Relocation, machine: &Machine) -> String {
    format!("{relocation:?} {machine:?}")
}

/// Steps until done; the progress of each step.
fn run(relocation: &mut Relocation, machine: &mut Machine) -> Vec<Progress> {
    let mut steps = Vec::new();
    loop {
        let progress = relocation.step(machine);
        steps.push(progress);
        if progress == Progress::Done {
            return steps;
        }
        assert!(steps.len() < 1000, "the work never ends");
    }
}

fn frame_of(machine: &Machine, index: u64) -> Frame {
    machine.entry(page(index)).unwrap().frame
}

/// Moves each page `indices` names, in turn, to the pool's front frame.
fn evacuate_pages(relocation: &mut Relocation, machine: &mut Machine, indices: &[u64]) {
    for &index in indices {
        let frame = frame_of(machine, index);
        relocation.evacuate(range(frame, 1)).unwrap();
        run(relocation, machine);
    }
}

/// Verifies: SK-ISO-011
#[test]
fn a_layout_without_pages_or_spare_or_room_is_refused() {
    let with = |change: fn(&mut Layout)| {
        let mut layout = LAYOUT;
        change(&mut layout);
        Relocation::new(layout).map(|_| ()).unwrap_err()
    };
    assert_eq!(with(|l| l.pages = 0), LayoutError::NoPages);
    assert_eq!(with(|l| l.extra.count = 0), LayoutError::NoSpare);
    assert_eq!(
        with(|l| l.extra.first = Frame(0x4_0007)),
        LayoutError::Overlap
    );
    assert_eq!(
        with(|l| l.extra.first = Frame(0x3_fffd)),
        LayoutError::Overlap
    );
    assert_eq!(
        with(|l| l.home = Frame(u64::MAX - 3)),
        LayoutError::TooLarge
    );
    assert_eq!(
        with(|l| l.extra.count = u64::from(u32::MAX)),
        LayoutError::TooLarge
    );
    let adjacent = Layout {
        extra: range(Frame(0x4_0008), 1),
        ..LAYOUT
    };
    assert!(
        Relocation::new(adjacent).is_ok(),
        "touching is not overlapping"
    );
}

/// Verifies: SK-ISO-011
#[test]
fn a_new_relocation_is_the_identity_with_the_spare_aside() {
    let (relocation, _) = setup();
    for index in 0..LAYOUT.pages {
        let mappers: Vec<_> = relocation.back_map().mappers(home(index)).collect();
        assert_eq!(mappers, [page(index)]);
    }
    let pool: Vec<_> = relocation.pool().frames().collect();
    assert_eq!(pool, [extra(1), extra(2), extra(3)]);
    assert!(!relocation.back_map().is_referenced(extra(0)));
    assert!(!relocation.is_busy());
}

/// Verifies: SK-ISO-011
#[test]
fn an_evacuation_outside_the_partition_is_refused_and_changes_nothing() {
    let (mut relocation, machine) = setup();
    let before = snapshot(&relocation, &machine);
    for bad in [
        range(home(0), 0),
        range(home(6), 3),
        range(Frame(0x3_ffff), 2),
        range(Frame(0x9_0000), 1),
        range(Frame(u64::MAX), 2),
    ] {
        assert_eq!(
            relocation.evacuate(bad),
            Err(RelocationError::OutsidePartition),
            "{bad:?}"
        );
        assert_eq!(snapshot(&relocation, &machine), before);
    }
}

/// Verifies: SK-ISO-011
#[test]
fn an_evacuation_of_a_frame_no_page_maps_is_refused_and_changes_nothing() {
    let (mut relocation, machine) = setup();
    let before = snapshot(&relocation, &machine);
    assert_eq!(
        relocation.evacuate(range(extra(1), 1)),
        Err(RelocationError::NotMapped(extra(1)))
    );
    assert_eq!(
        relocation.evacuate(range(extra(0), 2)),
        Err(RelocationError::NotMapped(extra(0))),
        "the spare is never evacuated"
    );
    assert_eq!(snapshot(&relocation, &machine), before);
}

/// Verifies: SK-ISO-011
#[test]
fn an_evacuation_larger_than_the_pool_is_refused_and_changes_nothing() {
    let (mut relocation, machine) = setup();
    let before = snapshot(&relocation, &machine);
    assert_eq!(
        relocation.evacuate(range(home(0), 4)),
        Err(RelocationError::PoolShort { needed: 4, free: 3 })
    );
    assert_eq!(snapshot(&relocation, &machine), before);
}

/// Verifies: SK-ISO-011, SK-ISO-012
#[test]
fn a_request_while_work_is_under_way_is_refused_and_changes_nothing() {
    let (mut relocation, mut machine) = setup();
    relocation.evacuate(range(home(2), 2)).unwrap();
    relocation.step(&mut machine);
    relocation.step(&mut machine);
    let before = snapshot(&relocation, &machine);
    assert_eq!(
        relocation.evacuate(range(home(2), 1)),
        Err(RelocationError::InFlight),
        "a page already in flight"
    );
    assert_eq!(
        relocation.evacuate(range(home(5), 1)),
        Err(RelocationError::InFlight)
    );
    assert_eq!(relocation.devirtualize(), Err(RelocationError::InFlight));
    assert_eq!(snapshot(&relocation, &machine), before);
    run(&mut relocation, &mut machine);

    relocation.devirtualize().unwrap();
    relocation.step(&mut machine);
    let before = snapshot(&relocation, &machine);
    assert_eq!(
        relocation.evacuate(range(home(0), 1)),
        Err(RelocationError::InFlight)
    );
    assert_eq!(relocation.devirtualize(), Err(RelocationError::InFlight));
    assert_eq!(snapshot(&relocation, &machine), before);
}

/// Verifies: SK-ISO-011
#[test]
fn the_back_map_refuses_bad_requests_and_changes_nothing() {
    let mut map = BackMap::new(LAYOUT);
    map.map(home(0), page(0)).unwrap();
    map.map(home(0), page(1)).unwrap();
    let before = format!("{map:?}");
    assert_eq!(map.map(Frame(1), page(2)), Err(BackMapError::FrameOutside));
    assert_eq!(
        map.map(home(2), GuestPage(1)),
        Err(BackMapError::PageOutside)
    );
    assert_eq!(map.map(home(2), page(1)), Err(BackMapError::PageMapped));
    assert_eq!(map.unmap(home(2), page(1)), Err(BackMapError::NotMapped));
    assert_eq!(map.unmap(home(0), page(3)), Err(BackMapError::NotMapped));
    assert_eq!(
        map.unmap(Frame(1), page(0)),
        Err(BackMapError::FrameOutside)
    );
    assert_eq!(
        map.unmap(home(0), GuestPage(1)),
        Err(BackMapError::PageOutside)
    );
    let mut memory = Machine::default();
    assert_eq!(
        map.release(home(0), &mut memory),
        Err(BackMapError::Referenced(2))
    );
    assert_eq!(
        map.release(Frame(1), &mut memory),
        Err(BackMapError::FrameOutside)
    );
    assert_eq!(format!("{map:?}"), before);
    assert!(
        memory.scrubbed.is_empty(),
        "a refused release scrubs nothing"
    );
}

/// Verifies: SK-ISO-011, SK-RIP-005
#[test]
fn the_back_map_counts_references_and_releases_only_unreferenced_frames() {
    let mut map = BackMap::new(LAYOUT);
    for index in [0, 1, 2] {
        map.map(home(5), page(index)).unwrap();
    }
    assert_eq!(map.references(home(5)), 3);
    let mut mappers: Vec<_> = map.mappers(home(5)).collect();
    mappers.sort();
    assert_eq!(mappers, [page(0), page(1), page(2)]);
    assert_eq!(map.references(Frame(1)), 0, "a frame not tracked");
    assert_eq!(map.mappers(Frame(1)).count(), 0);

    map.unmap(home(5), page(1)).unwrap();
    assert!(!map.maps(home(5), page(1)));
    map.unmap(home(5), page(0)).unwrap();
    let mut memory = Machine::default();
    assert_eq!(
        map.release(home(5), &mut memory),
        Err(BackMapError::Referenced(1))
    );
    map.unmap(home(5), page(2)).unwrap();
    assert!(!map.is_referenced(home(5)));
    let released = map.release(home(5), &mut memory).unwrap();
    assert_eq!(released.frame(), home(5));
    assert_eq!(memory.scrubbed, [home(5)]);
}

/// Verifies: SK-ISO-011, SK-ISO-012, SK-RIP-005
#[test]
fn one_move_goes_stage_by_stage_and_a_write_during_it_waits() {
    let (mut relocation, mut machine) = setup();
    let moved = page(3);
    let old = home(3);
    relocation.evacuate(range(old, 1)).unwrap();
    assert_eq!(relocation.write_fault(moved), WriteFault::NotMoving);

    // Write-protect: the tables say read-only, the processors do not yet.
    assert_eq!(relocation.step(&mut machine), Progress::Continue);
    assert_eq!(machine.tables[&moved].access, Access::ReadOnly);
    assert_eq!(
        machine.guest_write(moved, 7),
        Write::Done,
        "lands in the old frame"
    );
    assert_eq!(relocation.write_fault(moved), WriteFault::Wait);
    assert_eq!(relocation.write_fault(page(4)), WriteFault::NotMoving);

    // Flush: now a write faults, and waits.
    assert_eq!(relocation.step(&mut machine), Progress::Continue);
    assert_eq!(machine.guest_write(moved, 8), Write::Fault);
    assert_eq!(relocation.write_fault(moved), WriteFault::Wait);

    // Copy, then remap to the front frame of the pool.
    let new = extra(1);
    assert_eq!(relocation.step(&mut machine), Progress::Continue);
    assert_eq!(machine.copies, [(old, new)]);
    assert_eq!(machine.content(new), 7);
    assert_eq!(relocation.step(&mut machine), Progress::Continue);
    assert_eq!(
        machine.tables[&moved],
        Entry {
            frame: new,
            access: Access::ReadWrite
        }
    );
    assert!(relocation.back_map().maps(new, moved));
    assert!(!relocation.back_map().is_referenced(old));
    assert_eq!(
        machine.guest_write(moved, 8),
        Write::Fault,
        "not flushed yet"
    );
    assert_eq!(relocation.write_fault(moved), WriteFault::Wait);

    // Flush: the waiting write may go on, and lands in the new frame.
    assert_eq!(relocation.step(&mut machine), Progress::Resumable);
    assert_eq!(relocation.write_fault(moved), WriteFault::NotMoving);
    assert_eq!(machine.guest_write(moved, 8), Write::Done);
    assert_eq!(machine.guest_read(moved), 8);

    // Release: the old frame is scrubbed and joins the back of the pool.
    assert!(machine.scrubbed.is_empty());
    assert_eq!(relocation.step(&mut machine), Progress::Continue);
    assert_eq!(machine.scrubbed, [old]);
    let pool: Vec<_> = relocation.pool().frames().collect();
    assert_eq!(pool, [extra(2), extra(3), old]);
    assert_eq!(relocation.step(&mut machine), Progress::Done);
    assert!(!relocation.is_busy());
    assert_eq!(machine.flushes, 2);
}

/// Verifies: SK-ISO-011, SK-RIP-005
#[test]
fn an_evacuation_never_moves_a_page_into_a_frame_it_emptied() {
    let (mut relocation, mut machine) = setup();
    relocation.evacuate(range(home(0), 3)).unwrap();
    run(&mut relocation, &mut machine);
    for index in 0..3 {
        assert_eq!(frame_of(&machine, index), extra(index + 1));
        assert_eq!(machine.guest_read(page(index)), initial(page(index)));
    }
    assert_eq!(machine.scrubbed, [home(0), home(1), home(2)]);
    let pool: Vec<_> = relocation.pool().frames().collect();
    assert_eq!(pool, [home(0), home(1), home(2)]);
}

/// Verifies: SK-ISO-012
#[test]
fn devirtualizing_the_identity_touches_nothing() {
    let (mut relocation, mut machine) = setup();
    relocation.devirtualize().unwrap();
    let steps = run(&mut relocation, &mut machine);
    assert_eq!(steps.len() as u64, LAYOUT.pages + 1, "a step per page");
    assert_eq!(machine, Machine::identity(&LAYOUT, initial));
}

/// Verifies: SK-ISO-012, SK-RIP-005
#[test]
fn pages_that_would_swap_go_home_through_the_spare() {
    let (mut relocation, mut machine) = setup();
    // The pool is a queue: [e1 e2 e3], then the frames each move leaves.
    machine.guest_write(page(2), 0xa2);
    evacuate_pages(&mut relocation, &mut machine, &[0, 1, 2, 1, 0]);
    assert_eq!(frame_of(&machine, 0), home(1));
    assert_eq!(frame_of(&machine, 1), home(0));
    assert_eq!(frame_of(&machine, 2), extra(3));
    machine.guest_write(page(0), 0xa0);

    machine.scrubbed.clear();
    machine.copies.clear();
    relocation.devirtualize().unwrap();
    run(&mut relocation, &mut machine);
    for index in 0..LAYOUT.pages {
        assert_eq!(frame_of(&machine, index), home(index));
    }
    assert_eq!(machine.guest_read(page(0)), 0xa0);
    assert_eq!(machine.guest_read(page(1)), initial(page(1)));
    assert_eq!(machine.guest_read(page(2)), 0xa2);
    let spare = extra(0);
    assert!(machine.copies.iter().any(|&(_, to)| to == spare));
    assert!(
        machine.scrubbed.contains(&spare),
        "the spare leaves scrubbed"
    );
    assert_eq!(machine.content(spare), 0);
    assert!(!relocation.back_map().is_referenced(spare));
    assert!(!relocation.pool().contains(spare));
    let mut pool: Vec<_> = relocation.pool().frames().collect();
    pool.sort();
    assert_eq!(pool, [extra(1), extra(2), extra(3)]);
    for frame in pool {
        assert_eq!(machine.content(frame), 0);
    }
}

/// Verifies: SK-ISO-012
#[test]
fn a_chain_unwinds_a_move_per_page_without_the_spare() {
    let (mut relocation, mut machine) = setup();
    evacuate_pages(&mut relocation, &mut machine, &[0, 5, 6, 1, 7, 3, 2]);
    let places: Vec<_> = (0..LAYOUT.pages).map(|i| frame_of(&machine, i)).collect();
    assert_eq!(
        places,
        [
            extra(1),
            home(0),
            home(1),
            home(6),
            home(4),
            extra(2),
            extra(3),
            home(5)
        ]
    );
    machine.copies.clear();
    relocation.devirtualize().unwrap();
    run(&mut relocation, &mut machine);
    for index in 0..LAYOUT.pages {
        assert_eq!(frame_of(&machine, index), home(index));
        assert_eq!(machine.guest_read(page(index)), initial(page(index)));
    }
    assert!(machine.copies.iter().all(|&(_, to)| to != extra(0)));
    assert_eq!(machine.copies.len(), 7, "one copy per page away from home");
}

/// Verifies: SK-ISO-012
#[test]
fn a_partition_placed_away_from_its_guest_addresses_goes_home_too() {
    let layout = Layout {
        home: Frame(0x10_0000),
        ..LAYOUT
    };
    let mut relocation = Relocation::new(layout).unwrap();
    let mut machine = Machine::identity(&layout, initial);
    relocation.evacuate(range(Frame(0x10_0002), 3)).unwrap();
    run(&mut relocation, &mut machine);
    relocation.evacuate(range(Frame(0x10_0000), 2)).unwrap();
    run(&mut relocation, &mut machine);
    relocation.devirtualize().unwrap();
    run(&mut relocation, &mut machine);
    for page in layout.guest_pages() {
        assert_eq!(machine.entry(page).unwrap().frame, layout.home_of(page));
        assert_eq!(machine.guest_read(page), initial(page));
    }
}
