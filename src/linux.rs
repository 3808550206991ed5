//! What the host tool provides for Linux partitions: the default kernel and
//! initramfs, and the parts of a Linux partition's image written out on their
//! own.
//!
//! A Linux partition whose `linux` key names no kernel boots Debian's stock
//! arm64 kernel; one that names no initrd boots the busybox initramfs built
//! here ([`initramfs`]). Both live in the cache folder `target/linux/` (never
//! committed): `scripts/fetch-linux.sh` fetches the kernel (the version the
//! `linux-image-arm64` metapackage names) with the modules of its virtio
//! drivers, and `busybox-static`, by package name, and [`prepare`] runs it when
//! a description needs them and the cache lacks them, then writes the
//! initramfs. Invariant: after [`prepare`] succeeded for a
//! system, every default file its partitions use is in the cache.

pub mod balloon_bench;
pub mod initramfs;
pub mod net_bench;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use septum_core::abi::virtio::Device;
use septum_description::{Board, ImageFile, ImageSource, LinuxBoot, System};

/// The cache of default files.
pub fn cache() -> PathBuf {
    crate::from_root("target/linux")
}

/// Debian's arm64 kernel, as an uncompressed `Image`.
pub fn default_kernel() -> PathBuf {
    cache().join("Image")
}

/// The busybox initramfs.
pub fn default_initrd() -> PathBuf {
    cache().join("initramfs.cpio")
}

/// Debian's `busybox-static` for arm64, which the initramfs is built around.
fn busybox() -> PathBuf {
    cache().join("busybox")
}

/// The kernel's modules the initramfs loads, as `<name>.ko` (the script writes
/// the folder whole).
fn modules() -> PathBuf {
    cache().join("modules")
}

/// Whether the kernel, its modules and busybox are all in the cache.
fn cached() -> bool {
    default_kernel().is_file() && modules().is_dir() && busybox().is_file()
}

/// The script that fills the cache.
const FETCH: &str = "scripts/fetch-linux.sh";

/// One preparation at a time in this process (tests pack in parallel).
static PREPARING: Mutex<()> = Mutex::new(());

/// Makes the default files that the Linux partitions of `system` use ready:
/// runs `scripts/fetch-linux.sh` if the kernel, its modules or busybox is not
/// cached yet, and writes the initramfs if it is not there as
/// [`initramfs::build`] makes it.
/// Does nothing for a system whose partitions name all their files.
pub fn prepare(system: &System) -> Result<()> {
    let boots = system.partitions.iter().filter_map(|p| match &p.image {
        ImageSource::Linux(boot) => Some(boot),
        ImageSource::Workspace(_) | ImageSource::File(_) => None,
    });
    let (mut kernel, mut initrd) = (false, false);
    for boot in boots {
        kernel |= boot.kernel.is_none();
        initrd |= boot.initrd.is_none();
    }
    if !kernel && !initrd {
        return Ok(());
    }
    let _one_at_a_time = PREPARING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !cached() {
        fetch()?;
    }
    if initrd {
        write_initramfs()?;
    }
    Ok(())
}

/// Runs `scripts/fetch-linux.sh`, which says what it downloads: with its steps
/// and apt's download progress where a person watches ([`crate::progress::wanted`]),
/// else with `--quiet`.
fn fetch() -> Result<()> {
    let how = format!(
        "the default Linux kernel, its modules and busybox are not in {}: run `{FETCH}` (as root or with sudo) to fetch them",
        cache().display()
    );
    let mut command = Command::new(crate::from_root(FETCH));
    if !crate::progress::wanted() {
        command.arg("--quiet");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {FETCH}; {how}"))?;
    if !status.success() {
        bail!("{FETCH} failed ({status}); {how}");
    }
    if !cached() {
        bail!("{FETCH} left no kernel, modules or busybox; {how}");
    }
    Ok(())
}

/// Writes the initramfs from the cached busybox and every module in the cache
/// (`modules/*.ko`), unless it is there already. The file is replaced whole
/// (written aside, then renamed), so a reader sees the old archive or the new
/// one.
fn write_initramfs() -> Result<()> {
    let busybox =
        std::fs::read(busybox()).with_context(|| format!("reading {}", busybox().display()))?;
    let archive = initramfs::build(&busybox, &cached_modules()?);
    let path = default_initrd();
    if std::fs::read(&path).is_ok_and(|old| old == archive) {
        return Ok(());
    }
    let aside = path.with_extension(format!("cpio.{}", std::process::id()));
    std::fs::write(&aside, &archive).with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("writing {}", path.display()))
}

/// Every `<name>.ko` in the cache's modules folder.
fn cached_modules() -> Result<Vec<initramfs::Module>> {
    let folder = modules();
    let reading = || format!("reading {}", folder.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&folder).with_context(reading)? {
        let path = entry.with_context(reading)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(name) = name.strip_suffix(".ko") {
            // `/init` names it in a shell command.
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!(
                    "{}: a module's name is letters, digits, `_` and `-`",
                    path.display()
                );
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            found.push(initramfs::Module {
                name: name.to_owned(),
                bytes,
            });
        }
    }
    Ok(found)
}

/// The files of a Linux partition written out on their own, to boot them
/// outside Septum (on bare QEMU, whose `virt` board has the same map).
pub struct Parts {
    /// The kernel it boots (not copied).
    pub kernel: PathBuf,
    /// Its device tree, as written.
    pub device_tree: PathBuf,
    /// Its initrd, as written.
    pub initrd: PathBuf,
    /// Its vCPUs.
    pub vcpus: usize,
    /// Bytes of its RAM.
    pub ram: u64,
    /// The virtio devices the kernel emulates for it (its device tree's
    /// `virtio_mmio` nodes).
    pub virtio: Vec<Device>,
}

impl Parts {
    /// Its virtio devices in words: each with its window and interrupt.
    pub fn virtio_summary(&self) -> String {
        let devices: Vec<String> = self
            .virtio
            .iter()
            .map(|d| format!("{} at {:#x} (INTID {})", d.name(), d.window(), d.spi() + 32))
            .collect();
        match devices.is_empty() {
            true => "no virtio devices".into(),
            false => format!("virtio devices: {}", devices.join(", ")),
        }
    }

    /// QEMU's options that put its own virtio devices where the device tree
    /// says Septum's are: on `virt`'s virtio-mmio transport of the same slot
    /// (`virtio-mmio-bus.<slot>`, at the same window and interrupt); the
    /// console's port on a pseudo-terminal QEMU names when it starts (a network
    /// port has no counterpart there).
    pub fn qemu_virtio_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        for device in &self.virtio {
            let bus = format!("bus=virtio-mmio-bus.{}", device.slot());
            match device {
                Device::Balloon => {
                    options.extend(["-device".into(), format!("virtio-balloon-device,{bus}")]);
                }
                Device::Console => options.extend([
                    "-device".into(),
                    format!("virtio-serial-device,{bus}"),
                    "-chardev".into(),
                    "pty,id=hvc".into(),
                    "-device".into(),
                    "virtconsole,chardev=hvc".into(),
                ]),
                // A port's peers are other partitions: bare QEMU has none.
                Device::Net => {}
            }
        }
        options
    }
}

/// Writes the device tree and initrd of Linux partition `name` of `system` (the
/// only Linux partition if `name` is `None`) into `folder`, as
/// `<name>.dtb` and `<name>.initrd`: the bytes of its image.
pub fn write_parts(
    system: &System,
    board: &Board,
    name: Option<&str>,
    folder: &Path,
) -> Result<Parts> {
    let linux: Vec<(usize, &LinuxBoot)> = system
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(index, p)| match &p.image {
            ImageSource::Linux(boot) if name.is_none_or(|n| n == p.name) => Some((index, boot)),
            _ => None,
        })
        .collect();
    let &[(index, boot)] = linux.as_slice() else {
        bail!(
            "{}: {} Linux partitions{}; name one",
            system.path.display(),
            linux.len(),
            name.map_or_else(String::new, |n| format!(" called `{n}`"))
        );
    };
    let images = crate::package::images(system, board)?;
    let parts = images[index]
        .linux
        .as_ref()
        .context("a Linux partition's image has a device tree")?;
    let partition = &system.partitions[index];
    let bytes = |range: &std::ops::Range<u64>| -> Result<&[u8]> {
        let start = usize::try_from(range.start)?;
        let end = usize::try_from(range.end)?;
        Ok(&images[index].bytes[start..end])
    };
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let device_tree = folder.join(format!("{}.dtb", partition.name));
    std::fs::write(&device_tree, bytes(&parts.device_tree)?)
        .with_context(|| format!("writing {}", device_tree.display()))?;
    let initrd = folder.join(format!("{}.initrd", partition.name));
    std::fs::write(&initrd, bytes(&parts.initrd)?)
        .with_context(|| format!("writing {}", initrd.display()))?;
    if let Some(program) = &boot.program {
        bail!(
            "`{}` boots program `{program}`, not a kernel file to boot on bare QEMU",
            partition.name
        );
    }
    let locate = crate::package::locator(system, board)?;
    Ok(Parts {
        kernel: locate(
            boot.kernel
                .as_deref()
                .map_or(ImageFile::DefaultKernel, ImageFile::Described),
        ),
        device_tree,
        initrd,
        vcpus: partition.cpus.len(),
        ram: partition.ram,
        virtio: partition.virtio.clone(),
    })
}

/// QEMU `virt` without Septum, booting `parts`: one core, the partition's
/// RAM, `-icount shift=0`, the serial console on a pipe; what the benchmarks
/// that compare against bare QEMU share (callers add their own monitor and
/// devices, then spawn it).
pub fn bare_qemu(parts: &Parts) -> Command {
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args([
            "-M",
            "virt,gic-version=3",
            "-cpu",
            "cortex-a72",
            "-smp",
            "1",
        ])
        .args(["-m", &format!("{}K", parts.ram >> 10)])
        .args(["-icount", "shift=0,align=off,sleep=off"])
        .args(["-display", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&parts.kernel)
        .arg("-initrd")
        .arg(&parts.initrd)
        .arg("-dtb")
        .arg(&parts.device_tree)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    command
}

/// Boots `parts` on bare QEMU `virt` (one core, `-icount shift=0`), the
/// baseline of the Linux boot benchmark, and returns when `/init` came up by
/// Linux's own clock ([`init_up_ns`]). QEMU is stopped as soon as the line
/// appears, or after `timeout`.
pub fn bare_boot_to_init(parts: &Parts, timeout: std::time::Duration) -> Result<u64> {
    use std::io::{BufRead, BufReader};
    let mut child = bare_qemu(parts)
        .args(["-monitor", "none"])
        .spawn()
        .context("cannot start qemu-system-aarch64 (run scripts/setup.sh)")?;
    let started = std::time::Instant::now();
    let output = child.stdout.take().expect("piped");
    let mut found = None;
    for line in BufReader::new(output).lines() {
        let line = line?;
        if let Some(ns) = init_up_ns(&line) {
            found = Some(ns);
            break;
        }
        if started.elapsed() > timeout {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found.context("bare QEMU: /init never printed when it came up")
}

/// When `/init` came up, in ns since boot by Linux's monotonic clock, if `line`
/// is its [`initramfs::INIT_UP`] line (with or without a partition's tag).
pub fn init_up_ns(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(initramfs::INIT_UP)?;
    let (_, after) = rest.split_once("now at ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod bench_tests {
    use super::init_up_ns;

    /// Verifies: SK-LNX-005
    #[test]
    fn init_times_are_read_from_tagged_and_bare_lines() {
        let tagged = "[linux] septum-linux: init up (now at 193303152 nsecs)";
        assert_eq!(init_up_ns(tagged), Some(193_303_152));
        let bare = "septum-linux: init up (now at 5 nsecs)";
        assert_eq!(init_up_ns(bare), Some(5));
        assert_eq!(init_up_ns("[linux] septum-linux: init up ()"), None);
        assert_eq!(init_up_ns("[linux] now at 5 nsecs"), None);
    }
}

#[cfg(test)]
mod parts_tests {
    use super::{Device, Parts};

    fn parts(virtio: Vec<Device>) -> Parts {
        Parts {
            kernel: "Image".into(),
            device_tree: "linux.dtb".into(),
            initrd: "linux.initrd".into(),
            vcpus: 1,
            ram: 128 << 20,
            virtio,
        }
    }

    /// The parts name their virtio devices with window and INTID, and give bare
    /// QEMU its own devices on the transports of the same slots.
    ///
    /// Verifies: SK-LNX-002
    #[test]
    fn the_parts_show_their_virtio_devices_and_put_qemus_on_the_same_slots() {
        let both = parts(vec![Device::Balloon, Device::Console]);
        assert_eq!(
            both.virtio_summary(),
            "virtio devices: balloon at 0xa000000 (INTID 48), console at 0xa000200 (INTID 49)"
        );
        assert_eq!(
            both.qemu_virtio_options().join(" "),
            "-device virtio-balloon-device,bus=virtio-mmio-bus.0 \
             -device virtio-serial-device,bus=virtio-mmio-bus.1 \
             -chardev pty,id=hvc -device virtconsole,chardev=hvc"
        );
        let none = parts(Vec::new());
        assert_eq!(none.virtio_summary(), "no virtio devices");
        assert!(none.qemu_virtio_options().is_empty());
    }
}
