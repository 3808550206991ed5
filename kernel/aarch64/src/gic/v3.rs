//! The GICv3 back end of [`super`]: the kernel's own timer, and the shared
//! peripheral interrupts of devices granted to partitions.
//!
//! At boot [`Gic::init`] turns on affinity routing and group 1 in the distributor,
//! wakes the boot CPU's redistributor and enables the CPU interface at EL2 through
//! its system registers; [`Gic::enable_private`] then enables the kernel's private
//! interrupts (the timer's, and [`KICK`]). After that the kernel talks to the GIC
//! only through the CPU interface: [`acknowledge`], [`end`] and [`kick`].
//!
//! Invariants:
//! - the kernel enables no interrupt but those it passes to [`Gic::enable_private`]
//!   (the hypervisor timer, and the software interrupt [`KICK`] one core sends
//!   another) and [`route_spi`] (a device interrupt granted to a partition, routed
//!   to the core of that partition's vCPU 0 only); [`Gic::init`] disables every
//!   other one;
//! - interrupts are group 1 and the CPU interface uses EOImode 1: ICC_EOIR1_EL1 only
//!   drops the running priority. The kernel deactivates its own interrupts at once
//!   ([`end`]); a partition's interrupt stays active until the partition's virtual
//!   end of interrupt deactivates it through a hardware-linked list register (see
//!   `vgic.rs`), so a level-triggered device cannot interrupt again meanwhile;
//! - every interrupt the kernel acknowledges is ended before the kernel returns to a
//!   partition or waits again (see `trap.rs` and `timer.rs`).
//!
//! With QEMU `virt,virtualization=on` and no EL3 the GIC has a single security state
//! (GICD_CTLR.DS reads 1); the bits written here mean the same in the non-secure
//! view of a GIC with two security states.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ICC_CTLR_EL1, ICC_SRE_EL2, MPIDR_EL1};
use septum_core::memory::Range;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::{FIRST_SPECIAL_INTID, GicError, KICK, PRIORITY, wait_while};

register_bitfields! {u32,
    GICD_CTLR [
        /// Register write pending: an earlier write to the register still takes effect.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Affinity routing (ARE; ARE_NS in the non-secure view).
        ARE_NS OFFSET(4) NUMBITS(1) [],
        /// Group 1 interrupts are forwarded (EnableGrp1; EnableGrp1A non-secure).
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
    ],
    GICD_TYPER [
        /// Shared interrupts implemented: 32 × (N + 1) INTIDs in all.
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) [],
    ],
    GICR_CTLR [
        /// Register write pending: an earlier disable still takes effect.
        RWP OFFSET(3) NUMBITS(1) [],
    ],
    GICR_WAKER [
        /// The redistributor's interface to the CPU is quiescent.
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        /// The CPU is asleep: set at reset, cleared to connect it.
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) [],
    ],
}

register_bitfields! {u64,
    GICR_TYPER [
        /// The affinity (Aff3.Aff2.Aff1.Aff0) of the CPU this redistributor serves.
        AFFINITY OFFSET(32) NUMBITS(32) [],
        /// This is the last redistributor of its region.
        LAST OFFSET(4) NUMBITS(1) [],
        /// Virtual LPIs are supported (GICv4): the redistributor has four frames.
        VLPIS OFFSET(1) NUMBITS(1) [],
    ],
}

register_structs! {
    /// The distributor (GICD), as far as the kernel uses it.
    Distributor {
        (0x0000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved2),
        (0x6000 => irouter: [ReadWrite<u64>; 1024]),
        (0x8000 => @END),
    }
}

register_structs! {
    /// A redistributor's control frame (RD_base).
    RedistributorControl {
        (0x0000 => ctlr: ReadOnly<u32, GICR_CTLR::Register>),
        (0x0004 => _reserved0),
        (0x0008 => typer: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => _reserved1),
        (0x0014 => waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI and PPI frame (SGI_base), one bit or byte per INTID 0-31.
    RedistributorPrivate {
        (0x0000 => _reserved0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => @END),
    }
}

/// Offset of the SGI/PPI frame from a redistributor's control frame.
const PRIVATE_FRAME: u64 = 0x1_0000;
/// Bytes per redistributor: two 64 KiB frames, four with virtual LPIs (GICv4).
const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
const REDISTRIBUTOR_STRIDE_VLPI: u64 = 0x4_0000;
/// ICC_PMR_EL1 letting every priority through.
const PRIORITY_MASK_OPEN: u64 = 0xff;
/// ICC_CTLR_EL1.EOImode: 1 would split priority drop from deactivation.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// One core's redistributor, after [`Gic::init`] or [`Gic::init_this_core`].
pub struct Gic {
    control: &'static RedistributorControl,
    private: &'static RedistributorPrivate,
}

impl Gic {
    /// Initialises the distributor at `distributor`, the boot CPU's redistributor
    /// (found in `redistributors` by its affinity) and this CPU's interface, with
    /// every interrupt still disabled.
    ///
    /// # Safety
    /// The ranges must be the GICv3 distributor and redistributor regions, mapped as
    /// device memory, used by nothing else; must run once, at boot, with interrupts
    /// masked.
    pub unsafe fn init(distributor: Range, redistributors: Range) -> Result<Gic, GicError> {
        // SAFETY: per the contract `distributor` is the mapped GICD block;
        // `Distributor` matches the start of its layout.
        let gicd = unsafe { &*(distributor.start as *const Distributor) };
        // The groups off, then affinity routing on, then group 1 on: ARE may change
        // only while the groups are disabled.
        gicd.ctlr.set(0);
        wait_while(|| gicd.ctlr.is_set(GICD_CTLR::RWP))?;
        gicd.ctlr.write(GICD_CTLR::ARE_NS::SET);
        wait_while(|| gicd.ctlr.is_set(GICD_CTLR::RWP))?;
        // Every shared interrupt off, whatever the firmware left (register 0 covers
        // the private INTIDs, which the redistributor controls under ARE).
        let lines = gicd.typer.read(GICD_TYPER::IT_LINES_NUMBER) as usize + 1;
        for register in &gicd.icenabler[1..lines.min(gicd.icenabler.len())] {
            register.set(u32::MAX);
        }
        wait_while(|| gicd.ctlr.is_set(GICD_CTLR::RWP))?;
        gicd.ctlr
            .write(GICD_CTLR::ARE_NS::SET + GICD_CTLR::ENABLE_GRP1::SET);
        wait_while(|| gicd.ctlr.is_set(GICD_CTLR::RWP))?;

        // SAFETY: forwarded from this function's contract.
        unsafe { Gic::init_this_core(redistributors) }
    }

    /// Wakes the redistributor of the core running this (found in `redistributors`
    /// by its affinity), with every private interrupt disabled, and enables this
    /// core's CPU interface. Every core runs this once; the boot core through
    /// [`Gic::init`].
    ///
    /// # Safety
    /// `redistributors` must be the mapped GICv3 redistributor region; must run once
    /// per core, with interrupts masked.
    pub unsafe fn init_this_core(redistributors: Range) -> Result<Gic, GicError> {
        // SAFETY: per the contract `redistributors` is the mapped GICR region.
        let control = unsafe { find_redistributor(redistributors) }?;
        control.waker.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
        wait_while(|| control.waker.is_set(GICR_WAKER::CHILDREN_ASLEEP))?;
        let private_base = control as *const RedistributorControl as u64 + PRIVATE_FRAME;
        // SAFETY: the SGI/PPI frame follows the control frame of the same
        // redistributor, inside the mapped region; `RedistributorPrivate` matches it.
        let private = unsafe { &*(private_base as *const RedistributorPrivate) };
        private.icenabler0.set(u32::MAX);
        wait_while(|| control.ctlr.is_set(GICR_CTLR::RWP))?;

        enable_cpu_interface();
        Ok(Gic { control, private })
    }

    /// Makes private interrupt `intid` (an SGI, 0 to 15, or a PPI, 16 to 31)
    /// group 1, of the kernel's priority, and enables it.
    pub fn enable_private(&self, intid: u32) -> Result<(), GicError> {
        assert!(intid < 32, "INTID {intid} is not a private interrupt");
        let bit = 1 << intid;
        self.private.igroupr0.set(self.private.igroupr0.get() | bit);
        self.private.ipriorityr[intid as usize].set(PRIORITY);
        self.private.isenabler0.set(bit);
        wait_while(|| self.control.ctlr.is_set(GICR_CTLR::RWP))
    }
}

/// Routes shared peripheral interrupt `intid` to the core with affinity `mpidr`, as
/// group 1 at the kernel's priority, and enables it.
///
/// # Safety
/// `distributor` must be the mapped GICv3 distributor, initialised by
/// [`Gic::init`]; no other core may be changing the same registers.
pub unsafe fn route_spi(distributor: Range, intid: u32, mpidr: u64) -> Result<(), GicError> {
    assert!(
        (32..1020).contains(&intid),
        "INTID {intid} is not a shared peripheral interrupt"
    );
    // SAFETY: per the contract `distributor` is the mapped GICD block.
    let gicd = unsafe { &*(distributor.start as *const Distributor) };
    let (word, bit) = ((intid / 32) as usize, 1 << (intid % 32));
    gicd.igroupr[word].set(gicd.igroupr[word].get() | bit);
    gicd.ipriorityr[intid as usize].set(PRIORITY);
    let affinity = (mpidr & 0xff_00ff_ffff) & !(1 << 31);
    gicd.irouter[intid as usize].set(affinity);
    gicd.isenabler[word].set(bit);
    wait_while(|| gicd.ctlr.is_set(GICD_CTLR::RWP))
}

/// Sends [`KICK`] to the core with affinity `mpidr`.
pub fn kick(mpidr: u64) {
    let field = |shift: u32| (mpidr >> shift) & 0xff;
    // ICC_SGI1R_EL1: target list (the bit of Aff0 within its group of 16), Aff1,
    // INTID, Aff2, Aff3; IRM clear (to the listed core only).
    let target = 1u64 << (field(0) & 0xf);
    let sgi =
        target | (field(8) << 16) | (u64::from(KICK) << 24) | (field(16) << 32) | (field(32) << 48);
    // SAFETY: writing ICC_SGI1R_EL1 only raises a group 1 SGI on one core; the
    // barrier orders the kernel's stores before it, as the kicked core reads them
    // under the kernel lock anyway.
    unsafe {
        asm!("dsb ish", "msr icc_sgi1r_el1, {}", "isb", in(reg) sgi, options(nostack));
    }
}

/// Finds the redistributor of the CPU running this code in `region`.
///
/// # Safety
/// `region` must be a mapped GICv3 redistributor region.
unsafe fn find_redistributor(region: Range) -> Result<&'static RedistributorControl, GicError> {
    let affinity = (MPIDR_EL1.read(MPIDR_EL1::Aff3) << 24)
        | (MPIDR_EL1.read(MPIDR_EL1::Aff2) << 16)
        | (MPIDR_EL1.read(MPIDR_EL1::Aff1) << 8)
        | MPIDR_EL1.read(MPIDR_EL1::Aff0);
    let mut base = region.start;
    while base
        .checked_add(REDISTRIBUTOR_STRIDE)
        .is_some_and(|end| end <= region.end)
    {
        // SAFETY: `base` starts a redistributor inside the mapped region (the loop
        // condition keeps its two frames inside it).
        let control = unsafe { &*(base as *const RedistributorControl) };
        let typer = control.typer.extract();
        if typer.read(GICR_TYPER::AFFINITY) == affinity {
            return Ok(control);
        }
        if typer.is_set(GICR_TYPER::LAST) {
            break;
        }
        base += if typer.is_set(GICR_TYPER::VLPIS) {
            REDISTRIBUTOR_STRIDE_VLPI
        } else {
            REDISTRIBUTOR_STRIDE
        };
    }
    Err(GicError::NoRedistributor)
}

/// Enables this CPU's interface at EL2: system-register access, every priority
/// unmasked, group 1 on, EOImode 1; and the virtual CPU interface that partitions
/// use (ICH_HCR_EL2.En).
fn enable_cpu_interface() {
    ICC_SRE_EL2.modify(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
    barrier::isb(barrier::SY);
    let ctlr = ICC_CTLR_EL1.get() | ICC_CTLR_EOIMODE;
    // SAFETY: the CPU interface's registers control only interrupt delivery to this
    // CPU, which has every interrupt masked (DAIF) while the kernel runs.
    unsafe {
        asm!("msr icc_ctlr_el1, {}", in(reg) ctlr, options(nomem, nostack));
        asm!("msr icc_pmr_el1, {}", in(reg) PRIORITY_MASK_OPEN, options(nomem, nostack));
        asm!("msr icc_igrpen1_el1, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("msr ich_hcr_el2, {}", in(reg) 1u64, options(nomem, nostack));
    }
    barrier::isb(barrier::SY);
}

/// Acknowledges the highest-priority pending group 1 interrupt: returns its INTID,
/// now active, or `None` if nothing is pending (a spurious interrupt).
pub fn acknowledge() -> Option<u32> {
    let intid: u64;
    // SAFETY: reading ICC_IAR1_EL1 makes the pending interrupt active; the caller
    // ends it (module invariant). It touches no memory.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) intid, options(nomem, nostack)) };
    let intid = (intid & 0xff_ffff) as u32;
    (intid < FIRST_SPECIAL_INTID).then_some(intid)
}

/// Ends interrupt `intid`, which [`acknowledge`] returned and the kernel itself
/// handles: drops the running priority and deactivates it.
pub fn end(intid: u32) {
    drop_priority(intid);
    // SAFETY: writing ICC_DIR_EL1 with an acknowledged INTID deactivates it (EOImode
    // 1); it touches no memory.
    unsafe { asm!("msr icc_dir_el1, {}", in(reg) u64::from(intid), options(nomem, nostack)) };
}

/// Drops the running priority of acknowledged interrupt `intid` but leaves it
/// active: for a partition's interrupt, which the partition deactivates.
pub fn drop_priority(intid: u32) {
    // SAFETY: writing ICC_EOIR1_EL1 with an acknowledged INTID drops the running
    // priority (EOImode 1); it touches no memory.
    unsafe { asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nomem, nostack)) };
}
