//! The partitions of a running system and the hypercall dispatcher.
//!
//! The back end traps, reads the guest's registers and asks [`System`] what to do;
//! [`System`] answers with a [`Dispatch`]: what the caller gets back and which
//! partition runs next. Effects that need the hardware (reading guest RAM, writing the
//! console) go through the [`Platform`] trait, so everything here runs on the host.
//!
//! Invariants:
//! - **decode, then invoke**: [`System::hypercall`] validates the call number, the
//!   capability the call names (slot, type, right) and every argument before it
//!   changes any state;
//! - capability tables are fixed at boot: no call adds, copies or widens one;
//! - **service VM first**: guest partitions stay [`State::Waiting`] until the service VM
//!   has called `ready`; no guest is ever chosen to run before that;
//! - a partition runs only while [`State::Runnable`]: a suspended, blocked, exited
//!   or stopped one is never chosen, and a suspended guest runs again only when the
//!   service VM resumes or restarts it (see [`supervise`](self::supervise));
//! - kernel work a partition caused that is too long for one trap (reloading its
//!   RAM after a restart, scrubbing the balloon pages it gave up) is work it
//!   **owes**: the kernel does it a page at a time in that partition's own turns,
//!   before it runs again ([`System::work`]), so it never comes out of another
//!   partition's window; a partition that owes work gets its turns even when it
//!   may not run;
//! - with a schedule, a partition runs only inside its own time windows and no
//!   longer than the window's end; time nobody may use is idle (see [`Decision`]);
//! - guest console output always goes through the partition's [`LineBuffer`].

use core::fmt;

use septum_abi::Error;

use crate::audit::AuditRing;
use crate::balloon::{self as balloon_memory, Balloon, BalloonError};
use crate::console::LineBuffer;
use crate::event::Event;
use crate::flip::{Flip, FlipError, Pages};
use crate::memory::Range;
use crate::package::{MAX_PARTITIONS, Package};
use crate::schedule::{Schedule, ScheduleError, Turn};
use lifecycle::Lifecycle;

mod balloon;
mod calls;
mod dispatch;
mod events;
mod guest_memory;
pub mod lifecycle;
mod partition;
mod queues;
mod supervise;
mod transitions;
mod work;
pub use dispatch::DENIED_LINES;
pub use events::{ESCAPE, Events};
pub use lifecycle::{State, WaitOn};
pub use partition::Partition;
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
    /// Writes page `offset` of partition `partition`'s pristine image (zeros past
    /// its end) into machine frame `frame`, which backs that page of its RAM and
    /// is live on no core.
    fn reload_page(&mut self, partition: usize, offset: u64, frame: u64);
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

/// Most CPU cores the kernel runs partitions on.
pub const MAX_CPUS: usize = 4;

/// How long a core with nothing to run waits before it looks again, in µs.
pub const POLL_US: u64 = 1_000;

/// What the back end runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run this partition (by index). It may be the one that trapped.
    Run(usize),
    /// Nothing on this core can run now, but partitions elsewhere can: wait.
    Wait,
    /// Power the machine off.
    PowerOff {
        /// Whether the shutdown was a clean one requested by the service VM.
        clean: bool,
    },
}

/// What the core finally wants on the CPU, given the time (see [`System::decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run `partition`; take the CPU back at `deadline_us` (`None`: no window ends,
    /// the back end's round-robin time slice applies).
    Run {
        /// The partition to run.
        partition: usize,
        /// When its window ends, if the system has a schedule.
        deadline_us: Option<u64>,
    },
    /// Run nothing until `until_us`, then decide again.
    Idle {
        /// When to decide again.
        until_us: u64,
    },
    /// Power the machine off.
    PowerOff {
        /// Whether the shutdown was a clean one requested by the service VM.
        clean: bool,
    },
}

/// Work on a partition's vCPU that the back end must do before anything runs
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Partition `.0` restarted: reset its vCPU to the entry state with generation
    /// `.1` in the third argument register, and forget any of its registers live
    /// on a core. (Its RAM is reloaded as work it owes: see [`System::work`].)
    ResetVcpu(usize, u32),
    /// Advance the stored program counter of (suspended) partition `.0` by `.1`
    /// bytes.
    Skip(usize, u8),
}

/// The core's answer to a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Registers to hand back to the partition that trapped, if it will run again.
    pub reply: Option<Reply>,
    /// What runs next.
    pub next: Next,
    /// Work for the back end, done before `next`.
    pub effect: Option<Effect>,
}

impl Dispatch {
    fn new(reply: Option<Reply>, next: Next) -> Dispatch {
        Dispatch {
            reply,
            next,
            effect: None,
        }
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
    /// Partition `index` is pinned to no core, or to one past [`MAX_CPUS`].
    BadCpu(usize),
    /// The queues do not fit the kernel's limits or the memory given for them.
    Queues(FlipError),
    /// The memory given for the balloon does not fit its partitions.
    Balloon(BalloonError),
}

/// All partitions and who runs.
#[derive(Debug)]
pub struct System {
    partitions: heapless::Vec<Partition, MAX_PARTITIONS>,
    service_ready: bool,
    schedules: [Option<Schedule>; MAX_CPUS],
    events: Events,
    audit: AuditRing,
    /// Per core: the partition whose registers are live there (the back end
    /// reports it with [`System::note_loaded`]).
    loaded: [Option<usize>; MAX_CPUS],
    /// The queues and the ledger of frames away from their slots.
    flip: Flip,
    /// Per core: a window lent by an immediate send, as (lender, borrower).
    lent: [Option<(usize, usize)>; MAX_CPUS],
    /// The balloon memory of the partitions that have one, and the free pool.
    balloon: Balloon,
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
        let mut partitions = heapless::Vec::new();
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
            let cpu = spec.resources.cpus.trailing_zeros() as usize;
            if cpu >= MAX_CPUS {
                return Err(SystemError::BadCpu(index));
            }
            let partition = Partition {
                name,
                kind: spec.kind,
                guest_ram,
                host_ram: *host,
                cpu,
                caps: spec.caps,
                console: LineBuffer::new(),
                denied: 0,
                trap_lines: 0,
                kept_ram: spec.kept_ram(),
                life: Lifecycle::new(spec.supervision),
            };
            // Cannot fail: a valid package has at most MAX_PARTITIONS partitions.
            let _ = partitions.push(partition);
        }
        let mut schedules = [const { None }; MAX_CPUS];
        for (cpu, schedule) in schedules.iter_mut().enumerate() {
            *schedule = Schedule::for_cpu(package, cpu as u32)
                .transpose()
                .map_err(SystemError::BadSchedule)?;
        }
        // Queues flip only pages of kept memory.
        let kept: heapless::Vec<Range, MAX_PARTITIONS> = package
            .partitions()
            .zip(host_ram)
            .map(|(spec, host)| {
                Range::from_start_size(host.start, spec.kept_ram()).expect("inside its RAM")
            })
            .collect();
        let flip = Flip::new(package, &kept, flip_memory).map_err(SystemError::Queues)?;
        let specs = balloon_memory::specs(package, host_ram);
        let balloon = Balloon::new(&specs, balloon_words).map_err(SystemError::Balloon)?;
        Ok(System {
            partitions,
            service_ready: false,
            schedules,
            events: Events::default(),
            audit: AuditRing::default(),
            loaded: [None; MAX_CPUS],
            flip,
            lent: [None; MAX_CPUS],
            balloon,
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

    /// Starts the service VM, and only it. Returns what the service VM's core runs
    /// first (the service VM); other cores begin with [`System::pick`].
    pub fn start(&mut self, platform: &mut impl Platform) -> Next {
        self.start_partition(0, platform);
        Next::Run(0)
    }

    /// The core of the service VM, which the kernel starts first.
    pub fn service_cpu(&self) -> usize {
        self.partitions[0].cpu
    }

    /// Core `cpu`'s schedule, if the system has one.
    pub fn schedule(&self, cpu: usize) -> Option<&Schedule> {
        self.schedules.get(cpu).and_then(Option::as_ref)
    }

    /// Turns `next` (what the call or fault asked for) into what core `cpu` runs at
    /// the time `now_us` gives (µs on the machine's clock; read only when needed).
    /// Without a schedule `next` stands, and [`Next::Wait`] idles for [`POLL_US`].
    /// With one, the owner of the current window runs until the window's end if it
    /// can run; else the core idles until the window ends or the next one starts.
    /// Power-off always stands.
    pub fn decide(&self, next: Next, cpu: usize, now_us: impl FnOnce() -> u64) -> Decision {
        if let Next::PowerOff { clean } = next {
            return Decision::PowerOff { clean };
        }
        let Some(schedule) = self.schedule(cpu) else {
            let next = if self.service_urgent(cpu, None) {
                Next::Run(0)
            } else {
                next
            };
            return match next {
                Next::Run(partition) => Decision::Run {
                    partition,
                    deadline_us: None,
                },
                _ => Decision::Idle {
                    until_us: now_us() + POLL_US,
                },
            };
        };
        match schedule.at(now_us()) {
            // The service VM takes over the window of a partition it has supervision
            // work about (usually the guest that trapped): that partition pays for
            // the switch, and no other partition's time is touched.
            Turn::Window {
                partition,
                until_us,
            } if self.service_urgent(cpu, Some(partition)) => Decision::Run {
                partition: 0,
                deadline_us: Some(until_us),
            },
            // A window lent by an immediate send: the receiver runs in it until it
            // waits or yields.
            Turn::Window {
                partition,
                until_us,
            } if self.lent[cpu].is_some_and(|(lender, borrower)| {
                lender == partition && self.partitions[borrower].life.runnable()
            }) =>
            {
                Decision::Run {
                    partition: self.lent[cpu].expect("checked").1,
                    deadline_us: Some(until_us),
                }
            }
            Turn::Window {
                partition,
                until_us,
            } if self.needs_cpu(partition) => Decision::Run {
                partition,
                deadline_us: Some(until_us),
            },
            Turn::Window { until_us, .. } | Turn::Gap { until_us } => Decision::Idle { until_us },
        }
    }

    /// Partition `current` gives up its turn without a hypercall (it waited for an
    /// interrupt, or its time ran out). Returns what runs next on its core.
    pub fn preempt(&mut self, current: usize, platform: &mut impl Platform) -> Next {
        self.lent[self.partitions[current].cpu] = None;
        self.after(current, platform)
    }

    /// What core `cpu` runs next when it has nothing (at boot, after a wait):
    /// round robin from `after` among the partitions pinned to it.
    pub fn pick(&self, cpu: usize, after: Option<usize>, platform: &mut impl Platform) -> Next {
        if self.service_urgent(cpu, None) {
            return Next::Run(0);
        }
        let count = self.partitions.len();
        let start = after.unwrap_or(count - 1);
        let on_core = (1..=count)
            .map(|step| (start + step) % count)
            .find(|&i| self.needs_cpu(i) && self.partitions[i].cpu == cpu);
        match on_core {
            Some(next) => Next::Run(next),
            None if (0..count).any(|i| self.needs_cpu(i)) => Next::Wait,
            None => {
                emit(
                    platform,
                    Event::KernelHalt {
                        reason: "no-runnable-partition",
                    },
                );
                Next::PowerOff { clean: false }
            }
        }
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
        let partition = &mut self.partitions[index];
        let _ = partition
            .console
            .flush(&partition.name, &mut GuestLines::new(platform, index));
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

    /// The back end reports which partition's registers are live on `cpu`.
    pub fn note_loaded(&mut self, cpu: usize, partition: Option<usize>) {
        self.loaded[cpu] = partition;
    }

    /// Lends the rest of `lender`'s window on its core to `borrower`.
    fn lend(&mut self, lender: usize, borrower: usize) {
        self.lent[self.partitions[lender].cpu] = Some((lender, borrower));
    }

    /// Ends any loan of a window to `borrower`.
    fn end_loan(&mut self, borrower: usize) {
        for loan in &mut self.lent {
            if loan.is_some_and(|(_, b)| b == borrower) {
                *loan = None;
            }
        }
    }

    fn resume_caller(&self, caller: usize, reply: Reply) -> Dispatch {
        Dispatch::new(Some(reply), Next::Run(caller))
    }

    fn runnable(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.partitions.len()).filter(|&i| self.partitions[i].life.runnable())
    }

    /// Round robin on `index`'s core: the first runnable partition after `index`
    /// pinned to the same core, wrapping around to `index` itself last. Waits when
    /// only other cores have work; powers off when nothing can run anywhere.
    fn after(&self, index: usize, platform: &mut impl Platform) -> Next {
        self.pick(self.partitions[index].cpu, Some(index), platform)
    }
}

fn emit(platform: &mut impl Platform, event: Event<'_>) {
    let _ = writeln!(platform, "{event}");
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
mod supervise_tests;
#[cfg(test)]
mod tests;
