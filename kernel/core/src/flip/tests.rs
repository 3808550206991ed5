//! The ledger's invariants under random sequences of sends, receives, releases,
//! reclaims and restarts, with a fake translation table that must always agree
//! with it.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::fake_pages::FakePages;

const PARTS: usize = 3;
const RAM_PAGES: u64 = 8;
const WINDOW_PAGES: u64 = 8;
const DEVICE: u64 = 0x0900_0000;

fn host_ram(partition: usize) -> Range {
    Range::from_start_size(
        0x1_0000_0000 + partition as u64 * 0x10_0000,
        RAM_PAGES * PAGE_SIZE,
    )
    .unwrap()
}

fn queues() -> [QueueSpec; 3] {
    let queue = |sender, receiver, depth, max_in_flight| QueueSpec {
        sender,
        receiver,
        depth,
        max_in_flight,
    };
    [queue(0, 1, 8, 4), queue(1, 2, 8, 4), queue(2, 0, 4, 4)]
}

/// Every tracked frame with its place, for the invariant checks: `(frame,
/// place)` where place is `Slot(partition, guest)`, `Window(partition, guest)`,
/// `Queue(index)` or `Pool`. Frames of present natural slots are left out
/// unless `with_natural`.
fn census(flip: &Flip, with_natural: bool) -> Vec<(u64, Place)> {
    let mut out = Vec::new();
    for (p, g) in flip.parts.iter().enumerate() {
        let mut guest = g.guest_ram.start;
        while guest < g.guest_ram.end {
            let d = flip
                .displaced
                .iter()
                .find(|d| usize::from(d.partition) == p && d.guest == guest);
            match d {
                Some(d) if d.present => out.push((d.frame, Place::Slot(p, guest))),
                Some(_) => {}
                None if with_natural => out.push((
                    g.host_ram.start + (guest - g.guest_ram.start),
                    Place::Slot(p, guest),
                )),
                None => {}
            }
            guest += PAGE_SIZE;
        }
    }
    for h in &flip.held {
        out.push((h.frame, Place::Window(usize::from(h.partition), h.guest)));
    }
    for (index, q) in flip.queues.iter().enumerate() {
        for page in &q.pages {
            out.push((page.frame, Place::Queue(index)));
        }
    }
    for frame in &flip.pool {
        out.push((*frame, Place::Pool));
    }
    out
}

/// Where a frame is, in [`Flip::census`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Slot(usize, u64),
    Window(usize, u64),
    Queue(usize),
    Pool,
}

fn setup() -> (Flip, FakePages) {
    let queues = queues();
    let size = Flip::kernel_memory(queues.iter().copied());
    let kernel = Range::from_start_size(0x2_0000_0000, size).unwrap();
    let parts = (0..PARTS).map(|p| {
        let mut devices = [Mmio::default(); MAX_MMIO];
        devices[0] = Mmio {
            base: DEVICE,
            size: PAGE_SIZE,
        };
        Geometry {
            host_ram: host_ram(p),
            window: WINDOW_PAGES * PAGE_SIZE,
            devices,
        }
    });
    let flip = Flip::from_parts(parts, &queues, kernel).unwrap();
    let mut pages = FakePages::default();
    for p in 0..PARTS {
        for page in 0..RAM_PAGES {
            pages.mapped.insert(
                (p, RAM_BASE + page * PAGE_SIZE),
                host_ram(p).start + page * PAGE_SIZE,
            );
        }
    }
    (flip, pages)
}

/// A snapshot that must not change when an operation fails.
/// Every frame's place, each queue's (messages waiting, pages away), and how many
/// pages the tables map.
type Snapshot = (Vec<(u64, Place)>, Vec<(usize, usize)>, usize);

fn snapshot(flip: &Flip, pages: &FakePages) -> Snapshot {
    let queues = (0..flip.queues.len())
        .map(|q| (flip.waiting(q), flip.away(q)))
        .collect();
    (census(flip, true), queues, pages.mapped.len())
}

/// Single ownership, conservation, agreement with the tables, and the limits.
fn check(flip: &Flip, pages: &FakePages, total: usize) {
    let census = census(flip, true);
    assert_eq!(census.len(), total, "frames appeared or vanished");
    let mut frames: Vec<u64> = census.iter().map(|(frame, _)| *frame).collect();
    frames.sort_unstable();
    frames.dedup();
    assert_eq!(frames.len(), total, "a frame is in two places");
    let mapped: BTreeMap<(usize, u64), u64> = census
        .iter()
        .filter_map(|&(frame, place)| match place {
            Place::Slot(p, guest) | Place::Window(p, guest) => Some(((p, guest), frame)),
            Place::Queue(_) | Place::Pool => None,
        })
        .collect();
    assert_eq!(mapped, pages.mapped, "the tables disagree with the ledger");
    for &(frame, place) in &census {
        if let Place::Slot(p, guest) = place {
            assert_eq!(flip.present_frame(p, guest), Some(frame), "slot {guest:#x}");
        }
    }
    for (q, spec) in queues().iter().enumerate() {
        assert!(flip.away(q) <= spec.max_in_flight as usize);
        assert!(flip.waiting(q) <= spec.depth as usize);
    }
    let totals = flip.totals();
    assert_eq!(totals.total() as usize, total);
}

#[derive(Clone, Debug)]
enum Op {
    Send { queue: usize, page: u64, count: u64 },
    Forward { queue: usize, slot: u64 },
    Copy { queue: usize },
    Receive { queue: usize, slot: u64 },
    Release { queue: usize, slot: u64, count: u64 },
    Reclaim { queue: usize },
    Restart { partition: usize },
    End { partition: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..RAM_PAGES + 1, 1..4u64)
            .prop_map(|(queue, page, count)| Op::Send { queue, page, count }),
        2 => (0..3usize, 0..WINDOW_PAGES).prop_map(|(queue, slot)| Op::Forward { queue, slot }),
        1 => (0..3usize).prop_map(|queue| Op::Copy { queue }),
        4 => (0..3usize, 0..WINDOW_PAGES + 1).prop_map(|(queue, slot)| Op::Receive { queue, slot }),
        3 => (0..3usize, 0..WINDOW_PAGES, 1..3u64)
            .prop_map(|(queue, slot, count)| Op::Release { queue, slot, count }),
        2 => (0..3usize).prop_map(|queue| Op::Reclaim { queue }),
        1 => (0..PARTS).prop_map(|partition| Op::Restart { partition }),
        1 => (0..PARTS).prop_map(|partition| Op::End { partition }),
    ]
}

fn window(slot: u64) -> u64 {
    RECEIVE_WINDOW_BASE + slot * PAGE_SIZE
}

fn apply(flip: &mut Flip, pages: &mut FakePages, op: &Op) -> Result<(), Error> {
    match *op {
        Op::Send { queue, page, count } => {
            let (sender, _) = flip.ends(queue);
            let message = Outgoing {
                guest: RAM_BASE + page * PAGE_SIZE,
                len: count * PAGE_SIZE - 100,
            };
            flip.send(sender, queue, sender as u16, &[message], pages)
                .map(drop)
        }
        Op::Forward { queue, slot } => {
            let (sender, _) = flip.ends(queue);
            let message = Outgoing {
                guest: window(slot),
                len: PAGE_SIZE,
            };
            flip.send(sender, queue, sender as u16, &[message], pages)
                .map(drop)
        }
        Op::Copy { queue } => flip.send_copy(queue, 0, 0x3_0000_0000, 64, pages).map(drop),
        Op::Receive { queue, slot } => {
            let at = ReceiveAt {
                window: window(slot),
                copy_buffer: Some(0x3_0000_0000),
            };
            flip.receive(queue, at, pages).map(drop)
        }
        Op::Release { queue, slot, count } => flip.release(queue, window(slot), count, pages),
        Op::Reclaim { queue } => flip.reclaim(queue).map(drop),
        Op::Restart { partition } => {
            flip.restart(partition, pages);
            Ok(())
        }
        Op::End { partition } => {
            flip.end(partition, pages);
            Ok(())
        }
    }
}

proptest! {
    /// Verifies: SK-MSG-002, SK-RIP-001, SK-MSG-005
    #[test]
    fn ownership_is_single_and_frames_are_conserved(ops in proptest::collection::vec(op(), 1..120)) {
        let (mut flip, mut pages) = setup();
        let total = census(&flip, true).len();
        check(&flip, &pages, total);
        for op in &ops {
            let before = snapshot(&flip, &pages);
            let result = apply(&mut flip, &mut pages, op);
            if let Err(error) = result {
                prop_assert_eq!(&snapshot(&flip, &pages), &before, "{:?} failed ({:?}) but changed state", op, error);
            }
            check(&flip, &pages, total);
        }
    }
}

fn one_page(guest: u64) -> [Outgoing; 1] {
    [Outgoing {
        guest,
        len: PAGE_SIZE,
    }]
}

/// Verifies: SK-MSG-001
#[test]
fn a_page_travels_and_comes_home_scrubbed() {
    let (mut flip, mut pages) = setup();
    let page = RAM_BASE + 2 * PAGE_SIZE;
    let frame = host_ram(0).start + 2 * PAGE_SIZE;
    assert_eq!(flip.send(0, 0, 7, &one_page(page), &mut pages), Ok(1));
    assert!(
        !pages.mapped.contains_key(&(0, page)),
        "the sender still maps it"
    );
    assert_eq!(
        flip.send(0, 0, 7, &one_page(page), &mut pages),
        Err(Error::InFlight)
    );
    let at = ReceiveAt {
        window: window(3),
        copy_buffer: None,
    };
    let delivered = flip.receive(0, at, &mut pages).unwrap();
    assert_eq!(
        delivered,
        Delivered {
            len: PAGE_SIZE,
            badge: 7,
            pages: 1
        }
    );
    assert_eq!(pages.mapped.get(&(1, window(3))), Some(&frame));
    assert_eq!(flip.reclaim(0), Err(Error::Empty));
    flip.release(0, window(3), 1, &mut pages).unwrap();
    assert_eq!(pages.scrubbed, vec![frame]);
    assert_eq!(pages.mapped.get(&(0, page)), Some(&frame));
    assert_eq!(flip.reclaim(0), Ok(page));
}

/// Verifies: SK-MSG-003
#[test]
fn each_bad_send_has_its_own_error() {
    let (mut flip, mut pages) = setup();
    let before = snapshot(&flip, &pages);
    let send = |flip: &mut Flip, pages: &mut FakePages, guest, len| {
        flip.send(0, 0, 0, &[Outgoing { guest, len }], pages)
    };
    assert_eq!(
        send(&mut flip, &mut pages, RAM_BASE + 1, 8),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        send(&mut flip, &mut pages, RAM_BASE, 0),
        Err(Error::TooLong)
    );
    assert_eq!(
        send(&mut flip, &mut pages, RAM_BASE, MESSAGE_MAX + 1),
        Err(Error::TooLong)
    );
    assert_eq!(
        send(&mut flip, &mut pages, DEVICE, 8),
        Err(Error::DevicePage)
    );
    assert_eq!(send(&mut flip, &mut pages, 0x1000, 8), Err(Error::NotOwned));
    assert_eq!(
        send(&mut flip, &mut pages, window(0), 8),
        Err(Error::NotOwned)
    );
    // The last page of RAM plus one past it: the second page is not its own.
    let last = RAM_BASE + (RAM_PAGES - 1) * PAGE_SIZE;
    assert_eq!(
        send(&mut flip, &mut pages, last, 2 * PAGE_SIZE),
        Err(Error::NotOwned)
    );
    // Five pages on a queue that allows four away.
    assert_eq!(
        send(&mut flip, &mut pages, RAM_BASE, 5 * PAGE_SIZE),
        Err(Error::FlightLimit)
    );
    let duplicate = [
        Outgoing {
            guest: RAM_BASE,
            len: 8,
        },
        Outgoing {
            guest: RAM_BASE,
            len: 8,
        },
    ];
    assert_eq!(
        flip.send(0, 0, 0, &duplicate, &mut pages),
        Err(Error::InvalidArgument)
    );
    assert_eq!(snapshot(&flip, &pages), before);
    for _ in 0..4 {
        flip.send_copy(2, 0, 0x3_0000_0000, 8, &mut pages).unwrap();
    }
    assert_eq!(
        flip.send_copy(2, 0, 0x3_0000_0000, 8, &mut pages),
        Err(Error::QueueFull)
    );
    assert_eq!(
        flip.send_copy(0, 0, 0x3_0000_0000, COPY_MAX + 1, &mut pages),
        Err(Error::TooLong)
    );
}

/// Verifies: SK-MSG-003
#[test]
fn each_bad_receive_and_release_has_its_own_error() {
    let (mut flip, mut pages) = setup();
    let at = |slot| ReceiveAt {
        window: window(slot),
        copy_buffer: None,
    };
    assert_eq!(flip.receive(0, at(0), &mut pages), Err(Error::Empty));
    flip.send(
        0,
        0,
        0,
        &[Outgoing {
            guest: RAM_BASE,
            len: 2 * PAGE_SIZE,
        }],
        &mut pages,
    )
    .unwrap();
    let before = snapshot(&flip, &pages);
    assert_eq!(
        flip.receive(0, at(WINDOW_PAGES - 1), &mut pages),
        Err(Error::BadWindow)
    );
    let misaligned = ReceiveAt {
        window: window(0) + 8,
        copy_buffer: None,
    };
    assert_eq!(
        flip.receive(0, misaligned, &mut pages),
        Err(Error::BadWindow)
    );
    assert_eq!(snapshot(&flip, &pages), before);
    flip.receive(0, at(0), &mut pages).unwrap();
    flip.send(0, 0, 0, &one_page(RAM_BASE + 4 * PAGE_SIZE), &mut pages)
        .unwrap();
    assert_eq!(flip.receive(0, at(1), &mut pages), Err(Error::BadWindow));
    assert_eq!(
        flip.release(0, window(2), 1, &mut pages),
        Err(Error::NotOwned)
    );
    assert_eq!(
        flip.release(1, window(0), 1, &mut pages),
        Err(Error::NotOwned)
    );
    assert_eq!(
        flip.release(0, window(0), 0, &mut pages),
        Err(Error::InvalidArgument)
    );
    assert_eq!(flip.release(0, window(0), 2, &mut pages), Ok(()));
}

/// Verifies: SK-RIP-001, SK-ISO-001
#[test]
fn a_sender_restarted_while_its_page_is_held_gets_a_substitute() {
    let (mut flip, mut pages) = setup();
    let total = census(&flip, true).len();
    let page = RAM_BASE;
    flip.send(0, 0, 0, &one_page(page), &mut pages).unwrap();
    assert_eq!(
        flip.present_frame(0, page),
        None,
        "a page away has no frame"
    );
    let at = ReceiveAt {
        window: window(0),
        copy_buffer: None,
    };
    flip.receive(0, at, &mut pages).unwrap();
    let peers = flip.restart(0, &mut pages);
    assert_eq!(flip.present_frame(0, page), Some(pages.mapped[&(0, page)]));
    assert_eq!(peers[..PARTS], [false, true, true]);
    let substitute = pages.mapped[&(0, page)];
    assert_ne!(
        substitute,
        host_ram(0).start,
        "the held frame stays with the receiver"
    );
    assert_eq!(pages.mapped[&(1, window(0))], host_ram(0).start);
    assert!(!flip.natural(0, Range::from_start_size(page, 8).unwrap()));
    check(&flip, &pages, total);
    assert_eq!(flip.receive(0, at, &mut pages), Err(Error::PeerRestarted));
    flip.release(0, window(0), 1, &mut pages).unwrap();
    assert_eq!(
        flip.reclaim(0),
        Err(Error::Empty),
        "an orphan does not come home"
    );
    check(&flip, &pages, total);
}

/// Verifies: SK-MSG-004
#[test]
fn a_sender_told_the_queue_is_full_has_work_once_there_is_room() {
    let (mut flip, mut pages) = setup();
    for _ in 0..4 {
        flip.send_copy(2, 0, 0x3_0000_0000, 8, &mut pages).unwrap();
    }
    assert!(!flip.has_work(2, End::Send), "nothing refused yet");
    assert_eq!(
        flip.send_copy(2, 0, 0x3_0000_0000, 8, &mut pages),
        Err(Error::QueueFull)
    );
    assert!(!flip.has_work(2, End::Send), "still full");
    let at = ReceiveAt {
        window: window(0),
        copy_buffer: Some(0x3_0000_1000),
    };
    flip.receive(2, at, &mut pages).unwrap();
    assert!(flip.has_work(2, End::Send), "room after a refusal");
    flip.send_copy(2, 0, 0x3_0000_0000, 8, &mut pages).unwrap();
    assert!(!flip.has_work(2, End::Send), "the sender was answered");
}

/// Verifies: SK-MSG-002, SK-MSG-004
#[test]
fn an_ended_partition_leaves_what_it_sent_and_gives_back_what_it_held() {
    let (mut flip, mut pages) = setup();
    let sent = RAM_BASE + 3 * PAGE_SIZE;
    let lent = RAM_BASE + 5 * PAGE_SIZE;
    flip.send(0, 0, 0, &one_page(sent), &mut pages).unwrap();
    flip.send(2, 2, 2, &one_page(lent), &mut pages).unwrap();
    let at = |slot| ReceiveAt {
        window: window(slot),
        copy_buffer: None,
    };
    flip.receive(2, at(1), &mut pages).unwrap();

    let peers = flip.end(0, &mut pages);
    assert!(peers[1] && peers[2], "both peers are woken");
    // The page it held went home to partition 2, scrubbed, and is reclaimable;
    // nobody was told of a restart.
    assert!(!pages.mapped.contains_key(&(0, window(1))));
    assert_eq!(
        pages.mapped.get(&(2, lent)),
        Some(&(host_ram(2).start + 5 * PAGE_SIZE))
    );
    assert_eq!(flip.reclaim(2), Ok(lent));
    // What it sent is still there to receive; released, it goes to its slot.
    assert_eq!(flip.waiting(0), 1);
    flip.receive(0, at(0), &mut pages).unwrap();
    flip.release(0, window(0), 1, &mut pages).unwrap();
    assert_eq!(
        pages.mapped.get(&(0, sent)),
        Some(&(host_ram(0).start + 3 * PAGE_SIZE))
    );
    assert!(
        pages
            .scrubbed
            .contains(&(host_ram(0).start + 3 * PAGE_SIZE))
    );
}
