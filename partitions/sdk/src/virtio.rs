//! A small virtio driver for native partitions: the virtio-mmio (version 2)
//! transport of the devices the kernel emulates ([`septum_abi::virtio`]), split
//! virtqueues in the partition's own RAM ([`Queue`]), and a virtio-balloon driver
//! ([`balloon`]).
//!
//! A native partition addresses its RAM by identity (aarch64: stage-1 MMU off;
//! x86_64: the kernel's boot page tables map guest-physical memory 1:1), so the
//! address of a static is the guest-physical address a device reads. Memory a
//! device reads or writes lives in [`DeviceMemory`] statics, taken once, so that it
//! never moves while the device holds it. Native partitions get no virtio
//! interrupt: the driver polls the used rings and the status and configuration
//! registers.
//!
//! Bring-up ([`Transport::negotiate`], [`Transport::set_queue`],
//! [`Transport::driver_ok`]) follows VIRTIO 1.2 section 3.1.1: reset,
//! `ACKNOWLEDGE`, `DRIVER`, the features (`VERSION_1` is required: the kernel
//! has no legacy interface), `FEATURES_OK` read back, the queues, `DRIVER_OK`.
//! Every register is also reachable raw ([`Transport::read`],
//! [`Transport::write`]) for programs that test the devices with bad input.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

pub use septum_abi::virtio::{Device, QUEUE_SIZE_MAX, feature, register, status};

pub mod balloon;
mod queue;

pub use queue::{Descriptor, Queue, Rings};

/// Why a driver gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No device of the expected kind at the window (magic value, transport
    /// version or device ID differ).
    Absent,
    /// The device does not offer a feature the driver needs.
    MissingFeature,
    /// The device did not keep `FEATURES_OK`: it refused the features written.
    FeaturesRefused,
    /// The queue is live already or holds fewer buffers than asked for.
    QueueUnavailable,
    /// The device set `DEVICE_NEEDS_RESET`: it found a driver error.
    NeedsReset,
    /// Not enough free descriptors for the chain.
    QueueFull,
}

impl Error {
    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Error::Absent => "absent",
            Error::MissingFeature => "missing-feature",
            Error::FeaturesRefused => "features-refused",
            Error::QueueUnavailable => "queue-unavailable",
            Error::NeedsReset => "needs-reset",
            Error::QueueFull => "queue-full",
        }
    }
}

/// Memory a device reads or writes: a static that is handed out once
/// ([`DeviceMemory::take`]), so that it stays where the device was told it is.
pub struct DeviceMemory<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the value is reachable only through the one pointer `take` hands out.
unsafe impl<T> Sync for DeviceMemory<T> {}

impl<T> DeviceMemory<T> {
    /// Memory holding `value`, not taken yet.
    pub const fn new(value: T) -> DeviceMemory<T> {
        DeviceMemory {
            value: UnsafeCell::new(value),
            taken: AtomicBool::new(false),
        }
    }

    /// The memory, the first time only.
    pub fn take(&'static self) -> Option<NonNull<T>> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        NonNull::new(self.value.get())
    }
}

/// The register window of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    base: u64,
}

impl Transport {
    /// The transport of `device`, at its window in every partition's space.
    pub const fn new(device: Device) -> Transport {
        Transport {
            base: device.window(),
        }
    }

    /// Reads the 32-bit register at `offset` ([`register`]).
    pub fn read(&self, offset: u64) -> u32 {
        // SAFETY: every offset of the window is a register the kernel emulates
        // (reserved ones read as zero); the window is 4-byte aligned.
        unsafe { crate::arch::mmio_read32(self.base + (offset & !3)) }
    }

    /// Writes `value` to the 32-bit register at `offset` ([`register`]).
    pub fn write(&self, offset: u64, value: u32) {
        // SAFETY: as for `read`; a write the device does not allow sets
        // `DEVICE_NEEDS_RESET` and changes nothing else.
        unsafe { crate::arch::mmio_write32(self.base + (offset & !3), value) }
    }

    /// The device status ([`status`]).
    pub fn status(&self) -> u32 {
        self.read(register::STATUS)
    }

    /// Whether the device found a driver error and waits for a reset.
    pub fn needs_reset(&self) -> bool {
        self.status() & status::DEVICE_NEEDS_RESET != 0
    }

    /// Resets the device (status 0): its queues are forgotten and its status
    /// cleared. `false` if the status did not read back as 0.
    pub fn reset(&self) -> bool {
        self.write(register::STATUS, 0);
        self.status() == 0
    }

    /// Checks that `device` answers at this window.
    pub fn identify(&self, device: Device) -> Result<(), Error> {
        let present = self.read(register::MAGIC_VALUE) == register::MAGIC
            && self.read(register::VERSION) == register::TRANSPORT_VERSION
            && self.read(register::DEVICE_ID) == device.id();
        present.then_some(()).ok_or(Error::Absent)
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        self.write(register::DEVICE_FEATURES_SEL, 0);
        let low = self.read(register::DEVICE_FEATURES);
        self.write(register::DEVICE_FEATURES_SEL, 1);
        let high = self.read(register::DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    /// Writes the 64 feature bits the driver accepts.
    pub fn write_features(&self, features: u64) {
        self.write(register::DRIVER_FEATURES_SEL, 0);
        self.write(register::DRIVER_FEATURES, features as u32);
        self.write(register::DRIVER_FEATURES_SEL, 1);
        self.write(register::DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// Resets `device` and takes it to `FEATURES_OK` with the features of
    /// `wanted` it offers, plus `VERSION_1`; returns the features accepted.
    pub fn negotiate(&self, device: Device, wanted: u64) -> Result<u64, Error> {
        self.identify(device)?;
        if !self.reset() {
            return Err(Error::NeedsReset);
        }
        self.write(register::STATUS, status::ACKNOWLEDGE);
        self.write(register::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        let offered = self.device_features();
        if offered & feature::VERSION_1 == 0 {
            return Err(Error::MissingFeature);
        }
        let accepted = offered & wanted | feature::VERSION_1;
        self.write_features(accepted);
        let features_ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.write(register::STATUS, features_ok);
        let now = self.status();
        if now & status::DEVICE_NEEDS_RESET != 0 {
            return Err(Error::NeedsReset);
        }
        if now & status::FEATURES_OK == 0 {
            return Err(Error::FeaturesRefused);
        }
        Ok(accepted)
    }

    /// Gives the device queue `index`: its size and ring addresses, then ready.
    pub fn set_queue(&self, index: u16, queue: &Queue) -> Result<(), Error> {
        self.write(register::QUEUE_SEL, u32::from(index));
        if self.read(register::QUEUE_READY) != 0
            || self.read(register::QUEUE_NUM_MAX) < u32::from(queue.size())
        {
            return Err(Error::QueueUnavailable);
        }
        self.write(register::QUEUE_NUM, u32::from(queue.size()));
        let [descriptors, driver, device] = queue.addresses();
        self.set_queue_addresses(descriptors, driver, device);
        self.write(register::QUEUE_READY, 1);
        self.check()
    }

    /// Writes the selected queue's ring addresses (no checks: a device-testing
    /// program may name any).
    pub fn set_queue_addresses(&self, descriptors: u64, driver: u64, device: u64) {
        for (low, address) in [
            (register::QUEUE_DESC_LOW, descriptors),
            (register::QUEUE_DRIVER_LOW, driver),
            (register::QUEUE_DEVICE_LOW, device),
        ] {
            self.write(low, address as u32);
            self.write(low + 4, (address >> 32) as u32);
        }
    }

    /// Sets `DRIVER_OK`: the device is live.
    pub fn driver_ok(&self) -> Result<(), Error> {
        let now = self.status();
        self.write(register::STATUS, now | status::DRIVER_OK);
        self.check()
    }

    /// Tells the device queue `index` has new buffers. The kernel handles them
    /// before this returns (a deflate waiting for memory excepted).
    pub fn notify(&self, index: u16) {
        self.write(register::QUEUE_NOTIFY, u32::from(index));
    }

    /// Reads the 32-bit configuration field at `offset` of the device-specific
    /// configuration.
    pub fn config(&self, offset: u64) -> u32 {
        self.read(register::CONFIG + offset)
    }

    /// Writes the 32-bit configuration field at `offset`.
    pub fn set_config(&self, offset: u64, value: u32) {
        self.write(register::CONFIG + offset, value);
    }

    /// `Err(NeedsReset)` if the device found a driver error.
    pub fn check(&self) -> Result<(), Error> {
        match self.needs_reset() {
            true => Err(Error::NeedsReset),
            false => Ok(()),
        }
    }
}
