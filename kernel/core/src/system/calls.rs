//! The handlers of the calls every partition may make of itself or the system:
//! `console_write`, `ready`, `yield`, `shutdown`, `identify` and `vcpu_start`
//! (`exit` is a transition, in `transitions.rs`).
//!
//! Invariants:
//! - guest console output always goes through the partition's [`LineBuffer`]
//!   (`crate::console::LineBuffer`), so it reaches the console as whole, prefixed,
//!   sanitised lines;
//! - **service VM first**: guests start only at the first instance's `ready`.

use septum_abi::{Error, Identified};

use super::devirt;
use super::dispatch::Caller;
use super::lifecycle::State;
use super::partition::Label;
use super::run::Effect;
use super::{Dispatch, GuestLines, MAX_CPUS, Next, Platform, Reply, System, emit};
use crate::caps::Cap;
use crate::event::Event;
use crate::memory::Range;

/// A checked `vcpu_start` (or PSCI `CPU_ON`): the caller's vCPU `vcpu`
/// (system-wide number), which is off, starts at `entry` with `context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct VcpuStart {
    pub(super) vcpu: usize,
    pub(super) entry: u64,
    pub(super) context: u64,
}

/// Bytes of guest console output copied at a time.
const CONSOLE_CHUNK: usize = 32;

impl System {
    /// `console_write`: the bytes at `range` of the caller's RAM go to its console.
    pub(super) fn console_write(
        &mut self,
        caller: Caller,
        range: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        // Copied through a small buffer: zeroing a large one on every call would
        // cost more than the copy itself.
        let mut chunk = [0u8; CONSOLE_CHUNK];
        let slot = &mut self.vcpus[caller.vcpu];
        let label = Label {
            name: &self.partitions[caller.partition].name,
            vcpu: slot.index,
        };
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(CONSOLE_CHUNK as u64) as usize;
            devirt::read_buffer(
                self.devirt.as_deref(),
                caller.partition,
                at,
                &mut chunk[..len],
                platform,
            );
            let mut lines = GuestLines::new(platform, caller.partition);
            let _ = slot.console.write(&label, &chunk[..len], &mut lines);
            at += len as u64;
        }
        Dispatch::resume(Reply::ok([range.size(), 0, 0]))
    }

    /// `ready`: the first service VM instance lets the guests start; a restarted
    /// one is told they already have (result 1).
    pub(super) fn ready(&mut self, caller: usize, platform: &mut impl Platform) -> Dispatch {
        if self.service_ready {
            return Dispatch::resume(Reply::ok([1, 0, 0]));
        }
        self.service_ready = true;
        emit(
            platform,
            Event::PartitionReady {
                name: self.partitions[caller].name(),
            },
        );
        for index in 0..self.partitions.len() {
            if self.partitions[index].life.state() == &State::Waiting {
                self.start_partition(index, platform);
            }
        }
        let event = Event::KernelRunning {
            partitions: self.partitions.len(),
            us: platform.now_us(),
        };
        emit(platform, event);
        Dispatch::resume(Reply::ok([0; 3]))
    }

    /// `yield`: the caller gives up the rest of its turn; it learns how many other
    /// partitions may run.
    pub(super) fn yield_turn(&mut self, caller: usize) -> Dispatch {
        self.end_loan(caller);
        let others = (0..self.partitions.len())
            .filter(|&i| i != caller && self.partitions[i].life.runnable())
            .count() as u64;
        Dispatch::new(Some(Reply::ok([others, 0, 0])), Next::Yield)
    }

    /// `shutdown`: every partition's last console line, then power-off.
    pub(super) fn shutdown(&mut self, code: u64, platform: &mut impl Platform) -> Dispatch {
        for index in 0..self.partitions.len() {
            self.flush_console(index, platform);
        }
        self.report_net(platform);
        for cpu in 0..MAX_CPUS {
            if let Some((taken, contended)) = platform.lock_counts(cpu).filter(|&(t, _)| t > 0) {
                let event = Event::KernelLocks {
                    cpu,
                    taken,
                    contended,
                };
                emit(platform, event);
            }
        }
        let clean = code == 0;
        emit(platform, Event::KernelShutdown { clean, code });
        Dispatch::new(None, Next::PowerOff { clean })
    }

    /// `identify`: what the caller's slot holds.
    pub(super) fn identify(cap: Option<Cap>) -> Dispatch {
        let found = cap.map(|cap| Identified {
            ty: cap.ty,
            rights: cap.rights,
            object: cap.object,
        });
        Dispatch::resume(Reply::ok(Identified::to_results(found)))
    }

    /// The system-wide number of `partition`'s vCPU `index`, if it is one the
    /// partition may start (past 0, below its count).
    pub(super) fn vcpu_of(&self, partition: usize, index: u64) -> Result<usize, Error> {
        let vcpus = self.partitions[partition].vcpus.clone();
        let index = usize::try_from(index).map_err(|_| Error::InvalidArgument)?;
        if index == 0 || index >= vcpus.len() {
            return Err(Error::InvalidArgument);
        }
        Ok(vcpus.start + index)
    }

    /// Checks a start of `caller`'s vCPU `index` at `entry` (inside its RAM) with
    /// `context`; changes nothing.
    pub(super) fn decode_vcpu_start(
        &self,
        caller: usize,
        index: u64,
        entry: u64,
        context: u64,
    ) -> Result<VcpuStart, Error> {
        let vcpu = self.vcpu_of(caller, index)?;
        let partition = &self.partitions[caller];
        let entry_page = Range::from_start_size(entry, 4).ok_or(Error::BadAddress)?;
        if !partition.guest_ram.contains_range(&entry_page) {
            return Err(Error::BadAddress);
        }
        if partition.life.vcpu_state(self.vcpus[vcpu].index) != super::VcpuState::Off {
            return Err(Error::BadState);
        }
        Ok(VcpuStart {
            vcpu,
            entry,
            context,
        })
    }

    /// `vcpu_start` (or PSCI `CPU_ON`): the vCPU is ready, and the back end puts
    /// it at its entry; its core runs it at its next decision.
    pub(super) fn vcpu_start(
        &mut self,
        start: VcpuStart,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let now_us = platform.now_us();
        let slot = &self.vcpus[start.vcpu];
        let partition = &mut self.partitions[slot.partition];
        partition
            .life
            .start_vcpu(slot.index, now_us)
            .expect("checked by decode");
        self.woke |= 1 << slot.cpu;
        emit(
            platform,
            Event::VcpuStart {
                name: partition.name(),
                vcpu: slot.index,
                generation: partition.life.generation(),
                cpu: slot.cpu,
            },
        );
        let mut dispatch = Dispatch::resume(Reply::ok([0; 3]));
        dispatch.effect = Some(Effect::PowerOn {
            vcpu: start.vcpu,
            entry: start.entry,
            context: start.context,
        });
        dispatch
    }
}
