//! Each core's local APIC, in the mode the firmware left the boot core's in:
//! xAPIC (memory-mapped registers, the same address on every core) or x2APIC
//! (model-specific registers), which UEFI firmware on many PCs hands over. The
//! kernel uses the local APIC for its task priority and spurious vector, the
//! end of each interrupt, the interrupt command register (kicks, and the start
//! of the other cores) and the TSC-deadline timer of the idle wait.
//!
//! Invariants:
//! - the mode is chosen once, by [`take_boot_core`] on the boot core before any
//!   other core runs or any interrupt can be taken, and never changes; every
//!   other core puts its own local APIC in that mode at its start
//!   ([`take_this_core`]), so every access below is right on every core;
//! - a local APIC found globally disabled is enabled in xAPIC mode; one found in
//!   x2APIC mode stays in it (the kernel never leaves x2APIC mode: the way back,
//!   through disabled, resets the local APIC, and Bochs refuses it);
//! - in xAPIC mode the register block's address is stored before it is used.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use x86_64::registers::model_specific::Msr;

use crate::vmx;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDRESS: u64 = 0xf_ffff_f000;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// CPUID leaf 1 ECX: the local APIC timer has TSC-deadline mode.
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// CPUID leaf 1 ECX: the local APIC has x2APIC mode.
const CPUID_1_ECX_X2APIC: u32 = 1 << 21;
// The x2APIC registers the kernel uses (SDM Vol. 3A, "x2APIC Register Address
// Space"): the xAPIC register's offset / 16, from MSR 0x800.
const X2APIC_ID: u32 = 0x802;
const X2APIC_TASK_PRIORITY: u32 = 0x808;
const X2APIC_EOI: u32 = 0x80b;
const X2APIC_SPURIOUS: u32 = 0x80f;
const X2APIC_COMMAND: u32 = 0x830;
const X2APIC_LVT_TIMER: u32 = 0x832;
/// The interrupt command's delivery-mode and level bits of an INIT de-assert,
/// which x2APIC mode does not have.
const COMMAND_MODE_AND_LEVEL: u32 = 0b111 << 8 | 1 << 14;
const INIT_DEASSERT_MODE: u32 = 0b101 << 8;

/// Whether the local APICs are in x2APIC mode (set by [`take_boot_core`]).
static X2APIC: AtomicBool = AtomicBool::new(false);
/// In xAPIC mode, the address of the register block (every core's own block is
/// there).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

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
}

register_structs! {
    XapicRegisters {
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

/// How the firmware left the boot core's local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// Enabled in xAPIC mode: the kernel uses xAPIC mode.
    Xapic,
    /// Globally disabled: the kernel enables it in xAPIC mode.
    Disabled,
    /// In x2APIC mode: the kernel uses x2APIC mode on every core.
    X2apic,
}

impl Handoff {
    /// The mode the firmware left, as the `@@ kernel apic` line names it.
    pub fn found(self) -> &'static str {
        match self {
            Handoff::Xapic => "xapic",
            Handoff::Disabled => "disabled",
            Handoff::X2apic => "x2apic",
        }
    }

    /// The mode the kernel uses, as the `@@ kernel apic` line names it.
    pub fn mode(self) -> &'static str {
        match self {
            Handoff::X2apic => "x2apic",
            Handoff::Xapic | Handoff::Disabled => "xapic",
        }
    }
}

fn xapic() -> &'static XapicRegisters {
    let base = XAPIC_BASE.load(Ordering::Relaxed);
    assert_ne!(base, 0, "the local APIC is not taken");
    // SAFETY: `take_boot_core` stored the address of the register block, which
    // the boot page tables identity-map; every core reaches its own block there;
    // `XapicRegisters` matches its layout.
    unsafe { &*(base as *const XapicRegisters) }
}

fn x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Writes x2APIC register `msr`.
fn write_x2apic(msr: u32, value: u64) {
    // SAFETY: the x2APIC registers the kernel writes are this core's own local
    // APIC's, in x2APIC mode (module invariants); the values are the ones the
    // xAPIC path writes to the same registers.
    unsafe { Msr::new(msr).write(value) };
}

/// Whether the local APIC timer has the TSC-deadline mode the idle wait needs.
/// The kernel checks it before it starts anything (`@@ kernel unsupported`).
pub fn has_tsc_deadline() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & CPUID_1_ECX_TSC_DEADLINE != 0
}

/// Puts the calling core's local APIC in x2APIC mode, as some firmware leaves
/// it (the `x2apic-handoff` self-test), where the processor has the mode;
/// returns whether it did.
///
/// # Safety
/// On the boot core, at boot, interrupts disabled, before [`take_boot_core`].
pub unsafe fn enter_x2apic_mode() -> bool {
    if core::arch::x86_64::__cpuid(1).ecx & CPUID_1_ECX_X2APIC == 0 {
        return false;
    }
    let base = vmx::read_msr(IA32_APIC_BASE);
    // SAFETY: xAPIC (or disabled) to x2APIC with the enable bit is a transition
    // the architecture allows; per this function's contract nothing uses the
    // local APIC yet.
    unsafe { Msr::new(IA32_APIC_BASE).write(base | APIC_BASE_ENABLE | APIC_BASE_X2APIC) };
    true
}

/// Takes the boot core's local APIC: chooses the mode from how the firmware
/// left it (see [`Handoff`]), sets it up as [`take_this_core`] does, and says
/// how it was found.
///
/// # Safety
/// Once, at boot, on the boot core, interrupts disabled, before any other core
/// runs; in xAPIC mode the register block (at the address IA32_APIC_BASE gives)
/// must be identity-mapped.
pub unsafe fn take_boot_core() -> Handoff {
    let base = vmx::read_msr(IA32_APIC_BASE);
    let handoff = match (base & APIC_BASE_ENABLE != 0, base & APIC_BASE_X2APIC != 0) {
        (true, false) => Handoff::Xapic,
        (false, _) => Handoff::Disabled,
        (true, true) => Handoff::X2apic,
    };
    X2APIC.store(handoff == Handoff::X2apic, Ordering::Relaxed);
    XAPIC_BASE.store(base & APIC_BASE_ADDRESS, Ordering::Relaxed);
    // SAFETY: forwarded from this function's contract; the mode is chosen.
    unsafe { take_this_core() };
    handoff
}

/// Puts the calling core's local APIC in the kernel's mode and software-enables
/// it: task priority 0, spurious vector `super::irq::SPURIOUS_VECTOR`, and its
/// timer in TSC-deadline mode at `super::irq::TIMER_VECTOR` where the processor
/// has it (elsewhere it stays masked, as at reset, and the kernel stops before
/// it would use it).
///
/// # Safety
/// At a core's start, interrupts disabled, after [`take_boot_core`] on the boot
/// core.
pub unsafe fn take_this_core() {
    let base = vmx::read_msr(IA32_APIC_BASE);
    let wanted = if x2apic() {
        base | APIC_BASE_ENABLE | APIC_BASE_X2APIC
    } else {
        assert!(
            base & APIC_BASE_X2APIC == 0,
            "this core's local APIC is in x2APIC mode and the boot core's was not"
        );
        base | APIC_BASE_ENABLE
    };
    if wanted != base {
        // SAFETY: disabled to xAPIC, and xAPIC to x2APIC, are transitions the
        // architecture allows; per this function's contract nothing uses the
        // local APIC yet.
        unsafe { Msr::new(IA32_APIC_BASE).write(wanted) };
    }
    let spurious =
        (SVR::ENABLE::SET + SVR::VECTOR.val(u32::from(super::irq::SPURIOUS_VECTOR))).value;
    // The timer stays quiet until a deadline is written (`arm_deadline`).
    let timer = has_tsc_deadline().then_some(
        (LVT_TIMER::MODE::TscDeadline
            + LVT_TIMER::MASK::CLEAR
            + LVT_TIMER::VECTOR.val(u32::from(super::irq::TIMER_VECTOR)))
        .value,
    );
    if x2apic() {
        write_x2apic(X2APIC_TASK_PRIORITY, 0);
        write_x2apic(X2APIC_SPURIOUS, u64::from(spurious));
        if let Some(timer) = timer {
            write_x2apic(X2APIC_LVT_TIMER, u64::from(timer));
        }
    } else {
        let local = xapic();
        local.task_priority.set(0);
        local.spurious.set(spurious);
        if let Some(timer) = timer {
            local.lvt_timer.set(timer);
        }
    }
}

/// The calling core's local APIC id.
pub fn id() -> u32 {
    if x2apic() {
        vmx::read_msr(X2APIC_ID) as u32
    } else {
        xapic().id.read(ID::ID)
    }
}

/// Ends the interrupt in service on this core (an EOI).
pub fn end_of_interrupt() {
    if x2apic() {
        write_x2apic(X2APIC_EOI, 0);
    } else {
        xapic().eoi.set(0);
    }
}

/// Sends an inter-processor interrupt command (the low word of the interrupt
/// command register: delivery mode, level, vector) to the local APIC with id
/// `apic_id`, and waits until the local APIC has sent it. In x2APIC mode an
/// INIT de-assert, which the mode does not have, is not sent.
pub fn send_command(apic_id: u32, command: u32) {
    if x2apic() {
        if command & COMMAND_MODE_AND_LEVEL == INIT_DEASSERT_MODE {
            return;
        }
        write_x2apic(
            X2APIC_COMMAND,
            u64::from(apic_id) << 32 | u64::from(command),
        );
        return;
    }
    const DELIVERY_PENDING: u32 = 1 << 12;
    let local = xapic();
    local.command_high.set(apic_id << 24);
    local.command_low.set(command);
    while local.command_low.get() & DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// Arms this core's local APIC timer to interrupt when the TSC reaches `tsc`:
/// at once if it has already passed.
pub fn arm_deadline(tsc: u64) {
    // SAFETY: IA32_TSC_DEADLINE is this core's timer deadline, used only by the
    // idle wait on this core; the timer is in TSC-deadline mode
    // (`take_this_core`), whose LVT write was long since serialised.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc.max(1)) };
}

/// Disarms this core's local APIC timer (a deadline of 0).
pub fn disarm_deadline() {
    // SAFETY: as in `arm_deadline`; 0 disarms the timer.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(0) };
}
