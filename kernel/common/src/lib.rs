//! What both back ends share, above the registers and below the portable core.
//!
//! At boot, [`load_partitions`] places every partition in RAM the same way on both
//! architectures. A back end traps, classifies the trap into a [`Trap`], and calls
//! [`Kernel::on_trap`]. The kernel asks the core what to do and carries it out
//! through the back end's [`Vcpu`] and [`Machine`]: reply registers, instruction
//! skips, partition switches, power off. So the scheduling and dispatch logic exists
//! once, and each back end implements only the architecture.
//!
//! Invariants:
//! - `current` names the partition whose registers are live (in the trap frame and
//!   on the CPU); every other partition's state is in its [`Vcpu`];
//! - kernel state is reached only through [`Global::with`], which refuses re-entry.
#![cfg_attr(not(test), no_std)]

pub mod paging;

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use septum_abi::layout::RAM_BASE;
use septum_core::event::{Event, Fault};
use septum_core::memory::{FreeRanges, Range};
use septum_core::package::{MAX_PARTITIONS, Package, PartitionSpec};
use septum_core::system::{CallRegisters, Decision, Dispatch, Next, Platform, Reply, System};

/// What a trap from a partition means, as the back end classified it.
#[derive(Clone, Copy, Debug)]
pub enum Trap {
    /// A hypercall.
    Hypercall(CallRegisters),
    /// The partition waits for an event (WFI/WFE, HLT): it yields.
    Wait,
    /// The partition's time slice ended.
    Preempted,
    /// Anything else: the partition is stopped.
    Fault(Fault),
}

/// One partition's virtual CPU, as the back end keeps it.
pub trait Vcpu {
    /// The registers the trap entry saved, which the exit path restores.
    type Frame;

    /// Puts the hypercall reply in the caller's registers.
    fn set_reply(frame: &mut Self::Frame, reply: Reply);
    /// Moves the trapped partition past the instruction that trapped.
    fn skip_instruction(frame: &mut Self::Frame);
    /// Saves the running partition's state (from `frame` and the CPU) into `self`.
    fn store(&mut self, frame: &Self::Frame);
    /// Makes `self` the running partition: its state goes on the CPU and in `frame`.
    fn load(&mut self, frame: &mut Self::Frame);
}

/// The machine under the kernel: console, power, and the clock that drives the
/// schedule.
pub trait Machine: fmt::Write {
    /// Waits for the console to drain and powers off; halts if it cannot.
    fn power_off(&mut self, clean: bool) -> !;
    /// Microseconds since an arbitrary point at boot; never goes backwards.
    fn now_us(&mut self) -> u64;
    /// Starts a turn: the running partition may run until `deadline_us` (on the
    /// [`Machine::now_us`] clock), when the kernel takes the CPU back with
    /// [`Trap::Preempted`]; other traps during the turn do not change the deadline.
    /// `None`: no window ends; the turn lasts the back end's round-robin time slice.
    fn set_deadline(&mut self, deadline_us: Option<u64>);
    /// Waits in the kernel, with no partition running, until `until_us`.
    fn idle_until(&mut self, until_us: u64);
}

/// The core's view of the machine: the console, and RAM that the kernel maps at
/// its physical address.
struct IdentityRam<'a, M> {
    machine: &'a mut M,
}

impl<M: Machine> fmt::Write for IdentityRam<'_, M> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.machine.write_str(s)
    }
}

impl<M: Machine> Platform for IdentityRam<'_, M> {
    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]) {
        // SAFETY: the core passes only ranges it checked to lie inside a partition's
        // RAM; both back ends map all RAM at its physical address as normal memory.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buffer.as_mut_ptr(), buffer.len())
        };
    }
}

/// Everything the kernel keeps after boot.
pub struct Kernel<V, M> {
    /// Partitions and their states.
    pub system: System,
    /// One vCPU per partition, in package order.
    pub vcpus: heapless::Vec<V, MAX_PARTITIONS>,
    /// The partition that runs now.
    pub current: usize,
    /// The console and power control.
    pub machine: M,
}

impl<V: Vcpu, M: Machine> Kernel<V, M> {
    /// A kernel about to start `system`.
    pub fn new(system: System, vcpus: heapless::Vec<V, MAX_PARTITIONS>, machine: M) -> Self {
        Kernel {
            system,
            vcpus,
            current: 0,
            machine,
        }
    }

    /// Starts the system (the service VM first) and fills `frame` with the
    /// registers of the first partition to run.
    pub fn start(&mut self, frame: &mut V::Frame) {
        let next = self.system.start(&mut IdentityRam {
            machine: &mut self.machine,
        });
        if let Next::Run(first) = next {
            self.current = first;
            self.vcpus[first].load(frame);
        }
        self.settle(next, frame, true);
    }

    /// Handles one trap from the current partition. `frame` holds its registers and,
    /// on return, those of whichever partition runs next.
    pub fn on_trap(&mut self, trap: Trap, frame: &mut V::Frame) {
        let current = self.current;
        let mut platform = IdentityRam {
            machine: &mut self.machine,
        };
        let dispatch = match trap {
            Trap::Hypercall(call) => self.system.hypercall(current, call, &mut platform),
            Trap::Wait => {
                V::skip_instruction(frame);
                Dispatch {
                    reply: None,
                    next: self.system.preempt(current, &mut platform),
                }
            }
            Trap::Preempted => Dispatch {
                reply: None,
                next: self.system.preempt(current, &mut platform),
            },
            Trap::Fault(fault) => self.system.fault(current, fault, &mut platform),
        };
        if let Some(reply) = dispatch.reply {
            V::set_reply(frame, reply);
        }
        self.settle(dispatch.next, frame, matches!(trap, Trap::Preempted));
    }

    /// Puts on the CPU what the core decides for `next` at the current time: the
    /// partition (switching vCPUs if it is not the current one), or nothing until
    /// the core has something to run, or power-off.
    ///
    /// The deadline is armed only when a turn begins (`new_turn`: at start or after
    /// a preemption; also after a switch or an idle wait). A partition that traps and
    /// continues keeps the rest of its turn: calling the kernel never buys it more
    /// time, and the common hypercall path reads no clock and programs no timer.
    fn settle(&mut self, next: Next, frame: &mut V::Frame, mut new_turn: bool) {
        loop {
            let now = match self.system.schedule() {
                Some(_) => self.machine.now_us(),
                None => 0,
            };
            match self.system.decide(next, now) {
                Decision::PowerOff { clean } => self.machine.power_off(clean),
                Decision::Run {
                    partition,
                    deadline_us,
                } => {
                    if partition != self.current {
                        self.vcpus[self.current].store(frame);
                        self.vcpus[partition].load(frame);
                        self.current = partition;
                        new_turn = true;
                    }
                    if new_turn {
                        self.machine.set_deadline(deadline_us);
                    }
                    return;
                }
                Decision::Idle { until_us } => {
                    self.machine.idle_until(until_us);
                    new_turn = true;
                }
            }
        }
    }
}

/// A kernel-wide value that one trap at a time may use.
pub struct Global<T> {
    value: UnsafeCell<Option<T>>,
    busy: AtomicBool,
}

// SAFETY: access goes through `with`, which hands out one `&mut T` at a time and
// panics on a second, concurrent or re-entrant, attempt.
unsafe impl<T: Send> Sync for Global<T> {}

impl<T> Default for Global<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Global<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Global {
            value: UnsafeCell::new(None),
            busy: AtomicBool::new(false),
        }
    }

    /// Fills the slot (once, at boot) and runs `f` on the value.
    pub fn init<R>(&self, value: T, f: impl FnOnce(&mut T) -> R) -> R {
        self.access(|slot| {
            assert!(slot.is_none(), "kernel state initialised twice");
            f(slot.insert(value))
        })
    }

    /// Runs `f` with exclusive access to the value.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.access(|slot| f(slot.as_mut().expect("kernel state used before boot")))
    }

    fn access<R>(&self, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        assert!(
            !self.busy.swap(true, Ordering::Acquire),
            "kernel state re-entered"
        );
        // SAFETY: `busy` was false and is now true, so no other reference exists.
        let result = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        result
    }
}

/// A byte-at-a-time serial port.
pub trait Uart {
    /// Sends one byte, waiting while the transmitter is full.
    fn put(&mut self, byte: u8);
    /// Waits until every byte sent so far has left the port.
    fn drain(&mut self);
}

/// A console on a [`Uart`]: text with `\n` sent as `\r\n`, so it reads well on a
/// terminal.
pub struct Console<U>(pub U);

impl<U: Uart> fmt::Write for Console<U> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(byte);
        }
        Ok(())
    }
}

/// Where the kernel placed one partition.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Its RAM in the machine.
    pub host_ram: Range,
    /// Its RAM as the partition sees it.
    pub guest_ram: Range,
    /// The machine memory holding its image (the start of its RAM).
    pub image: Range,
}

/// Loads every partition of `package`: takes its RAM from `frames` (at its fixed
/// placement, else on an `align` boundary), reports where it went on `console`,
/// scrubs all of it, copies the image to its start, and asks the back end
/// (`make_vcpu`) to build its translation tables and vCPU. Returns the system and
/// the vCPUs, in package order.
///
/// Fixed placements are claimed first, so the kernel's own choices never take
/// memory a description reserved. Panics with the partition's name if its RAM is
/// not free: this runs at boot, before any partition, and a system that does not
/// fit cannot start.
pub fn load_partitions<V, const N: usize>(
    package: &Package<'_>,
    frames: &mut FreeRanges<N>,
    align: u64,
    console: &mut impl fmt::Write,
    mut make_vcpu: impl FnMut(usize, &PartitionSpec<'_>, Placement, &mut FreeRanges<N>) -> V,
) -> (System, heapless::Vec<V, MAX_PARTITIONS>) {
    let mut placed = [None; MAX_PARTITIONS];
    for (index, spec) in package.partitions().enumerate() {
        if let Some(at) = spec.resources.at {
            let wanted = Range::from_start_size(at, spec.ram_size).expect("checked by the package");
            let ram = frames.take(wanted).unwrap_or_else(|e| {
                panic!(
                    "RAM of partition {} at {at:#x} is not free: {e:?}",
                    spec.name
                )
            });
            placed[index] = Some(ram);
        }
    }
    let mut host_ram = heapless::Vec::<Range, MAX_PARTITIONS>::new();
    let mut vcpus = heapless::Vec::new();
    for (index, spec) in package.partitions().enumerate() {
        let ram = placed[index].unwrap_or_else(|| {
            frames
                .allocate(spec.ram_size, align)
                .unwrap_or_else(|e| panic!("no RAM for partition {}: {e:?}", spec.name))
        });
        let event = Event::PartitionPlaced {
            name: spec.name,
            base: ram.start,
            size: ram.size(),
        };
        let _ = writeln!(console, "{event}");
        // SAFETY: `ram` was free and is now this partition's alone; both back ends map
        // RAM at its physical address. The image fits in it (Package::parse checks).
        unsafe {
            core::ptr::write_bytes(ram.start as *mut u8, 0, ram.size() as usize);
            core::ptr::copy_nonoverlapping(
                spec.image.as_ptr(),
                ram.start as *mut u8,
                spec.image.len(),
            );
        }
        let placement = Placement {
            host_ram: ram,
            guest_ram: Range::from_start_size(RAM_BASE, spec.ram_size).expect("RAM size checked"),
            image: Range::from_start_size(ram.start, spec.image.len() as u64).expect("inside RAM"),
        };
        let vcpu = make_vcpu(index, &spec, placement, frames);
        // Cannot fail: a valid package has at most MAX_PARTITIONS partitions.
        let _ = vcpus.push(vcpu);
        let _ = host_ram.push(ram);
    }
    let system = System::new(package, RAM_BASE, &host_ram).expect("placements match the package");
    (system, vcpus)
}
