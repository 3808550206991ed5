//! Compiling a validated system description into the binary system package the
//! kernel reads: each partition's program is found and flattened, and the records
//! are written in boot order (the service VM first).

use anyhow::{Context, Result, bail};
use std::path::Path;

use septum_core::caps::{CAP_SLOTS, Cap, CapTable, CapType, Rights};
use septum_core::package::{self, Kind as PackageKind, PartitionSpec};
use septum_description::{CapKind, ImageSource, Kind, Partition, Right, System};

use crate::image;

/// The ELF of `partition`'s program for `arch`.
fn elf_path(system: &System, source: &ImageSource, arch: &str) -> Result<std::path::PathBuf> {
    Ok(match source {
        ImageSource::Workspace(name) => image::partition_elf(arch, name)?,
        ImageSource::File(path) => system.path.parent().unwrap_or(Path::new(".")).join(path),
    })
}

fn rights(rights: &[Right]) -> Rights {
    Rights(rights.iter().fold(0, |bits, right| {
        bits | match right {
            Right::Write => Rights::WRITE,
            Right::Send => Rights::SEND,
            Right::Receive => Rights::RECEIVE,
            Right::Inspect => Rights::INSPECT,
            Right::Resume => Rights::RESUME,
            Right::Restart => Rights::RESTART,
            Right::Stop => Rights::STOP,
            Right::SetMemoryTarget => Rights::SET_MEMORY_TARGET,
            Right::Inflate => Rights::INFLATE,
            Right::Deflate => Rights::DEFLATE,
            Right::Heartbeat => Rights::HEARTBEAT,
            Right::Ready => Rights::READY,
            Right::Shutdown => Rights::SHUTDOWN,
            Right::Yield => Rights::YIELD,
            Right::Exit => Rights::EXIT,
        }
        .0
    }))
}

/// `partition`'s capability table: partitions named by their boot-order index,
/// queues by their index in the description.
fn cap_table(system: &System, boot_order: &[&Partition], partition: &Partition) -> CapTable {
    let index_of = |name: &str, mut names: std::slice::Iter<'_, &str>| {
        let index = names
            .position(|n| *n == name)
            .expect("validated: the target exists");
        u16::try_from(index).expect("at most a few partitions and queues")
    };
    let queues: Vec<&str> = system.queues.iter().map(|q| q.name.as_str()).collect();
    let partitions: Vec<&str> = boot_order.iter().map(|p| p.name.as_str()).collect();
    let mut table: CapTable = [None; CAP_SLOTS];
    for (slot, cap) in table.iter_mut().zip(&partition.caps) {
        let (ty, object) = match &cap.kind {
            CapKind::Console => (CapType::Console, 0),
            CapKind::QueueSend(name) => (CapType::QueueSend, index_of(name, queues.iter())),
            CapKind::QueueReceive(name) => (CapType::QueueReceive, index_of(name, queues.iter())),
            CapKind::Control(name) => (CapType::Control, index_of(name, partitions.iter())),
            CapKind::System => (CapType::System, 0),
            CapKind::SelfPartition => (CapType::SelfPartition, 0),
            CapKind::Balloon => (CapType::Balloon, 0),
            CapKind::Watchdog => (CapType::Watchdog, 0),
        };
        *slot = Some(Cap {
            ty,
            rights: rights(&cap.rights),
            object,
        });
    }
    table
}

/// Builds the package for `system` on a board of architecture `arch`.
pub fn build(system: &System, arch: &str) -> Result<Vec<u8>> {
    let ram_base = septum_abi::layout::RAM_BASE;
    let partitions: Vec<_> = system.boot_order().collect();
    let mut flats = Vec::new();
    for partition in &partitions {
        let elf = elf_path(system, &partition.image, arch)?;
        let flat = image::flatten_file(&elf).with_context(|| {
            format!("{}: partition `{}`", system.path.display(), partition.name)
        })?;
        if flat.base != ram_base {
            bail!(
                "{}: partition `{}`: {} is linked at {:#x}, but partition RAM starts at {ram_base:#x}",
                system.path.display(),
                partition.name,
                elf.display(),
                flat.base
            );
        }
        flats.push(flat);
    }
    let specs: Vec<PartitionSpec> = partitions
        .iter()
        .zip(&flats)
        .map(|(partition, flat)| PartitionSpec {
            name: &partition.name,
            kind: match partition.kind {
                Kind::Service => PackageKind::Service,
                Kind::Guest => PackageKind::Guest,
            },
            ram_size: partition.ram,
            image: &flat.bytes,
            entry_offset: flat.entry - flat.base,
            argument: partition.argument,
            caps: cap_table(system, &partitions, partition),
        })
        .collect();
    let queues = u32::try_from(system.queues.len()).context("too many queues")?;
    package::encode(&specs, queues).map_err(|e| anyhow::anyhow!("{}: {e:?}", system.path.display()))
}
