//! The rules of the `virtio` key, the devices the kernel emulates for a
//! partition (`septum_core::abi::virtio`): `virtio` (known names, each once, on
//! guests only, and one balloon front end: a virtio balloon or a `balloon`
//! capability, not both), `virtio-area` (no granted MMIO block over the device
//! windows every partition's space reserves), `vcpus` (a partition with virtio
//! devices, a network port among them, has one vCPU), and a virtio balloon's
//! share of `memory-limits` (a `memory.min` above 0), as for a `balloon`
//! capability. A ballooning Linux partition's `ram` is checked by `linux-ram`
//! (see `super::linux`); a network port by the `net` rules (see `super::net`).

use std::collections::BTreeSet;

use septum_core::abi::CapType;
use septum_core::abi::virtio::{Device, WINDOW_AREA, WINDOW_BASE};
use toml::Spanned;

use super::Checker;
use crate::board::Board;
use crate::format::PartitionEntry;
use crate::model::{Kind, Partition};

/// The devices `p` lists, with [`Device::Net`] if it has a network port
/// (`net`), in slot order; rule `virtio` on unknown names, names listed twice
/// and `net` listed (the port comes from `net`).
pub(super) fn devices(check: &mut Checker<'_>, p: &PartitionEntry, net: bool) -> Vec<Device> {
    let name = p.name.get_ref();
    let mut listed = BTreeSet::new();
    for spanned in &p.virtio {
        let device_name = spanned.get_ref();
        match Device::from_name(device_name) {
            None => {
                let known: Vec<&str> = Device::ALL
                    .iter()
                    .filter(|&&d| d != Device::Net)
                    .map(|d| d.name())
                    .collect();
                let message = format!(
                    "`{name}` lists virtio device `{device_name}`, which the kernel does not emulate (it emulates: {})",
                    known.join(", ")
                );
                check.fail(spanned.span(), "virtio", message);
            }
            Some(Device::Net) => {
                let message = format!(
                    "`{name}` lists virtio device `net`: a network port comes from `net = {{ address = \"a.b.c.d/n\" }}`, not from `virtio`"
                );
                check.fail(spanned.span(), "virtio", message);
            }
            Some(device) if !listed.insert(device.slot()) => {
                let message = format!("`{name}` lists virtio device `{device_name}` twice");
                check.fail(spanned.span(), "virtio", message);
            }
            Some(_) => {}
        }
    }
    if net {
        listed.insert(Device::Net.slot());
    }
    Device::ALL
        .into_iter()
        .filter(|device| listed.contains(&device.slot()))
        .collect()
}

/// The rules on each partition's devices as a whole, and `virtio-area` on every
/// partition's granted devices.
pub(super) fn check_virtio(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    board: &Board,
) {
    for (entry, partition) in entries.iter().zip(partitions) {
        let p = entry.get_ref();
        let name = &partition.name;
        check_area(check, p, board);
        // The first device as written: a `virtio` entry, else the port.
        let Some(first) = p
            .virtio
            .first()
            .map(Spanned::span)
            .or_else(|| p.net.as_ref().map(Spanned::span))
        else {
            continue;
        };
        if partition.kind == Kind::Service
            && let Some(listed) = p.virtio.first()
        {
            let message =
                format!("the service VM `{name}` cannot have virtio devices: they are for guests");
            check.fail(listed.span(), "virtio", message);
        }
        if partition.cpus.len() > 1 && !partition.virtio.is_empty() {
            let message = format!(
                "`{name}` has {} vCPUs and virtio devices: a partition with several vCPUs may not have virtio devices (yet): the kernel walks their rings while none of its vCPUs runs",
                partition.cpus.len()
            );
            check.fail(first, "vcpus", message);
        }
        if !partition.virtio.contains(&Device::Balloon) {
            continue;
        }
        let capability = p
            .caps
            .iter()
            .find(|cap| *cap.get_ref().kind.get_ref() == CapType::Balloon.name());
        if let Some(cap) = capability {
            let message = format!(
                "`{name}` has a virtio balloon and a `balloon` capability: a partition has one balloon front end; keep one"
            );
            check.fail(cap.span(), "virtio", message);
        }
        if let Some(limits) = &p.memory
            && partition.memory_min == 0
            && capability.is_none()
        {
            let message = format!(
                "`{name}` has a virtio balloon, so it never holds less than `memory.min`, which must not be 0"
            );
            check.fail(limits.span(), "memory-limits", message);
        }
    }
}

/// Rule `virtio-area`: no device granted to the partition has an MMIO block in
/// [`WINDOW_BASE`, `WINDOW_BASE + WINDOW_AREA`), which every partition's space
/// keeps for the devices the kernel emulates.
fn check_area(check: &mut Checker<'_>, p: &PartitionEntry, board: &Board) {
    let name = p.name.get_ref();
    for device in &p.devices {
        let Some(granted) = board.device(device.get_ref()) else {
            continue; // rule `device-unknown`
        };
        if let Some(block) = granted
            .mmio
            .iter()
            .find(|block| block.overlaps(WINDOW_BASE, WINDOW_AREA))
        {
            let message = format!(
                "device `{}` ({:#x}..{:#x}) of `{name}` overlaps the virtio device windows ({WINDOW_BASE:#x}..{:#x}) every partition's space keeps",
                granted.name,
                block.base,
                block.end(),
                WINDOW_BASE + WINDOW_AREA
            );
            check.fail(device.span(), "virtio-area", message);
        }
    }
}
