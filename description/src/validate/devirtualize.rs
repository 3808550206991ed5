//! Rule `devirtualize`: a partition marked `devirtualize = true` may run
//! natively, with the kernel's translation off, and be virtualized and
//! devirtualized at run time. Its guest-physical addresses are then its machine
//! addresses, so it must be placed identity (`at` equal to the guest-physical
//! RAM base, [`RAM_BASE`]); it is a guest running a native partition program on
//! one vCPU; it shares no core with another guest (the service VM may share
//! its core); and it has nothing that needs the kernel's translation: no queue
//! end, no `balloon` capability, no receive window, no virtio device (a virtio
//! balloon among them) and no network port. A system has at most one. On an
//! x86_64 board its boot page tables are placed identity too, just under its
//! RAM ([`X86_BOOT_TABLES`]), so that memory must be the board's free RAM.
//!
//! The work stays linear: the cores are compared for the first devirtualizable
//! partition only (a second one is an error of its own), and each queue is
//! looked up once.

use std::collections::BTreeMap;

use septum_core::abi::CapType;
use septum_core::abi::layout::{RAM_BASE, X86_BOOT_TABLES};
use toml::Spanned;

use super::Checker;
use crate::Board;
use crate::elf::EM_X86_64;
use crate::format::{PartitionEntry, QueueEntry};
use crate::model::{ImageSource, Kind, Partition};

/// Why each of its grants is refused.
const NO_TRANSLATION: &str =
    "needs the kernel's translation, which a devirtualized partition does not have";

pub(super) fn check_devirtualize(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    queues: &[Spanned<QueueEntry>],
    board: &Board,
) {
    let mut first: Option<(&Partition, &PartitionEntry)> = None;
    let mut marked = BTreeMap::new();
    for (entry, partition) in entries.iter().zip(partitions) {
        let p = entry.get_ref();
        let Some(key) = p.devirtualize.as_ref().filter(|key| *key.get_ref()) else {
            continue;
        };
        check_partition(check, p, key, partition);
        if board.elf_machine() == Some(EM_X86_64) {
            check_boot_tables(check, key, partition, board);
        }
        marked.entry(partition.name.as_str()).or_insert(());
        match first {
            None => first = Some((partition, p)),
            Some((earlier, _)) => {
                let message = format!(
                    "`{}` is a second devirtualizable partition (the first is `{}`); a system has at most one",
                    partition.name, earlier.name
                );
                check.fail(key.span(), "devirtualize", message);
            }
        }
    }
    if let Some((partition, p)) = first {
        check_cores(check, p, partition, partitions);
    }
    for queue in queues {
        let q = queue.get_ref();
        for (end, role) in [(&q.from, "sender"), (&q.to, "receiver")] {
            if marked.contains_key(end.get_ref().as_str()) {
                let message = format!(
                    "queue `{}` has devirtualizable `{}` as its {role}: a queue {NO_TRANSLATION}",
                    q.name.get_ref(),
                    end.get_ref()
                );
                check.fail(end.span(), "devirtualize", message);
            }
        }
    }
}

/// On an x86_64 board: the machine memory of the partition's boot page tables,
/// which the kernel places identity, is RAM of the board that it does not keep.
fn check_boot_tables(
    check: &mut Checker<'_>,
    key: &Spanned<bool>,
    partition: &Partition,
    board: &Board,
) {
    let size = RAM_BASE - X86_BOOT_TABLES;
    let free = board.ram.iter().any(|r| r.contains(X86_BOOT_TABLES, size))
        && !board
            .reserved
            .iter()
            .any(|r| r.overlaps(X86_BOOT_TABLES, size));
    if !free {
        let message = format!(
            "devirtualizable `{}` needs its boot page tables placed identity, at {X86_BOOT_TABLES:#x}..{RAM_BASE:#x}, which is not free RAM of `{}`",
            partition.name, board.name
        );
        check.fail(key.span(), "devirtualize", message);
    }
}

/// The rules on the partition alone: identity placement, a native guest of one
/// vCPU, and nothing that needs the translation (queue ends are checked from
/// the queues).
fn check_partition(
    check: &mut Checker<'_>,
    p: &PartitionEntry,
    key: &Spanned<bool>,
    partition: &Partition,
) {
    let name = &partition.name;
    match &p.at {
        None => {
            let message = format!(
                "devirtualizable `{name}` must be placed identity: add `at = \"{RAM_BASE:#x}\"`, its guest-physical RAM base"
            );
            check.fail(key.span(), "devirtualize", message);
        }
        Some(at) if at.get_ref().0 != RAM_BASE => {
            let message = format!(
                "devirtualizable `{name}` is placed at {:#x}; it must be placed identity, at its guest-physical RAM base {RAM_BASE:#x}",
                at.get_ref().0
            );
            check.fail(at.span(), "devirtualize", message);
        }
        Some(_) => {}
    }
    if partition.kind == Kind::Service {
        let message = format!(
            "the service VM `{name}` cannot be devirtualizable: only a guest runs without the kernel's translation"
        );
        check.fail(key.span(), "devirtualize", message);
    }
    if let (ImageSource::Linux(_), Some(linux)) = (&partition.image, &p.linux) {
        let message = format!(
            "devirtualizable `{name}` runs Linux: only a native partition program (`image` or `path`) can be devirtualizable"
        );
        check.fail(linux.span(), "devirtualize", message);
    }
    if partition.cpus.len() > 1
        && let Some(cpus) = &p.cpus
    {
        let message = format!(
            "devirtualizable `{name}` has {} vCPUs; a devirtualizable partition has one",
            partition.cpus.len()
        );
        check.fail(cpus.span(), "devirtualize", message);
    }
    for cap in &p.caps {
        if CapType::from_name(cap.get_ref().kind.get_ref()) == Some(CapType::Balloon) {
            let message = format!(
                "devirtualizable `{name}` holds a `balloon` capability: a balloon {NO_TRANSLATION}"
            );
            check.fail(cap.span(), "devirtualize", message);
        }
    }
    if let Some(window) = &p.receive_window
        && window.get_ref().0 > 0
    {
        let message = format!(
            "devirtualizable `{name}` has a receive window: receiving flipped pages {NO_TRANSLATION}"
        );
        check.fail(window.span(), "devirtualize", message);
    }
    for device in &p.virtio {
        let message = format!(
            "devirtualizable `{name}` has virtio device `{}`: a virtio device {NO_TRANSLATION}",
            device.get_ref()
        );
        check.fail(device.span(), "devirtualize", message);
    }
    if let Some(net) = &p.net {
        let message = format!(
            "devirtualizable `{name}` has a network port: a port on the kernel's router {NO_TRANSLATION}"
        );
        check.fail(net.span(), "devirtualize", message);
    }
}

/// No other guest on any of its cores (the service VM may share one): an error
/// for each such guest, naming it and the core.
fn check_cores(
    check: &mut Checker<'_>,
    p: &PartitionEntry,
    partition: &Partition,
    partitions: &[Partition],
) {
    let span = p.cpus.as_ref().map_or_else(
        || p.devirtualize.as_ref().map_or(p.name.span(), Spanned::span),
        Spanned::span,
    );
    for other in partitions {
        if other.kind != Kind::Guest || std::ptr::eq(other, partition) {
            continue;
        }
        if let Some(core) = partition.cpus.iter().find(|core| other.cpus.contains(core)) {
            let message = format!(
                "devirtualizable `{}` shares core {core} with the guest `{}`; only the service VM may share its core",
                partition.name, other.name
            );
            check.fail(span.clone(), "devirtualize", message);
        }
    }
}
