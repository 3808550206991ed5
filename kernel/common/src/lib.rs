//! What both back ends share, above the registers and below the portable core.
//!
//! At boot, [`load_partitions`] places every partition in RAM the same way on both
//! architectures. A back end traps, classifies the trap into a [`Trap`], and calls
//! [`Kernel::on_trap`]. The kernel asks the core what to do and carries it out
//! through the back end's [`Vcpu`] and [`Machine`]: reply registers, instruction
//! skips, partition switches, the work a partition owes, power off. So the
//! scheduling and dispatch logic exists once, and each back end implements only
//! the architecture.
//!
//! The console: once partitions run, the kernel never waits for the UART. Every
//! line goes into the core's console ring, which the kernel drains as far as the
//! UART takes bytes whenever it settles a core, when it idles, and (where the back
//! end has one) on the transmitter's interrupt.
//!
//! Invariants:
//! - `current[cpu]` names the partition whose registers are live on core `cpu` (in
//!   its trap frame and on the CPU); every other partition's state is in its
//!   [`Vcpu`]; a partition is only ever loaded on its own core;
//! - a partition that may not run (suspended, blocked, ended) is never live on a
//!   core once the core has settled: its registers are in its [`Vcpu`], where the
//!   service VM's `resume` and `restart` act on them;
//! - a restart rewrites a partition's RAM only while it is live on no core (the core
//!   defers a restart of a partition running elsewhere to that core), a page at a
//!   time in that partition's own turns on its own core;
//! - kernel state is reached only through [`Global::with`], one core at a time; a
//!   core that must wait (no partition to run) does so outside it.
#![cfg_attr(not(test), no_std)]

mod load;
pub mod paging;
mod platform;
#[cfg(test)]
mod tests;
mod uart;

pub use load::{Placement, console_output, load_partitions, map_grants};
pub use uart::{Console, Uart};

use core::cell::UnsafeCell;
use core::fmt;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicUsize, Ordering};

use platform::identity_ram;
use septum_abi::Error;
use septum_core::console::output::{Output, Source};
use septum_core::event::{Event, Fault};
use septum_core::memory::Range;
use septum_core::package::{MAX_PARTITIONS, Package};
use septum_core::system::{
    CallRegisters, Decision, Dispatch, Effect, MAX_CPUS, Next, Reply, System,
};

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
    /// Puts the stored state back to the partition's entry state (see the README,
    /// "Partition entry state"), with `generation` in the third argument register.
    /// Called only while the partition is not live on any core.
    fn restart(&mut self, generation: u32);
    /// Moves the stored program counter `length` bytes on, past a trapped
    /// instruction. Called only while the partition is not live on any core.
    fn skip_stored(&mut self, length: u8);
    /// Maps guest page `guest` to machine frame `frame` as normal RAM in this
    /// partition's second-stage tables. Only for pages of a page-granular
    /// partition's RAM or receive window (see [`Placement`]), whose last-level
    /// tables exist since boot: it never allocates and cannot fail. The page must be
    /// unmapped.
    fn map_page(&mut self, guest: u64, frame: u64);
    /// Unmaps guest page `guest` (same rule as [`Vcpu::map_page`]). The partition
    /// may still reach the frame through cached translations until
    /// [`Vcpu::flush_translations`].
    fn unmap_page(&mut self, guest: u64);
    /// Makes every [`Vcpu::unmap_page`] so far take effect before the partition
    /// next touches memory, on whichever core it runs.
    fn flush_translations(&mut self);
}

/// The machine under the kernel: console, power, and the clock that drives the
/// schedule. Its [`fmt::Write`] writes the console synchronously, for boot only.
pub trait Machine: fmt::Write {
    /// Waits for the console to drain and powers off; halts if it cannot.
    fn power_off(&mut self, clean: bool) -> !;
    /// Microseconds since an arbitrary point at boot; never goes backwards.
    fn now_us(&mut self) -> u64;
    /// Starts a turn: the running partition may run until `deadline_us` (on the
    /// [`Machine::now_us`] clock), when the kernel takes the CPU back with
    /// [`Trap::Preempted`]; other traps during the turn do not change the deadline.
    /// `None`: no window ends; the turn lasts the back end's round-robin time slice.
    /// Applies to the core that calls it.
    fn set_deadline(&mut self, deadline_us: Option<u64>);
    /// A byte typed on the console, if one is waiting; never waits.
    fn receive(&mut self) -> Option<u8>;
    /// Hands `byte` to the console UART if it can take it now; never waits.
    /// Returns whether it took it.
    fn try_send(&mut self, byte: u8) -> bool;
    /// Whether console bytes wait that the UART could not take: a back end with a
    /// transmitter interrupt turns it on while they do (and then calls
    /// [`Kernel::drain_console`] when it fires).
    fn console_waiting(&mut self, waiting: bool);
    /// Makes code the kernel just wrote to `range` visible to instruction fetch
    /// (cache maintenance where the architecture needs it).
    fn code_written(&mut self, range: Range);
    /// Fills the page of RAM at `page` with zeros, the fastest way the core
    /// has: scrubbing is most of what giving memory back costs.
    ///
    /// # Safety
    ///
    /// `page` is page-aligned RAM that the kernel maps at its physical address
    /// (normal memory) and that nothing else reads or writes meanwhile.
    unsafe fn zero_page(&mut self, page: u64);
}

/// What a core does after the kernel has handled a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Enter the partition whose registers are now in the frame.
    Run,
    /// Run nothing until `until_us` (on [`Machine::now_us`]'s clock), then call
    /// [`Kernel::resume`]. The back end waits outside the kernel lock, so other cores
    /// go on meanwhile.
    Idle(u64),
}

/// Everything the kernel keeps after boot.
pub struct Kernel<V, M> {
    /// Partitions and their states.
    pub system: System,
    /// One vCPU per partition, in package order.
    pub vcpus: heapless::Vec<V, MAX_PARTITIONS>,
    /// Per core: the partition whose registers are live there, if any.
    pub current: [Option<usize>; MAX_CPUS],
    /// The console, clock and power control.
    pub machine: M,
    /// The system package, whose images restarts reload.
    pub package: Package<'static>,
    /// Console lines the UART has not taken yet.
    console: Output,
    /// Whether the back end was last told that bytes wait for the UART.
    console_waiting: bool,
}

/// How long a core that owes no window works off what a partition owes before it
/// looks at the round robin again (µs).
const WORK_SLICE_US: u64 = 1_000;
/// While console bytes wait, an idle core drains the console at least this often
/// (µs): under 16 bytes' time at 115,200 baud.
const DRAIN_SLICE_US: u64 = 100;

impl<V: Vcpu, M: Machine> Kernel<V, M> {
    /// A kernel about to start `system`, which was loaded from `package`, with
    /// `console` for its console lines.
    pub fn new(
        system: System,
        vcpus: heapless::Vec<V, MAX_PARTITIONS>,
        machine: M,
        package: Package<'static>,
        console: Output,
    ) -> Self {
        Kernel {
            system,
            vcpus,
            current: [None; MAX_CPUS],
            machine,
            package,
            console,
            console_waiting: false,
        }
    }

    /// Starts the system (the service VM first, on its core).
    pub fn start(&mut self, frame: &mut V::Frame) -> Step {
        let cpu = self.system.service_cpu();
        let next = self.system.start(&mut identity_ram!(self));
        self.settle(cpu, next, frame, true)
    }

    /// Called by core `cpu` when it has nothing loaded yet or has waited: what it
    /// runs now.
    pub fn resume(&mut self, cpu: usize, frame: &mut V::Frame) -> Step {
        self.check_time(cpu);
        let next = self
            .system
            .pick(cpu, self.current[cpu], &mut identity_ram!(self));
        self.settle(cpu, next, frame, true)
    }

    /// Writes a kernel line about `event` to the console (through the ring, like
    /// every line once partitions may run).
    pub fn log(&mut self, event: Event<'_>) {
        let _ = writeln!(identity_ram!(self), "{event}");
    }

    /// Sends console bytes while the UART takes them, never waiting, and tells the
    /// back end whether bytes are left (so it can ask for the transmitter's
    /// interrupt).
    pub fn drain_console(&mut self) {
        let machine = &mut self.machine;
        self.console.drain(|byte| machine.try_send(byte));
        let waiting = !self.console.is_empty();
        if waiting != self.console_waiting {
            self.console_waiting = waiting;
            self.machine.console_waiting(waiting);
        }
    }

    /// What the kernel does whenever a core reads the clock anyway (a turn ended, or
    /// an idle wait did): hands typed bytes to the core, reports console lines
    /// dropped for want of room, and checks the watchdogs of the core's partitions.
    fn check_time(&mut self, cpu: usize) {
        let mut platform = identity_ram!(self);
        while let Some(byte) = platform.machine.receive() {
            self.system.console_input(byte, &mut platform);
        }
        self.system.report_console_drops(&mut platform);
        if let Some(lines) = platform.console.take_dropped(Source::Kernel, false) {
            let _ = writeln!(platform, "{}", Event::KernelConsoleDropped { lines });
        }
        let now_us = platform.machine.now_us();
        if let Some(effect) = self.system.check_watchdogs(cpu, now_us, &mut platform) {
            self.apply(cpu, effect);
        }
    }

    /// Does the vCPU work the core asked for.
    fn apply(&mut self, cpu: usize, effect: Effect) {
        match effect {
            Effect::ResetVcpu(index, generation) => {
                self.vcpus[index].restart(generation);
                if self.current[cpu] == Some(index) {
                    self.current[cpu] = None;
                    self.system.note_loaded(cpu, None);
                }
            }
            Effect::Skip(index, length) => self.vcpus[index].skip_stored(length),
        }
    }

    /// Copies partition `index`'s memory at guest address `guest` into `buffer`
    /// from the frames that back it now (see [`System::read_guest`]).
    pub fn read_guest(&mut self, index: usize, guest: u64, buffer: &mut [u8]) -> Result<(), Error> {
        self.system
            .read_guest(index, guest, buffer, &mut identity_ram!(self))
    }

    /// Handles one trap from the partition running on core `cpu`. `frame` holds its
    /// registers and, on return, those of whichever partition runs next there.
    pub fn on_trap(&mut self, cpu: usize, trap: Trap, frame: &mut V::Frame) -> Step {
        let current = self.current[cpu].expect("a trap comes from a running partition");
        if matches!(trap, Trap::Preempted) {
            self.check_time(cpu);
        }
        let mut platform = identity_ram!(self);
        // A restart or stop asked for while this partition ran here comes first; a
        // preemption is also taken after a watchdog restart of the partition that
        // ran (then no longer live here).
        let dispatch = match self.system.take_deferred(current, &mut platform) {
            Some(deferred) => deferred,
            None => match trap {
                Trap::Hypercall(call) => self.system.hypercall(current, call, &mut platform),
                Trap::Wait | Trap::Preempted => {
                    if matches!(trap, Trap::Wait) {
                        V::skip_instruction(frame);
                    }
                    Dispatch {
                        reply: None,
                        next: self.system.preempt(current, &mut platform),
                        effect: None,
                    }
                }
                Trap::Fault(fault) => self.system.fault(current, fault, &mut platform),
            },
        };
        if let Some(reply) = dispatch.reply {
            V::set_reply(frame, reply);
        }
        if let Some(effect) = dispatch.effect {
            self.apply(cpu, effect);
        }
        self.settle(cpu, dispatch.next, frame, matches!(trap, Trap::Preempted))
    }

    /// Puts on core `cpu` what the core decides for `next`: the partition
    /// (switching vCPUs if it is not the current one), or nothing for a while, or
    /// power-off. A partition whose turn it is but that owes work gets the work
    /// done first, in that turn; then the core decides again. The console is
    /// drained before the core leaves the kernel.
    ///
    /// The deadline is armed only when a turn begins (`new_turn`: at start, after a
    /// preemption or a wait, on a switch, or after work): a partition that traps and
    /// continues keeps the rest of its turn, so calling the kernel never buys it
    /// more time, and the common hypercall path reads no clock and programs no
    /// timer.
    #[inline(always)]
    fn settle(
        &mut self,
        cpu: usize,
        mut next: Next,
        frame: &mut V::Frame,
        mut new_turn: bool,
    ) -> Step {
        loop {
            let machine = &mut self.machine;
            let decision = self.system.decide(next, cpu, || machine.now_us());
            let step = match decision {
                Decision::PowerOff { clean } => self.power_off(clean),
                Decision::Run {
                    partition,
                    deadline_us,
                } if self.system.owes_work(partition) => {
                    self.work(partition, deadline_us);
                    // Paid up and runnable: the rest of the turn is its own.
                    // Otherwise the round robin moves on (a schedule decides anyway).
                    let paid = !self.system.owes_work(partition)
                        && self.system.partitions()[partition].life().runnable();
                    next = if paid {
                        Next::Run(partition)
                    } else {
                        self.system
                            .pick(cpu, Some(partition), &mut identity_ram!(self))
                    };
                    new_turn = true;
                    continue;
                }
                Decision::Run {
                    partition,
                    deadline_us,
                } => {
                    if self.current[cpu] != Some(partition) {
                        if let Some(previous) = self.current[cpu] {
                            self.vcpus[previous].store(frame);
                        }
                        self.vcpus[partition].load(frame);
                        self.current[cpu] = Some(partition);
                        self.system.note_loaded(cpu, Some(partition));
                        self.machine.set_deadline(deadline_us);
                    } else if new_turn {
                        self.machine.set_deadline(deadline_us);
                    }
                    Step::Run
                }
                Decision::Idle { until_us } => {
                    // A partition that may not run is not left live on an idle core:
                    // the service VM may resume or restart it from any core.
                    if let Some(previous) = self.current[cpu]
                        && !self.system.partitions()[previous].life().runnable()
                    {
                        self.vcpus[previous].store(frame);
                        self.current[cpu] = None;
                        self.system.note_loaded(cpu, None);
                    }
                    Step::Idle(until_us)
                }
            };
            if !self.console.is_empty() {
                self.drain_console();
            }
            return step;
        }
    }

    /// Does the work `partition` owes, a page at a time, until it owes none or its
    /// turn is over (`deadline_us`, or [`WORK_SLICE_US`] from now without a
    /// schedule).
    fn work(&mut self, partition: usize, deadline_us: Option<u64>) {
        let end = deadline_us.unwrap_or_else(|| self.machine.now_us() + WORK_SLICE_US);
        let mut platform = identity_ram!(self);
        while self.system.work(partition, &mut platform) && platform.machine.now_us() < end {}
    }

    /// Sends every console line still waiting and powers off: the one place the
    /// kernel waits for the UART. (The core reported the partitions' dropped lines
    /// before its last line; lines of the kernel's own dropped are reported last.)
    fn power_off(&mut self, clean: bool) -> ! {
        if let Some(lines) = self.console.take_dropped(Source::Kernel, true) {
            self.log(Event::KernelConsoleDropped { lines });
        }
        let machine = &mut self.machine;
        while !self.console.is_empty() {
            self.console.drain(|byte| machine.try_send(byte));
        }
        self.machine.power_off(clean)
    }
}

/// A kernel-wide value that one core at a time may use: a spin lock that also
/// catches a core re-entering it (a kernel bug) instead of deadlocking.
pub struct Global<T> {
    value: UnsafeCell<Option<T>>,
    /// 0 when free, else 1 + the holding core.
    holder: AtomicUsize,
}

// SAFETY: access goes through `with`, which hands out one `&mut T` at a time: the
// holder word is taken with an acquire compare-exchange and released with a release
// store, so the value is never reached from two cores at once.
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
            holder: AtomicUsize::new(0),
        }
    }

    /// Fills the slot (once, at boot, on core `cpu`) and runs `f` on the value.
    pub fn init<R>(&self, cpu: usize, value: T, f: impl FnOnce(&mut T) -> R) -> R {
        self.access(cpu, |slot| {
            assert!(slot.is_none(), "kernel state initialised twice");
            f(slot.insert(value))
        })
    }

    /// Runs `f` on core `cpu` with exclusive access to the value, waiting while
    /// another core has it.
    pub fn with<R>(&self, cpu: usize, f: impl FnOnce(&mut T) -> R) -> R {
        self.access(cpu, |slot| {
            f(slot.as_mut().expect("kernel state used before boot"))
        })
    }

    fn access<R>(&self, cpu: usize, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        let me = cpu + 1;
        while let Err(holder) =
            self.holder
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            assert!(holder != me, "kernel state re-entered on core {cpu}");
            core::hint::spin_loop();
        }
        // SAFETY: the holder word was 0 and is now ours, so no other reference exists.
        let result = f(unsafe { &mut *self.value.get() });
        self.holder.store(0, Ordering::Release);
        result
    }
}

impl<V: Vcpu, M: Machine> Global<Kernel<V, M>> {
    /// Drives core `cpu` from `step` until it has a partition to enter: while the
    /// kernel says to idle, waits with `wait` (see [`Global::idle`]) and asks again.
    #[inline(always)]
    pub fn until_runnable(
        &self,
        cpu: usize,
        mut step: Step,
        frame: &mut V::Frame,
        wait: impl Fn(u64),
    ) {
        while let Step::Idle(until_us) = step {
            self.idle(cpu, until_us, &wait);
            step = self.with(cpu, |kernel| kernel.resume(cpu, frame));
        }
    }

    /// Waits on core `cpu` until `until_us` without holding the kernel, with
    /// `wait` (the back end's wait until a time, on the [`Machine::now_us`]
    /// clock); while console bytes wait for the UART, in slices of
    /// [`DRAIN_SLICE_US`] with a drain between.
    pub fn idle(&self, cpu: usize, until_us: u64, wait: impl Fn(u64)) {
        loop {
            let (now_us, waiting) = self.with(cpu, |kernel| {
                kernel.drain_console();
                (kernel.machine.now_us(), kernel.console_waiting)
            });
            if now_us >= until_us {
                return;
            }
            wait(if waiting {
                until_us.min(now_us + DRAIN_SLICE_US)
            } else {
                until_us
            });
        }
    }
}
