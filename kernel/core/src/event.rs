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

/// Why a partition was stopped by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A data access to a guest-physical address the partition was not granted
    /// (stage-2 / EPT violation).
    Stage2Data,
    /// An instruction fetch from a guest-physical address the partition was not
    /// granted.
    Stage2Instruction,
    /// The guest hit an exception (such as an undefined instruction) that it has no
    /// handler for.
    UnhandledException,
    /// An access to a system register or MSR that the kernel traps and denies.
    SystemRegister,
    /// A secure monitor call, which guests may not make.
    MonitorCall,
    /// An I/O port access the partition was not granted (x86); `addr` is the port.
    IoPort,
    /// A trap the kernel does not handle. It is reported, never ignored.
    UnknownTrap,
}

impl FaultKind {
    /// The stable name used in `reason=`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Stage2Data => "stage2-data",
            FaultKind::Stage2Instruction => "stage2-instruction",
            FaultKind::UnhandledException => "unhandled-exception",
            FaultKind::SystemRegister => "system-register",
            FaultKind::MonitorCall => "monitor-call",
            FaultKind::IoPort => "io-port",
            FaultKind::UnknownTrap => "unknown-trap",
        }
    }
}

/// A fault as the back end describes it to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The guest address involved: the faulting guest-physical address for stage-2
    /// faults, otherwise the guest program counter.
    pub addr: u64,
    /// The raw architectural syndrome (ESR on aarch64, exit qualification on x86).
    pub syndrome: u64,
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
    /// The service VM reported ready.
    PartitionReady {
        /// Partition name.
        name: &'a str,
    },
    /// The kernel stopped a partition because of a fault.
    PartitionFault {
        /// Partition name.
        name: &'a str,
        /// What happened.
        fault: Fault,
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
            Event::PartitionReady { name } => write!(f, "@@ partition {name} ready"),
            Event::PartitionFault { name, fault } => write!(
                f,
                "@@ partition {name} fault reason={} addr={:#x} syndrome={:#x}",
                fault.kind.name(),
                fault.addr,
                fault.syndrome
            ),
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
            Event::KernelShutdown { clean, code } => write!(
                f,
                "@@ kernel shutdown status={} code={code}",
                if clean { "ok" } else { "error" }
            ),
            Event::KernelHalt { reason } => write!(f, "@@ kernel halt reason={reason}"),
            Event::KernelPanic => write!(f, "@@ kernel panic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-AUD-001
    #[test]
    fn lines_match_the_documented_vocabulary() {
        let cases: [(Event, &str); 5] = [
            (
                Event::KernelBoot {
                    arch: "aarch64",
                    board: "qemu-virt",
                    ram: 1 << 30,
                    cpus: 1,
                },
                "@@ kernel boot arch=aarch64 board=qemu-virt ram=1073741824 cpus=1",
            ),
            (
                Event::PartitionStart {
                    name: "hello",
                    generation: 1,
                    cpu: 0,
                },
                "@@ partition hello start gen=1 cpu=0",
            ),
            (
                Event::PartitionFault {
                    name: "bad",
                    fault: Fault {
                        kind: FaultKind::Stage2Data,
                        addr: 0x8000_0000,
                        syndrome: 0x9200_0046,
                    },
                },
                "@@ partition bad fault reason=stage2-data addr=0x80000000 syndrome=0x92000046",
            ),
            (
                Event::KernelShutdown {
                    clean: true,
                    code: 0,
                },
                "@@ kernel shutdown status=ok code=0",
            ),
            (
                Event::HypercallDenied {
                    name: "g",
                    call: 5,
                    error: septum_abi::Error::Denied,
                },
                "@@ partition g denied call=5 error=denied",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(event.to_string(), line);
        }
    }
}
