//! Relocation over real tables: the toy format's tables and heap memory standing
//! in for machine memory, driven by the core's `Relocation`.

use std::cell::Cell;
use std::rc::Rc;

use septum_core::memory::Range;
use septum_core::relocation::{
    Access, Entry, Frame, FrameRange, GuestPage, Layout, Progress, Relocation, Translation,
};

use super::{MachineMemory, RelocatableTables};
use crate::paging::tests::{Toy, pool};
use crate::paging::{PAGE, Tables};

const GUEST_BASE: u64 = 0x4000_0000;
const PAGES: u64 = 8;
const EXTRA: u64 = 5;
const RAM: u64 = 0b1000 | 0b1_0000;

unsafe fn zero(address: u64) {
    // SAFETY: the tests pass pages of their own pool.
    unsafe { core::ptr::write_bytes(address as *mut u8, 0, PAGE as usize) };
}

fn memory() -> MachineMemory {
    // SAFETY: the tests' frames are pages of their own pool, and `zero` zeroes one.
    unsafe { MachineMemory::new(zero, |_| {}) }
}

fn word(frame: Frame) -> u64 {
    // SAFETY: the tests' frames are pages of their own pool.
    unsafe { *((frame.0 * PAGE) as *const u64) }
}

fn fill(frame: Frame, value: u64) {
    // SAFETY: as in `word`.
    unsafe { *((frame.0 * PAGE) as *mut u64) = value };
}

/// Runs `relocation`'s work to the end over `tables`, counting the flushes.
fn finish(relocation: &mut Relocation, tables: &mut Tables<Toy>, flushes: &Rc<Cell<u32>>) {
    let counter = flushes.clone();
    let mut flush = move || counter.set(counter.get() + 1);
    let mut machine = RelocatableTables::new(tables, RAM, &mut flush, memory());
    for _ in 0..10_000 {
        if relocation.step(&mut machine) == Progress::Done {
            return;
        }
    }
    panic!("the relocation never finished");
}

/// Verifies: SK-RIP-005
#[test]
fn pages_move_through_real_tables_and_come_home_with_their_contents() {
    let (_pages, mut frames) = pool();
    let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
    let home = frames.allocate(PAGES * PAGE, PAGE).unwrap();
    let extra = frames.allocate(EXTRA * PAGE, PAGE).unwrap();
    let guest = Range::from_start_size(GUEST_BASE, PAGES * PAGE).unwrap();
    tables
        .map_pages(&mut frames, guest, home.start, RAM)
        .unwrap();
    let layout = Layout {
        guest_base: GuestPage(GUEST_BASE / PAGE),
        home: Frame(home.start / PAGE),
        pages: PAGES,
        extra: FrameRange {
            first: Frame(extra.start / PAGE),
            count: EXTRA,
        },
    };
    for page in layout.guest_pages() {
        fill(layout.home_of(page), page.0);
    }
    let mut relocation = Relocation::new(layout).unwrap();
    let flushes = Rc::new(Cell::new(0));

    // Evacuate the first four home frames: their pages land in extra frames,
    // writable, with their contents; the frames left are scrubbed.
    let evacuated = FrameRange {
        first: layout.home,
        count: 4,
    };
    relocation.evacuate(evacuated).unwrap();
    finish(&mut relocation, &mut tables, &flushes);
    let mut flush = || {};
    let view = RelocatableTables::new(&mut tables, RAM, &mut flush, memory());
    for page in layout.guest_pages() {
        let entry = view.entry(page).expect("every page is mapped");
        assert_eq!(entry.access, Access::ReadWrite);
        assert_eq!(
            word(entry.frame),
            page.0,
            "the contents moved with the page"
        );
        let moved = evacuated.contains(layout.home_of(page));
        assert_eq!(entry.frame != layout.home_of(page), moved);
        if moved {
            assert!(layout.extra.contains(entry.frame));
            assert_eq!(word(layout.home_of(page)), 0, "the frame left is scrubbed");
        }
    }
    assert!(
        flushes.get() >= 8,
        "each move flushes after protecting and after remapping"
    );

    // Devirtualize: every page is back at its home frame, writable, with its
    // contents, and the translation is the identity placement again.
    relocation.devirtualize().unwrap();
    finish(&mut relocation, &mut tables, &flushes);
    let view = RelocatableTables::new(&mut tables, RAM, &mut flush, memory());
    for page in layout.guest_pages() {
        let home = layout.home_of(page);
        assert_eq!(
            view.entry(page),
            Some(Entry {
                frame: home,
                access: Access::ReadWrite
            })
        );
        assert_eq!(word(home), page.0);
    }
    assert!(layout.extra.frames().all(|frame| word(frame) == 0));
}

/// Verifies: SK-RIP-005
#[test]
fn write_protection_keeps_the_frame_and_a_remap_breaks_before_it_makes() {
    let (_pages, mut frames) = pool();
    let mut tables = Tables::<Toy>::new(&mut frames).unwrap();
    let ram = frames.allocate(2 * PAGE, PAGE).unwrap();
    let guest = Range::from_start_size(GUEST_BASE, PAGE).unwrap();
    tables
        .map_pages(&mut frames, guest, ram.start, RAM)
        .unwrap();
    let flushes = Rc::new(Cell::new(0));
    let counter = flushes.clone();
    let mut flush = move || counter.set(counter.get() + 1);
    let mut view = RelocatableTables::new(&mut tables, RAM, &mut flush, memory());
    let page = GuestPage(GUEST_BASE / PAGE);
    let first = Frame(ram.start / PAGE);
    view.write_protect(page);
    assert_eq!(
        view.entry(page),
        Some(Entry {
            frame: first,
            access: Access::ReadOnly
        })
    );
    assert_eq!(flushes.get(), 0, "a change of permission needs no flush");
    let second = Frame(first.0 + 1);
    let moved = Entry {
        frame: second,
        access: Access::ReadWrite,
    };
    view.set(page, moved);
    assert_eq!(view.entry(page), Some(moved));
    assert_eq!(
        flushes.get(),
        1,
        "the old translation is flushed before the new one"
    );
    assert_eq!(
        view.entry(GuestPage(page.0 + 1)),
        None,
        "nothing else is mapped"
    );
}
