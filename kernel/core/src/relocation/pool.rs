//! The free pool: the tracked frames no guest page maps, each scrubbed.
//!
//! A frame enters only as a [`Scrubbed`] (released by the back map, or handed
//! over zeroed when the relocation is built) and joins the *back* of a queue;
//! any frame is taken from the *front*. So frames freed while an evacuation runs
//! are taken only after every frame that was free when it began, and an
//! evacuation that found enough free frames never moves a page into a frame it
//! emptied. A particular frame (a home frame, for devirtualization) can also be
//! taken from wherever it is.
//!
//! Invariants: each frame is in the queue at most once; `links` holds, for each
//! free frame, its neighbours, and `None` for every other; `front` and `back` are
//! the ends; every operation is constant time (a doubly linked queue threaded
//! through one link per tracked frame, allocated once).

use alloc::vec;
use alloc::vec::Vec;

use super::{Frame, Layout, Scrubbed};

/// A free frame's neighbours in the queue (frame indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Neighbours {
    /// Toward the front.
    before: Option<u32>,
    /// Toward the back.
    after: Option<u32>,
}

/// The free frames (see the module doc).
#[derive(Debug)]
pub struct FramePool {
    layout: Layout,
    /// Per frame index: its neighbours, if it is free.
    links: Vec<Option<Neighbours>>,
    front: Option<u32>,
    back: Option<u32>,
    len: usize,
}

impl FramePool {
    /// An empty pool for `layout`'s frames (it allocates).
    pub(super) fn new(layout: Layout) -> Self {
        FramePool {
            layout,
            links: vec![None; layout.frame_count()],
            front: None,
            back: None,
            len: 0,
        }
    }

    /// How many frames are free.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is free.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `frame` is free.
    pub fn contains(&self, frame: Frame) -> bool {
        self.layout
            .frame_index(frame)
            .is_some_and(|index| self.links[index].is_some())
    }

    /// The free frames, from the front (the next taken) to the back.
    pub fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        core::iter::successors(self.front, |&index| {
            self.links[index as usize].and_then(|links| links.after)
        })
        .map(|index| self.layout.frame_at(index as usize))
    }

    /// Puts a released frame at the back.
    pub(super) fn put(&mut self, frame: Scrubbed) {
        let index = self
            .layout
            .frame_index(frame.frame())
            .expect("the back map releases only tracked frames");
        assert!(self.links[index].is_none(), "a frame freed twice");
        let index = index as u32;
        self.links[index as usize] = Some(Neighbours {
            before: self.back,
            after: None,
        });
        match self.back {
            Some(back) => self.neighbours(back).after = Some(index),
            None => self.front = Some(index),
        }
        self.back = Some(index);
        self.len += 1;
    }

    /// Takes the front frame, if any.
    pub(super) fn take_any(&mut self) -> Option<Frame> {
        let index = self.front?;
        self.unlink(index);
        Some(self.layout.frame_at(index as usize))
    }

    /// Takes `frame` if it is free.
    pub(super) fn take(&mut self, frame: Frame) -> bool {
        match self.layout.frame_index(frame) {
            Some(index) if self.links[index].is_some() => {
                self.unlink(index as u32);
                true
            }
            _ => false,
        }
    }

    fn unlink(&mut self, index: u32) {
        let Neighbours { before, after } = self.links[index as usize]
            .take()
            .expect("only free frames are unlinked");
        match before {
            Some(before) => self.neighbours(before).after = after,
            None => self.front = after,
        }
        match after {
            Some(after) => self.neighbours(after).before = before,
            None => self.back = before,
        }
        self.len -= 1;
    }

    fn neighbours(&mut self, index: u32) -> &mut Neighbours {
        self.links[index as usize]
            .as_mut()
            .expect("a neighbour in the queue is free")
    }
}
