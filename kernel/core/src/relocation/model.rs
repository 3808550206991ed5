//! An in-memory machine for the host tests of relocation: translation tables, the
//! translations the processors use (the tables as of the last flush, so a test
//! sees what a missing flush would let a guest do), and the contents of each
//! frame as one word (a guest's write replaces it).
//!
//! It panics when a frame is scrubbed while a table or a processor still
//! translates a guest page to it, so no test can pass with a frame released
//! while referenced.

use std::collections::BTreeMap;

use super::{Access, Entry, Frame, FrameMemory, GuestPage, Layout, Translation};

/// The machine as relocation and a guest see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// The translation tables.
    pub tables: BTreeMap<GuestPage, Entry>,
    /// What the processors use: the tables as of the last flush.
    pub seen: BTreeMap<GuestPage, Entry>,
    /// Each frame's contents (absent: zero).
    pub contents: BTreeMap<Frame, u64>,
    /// Every frame scrubbed, in order.
    pub scrubbed: Vec<Frame>,
    /// Every copy, in order: (from, to).
    pub copies: Vec<(Frame, Frame)>,
    /// How many flushes.
    pub flushes: usize,
}

/// What happened to a guest's write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// It landed.
    Done,
    /// The page is read-only on the processor: a write fault.
    Fault,
}

impl Machine {
    /// The identity translation of `layout`, each page writable at its home
    /// frame, which holds `initial(page)`; extra frames hold zeros.
    pub fn identity(layout: &Layout, initial: impl Fn(GuestPage) -> u64) -> Self {
        let mut machine = Machine::default();
        for page in layout.guest_pages() {
            let home = layout.home_of(page);
            let entry = Entry {
                frame: home,
                access: Access::ReadWrite,
            };
            machine.tables.insert(page, entry);
            machine.contents.insert(home, initial(page));
        }
        machine.seen = machine.tables.clone();
        machine
    }

    /// A guest writes `value` to `page`, through the processor's translation.
    pub fn guest_write(&mut self, page: GuestPage, value: u64) -> Write {
        let entry = self.seen[&page];
        match entry.access {
            Access::ReadWrite => {
                self.contents.insert(entry.frame, value);
                Write::Done
            }
            Access::ReadOnly => Write::Fault,
        }
    }

    /// What a guest reads from `page`, through the processor's translation.
    pub fn guest_read(&self, page: GuestPage) -> u64 {
        self.content(self.seen[&page].frame)
    }

    /// A frame's contents.
    pub fn content(&self, frame: Frame) -> u64 {
        self.contents.get(&frame).copied().unwrap_or(0)
    }
}

impl Translation for Machine {
    fn entry(&self, page: GuestPage) -> Option<Entry> {
        self.tables.get(&page).copied()
    }
    fn set(&mut self, page: GuestPage, entry: Entry) {
        self.tables.insert(page, entry);
    }
    fn write_protect(&mut self, page: GuestPage) {
        let entry = self
            .tables
            .get_mut(&page)
            .expect("write-protected an unmapped page");
        entry.access = Access::ReadOnly;
    }
    fn flush(&mut self) {
        self.seen = self.tables.clone();
        self.flushes += 1;
    }
}

impl FrameMemory for Machine {
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        self.contents.insert(to, self.content(from));
        self.copies.push((from, to));
    }
    fn scrub_frame(&mut self, frame: Frame) {
        let translated = |map: &BTreeMap<GuestPage, Entry>| map.values().any(|e| e.frame == frame);
        assert!(
            !translated(&self.tables) && !translated(&self.seen),
            "scrubbed {frame:?} while a guest page translates to it"
        );
        self.contents.remove(&frame);
        self.scrubbed.push(frame);
    }
}
