//! A partition of the running system as the dispatcher keeps it: its identity,
//! its RAM, its capabilities, its vCPUs, and its [`Lifecycle`], which alone holds
//! and changes its state; and each vCPU as the core knows it ([`VcpuSlot`]).
//! Everything else reads them through the accessors.
//!
//! vCPUs are numbered system-wide in package order (the service VM's is 0); a
//! partition's are consecutive, its vCPU 0 first. The back end keeps their
//! registers in the same order.

use core::fmt;
use core::ops::Range as Span;

use alloc::boxed::Box;

use super::lifecycle::{Lifecycle, State};
use super::virt::VirtualMachine;
use crate::caps::CapTable;
use crate::console::LineBuffer;
use crate::memory::Range;
use crate::package::{Kind, NAME_MAX};
use crate::supervision::Supervision;
use crate::usage::Usage;
use crate::virtio::Devices;

/// One partition of the running system.
#[derive(Debug)]
pub struct Partition {
    pub(super) name: heapless::String<NAME_MAX>,
    pub(super) kind: Kind,
    pub(super) guest_ram: Range,
    pub(super) host_ram: Range,
    /// The core of its vCPU 0 (its watchdog is checked there).
    pub(super) cpu: usize,
    /// Its vCPUs' system-wide numbers.
    pub(super) vcpus: Span<usize>,
    pub(super) caps: CapTable,
    /// Refused hypercalls not yet summed up on the console.
    pub(super) denied: u64,
    /// Traps of this generation so far (see [`super::TRAP_LINES`]).
    pub(super) trap_lines: u32,
    /// Bytes of RAM it always keeps, from the start of its RAM: all of it, or its
    /// minimum if it has a balloon. Only there does the kernel take buffers.
    pub(super) kept_ram: u64,
    /// Where it is in its life.
    pub(super) life: Lifecycle,
    /// Its emulated devices, if it is a Linux partition.
    pub(super) machine: Option<Box<VirtualMachine>>,
    /// Its virtio devices, if its description names any.
    pub(super) virtio: Option<Box<Devices>>,
    /// What the kernel counts about it for the status view (see `usage.rs`).
    pub(super) usage: Usage,
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
    /// Its vCPUs' system-wide numbers, vCPU 0 first.
    pub fn vcpus(&self) -> Span<usize> {
        self.vcpus.clone()
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
    /// The core its vCPU 0 is pinned to.
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

/// One vCPU as the core knows it: whose it is, and where it runs.
#[derive(Debug)]
pub struct VcpuSlot {
    pub(super) partition: usize,
    /// Its index within its partition.
    pub(super) index: usize,
    pub(super) cpu: usize,
    /// What it printed of a line not yet finished: each vCPU has its own, so
    /// vCPUs printing at once never mix their lines.
    pub(super) console: LineBuffer,
}

impl VcpuSlot {
    /// The partition it belongs to.
    pub fn partition(&self) -> usize {
        self.partition
    }
    /// Its index within its partition.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The core it is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

/// The prefix of a vCPU's console lines: its partition's name, with `/<index>`
/// after it for vCPUs past 0 (no name contains `/`, so no partition can print
/// under another's label).
pub(super) struct Label<'a> {
    pub(super) name: &'a str,
    pub(super) vcpu: usize,
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vcpu {
            0 => f.write_str(self.name),
            vcpu => write!(f, "{}/{vcpu}", self.name),
        }
    }
}
