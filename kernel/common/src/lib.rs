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
//! - `current[cpu]` names the partition whose registers are live on core `cpu` (in
//!   its trap frame and on the CPU); every other partition's state is in its
//!   [`Vcpu`]; a partition is only ever loaded on its own core;
//! - a partition that may not run (suspended, blocked, ended) is never live on a
//!   core once the core has settled: its registers are in its [`Vcpu`], where the
//!   service VM's `resume` and `restart` act on them;
//! - a restart rewrites a partition's RAM only while it is live on no core (the core
//!   defers a restart of a partition running elsewhere to that core);
//! - kernel state is reached only through [`Global::with`], one core at a time; a
//!   core that must wait (no partition to run) does so outside it.
#![cfg_attr(not(test), no_std)]

pub mod paging;

use paging::PAGE;
#[cfg(test)]
mod tests;

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use septum_abi::layout::{RAM_BASE, RECEIVE_WINDOW_BASE};
use septum_abi::{CapType, Error};
use septum_core::balloon::Balloon;
use septum_core::event::{Event, Fault};
use septum_core::flip::{Flip, Pages};
use septum_core::memory::{FreeRanges, Range};
use septum_core::package::{MAX_PARTITIONS, Package, PartitionSpec};
use septum_core::system::{
    CallRegisters, Decision, Dispatch, Effect, MAX_CPUS, Next, Platform, Reply, State, System,
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
    /// Applies to the core that calls it.
    fn set_deadline(&mut self, deadline_us: Option<u64>);
    /// A byte typed on the console, if one is waiting; never waits.
    fn receive(&mut self) -> Option<u8>;
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

/// The core's view of the machine: the console, RAM that the kernel maps at its
/// physical address, and the partitions' translation tables through their vCPUs.
struct IdentityRam<'a, M, V> {
    machine: &'a mut M,
    vcpus: &'a mut [V],
}

impl<M: Machine, V: Vcpu> Pages for IdentityRam<'_, M, V> {
    fn map_page(&mut self, partition: usize, guest: u64, frame: u64) {
        self.vcpus[partition].map_page(guest, frame);
    }

    fn unmap_page(&mut self, partition: usize, guest: u64) {
        self.vcpus[partition].unmap_page(guest);
    }

    fn flush_translations(&mut self, partition: usize) {
        self.vcpus[partition].flush_translations();
    }

    fn scrub_page(&mut self, frame: u64) {
        // SAFETY: the ledger scrubs only frames it tracks (partition RAM or the
        // kernel's pool), page-aligned and mapped in no partition at this moment;
        // both back ends map RAM at its physical address.
        unsafe { self.machine.zero_page(frame) };
    }

    fn copy(&mut self, from: u64, to: u64, len: u64) {
        // SAFETY: one side is a copy slot of kernel memory, the other a buffer the
        // core checked to lie in the partition's own present RAM pages; they never
        // overlap. RAM is mapped at its physical address.
        unsafe { core::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, len as usize) };
    }
}

impl<M: Machine, V> fmt::Write for IdentityRam<'_, M, V> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.machine.write_str(s)
    }
}

impl<M: Machine, V: Vcpu> Platform for IdentityRam<'_, M, V> {
    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]) {
        // SAFETY: the core passes only ranges it checked to lie inside a partition's
        // RAM; both back ends map all RAM at its physical address as normal memory.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buffer.as_mut_ptr(), buffer.len())
        };
    }

    fn write_ram(&mut self, addr: u64, bytes: &[u8]) {
        // SAFETY: as for `read_ram`: a range the core checked to lie inside a
        // partition's RAM, which is never kernel memory.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }

    fn now_us(&mut self) -> u64 {
        self.machine.now_us()
    }
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
}

impl<V: Vcpu, M: Machine> Kernel<V, M> {
    /// A kernel about to start `system`, which was loaded from `package`.
    pub fn new(
        system: System,
        vcpus: heapless::Vec<V, MAX_PARTITIONS>,
        machine: M,
        package: Package<'static>,
    ) -> Self {
        Kernel {
            system,
            vcpus,
            current: [None; MAX_CPUS],
            machine,
            package,
        }
    }

    /// Starts the system (the service VM first, on its core).
    pub fn start(&mut self, frame: &mut V::Frame) -> Step {
        let cpu = self.system.service_cpu();
        let next = self.system.start(&mut IdentityRam {
            machine: &mut self.machine,
            vcpus: &mut self.vcpus,
        });
        self.settle(cpu, next, frame, true)
    }

    /// Called by core `cpu` when it has nothing loaded yet or has waited: what it
    /// runs now.
    pub fn resume(&mut self, cpu: usize, frame: &mut V::Frame) -> Step {
        self.check_time(cpu);
        let next = self.system.pick(
            cpu,
            self.current[cpu],
            &mut IdentityRam {
                machine: &mut self.machine,
                vcpus: &mut self.vcpus,
            },
        );
        self.settle(cpu, next, frame, true)
    }

    /// What the kernel does whenever a core reads the clock anyway (a turn ended, or
    /// an idle wait did): hands typed bytes to the core and checks the watchdogs of
    /// the core's partitions.
    fn check_time(&mut self, cpu: usize) {
        let mut platform = IdentityRam {
            machine: &mut self.machine,
            vcpus: &mut self.vcpus,
        };
        while let Some(byte) = platform.machine.receive() {
            self.system.console_input(byte, &mut platform);
        }
        let now_us = platform.machine.now_us();
        if let Some(effect) = self.system.check_watchdogs(cpu, now_us, &mut platform) {
            self.apply(cpu, effect);
        }
    }

    /// Does the memory and vCPU work the core asked for.
    fn apply(&mut self, cpu: usize, effect: Effect) {
        match effect {
            Effect::Reload(index, generation) => {
                let partition = &self.system.partitions()[index];
                let (ram, guest) = (partition.host_ram(), partition.guest_ram());
                let image = self
                    .package
                    .partitions()
                    .nth(index)
                    .expect("the system was built from this package")
                    .image;
                // Page by page: a restart may have given the partition substitute
                // frames for pages a receiver still holds (see septum_core::flip).
                for offset in (0..ram.size()).step_by(PAGE as usize) {
                    let frame = self.system.ram_frame(index, guest.start + offset);
                    let start = (offset as usize).min(image.len());
                    let chunk = &image[start..(start + PAGE as usize).min(image.len())];
                    // SAFETY: `frame` backs a page of this partition's RAM, which is
                    // live on no core (the core defers restarts of a partition
                    // running elsewhere, and the frame of this core is forgotten
                    // below); both back ends map RAM at its physical address.
                    unsafe {
                        self.machine.zero_page(frame);
                        core::ptr::copy_nonoverlapping(
                            chunk.as_ptr(),
                            frame as *mut u8,
                            chunk.len(),
                        );
                    }
                    if !chunk.is_empty() {
                        let code =
                            Range::from_start_size(frame, chunk.len() as u64).expect("inside RAM");
                        self.machine.code_written(code);
                    }
                }
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
        let mut platform = IdentityRam {
            machine: &mut self.machine,
            vcpus: &mut self.vcpus,
        };
        self.system.read_guest(index, guest, buffer, &mut platform)
    }

    /// Handles one trap from the partition running on core `cpu`. `frame` holds its
    /// registers and, on return, those of whichever partition runs next there.
    pub fn on_trap(&mut self, cpu: usize, trap: Trap, frame: &mut V::Frame) -> Step {
        let current = self.current[cpu].expect("a trap comes from a running partition");
        if matches!(trap, Trap::Preempted) {
            self.check_time(cpu);
        }
        let mut platform = IdentityRam {
            machine: &mut self.machine,
            vcpus: &mut self.vcpus,
        };
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
    /// power-off.
    ///
    /// The deadline is armed only when a turn begins (`new_turn`: at start, after a
    /// preemption or a wait, or on a switch). A partition that traps and continues
    /// keeps the rest of its turn: calling the kernel never buys it more time, and the
    /// common hypercall path reads no clock and programs no timer.
    #[inline(always)]
    fn settle(&mut self, cpu: usize, next: Next, frame: &mut V::Frame, new_turn: bool) -> Step {
        let machine = &mut self.machine;
        match self.system.decide(next, cpu, || machine.now_us()) {
            Decision::PowerOff { clean } => self.machine.power_off(clean),
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
                    && self.system.partitions()[previous].state() != State::Runnable
                {
                    self.vcpus[previous].store(frame);
                    self.current[cpu] = None;
                    self.system.note_loaded(cpu, None);
                }
                Step::Idle(until_us)
            }
        }
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
    /// kernel says to idle, waits with `idle` (not holding the kernel) and asks again.
    #[inline(always)]
    pub fn until_runnable(
        &self,
        cpu: usize,
        mut step: Step,
        frame: &mut V::Frame,
        idle: impl Fn(u64),
    ) {
        while let Step::Idle(until_us) = step {
            idle(until_us);
            step = self.with(cpu, |kernel| kernel.resume(cpu, frame));
        }
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
    /// Its receive window as it sees it (at
    /// [`RECEIVE_WINDOW_BASE`](septum_abi::layout::RECEIVE_WINDOW_BASE)); empty if
    /// it receives on no queue. Nothing is mapped there at boot.
    pub receive_window: Range,
    /// Whether its RAM and receive window are mapped page by page, with every
    /// last-level table allocated at boot, so that [`Vcpu::map_page`] and
    /// [`Vcpu::unmap_page`] work on them. True for a partition holding a queue end
    /// or a balloon.
    pub page_granular: bool,
    /// Its balloon memory above its RAM at entry, up to its maximum, as it sees
    /// it: nothing is mapped there at boot, but every level-3 table is allocated
    /// (empty without a balloon).
    pub balloon_holes: Range,
}

/// Maps a partition's second-stage tables: its RAM with `ram` attributes at its
/// guest-physical base, and each MMIO block of its granted devices with `device`
/// attributes at the block's own address. Nothing else. A page-granular partition's
/// RAM is mapped with 4 KiB pages only, and the level-3 tables of its receive
/// window are allocated with nothing mapped, so [`Vcpu::map_page`] and
/// [`Vcpu::unmap_page`] find a table for every page of either. Panics with the
/// partition's name if a mapping is refused: this runs at boot, and a system whose
/// grants cannot be mapped must not start.
pub fn map_grants<F: paging::Format, const N: usize>(
    tables: &mut paging::Tables<F>,
    frames: &mut FreeRanges<N>,
    spec: &PartitionSpec<'_>,
    placement: Placement,
    ram: u64,
    device: u64,
) {
    let (guest, host) = (placement.guest_ram, placement.host_ram.start);
    let mapped = if placement.page_granular {
        tables.map_pages(frames, guest, host, ram)
    } else {
        tables.map(frames, guest, host, ram)
    };
    mapped.unwrap_or_else(|e| panic!("cannot map the RAM of {}: {e:?}", spec.name));
    if placement.page_granular && !placement.receive_window.is_empty() {
        tables
            .reserve(frames, placement.receive_window)
            .unwrap_or_else(|e| {
                panic!("cannot reserve the receive window of {}: {e:?}", spec.name)
            });
    }
    if !placement.balloon_holes.is_empty() {
        tables
            .reserve(frames, placement.balloon_holes)
            .unwrap_or_else(|e| {
                panic!("cannot reserve the balloon memory of {}: {e:?}", spec.name)
            });
    }
    for block in spec.resources.mmio() {
        let range = Range::from_start_size(block.base, block.size).expect("checked by the package");
        tables
            .map(frames, range, block.base, device)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot map device {:#x} into {}: {e:?}",
                    block.base, spec.name
                )
            });
    }
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
            receive_window: Range::from_start_size(
                RECEIVE_WINDOW_BASE,
                spec.resources.receive_window,
            )
            .expect("window size checked by the package"),
            page_granular: spec.caps.iter().flatten().any(|cap| {
                matches!(
                    cap.ty,
                    CapType::QueueSend | CapType::QueueReceive | CapType::Balloon
                )
            }),
            balloon_holes: if spec.balloon() {
                Range::from_start_size(
                    RAM_BASE + spec.ram_size,
                    spec.resources.memory_max - spec.ram_size,
                )
                .expect("limits checked by the package")
            } else {
                Range::default()
            },
        };
        let vcpu = make_vcpu(index, &spec, placement, frames);
        // Cannot fail: a valid package has at most MAX_PARTITIONS partitions.
        let _ = vcpus.push(vcpu);
        let _ = host_ram.push(ram);
    }
    let flip_memory = match Flip::kernel_memory(package.queues()) {
        0 => Range::default(),
        size => frames
            .allocate(size, PAGE)
            .expect("RAM for the queues' pool and copy slots"),
    };
    // SAFETY: the range was free and is now the kernel's alone; RAM is mapped at its
    // physical address.
    unsafe { core::ptr::write_bytes(flip_memory.start as *mut u8, 0, flip_memory.size() as usize) };
    let balloon_specs = septum_core::balloon::specs(package, &host_ram);
    let words = Balloon::words_needed(&balloon_specs);
    let balloon_words: &'static mut [u32] = if words == 0 {
        &mut []
    } else {
        let memory = frames
            .allocate((words as u64 * 4).next_multiple_of(PAGE), PAGE)
            .expect("RAM for the balloon's map and pool");
        // SAFETY: the range was free and is now the kernel's alone, for as long as
        // the kernel runs; RAM is mapped at its physical address, page-aligned
        // (so aligned for u32), and it is zeroed here before the slice exists.
        unsafe {
            core::ptr::write_bytes(memory.start as *mut u8, 0, memory.size() as usize);
            core::slice::from_raw_parts_mut(memory.start as *mut u32, words)
        }
    };
    let system = System::with_balloon(package, RAM_BASE, &host_ram, flip_memory, balloon_words)
        .expect("placements match the package");
    (system, vcpus)
}
