//! The back map: for each tracked machine frame, the guest pages that map it and
//! how many they are. It is the one record of that fact; the translation tables
//! hold the forward one (which frame a page maps).
//!
//! Each frame has a reference count and a list of its pages, threaded through
//! one link per guest page (a page maps at most one frame, so it is in at most
//! one list), so the map is two words per frame and one per page, allocated once.
//!
//! Invariants: a frame's count is the length of its list; a page is in the list
//! of the frame it maps and in no other; and a frame is released (scrubbed, and
//! handed over as [`Scrubbed`], the only way into the pool) only when its count
//! is zero.

use alloc::vec;
use alloc::vec::Vec;

use super::{Frame, FrameMemory, GuestPage, Layout};

/// Why a back-map operation was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackMapError {
    /// The frame is not one the partition's pages may map.
    FrameOutside,
    /// The page is not one of the partition's.
    PageOutside,
    /// The page already maps a frame (unmap it first).
    PageMapped,
    /// The page does not map this frame.
    NotMapped,
    /// Guest pages still map the frame (this many): it cannot be released.
    Referenced(u32),
}

/// A frame the back map released: no guest page mapped it, and it was scrubbed.
/// Only [`BackMap::release`] makes one (and the relocation, for the extra frames
/// its caller hands over zeroed), and only the pool takes one.
#[must_use = "a released frame belongs in the pool"]
#[derive(Debug, PartialEq, Eq)]
pub struct Scrubbed {
    frame: Frame,
}

impl Scrubbed {
    /// A frame the caller guarantees unmapped and zero.
    pub(super) fn given(frame: Frame) -> Self {
        Scrubbed { frame }
    }

    /// The frame.
    pub fn frame(&self) -> Frame {
        self.frame
    }
}

/// Where a guest page is in the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// It maps no frame.
    Unmapped,
    /// It maps a frame; `next` is the next page (by index) in that frame's list.
    Mapped { next: Option<u32> },
}

/// The guest pages of each tracked frame (see the module doc).
#[derive(Debug)]
pub struct BackMap {
    layout: Layout,
    /// Per frame index: how many pages map it.
    references: Vec<u32>,
    /// Per frame index: the first page (by index) of its list.
    first: Vec<Option<u32>>,
    /// Per page index: its place in a list.
    links: Vec<Link>,
}

impl BackMap {
    /// An empty back map of `layout`'s frames and pages (it allocates).
    pub fn new(layout: Layout) -> Self {
        BackMap {
            layout,
            references: vec![0; layout.frame_count()],
            first: vec![None; layout.frame_count()],
            links: vec![Link::Unmapped; layout.pages as usize],
        }
    }

    /// Records that `page` maps `frame`. The page must map no frame yet.
    pub fn map(&mut self, frame: Frame, page: GuestPage) -> Result<(), BackMapError> {
        let (frame_index, page_index) = self.indices(frame, page)?;
        if self.links[page_index] != Link::Unmapped {
            return Err(BackMapError::PageMapped);
        }
        self.links[page_index] = Link::Mapped {
            next: self.first[frame_index],
        };
        self.first[frame_index] = Some(page_index as u32);
        self.references[frame_index] += 1;
        Ok(())
    }

    /// Records that `page` no longer maps `frame`. It must map it.
    pub fn unmap(&mut self, frame: Frame, page: GuestPage) -> Result<(), BackMapError> {
        let (frame_index, page_index) = self.indices(frame, page)?;
        let target = page_index as u32;
        let Link::Mapped { next: after } = self.links[page_index] else {
            return Err(BackMapError::NotMapped);
        };
        let mut previous: Option<u32> = None;
        let mut cursor = self.first[frame_index];
        while let Some(current) = cursor {
            if current == target {
                match previous {
                    None => self.first[frame_index] = after,
                    Some(before) => {
                        self.links[before as usize] = Link::Mapped { next: after };
                    }
                }
                self.links[page_index] = Link::Unmapped;
                self.references[frame_index] -= 1;
                return Ok(());
            }
            previous = cursor;
            cursor = self.next(current);
        }
        Err(BackMapError::NotMapped)
    }

    /// How many guest pages map `frame` (zero for a frame not tracked).
    pub fn references(&self, frame: Frame) -> u32 {
        self.layout
            .frame_index(frame)
            .map_or(0, |index| self.references[index])
    }

    /// Whether any guest page maps `frame`.
    pub fn is_referenced(&self, frame: Frame) -> bool {
        self.references(frame) > 0
    }

    /// The guest pages that map `frame` (none for a frame not tracked).
    pub fn mappers(&self, frame: Frame) -> Mappers<'_> {
        Mappers {
            map: self,
            cursor: self
                .layout
                .frame_index(frame)
                .and_then(|index| self.first[index]),
        }
    }

    /// Whether `page` maps `frame`.
    pub fn maps(&self, frame: Frame, page: GuestPage) -> bool {
        self.mappers(frame).any(|mapper| mapper == page)
    }

    /// Releases `frame`: refused while a guest page maps it; otherwise it is
    /// scrubbed through `memory` and handed back as [`Scrubbed`].
    pub fn release(
        &self,
        frame: Frame,
        memory: &mut (impl FrameMemory + ?Sized),
    ) -> Result<Scrubbed, BackMapError> {
        let index = self
            .layout
            .frame_index(frame)
            .ok_or(BackMapError::FrameOutside)?;
        match self.references[index] {
            0 => {
                memory.scrub_frame(frame);
                Ok(Scrubbed { frame })
            }
            count => Err(BackMapError::Referenced(count)),
        }
    }

    fn indices(&self, frame: Frame, page: GuestPage) -> Result<(usize, usize), BackMapError> {
        let frame_index = self
            .layout
            .frame_index(frame)
            .ok_or(BackMapError::FrameOutside)?;
        let page_index = self
            .layout
            .page_index(page)
            .ok_or(BackMapError::PageOutside)?;
        Ok((frame_index, page_index))
    }

    fn next(&self, page_index: u32) -> Option<u32> {
        match self.links[page_index as usize] {
            Link::Mapped { next } => next,
            Link::Unmapped => None,
        }
    }
}

/// The guest pages that map one frame, most recently mapped first.
#[derive(Debug)]
pub struct Mappers<'a> {
    map: &'a BackMap,
    cursor: Option<u32>,
}

impl Iterator for Mappers<'_> {
    type Item = GuestPage;
    fn next(&mut self) -> Option<GuestPage> {
        let current = self.cursor?;
        self.cursor = self.map.next(current);
        Some(self.map.layout.page_at(current as usize))
    }
}
