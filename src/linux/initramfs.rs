//! The busybox initramfs a Linux partition boots when its description names no
//! initrd: a cpio archive in the `newc` format, uncompressed (Linux unpacks it
//! as it is), built in memory from Debian's `busybox-static` and the kernel's
//! modules. It holds:
//!
//! - `/bin/busybox`, and the folders `busybox --install -s` fills with its
//!   applets' links (`/bin`, `/sbin`, `/usr/bin`, `/usr/sbin`);
//! - `/lib/modules/<name>.ko`, each module it is given (the virtio drivers the
//!   default kernel has as modules: see `scripts/fetch-linux.sh`);
//! - `/init` ([`init_script`]): installs the applets, mounts `/proc`, `/sys` and
//!   `/dev` (devtmpfs), loads the modules (each after those it depends on; a
//!   driver whose device the partition lacks loads and binds nothing), prints
//!   [`INIT_UP`], brings the loopback interface up and, if the command line
//!   gives the partition's network address, `eth0` ([`ETH0_UP`]), runs the
//!   balloon benchmark and powers off if the command line asks for it
//!   ([`super::balloon_bench`]), and otherwise becomes a shell
//!   on the console; in the background it waits up to a second for `/dev/hvc0`
//!   (a virtio console) and, if it comes, prints [`HVC_SHELL`] there and starts
//!   a second shell on it;
//! - `/dev/console` (character device 5:1), so that Linux has a console for
//!   `/init` before devtmpfs is mounted.
//!
//! Every entry belongs to root and has time 0, and the modules go in their load
//! order, so the archive is the same for the same busybox and modules.

use septum_description::{GATEWAY_PARAMETER, IP_PARAMETER};

/// The line `/init` prints once the system is up, before the shell starts; it
/// goes on with the time since boot by Linux's monotonic clock (from
/// `/proc/timer_list`: `now at <n> nsecs`), which the Linux boot benchmark reads.
pub const INIT_UP: &str = "septum-linux: init up";

/// The line `/init` prints on the virtio console, `/dev/hvc0`, before it starts
/// a shell there.
pub const HVC_SHELL: &str = "septum-linux: shell on hvc0";

/// The start of the line `/init` prints once it has brought `eth0` up, followed
/// by the address (and ` via <gateway>` when it has one).
pub const ETH0_UP: &str = "septum-linux: eth0 up";

/// The part of `/init` that configures the network: the loopback interface up,
/// and, with [`IP_PARAMETER`]`=a.b.c.d/n` on the command line and a virtio-net
/// device bound as `eth0`, `eth0` with that address, IPv6 off on it (the
/// kernel's router carries only IPv4: an IPv6 frame would only be dropped and
/// counted), up, and a default route through [`GATEWAY_PARAMETER`]'s address
/// when the command line has one; then it prints [`ETH0_UP`].
fn network_script() -> String {
    format!(
        "ip link set lo up\n\
         for word in $(cat /proc/cmdline); do\n\
         \x20   case $word in\n\
         \x20       {IP_PARAMETER}=*) address=${{word#*=}} ;;\n\
         \x20       {GATEWAY_PARAMETER}=*) gateway=${{word#*=}} ;;\n\
         \x20   esac\n\
         done\n\
         if [ -n \"$address\" ] && [ -d /sys/class/net/eth0 ]; then\n\
         \x20   ipv6=/proc/sys/net/ipv6/conf/eth0/disable_ipv6\n\
         \x20   [ -w $ipv6 ] && echo 1 > $ipv6\n\
         \x20   ip addr add $address dev eth0\n\
         \x20   ip link set eth0 up\n\
         \x20   [ -n \"$gateway\" ] && ip route add default via $gateway\n\
         \x20   echo \"{ETH0_UP} $address${{gateway:+ via $gateway}}\"\n\
         fi\n"
    )
}

/// The modules `/init` loads first, in this order: each after those it depends
/// on (`virtio_net` needs `net_failover`, which needs `failover`; the others
/// need none). Any other module goes after these, by name.
pub const LOAD_ORDER: [&str; 6] = [
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_mmio",
    "virtio_balloon",
    "virtio_console",
];

/// A kernel module for the archive: `/lib/modules/<name>.ko`.
pub struct Module {
    /// Its name, without `.ko`.
    pub name: String,
    /// The `.ko` file.
    pub bytes: Vec<u8>,
}

/// The `/init` script, which loads `modules` (names, in load order): a busybox
/// shell script (it names busybox as its interpreter, as nothing else is
/// installed yet).
pub fn init_script(modules: &[&str]) -> String {
    use super::balloon_bench::SCRIPT as BALLOON_BENCH;
    let insmod: String = modules
        .iter()
        .map(|name| format!("insmod /lib/modules/{name}.ko\n"))
        .collect();
    let network = network_script();
    format!(
        "#!/bin/busybox sh\n\
         export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n\
         /bin/busybox --install -s\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         {insmod}\
         echo \"{INIT_UP} ($(grep -m1 'now at' /proc/timer_list))\"\n\
         {network}\
         {BALLOON_BENCH}\
         (\n\
         \x20   for i in 1 2 3 4 5 6 7 8 9 10; do [ -c /dev/hvc0 ] && break; usleep 100000; done\n\
         \x20   if [ -c /dev/hvc0 ]; then\n\
         \x20       echo \"{HVC_SHELL}\" > /dev/hvc0\n\
         \x20       setsid sh -c 'exec sh < /dev/hvc0 > /dev/hvc0 2>&1'\n\
         \x20   fi\n\
         ) &\n\
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

/// The archive around `busybox` (the `busybox-static` binary) and `modules`
/// (in any order: they go in their load order).
pub fn build(busybox: &[u8], modules: &[Module]) -> Vec<u8> {
    let mut archive = Archive::default();
    for folder in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "proc",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        archive.add(folder, FOLDER | 0o755, (0, 0), &[]);
    }
    archive.add("tmp", FOLDER | 0o1777, (0, 0), &[]);
    archive.add("dev/console", CHARACTER_DEVICE | 0o600, CONSOLE, &[]);
    archive.add("bin/busybox", FILE | 0o755, (0, 0), busybox);
    let ordered = load_order(modules);
    for module in &ordered {
        let name = format!("lib/modules/{}.ko", module.name);
        archive.add(&name, FILE | 0o644, (0, 0), &module.bytes);
    }
    let names: Vec<&str> = ordered.iter().map(|m| m.name.as_str()).collect();
    archive.add("init", FILE | 0o755, (0, 0), init_script(&names).as_bytes());
    archive.finish()
}

/// `modules` in the order `/init` loads them: those of [`LOAD_ORDER`] in its
/// order, then the others by name.
fn load_order(modules: &[Module]) -> Vec<&Module> {
    let mut ordered: Vec<&Module> = modules.iter().collect();
    ordered.sort_by_key(|m| {
        let rank = LOAD_ORDER.iter().position(|&name| name == m.name);
        (rank.unwrap_or(LOAD_ORDER.len()), m.name.clone())
    });
    ordered
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
