//! Board recipes: `board-support/<board>/board.toml`. A recipe says how to emulate
//! the board and what a system description may use on it: its cores, the RAM
//! partitions may be placed in, the RAM the kernel and firmware keep, and its
//! devices. The device called [`NIC`], if the board has one, is its network
//! interface: the uplink of the kernel's router drives it, and must be granted
//! it (rule `net-uplink`).

use serde::Deserialize;
use std::path::Path;

use crate::elf::{EM_AARCH64, EM_X86_64};
use crate::limits::{MAX_CPUS, MAX_RECEIVE_WINDOW, RAM_BASE, RECEIVE_WINDOW_BASE};
use crate::size::Bytes;

/// The name of a board's network interface among its devices.
pub const NIC: &str = "nic";

/// The architectures the kernel has a back end for, with their ELF machine
/// numbers.
const ARCHITECTURES: [(&str, u16); 2] = [("aarch64", EM_AARCH64), ("x86_64", EM_X86_64)];

/// A board recipe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name, as the kernel reports it.
    pub name: String,
    /// `aarch64` or `x86_64`.
    pub arch: String,
    /// The emulator binary.
    pub emulator: String,
    /// Emulator options that select the machine (QEMU arguments, or bochsrc lines).
    pub machine: Vec<String>,
    /// RAM size given to the emulator unless a run asks for another.
    pub default_ram: String,
    /// The system description run by default, relative to the board folder.
    pub default_system: String,
    /// CPU cores a description may use (1 to [`MAX_CPUS`]).
    pub cpus: u32,
    /// Where partition RAM may be placed with `at`.
    pub ram: Vec<MemoryRegion>,
    /// RAM the kernel and the firmware use; no partition may be placed there.
    #[serde(default)]
    pub reserved: Vec<MemoryRegion>,
    /// Devices partitions may be granted.
    #[serde(default, rename = "device")]
    pub devices: Vec<BoardDevice>,
    /// aarch64: the architecture version of the board's GIC (2 or 3). The kernel
    /// emulates a GICv3 for Linux partitions over the GICv3's virtual CPU
    /// interface, so Linux needs a GICv3 board; `None` on x86.
    #[serde(default)]
    pub gic_version: Option<u8>,
    /// aarch64: where the boot loader places the kernel, which is linked there;
    /// `None` for the default (0x4820_0000, QEMU `virt`'s RAM base + 130 MiB).
    #[serde(default, deserialize_with = "optional_bytes")]
    pub kernel_base: Option<u64>,
    /// QEMU: the board's device tree (`-dtb`), relative to the repository root,
    /// for machines that pass none of their own (fetched, never committed).
    #[serde(default)]
    pub device_tree: Option<String>,
    /// Whether the board boots from an SD card: `cargo run -- image` then writes
    /// a whole card image (partition table, file system, boot firmware) rather
    /// than the bare kernel image.
    #[serde(default)]
    pub sd_image: bool,
    /// QEMU: kernel command-line words every run of the board gets (before a
    /// run's own), such as how to end the run on a board without PSCI.
    #[serde(default)]
    pub kernel_args: Option<String>,
}

/// A range of physical memory.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemoryRegion {
    /// First address.
    #[serde(deserialize_with = "bytes")]
    pub base: u64,
    /// Bytes.
    #[serde(deserialize_with = "bytes")]
    pub size: u64,
}

impl MemoryRegion {
    /// First address past the region.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `[base, base + size)` lies wholly inside the region.
    pub fn contains(&self, base: u64, size: u64) -> bool {
        base >= self.base && base.saturating_add(size) <= self.end()
    }

    /// Whether the two regions share a byte.
    pub fn overlaps(&self, base: u64, size: u64) -> bool {
        base < self.end() && self.base < base.saturating_add(size)
    }
}

/// A device of the board.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardDevice {
    /// Name that descriptions grant it by.
    pub name: String,
    /// Its MMIO register blocks.
    #[serde(default)]
    pub mmio: Vec<MemoryRegion>,
    /// Its interrupt numbers (GIC INTIDs on aarch64, IRQ lines on x86).
    #[serde(default)]
    pub irqs: Vec<u32>,
    /// Its I/O ports (x86): first port and count.
    #[serde(default)]
    pub ports: Vec<[u16; 2]>,
}

fn bytes<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Bytes::deserialize(deserializer).map(|b| b.0)
}

fn optional_bytes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Bytes::deserialize(deserializer).map(|b| Some(b.0))
}

impl Board {
    /// Loads the recipe in `folder/board.toml`.
    pub fn load(folder: &Path) -> Result<Board, String> {
        let path = folder.join("board.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read board recipe {}: {e}", path.display()))?;
        let board: Board = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        board
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(board)
    }

    /// What a recipe must say for descriptions to be checked against it: an
    /// architecture the kernel has a back end for, 1 to [`MAX_CPUS`] cores, and
    /// devices the kernel can grant: MMIO blocks that are not empty, do not wrap
    /// and lie outside where partitions see their RAM and receive window (each
    /// block is mapped at its own address), and port ranges that are not empty
    /// and end by port 0xffff.
    fn check(&self) -> Result<(), String> {
        if self.elf_machine().is_none() {
            let known: Vec<&str> = ARCHITECTURES.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "architecture `{}` is none of {}",
                self.arch,
                known.join(", ")
            ));
        }
        if self.cpus == 0 || self.cpus as usize > MAX_CPUS {
            return Err(format!(
                "`cpus = {}`: a board has 1 to {MAX_CPUS} cores (the kernel's limit)",
                self.cpus
            ));
        }
        let guest = RAM_BASE..RECEIVE_WINDOW_BASE + MAX_RECEIVE_WINDOW;
        for device in &self.devices {
            for block in &device.mmio {
                let end = block.base.checked_add(block.size);
                if block.size == 0
                    || end.is_none_or(|end| block.base < guest.end && guest.start < end)
                {
                    return Err(format!(
                        "device `{}`: MMIO block {:#x} of {} bytes is empty, wraps, or lies where partitions see their RAM and receive window ({:#x}..{:#x})",
                        device.name, block.base, block.size, guest.start, guest.end
                    ));
                }
            }
            for &[first, count] in &device.ports {
                if count == 0 || first.checked_add(count - 1).is_none() {
                    return Err(format!(
                        "device `{}`: port range {first:#x} of {count} ports is empty or runs past port 0xffff",
                        device.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The ELF machine number (`e_machine`) of its architecture, if the kernel
    /// has a back end for it.
    pub(crate) fn elf_machine(&self) -> Option<u16> {
        ARCHITECTURES
            .iter()
            .find(|(name, _)| *name == self.arch)
            .map(|&(_, machine)| machine)
    }

    /// The device called `name`.
    pub fn device(&self, name: &str) -> Option<&BoardDevice> {
        self.devices.iter().find(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Board;

    fn test_board() -> Board {
        Board::load(std::path::Path::new("tests/board")).expect("test board")
    }

    /// Verifies: SK-CFG-004
    #[test]
    fn a_recipe_names_a_known_architecture_and_at_most_the_kernels_cores() {
        let mut board = test_board();
        assert_eq!(board.check(), Ok(()));
        board.cpus = 9;
        assert_eq!(
            board.check(),
            Err("`cpus = 9`: a board has 1 to 8 cores (the kernel's limit)".into())
        );
        board.cpus = 0;
        assert!(board.check().is_err());
        board.cpus = 1;
        board.arch = "riscv64".into();
        assert_eq!(
            board.check(),
            Err("architecture `riscv64` is none of aarch64, x86_64".into())
        );
    }

    /// Verifies: SK-CFG-006
    #[test]
    fn a_recipes_devices_are_ones_the_kernel_can_map() {
        let mut board = test_board();
        board.devices[0].mmio[0].base = 0x4010_0000;
        assert_eq!(
            board.check(),
            Err("device `rtc`: MMIO block 0x40100000 of 4096 bytes is empty, wraps, or lies where partitions see their RAM and receive window (0x40000000..0x81000000)".into())
        );
        board.devices[0].mmio[0].base = 0x0901_0000;
        board.devices[0].mmio[0].size = 0;
        assert!(board.check().is_err());
        board.devices[0].mmio[0].size = 4096;
        board.devices[0].ports.push([0xfff0, 0x20]);
        assert_eq!(
            board.check(),
            Err(
                "device `rtc`: port range 0xfff0 of 32 ports is empty or runs past port 0xffff"
                    .into()
            )
        );
    }
}
