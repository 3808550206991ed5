//! Ballooning: the balloon memory of every partition that has a balloon, the
//! kernel's free pool of frames, and the hard limits.
//!
//! **Model.** A ballooning partition's RAM runs from its minimum to its maximum
//! (see [`septum_abi::balloon`]). Its *kept memory* (a pinned prefix: the first
//! `min` bytes of a native partition, nothing of a Linux partition) is its
//! natural frames, always mapped, and is not tracked here. Each page of its
//! *balloon memory* (from the pinned prefix to `max`) is either backed by a frame
//! or a hole, as the *map* records. The pages from the prefix to its
//! description's `ram` start backed by their natural frames, the rest start as
//! holes, and the pool starts empty. The minimum is a floor on the count of
//! pages held, which inflating never crosses; for a native partition the
//! pinned prefix is that floor, for Linux any of its pages may go. Inflating unmaps a partition's pages at once and marks them *leaving*;
//! their frames reach the pool only once scrubbed, and that scrubbing is work the
//! partition owes: the kernel does it a page at a time in the partition's own
//! turns, before the partition runs again ([`Balloon::scrub_owed`]), so a batch of
//! 512 pages never takes time from another partition's window. Pages of a
//! partition that ends, or that a restart takes away, leave the same way.
//! Deflating moves pool frames into holes the partition names. So the frames
//! that move are those the ballooning partitions were loaded with, and memory
//! flows from one partition to another only through the pool.
//!
//! Invariants (checked by the census in the tests, and property-tested there):
//! - every tracked frame is in exactly one place: backing one balloon page of one
//!   partition, leaving one (unmapped, to be scrubbed), or free in the pool; their
//!   number never changes;
//! - a partition's memory (kept plus backed balloon pages) never exceeds its
//!   maximum (its map has no page beyond it) and never falls below its minimum
//!   (kept memory is never given back, and an inflate that would leave fewer
//!   pages held is refused); a deflate never takes it past its target;
//! - every frame in the pool is zero: it is scrubbed when it enters, after the
//!   partition's translations of it are flushed, so its next owner reads zeros;
//! - every operation checks all its arguments first and changes nothing when it
//!   fails (decode, then invoke).
//!
//! The map and the pool live in memory the loader hands over (one word per page,
//! [`Balloon::words_needed`]): the kernel has no heap, and a static bound would
//! either waste memory or cap the balloon too low.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use septum_abi::Error;
use septum_abi::layout::{PAGE_SIZE, RAM_BASE};

use crate::flip::Pages;
use crate::memory::Range;
use crate::package::Package;
use crate::resources::MAX_MMIO;

/// Most pages in one batch: a virtio-balloon page list (the hypercalls take
/// [`BATCH_MAX`](septum_abi::balloon::BATCH_MAX) at most, and check that first).
pub const LIST_MAX: usize = septum_abi::virtio::balloon::PFNS_MAX;

/// A map entry of a page with no frame.
const HOLE: u32 = 0;
/// Marks map entries named by the batch being checked (frame numbers stay below
/// [`LEAVING`]: machine memory below 4 TiB).
const MARK: u32 = 1 << 31;
/// Marks a map entry whose page its partition gave up (unmapped, its translations
/// flushed) and whose frame waits to be scrubbed into the pool.
const LEAVING: u32 = 1 << 30;

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
    /// Its minimum: the fewest pages it may hold.
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
    /// Pages of its pinned prefix (kept memory): `min` for a native
    /// partition, 0 for Linux.
    pinned: u64,
    /// Where its balloon pages start in the map.
    first: usize,
    /// Its natural frames (host RAM), in guest order.
    natural: u64,
    /// Its granted MMIO blocks.
    devices: [Range; MAX_MMIO],
    /// The target it was last told, if it was told since the target changed.
    told: Option<u64>,
    /// Its pages leaving: frames it owes a scrub for.
    leaving: u64,
    /// No page of it before this map index is leaving.
    leaving_from: usize,
    /// It ended ([`Balloon::end`]) and was not restarted since: it holds only
    /// its pinned prefix and takes no batches.
    ended: bool,
}

impl Guest {
    fn balloon_pages(&self) -> usize {
        (self.memory.max - self.pinned) as usize
    }

    /// The map index of guest page `guest`, if it is a balloon page.
    fn slot(&self, guest: u64) -> Option<usize> {
        let page = guest.checked_sub(RAM_BASE)? / PAGE_SIZE;
        let index = page.checked_sub(self.pinned)?;
        (index < self.memory.max - self.pinned).then(|| self.first + index as usize)
    }

    /// The map index of its page number `page` (a balloon page).
    fn slot_of(&self, page: u64) -> usize {
        self.first + (page - self.pinned) as usize
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
    /// Per partition, in package order.
    guests: Box<[Option<Guest>]>,
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
    u64::from(number & !(MARK | LEAVING)) * PAGE_SIZE
}

/// Whether a map entry holds a frame that backs its page (not a hole, not
/// leaving).
fn backs(entry: u32) -> bool {
    entry != HOLE && entry & LEAVING == 0
}

/// A ballooning partition as the balloon needs to know it (sizes in pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// Its minimum: the fewest pages it may hold.
    pub min: u64,
    /// Its pinned prefix (kept memory), at most its minimum.
    pub pinned: u64,
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
        (self.max - self.pinned + self.initial - self.pinned) as usize
    }
}

/// The balloon specs of `package`'s partitions, which got `host_ram`: `None` for
/// a partition without a balloon.
pub fn specs(package: &Package<'_>, host_ram: &[Range]) -> Vec<Option<Spec>> {
    let mut specs = vec![None; package.len()];
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
            pinned: spec.kept_ram() / PAGE_SIZE,
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
        if words.len() != Balloon::words_needed(specs) {
            return Err(BalloonError::Memory);
        }
        let mut guests = vec![None; specs.len()].into_boxed_slice();
        let mut first = 0;
        for (spec, guest) in specs.iter().zip(&mut guests) {
            let Some(spec) = spec else { continue };
            let valid =
                spec.pinned <= spec.min && spec.min <= spec.initial && spec.initial <= spec.max;
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
                pinned: spec.pinned,
                first,
                natural: spec.natural,
                devices: spec.devices,
                told: None,
                leaving: 0,
                leaving_from: first,
                ended: false,
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
        for index in 0..balloon.guests.len() {
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
            let guest_page = guest.pinned + page as u64;
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
        backs(entry).then(|| frame_address(entry))
    }

    /// Frames free in the pool.
    pub fn free(&self) -> u64 {
        self.free as u64
    }

    /// Frames given up by any partition and not scrubbed into the pool yet.
    pub fn leaving(&self) -> u64 {
        self.guests.iter().flatten().map(|g| g.leaving).sum()
    }

    /// Frames `index` still owes a scrub for (its pages leaving).
    pub fn owed(&self, index: usize) -> u64 {
        self.guests
            .get(index)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.leaving)
    }

    /// Scrubs the frame of one page `index` gave up into the pool, if it owes
    /// one. Returns whether it owes more.
    pub fn scrub_owed(&mut self, index: usize, pages: &mut impl Pages) -> bool {
        let Some(guest) = self.guests.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        if guest.leaving == 0 {
            return false;
        }
        let end = guest.first + guest.balloon_pages();
        let slot = (guest.leaving_from..end)
            .find(|&slot| self.map[slot] & LEAVING != 0)
            .expect("a leaving page at or after the cursor");
        guest.leaving -= 1;
        guest.leaving_from = slot + 1;
        let more = guest.leaving > 0;
        let frame = core::mem::replace(&mut self.map[slot], HOLE) & !LEAVING;
        pages.scrub_page(frame_address(frame));
        self.pool[self.free] = frame;
        self.free += 1;
        more
    }

    /// Every tracked frame: backed and leaving balloon pages plus the pool
    /// (constant).
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
        if guest.ended {
            return Err(Error::BadState);
        }
        if list.is_empty() {
            return Err(Error::InvalidArgument);
        }
        if list.len() > LIST_MAX {
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
                Direction::Inflate if m.held - count < m.min => Err(Error::BelowMinimum),
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
        let kept = RAM_BASE..RAM_BASE + guest.pinned * PAGE_SIZE;
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
            // Given up and not scrubbed yet: the kernel still works on it.
            (_, entry) if entry & LEAVING != 0 => Err(Error::InFlight),
            (Direction::Inflate, HOLE) => Err(Error::NotOwned),
            (Direction::Deflate, HOLE) => Ok(slot),
            (Direction::Deflate, _) => Err(Error::AlreadyBacked),
            (Direction::Inflate, _) => Ok(slot),
        }
    }

    /// Unmaps the (checked) pages `list` of `index` and marks them leaving: their
    /// frames are scrubbed into the pool as work `index` owes.
    fn give_back(&mut self, index: usize, list: &[u64], pages: &mut impl Pages) {
        let guest = self.guests[index].expect("checked");
        for &address in list {
            let slot = guest.slot(address).expect("checked");
            pages.unmap_page(index, address);
            self.leave(index, slot);
        }
        pages.flush_translations(index);
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held -= list.len() as u64;
    }

    /// Marks backed map entry `slot` of `index` leaving (its page is unmapped).
    fn leave(&mut self, index: usize, slot: usize) {
        self.map[slot] |= LEAVING;
        let g = self.guests[index].as_mut().expect("a ballooning partition");
        g.leaving += 1;
        g.leaving_from = g.leaving_from.min(slot);
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
            let below = guest.pinned + (page as u64) < guest.memory.initial;
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

    /// Restarts `index`'s balloon (checked with [`Balloon::can_restart`]): every
    /// page below its initial memory is backed again (a page leaving gets its own
    /// frame back; a hole gets one of its frames above its initial memory, else
    /// one from the pool), the frames left above leave, its target is its
    /// initial memory and its report is forgotten. The frames it keeps are not
    /// scrubbed here: the reload scrubs all its RAM.
    pub fn restart(&mut self, index: usize, pages: &mut impl Pages) {
        let Some(guest) = self.guests[index] else {
            return;
        };
        let m = guest.memory;
        let slot_of = |page: u64| guest.slot_of(page);
        let mut spare = (m.initial..m.max).find(|&p| self.map[slot_of(p)] != HOLE);
        for page in guest.pinned..m.initial {
            let slot = slot_of(page);
            let entry = self.map[slot];
            let frame = if entry & LEAVING != 0 {
                self.reclaim_leaving(index, slot)
            } else if entry != HOLE {
                continue;
            } else if let Some(from) = spare {
                spare = (from + 1..m.max).find(|&p| self.map[slot_of(p)] != HOLE);
                let moved = slot_of(from);
                if backs(self.map[moved]) {
                    pages.unmap_page(index, RAM_BASE + from * PAGE_SIZE);
                    core::mem::replace(&mut self.map[moved], HOLE)
                } else {
                    let frame = self.reclaim_leaving(index, moved);
                    self.map[moved] = HOLE;
                    frame
                }
            } else {
                self.free -= 1;
                self.pool[self.free]
            };
            self.map[slot] = frame;
            pages.map_page(index, RAM_BASE + page * PAGE_SIZE, frame_address(frame));
        }
        self.release_from(index, m.initial, pages);
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held = g.memory.initial;
        g.memory.target = g.memory.initial;
        g.memory.report = Report::default();
        g.told = None;
        g.ended = false;
    }

    /// Takes leaving map entry `slot` of `index` back: it owes no scrub for it.
    /// Returns its frame.
    fn reclaim_leaving(&mut self, index: usize, slot: usize) -> u32 {
        let g = self.guests[index].as_mut().expect("a ballooning partition");
        g.leaving -= 1;
        self.map[slot] & !LEAVING
    }

    /// Ends `index`'s balloon (it exited or was stopped): every backed balloon
    /// page leaves, so other partitions may take it once scrubbed; it holds its
    /// pinned prefix only, and its target drops to its minimum.
    pub fn end(&mut self, index: usize, pages: &mut impl Pages) {
        let Some(guest) = self.guests[index] else {
            return;
        };
        self.release_from(index, guest.pinned, pages);
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held = g.pinned;
        g.memory.target = g.memory.min;
        g.ended = true;
    }

    /// Unmaps every backed balloon page of `index` from guest page `from` up, and
    /// marks it leaving.
    fn release_from(&mut self, index: usize, from: u64, pages: &mut impl Pages) {
        let guest = self.guests[index].expect("checked");
        let mut released = 0;
        for page in from.max(guest.pinned)..guest.memory.max {
            let slot = guest.slot_of(page);
            if backs(self.map[slot]) {
                pages.unmap_page(index, RAM_BASE + page * PAGE_SIZE);
                self.leave(index, slot);
                released += 1;
            }
        }
        pages.flush_translations(index);
        let g = self.guests[index].as_mut().expect("checked");
        g.memory.held -= released;
    }
}

#[cfg(test)]
mod tests;
