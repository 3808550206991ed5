//! The Raspberry Pi 4's SD-card image (`cargo run -- image --board rpi4`): an MBR
//! with one FAT32 partition holding what the Pi 4's boot firmware needs to start
//! Septum: the firmware itself (`start4.elf`, `fixup4.dat`, from Debian's
//! `raspi-firmware`), the board's device tree, a `config.txt`, and Septum's arm64
//! image (the kernel and the system package, as QEMU boots it). The partition
//! table and the file system are written with the `mbrman` and `fatfs` crates.
//!
//! The firmware and the device tree come from the cache `scripts/fetch-rpi4.sh`
//! fills (`target/rpi4/`); nothing of them is in the repository.

use anyhow::{Context, Result, bail};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::boards::Board;

/// The boot firmware files, in `target/rpi4/firmware/`.
pub const FIRMWARE: &[&str] = &["start4.elf", "fixup4.dat"];
/// Septum's image in the partition (`kernel=` in config.txt).
pub const KERNEL_FILE: &str = "septum.img";
/// The board's device tree in the partition (`device_tree=` in config.txt).
pub const DEVICE_TREE_FILE: &str = "bcm2711-rpi-4-b.dtb";
/// Bytes per sector of the image.
const SECTOR: u64 = 512;
/// The partition's first sector: 1 MiB in, as card tools align it.
const PARTITION_START: u64 = 2048;
/// The partition's size: enough clusters for FAT32 (at least 65,525).
const PARTITION_BYTES: u64 = 128 << 20;
/// MBR partition type: FAT32 with LBA addressing.
const FAT32_LBA: u8 = 0x0c;

/// Where `scripts/fetch-rpi4.sh` puts the firmware.
pub fn firmware_dir() -> PathBuf {
    crate::from_root("target/rpi4/firmware")
}

/// `config.txt`: 64-bit mode, the UART on, Septum's image loaded where its
/// kernel is linked (`kernel_base`), and the board's device tree.
pub fn config_txt(kernel_base: u64) -> String {
    format!(
        "# Septum on the Raspberry Pi 4, written by `cargo run -- image --board rpi4`.\n\
         arm_64bit=1\n\
         enable_uart=1\n\
         # Septum's console is the PL011 (UART0). On the GPIO header (pins 8 and 10)\n\
         # only with Bluetooth off: this needs overlays/disable-bt.dtbo, which the\n\
         # Raspberry Pi firmware repository has and Debian does not ship.\n\
         dtoverlay=disable-bt\n\
         kernel={KERNEL_FILE}\n\
         kernel_address={kernel_base:#x}\n\
         device_tree={DEVICE_TREE_FILE}\n"
    )
}

/// Writes the SD-card image for `board` to `out`, holding `kernel_image` (the
/// arm64 image of the kernel and the system package).
pub fn write(board: &Board, kernel_image: &[u8], out: &Path) -> Result<()> {
    let card = card(board, kernel_image)?;
    std::fs::write(out, card).with_context(|| format!("writing {}", out.display()))
}

/// Reads file `name` from the FAT32 partition of SD-card image `card`.
pub fn read_file(card: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut disk = Cursor::new(card);
    let mbr = mbrman::MBR::read_from(&mut disk, SECTOR as u32).context("reading the MBR")?;
    let (_, partition) = mbr
        .iter()
        .find(|(_, p)| p.is_used() && p.sys == FAT32_LBA)
        .context("the card has no FAT32 partition")?;
    let start = partition.starting_lba as usize * SECTOR as usize;
    let end = start + partition.sectors as usize * SECTOR as usize;
    let volume = card
        .get(start..end)
        .context("the partition runs past the card")?;
    let fs = fatfs::FileSystem::new(Cursor::new(volume.to_vec()), fatfs::FsOptions::new())?;
    let mut content = Vec::new();
    fs.root_dir()
        .open_file(name)
        .with_context(|| format!("the card has no {name}"))?
        .read_to_end(&mut content)?;
    Ok(content)
}

/// The bytes of the SD-card image for `board` holding `kernel_image`.
pub fn card(board: &Board, kernel_image: &[u8]) -> Result<Vec<u8>> {
    let tree = board
        .device_tree
        .as_deref()
        .context("the board names no device tree for its SD image")?;
    let kernel_base = board
        .kernel_base
        .context("the board gives no kernel_base for config.txt")?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in FIRMWARE {
        let path = firmware_dir().join(name);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (run scripts/fetch-rpi4.sh to fetch the boot firmware)",
                path.display()
            )
        })?;
        files.push(((*name).into(), bytes));
    }
    let tree_path = crate::from_root(tree);
    let tree_bytes = std::fs::read(&tree_path).with_context(|| {
        format!(
            "reading {} (run scripts/fetch-rpi4.sh to fetch the device tree)",
            tree_path.display()
        )
    })?;
    files.push((DEVICE_TREE_FILE.into(), tree_bytes));
    files.push(("config.txt".into(), config_txt(kernel_base).into_bytes()));
    files.push((KERNEL_FILE.into(), kernel_image.to_vec()));
    let needed: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    if needed as u64 > PARTITION_BYTES / 2 {
        bail!("the SD image's files take {needed} bytes: more than its partition holds");
    }

    let partition = fat32_partition(&files)?;
    let mut disk = Cursor::new(vec![
        0u8;
        (PARTITION_START * SECTOR + PARTITION_BYTES) as usize
    ]);
    let mut mbr = mbrman::MBR::new_from(&mut disk, SECTOR as u32, *b"SEP4")
        .context("creating the partition table")?;
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_ACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: FAT32_LBA,
        last_chs: mbrman::CHS::empty(),
        starting_lba: PARTITION_START as u32,
        sectors: (PARTITION_BYTES / SECTOR) as u32,
    };
    mbr.write_into(&mut disk)
        .context("writing the partition table")?;
    disk.seek(SeekFrom::Start(PARTITION_START * SECTOR))?;
    disk.write_all(&partition)?;
    Ok(disk.into_inner())
}

/// A FAT32 file system of [`PARTITION_BYTES`] holding `files` in its root.
fn fat32_partition(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut volume = Cursor::new(vec![0u8; PARTITION_BYTES as usize]);
    fatfs::format_volume(
        &mut volume,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .volume_label(*b"SEPTUM-BOOT"),
    )
    .context("formatting the FAT32 partition")?;
    volume.seek(SeekFrom::Start(0))?;
    {
        let fs = fatfs::FileSystem::new(&mut volume, fatfs::FsOptions::new())?;
        for (name, bytes) in files {
            let mut file = fs
                .root_dir()
                .create_file(name)
                .with_context(|| format!("creating {name} in the FAT32 partition"))?;
            file.truncate()?;
            file.write_all(bytes)?;
        }
        fs.unmount()?;
    }
    Ok(volume.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The written image opens with the same crates: one active FAT32 partition
    /// 1 MiB in, and in it the firmware, the device tree, config.txt and the
    /// kernel image, each byte for byte what went in.
    ///
    /// Verifies: SK-INIT-013
    #[test]
    fn the_sd_image_holds_the_firmware_the_device_tree_the_config_and_septum() {
        let board = crate::boards::load("rpi4").unwrap();
        if !firmware_dir().join(FIRMWARE[0]).is_file() {
            panic!("no Raspberry Pi firmware in the cache: run scripts/fetch-rpi4.sh");
        }
        let kernel_image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = crate::from_root("target/rpi4/test-sd.img");
        write(&board, &kernel_image, &out).unwrap();

        let mut disk = std::fs::File::open(&out).unwrap();
        let mbr = mbrman::MBR::read_from(&mut disk, 512).unwrap();
        let used: Vec<_> = mbr.iter().filter(|(_, p)| p.is_used()).collect();
        assert_eq!(used.len(), 1, "one partition");
        let (_, partition) = used[0];
        assert_eq!(partition.sys, 0x0c, "FAT32 (LBA)");
        assert_eq!(partition.boot, mbrman::BOOT_ACTIVE);
        assert_eq!(partition.starting_lba, 2048);

        let start = partition.starting_lba as usize * 512;
        let end = start + partition.sectors as usize * 512;
        let mut volume = Cursor::new(std::fs::read(&out).unwrap()[start..end].to_vec());
        let fs = fatfs::FileSystem::new(&mut volume, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let read = |name: &str| {
            let mut content = Vec::new();
            fs.root_dir()
                .open_file(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .read_to_end(&mut content)
                .unwrap();
            content
        };
        assert_eq!(read(KERNEL_FILE), kernel_image);
        for name in FIRMWARE {
            assert_eq!(
                read(name),
                std::fs::read(firmware_dir().join(name)).unwrap()
            );
        }
        assert_eq!(
            read(DEVICE_TREE_FILE),
            std::fs::read(crate::from_root(board.device_tree.as_deref().unwrap())).unwrap()
        );
        let config = String::from_utf8(read("config.txt")).unwrap();
        for line in [
            "arm_64bit=1",
            "enable_uart=1",
            "kernel=septum.img",
            "kernel_address=0x200000",
            "device_tree=bcm2711-rpi-4-b.dtb",
        ] {
            assert!(config.lines().any(|l| l == line), "config.txt lacks {line}");
        }
        std::fs::remove_file(&out).unwrap();
    }
}
