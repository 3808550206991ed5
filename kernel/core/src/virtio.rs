//! The virtio devices the kernel emulates for a partition (see
//! [`septum_abi::virtio`]): for each device the description gives it, a
//! virtio-mmio [`Transport`] and the device's model. The registers are reached
//! through the fast lane; the queues are walked as kernel work the partition
//! owes, in its own turns (`system/virtio.rs`).
//!
//! Invariants:
//! - a partition has only the devices its description names, each at its
//!   fixed window; nothing here names another partition;
//! - a device has work ([`Devices::has_work`]) only while its driver is live;
//!   the work is bounded per unit (one chain) and done by the partition's own
//!   turns.

pub mod balloon;
pub mod console;
pub mod net;
pub mod queue;
pub mod transport;

use alloc::boxed::Box;

use septum_abi::virtio::Device;

use crate::resources::Resources;
use balloon::BalloonModel;
use console::ConsoleModel;
pub use transport::Transport;

/// A device's own part.
#[derive(Debug)]
pub enum Model {
    /// virtio-balloon.
    Balloon(BalloonModel),
    /// virtio-console (boxed: its input queue and line are most of a device).
    Console(Box<ConsoleModel>),
    /// virtio-net: no state of its own (the router holds the port's).
    Net,
}

/// One emulated device: transport and model.
#[derive(Debug)]
pub struct VirtioDevice {
    /// Its registers, status and queues.
    pub transport: Transport,
    /// What the device does.
    pub model: Model,
}

impl VirtioDevice {
    fn new(device: Device) -> VirtioDevice {
        VirtioDevice {
            transport: Transport::new(device),
            model: match device {
                Device::Balloon => Model::Balloon(BalloonModel::default()),
                Device::Console => Model::Console(Box::default()),
                Device::Net => Model::Net,
            },
        }
    }

    /// Back to power-on (the driver wrote status 0, or the partition restarted).
    pub fn reset(&mut self) {
        self.transport.reset();
        match &mut self.model {
            Model::Balloon(model) => *model = BalloonModel::default(),
            Model::Console(model) => model.reset(),
            Model::Net => {}
        }
    }

    /// Whether it has work to do now.
    pub fn has_work(&self) -> bool {
        if !self.transport.live() {
            return false;
        }
        self.transport.has_notified()
            || match &self.model {
                Model::Balloon(model) => model.has_work(),
                Model::Console(model) => model.deliver && model.has_input(),
                Model::Net => false,
            }
    }
}

/// A partition's emulated devices, by slot.
#[derive(Debug)]
pub struct Devices {
    slots: [Option<VirtioDevice>; Device::ALL.len()],
}

impl Devices {
    /// The devices `resources` name, at power-on; `None` if it names none.
    pub fn new(resources: &Resources) -> Option<Devices> {
        let mut slots = [const { None }; Device::ALL.len()];
        let mut any = false;
        for device in resources.virtio() {
            slots[device.slot() as usize] = Some(VirtioDevice::new(device));
            any = true;
        }
        any.then_some(Devices { slots })
    }

    /// Device `device`, if the partition has it.
    pub fn get_mut(&mut self, device: Device) -> Option<&mut VirtioDevice> {
        self.slots.get_mut(device.slot() as usize)?.as_mut()
    }

    /// Device `device`, if the partition has it.
    pub fn get(&self, device: Device) -> Option<&VirtioDevice> {
        self.slots.get(device.slot() as usize)?.as_ref()
    }

    /// Whether any device has work to do now.
    pub fn has_work(&self) -> bool {
        self.slots.iter().flatten().any(VirtioDevice::has_work)
    }

    /// The first device with work to do now.
    pub fn with_work(&self) -> Option<Device> {
        self.slots
            .iter()
            .flatten()
            .find(|device| device.has_work())
            .map(|device| device.transport.device())
    }

    /// Every device back to power-on (the partition restarted or ended).
    pub fn reset(&mut self) {
        self.slots
            .iter_mut()
            .flatten()
            .for_each(VirtioDevice::reset);
    }
}

#[cfg(test)]
mod tests;
