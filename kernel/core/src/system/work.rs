//! Kernel work a partition owes: work it caused that is too long for one trap
//! (reloading its RAM after a restart, walking the queues of its virtio devices,
//! scrubbing the balloon pages it gave up).
//! The core does it a page at a time, in the turns of that partition's vCPU 0,
//! before the partition runs again (`run.rs`), so it never comes out of another
//! partition's window.
//!
//! Invariant: a partition that owes work is given its turns (its vCPU 0 "needs
//! the CPU") even when it may not run, and runs only once it owes nothing.

use septum_abi::layout::PAGE_SIZE;

use super::{Platform, System};

/// Pages scrubbed in one step of owed work: few enough that a step stays far
/// shorter than a window's margin, enough that the work loop's own cost per
/// step (finding the next page owed, asking what is owed) is spread thin.
const SCRUB_STEP: usize = 16;

impl System {
    /// Whether partition `index` owes kernel work (see the module documentation).
    pub fn owes_work(&self, index: usize) -> bool {
        self.partitions[index].life.loading_at().is_some()
            || self.virtio_owes(index)
            || self.balloon.owed(index) > 0
    }

    /// Does one step of the work partition `index` owes, in a turn of its
    /// vCPU 0: a page of reloading its RAM from its image after a restart (its
    /// watchdog is armed once that is done), then a chain of its virtio
    /// devices' work, then [`SCRUB_STEP`] of the balloon pages it gave up.
    /// Returns whether it owes more.
    pub fn work(&mut self, index: usize, platform: &mut impl Platform) -> bool {
        let partition = &self.partitions[index];
        if let Some(offset) = partition.life.loading_at() {
            let ram = partition.guest_ram;
            let frame = self.ram_frame(index, ram.start + offset);
            platform.reload_page(index, offset, frame);
            let now_us = platform.now_us();
            self.partitions[index]
                .life
                .reloaded_page(ram.size(), PAGE_SIZE, now_us)
                .expect("loading");
        } else if self.virtio_owes(index) {
            self.virtio_work(index, platform);
        } else if self.balloon.owed(index) > 0 {
            let paid = (0..SCRUB_STEP).any(|_| !self.balloon.scrub_owed(index, platform));
            if paid {
                self.pool_refilled(platform);
            }
        }
        self.owes_work(index)
    }
}
