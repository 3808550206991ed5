//! The virtio devices the kernel emulates for a partition (virtio-mmio version 2,
//! split virtqueues; VIRTIO 1.2, sections 2, 4.2 and 5): where their register
//! windows and interrupts are in every partition's guest-physical space, the
//! transport's register offsets and status bits, the feature bits the devices
//! offer, their configuration layouts, and the vocabulary of the violations a
//! driver can commit (audited, with [`Violation::number`]).
//!
//! Each device has a fixed slot ([`Device::slot`]): its window starts at
//! `WINDOW_BASE + slot * WINDOW_STRIDE` and its interrupt is shared peripheral
//! interrupt `SPI_BASE + slot`. The addresses are the ones QEMU `virt` gives its
//! virtio-mmio transports, below every partition's RAM on both boards.

/// Guest-physical address of the first device window.
pub const WINDOW_BASE: u64 = 0x0a00_0000;
/// Bytes between two device windows, and the size of one.
pub const WINDOW_STRIDE: u64 = 0x200;
/// Device slots (windows) a partition's space reserves.
pub const SLOTS: u64 = 8;
/// Bytes of the whole device area.
pub const WINDOW_AREA: u64 = WINDOW_STRIDE * SLOTS;
/// The first device's shared peripheral interrupt (SPI 16: INTID 48); slot `n`
/// uses SPI `SPI_BASE + n`.
pub const SPI_BASE: u32 = 16;
/// The most buffers a device's queues hold (QueueNumMax).
pub const QUEUE_SIZE_MAX: u16 = 256;

/// A device the kernel emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// virtio-balloon (device ID 5): a front end of the kernel's balloon ledger.
    Balloon,
    /// virtio-console (device ID 3): one port, the partition's second console.
    Console,
    /// virtio-net (device ID 1): the partition's port on the kernel's IP router
    /// ([`crate::net`]).
    Net,
}

impl Device {
    /// Every device, in slot order.
    pub const ALL: [Device; 3] = [Device::Balloon, Device::Console, Device::Net];

    /// Its virtio device ID.
    pub const fn id(self) -> u32 {
        match self {
            Device::Balloon => 5,
            Device::Console => 3,
            Device::Net => 1,
        }
    }

    /// Its slot: which window and interrupt it has.
    pub const fn slot(self) -> u64 {
        match self {
            Device::Balloon => 0,
            Device::Console => 1,
            Device::Net => 2,
        }
    }

    /// Its bit in a partition's device set (the package's resources block).
    pub const fn bit(self) -> u32 {
        1 << self.slot()
    }

    /// Guest-physical base of its register window.
    pub const fn window(self) -> u64 {
        WINDOW_BASE + self.slot() * WINDOW_STRIDE
    }

    /// Its shared peripheral interrupt number (add 32 for the INTID).
    pub const fn spi(self) -> u32 {
        SPI_BASE + self.slot() as u32
    }

    /// Its queues.
    pub const fn queues(self) -> usize {
        match self {
            Device::Balloon => 3,
            Device::Console | Device::Net => 2,
        }
    }

    /// The feature bits it offers.
    pub const fn features(self) -> u64 {
        match self {
            Device::Balloon => {
                feature::VERSION_1 | feature::BALLOON_MUST_TELL_HOST | feature::BALLOON_STATS_VQ
            }
            Device::Console => feature::VERSION_1,
            Device::Net => {
                feature::VERSION_1 | feature::NET_MTU | feature::NET_MAC | feature::NET_STATUS
            }
        }
    }

    /// Its name in descriptions, logs and audit lines.
    pub const fn name(self) -> &'static str {
        match self {
            Device::Balloon => "balloon",
            Device::Console => "console",
            Device::Net => "net",
        }
    }

    /// The device with this name.
    pub fn from_name(name: &str) -> Option<Device> {
        Device::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The device whose window holds guest-physical `address`, with the offset
    /// into the window.
    pub fn at(address: u64) -> Option<(Device, u64)> {
        let offset = address.checked_sub(WINDOW_BASE)?;
        let slot = offset / WINDOW_STRIDE;
        let device = Device::ALL.into_iter().find(|d| d.slot() == slot)?;
        Some((device, offset % WINDOW_STRIDE))
    }
}

/// The transport's register offsets (virtio-mmio, VIRTIO 1.2 section 4.2.2).
pub mod register {
    /// "virt" in little-endian.
    pub const MAGIC_VALUE: u64 = 0x000;
    /// Transport version: 2.
    pub const VERSION: u64 = 0x004;
    /// Device ID.
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor ID.
    pub const VENDOR_ID: u64 = 0x00c;
    /// The 32 feature bits the selected word offers.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Selects the device feature word (0 or 1).
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// The 32 feature bits the driver accepts in the selected word.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Selects the driver feature word (0 or 1).
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Selects the queue the queue registers below address.
    pub const QUEUE_SEL: u64 = 0x030;
    /// Most buffers the selected queue may hold.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Buffers the driver gives the selected queue (a power of two).
    pub const QUEUE_NUM: u64 = 0x038;
    /// The selected queue is ready (1) or not (0).
    pub const QUEUE_READY: u64 = 0x044;
    /// Written with a queue index: the queue has new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Why the interrupt is asserted ([`super::interrupt`]).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Acknowledges the interrupt reasons written.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Device status ([`super::status`]); writing 0 resets the device.
    pub const STATUS: u64 = 0x070;
    /// Descriptor table address, low and high words.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// See [`QUEUE_DESC_LOW`].
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Available ring address, low and high words.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// See [`QUEUE_DRIVER_LOW`].
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// Used ring address, low and high words.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// See [`QUEUE_DEVICE_LOW`].
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// Shared memory region selector (none exist: reads of the length give all ones).
    pub const SHM_SEL: u64 = 0x0ac;
    /// Selected shared memory region's length, low and high words.
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// See [`SHM_LEN_LOW`].
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// Configuration generation: changes when the configuration does.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// The device-specific configuration starts here.
    pub const CONFIG: u64 = 0x100;
    /// The transport's magic value.
    pub const MAGIC: u32 = 0x7472_6976;
    /// The transport version the kernel implements (no legacy interface).
    pub const TRANSPORT_VERSION: u32 = 2;
    /// The vendor ID the kernel reports ("SEPT").
    pub const VENDOR: u32 = 0x5445_5053;
}

/// Device status bits (VIRTIO 1.2 section 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and the device live.
    pub const DRIVER_OK: u32 = 4;
    /// The driver accepted the features it wrote.
    pub const FEATURES_OK: u32 = 8;
    /// The device met an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// Interrupt status bits.
pub mod interrupt {
    /// A queue has new used buffers.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Feature bits.
pub mod feature {
    /// The device follows VIRTIO 1.x (required: no legacy interface).
    pub const VERSION_1: u64 = 1 << 32;
    /// virtio-balloon: the driver tells the device before it uses a deflated page.
    pub const BALLOON_MUST_TELL_HOST: u64 = 1 << 0;
    /// virtio-balloon: the statistics queue.
    pub const BALLOON_STATS_VQ: u64 = 1 << 1;
    /// virtio-net: the configuration gives the MTU.
    pub const NET_MTU: u64 = 1 << 3;
    /// virtio-net: the configuration gives the MAC address.
    pub const NET_MAC: u64 = 1 << 5;
    /// virtio-net: the configuration gives the link status.
    pub const NET_STATUS: u64 = 1 << 16;
}

/// Descriptor flags of a split virtqueue.
pub mod descriptor {
    /// Bytes of a descriptor: address 8, length 4, flags 2, next 2.
    pub const SIZE: u64 = 16;
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (else it reads it).
    pub const WRITE: u16 = 2;
    /// The buffer holds a table of descriptors (not offered).
    pub const INDIRECT: u16 = 4;
}

/// virtio-balloon's queues, configuration and statistics.
pub mod balloon {
    /// Queue of page frame numbers the driver gives up.
    pub const INFLATE_QUEUE: usize = 0;
    /// Queue of page frame numbers the driver takes back.
    pub const DEFLATE_QUEUE: usize = 1;
    /// Queue of statistics buffers.
    pub const STATS_QUEUE: usize = 2;
    /// Configuration: pages the device asks the driver to have given up (u32).
    pub const CONFIG_NUM_PAGES: u64 = 0;
    /// Configuration: pages the driver says it has given up (u32, written by it).
    pub const CONFIG_ACTUAL: u64 = 4;
    /// Bytes of the configuration the kernel implements.
    pub const CONFIG_SIZE: u64 = 8;
    /// A page frame number counts 4 KiB pages, whatever the guest's page size.
    pub const PFN_SHIFT: u32 = 12;
    /// Most page frame numbers in one inflate or deflate chain (Linux sends up to
    /// 256, its `VIRTIO_BALLOON_ARRAY_PFNS_MAX`).
    pub const PFNS_MAX: usize = 256;
    /// Bytes of one statistic: tag (u16), value (u64), packed.
    pub const STAT_SIZE: usize = 10;
    /// Most statistics in one buffer the kernel reads.
    pub const STATS_MAX: usize = 16;
    /// Statistic tag: bytes free.
    pub const STAT_MEMFREE: u16 = 4;
    /// Statistic tag: bytes of memory in all.
    pub const STAT_MEMTOTAL: u16 = 5;
    /// Statistic tag: bytes available (free plus reclaimable).
    pub const STAT_AVAILABLE: u16 = 6;
}

/// virtio-console's queues.
pub mod console {
    /// Port 0's receive queue: the device writes typed bytes.
    pub const RECEIVE_QUEUE: usize = 0;
    /// Port 0's transmit queue: the driver's output.
    pub const TRANSMIT_QUEUE: usize = 1;
    /// Most bytes of one transmit chain the kernel takes (longer is a violation).
    pub const TRANSMIT_MAX: u32 = 4096;
}

/// virtio-net's queues, configuration and per-buffer header (VIRTIO 1.2
/// section 5.1). No offloads, one queue pair, no control queue: every buffer
/// starts with a [`HEADER_SIZE`]-byte header, then one Ethernet frame.
pub mod net {
    /// The receive queue: buffers the device writes frames into.
    pub const RECEIVE_QUEUE: usize = 0;
    /// The transmit queue: frames the driver sends.
    pub const TRANSMIT_QUEUE: usize = 1;
    /// Configuration: the port's MAC address (6 bytes).
    pub const CONFIG_MAC: u64 = 0;
    /// Configuration: link status (u16, [`STATUS_LINK_UP`]).
    pub const CONFIG_STATUS: u64 = 6;
    /// Configuration: queue pairs (u16; always 1).
    pub const CONFIG_MAX_QUEUE_PAIRS: u64 = 8;
    /// Configuration: the MTU (u16).
    pub const CONFIG_MTU: u64 = 10;
    /// Bytes of the configuration the kernel implements.
    pub const CONFIG_SIZE: u64 = 12;
    /// Link status bit: the link is up (it always is).
    pub const STATUS_LINK_UP: u16 = 1;
    /// Bytes of the header before each frame (`virtio_net_hdr` with
    /// `num_buffers`, as `VERSION_1` has it). The kernel ignores the one the
    /// driver sends (no offloads are offered) and writes an all-zero header
    /// with `num_buffers` 1 before each frame it delivers.
    pub const HEADER_SIZE: usize = 12;
    /// Offset of `num_buffers` (u16) in the header.
    pub const HEADER_NUM_BUFFERS: usize = 10;
}

/// What a driver did wrong. Any of them puts the device in
/// [`status::DEVICE_NEEDS_RESET`], is audited, and changes nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Violation {
    /// A register written in a device state that does not allow it (queue
    /// set-up after `DRIVER_OK`, a status bit dropped, features after
    /// `FEATURES_OK`), or a value out of range (queue size not a power of two
    /// or above the maximum, queue index out of range).
    BadRegister = 1,
    /// A ring or buffer that is not in the partition's memory now (outside its
    /// RAM, in a balloon hole, sent away), or a page list naming a page of the
    /// queue's own used ring. (A misaligned ring is a [`Violation::BadRegister`]
    /// when the driver marks the queue ready.)
    BadAddress = 2,
    /// The available index moved by more than the queue size.
    AvailJump = 3,
    /// A descriptor chain longer than the queue: a loop.
    Loop = 4,
    /// A descriptor index past the queue, or an indirect descriptor.
    BadDescriptor = 5,
    /// A chain with the wrong buffers for its queue (a device-written buffer
    /// where the device reads, or the reverse), or longer than the device takes.
    BadChain = 6,
    /// The balloon ledger refused a page list (see the audit record's code).
    Refused = 7,
}

impl Violation {
    /// Every violation, in number order.
    pub const ALL: [Violation; 7] = [
        Violation::BadRegister,
        Violation::BadAddress,
        Violation::AvailJump,
        Violation::Loop,
        Violation::BadDescriptor,
        Violation::BadChain,
        Violation::Refused,
    ];

    /// Its number in audit records.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The violation with this number.
    pub fn from_number(number: u8) -> Option<Violation> {
        Violation::ALL.into_iter().find(|v| v.number() == number)
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Violation::BadRegister => "bad-register",
            Violation::BadAddress => "bad-address",
            Violation::AvailJump => "avail-jump",
            Violation::Loop => "loop",
            Violation::BadDescriptor => "bad-descriptor",
            Violation::BadChain => "bad-chain",
            Violation::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-003
    #[test]
    fn windows_and_interrupts_are_distinct_and_inside_the_area() {
        for device in Device::ALL {
            assert!(device.slot() < SLOTS);
            assert_eq!(Device::at(device.window() + 0x70), Some((device, 0x70)));
            assert_eq!(Device::from_name(device.name()), Some(device));
            assert!(device.spi() < crate::virt::SPIS);
        }
        assert_eq!(Device::at(WINDOW_BASE - 1), None);
        assert_eq!(Device::at(WINDOW_BASE + 7 * WINDOW_STRIDE), None);
    }

    /// Verifies: SK-MED-003
    #[test]
    fn violation_numbers_round_trip() {
        for violation in Violation::ALL {
            assert_eq!(Violation::from_number(violation.number()), Some(violation));
        }
        assert_eq!(Violation::from_number(0), None);
    }
}
