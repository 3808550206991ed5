//! The virtio-mmio transport of one device (version 2 only; VIRTIO 1.2 section
//! 4.2.2): its registers, its status and feature negotiation, and the set-up of
//! its queues. It owns the device's state as the driver drives it; what the
//! device does with its queues and configuration is its model's
//! ([`super::balloon`], [`super::console`]).
//!
//! Invariants:
//! - a register write the device state does not allow (queue set-up once the
//!   queue is ready or the driver is live, features after `FEATURES_OK`, a
//!   status bit of the driver's dropped, `DRIVER_OK` without `FEATURES_OK`, a
//!   queue size that is not a power of two up to the maximum, a misaligned
//!   ring, a notify of a queue that does not exist) is a
//!   [`Violation::BadRegister`] and changes nothing;
//! - `FEATURES_OK` holds only for features the device offers, `VERSION_1`
//!   among them (else the driver reads it back clear, as the specification
//!   asks);
//! - once the device needs a reset, it takes no work and ignores every write
//!   but a reset (status 0), which brings it back to its state at power-on.

use septum_abi::virtio::{Device, QUEUE_SIZE_MAX, Violation, feature, interrupt, register, status};

use super::queue::Queue;

/// Most queues a device here has.
pub const QUEUES_MAX: usize = 3;

/// Bits of the status the driver sets.
const DRIVER_BITS: u32 =
    status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK | status::FAILED;

/// What a register read gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A transport register's value.
    Value(u32),
    /// Bytes of the device's configuration at this offset (the model answers).
    Config(u64),
}

/// What a register write asks of the device beyond the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing more.
    Done,
    /// A queue was notified, or the driver went live with queues notified:
    /// the device has work.
    Work,
    /// The driver reset the device: the model resets too.
    Reset,
    /// A write of the device's configuration at this offset.
    Config(u64),
}

/// One device's transport state.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    device: Device,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; QUEUES_MAX],
    interrupt_status: u32,
    config_generation: u32,
    /// Queues notified and not looked at since (one bit each).
    notified: u8,
}

impl Transport {
    /// The transport of `device` at power-on.
    pub fn new(device: Device) -> Transport {
        Transport {
            device,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [Queue::default(); QUEUES_MAX],
            interrupt_status: 0,
            config_generation: 0,
            notified: 0,
        }
    }

    /// Back to the state at power-on.
    pub fn reset(&mut self) {
        *self = Transport::new(self.device);
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the driver is live (`DRIVER_OK`) and the device does not need a
    /// reset: only then does it take work.
    pub fn live(&self) -> bool {
        self.status & (status::DRIVER_OK | status::DEVICE_NEEDS_RESET) == status::DRIVER_OK
    }

    /// Whether the driver accepted `bits` of the features.
    pub fn negotiated(&self, bits: u64) -> bool {
        self.status & status::FEATURES_OK != 0 && self.driver_features & bits == bits
    }

    /// Queue `index`, if the driver made it ready.
    pub fn queue(&mut self, index: usize) -> Option<&mut Queue> {
        self.queues[..self.device.queues()]
            .get_mut(index)
            .filter(|queue| queue.ready)
    }

    /// The lowest queue notified and not looked at since, forgotten (live
    /// only).
    pub fn next_notified(&mut self) -> Option<usize> {
        if !self.live() || self.notified == 0 {
            return None;
        }
        let index = self.notified.trailing_zeros() as usize;
        self.notified &= !(1 << index);
        Some(index)
    }

    /// Whether queues were notified that the device has not looked at.
    pub fn has_notified(&self) -> bool {
        self.live() && self.notified != 0
    }

    /// Marks queue `index` notified again (the device left work in it).
    pub fn renotify(&mut self, index: usize) {
        self.notified |= 1 << index;
    }

    /// Sets interrupt reasons `reasons`; true if the line was low (the
    /// interrupt is to be raised).
    pub fn interrupt(&mut self, reasons: u32) -> bool {
        let rose = self.interrupt_status == 0;
        self.interrupt_status |= reasons;
        rose
    }

    /// The configuration changed: a new generation, and the driver is told.
    /// True if the interrupt is to be raised.
    pub fn config_changed(&mut self) -> bool {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.status & status::DRIVER_OK != 0 && self.interrupt(interrupt::CONFIG_CHANGE)
    }

    /// The driver broke the rules: the device needs a reset and tells it.
    /// True if the interrupt is to be raised.
    pub fn needs_reset(&mut self) -> bool {
        self.status |= status::DEVICE_NEEDS_RESET;
        self.notified = 0;
        self.config_changed()
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        let index = usize::try_from(self.queue_sel).ok()?;
        self.queues[..self.device.queues()].get_mut(index)
    }

    /// A load of `width` bytes at `offset` into the window.
    pub fn read(&mut self, offset: u64, width: u8) -> Result<Read, Violation> {
        if offset >= register::CONFIG {
            return Ok(Read::Config(offset - register::CONFIG));
        }
        if width != 4 || !offset.is_multiple_of(4) {
            return Err(Violation::BadRegister);
        }
        let features = self.device.features();
        let value = match offset {
            register::MAGIC_VALUE => register::MAGIC,
            register::VERSION => register::TRANSPORT_VERSION,
            register::DEVICE_ID => self.device.id(),
            register::VENDOR_ID => register::VENDOR,
            register::DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            register::QUEUE_NUM_MAX => match self.selected() {
                Some(_) => u32::from(QUEUE_SIZE_MAX),
                None => 0,
            },
            register::QUEUE_NUM => self.selected().map_or(0, |q| u32::from(q.size)),
            register::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready)),
            register::QUEUE_DESC_LOW => self.selected().map_or(0, |q| q.desc as u32),
            register::QUEUE_DESC_HIGH => self.selected().map_or(0, |q| (q.desc >> 32) as u32),
            register::QUEUE_DRIVER_LOW => self.selected().map_or(0, |q| q.driver as u32),
            register::QUEUE_DRIVER_HIGH => self.selected().map_or(0, |q| (q.driver >> 32) as u32),
            register::QUEUE_DEVICE_LOW => self.selected().map_or(0, |q| q.device as u32),
            register::QUEUE_DEVICE_HIGH => self.selected().map_or(0, |q| (q.device >> 32) as u32),
            register::INTERRUPT_STATUS => self.interrupt_status,
            register::STATUS => self.status,
            // No shared memory regions: their length reads as all ones.
            register::SHM_LEN_LOW | register::SHM_LEN_HIGH => u32::MAX,
            register::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        Ok(Read::Value(value))
    }

    /// A store of `value`, `width` bytes wide, at `offset` into the window.
    pub fn write(&mut self, offset: u64, width: u8, value: u64) -> Result<Written, Violation> {
        if self.status & status::DEVICE_NEEDS_RESET != 0 && offset != register::STATUS {
            return Ok(Written::Done);
        }
        if offset >= register::CONFIG {
            return Ok(Written::Config(offset - register::CONFIG));
        }
        if width != 4 || !offset.is_multiple_of(4) {
            return Err(Violation::BadRegister);
        }
        let value = value as u32;
        let setting_up = self.status & status::DRIVER_OK == 0;
        match offset {
            register::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            register::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            register::DRIVER_FEATURES => self.write_features(value)?,
            register::QUEUE_SEL => self.queue_sel = value,
            register::QUEUE_NUM
            | register::QUEUE_DESC_LOW
            | register::QUEUE_DESC_HIGH
            | register::QUEUE_DRIVER_LOW
            | register::QUEUE_DRIVER_HIGH
            | register::QUEUE_DEVICE_LOW
            | register::QUEUE_DEVICE_HIGH => {
                let queue = self
                    .selected()
                    .filter(|queue| setting_up && !queue.ready)
                    .ok_or(Violation::BadRegister)?;
                set_queue_field(queue, offset, value)?;
            }
            register::QUEUE_READY => {
                let queue = self.selected().ok_or(Violation::BadRegister)?;
                match value {
                    0 => queue.ready = false,
                    1 if setting_up && queue.layout_ok() => queue.enable(),
                    _ => return Err(Violation::BadRegister),
                }
            }
            register::QUEUE_NOTIFY => {
                let index = usize::try_from(value).map_err(|_| Violation::BadRegister)?;
                if index >= self.device.queues() {
                    return Err(Violation::BadRegister);
                }
                self.notified |= 1 << index;
                return Ok(if self.live() {
                    Written::Work
                } else {
                    Written::Done
                });
            }
            register::INTERRUPT_ACK => self.interrupt_status &= !value,
            register::STATUS => return self.write_status(value),
            _ => return Err(Violation::BadRegister),
        }
        Ok(Written::Done)
    }

    /// A write of the driver's features in the selected word.
    fn write_features(&mut self, value: u32) -> Result<(), Violation> {
        let negotiating = self.status & (status::DRIVER | status::FEATURES_OK) == status::DRIVER;
        if !negotiating {
            return Err(Violation::BadRegister);
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32);
            }
            _ if value == 0 => {}
            _ => return Err(Violation::BadRegister),
        }
        Ok(())
    }

    /// A write of the status register (see the module invariants).
    fn write_status(&mut self, value: u32) -> Result<Written, Violation> {
        if value == 0 {
            self.reset();
            return Ok(Written::Reset);
        }
        let old = self.status & DRIVER_BITS;
        let mut new = value & DRIVER_BITS;
        if value & !DRIVER_BITS & !status::DEVICE_NEEDS_RESET != 0 || old & !new != 0 {
            return Err(Violation::BadRegister);
        }
        if new & !old & status::FEATURES_OK != 0 {
            let offered = self.device.features();
            let acceptable = self.driver_features & !offered == 0
                && self.driver_features & feature::VERSION_1 != 0;
            if !acceptable {
                new &= !status::FEATURES_OK;
            }
        }
        let added = new & !old;
        if added & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            return Err(Violation::BadRegister);
        }
        self.status = (self.status & status::DEVICE_NEEDS_RESET) | new;
        Ok(
            if added & status::DRIVER_OK != 0 && self.notified != 0 && self.live() {
                Written::Work
            } else {
                Written::Done
            },
        )
    }
}

/// Sets the queue register at `offset` (the queue is being set up).
fn set_queue_field(queue: &mut Queue, offset: u64, value: u32) -> Result<(), Violation> {
    let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
    let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
    match offset {
        register::QUEUE_NUM => {
            let size = u16::try_from(value).map_err(|_| Violation::BadRegister)?;
            if !size.is_power_of_two() || size > QUEUE_SIZE_MAX {
                return Err(Violation::BadRegister);
            }
            queue.size = size;
        }
        register::QUEUE_DESC_LOW => queue.desc = low(queue.desc),
        register::QUEUE_DESC_HIGH => queue.desc = high(queue.desc),
        register::QUEUE_DRIVER_LOW => queue.driver = low(queue.driver),
        register::QUEUE_DRIVER_HIGH => queue.driver = high(queue.driver),
        register::QUEUE_DEVICE_LOW => queue.device = low(queue.device),
        _ => queue.device = high(queue.device),
    }
    Ok(())
}

/// A byte-wise load of `width` bytes at `offset` from a device's configuration
/// `config` (bytes past its end read as zero), as the driver sees it.
pub fn read_config(config: &[u8], offset: u64, width: u8) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().take(usize::from(width)).enumerate() {
        let at = offset.saturating_add(i as u64);
        *byte = usize::try_from(at)
            .ok()
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}
