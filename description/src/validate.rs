//! The rules a system description must satisfy, and the validated [`System`].
//!
//! Each rule has a stable identifier, reported as `error[<rule>]`. Where a rule
//! states a kernel limit, the number is the kernel's own constant (see
//! [`crate::limits`]); the name of that constant is given in brackets.
//!
//! | rule | what it forbids |
//! |---|---|
//! | `syntax` | malformed TOML, unknown keys, values of the wrong type |
//! | `board` | a description for another board |
//! | `name` | a partition or queue name that is empty, longer than 16 bytes, or not `[a-z0-9_-]` |
//! | `duplicate-name` | two partitions, or two queues, with one name |
//! | `kind` | a kind other than `service` or `guest` |
//! | `service-count` | no service VM, or a second one |
//! | `partition-count` | more than 64 partitions (`MAX_PARTITIONS`) |
//! | `image` | none, or more than one, of `image`, `path` and `linux` |
//! | `ram-size` | RAM that is zero, not a multiple of 4 KiB, or over 1 GiB (`RAM_MAX`) |
//! | `memory-limits` | `memory.min` > `ram` > `memory.max`, limits not multiples of 4 KiB or over 1 GiB, or a `memory.min` of 0 with a `balloon` capability or a virtio balloon (such a partition never holds less than its minimum) |
//! | `placement` | an `at` address not on a 2 MiB boundary |
//! | `memory-outside-ram` | partition RAM placed outside the board's RAM |
//! | `memory-overlap` | partition RAM placed over another partition's or the kernel's |
//! | `cpu` | a core the board does not have (a board recipe has at most 8 cores, `MAX_CPUS`), no core or more than 4 for a partition (one vCPU per entry of `cpus`, `MAX_VCPUS`), or a service VM with another `cpus` than `[0]` |
//! | `vcpus` | more than 128 vCPUs in all (`MAX_SYSTEM_VCPUS`), or a partition with several vCPUs that holds a queue end or a balloon (a capability or a virtio balloon), has a receive window (page flips and ballooning change a partition's mappings while only the core they run on is told) or has virtio devices, a network port among them (their rings are walked while none of its vCPUs runs) |
//! | `schedule` | time windows without a `[schedule]`, or a major frame of 0 or over 2^32 - 1 µs |
//! | `window-missing` | with a `[schedule]`, a partition without a window, or without one on a core one of its vCPUs is pinned to |
//! | `window-cpu` | a window on a core the partition is not pinned to |
//! | `window-frame` | a window that is empty or ends after the major frame |
//! | `window-overlap` | two windows that overlap on one core |
//! | `window-count` | more than 8 windows in one partition (`MAX_WINDOWS`) |
//! | `device-unknown` | a device the board does not have |
//! | `device-shared` | a device granted to two partitions |
//! | `device-count` | more than 4 MMIO blocks, 4 port ranges or 8 interrupts in one partition's devices (`MAX_MMIO`, `MAX_PORTS`, `MAX_IRQS`) |
//! | `queue-endpoint` | a queue naming an unknown partition, or joining a partition to itself |
//! | `queue-depth` | a depth outside 1 to 64 (`MAX_QUEUE_DEPTH`, `QUEUE_MAX`), or more pages in flight than the depth |
//! | `queue-count` | more than 64 queues (`MAX_QUEUES`) |
//! | `cap-kind` | an unknown capability kind |
//! | `cap-target` | a capability to a queue or partition that does not exist, or missing its target |
//! | `cap-rights` | a right the capability's kind does not have |
//! | `guest-control` | a guest granted partition control or the system capability |
//! | `queue-end` | a queue end held by a partition that is not that end of the queue |
//! | `receive-window` | a `receive_window` not a multiple of 4 KiB or over 16 MiB, or of 0 on a partition holding a `queue-receive` capability (default: 64 KiB there, else 0) |
//! | `cap-count` | more than 16 capabilities in one partition (`CAP_SLOTS`) |
//! | `policy` | a trap `policy` naming an unknown trap class or action, or a `policy` on the service VM (its traps always restart it) |
//! | `restart-budget` | a `restart_budget` without both `restarts` and `period_ms` or with other keys, more than 16 restarts (`MAX_RESTARTS`), or a period of 0 or over 3,600,000 ms |
//! | `watchdog` | a `watchdog_ms` of 0 or over 60,000, a `watchdog_ms` without a `watchdog` capability that has `heartbeat`, or such a capability without `watchdog_ms` |
//! | `policy-reserved` | keys in the top-level `[policy]` section (trap policies are set per partition with the `policy` key) |
//! | `linux` | `linux` on the service VM or on a board that is not aarch64, with an `argument` (a Linux partition's is its device tree's address), or with `bootargs` longer than 2,047 bytes or holding a NUL |
//! | `linux-ram` | a Linux partition with less RAM than 64 MiB (`MIN_RAM`), or a ballooning one (a virtio balloon or a `balloon` capability) whose `ram` is not its `memory.max` (Linux starts with all its memory) |
//! | `linux-devices` | a device granted to a Linux partition with an MMIO block over one of its emulated device windows (GIC distributor, its vCPUs' redistributors, UART) |
//! | `virtio` | a `virtio` device the kernel does not emulate (`balloon`, `console`), one listed twice, virtio devices on the service VM, or a virtio balloon beside a `balloon` capability (one balloon front end) |
//! | `virtio-area` | a device granted to any partition with an MMIO block over the virtio device windows (`0x0a00_0000` to `0x0a00_1000`, `WINDOW_BASE` and `WINDOW_AREA`), which every partition's space keeps |
//! | `net` | a network address that is not a host address `a.b.c.d/n` of its subnet (prefix 1 to 30) |
//! | `net-subnet` | a network port without a top-level `subnets` list or whose subnet (its address's network and prefix) is not listed, or a listed subnet that is not a network address or overlaps another |
//! | `net-duplicate` | two network ports with one address |
//! | `net-uplink` | a second uplink, an uplink that is not the service VM, or one not granted the board's NIC (`devices = ["nic"]`; a board without one, such as `pc`, has no uplink) |
//! | `devirtualize` | a `devirtualize = true` partition not placed identity (`at` missing or not the guest-physical RAM base, 0x4000_0000, `RAM_BASE`), that is the service VM, runs Linux or has several vCPUs, shares a core with another guest (the service VM may share its core), is a queue's end, holds a `balloon` capability, has a receive window, virtio devices or a network port (each needs the kernel's translation, which a devirtualized partition does not have), or a second one in the system |
//!
//! The image rules, `image-file`, `image-elf`, `image-arch`, `image-segment` and
//! `image-entry` (and for a Linux partition `linux-image` and `linux-fit`),
//! check each partition's program; they need the programs, so
//! [`load_images`](crate::load_images) checks them on a validated system.
//!
//! The validator's work stays linear in the size of the file: past a count limit
//! (partitions, windows), the excess entries are still checked on their own but
//! not compared with the others.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use septum_core::abi::CapType;
use toml::Spanned;

use crate::board::Board;
use crate::format::{Boards, PartitionEntry, QueueEntry, SystemFile};
use crate::limits::{
    MAJOR_FRAME_MAX_US, MAX_IRQS, MAX_MMIO, MAX_PARTITIONS, MAX_PORTS, MAX_RECEIVE_WINDOW,
    MAX_SYSTEM_VCPUS, MAX_VCPUS, MAX_WINDOWS, NAME_MAX, PAGE_SIZE, RAM_MAX,
};
use crate::model::{ImageSource, Kind, Partition, System, Window};
use crate::{DescriptionError, DescriptionErrors, Locator};

mod caps;
mod devirtualize;
mod linux;
mod net;
mod queues;
mod supervision;
mod virtio;

use caps::{check_caps, resolve_cap};
use queues::check_queues;

/// Every rule's identifier, as errors report it (the image rules last).
pub const RULES: &[&str] = &[
    "syntax",
    "board",
    "name",
    "duplicate-name",
    "kind",
    "service-count",
    "partition-count",
    "image",
    "ram-size",
    "memory-limits",
    "placement",
    "memory-outside-ram",
    "memory-overlap",
    "cpu",
    "vcpus",
    "schedule",
    "window-missing",
    "window-cpu",
    "window-frame",
    "window-overlap",
    "window-count",
    "device-unknown",
    "device-shared",
    "device-count",
    "queue-endpoint",
    "queue-depth",
    "queue-count",
    "cap-kind",
    "cap-target",
    "cap-rights",
    "guest-control",
    "queue-end",
    "receive-window",
    "cap-count",
    "policy",
    "restart-budget",
    "watchdog",
    "policy-reserved",
    "linux",
    "linux-ram",
    "linux-devices",
    "virtio",
    "virtio-area",
    "net",
    "net-subnet",
    "net-duplicate",
    "net-uplink",
    "devirtualize",
    "image-file",
    "image-elf",
    "image-arch",
    "image-segment",
    "image-entry",
    "linux-image",
    "linux-fit",
];

const PAGE: u64 = PAGE_SIZE;
/// Partition RAM placed with `at` must start on this boundary (block mappings).
const PLACEMENT_ALIGN: u64 = 2 << 20;
/// The receive window of a partition that receives on a queue and sets none.
const RECEIVE_WINDOW_DEFAULT: u64 = 64 << 10;

/// Collects errors against the source file.
struct Checker<'a> {
    locate: &'a Locator<'a>,
    errors: Vec<DescriptionError>,
}

impl Checker<'_> {
    fn fail(&mut self, span: Range<usize>, rule: &'static str, message: String) {
        self.errors.push(self.locate.error(span, rule, message));
    }
}

pub(crate) fn validate(
    file: SystemFile,
    board: &Board,
    locate: &Locator<'_>,
) -> Result<System, DescriptionErrors> {
    let mut check = Checker {
        locate,
        errors: Vec::new(),
    };
    let boards = match file.board.get_ref() {
        Boards::One(one) => vec![one.clone()],
        Boards::Several(several) => several.clone(),
    };
    if boards.is_empty() {
        let message = format!("`board` names no board (this is `{}`)", board.name);
        check.fail(file.board.span(), "board", message);
    } else if !boards.contains(&board.name) {
        let message = format!(
            "this system is for {}, not `{}`",
            boards.join(", "),
            board.name
        );
        check.fail(file.board.span(), "board", message);
    }
    let major_frame_us = file
        .schedule
        .as_ref()
        .map(|s| *s.get_ref().major_frame_us.get_ref());
    if let Some(schedule) = &file.schedule
        && let Some(frame) = major_frame_us
        && (frame == 0 || frame > MAJOR_FRAME_MAX_US)
    {
        let span = schedule.get_ref().major_frame_us.span();
        let message =
            format!("the major frame is {frame} µs; it must be 1 to {MAJOR_FRAME_MAX_US} µs");
        check.fail(span, "schedule", message);
    }
    if file.partition.len() > MAX_PARTITIONS {
        let message = format!(
            "the system has {} partitions; the kernel runs at most {MAX_PARTITIONS}",
            file.partition.len()
        );
        let span = file.partition[MAX_PARTITIONS].get_ref().name.span();
        check.fail(span, "partition-count", message);
    }
    let names = check_names(&mut check, &file.partition, &file.queue);
    let mut partitions: Vec<Partition> = file
        .partition
        .iter()
        .map(|entry| check_partition(&mut check, entry, board, major_frame_us))
        .collect();
    net::add_parameters(&mut partitions);
    check_services(&mut check, &file.partition, &partitions);
    check_placements(&mut check, &file.partition, &partitions, board);
    check_windows(&mut check, &file.partition, &partitions, major_frame_us);
    check_devices(&mut check, &file.partition, board);
    linux::check_linux(&mut check, &file.partition, &partitions, board);
    virtio::check_virtio(&mut check, &file.partition, &partitions, board);
    net::check_net(
        &mut check,
        file.subnets.as_ref(),
        &file.partition,
        &partitions,
        board,
    );
    let queues = check_queues(&mut check, &file.queue, &names);
    let mut by_name = BTreeMap::new();
    for queue in &queues {
        by_name.entry(queue.name.as_str()).or_insert(queue);
    }
    for (entry, partition) in file.partition.iter().zip(&partitions) {
        check_caps(&mut check, entry, partition, &by_name, &names);
    }
    check_vcpus(&mut check, &file.partition, &partitions);
    devirtualize::check_devirtualize(&mut check, &file.partition, &partitions, &file.queue, board);
    if let Some(policy) = &file.policy
        && !policy.get_ref().is_empty()
    {
        let message = "the top-level [policy] section is reserved; trap policies are set per partition with the `policy` key".into();
        check.fail(policy.span(), "policy-reserved", message);
    }
    if check.errors.is_empty() {
        let partitions = file
            .partition
            .iter()
            .zip(partitions)
            .map(|(entry, mut partition)| {
                partition.caps = entry
                    .get_ref()
                    .caps
                    .iter()
                    .filter_map(|cap| resolve_cap(cap.get_ref()).ok())
                    .collect();
                partition
            })
            .collect();
        Ok(System {
            path: locate.path.to_owned(),
            boards,
            major_frame_us,
            partitions,
            queues,
        })
    } else {
        check.errors.sort_by_key(|e| (e.line, e.column));
        Err(DescriptionErrors(check.errors))
    }
}

/// Partition and queue names: well formed and unique. Returns the partition names
/// with their kinds.
fn check_names(
    check: &mut Checker<'_>,
    partitions: &[Spanned<PartitionEntry>],
    queues: &[Spanned<QueueEntry>],
) -> BTreeMap<String, Kind> {
    let mut kinds = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for entry in partitions {
        let name = &entry.get_ref().name;
        check_name(check, name, "partition");
        if !seen.insert(name.get_ref().clone()) {
            let message = format!("a second partition is called `{}`", name.get_ref());
            check.fail(name.span(), "duplicate-name", message);
        }
        let kind = match entry.get_ref().kind.get_ref().as_str() {
            "service" => Kind::Service,
            _ => Kind::Guest,
        };
        kinds.entry(name.get_ref().clone()).or_insert(kind);
    }
    let mut seen = BTreeSet::new();
    for entry in queues {
        let name = &entry.get_ref().name;
        check_name(check, name, "queue");
        if !seen.insert(name.get_ref().clone()) {
            let message = format!("a second queue is called `{}`", name.get_ref());
            check.fail(name.span(), "duplicate-name", message);
        }
    }
    kinds
}

fn check_name(check: &mut Checker<'_>, name: &Spanned<String>, what: &str) {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= NAME_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        let message = format!(
            "{what} name `{text}` must be 1 to {NAME_MAX} characters of a-z, 0-9, `-` and `_`"
        );
        check.fail(name.span(), "name", message);
    }
}

fn check_partition(
    check: &mut Checker<'_>,
    entry: &Spanned<PartitionEntry>,
    board: &Board,
    major_frame_us: Option<u64>,
) -> Partition {
    let p = entry.get_ref();
    let name = p.name.get_ref();
    let kind = match p.kind.get_ref().as_str() {
        "service" => Kind::Service,
        "guest" => Kind::Guest,
        other => {
            let message = format!("kind `{other}` is neither `service` nor `guest`");
            check.fail(p.kind.span(), "kind", message);
            Kind::Guest
        }
    };
    let image = check_image_keys(check, p);
    let ram = p.ram.get_ref().0;
    if ram == 0 || !ram.is_multiple_of(PAGE) || ram > RAM_MAX {
        let message = format!(
            "RAM of `{name}` is {ram} bytes; it must be a non-zero multiple of 4 KiB up to 1G"
        );
        check.fail(p.ram.span(), "ram-size", message);
    }
    let memory_shares = p
        .memory
        .as_ref()
        .and_then(|limits| limits.get_ref().shares)
        .unwrap_or(100);
    if memory_shares == 0
        && let Some(limits) = &p.memory
    {
        let message = format!("memory shares of `{name}` must be at least 1");
        check.fail(limits.span(), "memory-limits", message);
    }
    let (memory_min, memory_max) = match &p.memory {
        Some(limits) => {
            let (min, max) = (limits.get_ref().min.0, limits.get_ref().max.0);
            let aligned = min.is_multiple_of(PAGE) && max.is_multiple_of(PAGE);
            if !(min <= ram && ram <= max && max <= RAM_MAX && aligned) {
                let message = format!(
                    "memory limits of `{name}` must satisfy min <= ram <= max <= 1G in multiples of 4 KiB (min {min}, ram {ram}, max {max})"
                );
                check.fail(limits.span(), "memory-limits", message);
            }
            let balloon = p
                .caps
                .iter()
                .any(|cap| *cap.get_ref().kind.get_ref() == CapType::Balloon.name());
            if balloon && min == 0 {
                let message = format!(
                    "`{name}` holds a `balloon` capability, so it always keeps `memory.min`, which must not be 0"
                );
                check.fail(limits.span(), "memory-limits", message);
            }
            (min, max)
        }
        None => (ram, ram),
    };
    let receive_window = check_receive_window(check, p);
    let cpus = match &p.cpus {
        Some(cpus) => {
            for &cpu in cpus.get_ref() {
                if cpu >= board.cpus {
                    let message = format!(
                        "`{name}` lists core {cpu}, which `{}` does not have (cores 0 to {})",
                        board.name,
                        board.cpus - 1
                    );
                    check.fail(cpus.span(), "cpu", message);
                }
            }
            let count = cpus.get_ref().len();
            if count == 0 || count > MAX_VCPUS {
                let message = format!(
                    "`{name}` lists {count} cores: a partition has 1 to {MAX_VCPUS} vCPUs, one on each core listed"
                );
                check.fail(cpus.span(), "cpu", message);
            } else if kind == Kind::Service && cpus.get_ref() != &[0] {
                let message = format!(
                    "the service VM `{name}` has one vCPU, on core 0, which the kernel starts first"
                );
                check.fail(cpus.span(), "cpu", message);
            }
            cpus.get_ref().clone()
        }
        None => vec![0],
    };
    if major_frame_us.is_none()
        && let Some(window) = p.windows.first()
    {
        let message = "time windows need a [schedule] with major_frame_us".into();
        check.fail(window.span(), "schedule", message);
    }
    let net = net::port(check, p);
    let image_span = [&p.image, &p.path]
        .into_iter()
        .flatten()
        .map(Spanned::span)
        .chain(p.linux.as_ref().map(Spanned::span))
        .next()
        .unwrap_or_else(|| p.name.span());
    Partition {
        name: name.clone(),
        kind,
        image,
        image_at: check.locate.location(image_span),
        ram,
        at: p.at.as_ref().map(|at| at.get_ref().0),
        memory_min,
        memory_max,
        memory_shares,
        receive_window,
        argument: p.argument.as_ref().map_or(0, |a| *a.get_ref()),
        cpus,
        windows: p
            .windows
            .iter()
            .map(|w| Window {
                cpu: w.get_ref().cpu,
                offset_us: w.get_ref().offset_us,
                length_us: w.get_ref().length_us,
            })
            .collect(),
        devices: p.devices.iter().map(|d| d.get_ref().clone()).collect(),
        caps: Vec::new(),
        virtio: virtio::devices(check, p, net.is_some()),
        net,
        supervision: supervision::check_supervision(check, p, kind),
        devirtualize: p.devirtualize.as_ref().is_some_and(|d| *d.get_ref()),
    }
}

/// Rule `image`: exactly one of `image`, `path` and `linux`. Returns the
/// partition's program (an empty workspace name where none is given).
fn check_image_keys(check: &mut Checker<'_>, p: &PartitionEntry) -> ImageSource {
    let name = p.name.get_ref();
    let mut given: Vec<(&str, Range<usize>, ImageSource)> = Vec::new();
    if let Some(image) = &p.image {
        let source = ImageSource::Workspace(image.get_ref().clone());
        given.push(("image", image.span(), source));
    }
    if let Some(path) = &p.path {
        let source = ImageSource::File(PathBuf::from(path.get_ref()));
        given.push(("path", path.span(), source));
    }
    if let Some(entry) = &p.linux {
        given.push(("linux", entry.span(), linux::boot(entry.get_ref())));
    }
    match given.len() {
        0 => {
            let message = format!(
                "partition `{name}` needs `image` (a workspace program), `path` (an ELF) or `linux` (a Linux kernel)"
            );
            check.fail(p.name.span(), "image", message);
            ImageSource::Workspace(String::new())
        }
        1 => given.remove(0).2,
        _ => {
            let keys: Vec<String> = given.iter().map(|(key, ..)| format!("`{key}`")).collect();
            let message = format!(
                "partition `{name}` has {}; keep one",
                match keys.as_slice() {
                    [first, second] => format!("both {first} and {second}"),
                    _ => keys.join(", "),
                }
            );
            let (_, span, source) = given.remove(0);
            check.fail(span, "image", message);
            source
        }
    }
}

/// Rule `receive-window`: a multiple of 4 KiB up to 16 MiB, and not 0 for a
/// partition holding a `queue-receive` capability. Returns the window, defaulted
/// when the key is absent.
fn check_receive_window(check: &mut Checker<'_>, p: &PartitionEntry) -> u64 {
    let name = p.name.get_ref();
    let receives = p
        .caps
        .iter()
        .any(|cap| *cap.get_ref().kind.get_ref() == CapType::QueueReceive.name());
    let Some(window) = &p.receive_window else {
        return if receives { RECEIVE_WINDOW_DEFAULT } else { 0 };
    };
    let bytes = window.get_ref().0;
    if !bytes.is_multiple_of(PAGE) || bytes > MAX_RECEIVE_WINDOW {
        let message = format!(
            "receive window of `{name}` is {bytes} bytes; it must be a multiple of 4 KiB up to 16M"
        );
        check.fail(window.span(), "receive-window", message);
    } else if bytes == 0 && receives {
        let message = format!(
            "`{name}` holds a `queue-receive` capability, so its receive window must not be 0"
        );
        check.fail(window.span(), "receive-window", message);
    }
    bytes
}

fn check_services(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
) {
    let mut services = entries
        .iter()
        .zip(partitions)
        .filter(|(_, p)| p.kind == Kind::Service);
    if services.next().is_none() {
        let message = "no partition has kind = \"service\": a system needs one service VM".into();
        check.fail(0..0, "service-count", message);
    }
    for (entry, partition) in services {
        let message = format!(
            "`{}` is a second service VM; a system has exactly one",
            partition.name
        );
        check.fail(entry.get_ref().kind.span(), "service-count", message);
    }
}

fn check_placements(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    board: &Board,
) {
    let mut placed: Vec<(&str, u64, u64)> = Vec::new();
    for (entry, partition) in entries.iter().zip(partitions) {
        let (Some(at), Some(span)) = (partition.at, entry.get_ref().at.as_ref().map(Spanned::span))
        else {
            continue;
        };
        let size = partition.memory_max;
        let name = &partition.name;
        let range = format!("{at:#x}..{:#x}", at.saturating_add(size));
        if !at.is_multiple_of(PLACEMENT_ALIGN) {
            let message = format!("RAM of `{name}` at {at:#x} must start on a 2 MiB boundary");
            check.fail(span.clone(), "placement", message);
        }
        if !board.ram.iter().any(|r| r.contains(at, size)) {
            let message = format!(
                "RAM of `{name}` ({range}) is not inside the RAM of `{}`",
                board.name
            );
            check.fail(span.clone(), "memory-outside-ram", message);
        }
        if board.reserved.iter().any(|r| r.overlaps(at, size)) {
            let message =
                format!("RAM of `{name}` ({range}) overlaps memory the kernel or firmware keeps");
            check.fail(span.clone(), "memory-overlap", message);
        }
        for (other, other_at, other_size) in &placed {
            if at < other_at + other_size && *other_at < at.saturating_add(size) {
                let message = format!("RAM of `{name}` ({range}) overlaps RAM of `{other}`");
                check.fail(span.clone(), "memory-overlap", message);
            }
        }
        // Past the partition-count limit, partitions are not compared with each
        // other: that keeps the work linear in the size of the file.
        if placed.len() < MAX_PARTITIONS {
            placed.push((name, at, size));
        }
    }
}

fn check_windows(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    major_frame_us: Option<u64>,
) {
    let Some(frame) = major_frame_us else { return };
    let mut taken: Vec<(u32, u64, u64, &str)> = Vec::new();
    for (index, (entry, partition)) in entries.iter().zip(partitions).enumerate() {
        let name = &partition.name;
        if partition.windows.len() > MAX_WINDOWS {
            let message = format!(
                "`{name}` has {} windows; a partition has at most {MAX_WINDOWS}",
                partition.windows.len()
            );
            check.fail(
                entry.get_ref().windows[MAX_WINDOWS].span(),
                "window-count",
                message,
            );
        }
        if partition.windows.is_empty() {
            let message = format!("`{name}` has no time window in the schedule");
            check.fail(entry.get_ref().name.span(), "window-missing", message);
        } else if let Some(core) = partition
            .cpus
            .iter()
            .find(|&&core| !partition.windows.iter().any(|w| w.cpu == core))
        {
            let message = format!("`{name}` has a vCPU on core {core} but no time window there");
            check.fail(entry.get_ref().name.span(), "window-missing", message);
        }
        for (nth, (window, spanned)) in partition
            .windows
            .iter()
            .zip(&entry.get_ref().windows)
            .enumerate()
        {
            let span = spanned.span();
            let end = window.offset_us.saturating_add(window.length_us);
            if !partition.cpus.contains(&window.cpu) {
                let message = format!(
                    "`{name}` has a window on core {}, but is pinned to {:?}",
                    window.cpu, partition.cpus
                );
                check.fail(span.clone(), "window-cpu", message);
            }
            if window.length_us == 0 || end > frame {
                let message = format!(
                    "window {}..{} µs of `{name}` must be non-empty and end within the major frame of {frame} µs",
                    window.offset_us, end
                );
                check.fail(span.clone(), "window-frame", message);
            }
            for (cpu, start, stop, other) in &taken {
                if *cpu == window.cpu && window.offset_us < *stop && *start < end {
                    let message = format!(
                        "window {}..{} µs of `{name}` overlaps window {start}..{stop} µs of `{other}` on core {cpu}",
                        window.offset_us, end
                    );
                    check.fail(span.clone(), "window-overlap", message);
                }
            }
            // Windows past the count limits are checked against the others but
            // not kept for later ones: that keeps the work linear.
            if index < MAX_PARTITIONS && nth < MAX_WINDOWS {
                taken.push((window.cpu, window.offset_us, end, name));
            }
        }
    }
}

/// The `vcpus` rule: the kernel's total, and what a partition of several vCPUs
/// may not hold.
fn check_vcpus(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
) {
    let total: usize = partitions.iter().map(|p| p.cpus.len()).sum();
    if total > MAX_SYSTEM_VCPUS
        && let Some(last) = entries.last()
    {
        let message = format!(
            "the partitions have {total} vCPUs in all; the kernel runs at most {MAX_SYSTEM_VCPUS}"
        );
        check.fail(last.get_ref().name.span(), "vcpus", message);
    }
    for (entry, partition) in entries.iter().zip(partitions) {
        if partition.cpus.len() < 2 {
            continue;
        }
        let name = &partition.name;
        let remapping = entry.get_ref().caps.iter().find(|cap| {
            matches!(
                CapType::from_name(cap.get_ref().kind.get_ref()),
                Some(CapType::QueueSend | CapType::QueueReceive | CapType::Balloon)
            )
        });
        if let Some(cap) = remapping {
            let message = format!(
                "`{name}` has {} vCPUs and holds a `{}` capability: a partition with several vCPUs may not flip pages or balloon (yet)",
                partition.cpus.len(),
                cap.get_ref().kind.get_ref()
            );
            check.fail(cap.span(), "vcpus", message);
        } else if partition.receive_window > 0 {
            let message = format!(
                "`{name}` has {} vCPUs and a receive window: a partition with several vCPUs may not receive flipped pages (yet)",
                partition.cpus.len()
            );
            check.fail(entry.get_ref().name.span(), "vcpus", message);
        }
    }
}

fn check_devices(check: &mut Checker<'_>, entries: &[Spanned<PartitionEntry>], board: &Board) {
    let mut granted: BTreeMap<&str, &str> = BTreeMap::new();
    for entry in entries {
        let holder = entry.get_ref().name.get_ref();
        let devices: Vec<_> = entry
            .get_ref()
            .devices
            .iter()
            .filter_map(|d| board.device(d.get_ref()))
            .collect();
        let mmio: usize = devices.iter().map(|d| d.mmio.len()).sum();
        let ports: usize = devices.iter().map(|d| d.ports.len()).sum();
        let irqs: usize = devices.iter().map(|d| d.irqs.len()).sum();
        if (mmio > MAX_MMIO || ports > MAX_PORTS || irqs > MAX_IRQS)
            && let Some(last) = entry.get_ref().devices.last()
        {
            let message = format!(
                "the devices of `{holder}` have {mmio} MMIO blocks, {ports} port ranges and {irqs} interrupts; a partition has at most {MAX_MMIO}, {MAX_PORTS} and {MAX_IRQS}"
            );
            check.fail(last.span(), "device-count", message);
        }
        for device in &entry.get_ref().devices {
            let name = device.get_ref();
            if board.device(name).is_none() {
                let known: Vec<&str> = board.devices.iter().map(|d| d.name.as_str()).collect();
                let message = format!(
                    "`{}` has no device `{name}` (it has: {})",
                    board.name,
                    known.join(", ")
                );
                check.fail(device.span(), "device-unknown", message);
            } else if let Some(first) = granted.insert(name, holder) {
                let message =
                    format!("device `{name}` is granted to `{first}` and again to `{holder}`");
                check.fail(device.span(), "device-shared", message);
            }
        }
    }
}
