//! The description rules of Linux partitions (the `linux` key): who may run Linux
//! and on what board, with how much RAM, and that the emulated devices of
//! [`septum_core::abi::virt`] do not lie over a device the partition is granted.
//! A ballooning Linux partition (a virtio balloon or a `balloon` capability)
//! starts with all its memory, so its `ram` is its `memory.max` (`linux-ram`).
//! The rules on its files (`linux-image`, `linux-fit`) need the files, so they
//! are image rules (see `crate::linux`).

use std::path::PathBuf;

use septum_core::abi::CapType;
use septum_core::abi::virt::MIN_RAM;
use septum_core::abi::virtio::Device;
use toml::Spanned;

use super::Checker;
use crate::board::Board;
use crate::elf::EM_AARCH64;
use crate::format::{LinuxEntry, PartitionEntry};
use crate::linux::{COMMAND_LINE_MAX, EmulatedWindows, default_bootargs};
use crate::model::{ImageSource, Kind, LinuxBoot, Partition};

/// The program of a partition with `linux = { ... }`: its files as written, and
/// its command line (the default one where it has none).
pub(super) fn boot(entry: &LinuxEntry) -> ImageSource {
    let path = |key: &Option<Spanned<String>>| key.as_ref().map(|p| PathBuf::from(p.get_ref()));
    ImageSource::Linux(LinuxBoot {
        kernel: path(&entry.kernel),
        program: entry.program.as_ref().map(|p| p.get_ref().clone()),
        initrd: path(&entry.initrd),
        bootargs: entry
            .bootargs
            .as_ref()
            .map_or_else(default_bootargs, |b| b.get_ref().clone()),
    })
}

/// Rules `linux` (a guest on an aarch64 board, with no `argument`, and a command
/// line Linux takes whole), `linux-ram` (at least [`MIN_RAM`], and with a
/// balloon all of `memory.max`) and
/// `linux-devices` (no granted MMIO block over an emulated device window).
pub(super) fn check_linux(
    check: &mut Checker<'_>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    board: &Board,
) {
    for (entry, partition) in entries.iter().zip(partitions) {
        let (Some(linux), ImageSource::Linux(boot)) = (&entry.get_ref().linux, &partition.image)
        else {
            continue;
        };
        let p = entry.get_ref();
        let name = &partition.name;
        if partition.kind == Kind::Service {
            let message =
                format!("the service VM `{name}` cannot run Linux: `linux` is for guests");
            check.fail(linux.span(), "linux", message);
        }
        if board.elf_machine() != Some(EM_AARCH64) {
            let message = format!(
                "`{name}` runs Linux, which needs an aarch64 board; `{}` is {}",
                board.name, board.arch
            );
            check.fail(linux.span(), "linux", message);
        }
        if board.gic_version == Some(2) {
            let message = format!(
                "`{name}` runs Linux, which needs a GICv3 (the kernel emulates one for Linux over the GICv3's virtual CPU interface); `{}` has a GICv2",
                board.name
            );
            check.fail(linux.span(), "linux", message);
        }
        if let (Some(_), Some(program)) = (&linux.get_ref().kernel, &linux.get_ref().program) {
            let message = format!("`{name}` names both a `kernel` file and a `program`; keep one");
            check.fail(program.span(), "linux", message);
        }
        if let Some(argument) = &p.argument {
            let message = format!(
                "`{name}` runs Linux, whose boot argument is its device tree's address: drop `argument`"
            );
            check.fail(argument.span(), "linux", message);
        }
        let bootargs_span = linux
            .get_ref()
            .bootargs
            .as_ref()
            .map_or_else(|| linux.span(), Spanned::span);
        if boot.bootargs.len() > COMMAND_LINE_MAX {
            let message = format!(
                "the bootargs of `{name}` are {} bytes; Linux takes at most {COMMAND_LINE_MAX}",
                boot.bootargs.len()
            );
            check.fail(bootargs_span, "linux", message);
        } else if boot.bootargs.contains('\0') {
            let message = format!("the bootargs of `{name}` contain a NUL character");
            check.fail(bootargs_span, "linux", message);
        }
        if partition.ram < MIN_RAM {
            let message = format!(
                "RAM of `{name}` is {} bytes; a Linux partition needs at least {MIN_RAM} ({} MiB)",
                partition.ram,
                MIN_RAM >> 20
            );
            check.fail(p.ram.span(), "linux-ram", message);
        }
        let balloon = partition.virtio.contains(&Device::Balloon)
            || p.caps
                .iter()
                .any(|cap| *cap.get_ref().kind.get_ref() == CapType::Balloon.name());
        if balloon && partition.ram != partition.memory_max {
            let message = format!(
                "`{name}` runs Linux with a balloon, so it starts with all its memory: its `ram` ({} bytes) must be its `memory.max` ({} bytes)",
                partition.ram, partition.memory_max
            );
            check.fail(p.ram.span(), "linux-ram", message);
        }
        for device in &p.devices {
            let Some(granted) = board.device(device.get_ref()) else {
                continue; // rule `device-unknown`
            };
            for block in &granted.mmio {
                let windows = EmulatedWindows::for_vcpus(partition.cpus.len());
                let overlapped = windows
                    .named()
                    .into_iter()
                    .find(|(_, window)| block.overlaps(window.start, window.end - window.start));
                if let Some((what, window)) = overlapped {
                    let message = format!(
                        "device `{}` ({:#x}..{:#x}) overlaps the emulated {what} ({:#x}..{:#x}) of Linux partition `{name}`",
                        granted.name,
                        block.base,
                        block.end(),
                        window.start,
                        window.end
                    );
                    check.fail(device.span(), "linux-devices", message);
                }
            }
        }
    }
}
