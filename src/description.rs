//! System descriptions: the TOML file that names a system's partitions, and the
//! binary package the kernel reads, built from it.
//!
//! This is the first version of the format: board, and per partition its name,
//! kind, image and RAM. Errors name the file and, for syntax and type errors, the
//! line and column.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use septum_core::package::{self, Kind, PartitionSpec};

use crate::image;

/// A size in bytes, written as a number or as a string with a `K`, `M` or `G`
/// suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) => Ok(Size(bytes)),
            Raw::Text(text) => parse_size(&text)
                .map(Size)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `512M`, `2G`, `64K` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 2M, 512K or 4096)"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindText {
    Service,
    Guest,
}

/// One `[[partition]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionEntry {
    name: String,
    kind: KindText,
    /// A partition program of this workspace, by binary name.
    image: Option<String>,
    /// Or a prebuilt ELF, relative to the description file.
    path: Option<PathBuf>,
    ram: Size,
    #[serde(default)]
    argument: u64,
}

/// `board = "qemu-virt"`, or `board = ["qemu-virt", "pc"]` for a system that runs
/// unchanged on several boards.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Boards {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    board: Boards,
    partition: Vec<PartitionEntry>,
}

/// A partition whose image has been located.
#[derive(Debug)]
pub struct Partition {
    /// Name.
    pub name: String,
    /// Service VM or guest.
    pub kind: Kind,
    /// The ELF to load.
    pub elf: PathBuf,
    /// RAM in bytes.
    pub ram: u64,
    /// Boot argument.
    pub argument: u64,
}

/// A loaded system description.
#[derive(Debug)]
pub struct SystemDescription {
    /// The file it came from.
    pub path: PathBuf,
    /// The boards it is for.
    pub boards: Vec<String>,
    /// Its partitions, in file order.
    pub partitions: Vec<Partition>,
}

impl SystemDescription {
    /// Reads the description at `path` for a board of architecture `arch`.
    pub fn load(path: &Path, arch: &str) -> Result<SystemDescription> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read system description {}", path.display()))?;
        let file: SystemFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut partitions = Vec::new();
        for entry in file.partition {
            let elf = match (&entry.image, &entry.path) {
                (Some(image), None) => image::partition_elf(arch, image)?,
                (None, Some(elf)) => folder.join(elf),
                _ => bail!(
                    "{}: partition `{}` needs exactly one of `image` or `path`",
                    path.display(),
                    entry.name
                ),
            };
            partitions.push(Partition {
                name: entry.name,
                kind: match entry.kind {
                    KindText::Service => Kind::Service,
                    KindText::Guest => Kind::Guest,
                },
                elf,
                ram: entry.ram.0,
                argument: entry.argument,
            });
        }
        Ok(SystemDescription {
            path: path.to_owned(),
            boards: match file.board {
                Boards::One(board) => vec![board],
                Boards::Several(boards) => boards,
            },
            partitions,
        })
    }

    /// The service VM's name, if the description has one.
    pub fn service_name(&self) -> Option<&str> {
        self.partitions
            .iter()
            .find(|p| p.kind == Kind::Service)
            .map(|p| p.name.as_str())
    }

    /// Builds the system package: each partition's flattened image and record.
    pub fn package(&self, ram_base: u64) -> Result<Vec<u8>> {
        let flats = self
            .partitions
            .iter()
            .map(|p| image::flatten_file(&p.elf))
            .collect::<Result<Vec<_>>>()?;
        let mut specs = Vec::new();
        for (partition, flat) in self.partitions.iter().zip(&flats) {
            if flat.base != ram_base {
                bail!(
                    "{}: partition `{}`: image {} is linked at {:#x}, but partition RAM starts at {:#x}",
                    self.path.display(),
                    partition.name,
                    partition.elf.display(),
                    flat.base,
                    ram_base
                );
            }
            specs.push(PartitionSpec {
                name: &partition.name,
                kind: partition.kind,
                ram_size: partition.ram,
                image: &flat.bytes,
                entry_offset: flat.entry - flat.base,
                argument: partition.argument,
            });
        }
        package::encode(&specs).map_err(|e| anyhow::anyhow!("{}: {e:?}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
