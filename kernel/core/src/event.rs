//! The structured console vocabulary: every `@@` line the kernel prints.
//!
//! Tests and tools read the console by these lines, so this enum is the one
//! documented place where they are defined. A line is
//! `@@ <subject> <event> key=value ...`, where the subject is `kernel` or
//! `partition <name>`. Values contain no spaces. Guest output never starts with `@@`:
//! the kernel prefixes every guest line with `[<name>] ` (see [`crate::console`]).
//!
//! Invariant: the text of an existing line only ever gains keys at its end, so
//! readers stay compatible.

use core::fmt;

use septum_abi::PartitionState;
pub use septum_abi::Reason;

use crate::supervision::{TrapAction, TrapClass};

/// The policy class of a trap with this reason; `None` for faults, which always go
/// to the service VM (or stop the partition when nothing supervises it).
pub fn trap_class(reason: Reason) -> Option<TrapClass> {
    match reason {
        Reason::Stage2Data => Some(TrapClass::Mmio),
        Reason::IoPort => Some(TrapClass::Port),
        Reason::SystemRegister => Some(TrapClass::SystemRegister),
        Reason::MonitorCall => Some(TrapClass::Instruction),
        Reason::Stage2Instruction
        | Reason::UnhandledException
        | Reason::UnknownTrap
        | Reason::Panic
        | Reason::Watchdog
        | Reason::TripleFault
        | Reason::Reset => None,
    }
}

/// How a suspended partition resumes (`resume`'s flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumption {
    /// At the instruction that trapped, which runs again.
    Retry = 0,
    /// Past it.
    Skip = 1,
    /// Taking an undefined-instruction exception at it, in its own vectors.
    Undefined = 2,
}

/// Registers of a partition at a trap: program counter, stack pointer, status
/// (PSTATE / RFLAGS), then x0-x4 or rax, rdi, rsi, rdx, r10.
pub type Snapshot = [u64; septum_abi::event::SNAPSHOT_WORDS];

/// A fault as the back end describes it to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: Reason,
    /// The guest address involved: the faulting guest-physical address for stage-2
    /// faults, otherwise the guest program counter.
    pub addr: u64,
    /// The raw architectural syndrome (ESR on aarch64, exit qualification on x86).
    pub syndrome: u64,
    /// Length in bytes of the instruction that trapped, if the back end knows it
    /// (0 otherwise): what a resume that skips the access adds to the program
    /// counter.
    pub length: u8,
    /// The registers at the trap.
    pub snapshot: Snapshot,
}

impl Fault {
    /// A fault with no known instruction length and an empty snapshot.
    pub fn new(kind: Reason, addr: u64, syndrome: u64) -> Fault {
        Fault {
            kind,
            addr,
            syndrome,
            length: 0,
            snapshot: [0; septum_abi::event::SNAPSHOT_WORDS],
        }
    }
}

/// What the kernel did about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Suspended the partition; the service VM decides.
    Suspend,
    /// Stopped it (its policy says so, or nothing supervises it).
    Stop,
    /// Restarted it (the service VM, which the kernel itself supervises).
    Restart,
}

impl Response {
    /// The `action=` value.
    pub fn name(self) -> &'static str {
        match self {
            Response::Suspend => "suspend",
            Response::Stop => "stop",
            Response::Restart => "restart",
        }
    }
}

/// Who stopped a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The service VM, through its control capability.
    Service,
    /// Its trap policy, or no supervisor for a fault.
    Policy,
    /// Its restart budget ran out.
    Budget,
    /// A devirtualization ended (the service VM, which a native partition's
    /// machine has no room for).
    Devirtualize,
}

impl StopCause {
    /// The `by=` value.
    pub fn name(self) -> &'static str {
        match self {
            StopCause::Service => "service",
            StopCause::Policy => "policy",
            StopCause::Budget => "budget",
            StopCause::Devirtualize => "devirtualize",
        }
    }

    /// The number in audit records.
    pub fn number(self) -> u64 {
        match self {
            StopCause::Service => 1,
            StopCause::Policy => 2,
            StopCause::Budget => 3,
            StopCause::Devirtualize => 4,
        }
    }
}

/// Which of a core's kernel stacks a guard page protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelStack {
    /// The stack the core starts on (the boot core's boot stack, on which it
    /// builds the kernel; another core's start-up stack).
    Boot,
    /// The stack it takes traps from partitions on.
    Trap,
}

impl KernelStack {
    /// Its name in the kernel's report.
    pub fn name(self) -> &'static str {
        match self {
            KernelStack::Boot => "boot",
            KernelStack::Trap => "trap",
        }
    }
}

/// One structured console line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The kernel has started: architecture, board, RAM size in bytes, CPU count.
    KernelBoot {
        /// `aarch64` or `x86_64`.
        arch: &'a str,
        /// The board name, such as `qemu-virt`.
        board: &'a str,
        /// Bytes of RAM the firmware reported.
        ram: u64,
        /// CPUs the firmware reported.
        cpus: u32,
    },
    /// A secondary core has come up and runs the partitions pinned to it.
    KernelCpuUp {
        /// The core's index.
        cpu: usize,
    },
    /// The kernel has read the system package.
    KernelSystem {
        /// Number of partitions in the package.
        partitions: usize,
    },
    /// The kernel built its state, sized from the package, in its boot arena.
    KernelState {
        /// Bytes of the arena used.
        used: u64,
        /// Bytes reserved for it.
        reserved: u64,
    },
    /// The service VM is ready and every partition has been started: the system
    /// is up.
    KernelRunning {
        /// Partitions in the system.
        partitions: usize,
        /// Microseconds since the machine's reset (the board's counter).
        us: u64,
    },
    /// x86: the firmware left the boot core's local APIC in another mode than
    /// xAPIC: `x2apic`, which the kernel then uses on every core, or `disabled`,
    /// which it enables in xAPIC mode.
    KernelApicHandoff {
        /// The mode it was found in.
        found: &'a str,
        /// The mode the kernel uses.
        mode: &'a str,
    },
    /// The kernel runs a self-test its command line asked for (fault injection).
    KernelSelfTest {
        /// Its name.
        name: &'a str,
    },
    /// The boot self-test walked every partition's translation tables and found
    /// each translating exactly its grants (`leaves` entries in all).
    KernelTablesChecked {
        /// Partitions checked.
        partitions: usize,
        /// Leaf entries (blocks and pages) walked.
        leaves: usize,
    },
    /// The boot self-test found a partition's tables translating something other
    /// than its grants: the kernel stops before any partition runs.
    PartitionTablesWrong {
        /// The partition.
        name: &'a str,
        /// What was found, and where (the back end's report).
        report: &'a str,
    },
    /// A kernel stack ran into its guard page: the kernel stops.
    KernelStackOverflow {
        /// The core whose stack it is.
        cpu: usize,
        /// Which of its stacks.
        stack: KernelStack,
        /// The guard page's address.
        guard: u64,
        /// Where the kernel was when it touched the guard page.
        pc: u64,
    },
    /// The kernel placed a partition's RAM in machine memory.
    PartitionPlaced {
        /// Partition name.
        name: &'a str,
        /// First machine address of its RAM.
        base: u64,
        /// Bytes of RAM.
        size: u64,
    },
    /// A partition became runnable.
    PartitionStart {
        /// Partition name.
        name: &'a str,
        /// Generation: 1 at first start, one more at each restart.
        generation: u32,
        /// The core it runs on.
        cpu: usize,
    },
    /// A vCPU of a partition past its vCPU 0 started (its partition asked).
    VcpuStart {
        /// Partition name.
        name: &'a str,
        /// The vCPU's index within the partition.
        vcpu: usize,
        /// The partition's generation.
        generation: u32,
        /// The core it runs on.
        cpu: usize,
    },
    /// A vCPU powered itself off (PSCI `CPU_OFF`); its partition runs on.
    VcpuOff {
        /// Partition name.
        name: &'a str,
        /// The vCPU's index within the partition.
        vcpu: usize,
        /// The core it ran on.
        cpu: usize,
    },
    /// A core took a vCPU off because its partition stopped running under it (a
    /// sibling vCPU faulted, or the partition ended).
    VcpuLeft {
        /// Partition name.
        name: &'a str,
        /// The vCPU's index within the partition.
        vcpu: usize,
        /// The core it left.
        cpu: usize,
        /// The partition's state now.
        state: PartitionState,
    },
    /// A devirtualizable partition's translation or memory changed (see
    /// `system/devirt.rs`).
    PartitionRelocation {
        /// Partition name.
        name: &'a str,
        /// What changed.
        step: septum_abi::audit::Relocation,
        /// First machine address of the frames concerned (0 where none).
        first: u64,
        /// Pages concerned (0 where none).
        pages: u64,
        /// Accesses of the partition that met a move and were retried, since
        /// the system started (stage-2 faults on its pages while they moved).
        retried: u64,
        /// Faults and trapped instructions it took while it ran natively, before
        /// this virtualization (none: natively, nothing it does traps but its
        /// hypercalls).
        native_faults: u64,
        /// Turns of it that the kernel's timer ended while it ran natively,
        /// before this virtualization (none: the kernel was dormant).
        native_preemptions: u64,
        /// Microseconds since the step began (an evacuation or devirtualization
        /// that ended; 0 otherwise).
        us: u64,
    },
    /// The service VM reported ready.
    PartitionReady {
        /// Partition name.
        name: &'a str,
    },
    /// A partition trapped or faulted.
    PartitionFault {
        /// Partition name.
        name: &'a str,
        /// What happened.
        fault: Fault,
        /// Its generation.
        generation: u32,
        /// What the kernel did.
        response: Response,
        /// The vCPU that faulted (its index within the partition).
        vcpu: usize,
    },
    /// A partition missed its heartbeat and is suspended.
    PartitionWatchdog {
        /// Partition name.
        name: &'a str,
        /// Its generation.
        generation: u32,
        /// Its heartbeat period.
        period_ms: u32,
        /// How long after the deadline the kernel noticed, in µs; `within_period=yes`
        /// says that was no longer than one period.
        late_us: u64,
    },
    /// The service VM resumed a suspended partition.
    PartitionResume {
        /// Partition name.
        name: &'a str,
        /// Its generation.
        generation: u32,
        /// How: at the trapped instruction, past it, or taking an
        /// undefined-instruction exception there.
        how: Resumption,
    },
    /// A partition was restarted from its pristine image with its RAM scrubbed.
    PartitionRestart {
        /// Partition name.
        name: &'a str,
        /// Its new generation.
        generation: u32,
        /// Restarts within the current budget period, this one included.
        in_period: usize,
    },
    /// The frame ledger's totals around a restart of a partition with queues:
    /// frames mapped in partitions, on queues and free in the pool.
    FrameTotals {
        /// The partition restarted.
        name: &'a str,
        /// `before` or `after` the restart.
        when: &'static str,
        /// The totals.
        totals: crate::flip::Totals,
    },
    /// A partition was stopped for good.
    PartitionStop {
        /// Partition name.
        name: &'a str,
        /// Its generation.
        generation: u32,
        /// Who stopped it.
        cause: StopCause,
    },
    /// The service VM tightened a partition's trap policy.
    PartitionPolicy {
        /// Partition name.
        name: &'a str,
        /// The class changed.
        class: TrapClass,
        /// Its action now.
        action: TrapAction,
    },
    /// The console input now goes to the service VM (`true`) or nowhere (`false`).
    KernelConsole {
        /// The partition that has console input now, if any.
        owner: Option<&'a str>,
        /// Whether its virtio console takes the input (else its UART or, for
        /// the service VM, its events).
        hvc: bool,
    },
    /// A partition ended itself.
    PartitionExit {
        /// Partition name.
        name: &'a str,
        /// The exit code it gave.
        code: u64,
    },
    /// A hypercall was refused.
    HypercallDenied {
        /// Partition name.
        name: &'a str,
        /// The call number as the guest gave it.
        call: u64,
        /// The error returned.
        error: septum_abi::Error,
    },
    /// A partition had more hypercalls refused than the console shows one by one;
    /// the rest were counted.
    HypercallDeniedTotal {
        /// Partition name.
        name: &'a str,
        /// Refused calls in all.
        total: u64,
    },
    /// Lines a partition printed that the console buffer had no room for
    /// (reported once its lines that did fit have gone out).
    PartitionConsoleDropped {
        /// Partition name.
        name: &'a str,
        /// Lines dropped since the last report.
        lines: u64,
    },
    /// A partition's virtio driver broke the device's rules: the device needs
    /// a reset (and changed nothing else).
    DeviceNeedsReset {
        /// Partition name.
        name: &'a str,
        /// The device.
        device: septum_abi::virtio::Device,
        /// What the driver did.
        violation: septum_abi::virtio::Violation,
        /// Why the balloon ledger refused a page list, if it did.
        error: Option<septum_abi::Error>,
    },
    /// A partition's virtio balloon reached its target: it holds that many
    /// pages now.
    BalloonAtTarget {
        /// Partition name.
        name: &'a str,
        /// Pages it holds.
        pages: u64,
    },
    /// A partition's network port's counters (reported when the system ends).
    NetCounters {
        /// Partition name.
        name: &'a str,
        /// Its counters.
        counters: septum_abi::net::Counters,
    },
    /// Lines of the kernel's own that the console buffer had no room for.
    KernelConsoleDropped {
        /// Lines dropped since the last report.
        lines: u64,
    },
    /// How often core `cpu` took the kernel lock since boot, and how often it
    /// found it held (reported at shutdown, before [`Event::KernelShutdown`]).
    KernelLocks {
        /// The core.
        cpu: usize,
        /// Acquisitions.
        taken: u64,
        /// Acquisitions that found another core holding the lock.
        contended: u64,
    },
    /// The kernel powers the machine off at the service VM's request.
    KernelShutdown {
        /// Whether the service VM asked for a clean shutdown.
        clean: bool,
        /// The code the service VM gave.
        code: u64,
    },
    /// No partition can run any more; the kernel powers off.
    KernelHalt {
        /// Why.
        reason: &'a str,
    },
    /// The machine lacks something the kernel needs (on a PC: VT-x with EPT and
    /// the VMX controls it uses, or the TSC-deadline timer); nothing was placed
    /// or started, and the kernel powers off.
    KernelUnsupported {
        /// What is missing, such as `vt-x`.
        need: &'a str,
        /// Why the kernel cannot use it, such as `no-vmx`.
        reason: &'a str,
    },
    /// The kernel hit an internal error it cannot recover from.
    KernelPanic,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::KernelBoot {
                arch,
                board,
                ram,
                cpus,
            } => write!(
                f,
                "@@ kernel boot arch={arch} board={board} ram={ram} cpus={cpus}"
            ),
            Event::KernelCpuUp { cpu } => write!(f, "@@ kernel cpu {cpu} up"),
            Event::KernelSystem { partitions } => {
                write!(f, "@@ kernel system partitions={partitions}")
            }
            Event::KernelState { used, reserved } => {
                write!(f, "@@ kernel state bytes={used} reserved={reserved}")
            }
            Event::KernelRunning { partitions, us } => {
                write!(f, "@@ kernel running partitions={partitions} us={us}")
            }
            Event::KernelApicHandoff { found, mode } => {
                write!(f, "@@ kernel apic found={found} mode={mode}")
            }
            Event::KernelSelfTest { name } => write!(f, "@@ kernel self-test {name}"),
            Event::KernelTablesChecked { partitions, leaves } => write!(
                f,
                "@@ kernel tables checked partitions={partitions} leaves={leaves}"
            ),
            Event::PartitionTablesWrong { name, report } => {
                write!(f, "@@ partition {name} tables {report}")
            }
            Event::KernelStackOverflow {
                cpu,
                stack,
                guard,
                pc,
            } => write!(
                f,
                "@@ kernel stack-overflow cpu={cpu} stack={} guard={guard:#x} pc={pc:#x}",
                stack.name()
            ),
            Event::PartitionPlaced { name, base, size } => {
                write!(
                    f,
                    "@@ partition {name} placed base={base:#x} size={size:#x}"
                )
            }
            Event::PartitionStart {
                name,
                generation,
                cpu,
            } => write!(f, "@@ partition {name} start gen={generation} cpu={cpu}"),
            Event::VcpuStart {
                name,
                vcpu,
                generation,
                cpu,
            } => write!(
                f,
                "@@ partition {name} vcpu {vcpu} start gen={generation} cpu={cpu}"
            ),
            Event::VcpuOff { name, vcpu, cpu } => {
                write!(f, "@@ partition {name} vcpu {vcpu} off cpu={cpu}")
            }
            Event::VcpuLeft {
                name,
                vcpu,
                cpu,
                state,
            } => write!(
                f,
                "@@ partition {name} vcpu {vcpu} left cpu={cpu} state={}",
                state.name()
            ),
            Event::PartitionRelocation {
                name,
                step,
                first,
                pages,
                retried,
                native_faults,
                native_preemptions,
                us,
            } => {
                use septum_abi::audit::Relocation as Step;
                match step {
                    Step::Virtualized => write!(
                        f,
                        "@@ partition {name} virtualized native-faults={native_faults} preempted={native_preemptions}"
                    ),
                    Step::EvacuationBegun => write!(
                        f,
                        "@@ partition {name} evacuate first={first:#x} pages={pages}"
                    ),
                    Step::Evacuated => write!(
                        f,
                        "@@ partition {name} evacuated first={first:#x} pages={pages} retried={retried} us={us}"
                    ),
                    Step::DevirtualizationBegun => write!(f, "@@ partition {name} devirtualize"),
                    Step::Devirtualized => write!(
                        f,
                        "@@ partition {name} devirtualized moved={pages} retried={retried} us={us}"
                    ),
                }
            }
            Event::PartitionReady { name } => write!(f, "@@ partition {name} ready"),
            Event::PartitionFault {
                name,
                fault,
                generation,
                response,
                vcpu,
            } => write!(
                f,
                "@@ partition {name} fault reason={} addr={:#x} syndrome={:#x} gen={generation} action={} vcpu={vcpu}",
                fault.kind.name(),
                fault.addr,
                fault.syndrome,
                response.name()
            ),
            Event::PartitionWatchdog {
                name,
                generation,
                period_ms,
                late_us,
            } => write!(
                f,
                "@@ partition {name} watchdog gen={generation} period_ms={period_ms} late_us={late_us} within_period={}",
                if late_us <= u64::from(period_ms) * 1000 {
                    "yes"
                } else {
                    "no"
                }
            ),
            Event::PartitionResume {
                name,
                generation,
                how,
            } => {
                let skip = u8::from(how == Resumption::Skip);
                write!(f, "@@ partition {name} resume gen={generation} skip={skip}")?;
                if how == Resumption::Undefined {
                    f.write_str(" undefined=1")?;
                }
                Ok(())
            }
            Event::PartitionRestart {
                name,
                generation,
                in_period,
            } => write!(
                f,
                "@@ partition {name} restart gen={generation} in_period={in_period}"
            ),
            Event::FrameTotals { name, when, totals } => write!(
                f,
                "@@ partition {name} frames total={} {when}: mapped={} queued={} free={}",
                totals.total(),
                totals.mapped,
                totals.queued,
                totals.free
            ),
            Event::PartitionStop {
                name,
                generation,
                cause,
            } => write!(
                f,
                "@@ partition {name} stop gen={generation} by={}",
                cause.name()
            ),
            Event::PartitionPolicy {
                name,
                class,
                action,
            } => write!(
                f,
                "@@ partition {name} policy class={} action={}",
                class.name(),
                action.name()
            ),
            Event::KernelConsole { owner, hvc } => {
                write!(f, "@@ kernel console owner={}", owner.unwrap_or("none"))?;
                if hvc { f.write_str(":hvc0") } else { Ok(()) }
            }
            Event::PartitionExit { name, code } => {
                write!(f, "@@ partition {name} exit code={code}")
            }
            Event::HypercallDenied { name, call, error } => write!(
                f,
                "@@ partition {name} denied call={call} error={}",
                error.name()
            ),
            Event::HypercallDeniedTotal { name, total } => {
                write!(f, "@@ partition {name} denied-total count={total}")
            }
            Event::PartitionConsoleDropped { name, lines } => {
                write!(f, "@@ partition {name} console dropped={lines}")
            }
            Event::DeviceNeedsReset {
                name,
                device,
                violation,
                error,
            } => {
                let (device, violation) = (device.name(), violation.name());
                write!(
                    f,
                    "@@ partition {name} device {device} needs-reset {violation}"
                )?;
                match error {
                    Some(error) => write!(f, " error={}", error.name()),
                    None => Ok(()),
                }
            }
            Event::BalloonAtTarget { name, pages } => write!(
                f,
                "@@ partition {name} balloon at-target held={}K",
                pages * (septum_abi::layout::PAGE_SIZE >> 10)
            ),
            Event::NetCounters { name, counters } => {
                write!(f, "@@ net {name} address=")?;
                match septum_abi::net::Address::from_word(counters.address) {
                    Some(address) => write!(f, "{address}")?,
                    None => write!(f, "none")?,
                }
                write!(f, " {counters}")
            }
            Event::KernelConsoleDropped { lines } => {
                write!(f, "@@ kernel console dropped={lines}")
            }
            Event::KernelLocks {
                cpu,
                taken,
                contended,
            } => write!(
                f,
                "@@ kernel locks cpu={cpu} taken={taken} contended={contended}"
            ),
            Event::KernelShutdown { clean, code } => write!(
                f,
                "@@ kernel shutdown status={} code={code}",
                if clean { "ok" } else { "error" }
            ),
            Event::KernelHalt { reason } => write!(f, "@@ kernel halt reason={reason}"),
            Event::KernelUnsupported { need, reason } => {
                write!(f, "@@ kernel unsupported need={need} reason={reason}")
            }
            Event::KernelPanic => write!(f, "@@ kernel panic"),
        }
    }
}

#[cfg(test)]
mod tests;
