//! The balloon driver: a page allocator over the partition's balloon memory, and
//! the driver that gives its free pages back to the kernel and takes pages back,
//! following the target the service VM sets.
//!
//! Layout (see [`septum_abi::balloon`]): the partition's kept memory (its image,
//! stack and every buffer it hands the kernel) ends at the RAM size it got at
//! entry; its balloon memory runs from there to its maximum. The [`Allocator`]
//! hands out pages of balloon memory only, so the guest chooses which pages go:
//! the driver gives back free pages, highest first, and never one in use.
//!
//! How the driver adapts its rate ([`Driver::step`]):
//! - it keeps a **reserve** of free pages it never gives back, so that the
//!   guest's own allocations do not fail because of the balloon;
//! - when allocations failed since its last step, the guest is under
//!   **pressure**: it gives nothing back that step and halves its give-back
//!   rate;
//! - otherwise each step gives back at most that rate (doubling after each step
//!   that gave pages back, up to [`STEP_MAX`]), in batches of [`BATCH_MAX`];
//! - taking pages back is never slowed: a step below the target takes up to
//!   [`STEP_MAX`] pages at once, since a guest short of memory (often the one
//!   under pressure) needs them soonest.
//!
//! It reports free, used and failed allocations to the service VM on every step;
//! the report's answer is the target.

pub use septum_abi::balloon::BATCH_MAX;

/// Most pages one [`Driver::step`] moves, in batches of [`BATCH_MAX`] (the kernel
/// bounds a batch so that no call takes long; a step may make several).
pub const STEP_MAX: usize = 8 * BATCH_MAX;
use septum_abi::layout::{PAGE_SIZE, RAM_BASE};

use crate::{Call, Error, typed};

/// Pages an [`Allocator`] covers at most (128 MiB of balloon memory).
pub const ALLOCATOR_PAGES: usize = 32 * 1024;
const WORDS: usize = ALLOCATOR_PAGES / 64;

/// What the kernel said after a balloon call (pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Pages this partition holds, kept memory included.
    pub held: u64,
    /// Its target.
    pub target: u64,
}

/// Gives the pages at `addresses` back to the kernel.
pub fn inflate(slot: u64, addresses: &[u64]) -> Result<Memory, Error> {
    batch(Call::Inflate, slot, addresses)
}

/// Takes pages back at `addresses` (holes of balloon memory); they read as zero.
pub fn deflate(slot: u64, addresses: &[u64]) -> Result<Memory, Error> {
    batch(Call::Deflate, slot, addresses)
}

fn batch(call: Call, slot: u64, addresses: &[u64]) -> Result<Memory, Error> {
    let list = addresses.as_ptr() as u64;
    let [held, target, _] = typed(call, [slot, list, addresses.len() as u64, 0, 0, 0])?;
    Ok(Memory { held, target })
}

/// Reports `free` and `used` pages and `failures` (failed allocations since
/// start). Returns (target, held, maximum) in pages.
pub fn report(slot: u64, free: u64, used: u64, failures: u64) -> Result<(u64, u64, u64), Error> {
    typed(Call::BalloonReport, [slot, free, used, failures, 0, 0]).map(|[t, h, m]| (t, h, m))
}

/// Blocks until the service VM sets a target this partition was not told yet.
/// Returns the target in pages (0: woken for another reason; call again).
pub fn wait(slot: u64) -> Result<u64, Error> {
    typed(Call::Wait, [slot, 0, 0, 0, 0, 0]).map(|r| r[0])
}

/// A page allocator over balloon memory: each page is a hole (given back),
/// backed and free, or backed and in use.
pub struct Allocator {
    /// Guest address of the first balloon page.
    base: u64,
    /// Pages from `base` to the maximum.
    pages: usize,
    backed: [u64; WORDS],
    free: [u64; WORDS],
    /// Allocations that found no free page.
    pub failures: u64,
}

fn bit(map: &[u64; WORDS], page: usize) -> bool {
    map[page / 64] & (1 << (page % 64)) != 0
}

fn set(map: &mut [u64; WORDS], page: usize, value: bool) {
    if value {
        map[page / 64] |= 1 << (page % 64);
    } else {
        map[page / 64] &= !(1 << (page % 64));
    }
}

impl Allocator {
    /// An allocator with nothing: call [`Allocator::init`].
    pub const fn empty() -> Allocator {
        Allocator {
            base: 0,
            pages: 0,
            backed: [0; WORDS],
            free: [0; WORDS],
            failures: 0,
        }
    }

    /// Covers balloon memory from `kept` bytes of RAM up to `max_pages` pages,
    /// with the pages up to `held_pages` backed (as at entry). `false` if the
    /// balloon memory is larger than [`ALLOCATOR_PAGES`].
    pub fn init(&mut self, kept: u64, held_pages: u64, max_pages: u64) -> bool {
        let kept_pages = kept / PAGE_SIZE;
        let pages = (max_pages - kept_pages) as usize;
        if pages > ALLOCATOR_PAGES {
            return false;
        }
        *self = Allocator::empty();
        self.base = RAM_BASE + kept;
        self.pages = pages;
        for page in 0..(held_pages - kept_pages) as usize {
            set(&mut self.backed, page, true);
            set(&mut self.free, page, true);
        }
        true
    }

    fn address(&self, page: usize) -> u64 {
        self.base + page as u64 * PAGE_SIZE
    }

    fn page_of(&self, address: u64) -> usize {
        ((address - self.base) / PAGE_SIZE) as usize
    }

    fn count(map: &[u64; WORDS]) -> u64 {
        map.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Pages backed and free.
    pub fn free_pages(&self) -> u64 {
        Allocator::count(&self.free)
    }

    /// Pages backed and in use.
    pub fn used_pages(&self) -> u64 {
        Allocator::count(&self.backed) - self.free_pages()
    }

    /// Pages the partition holds: its kept memory and the backed balloon pages.
    pub fn held_pages(&self) -> u64 {
        (self.base - RAM_BASE) / PAGE_SIZE + Allocator::count(&self.backed)
    }

    /// The pages in use, lowest first.
    pub fn used(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.pages)
            .filter(|&page| bit(&self.backed, page) && !bit(&self.free, page))
            .map(|page| self.address(page))
    }

    /// A free page (the lowest), now in use; `None` (and a failure counted) if
    /// there is none.
    pub fn allocate(&mut self) -> Option<u64> {
        let word = self.free.iter().position(|&w| w != 0);
        let Some(word) = word else {
            self.failures += 1;
            return None;
        };
        let page = word * 64 + self.free[word].trailing_zeros() as usize;
        set(&mut self.free, page, false);
        Some(self.address(page))
    }

    /// Puts the page at `address` (from [`Allocator::allocate`]) back.
    pub fn release(&mut self, address: u64) {
        let page = self.page_of(address);
        if page < self.pages && bit(&self.backed, page) {
            set(&mut self.free, page, true);
        }
    }

    /// Puts every page in use back: all backed pages are free again.
    pub fn release_all(&mut self) {
        self.free = self.backed;
    }

    /// Takes up to `list.len()` free pages, highest first, out of the allocator
    /// for giving back; returns how many it wrote to `list`. Scans a word of the
    /// map at a time: a step of several batches must not rescan the whole map
    /// page by page for each.
    pub(crate) fn take_for_balloon(&mut self, list: &mut [u64]) -> usize {
        let mut taken = 0;
        for word in (0..self.pages.div_ceil(64)).rev() {
            while taken < list.len() && self.free[word] != 0 {
                let page = word * 64 + 63 - self.free[word].leading_zeros() as usize;
                set(&mut self.free, page, false);
                set(&mut self.backed, page, false);
                list[taken] = self.address(page);
                taken += 1;
            }
            if taken == list.len() {
                break;
            }
        }
        taken
    }

    /// Writes up to `list.len()` holes, lowest first, to `list`, scanning a word
    /// of the map at a time.
    pub(crate) fn holes(&self, list: &mut [u64]) -> usize {
        let mut found = 0;
        for word in 0..self.pages.div_ceil(64) {
            let mut holes = !self.backed[word];
            while found < list.len() && holes != 0 {
                let page = word * 64 + holes.trailing_zeros() as usize;
                if page >= self.pages {
                    return found;
                }
                list[found] = self.address(page);
                found += 1;
                holes &= holes - 1;
            }
            if found == list.len() {
                break;
            }
        }
        found
    }

    /// Marks `list` backed and free: holes the kernel just backed, or pages
    /// [`Allocator::take_for_balloon`] took that the kernel refused.
    pub(crate) fn mark_backed_free(&mut self, list: &[u64]) {
        for &address in list {
            let page = self.page_of(address);
            set(&mut self.backed, page, true);
            set(&mut self.free, page, true);
        }
    }
}

/// What one [`Driver::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The target the report returned.
    pub target: u64,
    /// Pages held after the step.
    pub held: u64,
    /// Pages given back this step.
    pub inflated: u64,
    /// Pages taken back this step.
    pub deflated: u64,
    /// The kernel refused the batch with this error.
    pub refused: Option<Error>,
}

/// The balloon driver of one partition.
pub struct Driver {
    slot: u64,
    /// Free pages never given back.
    pub reserve: u64,
    /// Most pages the next step gives back.
    inflate_rate: usize,
    failures_seen: u64,
    list: [u64; BATCH_MAX],
}

impl Driver {
    /// A driver for the balloon capability in `slot`, keeping `reserve` free pages.
    pub const fn new(slot: u64, reserve: u64) -> Driver {
        Driver {
            slot,
            reserve,
            inflate_rate: 64,
            failures_seen: 0,
            list: [0; BATCH_MAX],
        }
    }

    /// Sets `allocator` up as at entry (kept memory `kept` bytes) from what the
    /// kernel reports. Returns (target, held, maximum) in pages.
    pub fn start(
        &mut self,
        allocator: &mut Allocator,
        kept: u64,
    ) -> Result<(u64, u64, u64), Error> {
        let (target, held, max) = report(self.slot, 0, 0, 0)?;
        if !allocator.init(kept, held, max) {
            return Err(Error::TooLong);
        }
        Ok((target, held, max))
    }

    /// Reports, then moves toward the target by at most one batch.
    pub fn step(&mut self, allocator: &mut Allocator) -> Result<Step, Error> {
        let (target, held, _) = report(
            self.slot,
            allocator.free_pages(),
            allocator.used_pages(),
            allocator.failures,
        )?;
        let mut step = Step {
            target,
            held,
            ..Step::default()
        };
        let pressure = allocator.failures > self.failures_seen;
        self.failures_seen = allocator.failures;
        if pressure {
            self.inflate_rate = (self.inflate_rate / 2).max(1);
        }
        if held > target && !pressure {
            let spare = allocator.free_pages().saturating_sub(self.reserve);
            let mut left = (held - target).min(spare).min(self.inflate_rate as u64) as usize;
            while left > 0 && step.refused.is_none() {
                let taken = allocator.take_for_balloon(&mut self.list[..left.min(BATCH_MAX)]);
                if taken == 0 {
                    break;
                }
                match inflate(self.slot, &self.list[..taken]) {
                    Ok(memory) => {
                        step.held = memory.held;
                        step.inflated += taken as u64;
                        left -= taken;
                    }
                    Err(error) => {
                        allocator.mark_backed_free(&self.list[..taken]);
                        step.refused = Some(error);
                    }
                }
            }
            if step.inflated > 0 {
                self.inflate_rate = (self.inflate_rate * 2).min(STEP_MAX);
            }
        } else if held < target {
            let mut left = (target - held).min(STEP_MAX as u64) as usize;
            while left > 0 && step.refused.is_none() {
                let found = allocator.holes(&mut self.list[..left.min(BATCH_MAX)]);
                if found == 0 {
                    break;
                }
                match deflate(self.slot, &self.list[..found]) {
                    Ok(memory) => {
                        allocator.mark_backed_free(&self.list[..found]);
                        step.held = memory.held;
                        step.deflated += found as u64;
                        left -= found;
                    }
                    Err(error) => step.refused = Some(error),
                }
            }
        }
        Ok(step)
    }
}
