//! The kernel's counts for the status view: where a trap is counted, where a
//! vCPU's time on its core is charged, and [`Call::Usage`](septum_abi::Call::Usage),
//! which reads them out. Each partition's counts are its [`Usage`](crate::usage::Usage),
//! which only this module changes.
//!
//! Invariants:
//! - every trap that reaches [`System::handle`] is counted once, under its
//!   partition, before it is handled (first thing in `run.rs`'s `on_trap`); so
//!   is every access completed on the fast lane ([`System::emulate_access`],
//!   [`System::send_sgi`]);
//! - the time a vCPU is live on a core is charged to its partition from when
//!   it was loaded (or last charged) to when it leaves the core or its turn
//!   ends (a preemption, in [`System::handle`]; `charged_us` of that core
//!   moves on each time), so no stretch is charged twice; kernel work a
//!   partition owes is done while none of its vCPUs is loaded and is not
//!   counted as its run time.

use septum_abi::usage::{TrapKind, USAGE_WORDS};

use super::run::Trap;
use super::{Dispatch, Platform, Reply, System};
use crate::memory::Range;

impl System {
    /// Counts a trap of a vCPU of `partition` (the caller has looked it up
    /// already, so the hot path indexes the tables once).
    pub(super) fn count_trap(&mut self, partition: usize, trap: &Trap) {
        let kind = match trap {
            Trap::Hypercall(_) => TrapKind::Hypercall,
            Trap::Smccc(_) => TrapKind::Smccc,
            Trap::Wait => TrapKind::Wait,
            Trap::Preempted => TrapKind::Preempted,
            Trap::Kicked => TrapKind::Kicked,
            Trap::Fault(_) => TrapKind::Fault,
        };
        self.partitions[partition].usage.count(kind);
    }

    /// Counts an access of `vcpu` completed on the fast lane (a device
    /// register, or the SGI register).
    pub(super) fn note_emulated(&mut self, vcpu: usize) {
        self.partitions[self.vcpus[vcpu].partition]
            .usage
            .count(TrapKind::Emulated);
    }

    /// Charges the time of the vCPU live on `cpu` since it was last charged to
    /// its partition (nothing if none is live).
    pub(super) fn charge(&mut self, cpu: usize, platform: &mut impl Platform) {
        let Some(vcpu) = self.loaded[cpu] else {
            return;
        };
        let now_us = platform.now_us();
        let since_us = core::mem::replace(&mut self.charged_us[cpu], now_us);
        self.partitions[self.vcpus[vcpu].partition]
            .usage
            .ran(since_us, now_us);
    }

    /// [`Call::Usage`](septum_abi::Call::Usage): partition `target`'s counts
    /// into the service VM's `buffer`, with the messages waiting on the queues
    /// it receives from and their depths.
    pub(super) fn usage_info(
        &mut self,
        target: usize,
        buffer: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let now_us = platform.now_us();
        let mut record = self.partitions[target].usage.record(now_us);
        for queue in 0..self.flip.queue_count() {
            if self.flip.ends(queue).1 == target {
                record.waiting += self.flip.waiting(queue) as u64;
                record.depth += self.flip.depth(queue) as u64;
            }
        }
        let mut bytes = [0u8; USAGE_WORDS * 8];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(record.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        platform.write_ram(buffer.start, &bytes);
        Dispatch::resume(Reply::ok([0; 3]))
    }
}
