//! The virtual machine of a Linux partition ([`Profile::Linux`]): its emulated
//! devices (the GICv3 of [`crate::vgic`], the UART of [`crate::uart`], at the
//! addresses of [`septum_abi::virt`]), and the kernel's fast lane into them.
//!
//! A trapped load or store at an emulated register, a trapped write of the SGI
//! register, and the virtual timer's expiry are handled here without the
//! scheduler: the vCPU stays on its core and continues past the instruction, and
//! the back end only writes the result into its register. The service VM is not
//! involved; it keeps deciding every fault and policy trap, which take the full
//! path ([`System::handle`]).
//!
//! Invariants:
//! - a partition's devices are reached only by its own vCPUs' traps and by the
//!   kernel on its behalf (console input while it has focus, its vCPUs' timers);
//!   nothing here names another partition's interrupts or memory;
//! - the fast lane acts only for a vCPU whose partition may run now and has no
//!   restart or stop waiting: anything else goes the full path, which holds the
//!   trap;
//! - an access outside every emulated window, or one the device refuses, is not
//!   emulated and changes nothing: the back end reports it as the stage-2 fault
//!   it is;
//! - a vCPU made to have a new virtual interrupt while it is live on another core
//!   gets that core kicked, so it refills its list registers at once; one not
//!   live refills when it is next loaded (the back end asks [`System::wants_refill`]
//!   before every entry).
//!
//! [`Profile::Linux`]: crate::package::Profile::Linux

use septum_abi::virt::{
    GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE, SPI_BASE, UART_BASE, UART_SIZE, UART_SPI,
};

use septum_abi::virtio::Device;

use super::partition::Label;
use super::{GuestLines, Platform, System};
use crate::uart::{Uart, UartEffect};
use crate::vgic::{Access, ListEntry, Vgic};

/// A Linux partition's emulated devices.
#[derive(Debug)]
pub struct VirtualMachine {
    pub(super) gic: Vgic,
    pub(super) uart: Uart,
}

impl VirtualMachine {
    /// The devices of a partition with `vcpus` vCPUs, in their reset state.
    pub fn new(vcpus: usize) -> VirtualMachine {
        VirtualMachine {
            gic: Vgic::new(vcpus),
            uart: Uart::new(),
        }
    }

    /// Back to the reset state: the partition restarted.
    pub(super) fn reset(&mut self) {
        self.gic.reset();
        self.uart.reset();
    }
}

/// An access the fast lane completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    /// The value a load reads (0 for a store).
    pub value: u64,
    /// Whether it may have given a vCPU of the partition an interrupt to take
    /// (the caller then refills and kicks: [`System::take_interrupted`]).
    pub interrupts: bool,
    /// Whether it left the partition owing kernel work (a virtio queue was
    /// notified): the back end then enters the full path as for a kick, once
    /// the access is complete, so the scheduler has the work done in the
    /// partition's own turns before it runs on (`work.rs`).
    pub reschedule: bool,
}

/// Which emulated window an address falls in, and the offset into it.
enum Window {
    Distributor(u64),
    Redistributors(u64),
    Uart(u64),
}

fn window_of(address: u64) -> Option<Window> {
    let inside = |base: u64, size: u64| address.checked_sub(base).filter(|&offset| offset < size);
    if let Some(offset) = inside(GICD_BASE, GICD_SIZE) {
        Some(Window::Distributor(offset))
    } else if let Some(offset) = inside(GICR_BASE, GICR_SIZE) {
        Some(Window::Redistributors(offset))
    } else {
        inside(UART_BASE, UART_SIZE).map(Window::Uart)
    }
}

impl System {
    /// The emulated devices of `vcpu`'s partition, if it is a Linux partition
    /// that may run now (the fast lane's condition).
    fn live_machine(&mut self, vcpu: usize) -> Option<(usize, &mut VirtualMachine)> {
        self.may_run_now(vcpu).then_some(())?;
        let slot = &self.vcpus[vcpu];
        let index = slot.index;
        self.partitions[slot.partition]
            .machine
            .as_deref_mut()
            .map(|machine| (index, machine))
    }

    /// Whether `vcpu`'s partition may run now and has no restart or stop
    /// waiting (the fast lane's condition).
    fn may_run_now(&self, vcpu: usize) -> bool {
        let slot = &self.vcpus[vcpu];
        let life = &self.partitions[slot.partition].life;
        life.deferred().is_none() && life.vcpu_runnable(slot.index)
    }

    /// A trapped access by `vcpu` (live on the calling core) to guest-physical
    /// `address`, `width` bytes wide, reading or writing `access`: what the
    /// kernel did, if it emulated it. `None`: not an emulated
    /// register, refused, or not for the fast lane; the trap goes the full path.
    pub fn emulate_access(
        &mut self,
        vcpu: usize,
        address: u64,
        width: u8,
        access: Access,
        platform: &mut impl Platform,
    ) -> Option<Completed> {
        let completed = self.emulate(vcpu, address, width, access, platform)?;
        self.note_emulated(vcpu);
        Some(completed)
    }

    /// [`System::emulate_access`] but for the count.
    fn emulate(
        &mut self,
        vcpu: usize,
        address: u64,
        width: u8,
        access: Access,
        platform: &mut impl Platform,
    ) -> Option<Completed> {
        let partition = self.vcpus[vcpu].partition;
        if let Some((device, offset)) = Device::at(address) {
            self.may_run_now(vcpu).then_some(())?;
            return self.virtio_access(partition, device, offset, width, access, platform);
        }
        let window = window_of(address)?;
        let (_, machine) = self.live_machine(vcpu)?;
        let emulated = match window {
            Window::Distributor(offset) => machine.gic.distributor(offset, width, access),
            Window::Redistributors(offset) => machine.gic.redistributor(offset, width, access),
            Window::Uart(offset) => {
                return self.uart_access(partition, offset, width, access, platform);
            }
        };
        let emulated = emulated.ok()?;
        // Enabling an interrupt or changing its routing can make one deliverable.
        let interrupts = emulated.wake != 0;
        if interrupts {
            self.note_interrupts(partition);
        }
        Some(Completed {
            value: emulated.value,
            interrupts,
            reschedule: false,
        })
    }

    /// An access to the UART of `partition` (a Linux partition that may run).
    fn uart_access(
        &mut self,
        partition: usize,
        offset: u64,
        width: u8,
        access: Access,
        platform: &mut impl Platform,
    ) -> Option<Completed> {
        let machine = self.partitions[partition].machine.as_deref_mut()?;
        let (value, effect, rose) = match access {
            Access::Read => (machine.uart.read(offset, width)?, UartEffect::None, false),
            Access::Write(value) => {
                let (effect, rose) = machine.uart.write(offset, width, value)?;
                (0, effect, rose)
            }
        };
        if rose {
            self.raise_spi(partition, UART_SPI);
        }
        if let UartEffect::Sent(byte) = effect {
            self.uart_output(partition, byte, platform);
        }
        Some(Completed {
            value,
            interrupts: rose,
            reschedule: false,
        })
    }

    /// A byte `partition` sent on its UART: onto its console line, as vCPU 0's
    /// output (the UART is the partition's, not a vCPU's).
    fn uart_output(&mut self, partition: usize, byte: u8, platform: &mut impl Platform) {
        let vcpu = self.partitions[partition].vcpus.start;
        let label = Label {
            name: &self.partitions[partition].name,
            vcpu: 0,
        };
        let mut lines = GuestLines::new(platform, partition);
        let _ = self.vcpus[vcpu].console.write(&label, &[byte], &mut lines);
    }

    /// Raises shared interrupt `spi` of `partition`'s GIC.
    pub(super) fn raise_spi(&mut self, partition: usize, spi: u32) {
        if let Some(machine) = self.partitions[partition].machine.as_deref_mut() {
            machine.gic.raise(SPI_BASE + spi, 0);
            self.note_interrupts(partition);
        }
    }

    /// A trapped write of `value` to the SGI register (ICC_SGI1R_EL1) by `vcpu`:
    /// whether the kernel handled it (a Linux partition that may run).
    pub fn send_sgi(&mut self, vcpu: usize, value: u64) -> bool {
        let partition = self.vcpus[vcpu].partition;
        let Some((index, machine)) = self.live_machine(vcpu) else {
            return false;
        };
        if machine.gic.send_sgi(index, value) != 0 {
            self.note_interrupts(partition);
        }
        self.note_emulated(vcpu);
        true
    }

    /// Private interrupt `intid` (the virtual timer's) fired for `vcpu`, which
    /// is live on this core: it becomes pending in its partition's GIC. False
    /// if the partition has no GIC (a native partition).
    pub fn raise_private(&mut self, vcpu: usize, intid: u32) -> bool {
        let slot = &self.vcpus[vcpu];
        let index = slot.index;
        match self.partitions[slot.partition].machine.as_deref_mut() {
            Some(machine) => {
                machine.gic.raise(intid, index);
                true
            }
            None => false,
        }
    }

    /// Whether `vcpu` has a virtual interrupt to put in its list registers.
    /// Inlined: every entry into a vCPU asks, and for a native partition the
    /// answer is one load.
    #[inline(always)]
    pub fn wants_refill(&self, vcpu: usize) -> bool {
        let slot = &self.vcpus[vcpu];
        self.partitions[slot.partition]
            .machine
            .as_deref()
            .is_some_and(|machine| machine.gic.wants_refill(slot.index))
    }

    /// Fills `vcpu`'s list registers (`lists`, as the hardware holds them now)
    /// from its pending interrupts; true if some did not fit (see
    /// [`Vgic::refill`]).
    pub fn refill(&mut self, vcpu: usize, lists: &mut [ListEntry]) -> bool {
        let slot = &self.vcpus[vcpu];
        let index = slot.index;
        self.partitions[slot.partition]
            .machine
            .as_deref_mut()
            .is_some_and(|machine| machine.gic.refill(index, lists))
    }

    /// Something in `partition`'s GIC changed: each core where one of its vCPUs
    /// is live and has a new interrupt to take is kicked (at the end of the
    /// current entry, or by the fast lane's caller: [`System::take_interrupted`]).
    fn note_interrupts(&mut self, partition: usize) {
        for vcpu in self.partitions[partition].vcpus() {
            let cpu = self.vcpus[vcpu].cpu;
            if self.loaded[cpu] == Some(vcpu) && self.wants_refill(vcpu) {
                self.interrupted |= 1 << cpu;
            }
        }
    }

    /// The cores, other than `cpu`, that must be kicked because a vCPU live there
    /// has a new virtual interrupt or must be loaded again; forgets them.
    #[inline(always)]
    pub fn take_interrupted(&mut self, cpu: usize) -> u8 {
        core::mem::take(&mut self.interrupted) & !(1 << cpu)
    }

    /// A byte typed for `partition`, which has console focus: into its UART.
    pub(super) fn uart_input(&mut self, partition: usize, byte: u8) {
        let Some(machine) = self.partitions[partition].machine.as_deref_mut() else {
            return;
        };
        if machine.uart.receive(byte) {
            self.raise_spi(partition, UART_SPI);
        }
    }
}
