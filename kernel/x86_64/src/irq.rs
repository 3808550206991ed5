//! Device interrupts: the local APIC and the I/O APIC, and which partition owns
//! each interrupt; and the local APIC's interrupt command register, through which
//! the boot core starts the others (`smp.rs`).
//!
//! At boot the kernel software-enables each core's local APIC (task priority 0,
//! spurious vector [`SPURIOUS_VECTOR`]), masks every I/O APIC redirection entry, and
//! unmasks only the entries of the IRQ lines the system package grants, each to
//! vector [`VECTOR_BASE`] + line, fixed delivery, physical destination = the local
//! APIC of the core the owner is pinned to, edge-triggered and active high (as ISA
//! interrupts are). The 8259 PICs stay masked. Every core sees its own local APIC at
//! the same address, so ending an interrupt reaches the core that took it.
//!
//! A device interrupt arriving while a partition runs is a VM exit (external
//! interrupts exit, acknowledged on exit); the exit handler asks
//! [`Interrupts::end`] for the owner of its vector, which also sends the local APIC
//! its EOI, and the owner's vCPU keeps it pending until that partition can take it
//! (see `Vcpu::deliver_interrupts`). An interrupt arriving while the core idles
//! is taken in its HLT through the IDT instead (`idle.rs`), ended there, and
//! handed to the same owner by [`Interrupts::whose`]. One line is the kernel's
//! own: COM1's (IRQ 4), routed to the boot core at [`CONSOLE_VECTOR`], on which
//! the kernel drains its console; no partition can be granted it. One vector,
//! [`KICK_VECTOR`], is the kicks the cores send each other through the interrupt
//! command register; one, [`TIMER_VECTOR`], each core's local APIC timer, in
//! TSC-deadline mode, which ends an idle wait at its deadline.
//!
//! Invariants:
//! - only granted lines are unmasked in the I/O APIC, each routed to one vector;
//! - a vector has at most one owner, the partition granted its line; an interrupt
//!   is only ever made pending in its owner's vCPU;
//! - only ISA lines (0 to [`LINES`] - 1) can be granted: they are edge-triggered,
//!   so ending an interrupt at the local APIC before the partition has handled it
//!   cannot make the device interrupt again (a level-triggered line would, until the
//!   partition acknowledged the device).

use core::sync::atomic::{AtomicU64, Ordering};

use tock_registers::LocalRegisterCopy;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use x86_64::registers::model_specific::Msr;

use crate::vmx;

/// The vector of IRQ line 0; line `n` is vector `VECTOR_BASE + n` (for the kernel's
/// routing and inside the partition, which sees the same vector).
pub const VECTOR_BASE: u8 = 0x20;
/// IRQ lines that can be routed: the ISA lines 0 to 15.
pub const LINES: usize = 16;
/// The local APIC's spurious-interrupt vector (never EOI'd).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The vector of the kernel's console UART (COM1's transmitter empty).
pub const CONSOLE_VECTOR: u8 = 0xf0;
/// The vector one core sends another to make it enter the kernel
/// (`septum_kernel::Machine::kick`).
pub const KICK_VECTOR: u8 = 0xf1;
/// The vector of each core's local APIC timer (TSC-deadline mode), armed only
/// while the core idles.
pub const TIMER_VECTOR: u8 = 0xf2;
/// Where the I/O APIC's registers are on a PC (identity-mapped by the kernel).
const IO_APIC_BASE: u64 = 0xfec0_0000;
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDRESS: u64 = 0xf_ffff_f000;
/// The first redirection entry's register index (entry `n`: `0x10 + 2n` low half,
/// `0x11 + 2n` high half).
const IO_APIC_REDIRECTION: u32 = 0x10;
const IO_APIC_VERSION: u32 = 0x01;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// CPUID leaf 1 ECX: the local APIC timer has TSC-deadline mode.
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// The local APIC's registers, the same address on every core (set by the boot
/// core's [`Interrupts::init`] before any interrupt can be taken), for the idle
/// wait's interrupt stubs, which end interrupts without the kernel state.
static LOCAL_APIC: AtomicU64 = AtomicU64::new(0);

register_bitfields! {u32,
    SVR [
        /// APIC software enable.
        ENABLE OFFSET(8) NUMBITS(1) [],
        /// The spurious-interrupt vector.
        VECTOR OFFSET(0) NUMBITS(8) [],
    ],
    LVT_TIMER [
        /// Timer mode.
        MODE OFFSET(17) NUMBITS(2) [OneShot = 0, Periodic = 1, TscDeadline = 2],
        /// Masked: the timer does not interrupt.
        MASK OFFSET(16) NUMBITS(1) [],
        /// The vector.
        VECTOR OFFSET(0) NUMBITS(8) [],
    ],
    ID [
        /// The local APIC id.
        ID OFFSET(24) NUMBITS(8) [],
    ],
    VERSION [
        /// The index of the last redirection entry.
        MAX_ENTRY OFFSET(16) NUMBITS(8) [],
    ],
    REDIRECTION_LOW [
        /// Masked: the pin's interrupts are not delivered.
        MASK OFFSET(16) NUMBITS(1) [],
        /// Trigger mode.
        TRIGGER OFFSET(15) NUMBITS(1) [Edge = 0, Level = 1],
        /// Pin polarity.
        POLARITY OFFSET(13) NUMBITS(1) [ActiveHigh = 0, ActiveLow = 1],
        /// Destination mode.
        DESTINATION_MODE OFFSET(11) NUMBITS(1) [Physical = 0, Logical = 1],
        /// Delivery mode.
        DELIVERY OFFSET(8) NUMBITS(3) [Fixed = 0],
        /// The vector.
        VECTOR OFFSET(0) NUMBITS(8) [],
    ],
    REDIRECTION_HIGH [
        /// The destination (physical mode: a local APIC id).
        DESTINATION OFFSET(24) NUMBITS(8) [],
    ],
}

register_structs! {
    LocalApicRegisters {
        (0x000 => _reserved0),
        (0x020 => id: ReadOnly<u32, ID::Register>),
        (0x024 => _reserved1),
        (0x080 => task_priority: ReadWrite<u32>),
        (0x084 => _reserved2),
        (0x0b0 => eoi: WriteOnly<u32>),
        (0x0b4 => _reserved3),
        (0x0f0 => spurious: ReadWrite<u32, SVR::Register>),
        (0x0f4 => _reserved4),
        (0x300 => command_low: ReadWrite<u32>),
        (0x304 => _reserved5),
        (0x310 => command_high: ReadWrite<u32>),
        (0x314 => _reserved6),
        (0x320 => lvt_timer: ReadWrite<u32, LVT_TIMER::Register>),
        (0x324 => @END),
    }
}

register_structs! {
    IoApicRegisters {
        /// IOREGSEL: the index of the register IOWIN reaches.
        (0x00 => select: ReadWrite<u32>),
        (0x04 => _reserved0),
        /// IOWIN: the selected register.
        (0x10 => window: ReadWrite<u32>),
        (0x14 => @END),
    }
}

/// The local APIC (each core's own, at one address) and the I/O APIC, and the
/// owner of each line.
pub struct Interrupts {
    local: &'static LocalApicRegisters,
    io: &'static IoApicRegisters,
    /// The boot core's local APIC id.
    boot_apic_id: u32,
    /// The last I/O APIC redirection entry.
    max_entry: u32,
    /// Per ISA line: the index of the partition it is granted to.
    owners: [Option<usize>; LINES],
}

/// Whose interrupt a VM exit acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// IRQ line `.0` of partition `.1`.
    Partition(u32, usize),
    /// The kernel's console UART.
    Console,
    /// Another core's kick.
    Kick,
    /// Spurious, or nobody's.
    Nobody,
}

// SAFETY: an `Interrupts` is the only user of the two register blocks (the kernel
// keeps one, inside the kernel state, used by one core at a time; the local APIC
// block each core reaches is that core's own), so moving it moves the exclusive
// right to use them with it.
unsafe impl Send for Interrupts {}

impl Interrupts {
    /// Software-enables the boot CPU's local APIC and masks every I/O APIC input.
    ///
    /// # Safety
    /// Once, at boot, on the boot CPU with interrupts disabled; the local APIC (at
    /// the address IA32_APIC_BASE gives) and the I/O APIC at `0xfec0_0000` must be
    /// identity-mapped, and nothing else may use them.
    pub unsafe fn init() -> Interrupts {
        // SAFETY: forwarded from this function's contract.
        let local = unsafe { enable_local_apic() };
        // SAFETY: per this function's contract the block is mapped and ours; the
        // structure matches the I/O APIC's register layout.
        let io = unsafe { &*(IO_APIC_BASE as *const IoApicRegisters) };
        let mut interrupts = Interrupts {
            local,
            io,
            boot_apic_id: local.id.read(ID::ID),
            max_entry: 0,
            owners: [None; LINES],
        };
        interrupts.max_entry =
            LocalRegisterCopy::<u32, VERSION::Register>::new(interrupts.read(IO_APIC_VERSION))
                .read(VERSION::MAX_ENTRY);
        for entry in 0..=interrupts.max_entry {
            interrupts.write(
                IO_APIC_REDIRECTION + 2 * entry,
                REDIRECTION_LOW::MASK::SET.value,
            );
        }
        interrupts
    }

    fn read(&self, register: u32) -> u32 {
        self.io.select.set(register);
        self.io.window.get()
    }

    fn write(&self, register: u32, value: u32) {
        self.io.select.set(register);
        self.io.window.set(value);
    }

    /// The boot core's local APIC id.
    pub fn boot_apic_id(&self) -> u32 {
        self.boot_apic_id
    }

    /// Software-enables the calling core's local APIC, as [`Interrupts::init`] did
    /// the boot core's.
    ///
    /// # Safety
    /// Once per core other than the boot core, at its start, with interrupts
    /// disabled; the boot core's `init` ran first.
    pub unsafe fn init_this_core() {
        // SAFETY: forwarded from this function's contract; `init` checked that the
        // local APIC is mapped.
        unsafe { enable_local_apic() };
    }

    /// Sends an inter-processor interrupt command (the low word of the interrupt
    /// command register: delivery mode, level, vector) to the local APIC with id
    /// `apic_id`, and waits until the local APIC has sent it.
    pub fn send_command(&self, apic_id: u32, command: u32) {
        const DELIVERY_PENDING: u32 = 1 << 12;
        self.local.command_high.set(apic_id << 24);
        self.local.command_low.set(command);
        while self.local.command_low.get() & DELIVERY_PENDING != 0 {
            core::hint::spin_loop();
        }
    }

    /// Sends [`KICK_VECTOR`] to the core whose local APIC id is `apic_id`: fixed
    /// delivery, physical destination.
    pub fn kick(&self, apic_id: u32) {
        self.send_command(apic_id, u32::from(KICK_VECTOR));
    }

    /// Routes IRQ `line` to partition `owner` (its index), which runs on the core
    /// whose local APIC id is `destination`: the line's I/O APIC input (the same
    /// number, but IRQ 0, the PIT, is wired to input 2) is unmasked with vector
    /// [`VECTOR_BASE`] + line. Panics (at boot) if the line is not an ISA line of
    /// this machine or is granted twice.
    pub fn route(&mut self, line: u32, owner: usize, name: &str, destination: u32) {
        let slot = usize::try_from(line)
            .ok()
            .and_then(|line| self.owners.get_mut(line))
            .unwrap_or_else(|| panic!("{name}: IRQ {line} is not an ISA line (0 to 15)"));
        if slot.is_some() {
            panic!("{name}: IRQ {line} is granted to two partitions");
        }
        if line == crate::serial::IRQ_LINE {
            panic!("{name}: IRQ {line} is the kernel's console");
        }
        *slot = Some(owner);
        self.unmask(line, u32::from(VECTOR_BASE) + line, name, destination);
    }

    /// Routes COM1's line to [`CONSOLE_VECTOR`] on the core whose local APIC id is
    /// `destination`.
    pub fn route_console(&mut self, destination: u32) {
        let vector = u32::from(CONSOLE_VECTOR);
        self.unmask(crate::serial::IRQ_LINE, vector, "the console", destination);
    }

    /// Unmasks ISA line `line`'s I/O APIC input (the same number, but IRQ 0, the
    /// PIT, is wired to input 2) with `vector`, fixed delivery to local APIC
    /// `destination`, edge-triggered and active high.
    fn unmask(&mut self, line: u32, vector: u32, name: &str, destination: u32) {
        let input = if line == 0 { 2 } else { line };
        assert!(
            input <= self.max_entry,
            "{name}: IRQ {line}: the I/O APIC has no input {input}"
        );
        let register = IO_APIC_REDIRECTION + 2 * input;
        self.write(
            register + 1,
            REDIRECTION_HIGH::DESTINATION.val(destination).value,
        );
        self.write(
            register,
            (REDIRECTION_LOW::VECTOR.val(vector)
                + REDIRECTION_LOW::DELIVERY::Fixed
                + REDIRECTION_LOW::DESTINATION_MODE::Physical
                + REDIRECTION_LOW::POLARITY::ActiveHigh
                + REDIRECTION_LOW::TRIGGER::Edge
                + REDIRECTION_LOW::MASK::CLEAR)
                .value,
        );
    }

    /// Ends the interrupt with `vector`, which the CPU acknowledged on a VM exit
    /// (an EOI to the local APIC, except for the spurious vector, which has none),
    /// and says whose it was.
    pub fn end(&self, vector: u8) -> Ended {
        if vector == SPURIOUS_VECTOR {
            return Ended::Nobody;
        }
        self.local.eoi.set(0);
        self.whose(vector)
    }

    /// Whose the interrupt with `vector` is (the timer's and the spurious vector
    /// are nobody's).
    pub fn whose(&self, vector: u8) -> Ended {
        if vector == CONSOLE_VECTOR {
            return Ended::Console;
        }
        if vector == KICK_VECTOR {
            return Ended::Kick;
        }
        let owner = |line: u8| Some((u32::from(line), (*self.owners.get(usize::from(line))?)?));
        match vector.checked_sub(VECTOR_BASE).and_then(owner) {
            Some((line, partition)) => Ended::Partition(line, partition),
            None => Ended::Nobody,
        }
    }
}

/// Whether the local APIC timer has the TSC-deadline mode the idle wait needs.
/// The kernel checks it before it starts anything (`@@ kernel unsupported`).
pub fn has_tsc_deadline() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & CPUID_1_ECX_TSC_DEADLINE != 0
}

/// Software-enables the calling core's local APIC (task priority 0, spurious vector
/// [`SPURIOUS_VECTOR`]) and returns its registers. Its timer is put in
/// TSC-deadline mode where the processor has it; elsewhere it stays masked, as at
/// reset, and the kernel stops before it would use it.
///
/// # Safety
/// At a core's start, with interrupts disabled; the local APIC (at the address
/// IA32_APIC_BASE gives) must be identity-mapped.
unsafe fn enable_local_apic() -> &'static LocalApicRegisters {
    let base = vmx::read_msr(IA32_APIC_BASE);
    assert!(
        base & APIC_BASE_ENABLE != 0 && base & APIC_BASE_X2APIC == 0,
        "the local APIC is disabled or in x2APIC mode (IA32_APIC_BASE {base:#x})"
    );
    // SAFETY: per this function's contract the block is mapped; the structure
    // matches the local APIC's register layout.
    let local = unsafe { &*((base & APIC_BASE_ADDRESS) as *const LocalApicRegisters) };
    LOCAL_APIC.store(base & APIC_BASE_ADDRESS, Ordering::Relaxed);
    local.task_priority.set(0);
    local
        .spurious
        .write(SVR::ENABLE::SET + SVR::VECTOR.val(u32::from(SPURIOUS_VECTOR)));
    if !has_tsc_deadline() {
        return local;
    }
    // The timer stays quiet until a deadline is written (`arm_deadline`).
    local.lvt_timer.write(
        LVT_TIMER::MODE::TscDeadline
            + LVT_TIMER::MASK::CLEAR
            + LVT_TIMER::VECTOR.val(u32::from(TIMER_VECTOR)),
    );
    local
}

/// Ends the interrupt in service on this core (an EOI to its local APIC), for
/// the idle wait's interrupt stubs, which run without the kernel state.
pub fn end_of_interrupt() {
    let base = LOCAL_APIC.load(Ordering::Relaxed);
    // SAFETY: `base` is the local APIC's address (every core's own block is
    // there), set by `enable_local_apic` before interrupts were ever enabled and
    // identity-mapped; writing its EOI register only ends the interrupt in
    // service, which is what the caller took.
    let local = unsafe { &*(base as *const LocalApicRegisters) };
    local.eoi.set(0);
}

/// Arms this core's local APIC timer to interrupt (at [`TIMER_VECTOR`]) when the
/// TSC reaches `tsc`: at once if it has already passed.
pub fn arm_deadline(tsc: u64) {
    // SAFETY: IA32_TSC_DEADLINE is this core's timer deadline, used only by the
    // idle wait on this core; the timer is in TSC-deadline mode
    // (`enable_local_apic`), whose LVT write was long since serialised.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc.max(1)) };
}

/// Disarms this core's local APIC timer (a deadline of 0).
pub fn disarm_deadline() {
    // SAFETY: as in `arm_deadline`; 0 disarms the timer.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(0) };
}
