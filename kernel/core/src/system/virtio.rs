//! The virtio devices of the running system ([`crate::virtio`]) joined to the
//! rest of the kernel: their registers in the fast lane, their queues walked as
//! work the partition owes (`work.rs`), the balloon's page lists carried out on
//! the balloon ledger, its statistics made the guest's memory report, the
//! console's output onto the console and typed input into its queue, and every
//! driver violation audited.
//!
//! Invariants:
//! - a device is reached only by its own partition's vCPU (registers) and by
//!   the kernel in that partition's turns (queues); guest memory only through
//!   [`System::read_guest`] and [`System::write_guest`], page by page;
//! - one unit of work takes one chain: at most one ledger batch of
//!   [`PFNS_MAX`] pages, [`TRANSMIT_MAX`] bytes of output, or one statistics
//!   buffer, so the scheduler can end a turn between units;
//! - a violation puts the device in `DEVICE_NEEDS_RESET`, is audited and
//!   reported, and leaves the ledger, the rings and every other partition as
//!   they were; a page list the ledger refuses is such a violation, except a
//!   deflate that must wait for free frames or a higher target: it stays at
//!   the head of its queue and is taken again when the pool refills or the
//!   target changes.
//!
//! [`PFNS_MAX`]: septum_abi::virtio::balloon::PFNS_MAX
//! [`TRANSMIT_MAX`]: septum_abi::virtio::console::TRANSMIT_MAX

use septum_abi::Error;
use septum_abi::virtio::balloon::{DEFLATE_QUEUE, INFLATE_QUEUE, PFNS_MAX, STATS_QUEUE};
use septum_abi::virtio::console::{RECEIVE_QUEUE, TRANSMIT_MAX, TRANSMIT_QUEUE};
use septum_abi::virtio::{Device, Violation, interrupt};

use septum_abi::layout::PAGE_SIZE;

use super::virt::Completed;
use super::{GuestLines, Platform, System, emit};
use crate::audit::AuditKind;
use crate::balloon::Direction;
use crate::event::Event;
use crate::memory::Range;
use crate::vgic::Access;
use crate::virtio::balloon::BalloonModel;
use crate::virtio::console::{ConsoleModel, Port};
use crate::virtio::queue::{Chain, GuestMemory};
use crate::virtio::transport::{Read, Written};
use crate::virtio::{Devices, Model, VirtioDevice, net};

/// A partition's memory as its devices reach it.
pub(super) struct PartitionMemory<'a, P> {
    system: &'a System,
    index: usize,
    platform: &'a mut P,
}

impl<P: Platform> GuestMemory for PartitionMemory<'_, P> {
    fn read(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), Violation> {
        self.system
            .read_guest(self.index, address, buffer, self.platform)
            .map_err(|_| Violation::BadAddress)
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), Violation> {
        self.system
            .write_guest(self.index, address, bytes, self.platform)
            .map_err(|_| Violation::BadAddress)
    }

    fn check(&mut self, address: u64, len: u64) -> Result<(), Violation> {
        self.system
            .check_guest(self.index, address, len)
            .map(|_| ())
            .map_err(|_| Violation::BadAddress)
    }
}

/// What one unit of a device's work did.
#[derive(Clone, Copy, Debug, Default)]
struct Unit {
    /// Interrupt reasons to raise.
    interrupt: u32,
    /// The balloon reached its target: pages held.
    at_target: Option<u64>,
}

/// A violation and, for a refused page list, the ledger's error.
#[derive(Clone, Copy, Debug)]
pub(super) struct Broken {
    violation: Violation,
    error: Option<Error>,
}

impl From<Violation> for Broken {
    fn from(violation: Violation) -> Broken {
        Broken {
            violation,
            error: None,
        }
    }
}

impl System {
    /// Partition `index`'s memory as its devices reach it.
    pub(super) fn memory<'a, P: Platform>(
        &'a self,
        index: usize,
        platform: &'a mut P,
    ) -> PartitionMemory<'a, P> {
        PartitionMemory {
            system: self,
            index,
            platform,
        }
    }

    /// A trapped access to a register of `device` of `partition` (whose vCPU
    /// may run now): what the fast lane answers. `None` if it has no such
    /// device.
    pub(super) fn virtio_access(
        &mut self,
        partition: usize,
        device: Device,
        offset: u64,
        width: u8,
        access: Access,
        platform: &mut impl Platform,
    ) -> Option<Completed> {
        let devices = self.partitions[partition].virtio.as_deref_mut()?;
        let virtio = devices.get_mut(device)?;
        let balloon = &self.balloon;
        let num_pages = || {
            balloon
                .memory(partition)
                .map_or(0, |m| (m.max - m.target) as u32)
        };
        let mut completed = Completed {
            value: 0,
            interrupts: false,
            reschedule: false,
        };
        let result = match access {
            Access::Read => virtio.transport.read(offset, width).map(|read| {
                completed.value = match (read, &virtio.model) {
                    (Read::Value(value), _) => u64::from(value),
                    (Read::Config(at), Model::Balloon(model)) => {
                        model.config_read(at, width, num_pages())
                    }
                    (Read::Config(_), Model::Console(_)) => 0,
                    (Read::Config(at), Model::Net) => net::config_read(partition, at, width),
                }
            }),
            Access::Write(value) => match virtio.transport.write(offset, width, value) {
                Ok(Written::Done) => Ok(()),
                Ok(Written::Work) => {
                    completed.reschedule = true;
                    Ok(())
                }
                Ok(Written::Reset) => {
                    virtio.reset();
                    Ok(())
                }
                Ok(Written::Config(at)) => match &mut virtio.model {
                    Model::Balloon(model) => model.config_write(at, width, value),
                    Model::Console(_) | Model::Net => Err(Violation::BadRegister),
                },
                Err(violation) => Err(violation),
            },
        };
        if let Err(violation) = result {
            completed.interrupts =
                self.device_broken(partition, device, violation.into(), platform);
        }
        Some(completed)
    }

    /// Whether partition `index`'s devices have work (it owes it).
    pub(super) fn virtio_owes(&self, index: usize) -> bool {
        self.partitions[index]
            .virtio
            .as_deref()
            .is_some_and(Devices::has_work)
    }

    /// One unit of the work partition `index`'s devices have (in its turn).
    pub(super) fn virtio_work(&mut self, index: usize, platform: &mut impl Platform) {
        let Some(mut devices) = self.partitions[index].virtio.take() else {
            return;
        };
        let Some(device) = devices.with_work() else {
            self.partitions[index].virtio = Some(devices);
            return;
        };
        if device == Device::Net {
            self.partitions[index].virtio = Some(devices);
            return self.net_work(index, platform);
        }
        let virtio = devices.get_mut(device).expect("it has work");
        let unit = match device {
            Device::Balloon => self.balloon_unit(index, virtio, platform),
            Device::Console => self.console_unit(index, virtio, platform),
            Device::Net => unreachable!("done above"),
        };
        let raise = match unit {
            Ok(unit) => unit.interrupt != 0 && virtio.transport.interrupt(unit.interrupt),
            Err(_) => false,
        };
        self.partitions[index].virtio = Some(devices);
        match unit {
            Ok(unit) => {
                if raise {
                    self.raise_device_interrupt(index, device);
                }
                if let Some(pages) = unit.at_target {
                    let name = self.partitions[index].name();
                    emit(platform, Event::BalloonAtTarget { name, pages });
                }
            }
            Err(broken) => {
                self.device_broken(index, device, broken, platform);
            }
        }
    }

    /// One chain of the balloon's queues, or a request for statistics.
    fn balloon_unit(
        &mut self,
        index: usize,
        virtio: &mut VirtioDevice,
        platform: &mut impl Platform,
    ) -> Result<Unit, Broken> {
        let Model::Balloon(model) = &mut virtio.model else {
            unreachable!("the balloon's slot holds a balloon");
        };
        let transport = &mut virtio.transport;
        let Some(number) = transport.next_notified() else {
            // Statistics wanted: the held buffer goes back, asking for more
            // (unless the driver took the queue down: then it is forgotten).
            let head = model.take_stats_request().expect("the balloon's work");
            let Some(queue) = transport.queue(STATS_QUEUE) else {
                return Ok(Unit::default());
            };
            queue.push_used(&mut self.memory(index, platform), head, 0)?;
            return Ok(Unit {
                interrupt: interrupt::USED_BUFFER,
                at_target: None,
            });
        };
        let Some(queue) = transport.queue(number) else {
            return Ok(Unit::default());
        };
        let Some(chain) = queue.peek(&mut self.memory(index, platform))? else {
            return Ok(Unit::default());
        };
        let mut unit = Unit {
            interrupt: interrupt::USED_BUFFER,
            at_target: None,
        };
        if number == STATS_QUEUE {
            let report = model.take_stats(&chain, &mut self.memory(index, platform))?;
            queue.consume();
            // Reports count use beyond the minimum, as a native guest's do.
            let min = self.balloon.memory(index).map_or(0, |m| m.min);
            let used = report.used.saturating_sub(min);
            self.balloon
                .report(index, report.free, used, report.failures);
            self.post_memory(index, platform);
            // The buffer is held: nothing goes back to the driver yet.
            unit.interrupt = 0;
        } else {
            let direction = match number {
                INFLATE_QUEUE => Direction::Inflate,
                DEFLATE_QUEUE => Direction::Deflate,
                _ => unreachable!("a balloon has three queues"),
            };
            match self.page_list(index, direction, &chain, queue.used_ring(), platform) {
                Ok(held) => {
                    queue.consume();
                    queue.push_used(&mut self.memory(index, platform), chain.head, 0)?;
                    let target = self.balloon.memory(index).map(|m| m.target);
                    unit.at_target = (Some(held) == target).then_some(held);
                }
                Err(Broken {
                    error: Some(Error::PoolEmpty | Error::OverTarget),
                    ..
                }) if direction == Direction::Deflate => {
                    model.deflate_waits = true;
                    return Ok(Unit::default());
                }
                Err(broken) => return Err(broken),
            }
        }
        transport.renotify(number);
        Ok(unit)
    }

    /// Carries out the page list of `chain` on the ledger: pages held after.
    /// A list naming a page of the queue's own used ring (`used`: start and
    /// length) is refused first, as the chain could not be given back.
    fn page_list(
        &mut self,
        index: usize,
        direction: Direction,
        chain: &Chain,
        (used, used_len): (u64, u64),
        platform: &mut impl Platform,
    ) -> Result<u64, Broken> {
        let mut pages = [0u64; PFNS_MAX];
        let count = BalloonModel::page_list(chain, &mut self.memory(index, platform), &mut pages)?;
        let used = Range::from_start_size(used, used_len).ok_or(Violation::BadAddress)?;
        let page = |address| Range::from_start_size(address, PAGE_SIZE);
        if pages[..count]
            .iter()
            .any(|&address| page(address).is_some_and(|page| page.overlaps(&used)))
        {
            return Err(Violation::BadAddress.into());
        }
        let flip = &self.flip;
        let in_flight = |guest| flip.in_flight(index, guest);
        self.balloon
            .batch(index, direction, &pages[..count], in_flight, platform)
            .map(|memory| memory.held)
            .map_err(|error| Broken {
                violation: Violation::Refused,
                error: Some(error),
            })
    }

    /// One chain of the console's queues, or a delivery of typed bytes.
    fn console_unit(
        &mut self,
        index: usize,
        virtio: &mut VirtioDevice,
        platform: &mut impl Platform,
    ) -> Result<Unit, Broken> {
        let Model::Console(model) = &mut virtio.model else {
            unreachable!("the console's slot holds a console");
        };
        let transport = &mut virtio.transport;
        let used = Unit {
            interrupt: interrupt::USED_BUFFER,
            at_target: None,
        };
        match transport.next_notified() {
            Some(TRANSMIT_QUEUE) => {
                let Some(queue) = transport.queue(TRANSMIT_QUEUE) else {
                    return Ok(Unit::default());
                };
                let Some(chain) = queue.peek(&mut self.memory(index, platform))? else {
                    return Ok(Unit::default());
                };
                let mut bytes = [0; TRANSMIT_MAX as usize];
                let read = ConsoleModel::read_output(
                    &chain,
                    &mut self.memory(index, platform),
                    &mut bytes,
                )?;
                queue.consume();
                queue.push_used(&mut self.memory(index, platform), chain.head, 0)?;
                let port = Port(self.partitions[index].name());
                model.output(port, &bytes[..read], &mut GuestLines::new(platform, index));
                transport.renotify(TRANSMIT_QUEUE);
                Ok(used)
            }
            Some(_) => {
                // New receive buffers: typed bytes may go now.
                model.deliver = true;
                Ok(Unit::default())
            }
            None => {
                let chain = match transport.queue(RECEIVE_QUEUE) {
                    Some(queue) => queue.peek(&mut self.memory(index, platform))?,
                    None => None,
                };
                let Some(chain) = chain else {
                    // No buffer (or no receive queue): the bytes wait for the
                    // driver's next one.
                    model.deliver = false;
                    return Ok(Unit::default());
                };
                let queue = transport.queue(RECEIVE_QUEUE).expect("it gave a chain");
                let written = model.deliver_into(&chain, &mut self.memory(index, platform))?;
                queue.consume();
                queue.push_used(
                    &mut self.memory(index, platform),
                    chain.head,
                    written as u32,
                )?;
                Ok(used)
            }
        }
    }

    /// The driver of `device` of `partition` broke its rules: the device needs
    /// a reset, and that is audited and reported (and its driver interrupted).
    /// True if its interrupt was raised.
    pub(super) fn device_broken(
        &mut self,
        partition: usize,
        device: Device,
        Broken { violation, error }: Broken,
        platform: &mut impl Platform,
    ) -> bool {
        let Some(virtio) = self.partitions[partition]
            .virtio
            .as_deref_mut()
            .and_then(|devices| devices.get_mut(device))
        else {
            return false;
        };
        let raise = virtio.transport.needs_reset();
        let code = error.map_or(0, |error| error as u64);
        let detail = [
            u64::from(device.id()),
            u64::from(violation.number()) | code << 8,
        ];
        self.audit_now(partition, AuditKind::Device, detail, platform);
        let name = self.partitions[partition].name();
        emit(
            platform,
            Event::DeviceNeedsReset {
                name,
                device,
                violation,
                error,
            },
        );
        if raise {
            self.raise_device_interrupt(partition, device);
        }
        raise
    }

    /// Raises `device`'s interrupt in `partition`'s GIC (a Linux partition; a
    /// native one polls).
    pub(super) fn raise_device_interrupt(&mut self, partition: usize, device: Device) {
        self.raise_spi(partition, device.spi());
    }

    /// A byte typed for `partition`'s virtio console, which has focus.
    pub(super) fn hvc_input(&mut self, partition: usize, byte: u8) {
        let console = self.partitions[partition]
            .virtio
            .as_deref_mut()
            .and_then(|devices| devices.get_mut(Device::Console));
        if let Some(VirtioDevice {
            model: Model::Console(model),
            ..
        }) = console
        {
            model.receive(byte);
            self.note_may_run(partition);
        }
    }

    /// `partition`'s balloon target changed: a virtio balloon's driver is
    /// told (configuration change), a deflate that waited is tried again, and
    /// fresh statistics are asked for.
    pub(super) fn virtio_target_changed(&mut self, partition: usize, platform: &mut impl Platform) {
        let now_us = platform.now_us();
        let Some(virtio) = self.virtio_balloon(partition) else {
            return;
        };
        let raise = virtio.transport.config_changed();
        if let Model::Balloon(model) = &mut virtio.model {
            if core::mem::take(&mut model.deflate_waits) {
                virtio.transport.renotify(DEFLATE_QUEUE);
            }
            model.want_stats(now_us);
        }
        if raise {
            self.raise_device_interrupt(partition, Device::Balloon);
        }
        self.note_may_run(partition);
    }

    /// The timers of the virtio devices of partitions whose vCPU 0 is on core
    /// `cpu` (checked as the watchdogs are): each live balloon is asked for
    /// statistics every [`STATS_PERIOD_US`](crate::virtio::balloon::STATS_PERIOD_US), so the memory scheduler hears
    /// from it as it does from a native guest that reports.
    pub(super) fn virtio_timers(&mut self, cpu: usize, platform: &mut impl Platform) {
        for partition in 0..self.partitions.len() {
            if self.partitions[partition].cpu == cpu && self.partitions[partition].virtio.is_some()
            {
                self.virtio_wants_stats(partition, platform);
            }
        }
    }

    /// The service VM reads `partition`'s memory: a virtio balloon is asked
    /// for fresh statistics (at most every [`STATS_PERIOD_US`](crate::virtio::balloon::STATS_PERIOD_US)).
    pub(super) fn virtio_wants_stats(&mut self, partition: usize, platform: &mut impl Platform) {
        let now_us = platform.now_us();
        if let Some(VirtioDevice {
            model: Model::Balloon(model),
            ..
        }) = self.virtio_balloon(partition)
            && model.want_stats(now_us)
            && !self.partitions[partition].life.ended()
        {
            self.note_may_run(partition);
        }
    }

    /// Frames reached the pool: every virtio balloon whose deflate waited
    /// tries again.
    pub(super) fn virtio_pool_refilled(&mut self) {
        for partition in 0..self.partitions.len() {
            if let Some(VirtioDevice {
                transport,
                model: Model::Balloon(model),
            }) = self.virtio_balloon(partition)
                && core::mem::take(&mut model.deflate_waits)
            {
                transport.renotify(DEFLATE_QUEUE);
                self.note_may_run(partition);
            }
        }
    }

    fn virtio_balloon(&mut self, partition: usize) -> Option<&mut VirtioDevice> {
        self.partitions[partition]
            .virtio
            .as_deref_mut()?
            .get_mut(Device::Balloon)
    }
}
