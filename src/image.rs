//! Images: finding the bare-metal ELFs that `build.rs` produced, flattening the
//! kernel's ELF into the bytes a loader places in memory, and making the bootable
//! kernel image (the kernel followed by the system package).

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSegment, ObjectSymbol};
use std::path::{Path, PathBuf};

/// Where `build.rs` put the bare-metal builds.
pub fn image_dir() -> PathBuf {
    PathBuf::from(env!("SEPTUM_IMAGE_DIR"))
}

/// The kernel ELF for `arch`.
pub fn kernel_elf(arch: &str) -> Result<PathBuf> {
    let (target, name) = match arch {
        "aarch64" => ("aarch64-unknown-none-softfloat", "septum-aarch64"),
        "x86_64" => ("x86_64-unknown-none", "septum-x86_64"),
        other => bail!("no kernel for architecture `{other}`"),
    };
    Ok(image_dir()
        .join("kernel")
        .join(target)
        .join("release")
        .join(name))
}

/// Where `build.rs` put this workspace's partition programs for `arch`.
pub fn partition_dir(arch: &str) -> Result<PathBuf> {
    let target = match arch {
        "aarch64" => "aarch64-unknown-none",
        "x86_64" => "x86_64-unknown-none",
        other => bail!("no partitions for architecture `{other}`"),
    };
    Ok(image_dir().join("partitions").join(target).join("release"))
}

/// A kernel ELF's loadable contents as one block of memory.
struct Flat {
    /// Address of the first byte.
    base: u64,
    /// The bytes, from `base` to the end of the last initialised segment. Gaps and
    /// zero-initialised data within are zero.
    bytes: Vec<u8>,
}

/// Flattens the kernel ELF in `data` (partition programs are read, checked and
/// flattened by `septum_description::load_images`).
fn flatten(data: &[u8]) -> Result<Flat> {
    let file = object::File::parse(data).context("not an ELF file")?;
    let segments: Vec<_> = file.segments().filter(|s| s.size() > 0).collect();
    let base = segments
        .iter()
        .map(|s| s.address())
        .min()
        .context("ELF has no loadable segment")?;
    let mut bytes = Vec::new();
    for segment in &segments {
        let contents = segment.data().context("segment data")?;
        if contents.is_empty() {
            continue;
        }
        let offset = usize::try_from(segment.address() - base)?;
        let end = offset + contents.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset..end].copy_from_slice(contents);
    }
    Ok(Flat { base, bytes })
}

/// Offset of the arm64 Image header's `image_size` field.
const IMAGE_SIZE_OFFSET: usize = 16;

/// A kernel ELF flattened, with what the image builders need to know about it.
struct FlatKernel {
    /// Its loaded bytes, from its lowest address.
    bytes: Vec<u8>,
    /// Bytes from its lowest address to the symbol `__kernel_end`.
    end_offset: usize,
    architecture: object::Architecture,
}

fn flat_kernel(data: &[u8]) -> Result<FlatKernel> {
    let file = object::File::parse(data).context("kernel is not an ELF file")?;
    let end = file
        .symbols()
        .find(|s| s.name() == Ok("__kernel_end"))
        .context("kernel has no __kernel_end symbol")?
        .address();
    let flat = flatten(data)?;
    Ok(FlatKernel {
        end_offset: usize::try_from(end - flat.base)?,
        bytes: flat.bytes,
        architecture: file.architecture(),
    })
}

/// The `image_size` field of the arm64 Image header at the start of `image`.
fn image_size(image: &[u8]) -> Result<u64> {
    let field = image
        .get(IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8)
        .context("too short for an arm64 Image header")?;
    Ok(u64::from_le_bytes(field.try_into()?))
}

/// The bootable arm64 `Image`: the flat kernel, zero-filled up to the symbol
/// `__kernel_end` (its zero-initialised data), then the system package padded to a
/// whole page. The kernel's own `image_size` covers its code, data and per-core
/// stacks; the package's padded length is added to it, so the stacks lie after the
/// package in memory without taking space in the file.
pub fn arm64_image(kernel: &Path, package: &[u8]) -> Result<Vec<u8>> {
    const PAGE: usize = 4096;
    let data = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    let kernel = flat_kernel(&data)?;
    let kernel_size = image_size(&kernel.bytes)?;
    let mut image = kernel.bytes;
    image.resize(kernel.end_offset, 0);
    image.extend_from_slice(package);
    image.resize(image.len().next_multiple_of(PAGE), 0);
    let package_size = (image.len() - kernel.end_offset) as u64;
    image[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8]
        .copy_from_slice(&(kernel_size + package_size).to_le_bytes());
    Ok(image)
}

/// The GRUB platforms of the PC's image, each with the Debian package that holds
/// its files: a BIOS's (started from the MBR, or from a CD's El Torito BIOS image)
/// and UEFI's on x86_64 (`EFI/BOOT/BOOTX64.EFI` in an EFI system partition, also
/// a CD's El Torito EFI image).
const GRUB_PLATFORMS: [(&str, &str); 2] = [
    ("i386-pc", "grub-pc-bin"),
    ("x86_64-efi", "grub-efi-amd64-bin"),
];

/// Where the GRUB packages put each platform's files.
const GRUB_LIBRARY: &str = "/usr/lib/grub";

/// Writes the PC's bootable GRUB image to `out`: an ISO 9660 image that is also a
/// disk image (a hybrid: written to a USB stick, it boots as a disk), for BIOS and
/// UEFI machines alike ([`GRUB_PLATFORMS`]). GRUB loads the kernel ELF with
/// multiboot2, with `command_line` as its command line, and the system package as
/// the module named `system`. Needs `grub-mkrescue` (with xorriso, mtools) and
/// both platforms' GRUB, which `scripts/setup.sh` installs.
pub fn grub_iso(kernel: &Path, package: &[u8], command_line: &str, out: &Path) -> Result<()> {
    if command_line.contains(['\n', '"', '\\', '$', ';']) {
        bail!("the kernel command line `{command_line}` has a character GRUB's menu would read");
    }
    for (platform, package) in GRUB_PLATFORMS {
        if !Path::new(GRUB_LIBRARY).join(platform).is_dir() {
            bail!(
                "GRUB for {platform} is missing ({GRUB_LIBRARY}/{platform}): install the \
                 Debian package {package} (run scripts/setup.sh)"
            );
        }
    }
    let tree = out.with_extension("iso.d");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("boot/grub"))?;
    std::fs::copy(kernel, tree.join("boot/septum"))
        .with_context(|| format!("copying {}", kernel.display()))?;
    std::fs::write(tree.join("boot/system.pkg"), package)?;
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nset default=0\nmenuentry \"Septum\" {{\n  multiboot2 /boot/septum \
             {command_line}\n  module2 /boot/system.pkg system\n  boot\n}}\n"
        ),
    )?;
    let output = std::process::Command::new("grub-mkrescue")
        .arg("-o")
        .arg(out)
        .arg(&tree)
        .output()
        .context("cannot run grub-mkrescue (run scripts/setup.sh)")?;
    if !output.status.success() {
        bail!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::remove_dir_all(&tree)?;
    Ok(())
}

/// Sizes of the kernel, for the benchmark report.
#[derive(Debug)]
pub struct KernelSize {
    /// Bytes of code, read-only data and initialised data (what a loader copies).
    pub loaded: u64,
    /// Bytes of zero-initialised data after that, up to `__kernel_end`.
    pub zeroed: u64,
    /// Bytes the kernel claims beyond the system package (the arm64 Image's
    /// per-core stacks, which are in no file); 0 on x86_64, whose stacks are in
    /// `zeroed`.
    pub claimed_after_package: u64,
}

/// Measures the kernel ELF at `path`.
pub fn kernel_size(path: &Path) -> Result<KernelSize> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let kernel = flat_kernel(&data)?;
    let loaded = kernel.bytes.len() as u64;
    let end = kernel.end_offset as u64;
    let claimed_after_package = if kernel.architecture == object::Architecture::Aarch64 {
        image_size(&kernel.bytes)? - end
    } else {
        0
    };
    Ok(KernelSize {
        loaded,
        zeroed: end - loaded,
        claimed_after_package,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's per-core stacks: eight cores of 0x20000 bytes (`cpu.rs`).
    const STACKS_BYTES: u64 = 8 * 0x20000;

    /// The memory the kernel reserves before it places any partition is what the
    /// Image header claims: code, data, the package and the stacks after it.
    ///
    /// Verifies: SK-INIT-002
    #[test]
    fn arm64_image_claims_the_package_and_the_stacks_without_storing_the_stacks() {
        let kernel = kernel_elf("aarch64").unwrap();
        let package = vec![0xa5; 5000];
        let image = arm64_image(&kernel, &package).unwrap();
        let claimed = image_size(&image).unwrap();

        assert_eq!(image.len() % 4096, 0, "the stacks start on a page");
        assert_eq!(claimed, image.len() as u64 + STACKS_BYTES);
        let package_at = flat_kernel(&std::fs::read(&kernel).unwrap())
            .unwrap()
            .end_offset;
        assert_eq!(&image[package_at..package_at + package.len()], &package[..]);
        assert!(image[package_at + package.len()..].iter().all(|&b| b == 0));
    }

    /// Bytes of an ISO 9660 (and El Torito) sector.
    const SECTOR: usize = 2048;

    /// The El Torito boot images of the ISO image `image`: (platform, whether
    /// bootable, byte offset) of the default entry and of every section's entries.
    fn el_torito_images(image: &[u8]) -> Vec<(u8, bool, usize)> {
        let record = &image[17 * SECTOR..18 * SECTOR];
        assert_eq!(
            &record[..7],
            b"\0CD001\x01",
            "no boot record volume descriptor"
        );
        assert!(record[7..].starts_with(b"EL TORITO SPECIFICATION"));
        let catalog = u32::from_le_bytes(record[0x47..0x4b].try_into().unwrap()) as usize;
        let entries: Vec<&[u8]> = image[catalog * SECTOR..(catalog + 1) * SECTOR]
            .chunks_exact(32)
            .collect();
        assert_eq!((entries[0][0], &entries[0][30..]), (1, &[0x55, 0xaa][..]));
        let entry = |platform: u8, entry: &[u8]| {
            let rba = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize;
            (platform, entry[0] == 0x88, rba * SECTOR)
        };
        let mut images = vec![entry(entries[0][1], entries[1])];
        let mut at = 2;
        while let Some(
            &[
                indicator @ (0x90 | 0x91),
                platform,
                count_low,
                count_high,
                ..,
            ],
        ) = entries.get(at).copied()
        {
            let count = usize::from(u16::from_le_bytes([count_low, count_high]));
            for section_entry in &entries[at + 1..at + 1 + count] {
                images.push(entry(platform, section_entry));
            }
            at += 1 + count;
            if indicator == 0x91 {
                break;
            }
        }
        images
    }

    /// The PC's image boots BIOS and UEFI machines, from a USB stick or a CD:
    /// GRUB's boot code in the MBR (BIOS, stick); a GPT whose EFI system
    /// partition is a FAT file system holding GRUB as `EFI/BOOT/BOOTX64.EFI`
    /// (UEFI, stick); and El Torito boot images for a BIOS (GRUB's) and for EFI
    /// (the same FAT file system) (CD).
    ///
    /// Verifies: SK-INIT-010
    #[test]
    fn the_pc_image_boots_bios_and_uefi_machines_from_a_stick_or_a_cd() {
        let out = crate::from_root("target/test-images/hybrid-pc.img");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        grub_iso(&kernel_elf("x86_64").unwrap(), &[0xa5; 5000], "", &out).unwrap();
        let image = std::fs::read(&out).unwrap();

        assert_eq!(&image[510..512], &[0x55, 0xaa], "no MBR signature");
        assert!(
            image[..440].windows(4).any(|w| w == b"GRUB"),
            "no GRUB boot code in the MBR"
        );

        let disk = gpt::GptConfig::new()
            .writable(false)
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .open_from_device(std::io::Cursor::new(image.clone()))
            .expect("a GPT");
        let esp = disk
            .partitions()
            .values()
            .find(|p| p.part_type_guid == gpt::partition_types::EFI)
            .expect("an EFI system partition");
        let block = gpt::disk::LogicalBlockSize::Lb512;
        let start = esp.bytes_start(block).unwrap() as usize;
        let end = start + esp.bytes_len(block).unwrap() as usize;
        let fat = fatfs::FileSystem::new(
            std::io::Cursor::new(image[start..end].to_vec()),
            fatfs::FsOptions::new(),
        )
        .expect("a FAT file system in the EFI system partition");
        let mut loader = Vec::new();
        std::io::Read::read_to_end(
            &mut fat.root_dir().open_file("EFI/BOOT/BOOTX64.EFI").unwrap(),
            &mut loader,
        )
        .unwrap();
        assert_eq!(&loader[..2], b"MZ", "BOOTX64.EFI is no PE image");

        let images = el_torito_images(&image);
        const BIOS: u8 = 0;
        const EFI: u8 = 0xef;
        assert_eq!((images[0].0, images[0].1), (BIOS, true), "{images:?}");
        assert!(images.contains(&(EFI, true, start)), "{images:?}");
        std::fs::remove_file(&out).unwrap();
    }
}
