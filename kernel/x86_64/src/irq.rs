//! Device interrupts: the local APIC and the I/O APIC, and which partition owns
//! each interrupt; and the local APIC's interrupt command register, through which
//! the boot core starts the others (`smp.rs`).
//!
//! At boot the kernel takes each core's local APIC (`local_apic.rs`, in the mode
//! the firmware left the boot core's in) and software-enables it (task priority 0,
//! spurious vector [`SPURIOUS_VECTOR`]), masks every I/O APIC redirection entry, and
//! unmasks only the entries of the IRQ lines the system package grants, each to
//! vector [`VECTOR_BASE`] + line, fixed delivery, physical destination = the local
//! APIC of the core the owner is pinned to, edge-triggered and active high (as ISA
//! interrupts are; the I/O APIC's destination field holds 8 bits, so a local APIC
//! id past 255, which only x2APIC mode has, cannot be a destination). The 8259
//! PICs stay masked. Every core reaches its own local APIC at the same address
//! or MSRs, so ending an interrupt reaches the core that took it.
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

use tock_registers::LocalRegisterCopy;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use crate::local_apic;

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
/// The first redirection entry's register index (entry `n`: `0x10 + 2n` low half,
/// `0x11 + 2n` high half).
const IO_APIC_REDIRECTION: u32 = 0x10;
const IO_APIC_VERSION: u32 = 0x01;
register_bitfields! {u32,
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
    /// Takes the boot CPU's local APIC ([`local_apic::take_boot_core`]) and
    /// masks every I/O APIC input; returns them with how the firmware had left
    /// the local APIC.
    ///
    /// # Safety
    /// Once, at boot, on the boot CPU with interrupts disabled; the local APIC (at
    /// the address IA32_APIC_BASE gives) and the I/O APIC at `0xfec0_0000` must be
    /// identity-mapped, and nothing else may use them.
    pub unsafe fn init() -> (Interrupts, local_apic::Handoff) {
        // SAFETY: forwarded from this function's contract.
        let handoff = unsafe { local_apic::take_boot_core() };
        // SAFETY: per this function's contract the block is mapped and ours; the
        // structure matches the I/O APIC's register layout.
        let io = unsafe { &*(IO_APIC_BASE as *const IoApicRegisters) };
        let mut interrupts = Interrupts {
            io,
            boot_apic_id: local_apic::id(),
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
        (interrupts, handoff)
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

    /// Takes the calling core's local APIC, as [`Interrupts::init`] did the boot
    /// core's.
    ///
    /// # Safety
    /// Once per core other than the boot core, at its start, with interrupts
    /// disabled; the boot core's `init` ran first.
    pub unsafe fn init_this_core() {
        // SAFETY: forwarded from this function's contract.
        unsafe { local_apic::take_this_core() };
    }

    /// Sends an inter-processor interrupt command to the local APIC with id
    /// `apic_id` ([`local_apic::send_command`]).
    pub fn send_command(&self, apic_id: u32, command: u32) {
        local_apic::send_command(apic_id, command);
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
        local_apic::end_of_interrupt();
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
