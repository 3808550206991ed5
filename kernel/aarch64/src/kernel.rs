//! The running kernel: the core's [`System`], one [`Vcpu`] per partition, the console,
//! and the glue that applies the core's decisions to the CPU.
//!
//! Invariants:
//! - `current` is the partition whose registers are in the trap frame (or on the
//!   CPU); every other partition's state is in its `Vcpu`;
//! - the kernel state is reached only through [`Global::with`], which refuses
//!   re-entry, on the boot CPU with interrupts masked.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use septum_core::system::{Dispatch, Next, Platform, System};

use crate::boot::TrapFrame;
use crate::psci;
use crate::trap::Trap;
use crate::uart::Pl011;
use crate::vcpu::Vcpu;

/// A kernel-wide value that one trap at a time may use.
pub struct Global<T> {
    value: UnsafeCell<Option<T>>,
    busy: AtomicBool,
}

// SAFETY: access goes through `with`, which hands out one `&mut T` at a time and
// panics on a second, concurrent or re-entrant, attempt.
unsafe impl<T: Send> Sync for Global<T> {}

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

/// The kernel state, filled in at boot.
pub static KERNEL: Global<Kernel> = Global::new();

/// The machine as the core sees it: the console and RAM.
struct Machine<'a> {
    console: &'a mut Pl011,
}

impl fmt::Write for Machine<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_str(s)
    }
}

impl Platform for Machine<'_> {
    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]) {
        // SAFETY: the core passes only ranges it checked to lie inside a partition's
        // RAM, which is identity-mapped normal memory that the kernel may read.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buffer.as_mut_ptr(), buffer.len())
        };
    }
}

/// Everything the kernel keeps after boot.
pub struct Kernel {
    /// Partitions and their states.
    pub system: System,
    /// One vCPU per partition, in package order.
    pub vcpus: heapless::Vec<Vcpu, { septum_core::package::MAX_PARTITIONS }>,
    /// The partition that runs now.
    pub current: usize,
    /// The console.
    pub console: Pl011,
    /// Whether PSCI can power the machine off.
    pub psci_smc: bool,
}

impl Kernel {
    /// Starts the system: the service VM first. Returns the registers to enter it with.
    pub fn start(&mut self) -> TrapFrame {
        let mut machine = Machine {
            console: &mut self.console,
        };
        match self.system.start(&mut machine) {
            Next::Run(first) => {
                self.current = first;
                self.vcpus[first].load();
                self.vcpus[first].frame
            }
            Next::PowerOff { clean } => self.power_off(clean),
        }
    }

    /// Handles one trap from the current partition; `frame` holds its registers and,
    /// on return, the registers of whichever partition runs next.
    pub fn on_trap(&mut self, trap: Trap, frame: &mut TrapFrame) {
        let current = self.current;
        let mut machine = Machine {
            console: &mut self.console,
        };
        let dispatch = match trap {
            Trap::Hypercall(call) => self.system.hypercall(current, call, &mut machine),
            Trap::Wait => {
                frame.elr += 4;
                Dispatch {
                    reply: None,
                    next: self.system.preempt(current, &mut machine),
                }
            }
            Trap::Fault(fault) => self.system.fault(current, fault, &mut machine),
        };
        self.apply(dispatch, frame);
    }

    fn apply(&mut self, dispatch: Dispatch, frame: &mut TrapFrame) {
        if let Some(reply) = dispatch.reply {
            frame.x[0] = reply.status;
            frame.x[1..4].copy_from_slice(&reply.results);
        }
        match dispatch.next {
            Next::Run(next) if next == self.current => {}
            Next::Run(next) => {
                let previous = &mut self.vcpus[self.current];
                previous.frame = *frame;
                previous.store();
                let next_vcpu = &self.vcpus[next];
                next_vcpu.load();
                *frame = next_vcpu.frame;
                self.current = next;
            }
            Next::PowerOff { clean } => self.power_off(clean),
        }
    }

    fn power_off(&mut self, clean: bool) -> ! {
        self.console.drain();
        if self.psci_smc {
            psci::system_off();
        }
        let _ = writeln!(self.console, "no PSCI: halting (clean={clean})");
        psci::halt()
    }
}
