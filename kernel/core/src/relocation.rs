//! Relocation: moving a running partition's pages between machine frames under
//! the kernel's translation, and bringing every page back to its home frame so
//! the translation can be turned off again (devirtualization).
//!
//! **Model.** A relocatable partition has `pages` guest pages from `guest_base`;
//! guest page `guest_base + i` has its *home frame* `home + i`, the frame it is
//! placed at (with identity placement, `at` equal to the guest-physical base, a
//! page's home frame has the page's own number). The kernel also lends it *extra frames* (one range):
//! the first is the *spare*, kept aside for devirtualization, and the rest start
//! in the *free pool*. When the partition is taken under translation, every page
//! maps its home frame, writable: that is where a [`Relocation`] starts, and where
//! devirtualization brings it back.
//!
//! This module owns three facts, each in one place:
//! - which guest pages map each machine frame, with reference counts: the
//!   [`BackMap`]; the forward fact (which frame a guest page maps, and whether it
//!   may write it) belongs to the translation tables, reached through the
//!   [`Translation`] trait the back ends implement for their stage-2/EPT tables;
//! - which frames are free: the [`FramePool`], which only takes frames that the
//!   back map released, and the back map releases a frame only when no guest page
//!   maps it, scrubbing it on the way ([`BackMap::release`] gives the only
//!   [`Scrubbed`] there is);
//! - what is under way: one evacuation or one devirtualization at a time, driven a
//!   bounded step at a time by the kernel ([`Relocation::step`]), so the work is
//!   preemptible and spread over the kernel's turns.
//!
//! **One move.** A frame's contents move to another frame in six steps: its guest
//! pages are write-protected; the translations are flushed (so no processor
//! still holds a writable translation of it); the contents are copied; the pages
//! are remapped, writable, to the new frame; the translations are flushed again;
//! the old frame is released, scrubbed. A guest write to a page in between faults,
//! and [`Relocation::write_fault`] answers [`WriteFault::Wait`]: the kernel resumes
//! the guest when a step reports [`Progress::Resumable`], and its write lands in
//! the new frame. A write is never lost: before the first flush it lands in the
//! old frame, which is copied after the flush; after it, it waits. (The first
//! flush is what makes the copy safe: without it a processor could keep writing
//! the old frame through a translation it cached before the protection.)
//!
//! **Devirtualization.** Each page not at home goes home: a page whose home frame
//! is free moves there directly; a page whose home frame holds another page waits
//! for that page to go home first (a chain, followed a page per step); when the
//! chain comes back to the first page (a cycle: pages that would swap), the first
//! page moves to the spare, which frees the home frame the cycle needs, and it
//! moves home last, freeing the spare. A frame a page leaves that is the home of a
//! page not yet home is where that page goes next, so a chain unwinds at a move
//! per page. Pages already home are never touched. Every frame a page leaves is
//! scrubbed as it is released, the spare too, even when the next move fills it
//! at once: scrubbing is tied to release, not to who uses the frame next.
//!
//! Invariants (property-tested in `relocation/properties.rs`):
//! - every guest page maps exactly one tracked frame; a frame is mapped by at most
//!   one guest page (the identity is one to one, and every move carries all of a
//!   frame's pages to a free frame); the back map lists exactly the pages the
//!   translation maps to each frame, and a frame's reference count is the length of
//!   that list;
//! - every tracked frame is mapped, free in the pool, the spare, or (within a
//!   move) the target just taken or the frame being left;
//! - no frame is scrubbed or released while a guest page maps it; every frame in
//!   the pool, and the spare while unused, holds zeros;
//! - no guest write is lost, and devirtualization ends with every page writable at
//!   its home frame;
//! - every request checks all its arguments first and changes nothing when it
//!   fails.

mod back_map;
mod pool;
mod steps;

#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use back_map::{BackMap, BackMapError, Mappers, Scrubbed};
pub use pool::FramePool;

use steps::{Devirtualization, Evacuation};

/// A machine frame: a 4 KiB page of machine memory, by number (address / 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(pub u64);

/// A guest-physical page, by number (guest-physical address / 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPage(pub u64);

/// Consecutive machine frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRange {
    /// The first frame.
    pub first: Frame,
    /// How many frames.
    pub count: u64,
}

impl FrameRange {
    /// Whether `frame` is one of the range's frames.
    pub fn contains(&self, frame: Frame) -> bool {
        frame.0 >= self.first.0 && frame.0 - self.first.0 < self.count
    }

    /// The range's frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = Frame> + use<> {
        let first = self.first.0;
        (first..first + self.count).map(Frame)
    }
}

/// What a guest may do with a page its translation maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read, write and execute.
    ReadWrite,
    /// Read and execute; a write faults.
    ReadOnly,
}

/// One guest page's translation: the frame it maps and what the guest may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The machine frame.
    pub frame: Frame,
    /// The guest's access.
    pub access: Access,
}

/// A partition's second-stage translation (stage-2 on aarch64, EPT on x86), as
/// relocation drives it. Changes take effect for the guest at the latest at the
/// next [`flush`](Translation::flush); until then a processor may still use the
/// translation it held before.
pub trait Translation {
    /// The translation of `page`, or `None` if it maps nothing.
    fn entry(&self, page: GuestPage) -> Option<Entry>;
    /// Maps `page` to `entry`, replacing what it mapped.
    fn set(&mut self, page: GuestPage, entry: Entry);
    /// Takes write permission from `page`, which keeps its frame.
    fn write_protect(&mut self, page: GuestPage);
    /// Makes every change so far hold on every processor: after it, none uses an
    /// older translation of this partition.
    fn flush(&mut self);
}

/// Machine memory, as relocation reads and writes it (a frame at a time).
pub trait FrameMemory {
    /// Copies the contents of frame `from` to frame `to`.
    fn copy_frame(&mut self, from: Frame, to: Frame);
    /// Fills `frame` with zeros.
    fn scrub_frame(&mut self, frame: Frame);
}

/// A machine relocation drives: translation tables and memory.
pub trait Machine: Translation + FrameMemory {}

impl<M: Translation + FrameMemory + ?Sized> Machine for M {}

/// Where a relocatable partition's pages and frames are (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The partition's first guest page.
    pub guest_base: GuestPage,
    /// The home frame of its first page.
    pub home: Frame,
    /// How many pages it has (each has a home frame).
    pub pages: u64,
    /// The frames lent for moves: the first is the spare, the rest the pool.
    pub extra: FrameRange,
}

/// Why a [`Layout`] cannot be relocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The partition has no pages.
    NoPages,
    /// No extra frames: devirtualization needs at least the spare.
    NoSpare,
    /// The extra frames overlap the home frames.
    Overlap,
    /// A range wraps around, or there are more frames than 32 bits count.
    TooLarge,
}

impl Layout {
    /// The home frames, as a range.
    pub fn home_frames(&self) -> FrameRange {
        FrameRange {
            first: self.home,
            count: self.pages,
        }
    }

    /// Whether `page` is one of the partition's pages.
    pub fn has_page(&self, page: GuestPage) -> bool {
        page.0 >= self.guest_base.0 && page.0 - self.guest_base.0 < self.pages
    }

    /// The home frame of `page` (one of the partition's pages).
    pub fn home_of(&self, page: GuestPage) -> Frame {
        Frame(self.home.0 + (page.0 - self.guest_base.0))
    }

    /// The page whose home is `frame`, if `frame` is a home frame.
    pub fn owner_of(&self, frame: Frame) -> Option<GuestPage> {
        self.home_frames()
            .contains(frame)
            .then(|| GuestPage(self.guest_base.0 + (frame.0 - self.home.0)))
    }

    /// The spare frame (the first extra frame).
    pub fn spare(&self) -> Frame {
        self.extra.first
    }

    /// Whether `frame` is one this partition's pages may map.
    pub fn tracks(&self, frame: Frame) -> bool {
        self.home_frames().contains(frame) || self.extra.contains(frame)
    }

    /// The partition's pages, in order.
    pub fn guest_pages(&self) -> impl Iterator<Item = GuestPage> + use<> {
        let first = self.guest_base.0;
        (first..first + self.pages).map(GuestPage)
    }

    fn check(&self) -> Result<(), LayoutError> {
        if self.pages == 0 {
            return Err(LayoutError::NoPages);
        }
        if self.extra.count == 0 {
            return Err(LayoutError::NoSpare);
        }
        let ends = [
            self.guest_base.0.checked_add(self.pages),
            self.home.0.checked_add(self.pages),
            self.extra.first.0.checked_add(self.extra.count),
        ];
        let total = self.pages.checked_add(self.extra.count);
        if ends.contains(&None) || total.is_none_or(|total| total > u64::from(u32::MAX)) {
            return Err(LayoutError::TooLarge);
        }
        let home_end = self.home.0 + self.pages;
        let extra_end = self.extra.first.0 + self.extra.count;
        if self.home.0 < extra_end && self.extra.first.0 < home_end {
            return Err(LayoutError::Overlap);
        }
        Ok(())
    }

    /// The index of a tracked frame: home frames first, then extra frames.
    fn frame_index(&self, frame: Frame) -> Option<usize> {
        if self.home_frames().contains(frame) {
            Some((frame.0 - self.home.0) as usize)
        } else if self.extra.contains(frame) {
            Some((self.pages + frame.0 - self.extra.first.0) as usize)
        } else {
            None
        }
    }

    /// The frame at a tracked frame index.
    fn frame_at(&self, index: usize) -> Frame {
        let index = index as u64;
        if index < self.pages {
            Frame(self.home.0 + index)
        } else {
            Frame(self.extra.first.0 + index - self.pages)
        }
    }

    /// How many frames are tracked.
    fn frame_count(&self) -> usize {
        (self.pages + self.extra.count) as usize
    }

    /// The index of one of the partition's pages.
    fn page_index(&self, page: GuestPage) -> Option<usize> {
        self.has_page(page)
            .then(|| (page.0 - self.guest_base.0) as usize)
    }

    /// The page at a page index.
    fn page_at(&self, index: usize) -> GuestPage {
        GuestPage(self.guest_base.0 + index as u64)
    }
}

/// Why a relocation request was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocationError {
    /// The range is empty, or holds a frame this partition's pages may not map.
    OutsidePartition,
    /// No guest page maps this frame of the range: there is nothing to move.
    NotMapped(Frame),
    /// The pool holds fewer free frames than the range has.
    PoolShort {
        /// Frames the range has.
        needed: u64,
        /// Frames free in the pool.
        free: u64,
    },
    /// An evacuation or a devirtualization is already under way: its pages are in
    /// flight.
    InFlight,
}

/// What a step did, and what the kernel does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More work remains: step again (now or in a later turn).
    Continue,
    /// A move is far enough that the guests waiting on its pages
    /// ([`WriteFault::Wait`]) may resume; more work remains.
    Resumable,
    /// Nothing is under way (any evacuation or devirtualization has finished; a
    /// devirtualization leaves every page at home, and the translation may be
    /// turned off).
    Done,
}

/// The answer to a guest's write fault on one of its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// The page is being moved: the guest waits, and retries its write once a
    /// step reports [`Progress::Resumable`].
    Wait,
    /// Relocation did not protect this page: an ordinary fault.
    NotMoving,
}

/// What a relocation is doing.
#[derive(Debug)]
enum Work {
    Idle,
    Evacuating(Evacuation),
    Devirtualizing(Devirtualization),
}

/// A relocatable partition's frames: the back map, the pool, the spare, and the
/// work under way.
#[derive(Debug)]
pub struct Relocation {
    layout: Layout,
    back_map: BackMap,
    pool: FramePool,
    work: Work,
}

impl Relocation {
    /// A relocation of `layout` at the identity: every page maps its home frame,
    /// writable, and every extra frame but the spare is in the pool. The caller's
    /// translation must be that identity and the extra frames must hold zeros.
    /// It allocates; the kernel builds it when it builds the system.
    pub fn new(layout: Layout) -> Result<Self, LayoutError> {
        layout.check()?;
        let mut back_map = BackMap::new(layout);
        for page in layout.guest_pages() {
            back_map
                .map(layout.home_of(page), page)
                .expect("each page once, to its own home frame");
        }
        let mut pool = FramePool::new(layout);
        for frame in layout.extra.frames().skip(1) {
            pool.put(Scrubbed::given(frame));
        }
        Ok(Relocation {
            layout,
            back_map,
            pool,
            work: Work::Idle,
        })
    }

    /// Which guest pages map which frames.
    pub fn back_map(&self) -> &BackMap {
        &self.back_map
    }

    /// The free frames.
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// Whether an evacuation or devirtualization is under way.
    pub fn is_busy(&self) -> bool {
        !matches!(self.work, Work::Idle)
    }

    /// Starts moving every page that maps a frame of `range` to frames from the
    /// pool, a step at a time. The range must hold only tracked frames, each
    /// mapped, the pool must hold at least as many frames as the range, and
    /// nothing else may be under way. The frames the range leaves go to the pool,
    /// behind every frame that was free before, so an evacuation never moves a
    /// page into a frame it emptied.
    pub fn evacuate(&mut self, range: FrameRange) -> Result<(), RelocationError> {
        if self.is_busy() {
            return Err(RelocationError::InFlight);
        }
        let inside = range.count > 0
            && range.first.0.checked_add(range.count).is_some()
            && range.frames().all(|frame| self.layout.tracks(frame));
        if !inside {
            return Err(RelocationError::OutsidePartition);
        }
        if let Some(frame) = range
            .frames()
            .find(|&frame| !self.back_map.is_referenced(frame))
        {
            return Err(RelocationError::NotMapped(frame));
        }
        let free = self.pool.len() as u64;
        if free < range.count {
            return Err(RelocationError::PoolShort {
                needed: range.count,
                free,
            });
        }
        self.work = Work::Evacuating(Evacuation::new(range));
        Ok(())
    }

    /// Starts bringing every page back to its home frame, a step at a time, so
    /// the translation is the identity again. Nothing else may be under way.
    pub fn devirtualize(&mut self) -> Result<(), RelocationError> {
        if self.is_busy() {
            return Err(RelocationError::InFlight);
        }
        self.work = Work::Devirtualizing(Devirtualization::new());
        Ok(())
    }

    /// The layout it relocates.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The first page on which `translation` and the back map disagree: a page
    /// that maps nothing, maps a frame the back map does not list it under, or,
    /// with no work under way, is not writable. `None` when they agree.
    pub fn disagreement(&self, translation: &(impl Translation + ?Sized)) -> Option<GuestPage> {
        self.layout
            .guest_pages()
            .find(|&page| match translation.entry(page) {
                None => true,
                Some(entry) => {
                    !self.back_map.maps(entry.frame, page)
                        || (!self.is_busy() && entry.access != Access::ReadWrite)
                }
            })
    }

    /// How many pages map a frame other than their home frame.
    pub fn pages_away(&self, translation: &(impl Translation + ?Sized)) -> u64 {
        self.layout
            .guest_pages()
            .filter(|&page| {
                translation
                    .entry(page)
                    .is_none_or(|entry| entry.frame != self.layout.home_of(page))
            })
            .count() as u64
    }

    /// Answers a guest's write fault on `page`: [`WriteFault::Wait`] if a move
    /// under way protects it.
    pub fn write_fault(&self, page: GuestPage) -> WriteFault {
        let moving = match &self.work {
            Work::Idle => None,
            Work::Evacuating(evacuation) => evacuation.current(),
            Work::Devirtualizing(devirtualization) => devirtualization.current(),
        };
        match moving {
            Some(move_) if move_.protects(page, &self.back_map) => WriteFault::Wait,
            _ => WriteFault::NotMoving,
        }
    }
}
