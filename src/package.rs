//! Compiling a validated system description into the binary system package the
//! kernel reads: each partition's program is found and flattened, and the records
//! are written in boot order (the service VM first).

use anyhow::{Context, Result, bail};
use std::path::Path;

use septum_core::package::{self, Kind as PackageKind, PartitionSpec};
use septum_description::{ImageSource, Kind, System};

use crate::image;

/// The ELF of `partition`'s program for `arch`.
fn elf_path(system: &System, source: &ImageSource, arch: &str) -> Result<std::path::PathBuf> {
    Ok(match source {
        ImageSource::Workspace(name) => image::partition_elf(arch, name)?,
        ImageSource::File(path) => system.path.parent().unwrap_or(Path::new(".")).join(path),
    })
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
        })
        .collect();
    package::encode(&specs).map_err(|e| anyhow::anyhow!("{}: {e:?}", system.path.display()))
}
