//! The validated system: what a [`System`] (obtainable only from a description
//! that passed every rule) says about its partitions, capabilities, windows and
//! queues.

use std::path::PathBuf;

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

/// A right a capability can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// Console: write.
    Write,
    /// Queue send end: send.
    Send,
    /// Queue receive end: receive.
    Receive,
    /// Partition control: read state and registers.
    Inspect,
    /// Partition control: resume a stopped vCPU.
    Resume,
    /// Partition control: restart from the pristine image.
    Restart,
    /// Partition control: stop.
    Stop,
    /// Partition control: set the memory target.
    SetMemoryTarget,
    /// Balloon: give pages back.
    Inflate,
    /// Balloon: take pages again.
    Deflate,
    /// Watchdog: heartbeat.
    Heartbeat,
    /// System: report ready.
    Ready,
    /// System: power off.
    Shutdown,
    /// Self: yield the rest of the turn.
    Yield,
    /// Self: exit.
    Exit,
}

impl Right {
    pub(crate) fn parse(text: &str) -> Option<Right> {
        Some(match text {
            "write" => Right::Write,
            "send" => Right::Send,
            "receive" => Right::Receive,
            "inspect" => Right::Inspect,
            "resume" => Right::Resume,
            "restart" => Right::Restart,
            "stop" => Right::Stop,
            "set-memory-target" => Right::SetMemoryTarget,
            "inflate" => Right::Inflate,
            "deflate" => Right::Deflate,
            "heartbeat" => Right::Heartbeat,
            "ready" => Right::Ready,
            "shutdown" => Right::Shutdown,
            "yield" => Right::Yield,
            "exit" => Right::Exit,
            _ => return None,
        })
    }
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
    /// The rights a capability of this kind may carry.
    pub fn possible_rights(&self) -> &'static [Right] {
        match self {
            CapKind::Console => &[Right::Write],
            CapKind::QueueSend(_) => &[Right::Send],
            CapKind::QueueReceive(_) => &[Right::Receive],
            CapKind::Control(_) => &[
                Right::Inspect,
                Right::Resume,
                Right::Restart,
                Right::Stop,
                Right::SetMemoryTarget,
            ],
            CapKind::System => &[Right::Ready, Right::Shutdown],
            CapKind::SelfPartition => &[Right::Yield, Right::Exit],
            CapKind::Balloon => &[Right::Inflate, Right::Deflate],
            CapKind::Watchdog => &[Right::Heartbeat],
        }
    }
}

/// A capability in a partition's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What it designates.
    pub kind: CapKind,
    /// The rights it carries (sorted, no repeats).
    pub rights: Vec<Right>,
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
    /// RAM at start, in bytes.
    pub ram: u64,
    /// Where its RAM must be placed in machine memory, if fixed.
    pub at: Option<u64>,
    /// The least RAM it may be left with.
    pub memory_min: u64,
    /// The most RAM it may ever have.
    pub memory_max: u64,
    /// The boot argument.
    pub argument: u64,
    /// The cores it is pinned to.
    pub cpus: Vec<u32>,
    /// Its time windows.
    pub windows: Vec<Window>,
    /// The board devices granted to it.
    pub devices: Vec<String>,
    /// Its capability table: slot `i` is `caps[i]`.
    pub caps: Vec<Cap>,
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
