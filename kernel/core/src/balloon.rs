//! Ballooning: the balloon memory of every partition that has a balloon, the
//! kernel's free pool of frames, and the hard limits.
//!
//! **Model.** A ballooning partition's RAM runs from its minimum to its maximum
//! (see [`septum_abi::balloon`]). Its *kept memory* (the first `min` bytes) is its
//! natural frames, always mapped, and is not tracked here. Each page of its
//! *balloon memory* (from `min` to `max`) is either backed by a frame or a hole,
//! as the *map* records. The pages from `min` to its description's `ram` start
//! backed by their natural frames, the rest start as holes, and the pool starts
//! empty. Inflating moves frames from a partition's pages to the pool, scrubbed;
//! deflating moves pool frames into holes the partition names. So the frames that
//! move are those the ballooning partitions were loaded with, and memory flows
//! from one partition to another only through the pool.
//!
//! Invariants (checked by the census in the tests, and property-tested there):
//! - every tracked frame is in exactly one place: backing one balloon page of one
//!   partition, or free in the pool; their number never changes;
//! - a partition's memory (kept plus backed balloon pages) never exceeds its
//!   maximum (its map has no page beyond it) and never falls below its minimum
//!   (kept memory is never given back); a deflate never takes it past its target;
//! - every frame in the pool is zero: it is scrubbed when it enters, after the
//!   partition's translations of it are flushed, so its next owner reads zeros;
//! - every operation checks all its arguments first and changes nothing when it
//!   fails (decode, then invoke).
//!
//! The map and the pool live in memory the loader hands over (one word per page,
//! [`Balloon::words_needed`]): the kernel has no heap, and a static bound would
//! either waste memory or cap the balloon too low.

use septum_abi::Error;
use septum_abi::layout::{PAGE_SIZE, RAM_BASE};

use crate::flip::Pages;
use crate::memory::Range;
use crate::package::{MAX_PARTITIONS, Package};
use crate::resources::MAX_MMIO;

/// A map entry of a page with no frame.
const HOLE: u32 = 0;
/// Marks map entries named by the batch being checked (frame numbers stay below
/// it: machine memory below 8 TiB).
const MARK: u32 = 1 << 31;

/// What a guest last said about its memory (pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Free in its allocator.
    pub free: u64,
    /// In use.
    pub used: u64,
    /// Allocations that failed since it started.
    pub failures: u64,
    /// Reports since it started.
    pub reports: u64,
}

/// One partition's memory as the kernel counts it (pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Kept memory plus backed balloon pages.
    pub held: u64,
    /// Its target.
    pub target: u64,
    /// Its minimum (its kept memory).
    pub min: u64,
    /// Its maximum.
    pub max: u64,
    /// Its memory at entry.
    pub initial: u64,
    /// Its weight in the memory scheduler.
    pub shares: u32,
    /// What it last reported.
    pub report: Report,
}

/// A ballooning partition.
#[derive(Clone, Copy, Debug, Default)]
struct Guest {
    memory: Memory,
    /// Where its balloon pages start in the map.
    first: usize,
    /// Its natural frames (host RAM), in guest order.
    natural: u64,
    /// Its granted MMIO blocks.
    devices: [Range; MAX_MMIO],
    /// The target it was last told, if it was told since the target changed.
    told: Option<u64>,
}

impl Guest {
    fn balloon_pages(&self) -> usize {
        (self.memory.max - self.memory.min) as usize
    }

    /// The map index of guest page `guest`, if it is a balloon page.
    fn slot(&self, guest: u64) -> Option<usize> {
        let page = guest.checked_sub(RAM_BASE)? / PAGE_SIZE;
        let index = page.checked_sub(self.memory.min)?;
        (index < self.memory.max - self.memory.min).then(|| self.first + index as usize)
    }
}

/// The direction of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Give pages back.
    Inflate,
    /// Take pages back.
    Deflate,
}

/// Why the balloon memory could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonError {
    /// The memory handed over is not [`Balloon::words_needed`] words, or a spec's
    /// initial memory is outside its limits.
    Memory,
}

/// The balloon memory of every partition and the free pool.
#[derive(Debug)]
pub struct Balloon {
    guests: [Option<Guest>; MAX_PARTITIONS],
    /// Per balloon page of every ballooning partition: its frame number, or
    /// [`HOLE`].
    map: &'static mut [u32],
    /// The free pool, a stack of frame numbers: `pool[..free]`.
    pool: &'static mut [u32],
    free: usize,
}

fn frame_number(frame: u64) -> u32 {
    (frame / PAGE_SIZE) as u32
}

fn frame_address(number: u32) -> u64 {
    u64::from(number & !MARK) * PAGE_SIZE
}

/// A ballooning partition as the balloon needs to know it (sizes in pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// Its minimum: its kept memory.
    pub min: u64,
    /// Its maximum.
    pub max: u64,
    /// Its memory at entry (`min` to `max`).
    pub initial: u64,
    /// Its weight in the memory scheduler.
    pub shares: u32,
    /// Machine address of its natural frames.
    pub natural: u64,
    /// Its granted MMIO blocks (unused entries empty).
    pub devices: [Range; MAX_MMIO],
}

impl Spec {
    fn words(&self) -> usize {
        (self.max - self.min + self.initial - self.min) as usize
    }
}

/// The balloon specs of `package`'s partitions, which got `host_ram`: `None` for
/// a partition without a balloon.
pub fn specs(package: &Package<'_>, host_ram: &[Range]) -> [Option<Spec>; MAX_PARTITIONS] {
    let mut specs = [None; MAX_PARTITIONS];
    for ((spec, host), slot) in package.partitions().zip(host_ram).zip(&mut specs) {
        if !spec.balloon() {
            continue;
        }
        let mut devices = [Range::default(); MAX_MMIO];
        for (device, block) in devices.iter_mut().zip(spec.resources.mmio()) {
            *device = Range::from_start_size(block.base, block.size).unwrap_or_default();
        }
        *slot = Some(Spec {
            min: spec.resources.memory_min / PAGE_SIZE,
            max: spec.resources.memory_max / PAGE_SIZE,
            initial: spec.ram_size / PAGE_SIZE,
            shares: spec.resources.shares,
            natural: host.start,
            devices,
        });
    }
    specs
}

impl Balloon {
    /// Words of memory the balloon of `specs` needs: one per balloon page of each
    /// ballooning partition (the map) and one per frame it starts with (the
    /// pool's room).
    pub fn words_needed(specs: &[Option<Spec>]) -> usize {
        specs.iter().flatten().map(Spec::words).sum()
    }

    /// The balloon of partitions `specs` (in package order), with `words`
    /// ([`Balloon::words_needed`] of them) for the map and the pool.
    pub fn new(specs: &[Option<Spec>], words: &'static mut [u32]) -> Result<Balloon, BalloonError> {
        if words.len() != Balloon::words_needed(specs) || specs.len() > MAX_PARTITIONS {
            return Err(BalloonError::Memory);
        }
        let mut guests = [None; MAX_PARTITIONS];
        let mut first = 0;
        for (spec, guest) in specs.iter().zip(&mut guests) {
            let Some(spec) = spec else { continue };
            let valid = spec.min <= spec.initial && spec.initial <= spec.max;
            if !valid {
                return Err(BalloonError::Memory);
            }
            let made = Guest {
                memory: Memory {
                    held: spec.initial,
                    target: spec.initial,
                    min: spec.min,
                    max: spec.max,
                    initial: spec.initial,
                    shares: spec.shares,
                    report: Report::default(),
                },
                first,
                natural: spec.natural,
                devices: spec.devices,
                told: None,
            };
            first += made.balloon_pages();
            *guest = Some(made);
        }
        let (map, pool) = words.split_at_mut(first);
        let mut balloon = Balloon {
            guests,
            map,
            pool,
            free: 0,
        };
        for index in 0..MAX_PARTITIONS {
            balloon.fill_initial(index);
        }
        Ok(balloon)
    }

    /// Sets `index`'s map as at entry: natural frames up to its initial memory,
    /// holes above (nothing is mapped or moved; the caller sees to that).
    fn fill_initial(&mut self, index: usize) {
        let Some(guest) = self.guests[index] else {
            return;
        };
        let m = guest.memory;
        for page in 0..guest.balloon_pages() {
            let guest_page = m.min + page as u64;
            self.map[guest.first + page] = if guest_page < m.initial {
                frame_number(guest.natural + guest_page * PAGE_SIZE)
            } else {
                HOLE
            };
        }
    }

    /// `index`'s memory, if it has a balloon.
    pub fn memory(&self, index: usize) -> Option<Memory> {
        self.guests.get(index)?.map(|g| g.memory)
    }

    /// The frame backing balloon page `guest` of `index`, if it is a backed
    /// balloon page.
    pub fn frame(&self, index: usize, guest: u64) -> Option<u64> {
        let slot = self.guests.get(index)?.as_ref()?.slot(guest)?;
        let entry = self.map[slot];
        (entry != HOLE).then(|| frame_address(entry))
    }

    /// Frames free in the pool.
    pub fn free(&self) -> u64 {
        self.free as u64
    }

    /// Every tracked frame: backed balloon pages plus the pool (constant).
    pub fn total(&self) -> u64 {
        self.map.iter().filter(|&&e| e != HOLE).count() as u64 + self.free as u64
    }

    /// Gives back (inflate) or takes back (deflate) the pages `list` of `index`.
    /// `in_flight` says whether a page is on a queue or held from one. Returns
    /// `index`'s memory afterwards; on error nothing changed.
    pub fn batch(
        &mut self,
        index: usize,
        direction: Direction,
        list: &[u64],
        in_flight: impl Fn(u64) -> bool,
        pages: &mut impl Pages,
    ) -> Result<Memory, Error> {
        let guest = self.guests[index].ok_or(Error::WrongType)?;
        if list.is_empty() {
            return Err(Error::InvalidArgument);
        }
        if list.len() > septum_abi::balloon::BATCH_MAX {
            return Err(Error::TooLong);
        }
        let mut marked = 0;
        let checked = list.iter().try_for_each(|&address| {
            let slot = self.check_page(&guest, direction, address, &in_flight)?;
            self.map[slot] |= MARK;
            marked += 1;
            Ok(())
        });
        let counted = checked.and_then(|()| {
            let m = guest.memory;
            let count = list.len() as u64;
            match direction {
                Direction::Inflate => Ok(()),
                Direction::Deflate if m.held + count > m.target => Err(Error::OverTarget),
                Direction::Deflate if list.len() > self.free => Err(Error::PoolEmpty),
                Direction::Deflate => Ok(()),
            }
        });
        for &address in &list[..marked] {
            let slot = guest.slot(address).expect("checked");
            self.map[slot] &= !MARK;
        }
        counted?;
        match direction {
            Direction::Inflate => self.give_back(index, list, pages),
            Direction::Deflate => self.take_back(index, list, pages),
        }
        let g = self.guests[index].as_mut().expect("checked");
        g.told = Some(g.memory.target);
        Ok(g.memory)
    }

    /// Checks one page of a batch; returns its map index.
    fn check_page(
        &self,
        guest: &Guest,
        direction: Direction,
        address: u64,
        in_flight: &impl Fn(u64) -> bool,
    ) -> Result<usize, Error> {
        if !address.is_multiple_of(PAGE_SIZE) {
            return Err(Error::InvalidArgument);
        }
        let page = Range {
            start: address,
            end: address.saturating_add(PAGE_SIZE),
        };
        if guest.devices.iter().any(|d| d.overlaps(&page)) {
            return Err(Error::DevicePage);
        }
        if in_flight(address) {
            return Err(Error::InFlight);
        }
        let m = guest.memory;
        let kept = RAM_BASE..RAM_BASE + m.min * PAGE_SIZE;
        if kept.contains(&address) {
            return Err(Error::BelowMinimum);
        }
        let Some(slot) = guest.slot(address) else {
            return Err(match direction {
                Direction::Deflate if address >= RAM_BASE => Error::AboveMaximum,
                _ => Error::NotOwned,
            });
        };
        match (direction, self.map[slot]) {
            (_, entry) if entry & MARK != 0 => Err(Error::Duplicate),
            (Direction::Inflate, HOLE) => Err(Error::NotOwned),
            (Direction::Deflate, HOLE) => Ok(slot),
            (Direction::Deflate, _) => Err(Error::AlreadyBacked),
            (Direction::Inflate, _) => Ok(slot),
        }
    }

    /// Unmaps the (checked) pages `list` of `index`, then scrubs their frames
    /// into the pool.
    fn give_back(&mut self, index: usize, list: &[u64], pages: &mut impl Pages) {
        let guest = self.guests[index].expect("checked");
        let start = self.free;
        for &address in list {
            let slot = guest.slot(address).expect("checked");
            pages.unmap_page(index, address);
            self.pool[self.free] = core::mem::replace(&mut self.map[slot], HOLE);
            self.free += 1;
        }
        pages.flush_translations(index);
        for &frame in &self.pool[start..self.free] {
            pages.scrub_page(frame_address(frame));
        }
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held -= list.len() as u64;
    }

    /// Maps a (zero) pool frame at each (checked) hole `list` of `index`.
    fn take_back(&mut self, index: usize, list: &[u64], pages: &mut impl Pages) {
        let guest = self.guests[index].expect("checked");
        for &address in list {
            let slot = guest.slot(address).expect("checked");
            self.free -= 1;
            let frame = self.pool[self.free];
            self.map[slot] = frame;
            pages.map_page(index, address, frame_address(frame));
        }
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held += list.len() as u64;
    }

    /// Sets `index`'s target (pages). Returns whether it changed.
    pub fn set_target(&mut self, index: usize, target: u64) -> Result<bool, Error> {
        let guest = self.guests[index].as_mut().ok_or(Error::BadState)?;
        if target < guest.memory.min {
            return Err(Error::BelowMinimum);
        }
        if target > guest.memory.max {
            return Err(Error::AboveMaximum);
        }
        let changed = guest.memory.target != target;
        guest.memory.target = target;
        Ok(changed)
    }

    /// Records what `index` reports and tells it its target. Returns its memory.
    pub fn report(&mut self, index: usize, free: u64, used: u64, failures: u64) -> Memory {
        let guest = self.guests[index]
            .as_mut()
            .expect("the caller has a balloon");
        let reports = guest.memory.report.reports + 1;
        guest.memory.report = Report {
            free,
            used,
            failures,
            reports,
        };
        guest.told = Some(guest.memory.target);
        guest.memory
    }

    /// Whether `index` has a target it was not told yet (work for a balloon wait).
    pub fn has_news(&self, index: usize) -> bool {
        self.guests[index].is_some_and(|g| g.told != Some(g.memory.target))
    }

    /// Tells `index` its target (a balloon wait returns it).
    pub fn tell(&mut self, index: usize) -> u64 {
        let guest = self.guests[index]
            .as_mut()
            .expect("the caller has a balloon");
        guest.told = Some(guest.memory.target);
        guest.memory.target
    }

    /// Whether `index` can be restarted: the pool and its pages above its initial
    /// memory have frames for every hole below. Else [`Error::PoolEmpty`].
    pub fn can_restart(&self, index: usize) -> Result<(), Error> {
        let Some(guest) = self.guests[index] else {
            return Ok(());
        };
        let (mut holes, mut spare) = (0, self.free);
        for page in 0..guest.balloon_pages() {
            let below = guest.memory.min + (page as u64) < guest.memory.initial;
            match (below, self.map[guest.first + page] == HOLE) {
                (true, true) => holes += 1,
                (false, false) => spare += 1,
                _ => {}
            }
        }
        if holes > spare {
            return Err(Error::PoolEmpty);
        }
        Ok(())
    }

    /// Restarts `index`'s balloon (checked with [`Balloon::can_restart`]): its
    /// pages above its initial memory go to the pool, its holes below are filled
    /// from it, its target is its initial memory and its report is forgotten. The
    /// frames it keeps are not scrubbed here: the reload scrubs all its RAM.
    pub fn restart(&mut self, index: usize, pages: &mut impl Pages) {
        let Some(guest) = self.guests[index] else {
            return;
        };
        self.release_from(index, guest.memory.initial, pages);
        for page in 0..guest.balloon_pages() {
            let guest_page = guest.memory.min + page as u64;
            let slot = guest.first + page;
            if guest_page < guest.memory.initial && self.map[slot] == HOLE {
                self.free -= 1;
                let frame = self.pool[self.free];
                self.map[slot] = frame;
                pages.map_page(
                    index,
                    RAM_BASE + guest_page * PAGE_SIZE,
                    frame_address(frame),
                );
            }
        }
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held = g.memory.initial;
        g.memory.target = g.memory.initial;
        g.memory.report = Report::default();
        g.told = None;
    }

    /// Ends `index`'s balloon (it exited or was stopped): every backed balloon
    /// page goes to the pool, so other partitions may take it; its target drops
    /// to its minimum.
    pub fn end(&mut self, index: usize, pages: &mut impl Pages) {
        let Some(guest) = self.guests[index] else {
            return;
        };
        self.release_from(index, guest.memory.min, pages);
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held = g.memory.min;
        g.memory.target = g.memory.min;
    }

    /// Unmaps every backed balloon page of `index` from guest page `from` up, and
    /// scrubs its frame into the pool.
    fn release_from(&mut self, index: usize, from: u64, pages: &mut impl Pages) {
        let guest = self.guests[index].expect("checked");
        let start = self.free;
        for page in from.max(guest.memory.min)..guest.memory.max {
            let slot = guest.first + (page - guest.memory.min) as usize;
            if self.map[slot] != HOLE {
                pages.unmap_page(index, RAM_BASE + page * PAGE_SIZE);
                self.pool[self.free] = core::mem::replace(&mut self.map[slot], HOLE);
                self.free += 1;
            }
        }
        pages.flush_translations(index);
        for &frame in &self.pool[start..self.free] {
            pages.scrub_page(frame_address(frame));
        }
        let released = (self.free - start) as u64;
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held -= released;
    }
}

#[cfg(test)]
mod tests;
