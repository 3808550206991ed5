//! What both back ends share, above the registers and below the portable core.
//!
//! At boot, [`load_partitions`] places every partition in RAM the same way on both
//! architectures. A back end traps, classifies the trap into a [`Trap`], and calls
//! [`Kernel::on_trap`]. The core decides ([`System::handle`]); the kernel carries
//! its [`Outcome`] out through the back end's [`Vcpu`], [`AddressSpace`] and
//! [`Machine`], in the order the outcome gives: reply registers, instruction skips,
//! vCPU stores and loads, resets, deadlines, kicks of other cores, power off. So
//! the scheduling and dispatch logic exists once, in the core, and each back end
//! implements only the architecture.
//!
//! The console: once partitions run, the kernel never waits for the UART. Every
//! line goes into the core's console ring, which the kernel drains as far as the
//! UART takes bytes whenever it settles a core, when it idles, and (where the back
//! end has one) on the transmitter's interrupt.
//!
//! The trace ([`trace`]): each entry into the kernel records its trap (before the
//! core handles it) or its hypercall with the status it got, and the outcome's
//! store and load record a vCPU leaving and coming onto the core; the core's
//! supervision events are recorded through `Platform::traced`. Each is one
//! bounded write into the core's own ring; the rings go out when the system
//! powers off, after the last console line is queued.
//!
//! Invariants:
//! - the core's `loaded` table (`System::loaded`) names the vCPU whose registers
//!   are live on each core (in its trap frame and on the CPU); every other vCPU's
//!   state is in its [`Vcpu`], where resets and skips act on it; the kernel keeps
//!   no second copy of that table;
//! - kernel state is reached only through [`Global::with`], one core at a time; a
//!   core that must wait (no vCPU to run) does so outside it, asleep until its
//!   deadline or a kick ([`Global::idle`]), never spinning on the lock;
//! - each core counts its own acquisitions of the lock, and those that found it
//!   held ([`LOCK_COUNTS`]): only that core writes its counters.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arena;
mod load;
pub mod log;
pub mod paging;
mod platform;
pub mod relocate;
pub mod self_test;
pub mod table_check;
#[cfg(test)]
mod tests;
pub mod trace;
mod uart;

pub use load::{
    FixedPlacements, Placement, claim_fixed_placements, console_output, load_partitions, map_grants,
};
pub use septum_core::system::{Run, Trap};
pub use table_check::report_table_checks;
pub use uart::{Console, Uart};

use core::cell::UnsafeCell;
use core::fmt;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use alloc::boxed::Box;
use platform::identity_ram;
use septum_abi::Error;
use septum_core::console::output::{Output, Source};
use septum_core::event::Event;
use septum_core::memory::Range;
use septum_core::package::Package;
use septum_core::system::{Completed, Effect, Entry, MAX_CPUS, Outcome, Reply, System, TurnEnd};
use septum_core::trace::{Kind, NONE, Note};
use septum_core::vgic::{Access, ListEntry};

/// One vCPU, as the back end keeps it.
pub trait Vcpu {
    /// The registers the trap entry saved, which the exit path restores.
    type Frame;
    /// The second-stage translation of its partition, shared by its vCPUs.
    type Space: AddressSpace;

    /// Puts the hypercall reply in the caller's registers.
    fn set_reply(frame: &mut Self::Frame, reply: Reply);
    /// Moves the trapped vCPU past the instruction that trapped (the trap left
    /// its program counter on it).
    fn skip_instruction(frame: &mut Self::Frame);
    /// Saves the running vCPU's state (from `frame` and the CPU) into `self`.
    fn store(&mut self, frame: &Self::Frame);
    /// Makes `self` the running vCPU: its state goes on the CPU and in `frame`, and
    /// it translates through `space`, its partition's.
    fn load(&mut self, space: &Self::Space, frame: &mut Self::Frame);
    /// Puts the stored state back to the partition's entry state (see the README,
    /// "Partition entry state"), with `generation` in the third argument register.
    /// Called only while the vCPU is not live on any core.
    fn restart(&mut self, generation: u32);
    /// Puts the stored state to the entry state of a vCPU started by its
    /// partition: at `entry`, with `context` in the first argument register.
    /// Called only while the vCPU is not live on any core.
    fn power_on(&mut self, entry: u64, context: u64);
    /// Moves the stored program counter `length` bytes on, past a trapped
    /// instruction. Called only while the vCPU is not live on any core.
    fn skip_stored(&mut self, length: u8);
    /// Makes the stored vCPU take an undefined-instruction exception at the
    /// instruction it trapped on, in its own exception vectors, when it next
    /// runs. The core asks only for a partition that has such vectors (a Linux
    /// partition); called only while the vCPU is not live on any core.
    fn take_undefined(&mut self);
    /// Refills the list registers of this vCPU, which is live on this core:
    /// `fill` gets what they hold now and puts pending interrupts in free
    /// entries (`System::refill`); if it reports that some did not fit, the
    /// back end asks for an interrupt when entries free up, else stops asking.
    /// A back end without virtual interrupt controllers does nothing.
    fn refill_interrupts(&mut self, fill: impl FnOnce(&mut [ListEntry]) -> bool);
}

/// A partition's second-stage translation tables.
pub trait AddressSpace {
    /// Maps guest page `guest` to machine frame `frame` as normal RAM. Only for
    /// pages of a page-granular partition's RAM or receive window (see
    /// [`Placement`]), whose last-level tables exist since boot: it never
    /// allocates and cannot fail. The page must be unmapped.
    fn map_page(&mut self, guest: u64, frame: u64);
    /// Unmaps guest page `guest` (same rule as [`AddressSpace::map_page`]). The
    /// partition may still reach the frame through cached translations until
    /// [`AddressSpace::flush_translations`].
    fn unmap_page(&mut self, guest: u64);
    /// Makes every [`AddressSpace::unmap_page`] so far take effect before the
    /// partition next touches memory, on whichever core it runs. (Only
    /// partitions of one vCPU change their mappings at run time: the package's
    /// rule.)
    fn flush_translations(&mut self);
    /// Turns the partition's translation on or off for its vCPUs from their next
    /// load (a devirtualizable partition, whose RAM is placed identity), and
    /// drops every cached translation of it on every core.
    fn set_translation(&mut self, on: bool);
    /// Runs `work` with these tables and machine memory as relocation drives
    /// them ([`relocate::RelocatableTables`]); only for a devirtualizable
    /// partition, whose RAM is mapped with pages.
    fn relocation_machine(
        &mut self,
        work: &mut dyn FnMut(&mut dyn septum_core::relocation::Machine),
    );
}

/// The machine under the kernel: console, power, the clock that drives the
/// schedule, and the other cores. Its [`fmt::Write`] writes the console
/// synchronously, for boot only.
pub trait Machine: fmt::Write {
    /// Waits for the console to drain and powers off; halts if it cannot.
    fn power_off(&mut self, clean: bool) -> !;
    /// Microseconds since an arbitrary point at boot; never goes backwards.
    fn now_us(&mut self) -> u64;
    /// Starts a turn that ends as `end` says: at a time (on the
    /// [`Machine::now_us`] clock), when the kernel takes the CPU back with
    /// [`Trap::Preempted`]; after the back end's round-robin time slice
    /// ([`TurnEnd::Slice`]); or never ([`TurnEnd::Never`]: the kernel's timer
    /// stays quiet until the next turn). Other traps during the turn do not
    /// change its end. Applies to the core that calls it.
    fn set_deadline(&mut self, end: TurnEnd);
    /// Interrupts core `cpu` if it runs a vCPU, so that it enters the kernel with
    /// [`Trap::Kicked`] (at once, or at its next entry into a vCPU).
    fn kick(&mut self, cpu: usize);
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

/// Everything the kernel keeps after boot.
pub struct Kernel<V: Vcpu, M> {
    /// Partitions, vCPUs and their states.
    pub system: System,
    /// Every vCPU, in the core's order (`System::vcpus`).
    pub vcpus: Box<[V]>,
    /// Each partition's translation tables, in package order.
    pub spaces: Box<[V::Space]>,
    /// The console, clock and power control.
    pub machine: M,
    /// The system package, whose images restarts reload.
    pub package: Package<'static>,
    /// Console lines the UART has not taken yet.
    console: Output,
    /// Whether the back end was last told that bytes wait for the UART.
    console_waiting: bool,
    /// What each core did, sent out when the system ends.
    trace: trace::Trace,
}

/// Per core: how often it took the kernel lock ([`Global`]), and how often it
/// found another core holding it. Only that core writes them (plain loads and
/// stores, no read-modify-write on a shared line); the core reports them at
/// shutdown (`@@ kernel locks`).
pub static LOCK_COUNTS: [LockCount; MAX_CPUS] = [const { LockCount::new() }; MAX_CPUS];

/// One core's counts of the kernel lock (see [`LOCK_COUNTS`]).
#[derive(Debug)]
pub struct LockCount {
    taken: AtomicU64,
    contended: AtomicU64,
}

impl LockCount {
    const fn new() -> Self {
        LockCount {
            taken: AtomicU64::new(0),
            contended: AtomicU64::new(0),
        }
    }

    /// Acquisitions, and acquisitions that found the lock held.
    pub fn get(&self) -> (u64, u64) {
        (
            self.taken.load(Ordering::Relaxed),
            self.contended.load(Ordering::Relaxed),
        )
    }

    /// Counts one acquisition (by the core that owns these counts).
    fn count(&self, contended: bool) {
        let bump = |counter: &AtomicU64| {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
        };
        bump(&self.taken);
        if contended {
            bump(&self.contended);
        }
    }
}

/// While console bytes wait, an idle core drains the console at least this often
/// (µs): under 16 bytes' time at 115,200 baud.
const DRAIN_SLICE_US: u64 = 100;

impl<V: Vcpu, M: Machine> Kernel<V, M> {
    /// A kernel about to start `system`, which was loaded from `package` (with
    /// `spaces` and `vcpus` from [`load_partitions`]), with `console` for its
    /// console lines and `trace` for its trace ([`trace::trace_rings`]).
    pub fn new(
        system: System,
        spaces: Box<[V::Space]>,
        vcpus: Box<[V]>,
        machine: M,
        package: Package<'static>,
        console: Output,
        trace: trace::Trace,
    ) -> Self {
        Kernel {
            system,
            vcpus,
            spaces,
            machine,
            package,
            console,
            console_waiting: false,
            trace,
        }
    }

    /// Starts the system on the boot core (the service VM's): the service VM
    /// first.
    pub fn start(&mut self, frame: &mut V::Frame) -> Run {
        let cpu = self.system.service_cpu();
        self.enter(cpu, Entry::Start, frame)
    }

    /// Called by core `cpu` when it holds no vCPU (at bring-up, after an idle
    /// wait): what it runs now.
    pub fn resume(&mut self, cpu: usize, frame: &mut V::Frame) -> Run {
        self.take_console_news();
        self.enter(cpu, Entry::Resume, frame)
    }

    /// Handles one trap from the vCPU running on core `cpu`. `frame` holds its
    /// registers and, on return, those of whichever vCPU runs next there.
    pub fn on_trap(&mut self, cpu: usize, trap: &Trap, frame: &mut V::Frame) -> Run {
        if matches!(trap, Trap::Preempted) {
            self.take_console_news();
        }
        self.enter(cpu, Entry::Trap(trap), frame)
    }

    /// Core `cpu` enters the core with `entry`; the kernel carries out its answer.
    #[inline(always)]
    fn enter(&mut self, cpu: usize, entry: Entry<'_>, frame: &mut V::Frame) -> Run {
        let mut outcome = Outcome::new();
        // The trapped vCPU as its records name it, looked up once.
        let trapped = self.traced_as(self.system.loaded(cpu));
        if let Entry::Trap(trap) = entry
            && let Some(note) = Note::of_trap(trap)
        {
            let now_us = self.machine.now_us();
            self.trace(cpu, trapped, note, now_us);
        }
        self.system.handle(
            cpu,
            entry,
            &mut identity_ram!(self, Some(cpu)),
            &mut outcome,
        );
        // What the entry did is recorded at one time, read once.
        let call = match entry {
            Entry::Trap(Trap::Hypercall(call)) => Some(call),
            _ => None,
        };
        let switched = outcome.store.is_some() || outcome.load.is_some();
        let done_us = if call.is_some() || switched {
            self.machine.now_us()
        } else {
            0
        };
        if let Some(call) = call {
            let (call, detail) = Note::of_call(call, outcome.reply.as_ref());
            self.trace(cpu, trapped, call, done_us);
            if let Some(detail) = detail {
                self.trace(cpu, trapped, detail, done_us);
            }
        }
        self.carry_out(cpu, done_us, &outcome, frame)
    }

    /// How trace records name `vcpu` (if any): its partition's index and its
    /// own, or [`NONE`].
    fn traced_as(&self, vcpu: Option<usize>) -> (u8, u8) {
        vcpu.map_or((NONE, NONE), |vcpu| {
            let partition = self.system.vcpus()[vcpu].partition();
            let byte = |index: usize| u8::try_from(index).unwrap_or(NONE);
            (byte(partition), byte(vcpu))
        })
    }

    /// Records `note` about `partition` and `vcpu` (as [`Kernel::traced_as`]
    /// gives them) in core `cpu`'s trace ring, at `now_us`.
    fn trace(&mut self, cpu: usize, (partition, vcpu): (u8, u8), note: Note, now_us: u64) {
        self.trace.push(cpu, &note.at(now_us, partition, vcpu));
    }

    /// The vCPU whose registers are live on core `cpu`, if any (the core's table).
    pub fn loaded(&self, cpu: usize) -> Option<usize> {
        self.system.loaded(cpu)
    }

    /// vCPU 0 of partition `partition`: the one that takes its device interrupts.
    pub fn first_vcpu(&self, partition: usize) -> usize {
        self.system.partitions()[partition].vcpus().start
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
    /// an idle wait did): hands typed bytes to the core and reports console lines
    /// dropped for want of room. (The core checks the watchdogs itself.)
    fn take_console_news(&mut self) {
        let mut platform = identity_ram!(self);
        while let Some(byte) = platform.machine.receive() {
            self.system.console_input(byte, &mut platform);
        }
        self.system.report_console_drops(&mut platform);
        if let Some(lines) = platform.console.take_dropped(Source::Kernel, false) {
            let _ = writeln!(platform, "{}", Event::KernelConsoleDropped { lines });
        }
    }

    /// The fast lane (see the core's `virt.rs`): a trapped access by the vCPU
    /// live on core `cpu` to guest-physical `address`, `width` bytes wide. What
    /// the kernel did if it emulated it (the value a load reads; whether the
    /// back end must enter the full path as for [`Trap::Kicked`] once it has
    /// completed the access); then the vCPU's new interrupts are in its list
    /// registers and the cores of its siblings that got one are kicked. `None`:
    /// the trap takes the full path.
    pub fn emulate_access(
        &mut self,
        cpu: usize,
        address: u64,
        width: u8,
        access: Access,
    ) -> Option<Completed> {
        let vcpu = self.system.loaded(cpu)?;
        let completed =
            self.system
                .emulate_access(vcpu, address, width, access, &mut identity_ram!(self))?;
        if completed.interrupts {
            self.after_fast_lane(cpu, vcpu);
        } else if !self.console.is_empty() {
            self.drain_console();
        }
        Some(completed)
    }

    /// The fast lane for a trapped write of `value` to the SGI register by the
    /// vCPU live on core `cpu`: whether the kernel handled it.
    pub fn send_sgi(&mut self, cpu: usize, value: u64) -> bool {
        let Some(vcpu) = self.system.loaded(cpu) else {
            return false;
        };
        let sent = self.system.send_sgi(vcpu, value);
        if sent {
            self.after_fast_lane(cpu, vcpu);
        }
        sent
    }

    /// The vCPU live on core `cpu` has private interrupt `intid` (its virtual
    /// timer's); false if it has no virtual interrupt controller.
    pub fn raise_private(&mut self, cpu: usize, intid: u32) -> bool {
        let Some(vcpu) = self.system.loaded(cpu) else {
            return false;
        };
        let raised = self.system.raise_private(vcpu, intid);
        if raised {
            self.sync_interrupts(vcpu, false);
        }
        raised
    }

    /// The list registers of the vCPU live on core `cpu` have room (the
    /// maintenance interrupt): refilled.
    pub fn lists_have_room(&mut self, cpu: usize) {
        if let Some(vcpu) = self.system.loaded(cpu) {
            self.sync_interrupts(vcpu, true);
        }
    }

    /// After the fast lane acted for `vcpu` on `cpu`: its own new interrupts into
    /// its list registers, the other cores that got one kicked, console lines
    /// on their way.
    fn after_fast_lane(&mut self, cpu: usize, vcpu: usize) {
        self.sync_interrupts(vcpu, false);
        let kick = self.system.take_interrupted(cpu);
        for other in (0..MAX_CPUS).filter(|other| kick & (1 << other) != 0) {
            self.machine.kick(other);
        }
        if !self.console.is_empty() {
            self.drain_console();
        }
    }

    /// Puts `vcpu`'s pending virtual interrupts in its list registers, if it has
    /// any (or, `always`, to stop asking for room once nothing waits).
    #[inline(always)]
    fn sync_interrupts(&mut self, vcpu: usize, always: bool) {
        if always || self.system.wants_refill(vcpu) {
            let system = &mut self.system;
            self.vcpus[vcpu].refill_interrupts(|lists| system.refill(vcpu, lists));
        }
    }

    /// Copies partition `index`'s memory at guest address `guest` into `buffer`
    /// from the frames that back it now (see [`System::read_guest`]).
    pub fn read_guest(&mut self, index: usize, guest: u64, buffer: &mut [u8]) -> Result<(), Error> {
        self.system
            .read_guest(index, guest, buffer, &mut identity_ram!(self))
    }

    /// Carries out what the core decided, in the order [`Outcome`] gives
    /// (recording a vCPU's leaving and coming onto core `cpu` at `done_us`), and
    /// drains the console before the core leaves the kernel.
    #[inline(always)]
    fn carry_out(
        &mut self,
        cpu: usize,
        done_us: u64,
        outcome: &Outcome,
        frame: &mut V::Frame,
    ) -> Run {
        if let Some(reply) = outcome.reply {
            V::set_reply(frame, reply);
        }
        if outcome.skip {
            V::skip_instruction(frame);
        }
        if let Some(vcpu) = outcome.store {
            self.vcpus[vcpu].store(frame);
            let left = self.traced_as(Some(vcpu));
            self.trace(cpu, left, Note::switch(Kind::Leave), done_us);
        }
        for effect in &outcome.effects {
            match *effect {
                Effect::Restart { vcpu, generation } => self.vcpus[vcpu].restart(generation),
                Effect::Skip { vcpu, length } => self.vcpus[vcpu].skip_stored(length),
                Effect::Undefined { vcpu } => self.vcpus[vcpu].take_undefined(),
                Effect::PowerOn {
                    vcpu,
                    entry,
                    context,
                } => self.vcpus[vcpu].power_on(entry, context),
            }
        }
        if let Some(vcpu) = outcome.load {
            let space = &self.spaces[self.system.vcpus()[vcpu].partition()];
            self.vcpus[vcpu].load(space, frame);
            let entered = self.traced_as(Some(vcpu));
            self.trace(cpu, entered, Note::switch(Kind::Enter), done_us);
        }
        if let Some(end) = outcome.turn {
            self.machine.set_deadline(end);
        }
        if outcome.kick != 0 {
            for cpu in (0..MAX_CPUS).filter(|cpu| outcome.kick & (1 << cpu) != 0) {
                self.machine.kick(cpu);
            }
        }
        if let Run::PowerOff { clean } = outcome.run {
            self.power_off(clean);
        }
        if let Run::Vcpu(vcpu) = outcome.run {
            self.sync_interrupts(vcpu, false);
        }
        if !self.console.is_empty() {
            self.drain_console();
        }
        outcome.run
    }

    /// Sends every console line still waiting and powers off: the one place the
    /// kernel waits for the UART. (The core reported the partitions' dropped lines
    /// before its last line; lines of the kernel's own dropped are reported last.)
    fn power_off(&mut self, clean: bool) -> ! {
        if let Some(lines) = self.console.take_dropped(Source::Kernel, true) {
            self.log(Event::KernelConsoleDropped { lines });
        }
        self.trace.send_out();
        defmt::info!("shutdown clean={=bool}", clean);
        let machine = &mut self.machine;
        while !self.console.is_empty() {
            self.console.drain(|byte| machine.try_send(byte));
        }
        self.machine.power_off(clean)
    }
}

/// One turn of a spin on a lock another core holds. On aarch64 the `yield`
/// hint, which QEMU's round-robin emulation of several cores (the one `-icount`
/// uses) takes as a cue to run another core: with the standard spin hint
/// (`isb`) a core could spin away every turn it got while the holder was paused
/// between turns inside the lock, at the same point each time, and never get
/// it (a secondary core never came up beside a benchmark trapping in a loop).
/// Elsewhere the standard spin hint.
#[inline(always)]
pub(crate) fn relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `yield` is a hint: it touches no memory, register or flag.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// Why a back end's idle wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// Its time came (or something else woke the core: it looks at the time).
    Time,
    /// Another core kicked it ([`Machine::kick`]): it asks the kernel again at
    /// once.
    Kicked,
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
        let mut contended = false;
        while let Err(holder) =
            self.holder
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            assert!(holder != me, "kernel state re-entered on core {cpu}");
            contended |= holder != 0;
            relax();
        }
        if let Some(counts) = LOCK_COUNTS.get(cpu) {
            counts.count(contended);
        }
        // SAFETY: the holder word was 0 and is now ours, so no other reference exists.
        let result = f(unsafe { &mut *self.value.get() });
        self.holder.store(0, Ordering::Release);
        result
    }
}

impl<V: Vcpu, M: Machine> Global<Kernel<V, M>> {
    /// Drives core `cpu` from `run` until it has a vCPU to enter: while the
    /// kernel says to idle, waits with `wait` (see [`Global::idle`]) and asks again.
    #[inline(always)]
    pub fn until_runnable(
        &self,
        cpu: usize,
        mut run: Run,
        frame: &mut V::Frame,
        wait: impl Fn(u64) -> Woken,
    ) {
        while let Run::Idle { until_us } = run {
            self.idle(cpu, until_us, &wait);
            run = self.with(cpu, |kernel| kernel.resume(cpu, frame));
        }
    }

    /// Waits on core `cpu` until `until_us`, or until another core kicks it,
    /// without holding the kernel, with `wait` (the back end's sleep until a
    /// time, on the [`Machine::now_us`] clock, or until a kick); while console
    /// bytes wait for the UART, in slices of [`DRAIN_SLICE_US`] with a drain
    /// between. The kernel is taken once per slice, never while asleep.
    pub fn idle(&self, cpu: usize, until_us: u64, wait: impl Fn(u64) -> Woken) {
        loop {
            let (now_us, waiting) = self.with(cpu, |kernel| {
                kernel.drain_console();
                (kernel.machine.now_us(), kernel.console_waiting)
            });
            if now_us >= until_us {
                return;
            }
            let woken = wait(if waiting {
                until_us.min(now_us + DRAIN_SLICE_US)
            } else {
                until_us
            });
            if woken == Woken::Kicked {
                return;
            }
        }
    }
}
