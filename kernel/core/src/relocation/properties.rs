//! Relocation's invariants under random sequences of evacuations, steps, guest
//! writes and devirtualizations, on the in-memory machine (whose processors see
//! the tables as of the last flush, and which panics on a scrub of a frame still
//! translated); and the back map's counts under random maps, unmaps and releases,
//! against a plain map of page to frame.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Slot;

use proptest::prelude::*;

use super::model::{Machine, Write};
use super::tests::{LAYOUT, initial};
use super::*;

/// Six pages, the spare and two pool frames: small enough that random moves make
/// chains and cycles.
const SMALL: Layout = Layout {
    pages: 6,
    extra: FrameRange {
        first: LAYOUT.extra.first,
        count: 3,
    },
    ..LAYOUT
};

/// A frame no page may map, for requests that must be refused.
const OUTSIDE: Frame = Frame(0x9_0000);

#[derive(Clone, Debug)]
enum Op {
    /// Evacuate `count` frames from tracked frame `first` (past the tracked
    /// frames: from a frame outside).
    Evacuate {
        first: usize,
        count: u64,
    },
    /// Evacuate `count` frames from the frame page `page` (an index) maps.
    EvacuatePage {
        page: u64,
        count: u64,
    },
    Devirtualize,
    Step {
        times: usize,
    },
    /// The guest writes `value` to page `page` (an index).
    Write {
        page: u64,
        value: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let frames = SMALL.frame_count();
    prop_oneof![
        1 => (0..frames + 1, 0..4u64).prop_map(|(first, count)| Op::Evacuate { first, count }),
        3 => (0..SMALL.pages, 1..3u64).prop_map(|(page, count)| Op::EvacuatePage { page, count }),
        1 => Just(Op::Devirtualize),
        5 => (1..10usize).prop_map(|times| Op::Step { times }),
        6 => (0..SMALL.pages, 1..u64::MAX).prop_map(|(page, value)| Op::Write { page, value }),
    ]
}

/// The relocation, the machine, and what the guest must read.
struct World {
    relocation: Relocation,
    machine: Machine,
    /// Per page: the last value the guest wrote that landed.
    expected: BTreeMap<GuestPage, u64>,
    /// Writes that faulted on a page being moved, waiting for it, in order.
    waiting: Vec<(GuestPage, u64)>,
    /// Whether the work under way is a devirtualization.
    devirtualizing: bool,
}

impl World {
    fn new() -> Self {
        World {
            relocation: Relocation::new(SMALL).unwrap(),
            machine: Machine::identity(&SMALL, initial),
            expected: SMALL.guest_pages().map(|p| (p, initial(p))).collect(),
            waiting: Vec::new(),
            devirtualizing: false,
        }
    }

    /// The error an evacuation of `range` must get, checked in the documented
    /// order, from the outside.
    fn evacuation_refusal(&self, range: FrameRange) -> Option<RelocationError> {
        let map = self.relocation.back_map();
        if self.relocation.is_busy() {
            Some(RelocationError::InFlight)
        } else if range.count == 0 || !range.frames().all(|f| SMALL.tracks(f)) {
            Some(RelocationError::OutsidePartition)
        } else if let Some(frame) = range.frames().find(|&f| map.references(f) == 0) {
            Some(RelocationError::NotMapped(frame))
        } else {
            let free = self.relocation.pool().len() as u64;
            (free < range.count).then_some(RelocationError::PoolShort {
                needed: range.count,
                free,
            })
        }
    }

    /// The guest writes; a write that faults must be one relocation protects.
    fn write(&mut self, page: GuestPage, value: u64) -> Result<(), TestCaseError> {
        if self.waiting.iter().any(|&(waiting, _)| waiting == page) {
            self.waiting.push((page, value));
            return Ok(());
        }
        match self.machine.guest_write(page, value) {
            Write::Done => {
                self.expected.insert(page, value);
            }
            Write::Fault => {
                prop_assert_eq!(self.relocation.write_fault(page), WriteFault::Wait);
                self.waiting.push((page, value));
            }
        }
        Ok(())
    }

    /// One step; when it says the waiting guests may resume, their writes are
    /// tried again.
    fn step(&mut self) -> Result<Progress, TestCaseError> {
        let progress = self.relocation.step(&mut self.machine);
        if progress == Progress::Resumable {
            for (page, value) in core::mem::take(&mut self.waiting) {
                self.write(page, value)?;
            }
            prop_assert!(
                self.waiting.is_empty(),
                "a write still waits after its move"
            );
        }
        if progress == Progress::Done {
            prop_assert!(self.waiting.is_empty(), "a write waits with nothing moving");
            if core::mem::take(&mut self.devirtualizing) {
                self.check_identity()?;
            }
        }
        Ok(progress)
    }

    /// Asks for an evacuation: refused exactly as documented, and then with
    /// nothing changed.
    fn evacuate(&mut self, range: FrameRange) -> Result<(), TestCaseError> {
        let refusal = self.evacuation_refusal(range);
        let before = format!("{:?} {:?}", self.relocation, self.machine);
        let result = self.relocation.evacuate(range);
        prop_assert_eq!(result, refusal.map_or(Ok(()), Err));
        if result.is_err() {
            prop_assert_eq!(format!("{:?} {:?}", self.relocation, self.machine), before);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Evacuate { first, count } => {
                let first = if first < SMALL.frame_count() {
                    SMALL.frame_at(first)
                } else {
                    OUTSIDE
                };
                self.evacuate(FrameRange { first, count })?;
            }
            Op::EvacuatePage { page, count } => {
                let first = self.machine.tables[&SMALL.page_at(page as usize)].frame;
                self.evacuate(FrameRange { first, count })?;
            }
            Op::Devirtualize => {
                let busy = self.relocation.is_busy();
                let result = self.relocation.devirtualize();
                prop_assert_eq!(result.is_err(), busy);
                self.devirtualizing |= result.is_ok();
            }
            Op::Step { times } => {
                for _ in 0..times {
                    self.step()?;
                    self.check()?;
                }
            }
            Op::Write { page, value } => self.write(SMALL.page_at(page as usize), value)?,
        }
        Ok(())
    }

    /// The back map, the tables, the pool and the guest's view agree.
    fn check(&self) -> Result<(), TestCaseError> {
        let map = self.relocation.back_map();
        let pool = self.relocation.pool();
        let mut referenced = 0;
        for index in 0..SMALL.frame_count() {
            let frame = SMALL.frame_at(index);
            let mappers: Vec<_> = map.mappers(frame).collect();
            prop_assert_eq!(map.references(frame) as usize, mappers.len());
            prop_assert!(mappers.len() <= 1, "{:?} mapped twice", frame);
            for &page in &mappers {
                prop_assert_eq!(self.machine.tables[&page].frame, frame);
            }
            if !mappers.is_empty() {
                referenced += 1;
                prop_assert!(!pool.contains(frame), "{:?} free and mapped", frame);
            }
        }
        prop_assert_eq!(referenced, SMALL.pages, "every page maps one frame");
        for page in SMALL.guest_pages() {
            let entry = self.machine.tables[&page];
            prop_assert!(map.maps(entry.frame, page));
            prop_assert_eq!(self.machine.guest_read(page), self.expected[&page]);
        }
        prop_assert!(!pool.contains(SMALL.spare()));
        for frame in pool.frames() {
            prop_assert_eq!(
                self.machine.content(frame),
                0,
                "{:?} free but not zero",
                frame
            );
            let seen = self.machine.seen.values().any(|e| e.frame == frame);
            prop_assert!(!seen, "{:?} free but a processor translates to it", frame);
        }
        if !self.relocation.is_busy() {
            prop_assert!(!map.is_referenced(SMALL.spare()));
            prop_assert_eq!(self.machine.content(SMALL.spare()), 0);
            prop_assert_eq!(pool.len() + SMALL.pages as usize + 1, SMALL.frame_count());
            prop_assert_eq!(&self.machine.seen, &self.machine.tables);
            for entry in self.machine.tables.values() {
                prop_assert_eq!(entry.access, Access::ReadWrite);
            }
        }
        Ok(())
    }

    /// Every page is writable at its home frame, and the back map agrees.
    fn check_identity(&self) -> Result<(), TestCaseError> {
        for page in SMALL.guest_pages() {
            let home = SMALL.home_of(page);
            let entry = Entry {
                frame: home,
                access: Access::ReadWrite,
            };
            prop_assert_eq!(self.machine.tables[&page], entry);
            prop_assert_eq!(self.machine.seen[&page], entry);
            prop_assert_eq!(map_of(&self.relocation, home), vec![page]);
        }
        let mut free: Vec<_> = self.relocation.pool().frames().collect();
        free.sort();
        let extra: Vec<_> = SMALL.extra.frames().skip(1).collect();
        prop_assert_eq!(free, extra, "every frame used on the way is free again");
        Ok(())
    }

    /// Steps until nothing is under way.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..20 * SMALL.frame_count() {
            let progress = self.step()?;
            self.check()?;
            if progress == Progress::Done {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the work never ends"))
    }
}

fn map_of(relocation: &Relocation, frame: Frame) -> Vec<GuestPage> {
    relocation.back_map().mappers(frame).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Verifies: SK-ISO-011, SK-ISO-012, SK-RIP-005
    #[test]
    fn moves_keep_the_back_map_and_every_write_and_devirtualizing_ends_at_home(
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let mut world = World::new();
        world.check()?;
        for op in &ops {
            world.apply(op)?;
            world.check()?;
        }
        world.finish()?;
        world.relocation.devirtualize().unwrap();
        world.devirtualizing = true;
        world.finish()?;
        world.check_identity()?;
        for page in SMALL.guest_pages() {
            prop_assert_eq!(world.machine.guest_read(page), world.expected[&page]);
        }
    }
}

#[derive(Clone, Debug)]
enum MapOp {
    Map { frame: usize, page: u64 },
    Unmap { frame: usize, page: u64 },
    Release { frame: usize },
}

/// A frame index (the last one: a frame outside).
fn any_frame(index: usize) -> Frame {
    if index < LAYOUT.frame_count() {
        LAYOUT.frame_at(index)
    } else {
        OUTSIDE
    }
}

/// A page index (the last one: a page outside).
fn any_page(index: u64) -> GuestPage {
    GuestPage(LAYOUT.guest_base.0 + index)
}

fn map_op() -> impl Strategy<Value = MapOp> {
    let frames = 0..LAYOUT.frame_count() + 1;
    let pages = 0..LAYOUT.pages + 1;
    prop_oneof![
        (frames.clone(), pages.clone()).prop_map(|(frame, page)| MapOp::Map { frame, page }),
        (frames.clone(), pages).prop_map(|(frame, page)| MapOp::Unmap { frame, page }),
        frames.prop_map(|frame| MapOp::Release { frame }),
    ]
}

proptest! {
    /// Verifies: SK-ISO-011, SK-RIP-005
    #[test]
    fn back_map_counts_match_the_pages_mapped_and_referenced_frames_stay(
        ops in proptest::collection::vec(map_op(), 1..120),
    ) {
        let mut map = BackMap::new(LAYOUT);
        let mut model: BTreeMap<GuestPage, Frame> = BTreeMap::new();
        let mut memory = Machine::default();
        for op in &ops {
            let before = format!("{map:?}");
            let changed = match *op {
                MapOp::Map { frame, page } => {
                    let (frame, page) = (any_frame(frame), any_page(page));
                    let expected = if !LAYOUT.tracks(frame) {
                        Err(BackMapError::FrameOutside)
                    } else if !LAYOUT.has_page(page) {
                        Err(BackMapError::PageOutside)
                    } else {
                        match model.entry(page) {
                            Slot::Occupied(_) => Err(BackMapError::PageMapped),
                            Slot::Vacant(vacant) => {
                                vacant.insert(frame);
                                Ok(())
                            }
                        }
                    };
                    prop_assert_eq!(map.map(frame, page), expected);
                    expected.is_ok()
                }
                MapOp::Unmap { frame, page } => {
                    let (frame, page) = (any_frame(frame), any_page(page));
                    let expected = if !LAYOUT.tracks(frame) {
                        Err(BackMapError::FrameOutside)
                    } else if !LAYOUT.has_page(page) {
                        Err(BackMapError::PageOutside)
                    } else if model.get(&page) != Some(&frame) {
                        Err(BackMapError::NotMapped)
                    } else {
                        model.remove(&page);
                        Ok(())
                    };
                    prop_assert_eq!(map.unmap(frame, page), expected);
                    expected.is_ok()
                }
                MapOp::Release { frame } => {
                    let frame = any_frame(frame);
                    let count = model.values().filter(|&&f| f == frame).count() as u32;
                    let scrubs = memory.scrubbed.len();
                    let result = map.release(frame, &mut memory).map(|s| s.frame());
                    let expected = if !LAYOUT.tracks(frame) {
                        Err(BackMapError::FrameOutside)
                    } else if count > 0 {
                        Err(BackMapError::Referenced(count))
                    } else {
                        Ok(frame)
                    };
                    prop_assert_eq!(result, expected);
                    let scrubbed = memory.scrubbed.len() - scrubs;
                    prop_assert_eq!(scrubbed, usize::from(result.is_ok()));
                    false
                }
            };
            if !changed {
                prop_assert_eq!(format!("{map:?}"), before, "{:?} changed the map", op);
            }
            for index in 0..LAYOUT.frame_count() {
                let frame = LAYOUT.frame_at(index);
                let mut mappers: Vec<_> = map.mappers(frame).collect();
                mappers.sort();
                let expected: Vec<_> = model
                    .iter()
                    .filter(|&(_, &f)| f == frame)
                    .map(|(&page, _)| page)
                    .collect();
                prop_assert_eq!(map.references(frame) as usize, expected.len());
                prop_assert_eq!(mappers, expected);
            }
        }
    }
}
