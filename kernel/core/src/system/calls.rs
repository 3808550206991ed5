//! The handlers of the calls every partition may make of itself or the system:
//! `console_write`, `ready`, `yield`, `shutdown` and `identify` (`exit` is a
//! transition, in `transitions.rs`).
//!
//! Invariants:
//! - guest console output always goes through the partition's [`LineBuffer`]
//!   (`crate::console::LineBuffer`), so it reaches the console as whole, prefixed,
//!   sanitised lines;
//! - **service VM first**: guests start only at the first instance's `ready`.

use septum_abi::Identified;

use super::lifecycle::State;
use super::{Dispatch, GuestLines, Next, Platform, Reply, System, emit};
use crate::caps::Cap;
use crate::event::Event;
use crate::memory::Range;

/// Bytes of guest console output copied at a time.
const CONSOLE_CHUNK: usize = 32;

impl System {
    /// `console_write`: the bytes at `range` of the caller's RAM go to its console.
    pub(super) fn console_write(
        &mut self,
        caller: usize,
        range: Range,
        platform: &mut impl Platform,
    ) -> Dispatch {
        // Copied through a small buffer: zeroing a large one on every call would
        // cost more than the copy itself.
        let mut chunk = [0u8; CONSOLE_CHUNK];
        let partition = &mut self.partitions[caller];
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(CONSOLE_CHUNK as u64) as usize;
            platform.read_ram(at, &mut chunk[..len]);
            let mut lines = GuestLines::new(platform, caller);
            let _ = partition
                .console
                .write(&partition.name, &chunk[..len], &mut lines);
            at += len as u64;
        }
        self.resume_caller(caller, Reply::ok([range.size(), 0, 0]))
    }

    /// `ready`: the first service VM instance lets the guests start; a restarted
    /// one is told they already have (result 1).
    pub(super) fn ready(&mut self, caller: usize, platform: &mut impl Platform) -> Dispatch {
        if self.service_ready {
            return self.resume_caller(caller, Reply::ok([1, 0, 0]));
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
        self.resume_caller(caller, Reply::ok([0; 3]))
    }

    /// `yield`: the caller gives up the rest of its turn; it learns how many other
    /// partitions may run.
    pub(super) fn yield_turn(&mut self, caller: usize, platform: &mut impl Platform) -> Dispatch {
        self.end_loan(caller);
        let others = self.runnable().filter(|&i| i != caller).count() as u64;
        Dispatch::new(
            Some(Reply::ok([others, 0, 0])),
            self.after(caller, platform),
        )
    }

    /// `shutdown`: every partition's last console line, then power-off.
    pub(super) fn shutdown(&mut self, code: u64, platform: &mut impl Platform) -> Dispatch {
        for index in 0..self.partitions.len() {
            self.flush_console(index, platform);
        }
        let clean = code == 0;
        emit(platform, Event::KernelShutdown { clean, code });
        Dispatch::new(None, Next::PowerOff { clean })
    }

    /// `identify`: what the caller's slot holds.
    pub(super) fn identify(&self, caller: usize, cap: Option<Cap>) -> Dispatch {
        let found = cap.map(|cap| Identified {
            ty: cap.ty,
            rights: cap.rights,
            object: cap.object,
        });
        self.resume_caller(caller, Reply::ok(Identified::to_results(found)))
    }
}
