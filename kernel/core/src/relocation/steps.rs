//! The work of a relocation, a bounded step at a time: one frame's move (six
//! stages), an evacuation (a move per frame of a range), and a devirtualization
//! (a scan of the pages, chains followed a page per step, a move per page not at
//! home). Each step does one stage of one move, or looks at one page, so its cost
//! does not grow with the partition (a move's stages touch each page mapping the
//! frame, which is one).
//!
//! The requests were checked when the work began ([`Relocation::evacuate`],
//! [`Relocation::devirtualize`]); what a step relies on beyond them is the
//! module's invariants, and a step that finds one broken stops the kernel
//! (`expect`) rather than move on from a state it does not understand.

use super::{
    Access, BackMap, Entry, Frame, FrameMemory, FramePool, FrameRange, GuestPage, Layout, Progress,
    Relocation, Translation, Work,
};

/// What a move does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Take write permission from the frame's pages.
    Protect,
    /// Flush, so no processor writes the frame any more.
    FlushProtect,
    /// Copy the frame to the target.
    Copy,
    /// Map the pages to the target, writable.
    Remap,
    /// Flush, so every processor uses the target.
    FlushRemap,
    /// Release the frame left, scrubbed.
    Release,
}

/// One frame's contents and pages moving to another frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct Move {
    from: Frame,
    to: Frame,
    stage: Stage,
}

/// What one step of a move did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MoveStep {
    /// A stage done; more follow.
    Continue,
    /// The pages are writable at the target on every processor.
    Resumable,
    /// The old frame is released: the move is over.
    Finished,
}

/// The parts of a relocation a step changes.
struct Parts<'a> {
    layout: &'a Layout,
    back_map: &'a mut BackMap,
    pool: &'a mut FramePool,
}

impl Move {
    /// A move of `from`'s pages to `to`, which the caller took out of the pool
    /// (or is the unused spare).
    fn new(from: Frame, to: Frame) -> Self {
        Move {
            from,
            to,
            stage: Stage::Protect,
        }
    }

    /// Whether `page` is write-protected by this move: from the protection to
    /// the flush after the remap.
    pub(super) fn protects(&self, page: GuestPage, back_map: &BackMap) -> bool {
        match self.stage {
            Stage::Protect | Stage::Release => false,
            Stage::FlushProtect | Stage::Copy | Stage::Remap => back_map.maps(self.from, page),
            Stage::FlushRemap => back_map.maps(self.to, page),
        }
    }

    fn step<M: Translation + FrameMemory + ?Sized>(
        &mut self,
        parts: &mut Parts,
        machine: &mut M,
    ) -> MoveStep {
        let (next, outcome) = match self.stage {
            Stage::Protect => {
                for page in parts.back_map.mappers(self.from) {
                    machine.write_protect(page);
                }
                (Stage::FlushProtect, MoveStep::Continue)
            }
            Stage::FlushProtect => {
                machine.flush();
                (Stage::Copy, MoveStep::Continue)
            }
            Stage::Copy => {
                machine.copy_frame(self.from, self.to);
                (Stage::Remap, MoveStep::Continue)
            }
            Stage::Remap => {
                while let Some(page) = parts.back_map.mappers(self.from).next() {
                    parts
                        .back_map
                        .unmap(self.from, page)
                        .expect("a mapper of the frame");
                    parts
                        .back_map
                        .map(self.to, page)
                        .expect("the target is tracked and the page was just unmapped");
                    machine.set(
                        page,
                        Entry {
                            frame: self.to,
                            access: Access::ReadWrite,
                        },
                    );
                }
                (Stage::FlushRemap, MoveStep::Continue)
            }
            Stage::FlushRemap => {
                machine.flush();
                (Stage::Release, MoveStep::Resumable)
            }
            Stage::Release => {
                let scrubbed = parts
                    .back_map
                    .release(self.from, machine)
                    .expect("every page of the frame left it");
                if self.from == parts.layout.spare() {
                    // The spare stays aside for the next cycle, zero.
                    drop(scrubbed);
                } else {
                    parts.pool.put(scrubbed);
                }
                (Stage::Release, MoveStep::Finished)
            }
        };
        self.stage = next;
        outcome
    }
}

impl MoveStep {
    fn progress(self) -> Progress {
        match self {
            MoveStep::Resumable => Progress::Resumable,
            MoveStep::Continue | MoveStep::Finished => Progress::Continue,
        }
    }
}

/// An evacuation of a range: its frames' pages move, one frame after another,
/// to frames from the top of the pool.
#[derive(Debug)]
pub(super) struct Evacuation {
    range: FrameRange,
    /// Frames of the range whose moves have begun.
    begun: u64,
    moving: Option<Move>,
}

impl Evacuation {
    /// An evacuation of `range`, checked by [`Relocation::evacuate`].
    pub(super) fn new(range: FrameRange) -> Self {
        Evacuation {
            range,
            begun: 0,
            moving: None,
        }
    }

    /// The move under way, if any.
    pub(super) fn current(&self) -> Option<&Move> {
        self.moving.as_ref()
    }

    fn step<M: Translation + FrameMemory + ?Sized>(
        &mut self,
        parts: &mut Parts,
        machine: &mut M,
    ) -> Progress {
        let move_ = match &mut self.moving {
            Some(move_) => move_,
            None if self.begun == self.range.count => return Progress::Done,
            None => {
                let to = parts
                    .pool
                    .take_any()
                    .expect("the pool held a frame for each frame of the range");
                let from = Frame(self.range.first.0 + self.begun);
                self.begun += 1;
                self.moving.insert(Move::new(from, to))
            }
        };
        let step = move_.step(parts, machine);
        if step == MoveStep::Finished {
            self.moving = None;
        }
        step.progress()
    }
}

/// Where a devirtualization is.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Looking at the page at the cursor.
    Scan,
    /// Following the chain from `start`: `current`'s home frame holds another
    /// page, which must go home first.
    Follow {
        start: GuestPage,
        current: GuestPage,
    },
    /// A page going home, or the first page of a cycle going to the spare.
    Moving(Move),
}

/// A devirtualization: every page back to its home frame.
#[derive(Debug)]
pub(super) struct Devirtualization {
    /// Pages before it are at home.
    cursor: u64,
    phase: Phase,
}

impl Devirtualization {
    /// A devirtualization from the first page.
    pub(super) fn new() -> Self {
        Devirtualization {
            cursor: 0,
            phase: Phase::Scan,
        }
    }

    /// The move under way, if any.
    pub(super) fn current(&self) -> Option<&Move> {
        match &self.phase {
            Phase::Moving(move_) => Some(move_),
            Phase::Scan | Phase::Follow { .. } => None,
        }
    }

    fn step<M: Translation + FrameMemory + ?Sized>(
        &mut self,
        parts: &mut Parts,
        machine: &mut M,
    ) -> Progress {
        let frame_of = |machine: &M, page| {
            machine
                .entry(page)
                .expect("every page of the partition maps a frame")
                .frame
        };
        match &mut self.phase {
            Phase::Scan => {
                if self.cursor == parts.layout.pages {
                    return Progress::Done;
                }
                let page = GuestPage(parts.layout.guest_base.0 + self.cursor);
                if frame_of(machine, page) == parts.layout.home_of(page) {
                    self.cursor += 1;
                } else {
                    self.phase = Phase::Follow {
                        start: page,
                        current: page,
                    };
                }
                Progress::Continue
            }
            &mut Phase::Follow { start, current } => {
                let home = parts.layout.home_of(current);
                self.phase = match parts.back_map.mappers(home).next() {
                    None => Phase::Moving(Self::go_home(parts, machine, current, home)),
                    Some(occupant) if occupant == start => {
                        Phase::Moving(Move::new(frame_of(machine, start), parts.layout.spare()))
                    }
                    Some(occupant) => Phase::Follow {
                        start,
                        current: occupant,
                    },
                };
                Progress::Continue
            }
            Phase::Moving(move_) => {
                let step = move_.step(parts, machine);
                if step == MoveStep::Finished {
                    let left = move_.from;
                    // A home frame just left belongs to a page not at home (its
                    // owner would have been mapping it), which goes there next.
                    self.phase = match parts.layout.owner_of(left) {
                        Some(owner) => Phase::Moving(Self::go_home(parts, machine, owner, left)),
                        None => Phase::Scan,
                    };
                }
                step.progress()
            }
        }
    }

    /// The move of `page` to its free `home` frame, taken out of the pool.
    fn go_home<M: Translation + ?Sized>(
        parts: &mut Parts,
        machine: &M,
        page: GuestPage,
        home: Frame,
    ) -> Move {
        assert!(
            parts.pool.take(home),
            "a home frame no page maps is in the pool"
        );
        let from = machine
            .entry(page)
            .expect("every page of the partition maps a frame")
            .frame;
        Move::new(from, home)
    }
}

impl Relocation {
    /// Does one bounded step of the work under way (see [`Progress`]).
    pub fn step<M: Translation + FrameMemory + ?Sized>(&mut self, machine: &mut M) -> Progress {
        let mut parts = Parts {
            layout: &self.layout,
            back_map: &mut self.back_map,
            pool: &mut self.pool,
        };
        let progress = match &mut self.work {
            Work::Idle => Progress::Done,
            Work::Evacuating(evacuation) => evacuation.step(&mut parts, machine),
            Work::Devirtualizing(devirtualization) => devirtualization.step(&mut parts, machine),
        };
        if progress == Progress::Done {
            self.work = Work::Idle;
        }
        progress
    }
}
