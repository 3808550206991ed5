//! A partition of the running system as the dispatcher keeps it: its identity,
//! its RAM, its state and what its supervision and waiting need. The fields are
//! the dispatcher's (`system` and its modules) to change; everything else reads
//! them through the accessors.

use septum_abi::Error;

use super::supervise;
use crate::caps::CapTable;
use crate::console::LineBuffer;
use crate::memory::Range;
use crate::package::{Kind, NAME_MAX};
use crate::supervision::{MAX_RESTARTS, Supervision};

/// Where a partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Loaded, but not started: a guest waiting for the service VM to be ready.
    Waiting,
    /// May be scheduled.
    Runnable,
    /// Suspended after a trap, a fault or a missed heartbeat: the service VM
    /// decides whether it resumes, restarts or stops.
    Suspended,
    /// Waiting: the service VM for a supervision event, or a partition in `wait`
    /// for work on a queue end.
    Blocked,
    /// Ended itself with this exit code.
    Exited(u64),
    /// Stopped for good: by its policy, by the service VM, past its restart budget,
    /// or after a fault with nothing to supervise it.
    Stopped,
}

impl State {
    /// The state as the ABI numbers it.
    pub fn abi(self) -> septum_abi::PartitionState {
        use septum_abi::PartitionState as Abi;
        match self {
            State::Waiting => Abi::Waiting,
            State::Runnable => Abi::Runnable,
            State::Suspended => Abi::Suspended,
            State::Blocked => Abi::Blocked,
            State::Exited(_) => Abi::Exited,
            State::Stopped => Abi::Stopped,
        }
    }

    /// Whether the partition has ended (exited or stopped for good).
    pub fn ended(self) -> bool {
        matches!(self, State::Exited(_) | State::Stopped)
    }
}

/// One partition of the running system.
#[derive(Debug)]
pub struct Partition {
    pub(super) name: heapless::String<NAME_MAX>,
    pub(super) kind: Kind,
    pub(super) guest_ram: Range,
    pub(super) host_ram: Range,
    pub(super) state: State,
    pub(super) generation: u32,
    pub(super) cpu: usize,
    pub(super) caps: CapTable,
    pub(super) console: LineBuffer,
    pub(super) denied: u64,
    pub(super) supervision: Supervision,
    /// When each restart within the last budget period happened (µs), oldest first.
    pub(super) restart_times: heapless::Deque<u64, { MAX_RESTARTS as usize }>,
    /// Restarts since boot.
    pub(super) restarts: u32,
    /// Traps of this generation so far (see [`supervise::TRAP_LINES`]).
    pub(super) trap_lines: u32,
    /// While suspended: what suspended it, kept so that a restarted service VM is
    /// told again.
    pub(super) suspension: Option<supervise::Suspension>,
    /// When its next heartbeat is due (µs), if it has a watchdog and runs.
    pub(super) heartbeat_due_us: Option<u64>,
    /// A restart or stop the service VM asked for while it ran on another core,
    /// carried out at its next entry to the kernel.
    pub(super) deferred: Option<supervise::Deferred>,
    /// While blocked in `wait`: the queue it waits on, or its balloon
    /// ([`super::balloon::BALLOON_WAIT`]).
    pub(super) waiting: Option<u8>,
    /// Bytes of RAM it always keeps, from the start of its RAM: all of it, or its
    /// minimum if it has a balloon. Only there does the kernel take buffers.
    pub(super) kept_ram: u64,
    /// After a restart, until its RAM is reloaded: the offset of the next page to
    /// reload. It does not run before (see `System::work`).
    pub(super) reload_at: Option<u64>,
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
    pub fn state(&self) -> State {
        self.state
    }
    /// 0 before its first start, then 1, plus one per restart.
    pub fn generation(&self) -> u32 {
        self.generation
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
        self.restarts
    }
    /// How it is supervised.
    pub fn supervision(&self) -> Supervision {
        self.supervision
    }

    /// Translates a guest buffer to host-physical memory if it lies wholly in the
    /// RAM this partition always keeps (never in balloon memory, whose pages may
    /// be backed by any frame or by none).
    pub fn translate(&self, guest_addr: u64, len: u64) -> Result<Range, Error> {
        let buffer = Range::from_start_size(guest_addr, len).ok_or(Error::BadAddress)?;
        let kept =
            Range::from_start_size(self.guest_ram.start, self.kept_ram).expect("inside its RAM");
        if !kept.contains_range(&buffer) {
            return Err(Error::BadAddress);
        }
        let offset = guest_addr - self.guest_ram.start;
        Ok(Range::from_start_size(self.host_ram.start + offset, len)
            .expect("inside host RAM, which does not wrap"))
    }
}
