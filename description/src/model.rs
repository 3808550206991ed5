//! The validated system: what a [`System`] (obtainable only from a description
//! that passed every rule) says about its partitions, capabilities, windows,
//! supervision and queues. Capability types and rights, trap classes and trap
//! actions are the ABI's own types (`septum_abi`), names and all.

use std::path::PathBuf;

use septum_core::abi::virtio::Device;
use septum_core::abi::{CapType, Rights, TrapAction, TrapClass};
use septum_core::resources::NetPort;

/// What a partition is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The service VM. Exactly one per system.
    Service,
    /// A guest.
    Guest,
}

/// Where a partition's program comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// A partition program of this workspace, by binary name.
    Workspace(String),
    /// A prebuilt ELF (resolved against the description's folder).
    File(PathBuf),
    /// An unmodified Linux kernel, with its initrd and command line.
    Linux(LinuxBoot),
}

/// What a Linux partition boots: the `linux` key. Its files are resolved against
/// the description's folder; an absent one is the host tool's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// An arm64 Linux `Image`; `None`: Debian's stock arm64 kernel (or
    /// `program`).
    pub kernel: Option<PathBuf>,
    /// A partition program of the workspace booted in its place (every program
    /// starts with an arm64 `Image` header): the kernel's own probes.
    pub program: Option<String>,
    /// The initial RAM disk; `None`: the host tool's busybox initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (the device tree's `bootargs`): the
    /// description's (or the default), then, for a partition with a network
    /// port, its network parameters (`crate::linux::network_parameters`).
    pub bootargs: String,
}

/// Where a value is written in its description: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
}

/// A time window: when, within each major frame, a partition may run on a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The core.
    pub cpu: u32,
    /// Start, in microseconds from the start of the major frame.
    pub offset_us: u64,
    /// Length in microseconds.
    pub length_us: u64,
}

/// What a capability designates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapKind {
    /// The console.
    Console,
    /// The send end of a queue (by name); its badge names the holder.
    QueueSend(String),
    /// The receive end of a queue (by name).
    QueueReceive(String),
    /// Control over a partition (by name). Service VM only.
    Control(String),
    /// The system as a whole: `ready` and `shutdown`. Service VM only.
    System,
    /// The holder itself: `yield` and `exit`.
    SelfPartition,
    /// The holder's own balloon.
    Balloon,
    /// The holder's own watchdog.
    Watchdog,
}

impl CapKind {
    /// Its type: the ABI's, which names the kind in descriptions and says which
    /// rights it may carry.
    pub fn cap_type(&self) -> CapType {
        match self {
            CapKind::Console => CapType::Console,
            CapKind::QueueSend(_) => CapType::QueueSend,
            CapKind::QueueReceive(_) => CapType::QueueReceive,
            CapKind::Control(_) => CapType::Control,
            CapKind::System => CapType::System,
            CapKind::SelfPartition => CapType::SelfPartition,
            CapKind::Balloon => CapType::Balloon,
            CapKind::Watchdog => CapType::Watchdog,
        }
    }
}

/// A capability in a partition's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What it designates.
    pub kind: CapKind,
    /// The rights it carries.
    pub rights: Rights,
}

/// A validated partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Unique name.
    pub name: String,
    /// Service VM or guest.
    pub kind: Kind,
    /// Its program.
    pub image: ImageSource,
    /// Where its `image`, `path` or `linux` is written (errors about its program
    /// point there).
    pub image_at: Location,
    /// RAM at start, in bytes.
    pub ram: u64,
    /// Where its RAM must be placed in machine memory, if fixed.
    pub at: Option<u64>,
    /// The least RAM it may be left with.
    pub memory_min: u64,
    /// The most RAM it may ever have.
    pub memory_max: u64,
    /// Its weight against the other ballooning guests in the memory scheduler.
    pub memory_shares: u32,
    /// Bytes of its receive window, where the pages of the queues it receives on
    /// are mapped: a multiple of 4 KiB up to 16 MiB, non-zero if it holds a
    /// `queue-receive` capability (default 64 KiB then, else 0).
    pub receive_window: u64,
    /// The boot argument (0 for a Linux partition, whose boot argument is its
    /// device tree's address: see [`crate::LinuxParts`]).
    pub argument: u64,
    /// The cores it is pinned to.
    pub cpus: Vec<u32>,
    /// Its time windows.
    pub windows: Vec<Window>,
    /// The board devices granted to it.
    pub devices: Vec<String>,
    /// Its capability table: slot `i` is `caps[i]`.
    pub caps: Vec<Cap>,
    /// The virtio devices the kernel emulates for it, in slot order: those
    /// `virtio` lists, and [`Device::Net`] exactly when it has a port (`net`).
    pub virtio: Vec<Device>,
    /// Its port on the kernel's IP router, if it has one.
    pub net: Option<NetPort>,
    /// How the kernel supervises it: trap policy, restart budget, watchdog.
    pub supervision: Supervision,
    /// Whether it may run natively, with the kernel's translation off, and be
    /// virtualized and devirtualized at run time (the `devirtualize` key; the
    /// kernel's `Resources::devirtualize`): then a native guest program placed
    /// identity, alone on its core but for the service VM, with no queue,
    /// balloon, virtio device or network port (rule `devirtualize`).
    pub devirtualize: bool,
}

impl Partition {
    /// Whether it balloons, through a `balloon` capability or a virtio balloon:
    /// its memory then runs from `memory.min` to `memory.max` (the kernel's
    /// `PartitionSpec::balloon`).
    pub fn balloon(&self) -> bool {
        self.virtio.contains(&Device::Balloon)
            || self.caps.iter().any(|cap| cap.kind == CapKind::Balloon)
    }

    /// Bytes of RAM it always keeps, from the start of its RAM (the kernel's
    /// `PartitionSpec::kept_ram`): all its RAM without a balloon; with one, its
    /// `memory.min` for a partition program (the rest may be ballooned away; its
    /// image must lie inside), and none for Linux, which starts with all its RAM
    /// and may give back any page of it.
    pub fn kept_ram(&self) -> u64 {
        match (self.balloon(), &self.image) {
            (false, _) => self.ram,
            (true, ImageSource::Linux(_)) => 0,
            (true, _) => self.memory_min,
        }
    }
}

/// At most `restarts` restarts within any `period_ms` milliseconds; past that the
/// partition stays stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed per period (0 to 16).
    pub restarts: u16,
    /// The period in milliseconds (1 to 3,600,000).
    pub period_ms: u32,
}

impl Default for RestartBudget {
    /// The kernel's default: 3 restarts per 10 s.
    fn default() -> Self {
        RestartBudget {
            restarts: 3,
            period_ms: 10_000,
        }
    }
}

/// How the kernel supervises a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervision {
    /// Every trap class, in [`TrapClass::ALL`] order, with its action. All
    /// `service` for the service VM, whose traps always restart it.
    pub policy: Vec<(TrapClass, TrapAction)>,
    /// How often it may be restarted.
    pub restart_budget: RestartBudget,
    /// Its heartbeat period in milliseconds; `None` when it has no watchdog.
    pub watchdog_ms: Option<u32>,
}

impl Default for Supervision {
    /// Every trap to the service VM, the default budget, no watchdog.
    fn default() -> Self {
        Supervision {
            policy: TrapClass::ALL
                .into_iter()
                .map(|class| (class, TrapAction::Service))
                .collect(),
            restart_budget: RestartBudget::default(),
            watchdog_ms: None,
        }
    }
}

impl Supervision {
    /// The action for `class`.
    pub fn action(&self, class: TrapClass) -> TrapAction {
        self.policy
            .iter()
            .find(|(listed, _)| *listed == class)
            .map_or(TrapAction::Service, |&(_, action)| action)
    }
}

/// A validated queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Unique name.
    pub name: String,
    /// The sending partition.
    pub from: String,
    /// The receiving partition.
    pub to: String,
    /// Messages it holds.
    pub depth: u32,
    /// Pages that may be in flight at once.
    pub max_in_flight: u32,
}

/// A system description whose every rule holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// The file it came from.
    pub path: PathBuf,
    /// The boards it is for.
    pub boards: Vec<String>,
    /// The major frame in microseconds, if the system has a schedule.
    pub major_frame_us: Option<u64>,
    /// Partitions in file order.
    pub partitions: Vec<Partition>,
    /// Queues in file order.
    pub queues: Vec<Queue>,
}

impl System {
    /// The partitions in boot order: the service VM first, then the guests in file
    /// order.
    pub fn boot_order(&self) -> impl Iterator<Item = &Partition> {
        let service = self.partitions.iter().filter(|p| p.kind == Kind::Service);
        service.chain(self.partitions.iter().filter(|p| p.kind == Kind::Guest))
    }
}
