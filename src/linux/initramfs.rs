//! The busybox initramfs a Linux partition boots when its description names no
//! initrd: a cpio archive in the `newc` format, uncompressed (Linux unpacks it
//! as it is), built in memory from Debian's `busybox-static`. It holds:
//!
//! - `/bin/busybox`, and the folders `busybox --install -s` fills with its
//!   applets' links (`/bin`, `/sbin`, `/usr/bin`, `/usr/sbin`);
//! - `/init` ([`init_script`]): installs the applets, mounts `/proc`, `/sys` and
//!   `/dev` (devtmpfs), prints [`INIT_UP`] and becomes a shell on the console;
//! - `/dev/console` (character device 5:1), so that Linux has a console for
//!   `/init` before devtmpfs is mounted.
//!
//! Every entry belongs to root and has time 0, so the archive is the same for
//! the same busybox.

/// The line `/init` prints once the system is up, before the shell starts; it
/// goes on with the time since boot by Linux's monotonic clock (from
/// `/proc/timer_list`: `now at <n> nsecs`), which the Linux boot benchmark reads.
pub const INIT_UP: &str = "septum-linux: init up";

/// The `/init` script: a busybox shell script (it names busybox as its
/// interpreter, as nothing else is installed yet).
pub fn init_script() -> String {
    format!(
        "#!/bin/busybox sh\n\
         export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n\
         /bin/busybox --install -s\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         echo \"{INIT_UP} ($(grep -m1 'now at' /proc/timer_list))\"\n\
         exec setsid cttyhack sh\n"
    )
}

/// File type bits of a mode: folder, regular file, character device.
const FOLDER: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const CHARACTER_DEVICE: u32 = 0o020_000;
/// The console's device numbers.
const CONSOLE: (u32, u32) = (5, 1);
/// The `newc` header's magic.
pub(crate) const NEWC_MAGIC: &str = "070701";
/// The name of the entry that ends an archive.
pub(crate) const TRAILER: &str = "TRAILER!!!";

/// The archive around `busybox` (the `busybox-static` binary).
pub fn build(busybox: &[u8]) -> Vec<u8> {
    let mut archive = Archive::default();
    for folder in [
        "bin", "dev", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin",
    ] {
        archive.add(folder, FOLDER | 0o755, (0, 0), &[]);
    }
    archive.add("tmp", FOLDER | 0o1777, (0, 0), &[]);
    archive.add("dev/console", CHARACTER_DEVICE | 0o600, CONSOLE, &[]);
    archive.add("bin/busybox", FILE | 0o755, (0, 0), busybox);
    archive.add("init", FILE | 0o755, (0, 0), init_script().as_bytes());
    archive.finish()
}

/// A `newc` archive being written.
#[derive(Default)]
struct Archive {
    bytes: Vec<u8>,
    /// Entries so far: the next one's inode number less 1.
    entries: u32,
}

impl Archive {
    /// Appends the entry `name` (relative to the root) with `mode`, device
    /// numbers `device` (for a device node) and content `data`.
    fn add(&mut self, name: &str, mode: u32, device: (u32, u32), data: &[u8]) {
        self.entries += 1;
        let links = if mode & FOLDER == FOLDER { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("a file of the archive is under 4 GiB");
        let name_size = u32::try_from(name.len() + 1).expect("a short name");
        let fields = [
            self.entries, // inode
            mode,
            0, // owner
            0, // group
            links,
            0, // time
            size,
            0, // major and minor of the device holding it
            0,
            device.0, // major and minor of the device it is
            device.1,
            name_size,
            0, // checksum (unused by newc)
        ];
        self.bytes.extend_from_slice(NEWC_MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Zeros to the next 4-byte boundary, which every header and every file's
    /// data start on.
    fn pad(&mut self) {
        let padded = self.bytes.len().next_multiple_of(4);
        self.bytes.resize(padded, 0);
    }

    /// The archive, closed by its trailer entry.
    fn finish(mut self) -> Vec<u8> {
        self.add(TRAILER, 0, (0, 0), &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests;
