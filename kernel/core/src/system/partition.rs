//! A partition of the running system as the dispatcher keeps it: its identity,
//! its RAM, its capabilities, its console, and its [`Lifecycle`], which alone
//! holds and changes its state. Everything else reads a partition through the
//! accessors.

use super::lifecycle::{Lifecycle, State};
use crate::caps::CapTable;
use crate::console::LineBuffer;
use crate::memory::Range;
use crate::package::{Kind, NAME_MAX};
use crate::supervision::Supervision;

/// One partition of the running system.
#[derive(Debug)]
pub struct Partition {
    pub(super) name: heapless::String<NAME_MAX>,
    pub(super) kind: Kind,
    pub(super) guest_ram: Range,
    pub(super) host_ram: Range,
    pub(super) cpu: usize,
    pub(super) caps: CapTable,
    pub(super) console: LineBuffer,
    /// Refused hypercalls not yet summed up on the console.
    pub(super) denied: u64,
    /// Traps of this generation so far (see [`super::TRAP_LINES`]).
    pub(super) trap_lines: u32,
    /// Bytes of RAM it always keeps, from the start of its RAM: all of it, or its
    /// minimum if it has a balloon. Only there does the kernel take buffers.
    pub(super) kept_ram: u64,
    /// Where it is in its life.
    pub(super) life: Lifecycle,
}

impl Partition {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Service VM or guest.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Its RAM as the partition sees it (guest-physical).
    pub fn guest_ram(&self) -> Range {
        self.guest_ram
    }
    /// Its RAM in the machine (host-physical).
    pub fn host_ram(&self) -> Range {
        self.host_ram
    }
    /// Its state.
    pub fn state(&self) -> &State {
        self.life.state()
    }
    /// 0 before its first start, then 1, plus one per restart.
    pub fn generation(&self) -> u32 {
        self.life.generation()
    }
    /// Its capability table.
    pub fn caps(&self) -> &CapTable {
        &self.caps
    }
    /// The core it runs on (its one vCPU is pinned there).
    pub fn cpu(&self) -> usize {
        self.cpu
    }
    /// Restarts since boot.
    pub fn restarts(&self) -> u32 {
        self.life.restarts()
    }
    /// How it is supervised.
    pub fn supervision(&self) -> Supervision {
        *self.life.supervision()
    }
    /// Its lifecycle.
    pub fn life(&self) -> &Lifecycle {
        &self.life
    }
}
