//! What a partition is granted besides its RAM and capabilities: where its RAM must
//! be placed, its memory limits, its receive window, its vCPUs (the core each is
//! pinned to) and time windows,
//! and its devices (MMIO blocks, I/O ports, interrupts). The system package carries
//! one fixed-size [`Resources`] block per partition.
//!
//! Layout of the block (little-endian, [`RESOURCES_SIZE`] bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | placement (0: the kernel chooses) |
//! | 8 | 8 | memory minimum |
//! | 16 | 8 | memory maximum |
//! | 24 | 4 | the core of each vCPU, one byte each ([`NO_VCPU`] past the last) |
//! | 28 | 4 | one count byte each for windows, MMIO blocks, port ranges, interrupts |
//! | 32 | 8 | receive window size in bytes |
//! | 40 | 12 × [`MAX_WINDOWS`] | windows (core 4, offset µs 4, length µs 4) |
//! | 136 | 16 × [`MAX_MMIO`] | MMIO blocks (base 8, size 8) |
//! | 200 | 4 × [`MAX_PORTS`] | port ranges (first 2, count 2) |
//! | 216 | 4 × [`MAX_IRQS`] | interrupts |
//! | 248 | 4 | memory shares (weight against other ballooning guests) |
//! | 252 | 4 | virtio devices: one [`Device::bit`] each |
//! | 256 | 8 | network port: [`Address::to_word`] in bits 0-39, [`UPLINK_BIT`] (0: no port) |
//! | 264 | 8 | flags: [`DEVIRTUALIZE_BIT`] (every other bit zero) |
//!
//! Entries past a count are zero.
//!
//! Invariant: [`Resources::decode`] accepts a block only if it has 1 to
//! [`MAX_VCPUS`] vCPUs, each on a core below [`MAX_CPUS`], every count is within
//! its maximum, every unused entry is zero, every MMIO block is page-aligned,
//! non-empty and does not wrap, every port range is non-empty and does not wrap,
//! every window is non-empty, the placement is 2 MiB aligned, and the receive
//! window is a multiple of the page size no larger than [`MAX_RECEIVE_WINDOW`],
//! and the device word names only devices the kernel emulates; a partition has
//! a network port exactly when it has the net device, and the port's address
//! is a host address of its subnet; no flag but [`DEVIRTUALIZE_BIT`] is set.
//!
//! [`Device::bit`]: septum_abi::virtio::Device::bit
//! [`Address::to_word`]: septum_abi::net::Address::to_word

pub use septum_abi::MAX_VCPUS;
use septum_abi::net::Address;
use septum_abi::virtio::Device;

/// Most CPU cores the kernel runs partitions on.
pub const MAX_CPUS: usize = 8;
/// The vCPU-core byte of a vCPU the partition does not have.
pub const NO_VCPU: u8 = 0xff;
/// Most time windows per partition.
pub const MAX_WINDOWS: usize = 8;
/// Most MMIO blocks per partition.
pub const MAX_MMIO: usize = 4;
/// Most I/O port ranges per partition.
pub const MAX_PORTS: usize = 4;
/// Most interrupts per partition.
pub const MAX_IRQS: usize = 8;
/// Largest receive window (16 MiB).
pub const MAX_RECEIVE_WINDOW: u64 = 16 << 20;
/// Where the grant lists start: after the fixed fields and the receive window.
const LISTS_OFFSET: usize = 40;
/// Where the memory shares are: after the grant lists.
const SHARES_OFFSET: usize =
    LISTS_OFFSET + MAX_WINDOWS * 12 + MAX_MMIO * 16 + MAX_PORTS * 4 + MAX_IRQS * 4;
/// Where the network port is: after the shares and the device word.
const NET_OFFSET: usize = SHARES_OFFSET + 8;
/// Where the flags word is: after the network port.
const FLAGS_OFFSET: usize = NET_OFFSET + 8;
/// Bytes of an encoded block.
pub const RESOURCES_SIZE: usize = FLAGS_OFFSET + 8;
// The layout table in the module docs states these offsets.
const _: () =
    assert!(SHARES_OFFSET == 248 && FLAGS_OFFSET == 264 && RESOURCES_SIZE.is_multiple_of(8));
/// The bit of the flags word that makes the partition devirtualizable
/// ([`Resources::devirtualize`]).
pub const DEVIRTUALIZE_BIT: u64 = 1 << 0;
/// The bit of the network port word that makes the port the system's uplink.
pub const UPLINK_BIT: u64 = 1 << 63;
/// Memory shares of a partition whose description gives none.
pub const DEFAULT_SHARES: u32 = 100;

const PAGE: u64 = septum_abi::layout::PAGE_SIZE;
const PLACEMENT_ALIGN: u64 = 2 << 20;

/// A time window within the major frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// The core.
    pub cpu: u32,
    /// Start, in µs from the start of the frame.
    pub offset_us: u32,
    /// Length in µs.
    pub length_us: u32,
}

/// A block of device registers, mapped at the same guest-physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mmio {
    /// Physical base address.
    pub base: u64,
    /// Bytes (a multiple of the page size).
    pub size: u64,
}

/// A range of I/O ports (x86).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    /// First port.
    pub first: u16,
    /// Number of ports.
    pub count: u16,
}

/// A partition's grants, as the package carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Where its RAM must start in machine memory, if fixed.
    pub at: Option<u64>,
    /// The least RAM it may be left with.
    pub memory_min: u64,
    /// The most RAM it may ever hold.
    pub memory_max: u64,
    /// The core each vCPU is pinned to, vCPU 0 first ([`Resources::vcpu_cores`]).
    vcpu_cores: [u8; MAX_VCPUS],
    vcpus_len: u8,
    /// Bytes of its receive window (a multiple of the page size; 0 if it receives
    /// on no queue).
    pub receive_window: u64,
    /// Its weight against the other ballooning guests in the memory scheduler.
    pub shares: u32,
    windows: [Window; MAX_WINDOWS],
    windows_len: u8,
    mmio: [Mmio; MAX_MMIO],
    mmio_len: u8,
    ports: [Ports; MAX_PORTS],
    ports_len: u8,
    irqs: [u32; MAX_IRQS],
    irqs_len: u8,
    /// The virtio devices the kernel emulates for it: a set of
    /// [`Device::bit`](septum_abi::virtio::Device::bit)s.
    virtio: u32,
    /// Its network port, if it has one (then it has the net device too).
    net: Option<NetPort>,
    /// Whether it may run natively, with the kernel's translation off, and be
    /// virtualized and devirtualized at run time (the description's
    /// `devirtualize = true`). The package checks what that needs (see
    /// [`crate::package`]): a native guest placed identity on one vCPU, with
    /// nothing that needs the translation.
    pub devirtualize: bool,
}

/// A partition's port on the kernel's router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetPort {
    /// Its address and subnet.
    pub address: Address,
    /// Whether datagrams for addresses no partition owns go to it.
    pub uplink: bool,
}

/// A grant list is longer than the package allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooMany;

fn push<T: Copy>(list: &mut [T], len: &mut u8, item: T) -> Result<(), TooMany> {
    let slot = list.get_mut(usize::from(*len)).ok_or(TooMany)?;
    *slot = item;
    *len += 1;
    Ok(())
}

impl Resources {
    /// Resources with no placement, limits `min`..`max`, no vCPU, and nothing
    /// granted yet.
    pub fn new(memory_min: u64, memory_max: u64) -> Resources {
        Resources {
            memory_min,
            memory_max,
            shares: DEFAULT_SHARES,
            ..Resources::default()
        }
    }

    /// Resources with one vCPU on each of `cores` (host side: packages and
    /// tests). Panics on a core past [`MAX_CPUS`] or more than [`MAX_VCPUS`].
    #[cfg(any(feature = "alloc", test))]
    pub fn on_cores(memory_min: u64, memory_max: u64, cores: &[u8]) -> Resources {
        let mut resources = Resources::new(memory_min, memory_max);
        for &core in cores {
            resources
                .add_vcpu(core)
                .expect("a core and vCPU count the kernel has");
        }
        resources
    }

    /// The core each of its vCPUs is pinned to, vCPU 0 first.
    pub fn vcpu_cores(&self) -> &[u8] {
        &self.vcpu_cores[..usize::from(self.vcpus_len)]
    }
    /// Adds a vCPU pinned to `core` (below [`MAX_CPUS`]).
    pub fn add_vcpu(&mut self, core: u8) -> Result<(), TooMany> {
        if usize::from(core) >= MAX_CPUS {
            return Err(TooMany);
        }
        push(&mut self.vcpu_cores, &mut self.vcpus_len, core)
    }

    /// Its time windows.
    pub fn windows(&self) -> &[Window] {
        &self.windows[..usize::from(self.windows_len)]
    }
    /// Its MMIO blocks.
    pub fn mmio(&self) -> &[Mmio] {
        &self.mmio[..usize::from(self.mmio_len)]
    }
    /// Its I/O port ranges.
    pub fn ports(&self) -> &[Ports] {
        &self.ports[..usize::from(self.ports_len)]
    }
    /// Its interrupts.
    pub fn irqs(&self) -> &[u32] {
        &self.irqs[..usize::from(self.irqs_len)]
    }

    /// Adds a time window.
    pub fn add_window(&mut self, window: Window) -> Result<(), TooMany> {
        push(&mut self.windows, &mut self.windows_len, window)
    }
    /// Adds an MMIO block.
    pub fn add_mmio(&mut self, mmio: Mmio) -> Result<(), TooMany> {
        push(&mut self.mmio, &mut self.mmio_len, mmio)
    }
    /// Adds an I/O port range.
    pub fn add_ports(&mut self, ports: Ports) -> Result<(), TooMany> {
        push(&mut self.ports, &mut self.ports_len, ports)
    }
    /// The virtio devices the kernel emulates for it, in slot order.
    pub fn virtio(&self) -> impl Iterator<Item = Device> + '_ {
        Device::ALL
            .into_iter()
            .filter(|device| self.virtio & device.bit() != 0)
    }
    /// Whether the kernel emulates `device` for it.
    pub fn has_virtio(&self, device: Device) -> bool {
        self.virtio & device.bit() != 0
    }
    /// Its network port, if it has one.
    pub fn net(&self) -> Option<NetPort> {
        self.net
    }
    /// Gives it a network port, and with it the net device.
    pub fn set_net(&mut self, port: NetPort) {
        self.net = Some(port);
        self.add_virtio(Device::Net);
    }
    /// Gives it `device`.
    pub fn add_virtio(&mut self, device: Device) {
        self.virtio |= device.bit();
    }
    /// Adds an interrupt.
    pub fn add_irq(&mut self, irq: u32) -> Result<(), TooMany> {
        push(&mut self.irqs, &mut self.irqs_len, irq)
    }

    /// Reads a block; `None` if it breaks any rule of the module docs.
    pub fn decode(raw: &[u8]) -> Option<Resources> {
        let raw = raw.get(..RESOURCES_SIZE)?;
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let u16_at = |at: usize| u16::from_le_bytes(raw[at..at + 2].try_into().expect("2 bytes"));
        let mut resources = Resources::new(u64_at(8), u64_at(16));
        let cores = &raw[24..28];
        let count = cores.iter().take_while(|&&core| core != NO_VCPU).count();
        for (index, &core) in cores.iter().enumerate() {
            if index < count {
                resources.add_vcpu(core).ok()?;
            } else if core != NO_VCPU {
                return None;
            }
        }
        (count > 0).then_some(())?;
        let at = u64_at(0);
        if !at.is_multiple_of(PLACEMENT_ALIGN) {
            return None;
        }
        resources.at = (at != 0).then_some(at);
        let [windows, mmio, ports, irqs] = [raw[28], raw[29], raw[30], raw[31]].map(usize::from);
        if windows > MAX_WINDOWS || mmio > MAX_MMIO || ports > MAX_PORTS || irqs > MAX_IRQS {
            return None;
        }
        let receive_window = u64_at(32);
        if !receive_window.is_multiple_of(PAGE) || receive_window > MAX_RECEIVE_WINDOW {
            return None;
        }
        resources.receive_window = receive_window;
        let mut offset = LISTS_OFFSET;
        for index in 0..MAX_WINDOWS {
            let window = Window {
                cpu: u32_at(offset),
                offset_us: u32_at(offset + 4),
                length_us: u32_at(offset + 8),
            };
            if index < windows {
                (window.length_us > 0).then_some(())?;
                resources.add_window(window).ok()?;
            } else if window != Window::default() {
                return None;
            }
            offset += 12;
        }
        for index in 0..MAX_MMIO {
            let block = Mmio {
                base: u64_at(offset),
                size: u64_at(offset + 8),
            };
            if index < mmio {
                let aligned = block.base.is_multiple_of(PAGE) && block.size.is_multiple_of(PAGE);
                (aligned && block.size > 0 && block.base.checked_add(block.size).is_some())
                    .then_some(())?;
                resources.add_mmio(block).ok()?;
            } else if block != Mmio::default() {
                return None;
            }
            offset += 16;
        }
        for index in 0..MAX_PORTS {
            let range = Ports {
                first: u16_at(offset),
                count: u16_at(offset + 2),
            };
            if index < ports {
                (range.count > 0 && range.first.checked_add(range.count - 1).is_some())
                    .then_some(())?;
                resources.add_ports(range).ok()?;
            } else if range != Ports::default() {
                return None;
            }
            offset += 4;
        }
        for index in 0..MAX_IRQS {
            let irq = u32_at(offset);
            if index < irqs {
                resources.add_irq(irq).ok()?;
            } else if irq != 0 {
                return None;
            }
            offset += 4;
        }
        resources.shares = u32_at(SHARES_OFFSET);
        let virtio = u32_at(SHARES_OFFSET + 4);
        let known = Device::ALL.iter().fold(0, |set, device| set | device.bit());
        (virtio & !known == 0).then_some(())?;
        resources.virtio = virtio;
        let net = u64_at(NET_OFFSET);
        resources.net = match Address::from_word(net & !UPLINK_BIT) {
            Some(address) => address.is_host().then_some(NetPort {
                address,
                uplink: net & UPLINK_BIT != 0,
            }),
            None if net == 0 => None,
            None => return None,
        };
        (resources.net.is_some() == resources.has_virtio(Device::Net)).then_some(())?;
        let flags = u64_at(FLAGS_OFFSET);
        (flags & !DEVIRTUALIZE_BIT == 0).then_some(())?;
        resources.devirtualize = flags & DEVIRTUALIZE_BIT != 0;
        Some(resources)
    }

    /// Appends the encoded block to `out`.
    #[cfg(any(feature = "alloc", test))]
    pub fn encode(&self, out: &mut alloc::vec::Vec<u8>) {
        for word in [self.at.unwrap_or(0), self.memory_min, self.memory_max] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        let mut cores = [NO_VCPU; MAX_VCPUS];
        cores[..self.vcpu_cores().len()].copy_from_slice(self.vcpu_cores());
        out.extend_from_slice(&cores);
        out.extend_from_slice(&[
            self.windows_len,
            self.mmio_len,
            self.ports_len,
            self.irqs_len,
        ]);
        out.extend_from_slice(&self.receive_window.to_le_bytes());
        for window in &self.windows {
            for word in [window.cpu, window.offset_us, window.length_us] {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        for block in &self.mmio {
            out.extend_from_slice(&block.base.to_le_bytes());
            out.extend_from_slice(&block.size.to_le_bytes());
        }
        for range in &self.ports {
            out.extend_from_slice(&range.first.to_le_bytes());
            out.extend_from_slice(&range.count.to_le_bytes());
        }
        for irq in &self.irqs {
            out.extend_from_slice(&irq.to_le_bytes());
        }
        out.extend_from_slice(&self.shares.to_le_bytes());
        out.extend_from_slice(&self.virtio.to_le_bytes());
        let net = self.net.map_or(0, |port| {
            port.address.to_word() | if port.uplink { UPLINK_BIT } else { 0 }
        });
        out.extend_from_slice(&net.to_le_bytes());
        let flags = if self.devirtualize {
            DEVIRTUALIZE_BIT
        } else {
            0
        };
        out.extend_from_slice(&flags.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Resources {
        let mut r = Resources::new(1 << 20, 4 << 20);
        r.add_vcpu(0).unwrap();
        r.add_vcpu(1).unwrap();
        r.at = Some(0x4200_0000);
        r.receive_window = 64 << 10;
        r.add_virtio(Device::Console);
        r.set_net(NetPort {
            address: Address::parse("10.0.0.2/24").unwrap(),
            uplink: true,
        });
        r.add_window(Window {
            cpu: 1,
            offset_us: 100,
            length_us: 50,
        })
        .unwrap();
        r.add_mmio(Mmio {
            base: 0x0901_0000,
            size: 0x1000,
        })
        .unwrap();
        r.add_ports(Ports {
            first: 0x70,
            count: 2,
        })
        .unwrap();
        r.add_irq(34).unwrap();
        r
    }

    /// Verifies: SK-INIT-003
    #[test]
    fn round_trip_and_limits() {
        let mut bytes = Vec::new();
        sample().encode(&mut bytes);
        assert_eq!(bytes.len(), RESOURCES_SIZE);
        assert_eq!(Resources::decode(&bytes), Some(sample()));
        let mut full = Resources::default();
        for irq in 0..MAX_IRQS as u32 {
            full.add_irq(irq).unwrap();
        }
        assert_eq!(full.add_irq(99), Err(TooMany));
        let widest = Resources {
            receive_window: MAX_RECEIVE_WINDOW,
            devirtualize: true,
            ..sample()
        };
        let mut bytes = Vec::new();
        widest.encode(&mut bytes);
        assert_eq!(Resources::decode(&bytes), Some(widest));
    }

    /// Verifies: SK-INIT-003
    #[test]
    fn bad_blocks_are_refused() {
        let mut good = Vec::new();
        sample().encode(&mut good);
        let receive_window = 32;
        let window_length = LISTS_OFFSET + 8;
        let first_mmio_size = LISTS_OFFSET + MAX_WINDOWS * 12 + 8;
        let device_set = SHARES_OFFSET + 4;
        let net_prefix = NET_OFFSET;
        for (at, value) in [
            (0, 0x01),
            (24, NO_VCPU),        // no vCPU 0
            (25, MAX_CPUS as u8), // a core past MAX_CPUS
            (27, 1),              // a vCPU after the last
            (28, 9),
            (receive_window, 0x01),     // not a page multiple
            (receive_window + 3, 0x01), // 16 MiB + 64 KiB
            (window_length, 0),
            (first_mmio_size, 0x10),
            (device_set, 0x80),       // a device the kernel does not emulate
            (device_set, 0x02),       // a port without the net device
            (net_prefix, 31),         // no room for a second host
            (net_prefix + 1, 0),      // the subnet's own address
            (FLAGS_OFFSET, 0x02),     // a flag that does not exist
            (FLAGS_OFFSET + 7, 0x80), // the same, in the top byte
        ] {
            let mut bad = good.clone();
            bad[at] = value;
            if at == window_length {
                bad[at + 1..at + 4].fill(0);
            }
            assert_eq!(Resources::decode(&bad), None, "byte {at} = {value}");
        }
    }

    proptest! {
        /// Any block that decodes re-encodes to the same bytes, and its grants obey
        /// the module's rules.
        /// Verifies: SK-INIT-003
        #[test]
        fn decoded_blocks_are_canonical_and_valid(flips in proptest::collection::vec((0..RESOURCES_SIZE, any::<u8>()), 0..6)) {
            let mut bytes = Vec::new();
            sample().encode(&mut bytes);
            for (at, value) in flips {
                bytes[at] = value;
            }
            if let Some(decoded) = Resources::decode(&bytes) {
                let mut again = Vec::new();
                decoded.encode(&mut again);
                prop_assert_eq!(&again, &bytes);
                prop_assert!(decoded.mmio().iter().all(|m| m.size > 0 && m.base % PAGE == 0));
                prop_assert!(decoded.windows().iter().all(|w| w.length_us > 0));
                prop_assert!(decoded.receive_window % PAGE == 0);
                prop_assert!(decoded.receive_window <= MAX_RECEIVE_WINDOW);
                prop_assert!(!decoded.vcpu_cores().is_empty());
                prop_assert!(decoded.vcpu_cores().iter().all(|&c| usize::from(c) < MAX_CPUS));
            }
        }
    }
}
