//! The hypercall ABI of Septum: the one place where call numbers, status codes and
//! the register convention are defined, and the vocabularies that cross the
//! boundary with them: trap classes and actions ([`TrapClass`], [`TrapAction`]),
//! capability types and rights ([`CapType`], [`Rights`]), each with its numbers
//! and the names system descriptions and console lines use. The kernel, the
//! service VM, every guest partition, the description format and the host tool use
//! these definitions, so they cannot drift apart.
//!
//! # Register convention
//!
//! | | aarch64 (`hvc #0`) | x86_64 (`vmcall`) |
//! |---|---|---|
//! | call number | x0 | rax |
//! | arguments 1-6 | x1-x6 | rdi, rsi, rdx, r10, r8, r9 |
//! | status | x0 | rax |
//! | results 1-3 | x1-x3 | rdi, rsi, rdx |
//!
//! The status is `0` for success or a negative [`Error`] code, as a two's complement
//! 64-bit value. The three result registers are always written (zero where a call
//! has no result); every other register is preserved.
//!
//! Invariant: numbers and codes are never reused. A retired call keeps its number
//! reserved.
#![no_std]
#![forbid(unsafe_code)]

/// Maximum number of bytes one [`Call::ConsoleWrite`] may carry.
pub const CONSOLE_WRITE_MAX: u64 = 256;

/// The hypercalls, by number. Every call but `Null` names a capability slot in
/// `a1`: the kernel checks that the slot holds a capability of the right type with
/// the right before it looks at any other argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Call {
    /// Does nothing and returns `0`. Used to measure the round-trip cost.
    Null = 0,
    /// Writes bytes to the console. `a1` = console capability (right `write`),
    /// `a2` = guest address, `a3` = length (at most [`CONSOLE_WRITE_MAX`]). The
    /// kernel prefixes each line with the partition's name, so no partition can
    /// forge another's output or a `@@` line. Result 1 = bytes written.
    ConsoleWrite = 1,
    /// The service VM reports that it is ready; guests start only after this.
    /// `a1` = system capability (right `ready`); allowed once per boot.
    Ready = 2,
    /// Gives up the rest of the caller's turn. `a1` = self capability (right
    /// `yield`). Result 1 = how many other partitions are still runnable.
    Yield = 3,
    /// Ends the calling partition. `a1` = self capability (right `exit`), `a2` =
    /// exit code. Does not return.
    Exit = 4,
    /// Powers the system off. `a1` = system capability (right `shutdown`), `a2` = 0
    /// for a clean shutdown, any other value reports a failure. Does not return.
    Shutdown = 5,
    /// Service VM: takes the next supervision event. `a1` = system capability
    /// (right `monitor`), `a2` = address of an [`event::RECORD_SIZE`]-byte buffer.
    /// With an event queued, the kernel writes its record there and returns result
    /// 1 = the event kind, result 2 = the partition, result 3 = guests that have not
    /// ended. With none, the caller blocks until one arrives and then returns with
    /// result 1 = 0 (call again). `a3` = flags: [`event::NO_WAIT`] returns result
    /// 1 = 0 at once instead of blocking (a service VM that polls a device between
    /// events); any other bit is [`Error::InvalidArgument`].
    WaitEvent = 6,
    /// Service VM: reads a partition's state. `a1` = control capability (right
    /// `inspect`), `a2` = address of a [`NAME_MAX`]-byte buffer for its name,
    /// NUL-padded (0: no name wanted). Result 1 = [`PartitionState`] number, result
    /// 2 = generation in the low 32 bits and restarts so far in the high 32, result
    /// 3 = RAM bytes.
    Inspect = 7,
    /// Service VM: lets a suspended partition run on. `a1` = control capability
    /// (right `resume`), `a2` = the generation the caller saw (0: whichever is
    /// current), `a3` = [`resume`] flags.
    Resume = 8,
    /// Service VM: restarts a partition from its pristine image, with all its RAM
    /// scrubbed, and bumps its generation. `a1` = control capability (right
    /// `restart`), `a2` = generation seen (0: current). Refused with
    /// [`Error::BudgetExhausted`] past the partition's restart budget, which
    /// also stops it for good.
    Restart = 9,
    /// Service VM: stops a partition for good. `a1` = control capability (right
    /// `stop`), `a2` = generation seen (0: current).
    Stop = 10,
    /// Service VM, before `ready`: sets the action for one trap class of a
    /// partition. `a1` = control capability (right `stop`), `a2` = [`TrapClass`]
    /// number (0 mmio, 1 port, 2 sysreg, 3 instruction), `a3` = [`TrapAction`]
    /// number (0 service, 1 stop). Refused with [`Error::Loosening`] if the
    /// action is laxer than the current one.
    SetPolicy = 11,
    /// Service VM: copies audit records out of the kernel's ring, oldest first.
    /// `a1` = system capability (right `monitor`), `a2` = buffer address, `a3` =
    /// most records to copy (each [`audit::RECORD_SIZE`] bytes). Result 1 = records
    /// copied, result 2 = records lost to overflow so far, result 3 = records
    /// still in the ring.
    AuditRead = 12,
    /// Tells the kernel the caller is alive. `a1` = watchdog capability (right
    /// `heartbeat`).
    Heartbeat = 13,
    /// Reports that the caller panicked: it is suspended and the service VM
    /// decides what happens to it. `a1` = self capability (right `exit`), `a2` =
    /// a code for the service VM. Does not return unless resumed.
    Panic = 14,
    /// Describes the capability in slot `a1` of the caller's own table; needs no
    /// right. Result 1 = [`CapType`] number, result 2 = rights, result 3 = object
    /// (the partition index of a control capability); all 0 for an empty slot.
    /// [`Error::NoSuchSlot`] for a slot past [`CAP_SLOTS`].
    Identify = 15,
    /// Sends one message on a queue. `a1` = send-end capability (right `send`),
    /// `a2` = address, `a3` = length in bytes, `a4` = [`queue::flags`]. By page
    /// flip (the default): `a2` is page-aligned and the message is the
    /// `ceil(a3 / 4096)` pages from there (at most [`queue::MESSAGE_MAX`] bytes),
    /// each owned by the caller (in its RAM, or held in its receive window); they
    /// leave the caller's address space. With [`queue::flags::COPY`]: at most
    /// [`queue::COPY_MAX`] bytes at `a2` are copied into the kernel. Result 1 =
    /// messages now waiting on the queue.
    Send = 16,
    /// Sends up to [`queue::BATCH_MAX`] one-page messages with one check, one
    /// translation invalidation and one notification. `a1` = send-end capability,
    /// `a2` = address of a list of `a3` words, each a page address plus the
    /// message length minus one in its low 12 bits; `a4` = [`queue::flags`]
    /// (`COPY` is refused). All or nothing. Result 1 = messages now waiting.
    SendBatch = 17,
    /// Takes the oldest message off a queue. `a1` = receive-end capability (right
    /// `receive`), `a2` = page-aligned address in the caller's receive window
    /// where a flipped message is mapped (every page there must be free), `a3` =
    /// address of a [`queue::COPY_MAX`]-byte buffer in the caller's RAM for a
    /// copied one. Result 1 = length, result 2 = the sender's badge, result 3 =
    /// [`queue::kind`] plus pages << 8. [`Error::Empty`] when nothing waits.
    Receive = 18,
    /// Gives back pages received on a queue: they leave the caller's receive
    /// window, are scrubbed and return to their sender. `a1` = receive-end
    /// capability of the queue they came on, `a2` = page-aligned window address,
    /// `a3` = pages.
    Release = 19,
    /// Takes back a page its receiver released (or that came home when the
    /// receiver restarted). `a1` = send-end capability. Result 1 = address of the
    /// first page, result 2 = pages. [`Error::Empty`] when none has come home.
    Reclaim = 20,
    /// Waits until the queue end has work: a message to receive on a receive end;
    /// a page to reclaim on a send end, or room on a queue whose last send was
    /// refused with [`Error::QueueFull`]. Returns at once when it has. `a1` = a
    /// queue-end capability. Result 1 = 1 if work is there, 0 if the caller was
    /// woken (it calls again). With a balloon capability: waits until the
    /// service VM sets a memory target other than the one the caller was last told
    /// (result 1 = the target in pages when it has).
    Wait = 21,
    /// Balloon: gives pages back (inflates). `a1` = balloon capability (right
    /// `inflate`), `a2` = address of a list of `a3` page addresses (64-bit words,
    /// 1 to [`balloon::BATCH_MAX`]), each a page of the caller's balloon memory
    /// (see [`balloon`]). The kernel unmaps them, scrubs them and puts their
    /// frames in its free pool. All or nothing. Results as [`Call::BalloonReport`].
    Inflate = 22,
    /// Balloon: takes pages back (deflates). Arguments as [`Call::Inflate`] (right
    /// `deflate`), each address a page of the caller's balloon memory that has no
    /// frame: the kernel maps a zeroed frame from its pool there. Refused past the
    /// target the service VM set. All or nothing. Results as
    /// [`Call::BalloonReport`].
    Deflate = 23,
    /// Balloon: reports the caller's memory use to the service VM. `a1` = balloon
    /// capability (right `inflate`), `a2` = pages free in its allocator, `a3` =
    /// pages in use, `a4` = allocations that failed since it started. Result 1 =
    /// its target in pages, result 2 = pages it holds, result 3 = its maximum in
    /// pages.
    BalloonReport = 24,
    /// Service VM: sets a guest's memory target. `a1` = control capability (right
    /// `set-memory-target`), `a2` = generation seen (0: current), `a3` = the
    /// target in pages, within the guest's minimum and maximum.
    SetMemoryTarget = 25,
    /// Service VM: reads a guest's memory. `a1` = control capability (right
    /// `inspect`), `a2` = address of a buffer of [`balloon::INFO_WORDS`] 64-bit
    /// words, which the kernel fills as [`balloon::info`] says. Result 1 = its
    /// memory shares (0: it has no balloon), result 2 = frames free in the
    /// kernel's pool or on their way there (given up and being scrubbed, in the
    /// turns of the partition that gave them up).
    MemoryInfo = 26,
    /// Starts one of the caller's own vCPUs that is off (the description gives a
    /// partition its vCPUs and the core of each; vCPU 0 starts with the
    /// partition). Names no capability. `a1` = vCPU index (1 to the partition's
    /// vCPU count minus one), `a2` = guest address where it starts, inside the
    /// caller's RAM, `a3` = a value it finds in its first argument register (x0 /
    /// rdi). It starts in the partition entry state otherwise. [`Error::BadState`]
    /// if it is already on. On aarch64 the standard PSCI `CPU_ON` does the same
    /// (see `septum_core::system::psci`).
    VcpuStart = 27,
    /// Service VM: reads a partition's network port. `a1` = control capability
    /// (right `inspect`) for a guest's port, or the system capability (right
    /// `monitor`) for the service VM's own (the uplink's); `a2` = address of a
    /// buffer of [`net::COUNTER_WORDS`] 64-bit words, which the kernel fills as
    /// [`net::Counters::to_words`] says (all zero if the partition has no port).
    NetInfo = 28,
    /// Service VM: the machine (host-physical) address where its RAM starts,
    /// which guest-physical [`layout::RAM_BASE`] maps to, for the DMA of a
    /// device it drives (the uplink's NIC). `a1` = system capability (right
    /// `monitor`). Result 1 = the address. Only the service VM, part of the
    /// trusted base, learns a machine address.
    MachineBase = 29,
    /// Service VM: reads what the kernel counted about a partition. `a1` =
    /// control capability (right `inspect`) for a guest, or the system
    /// capability (right `monitor`) for the service VM itself; `a2` = address
    /// of a buffer of [`usage::USAGE_WORDS`] 64-bit words, which the kernel
    /// fills as [`usage::Usage::to_words`] says.
    Usage = 30,
    /// A devirtualizable partition running natively asks to be taken under the
    /// kernel's translation (stage 2 or EPT, at the identity) again: `a1` = its
    /// self capability (right `yield`). The kernel then restarts the service VM
    /// first, which devirtualizing stopped (or starts it, at the first
    /// virtualization after boot). [`Error::BadState`] if it is translated
    /// already; [`Error::NotDevirtualizable`] for any other partition.
    Virtualize = 31,
    /// Service VM: starts moving the pages of a devirtualizable guest that map
    /// the machine frames `a2 .. a2 + a3 * 4096` to free frames of the kernel's
    /// pool for it, while it runs, and does the first bounded part of the work
    /// ([`Call::Relocate`] does the rest). `a1` = control capability (right
    /// `stop`); `a2` = page-aligned machine address; `a3` = pages. Result 1 = 1
    /// while work remains, 0 when done. [`Error::BadState`] if the guest runs
    /// natively or has ended; [`Error::InFlight`] while another relocation is
    /// under way; [`Error::BadAddress`] for a range outside its frames or a frame
    /// no page maps; [`Error::PoolEmpty`] if its pool is short.
    Evacuate = 32,
    /// Service VM: starts bringing every page of a devirtualizable guest back to
    /// its home frame (guest-physical equal to machine again) and does the first
    /// bounded part of the work ([`Call::Relocate`] does the rest). When it is
    /// done the kernel turns the guest's translation off and stops the service VM
    /// (a native guest owns the machine): the call does not return to the
    /// caller, whose next instance starts when the guest asks [`Call::Virtualize`].
    /// `a1` = control capability (right `stop`). [`Error::NotAlone`] while
    /// another guest has not ended; [`Error::BadState`] if the guest runs
    /// natively; [`Error::InFlight`] while a relocation is under way.
    Devirtualize = 33,
    /// Service VM: does the next bounded part of the relocation under way for a
    /// devirtualizable guest (an evacuation or a devirtualization). `a1` =
    /// control capability (right `stop`). Result 1 = 1 while work remains, 0 when
    /// done (a devirtualization that is done does not return: see
    /// [`Call::Devirtualize`]). [`Error::Empty`] if nothing is under way.
    Relocate = 34,
}

/// Longest partition name, in bytes.
pub const NAME_MAX: usize = 16;

/// Most partitions one system has, the service VM among them: a partition's
/// index, wherever a call or a record names one, is below it.
pub const MAX_PARTITIONS: usize = 64;

/// Most vCPUs one partition has; a vCPU's index within its partition is below it.
pub const MAX_VCPUS: usize = 4;

/// The MPIDR value vCPU `index` of a partition reads (aarch64), which PSCI calls
/// name it by: affinity 0 is the index, the other affinity fields are 0, and
/// bit 31 (RES1) is set.
pub const fn vcpu_mpidr(index: usize) -> u64 {
    (1 << 31) | index as u64
}

/// Flags of [`Call::Resume`].
pub mod resume {
    /// Skip the instruction that trapped (an access skipped: a load leaves its
    /// destination register as it was).
    pub const SKIP: u64 = 1 << 0;
    /// Make the partition take an undefined-instruction exception at the
    /// instruction that trapped, in its own exception vectors, as a CPU that
    /// does not implement it would: for a Linux partition (which has vectors to
    /// take it) suspended on a trapped instruction. Not with [`SKIP`].
    pub const UNDEFINED: u64 = 1 << 1;
    /// Every flag the call knows.
    pub const ALL: u64 = SKIP | UNDEFINED;
}

/// Where a partition is in its life, as [`Call::Inspect`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum PartitionState {
    /// Loaded, waiting for the service VM to report ready.
    Waiting = 0,
    /// Running or ready to run.
    Runnable = 1,
    /// Suspended after a trap, fault or missed heartbeat: the service VM decides.
    Suspended = 2,
    /// Ended itself.
    Exited = 3,
    /// Stopped for good by the kernel or the service VM.
    Stopped = 4,
    /// Blocked in a call (waiting for an event, for work on a queue, or for news
    /// from its balloon).
    Blocked = 5,
    /// Restarted, its RAM being reloaded from its image; it runs once that is done.
    Loading = 6,
}

impl PartitionState {
    /// Every state, in number order.
    pub const ALL: [PartitionState; 7] = [
        PartitionState::Waiting,
        PartitionState::Runnable,
        PartitionState::Suspended,
        PartitionState::Exited,
        PartitionState::Stopped,
        PartitionState::Blocked,
        PartitionState::Loading,
    ];

    /// The state with this number.
    pub fn from_number(number: u64) -> Option<PartitionState> {
        PartitionState::ALL
            .into_iter()
            .find(|s| *s as u64 == number)
    }

    /// A short name for logs and the service VM's console.
    pub fn name(self) -> &'static str {
        match self {
            PartitionState::Waiting => "waiting",
            PartitionState::Runnable => "runnable",
            PartitionState::Suspended => "suspended",
            PartitionState::Exited => "exited",
            PartitionState::Stopped => "stopped",
            PartitionState::Blocked => "blocked",
            PartitionState::Loading => "loading",
        }
    }
}

/// What [`Call::Inspect`] reports: its three results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// The partition's state.
    pub state: PartitionState,
    /// Its generation.
    pub generation: u32,
    /// Its restarts since boot.
    pub restarts: u32,
    /// Bytes of RAM it holds.
    pub ram: u64,
    /// Whether it runs Linux (the Linux profile: its own exception vectors, an
    /// emulated GIC and UART).
    pub linux: bool,
}

/// Bit of `inspect`'s first result set for a partition that runs Linux.
const INSPECT_LINUX: u64 = 1 << 32;

impl Inspected {
    /// The call's results: state (| [`INSPECT_LINUX`]), generation | restarts <<
    /// 32, RAM bytes.
    pub fn to_results(self) -> [u64; 3] {
        let identity = u64::from(self.generation) | (u64::from(self.restarts) << 32);
        let linux = if self.linux { INSPECT_LINUX } else { 0 };
        [self.state as u64 | linux, identity, self.ram]
    }

    /// Reads the call's results; `None` for a state the ABI does not define.
    pub fn from_results([state, identity, ram]: [u64; 3]) -> Option<Inspected> {
        Some(Inspected {
            state: PartitionState::from_number(state & !INSPECT_LINUX)?,
            generation: identity as u32,
            restarts: (identity >> 32) as u32,
            ram,
            linux: state & INSPECT_LINUX != 0,
        })
    }
}

/// What [`Call::Identify`] reports about a slot that holds a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    /// Its type.
    pub ty: CapType,
    /// Its rights.
    pub rights: Rights,
    /// Its object (the partition index of a control capability, the queue of a
    /// queue end).
    pub object: u16,
}

impl Identified {
    /// The call's results: type, rights, object; all 0 for an empty slot.
    pub fn to_results(found: Option<Identified>) -> [u64; 3] {
        found.map_or([0; 3], |cap| {
            [
                cap.ty as u64,
                u64::from(cap.rights.0),
                u64::from(cap.object),
            ]
        })
    }

    /// Reads the call's results: `None` for an empty slot (or a type the ABI
    /// does not define).
    pub fn from_results([ty, rights, object]: [u64; 3]) -> Option<Identified> {
        Some(Identified {
            ty: CapType::from_number(u8::try_from(ty).ok()?)?,
            rights: Rights(rights as u16),
            object: object as u16,
        })
    }
}

/// Why the kernel took a partition off the CPU: the `reason=` of `@@` lines and of
/// supervision events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Reason {
    /// A data access outside the partition's RAM and granted devices (stage-2 /
    /// EPT data violation): an unassigned MMIO access or a wild pointer.
    Stage2Data = 1,
    /// An instruction fetch from outside the partition's RAM.
    Stage2Instruction = 2,
    /// An exception (such as an undefined instruction) the guest has no handler for.
    UnhandledException = 3,
    /// A trapped system register (aarch64) or MSR (x86).
    SystemRegister = 4,
    /// A secure monitor call (aarch64).
    MonitorCall = 5,
    /// An I/O port the partition was not granted (x86); the address is the port.
    IoPort = 6,
    /// A trap the kernel does not handle.
    UnknownTrap = 7,
    /// The guest reported a panic ([`Call::Panic`]).
    Panic = 8,
    /// The guest missed its watchdog heartbeat.
    Watchdog = 9,
    /// x86: a triple fault (the guest's CPU would have reset).
    TripleFault = 10,
    /// The guest asked for a reset of its machine (PSCI `SYSTEM_RESET`).
    Reset = 11,
}

impl Reason {
    /// Every reason, in number order.
    pub const ALL: [Reason; 11] = [
        Reason::Stage2Data,
        Reason::Stage2Instruction,
        Reason::UnhandledException,
        Reason::SystemRegister,
        Reason::MonitorCall,
        Reason::IoPort,
        Reason::UnknownTrap,
        Reason::Panic,
        Reason::Watchdog,
        Reason::TripleFault,
        Reason::Reset,
    ];

    /// The reason with this number.
    pub fn from_number(number: u64) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| *r as u64 == number)
    }

    /// The stable name used in `reason=`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Stage2Data => "stage2-data",
            Reason::Stage2Instruction => "stage2-instruction",
            Reason::UnhandledException => "unhandled-exception",
            Reason::SystemRegister => "system-register",
            Reason::MonitorCall => "monitor-call",
            Reason::IoPort => "io-port",
            Reason::UnknownTrap => "unknown-trap",
            Reason::Panic => "panic",
            Reason::Watchdog => "watchdog",
            Reason::TripleFault => "triple-fault",
            Reason::Reset => "reset",
        }
    }
}

impl Call {
    /// Every call, in number order.
    pub const ALL: [Call; 35] = [
        Call::Null,
        Call::ConsoleWrite,
        Call::Ready,
        Call::Yield,
        Call::Exit,
        Call::Shutdown,
        Call::WaitEvent,
        Call::Inspect,
        Call::Resume,
        Call::Restart,
        Call::Stop,
        Call::SetPolicy,
        Call::AuditRead,
        Call::Heartbeat,
        Call::Panic,
        Call::Identify,
        Call::Send,
        Call::SendBatch,
        Call::Receive,
        Call::Release,
        Call::Reclaim,
        Call::Wait,
        Call::Inflate,
        Call::Deflate,
        Call::BalloonReport,
        Call::SetMemoryTarget,
        Call::MemoryInfo,
        Call::VcpuStart,
        Call::NetInfo,
        Call::MachineBase,
        Call::Usage,
        Call::Virtualize,
        Call::Evacuate,
        Call::Devirtualize,
        Call::Relocate,
    ];

    /// Looks up a call by number; `None` for a number no call has.
    pub fn from_number(number: u64) -> Option<Call> {
        // `ALL` lists the calls in number order, from 0 (checked by a test).
        let call = *Call::ALL.get(usize::try_from(number).ok()?)?;
        (call as u64 == number).then_some(call)
    }

    /// The call's name as the README's ABI table gives it.
    pub fn name(self) -> &'static str {
        match self {
            Call::Null => "null",
            Call::ConsoleWrite => "console_write",
            Call::Ready => "ready",
            Call::Yield => "yield",
            Call::Exit => "exit",
            Call::Shutdown => "shutdown",
            Call::WaitEvent => "wait_event",
            Call::Inspect => "inspect",
            Call::Resume => "resume",
            Call::Restart => "restart",
            Call::Stop => "stop",
            Call::SetPolicy => "set_policy",
            Call::AuditRead => "audit_read",
            Call::Heartbeat => "heartbeat",
            Call::Panic => "panic",
            Call::Identify => "identify",
            Call::Send => "send",
            Call::SendBatch => "send_batch",
            Call::Receive => "receive",
            Call::Release => "release",
            Call::Reclaim => "reclaim",
            Call::Wait => "wait",
            Call::Inflate => "inflate",
            Call::Deflate => "deflate",
            Call::BalloonReport => "balloon_report",
            Call::SetMemoryTarget => "set_memory_target",
            Call::MemoryInfo => "memory_info",
            Call::VcpuStart => "vcpu_start",
            Call::NetInfo => "net_info",
            Call::MachineBase => "machine_base",
            Call::Usage => "usage",
            Call::Virtualize => "virtualize",
            Call::Evacuate => "evacuate",
            Call::Devirtualize => "devirtualize",
            Call::Relocate => "relocate",
        }
    }
}

/// The capability a call names in `a1`, as [`Call::need`] gives it: the one table
/// of which type and right each call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The call names no slot ([`Call::Null`], and [`Call::VcpuStart`], which acts
    /// only on the caller's own vCPUs).
    Nothing,
    /// Any slot in range, full or empty, with no right ([`Call::Identify`]).
    AnySlot,
    /// A capability of one of these types, carrying the right given for its type.
    OneOf(&'static [(CapType, Rights)]),
}

impl Call {
    /// Which capability the call needs in `a1`. The kernel checks the slot, then
    /// the type, then the right (`septum_core::caps::lookup`), before any other
    /// argument.
    pub fn need(self) -> Need {
        use CapType as T;
        let one = |pair: &'static [(CapType, Rights)]| Need::OneOf(pair);
        match self {
            Call::Null | Call::VcpuStart => Need::Nothing,
            Call::Identify => Need::AnySlot,
            Call::ConsoleWrite => one(&[(T::Console, Rights::WRITE)]),
            Call::Ready => one(&[(T::System, Rights::READY)]),
            Call::Shutdown => one(&[(T::System, Rights::SHUTDOWN)]),
            Call::WaitEvent | Call::AuditRead | Call::MachineBase => {
                one(&[(T::System, Rights::MONITOR)])
            }
            Call::Yield | Call::Virtualize => one(&[(T::SelfPartition, Rights::YIELD)]),
            Call::Exit | Call::Panic => one(&[(T::SelfPartition, Rights::EXIT)]),
            Call::Inspect | Call::MemoryInfo => one(&[(T::Control, Rights::INSPECT)]),
            Call::NetInfo | Call::Usage => {
                one(&[(T::Control, Rights::INSPECT), (T::System, Rights::MONITOR)])
            }
            Call::Resume => one(&[(T::Control, Rights::RESUME)]),
            Call::Restart => one(&[(T::Control, Rights::RESTART)]),
            Call::Stop | Call::SetPolicy | Call::Evacuate | Call::Devirtualize | Call::Relocate => {
                one(&[(T::Control, Rights::STOP)])
            }
            Call::SetMemoryTarget => one(&[(T::Control, Rights::SET_MEMORY_TARGET)]),
            Call::Heartbeat => one(&[(T::Watchdog, Rights::HEARTBEAT)]),
            Call::Send | Call::SendBatch | Call::Reclaim => one(&[(T::QueueSend, Rights::SEND)]),
            Call::Receive | Call::Release => one(&[(T::QueueReceive, Rights::RECEIVE)]),
            Call::Wait => one(&[
                (T::QueueSend, Rights::SEND),
                (T::QueueReceive, Rights::RECEIVE),
                (T::Balloon, Rights::INFLATE),
            ]),
            Call::Inflate | Call::BalloonReport => one(&[(T::Balloon, Rights::INFLATE)]),
            Call::Deflate => one(&[(T::Balloon, Rights::DEFLATE)]),
        }
    }
}

pub mod audit;
pub mod balloon;
mod caps;
mod error;
pub mod event;
pub mod layout;
pub mod net;
pub mod queue;
mod trap;
pub mod usage;
pub mod virt;
pub mod virtio;

pub use caps::{CAP_SLOTS, CapType, Rights};
pub use error::Error;
pub use trap::{TrapAction, TrapClass};

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn call_numbers_round_trip_and_are_unique() {
        for (number, call) in Call::ALL.into_iter().enumerate() {
            assert_eq!(call as usize, number, "ALL is in number order");
            assert_eq!(Call::from_number(call as u64), Some(call));
        }
        assert_eq!(Call::from_number(Call::ALL.len() as u64), None);
        assert_eq!(Call::from_number(u64::MAX), None);
    }

    /// Every call but `null` and `identify` needs a capability, of a type whose
    /// possible rights include the right the table asks for.
    /// Verifies: SK-API-001, SK-CAP-001
    #[test]
    fn each_call_needs_a_right_its_capability_type_can_carry() {
        for call in Call::ALL {
            match call.need() {
                Need::Nothing => assert!(matches!(call, Call::Null | Call::VcpuStart)),
                Need::AnySlot => assert_eq!(call, Call::Identify),
                Need::OneOf(options) => {
                    assert!(!options.is_empty(), "{}", call.name());
                    for &(ty, right) in options {
                        assert!(ty.possible_rights().contains(right), "{}", call.name());
                    }
                }
            }
        }
    }

    /// Verifies: SK-API-001
    #[test]
    fn inspect_and_identify_results_round_trip() {
        for state in PartitionState::ALL {
            for linux in [false, true] {
                let inspected = Inspected {
                    state,
                    generation: 3,
                    restarts: u32::MAX,
                    ram: 1 << 21,
                    linux,
                };
                assert_eq!(
                    Inspected::from_results(inspected.to_results()),
                    Some(inspected)
                );
            }
        }
        assert_eq!(Inspected::from_results([99, 0, 0]), None);
        for ty in CapType::ALL {
            let cap = Identified {
                ty,
                rights: ty.possible_rights(),
                object: 5,
            };
            let results = Identified::to_results(Some(cap));
            assert_eq!(Identified::from_results(results), Some(cap));
        }
        assert_eq!(Identified::to_results(None), [0; 3]);
        assert_eq!(Identified::from_results([0; 3]), None);
    }

    /// Verifies: SK-API-001
    #[test]
    fn error_codes_round_trip_and_are_negative() {
        for error in Error::ALL {
            assert!(error.code() < 0);
            assert_eq!(Error::from_status(error.code() as u64), Err(Ok(error)));
        }
        assert_eq!(Error::from_status(0), Ok(()));
        assert_eq!(Error::from_status(-99i64 as u64), Err(Err(-99i64 as u64)));
    }
}
