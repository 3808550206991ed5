//! Linux partitions' images: the arm64 `Image` check, the layout of the
//! partition's RAM, and the one image the kernel loads there.
//!
//! A Linux partition's image is its RAM from [`RAM_BASE`] on, laid out as the
//! arm64 boot protocol asks:
//!
//! | offset from [`RAM_BASE`] | what |
//! |---|---|
//! | 0 | the kernel `Image` file (its `text_offset` is 0) |
//! | file end | zeros, up to its `image_size` rounded up to [`IMAGE_ALIGN`] |
//! | that boundary | the device tree ([`device_tree`]), 8-byte aligned as it is |
//! | the next page | the initrd, to the end of the image |
//!
//! The kernel enters it at offset 0 with the device tree's guest-physical
//! address as its boot argument (x0); the device tree's `linux,initrd-start` and
//! `linux,initrd-end` are the initrd's guest-physical range in this layout.
//!
//! The image rules of a Linux partition:
//!
//! | rule | what it forbids |
//! |---|---|
//! | `image-file` | a kernel or initrd that cannot be read, or is not a regular file |
//! | `linux-image` | a kernel that is not a little-endian arm64 `Image`: shorter than its 64-byte header, without the `ARM\x64` magic at offset 56, with an `image_size` of 0 or smaller than the file, or a `text_offset` other than 0 |
//! | `linux-fit` | a kernel, device tree and initrd that, laid out as above, do not fit in the partition's RAM (all of it, which it starts with, ballooning or not) |
//!
//! Memory stays bounded by the partition's RAM: the kernel's 64-byte header and
//! both files' lengths are read first, and the files' bytes only once the layout
//! is known to fit.

mod device_tree;

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use septum_core::abi::layout::{PAGE_SIZE, RAM_BASE};
use septum_core::abi::net::Address;
use septum_core::abi::virt::{
    GICD_BASE, GICD_SIZE, GICR_BASE, GICR_STRIDE, IMAGE_ALIGN, UART_BASE, UART_SIZE,
};

use crate::images::{Image, Problem};
use crate::model::{LinuxBoot, Partition};
use crate::open_regular;

use device_tree::device_tree;

/// The longest kernel command line Linux takes: arm64's `COMMAND_LINE_SIZE`
/// (2,048) less its closing NUL.
pub(crate) const COMMAND_LINE_MAX: usize = 2047;

/// The command line of a Linux partition whose description gives none: the
/// console on the emulated UART (from the first instruction on, with
/// `earlycon`), a restart rather than a hang on a panic, no address-space
/// randomisation (the partition has no seed for it), and no crypto self-tests
/// (most of the boot time).
pub(crate) fn default_bootargs() -> String {
    format!("console=ttyAMA0 earlycon=pl011,{UART_BASE:#x} panic=-1 nokaslr cryptomgr.notests")
}

/// The kernel command-line parameter that gives a Linux partition its port's
/// address, `a.b.c.d/n` (Linux ignores it; the default initramfs' `/init`
/// configures `eth0` from it).
pub const IP_PARAMETER: &str = "septum.ip";

/// The kernel command-line parameter that gives a Linux partition with a port
/// its default gateway, `a.b.c.d`, when the system has an uplink.
pub const GATEWAY_PARAMETER: &str = "septum.gw";

/// What the description appends to the command line of a Linux partition whose
/// port has `address`, in a system whose uplink (if any) has `uplink`: the
/// address, and the gateway. The gateway is the uplink's address where it is in
/// the partition's subnet; otherwise the partition's subnet's lowest host
/// address but its own, as the router answers ARP for every address of the
/// sender's subnet but its own and routes by destination, so either takes
/// traffic for outside the subnet to the uplink.
pub(crate) fn network_parameters(address: Address, uplink: Option<Address>) -> String {
    let mut parameters = format!(" {IP_PARAMETER}={address}");
    if let Some(uplink) = uplink.filter(|uplink| uplink.ip != address.ip) {
        let network = address.value() & address.mask();
        let gateway = if address.contains(uplink.ip) {
            uplink.ip
        } else if address.value() == network + 1 {
            (network + 2).to_be_bytes()
        } else {
            (network + 1).to_be_bytes()
        };
        let [a, b, c, d] = gateway;
        parameters.push_str(&format!(" {GATEWAY_PARAMETER}={a}.{b}.{c}.{d}"));
    }
    parameters
}

/// The devices a Linux partition with some number of vCPUs finds emulated, at
/// their guest-physical ranges ([`septum_core::abi::virt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EmulatedWindows {
    /// The GICv3 distributor.
    pub distributor: Range<u64>,
    /// One redistributor frame pair per vCPU.
    pub redistributors: Range<u64>,
    /// The SBSA UART.
    pub uart: Range<u64>,
}

impl EmulatedWindows {
    /// The windows of a partition with `vcpus` vCPUs.
    pub(crate) fn for_vcpus(vcpus: usize) -> EmulatedWindows {
        EmulatedWindows {
            distributor: GICD_BASE..GICD_BASE + GICD_SIZE,
            redistributors: GICR_BASE..GICR_BASE + GICR_STRIDE * vcpus as u64,
            uart: UART_BASE..UART_BASE + UART_SIZE,
        }
    }

    /// Each window with its name, for messages.
    pub(crate) fn named(&self) -> [(&'static str, Range<u64>); 3] {
        [
            ("GIC distributor", self.distributor.clone()),
            ("GIC redistributors", self.redistributors.clone()),
            ("UART", self.uart.clone()),
        ]
    }
}

/// Where the device tree and the initrd lie in a Linux partition's image, as
/// offsets from [`RAM_BASE`] (so also into [`Image::bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxParts {
    /// The device tree.
    pub device_tree: Range<u64>,
    /// The initrd; it ends the image.
    pub initrd: Range<u64>,
}

impl LinuxParts {
    /// The layout of a kernel of `image_size` bytes, a device tree of
    /// `device_tree` bytes and an initrd of `initrd` bytes (see the module
    /// docs); `None` if it passes 64 bits.
    pub fn lay_out(image_size: u64, device_tree: u64, initrd: u64) -> Option<LinuxParts> {
        let tree_start = image_size.checked_next_multiple_of(IMAGE_ALIGN)?;
        let tree_end = tree_start.checked_add(device_tree)?;
        let initrd_start = tree_end.checked_next_multiple_of(PAGE_SIZE)?;
        Some(LinuxParts {
            device_tree: tree_start..tree_end,
            initrd: initrd_start..initrd_start.checked_add(initrd)?,
        })
    }

    /// Bytes of RAM the image takes.
    pub fn end(&self) -> u64 {
        self.initrd.end
    }

    /// The boot argument: the device tree's guest-physical address.
    pub fn device_tree_address(&self) -> u64 {
        RAM_BASE + self.device_tree.start
    }
}

/// Size of the arm64 `Image` header.
const HEADER_SIZE: usize = 64;
/// `ARM\x64`, at offset 56 of the header.
const MAGIC: [u8; 4] = *b"ARM\x64";

/// What the layout needs of an arm64 `Image` header (offsets 8, 16, 56).
struct ImageHeader {
    /// Bytes the kernel takes from its load address, its bss included.
    image_size: u64,
}

/// Reads and checks the header of the `Image` `file`, `len` bytes long.
fn read_header(file: &mut dyn Source, len: u64) -> Result<ImageHeader, Problem> {
    let malformed = |message: String| Err(("linux-image", message));
    if len < HEADER_SIZE as u64 {
        return malformed(format!(
            "it is {len} bytes, shorter than an arm64 Image header ({HEADER_SIZE})"
        ));
    }
    let mut header = [0; HEADER_SIZE];
    file.read_exact(&mut header)
        .map_err(|e| ("image-file", format!("cannot read the file: {e}")))?;
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if header[56..60] != MAGIC {
        return malformed(
            "it is not an arm64 Linux Image (no `ARM\\x64` magic at offset 56)".into(),
        );
    }
    let (text_offset, image_size, flags) = (u64_at(8), u64_at(16), u64_at(24));
    if flags & 1 != 0 {
        return malformed("it is a big-endian kernel; a partition runs little-endian".into());
    }
    if image_size == 0 {
        return malformed(
            "its image_size is 0 (a kernel older than Linux 3.17, whose size is unknown)".into(),
        );
    }
    if len > image_size {
        return malformed(format!(
            "it is {len} bytes, more than its image_size ({image_size})"
        ));
    }
    if text_offset != 0 {
        return malformed(format!(
            "its text_offset is {text_offset:#x}; the kernel is loaded at the start of RAM, which needs 0 (Linux 5.8 and later)"
        ));
    }
    Ok(ImageHeader { image_size })
}

/// What a Linux partition boots in place of Linux: a file, or a workspace
/// program already flattened (named, and its bytes).
pub(crate) enum Kernel<'a> {
    File(&'a Path),
    Program(&'a str, Vec<u8>),
}

/// Something to read a kernel from: a file, or bytes.
trait Source: Read + Seek {}
impl<T: Read + Seek> Source for T {}

/// The image of Linux partition `partition`, which boots `boot`, from `kernel`
/// and the initrd at `initrd`.
pub(crate) fn load_image(
    partition: &Partition,
    boot: &LinuxBoot,
    kernel: Kernel<'_>,
    initrd: &Path,
) -> Result<Image, Vec<Problem>> {
    let name = &partition.name;
    let what = |file: &str, written: Option<&Path>, located: &Path| match written {
        Some(path) => format!("the {file} of `{name}` (`{}`)", path.display()),
        None => format!(
            "the {file} of `{name}` (the default, `{}`)",
            located.display()
        ),
    };
    let (kernel_what, kernel_opened) = match kernel {
        Kernel::File(path) => (
            what("kernel", boot.kernel.as_deref(), path),
            open_regular(path).map(|(file, len)| (Box::new(file) as Box<dyn Source>, len)),
        ),
        Kernel::Program(program, bytes) => {
            let len = bytes.len() as u64;
            let source = Box::new(std::io::Cursor::new(bytes)) as Box<dyn Source>;
            (
                format!("the kernel of `{name}` (program `{program}`)"),
                Ok((source, len)),
            )
        }
    };
    let initrd_what = what("initrd", boot.initrd.as_deref(), initrd);
    let kernel_checked = kernel_opened
        .map_err(|e| ("image-file", e))
        .and_then(|(mut file, len)| read_header(&mut file, len).map(|header| (file, len, header)))
        .map_err(|(rule, message)| (rule, format!("{kernel_what}: {message}")));
    let initrd_checked =
        open_regular(initrd).map_err(|e| ("image-file", format!("{initrd_what}: {e}")));
    let ((mut kernel_file, kernel_len, header), (mut initrd_file, initrd_len)) =
        match (kernel_checked, initrd_checked) {
            (Ok(kernel), Ok(initrd)) => (kernel, initrd),
            (kernel, initrd) => {
                return Err([kernel.err(), initrd.err()].into_iter().flatten().collect());
            }
        };
    let guest = |initrd: Range<u64>| device_tree::Guest {
        vcpus: partition.cpus.len(),
        ram: partition.ram,
        bootargs: &boot.bootargs,
        initrd,
        virtio: &partition.virtio,
    };
    // The device tree's size does not depend on the initrd's addresses (64-bit
    // cells), so a first tree gives the layout and the second fills it in.
    let tree_len = device_tree(&guest(0..0)).len() as u64;
    // Linux starts with all its RAM, ballooning or not (then its `ram` is its
    // `memory.max`: rule `linux-ram`), and its image lies there.
    let ram = partition.ram;
    let parts = LinuxParts::lay_out(header.image_size, tree_len, initrd_len)
        .filter(|parts| parts.end() <= ram)
        .ok_or_else(|| {
            vec![(
                "linux-fit",
                format!(
                    "the image of `{name}`: its kernel (image_size {}, to a 2 MiB boundary), device tree ({tree_len} bytes) and initrd ({initrd_len} bytes) do not fit in its {ram} bytes of RAM",
                    header.image_size
                ),
            )]
        })?;
    let guest_range = |r: &Range<u64>| RAM_BASE + r.start..RAM_BASE + r.end;
    let tree = device_tree(&guest(guest_range(&parts.initrd)));
    debug_assert_eq!(tree.len() as u64, tree_len);
    // Everything lies inside its RAM, so this is at most `ram` bytes.
    let offset = |at: u64| usize::try_from(at).expect("at most RAM_MAX");
    let mut bytes = vec![0; offset(parts.end())];
    let read = |file: &mut dyn Source, into: &mut [u8]| {
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_exact(into))
            .map_err(|e| format!("cannot read the file: {e}"))
    };
    read(&mut kernel_file, &mut bytes[..offset(kernel_len)])
        .map_err(|e| vec![("image-file", format!("{kernel_what}: {e}"))])?;
    let initrd_bytes = offset(parts.initrd.start)..offset(parts.initrd.end);
    read(&mut initrd_file, &mut bytes[initrd_bytes])
        .map_err(|e| vec![("image-file", format!("{initrd_what}: {e}"))])?;
    let tree_bytes = offset(parts.device_tree.start)..offset(parts.device_tree.end);
    bytes[tree_bytes].copy_from_slice(&tree);
    Ok(Image {
        bytes,
        entry_offset: 0,
        linux: Some(parts),
    })
}

#[cfg(test)]
mod tests;
