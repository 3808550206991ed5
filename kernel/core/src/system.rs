//! The partitions of a running system and the hypercall dispatcher.
//!
//! The back end traps, reads the guest's registers and enters the core with
//! [`System::handle`] (`run.rs`); the core answers with an [`Outcome`]: what the
//! vCPU that trapped gets back, what the back end must do to stored vCPUs, and
//! what [`Run`]s next. Effects that need the hardware (reading guest RAM, writing
//! the console) go through the [`Platform`] trait, so everything here runs on the
//! host.
//!
//! Invariants:
//! - **decode, then invoke**: [`System::hypercall`] validates the call number, the
//!   capability the call names (slot, type, right) and every argument before it
//!   changes any state;
//! - capability tables are fixed at boot: no call adds, copies or widens one;
//! - **service VM first**: guest partitions stay [`State::Waiting`] until the service VM
//!   has called `ready`; no guest is ever chosen to run before that;
//! - a vCPU runs only while its partition is [`State::Running`] and it is ready: a
//!   suspended, exited or stopped partition's vCPUs and a blocked vCPU are never
//!   chosen, and a suspended guest runs again only when the service VM resumes or
//!   restarts it (see [`supervise`](self::supervise));
//! - kernel work a partition caused that is too long for one trap (reloading its
//!   RAM after a restart, scrubbing the balloon pages it gave up) is work it
//!   **owes**: the kernel does it a page at a time in that partition's own turns,
//!   before it runs again ([`System::work`]), so it never comes out of another
//!   partition's window; a partition that owes work gets its turns even when it
//!   may not run;
//! - with a schedule, a partition runs only inside its own time windows and no
//!   longer than the window's end; time nobody may use is idle (see `run.rs`);
//! - guest console output always goes through the vCPU's [`LineBuffer`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use septum_abi::Error;

use crate::audit::AuditRing;
use crate::balloon::{self as balloon_memory, Balloon, BalloonError};
use crate::console::LineBuffer;
use crate::event::Event;
use crate::flip::{Flip, FlipError, Pages};
use crate::memory::Range;
use crate::net::Router;
use crate::package::{Package, Profile};
use crate::relocation::Machine;
use crate::schedule::{Schedule, ScheduleError};
use crate::usage::{DEFAULT_FRAME_US, Usage};
use crate::virtio::Devices;
use lifecycle::Lifecycle;
use partition::Label;
pub use virt::Completed;
use virt::VirtualMachine;

mod balloon;
mod calls;
mod devirt;
mod dispatch;
mod events;
mod guest_memory;
pub mod lifecycle;
mod net;
mod partition;
mod psci;
mod queues;
mod run;
mod supervise;
mod transitions;
mod usage;
mod virt;
mod virtio;
mod work;
pub use crate::event::Resumption;
pub use crate::resources::MAX_CPUS;
pub use dispatch::DENIED_LINES;
pub use events::{ESCAPE, Events};
pub use lifecycle::{State, VcpuState, WaitOn};
pub use partition::{Partition, VcpuSlot};
pub use run::{
    Effect, Entry, MAX_EFFECTS, Outcome, POLL_US, Run, Trap, TurnEnd, VCPU_SLICE_US, WORK_SLICE_US,
};
pub use supervise::TRAP_LINES;

/// What the core needs from the machine: the console, the clock, partition RAM,
/// and (for page flips) the second-stage mappings. Its [`fmt::Write`] takes the
/// kernel's own console lines.
pub trait Platform: fmt::Write + Pages {
    /// Takes console text partition `partition` printed (whole lines, already
    /// prefixed and sanitised by its [`LineBuffer`]).
    fn write_guest(&mut self, partition: usize, text: &str);
    /// Lines of `partition` the console had no room for since last asked, once
    /// the rest of its lines have gone out, or at once if `now` (see
    /// [`Output::take_dropped`](crate::console::output::Output::take_dropped)).
    fn take_console_dropped(&mut self, partition: usize, now: bool) -> Option<u64>;
    /// Copies `buffer.len()` bytes of RAM at host-physical `addr` into `buffer`.
    /// The core calls this only for ranges it has checked to lie inside a
    /// partition's RAM.
    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]);
    /// Copies `bytes` to RAM at host-physical `addr`; the same rule applies.
    fn write_ram(&mut self, addr: u64, bytes: &[u8]);
    /// Microseconds since boot (the clock that drives the schedule).
    fn now_us(&mut self) -> u64;
    /// Turns partition `partition`'s second-stage translation on or off for its
    /// vCPUs from their next load (a devirtualizable partition: see
    /// `system/devirt.rs`), and drops every cached translation of it.
    fn set_translation(&mut self, partition: usize, on: bool);
    /// Runs `work` with partition `partition`'s second-stage tables and machine
    /// memory, as relocation drives them (a devirtualizable partition's, whose
    /// RAM is mapped with pages).
    fn relocation_machine(&mut self, partition: usize, work: &mut dyn FnMut(&mut dyn Machine));
    /// Writes page `offset` of partition `partition`'s pristine image (zeros past
    /// its end) into machine frame `frame`, which backs that page of its RAM and
    /// is live on no core.
    fn reload_page(&mut self, partition: usize, offset: u64, frame: u64);
    /// How often core `cpu` took the kernel lock since boot, and how often it
    /// found it held, if the platform counts them (reported at shutdown).
    fn lock_counts(&mut self, cpu: usize) -> Option<(u64, u64)> {
        let _ = cpu;
        None
    }
    /// The core reported `event` (its console line is written): a platform
    /// that keeps a trace records it ([`crate::trace`]).
    fn traced(&mut self, event: &Event<'_>) {
        let _ = event;
    }
}

/// The hypercall as the guest's registers give it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallRegisters {
    /// The call number.
    pub number: u64,
    /// Arguments 1 to 6.
    pub args: [u64; 6],
}

/// What the caller finds in its registers when it next runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `0` or a negative [`Error`] code.
    pub status: u64,
    /// Results 1 to 3.
    pub results: [u64; 3],
}

impl Reply {
    /// Success with the given results.
    pub fn ok(results: [u64; 3]) -> Reply {
        Reply { status: 0, results }
    }
    /// Failure with `error`; the result registers are left as they were (zero here).
    pub fn error(error: Error) -> Reply {
        Reply {
            status: error.code() as u64,
            results: [0; 3],
        }
    }
}

/// What a handler asks to run after a call or trap; `run.rs` decides what runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// The vCPU that trapped continues, if it still may.
    Caller,
    /// The vCPU that trapped continues, if it still may, after leaving its core
    /// and being loaded again: its translation mode changed (see `devirt.rs`).
    Reload,
    /// The next vCPU in the round robin of the trapped vCPU's core.
    Yield,
    /// This vCPU (one on the same core that may run).
    Switch(usize),
    /// The service VM.
    Service,
    /// Power the machine off.
    PowerOff {
        /// Whether the shutdown was a clean one requested by the service VM.
        clean: bool,
    },
}

/// A handler's answer to a call or trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dispatch {
    /// Registers to hand back to the vCPU that trapped.
    reply: Option<Reply>,
    /// What runs next.
    next: Next,
    /// Work on a stored vCPU.
    effect: Option<Effect>,
}

impl Dispatch {
    fn new(reply: Option<Reply>, next: Next) -> Dispatch {
        Dispatch {
            reply,
            next,
            effect: None,
        }
    }

    /// The caller continues with `reply`.
    fn resume(reply: Reply) -> Dispatch {
        Dispatch::new(Some(reply), Next::Caller)
    }
}

/// Why a system could not be built from a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemError {
    /// The number of RAM placements differs from the number of partitions.
    PlacementCount,
    /// The host RAM for partition `index` has the wrong size or overlaps another.
    BadPlacement(usize),
    /// The package's schedule for a core is inconsistent.
    BadSchedule(ScheduleError),
    /// Partition `index` has no vCPU, or too many for the system.
    BadVcpus(usize),
    /// The queues do not fit the kernel's limits or the memory given for them.
    Queues(FlipError),
    /// The memory given for the balloon does not fit its partitions.
    Balloon(BalloonError),
}

/// All partitions and who runs.
#[derive(Debug)]
pub struct System {
    partitions: Box<[Partition]>,
    service_ready: bool,
    schedules: [Option<Schedule>; MAX_CPUS],
    events: Events,
    audit: AuditRing,
    /// Every vCPU, in package order (see `partition.rs`).
    vcpus: Box<[VcpuSlot]>,
    /// Per core: the vCPUs pinned to it, in package order (the round robin of
    /// `run.rs` looks only at these, so its cost does not grow with the system).
    on_core: [Box<[usize]>; MAX_CPUS],
    /// Guests (partitions but the service VM) that have not ended.
    live_guests: u64,
    /// Per core: the vCPU whose registers are live there (see `run.rs`).
    loaded: [Option<usize>; MAX_CPUS],
    /// Per core: since when (µs) the time of the vCPU live there is not yet
    /// charged to its partition's [`Usage`] (see `usage.rs` in this module).
    charged_us: [u64; MAX_CPUS],
    /// Bit `n`: core `n` was kicked and has not entered the core since.
    kicked: u8,
    /// A partition stopped running during this entry: the cores where its vCPUs
    /// are live get kicked (see `run.rs`).
    recheck_cores: bool,
    /// Bit `n`: core `n` idles (its last answer was `Run::Idle`) and has not
    /// entered the core since.
    idle: u8,
    /// Bit `n`: during this entry a vCPU pinned to core `n` may have come to need
    /// it (woken, started, resumed, restarted, owing work): kicked if it idles
    /// (see `run.rs`).
    woke: u8,
    /// Bit `n`: the vCPU live on core `n` needs the core to look again: it has
    /// a new virtual interrupt to take (see `virt.rs`), or must be loaded again
    /// because its translation changed (see `devirt.rs`): the core is kicked.
    interrupted: u8,
    /// The queues and the ledger of frames away from their slots.
    flip: Flip,
    /// Per core: a window lent by an immediate send, as (lender partition,
    /// borrower vCPU).
    lent: [Option<(usize, usize)>; MAX_CPUS],
    /// The balloon memory of the partitions that have one, and the free pool.
    balloon: Balloon,
    /// The network: who owns which address, and every port's counters.
    router: Router,
    /// The devirtualizable partition, if the system has one (see `devirt.rs`).
    devirt: Option<Box<devirt::Devirt>>,
}

impl System {
    /// Builds the system from a validated package. `guest_ram_base` is where every
    /// partition sees its RAM; `host_ram[i]` is the machine RAM the back end set
    /// aside for partition `i` (its size must equal the package's RAM size);
    /// `flip_memory` is zeroed kernel memory of [`Flip::kernel_memory`] bytes for
    /// the queues. For a package with no balloon; see [`System::with_balloon`].
    pub fn new(
        package: &Package<'_>,
        guest_ram_base: u64,
        host_ram: &[Range],
        flip_memory: Range,
    ) -> Result<System, SystemError> {
        System::with_balloon(package, guest_ram_base, host_ram, flip_memory, &mut [])
    }

    /// As [`System::new`], with `balloon_words` (zeroed kernel memory of
    /// [`Balloon::words_needed`] words) for the balloon.
    pub fn with_balloon(
        package: &Package<'_>,
        guest_ram_base: u64,
        host_ram: &[Range],
        flip_memory: Range,
        balloon_words: &'static mut [u32],
    ) -> Result<System, SystemError> {
        if host_ram.len() != package.len() {
            return Err(SystemError::PlacementCount);
        }
        let mut partitions = Vec::with_capacity(package.len());
        let mut vcpus = Vec::with_capacity(package.vcpu_count());
        for (index, (spec, host)) in package.partitions().zip(host_ram).enumerate() {
            let overlaps = host_ram[..index].iter().any(|other| other.overlaps(host));
            if host.size() != spec.ram_size || overlaps {
                return Err(SystemError::BadPlacement(index));
            }
            let guest_ram = Range::from_start_size(guest_ram_base, spec.ram_size)
                .ok_or(SystemError::BadPlacement(index))?;
            let mut name = heapless::String::new();
            name.push_str(spec.name)
                .map_err(|_| SystemError::BadPlacement(index))?;
            let cores = spec.resources.vcpu_cores();
            let first = vcpus.len();
            for (vcpu, &core) in cores.iter().enumerate() {
                let slot = VcpuSlot {
                    partition: index,
                    index: vcpu,
                    cpu: usize::from(core),
                    console: LineBuffer::new(),
                };
                vcpus.push(slot);
            }
            let cpu = usize::from(*cores.first().ok_or(SystemError::BadVcpus(index))?);
            let frame_us = package.major_frame_us().map_or(DEFAULT_FRAME_US, u64::from);
            let partition = Partition {
                name,
                kind: spec.kind,
                guest_ram,
                host_ram: *host,
                cpu,
                vcpus: first..vcpus.len(),
                caps: spec.caps,
                denied: 0,
                trap_lines: 0,
                kept_ram: spec.kept_ram(),
                life: Lifecycle::new(spec.supervision, cores.len()),
                machine: (spec.profile == Profile::Linux)
                    .then(|| Box::new(VirtualMachine::new(cores.len()))),
                virtio: Devices::new(&spec.resources).map(Box::new),
                usage: Usage::new(frame_us),
            };
            partitions.push(partition);
        }
        let mut schedules = [const { None }; MAX_CPUS];
        for (cpu, schedule) in schedules.iter_mut().enumerate() {
            *schedule = Schedule::for_cpu(package, cpu as u32)
                .transpose()
                .map_err(SystemError::BadSchedule)?;
        }
        // Queues flip only pages of kept memory.
        let kept: Vec<Range> = package
            .partitions()
            .zip(host_ram)
            .map(|(spec, host)| {
                Range::from_start_size(host.start, spec.kept_ram()).expect("inside its RAM")
            })
            .collect();
        let flip = Flip::new(package, &kept, flip_memory).map_err(SystemError::Queues)?;
        let on_core = core::array::from_fn(|cpu| {
            let pinned = vcpus.iter().enumerate().filter(|(_, slot)| slot.cpu == cpu);
            pinned.map(|(vcpu, _)| vcpu).collect()
        });
        let specs = balloon_memory::specs(package, host_ram);
        let balloon = Balloon::new(&specs, balloon_words).map_err(SystemError::Balloon)?;
        let router = Router::new(package.partitions().map(|spec| spec.resources.net()));
        Ok(System {
            live_guests: partitions.len() as u64 - 1,
            partitions: partitions.into_boxed_slice(),
            service_ready: false,
            schedules,
            events: Events::new(package.len()),
            audit: AuditRing::default(),
            vcpus: vcpus.into_boxed_slice(),
            on_core,
            loaded: [None; MAX_CPUS],
            charged_us: [0; MAX_CPUS],
            kicked: 0,
            interrupted: 0,
            recheck_cores: false,
            idle: 0,
            woke: 0,
            flip,
            lent: [None; MAX_CPUS],
            balloon,
            router,
            devirt: None,
        })
    }

    /// The partitions, in package order (the service VM first).
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Whether the service VM has reported ready.
    pub fn service_ready(&self) -> bool {
        self.service_ready
    }

    /// Every vCPU, in package order.
    pub fn vcpus(&self) -> &[VcpuSlot] {
        &self.vcpus
    }

    /// The core of the service VM, which the kernel starts first.
    pub fn service_cpu(&self) -> usize {
        self.partitions[0].cpu
    }

    /// Core `cpu`'s schedule, if the system has one.
    pub fn schedule(&self, cpu: usize) -> Option<&Schedule> {
        self.schedules.get(cpu).and_then(Option::as_ref)
    }

    /// Reports, for every partition whose console lines were dropped for want of
    /// room, how many, once its other lines have gone out (at once if `now`).
    /// The back end calls it whenever a core reads the clock anyway; the core
    /// itself, with `now`, for a partition that ends and before shutting down.
    pub fn report_console_drops(&mut self, platform: &mut impl Platform) {
        for index in 0..self.partitions.len() {
            self.report_drops_of(index, false, platform);
        }
    }

    fn report_drops_of(&mut self, index: usize, now: bool, platform: &mut impl Platform) {
        if let Some(lines) = platform.take_console_dropped(index, now) {
            let name = self.partitions[index].name();
            emit(platform, Event::PartitionConsoleDropped { name, lines });
        }
    }

    /// Prints what the partition's console still holds, how many of its lines the
    /// console dropped, and the total of its refused calls if the console did not
    /// show them all: it ends, or the system does.
    fn flush_console(&mut self, index: usize, platform: &mut impl Platform) {
        let partition = &self.partitions[index];
        for slot in &mut self.vcpus[partition.vcpus.clone()] {
            let label = Label {
                name: &partition.name,
                vcpu: slot.index,
            };
            let _ = slot
                .console
                .flush(&label, &mut GuestLines::new(platform, index));
        }
        self.report_drops_of(index, true, platform);
        let partition = &mut self.partitions[index];
        if partition.denied > DENIED_LINES {
            let total = core::mem::take(&mut partition.denied);
            emit(
                platform,
                Event::HypercallDeniedTotal {
                    name: partition.name(),
                    total,
                },
            );
        }
    }
}

fn emit(platform: &mut impl Platform, event: Event<'_>) {
    let _ = writeln!(platform, "{event}");
    platform.traced(&event);
}

/// A partition's console lines on their way to the platform.
struct GuestLines<'a, P> {
    platform: &'a mut P,
    partition: usize,
}

impl<'a, P: Platform> GuestLines<'a, P> {
    fn new(platform: &'a mut P, partition: usize) -> Self {
        GuestLines {
            platform,
            partition,
        }
    }
}

impl<P: Platform> fmt::Write for GuestLines<'_, P> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.platform.write_guest(self.partition, s);
        Ok(())
    }
}

#[cfg(test)]
mod balloon_front_tests;
#[cfg(test)]
mod balloon_tests;
#[cfg(test)]
mod devirt_tests;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod queue_front_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod supervise_props;
#[cfg(test)]
mod supervise_rig;
#[cfg(test)]
mod supervise_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod usage_tests;
#[cfg(test)]
mod vcpu_tests;
#[cfg(test)]
mod virt_tests;
#[cfg(test)]
mod virtio_tests;
