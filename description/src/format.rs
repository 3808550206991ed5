//! The TOML shape of a system description, as read before validation. Values keep
//! their source spans so every error can name its line and column. See the README,
//! "System descriptions", for the annotated format.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::size::Bytes;

/// `board = "qemu-virt"` or `board = ["qemu-virt", "pc"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Boards {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemFile {
    pub board: Spanned<Boards>,
    pub schedule: Option<Spanned<Schedule>>,
    /// The subnets of the network, `a.b.c.d/n`; checked by the `net` rules.
    pub subnets: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub partition: Vec<Spanned<PartitionEntry>>,
    #[serde(default)]
    pub queue: Vec<Spanned<QueueEntry>>,
    pub policy: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub major_frame_us: Spanned<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionEntry {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub image: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    /// A Linux kernel instead of a partition program; checked by the `linux` rules.
    pub linux: Option<Spanned<LinuxEntry>>,
    pub ram: Spanned<Bytes>,
    pub at: Option<Spanned<Bytes>>,
    pub memory: Option<Spanned<MemoryLimits>>,
    /// Checked (and defaulted) by the `receive-window` rule.
    pub receive_window: Option<Spanned<Bytes>>,
    pub argument: Option<Spanned<u64>>,
    pub cpus: Option<Spanned<Vec<u32>>>,
    #[serde(default)]
    pub windows: Vec<Spanned<WindowEntry>>,
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
    #[serde(default)]
    pub caps: Vec<Spanned<CapEntry>>,
    /// Names of the virtio devices the kernel emulates for it; checked by the
    /// `virtio` rules.
    #[serde(default)]
    pub virtio: Vec<Spanned<String>>,
    /// Its port on the kernel's IP router; checked by the `net` rules.
    pub net: Option<Spanned<NetEntry>>,
    /// Trap class name to action name; checked by the `policy` rule.
    pub policy: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    /// Key to value; checked (keys and types too) by the `restart-budget` rule.
    pub restart_budget: Option<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    pub watchdog_ms: Option<Spanned<u64>>,
    /// Whether it may run natively, translation off; checked by the
    /// `devirtualize` rule.
    pub devirtualize: Option<Spanned<bool>>,
}

/// `linux = { kernel = "...", initrd = "...", bootargs = "..." }`, every key
/// optional; `program = "..."` instead of `kernel` boots a partition program
/// of the workspace by the same protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxEntry {
    pub kernel: Option<Spanned<String>>,
    pub program: Option<Spanned<String>>,
    pub initrd: Option<Spanned<String>>,
    pub bootargs: Option<Spanned<String>>,
}

/// `net = { address = "10.0.0.2/24", uplink = true }`: a network port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetEntry {
    pub address: Spanned<String>,
    #[serde(default)]
    pub uplink: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimits {
    pub min: Bytes,
    pub max: Bytes,
    /// Weight against other ballooning guests (default 100).
    pub shares: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowEntry {
    #[serde(default)]
    pub cpu: u32,
    pub offset_us: u64,
    pub length_us: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapEntry {
    pub kind: Spanned<String>,
    pub queue: Option<Spanned<String>>,
    pub partition: Option<Spanned<String>>,
    pub rights: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueEntry {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub depth: Spanned<u32>,
    pub max_in_flight: Spanned<u32>,
}
