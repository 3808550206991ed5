//! The GICv2 back end of [`super`] (the Raspberry Pi 4's GIC-400): the
//! distributor, the memory-mapped CPU interface, and for `vgic.rs` the virtual
//! interface control (GICH) with its list registers. The layouts and the list
//! register encoding are `septum_gicv2`'s.
//!
//! Unlike a GICv3, the private interrupts are banked in the distributor (each
//! core sees its own SGIs and PPIs there), a shared interrupt is routed by CPU
//! interface number (`GICD_ITARGETSR`), and an SGI's end must name the core that
//! sent it.
//!
//! Invariants:
//! - the blocks' addresses are stored once by [`init`], on the boot core,
//!   before any other core runs, and never change;
//! - a core's CPU interface number is its affinity level 0 (a single cluster of
//!   at most 8 cores, as on the GIC-400's boards);
//! - an SGI a core has acknowledged and not yet ended is recorded with its
//!   sender in that core's slot of [`SGI_SENDER`], and only that core reads it.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use septum_core::memory::Range;
use septum_core::system::MAX_CPUS;
use septum_gicv2::{
    CpuInterface, Distributor, GICC_CTLR_NON_SECURE, GICC_CTLR_SINGLE_SECURITY, GICC_IAR,
    GICD_CTLR, GICD_SGIR, GICD_TYPER, GICH_HCR, GICH_VTR, HypervisorInterface, list_from_v3,
    list_to_v3,
};
use tock_registers::interfaces::{Readable, Writeable};

use super::{FIRST_SPECIAL_INTID, GicError, KICK, PRIORITY};
use crate::vgic::LIST_REGISTERS;

/// The distributor's, CPU interface's and virtual interface control's addresses.
static DISTRIBUTOR: AtomicU64 = AtomicU64::new(0);
static CPU_INTERFACE: AtomicU64 = AtomicU64::new(0);
static HYPERVISOR: AtomicU64 = AtomicU64::new(0);
/// Per core: the GICC_IAR value of the SGI it has acknowledged, for its end.
static SGI_SENDER: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// GICC_PMR letting every priority through.
const PRIORITY_MASK_OPEN: u32 = 0xff;

fn distributor() -> &'static Distributor {
    let base = DISTRIBUTOR.load(Ordering::Relaxed);
    assert_ne!(base, 0, "the GICv2 is not initialised");
    // SAFETY: `init` stored the mapped GICD block's address (module invariant);
    // `Distributor` matches the start of its layout.
    unsafe { &*(base as *const Distributor) }
}

fn cpu_interface() -> &'static CpuInterface {
    let base = CPU_INTERFACE.load(Ordering::Relaxed);
    assert_ne!(base, 0, "the GICv2 is not initialised");
    // SAFETY: `init` stored the mapped 8 KiB GICC block's address; `CpuInterface`
    // matches its layout.
    unsafe { &*(base as *const CpuInterface) }
}

fn hypervisor() -> &'static HypervisorInterface {
    let base = HYPERVISOR.load(Ordering::Relaxed);
    assert_ne!(base, 0, "the GICv2 is not initialised");
    // SAFETY: `init` stored the mapped GICH block's address; it is banked, each
    // core sees its own; `HypervisorInterface` matches its layout.
    unsafe { &*(base as *const HypervisorInterface) }
}

/// Initialises the distributor (every shared interrupt disabled, forwarding on)
/// and the boot core's interface.
///
/// # Safety
/// The ranges must be the GICv2's GICD, GICC and GICH blocks, mapped as device
/// memory, used by nothing else; once, at boot, with interrupts masked.
pub unsafe fn init(
    distributor_block: Range,
    cpu: Range,
    hypervisor_block: Range,
) -> Result<(), GicError> {
    DISTRIBUTOR.store(distributor_block.start, Ordering::Relaxed);
    CPU_INTERFACE.store(cpu.start, Ordering::Relaxed);
    HYPERVISOR.store(hypervisor_block.start, Ordering::Relaxed);
    let lists = hypervisor().vtr.read(GICH_VTR::LIST_REGS) as usize + 1;
    if lists < LIST_REGISTERS {
        return Err(GicError::TooFewListRegisters);
    }
    let gicd = distributor();
    gicd.ctlr.set(0);
    let lines = gicd.typer.read(GICD_TYPER::IT_LINES_NUMBER) as usize + 1;
    for register in &gicd.icenabler[1..lines.min(gicd.icenabler.len())] {
        register.set(u32::MAX);
    }
    // With the security extensions EL2 sees the non-secure view, whose bit 0
    // forwards group 1; without them both groups are forwarded.
    if gicd.typer.is_set(GICD_TYPER::SECURITY_EXTN) {
        gicd.ctlr.write(GICD_CTLR::ENABLE_GRP0::SET);
    } else {
        gicd.ctlr
            .write(GICD_CTLR::ENABLE_GRP0::SET + GICD_CTLR::ENABLE_GRP1::SET);
    }
    init_this_core()
}

/// This core's private interrupts disabled, its CPU interface and its virtual
/// interface control enabled.
pub fn init_this_core() -> Result<(), GicError> {
    let gicd = distributor();
    gicd.icenabler[0].set(u32::MAX);
    let gicc = cpu_interface();
    gicc.pmr.set(PRIORITY_MASK_OPEN);
    gicc.ctlr
        .set(if gicd.typer.is_set(GICD_TYPER::SECURITY_EXTN) {
            GICC_CTLR_NON_SECURE
        } else {
            GICC_CTLR_SINGLE_SECURITY
        });
    hypervisor().hcr.write(GICH_HCR::EN::SET);
    Ok(())
}

/// Makes private interrupt `intid` group 1, of the kernel's priority, and
/// enables it on this core (the registers of INTIDs 0-31 are banked per core).
pub fn enable_private(intid: u32) -> Result<(), GicError> {
    assert!(intid < 32, "INTID {intid} is not a private interrupt");
    let gicd = distributor();
    let bit = 1 << intid;
    gicd.igroupr[0].set(gicd.igroupr[0].get() | bit);
    gicd.ipriorityr[intid as usize].set(PRIORITY);
    gicd.isenabler[0].set(bit);
    Ok(())
}

/// Routes shared interrupt `intid` to the core with affinity `mpidr`, group 1 at
/// the kernel's priority, and enables it.
pub fn route_spi(intid: u32, mpidr: u64) -> Result<(), GicError> {
    assert!(
        (32..FIRST_SPECIAL_INTID).contains(&intid),
        "INTID {intid} is not a shared peripheral interrupt"
    );
    let gicd = distributor();
    let (word, bit) = ((intid / 32) as usize, 1 << (intid % 32));
    gicd.igroupr[word].set(gicd.igroupr[word].get() | bit);
    gicd.ipriorityr[intid as usize].set(PRIORITY);
    gicd.itargetsr[intid as usize].set(interface_bit(mpidr) as u8);
    gicd.isenabler[word].set(bit);
    Ok(())
}

/// The CPU interface of the core with affinity `mpidr`, as a target-list bit.
fn interface_bit(mpidr: u64) -> u32 {
    1 << (mpidr & 0x7)
}

/// Sends [`KICK`] to the core with affinity `mpidr`.
pub fn kick(mpidr: u64) {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
    distributor().sgir.write(
        GICD_SGIR::SGI_INTID.val(KICK)
            + GICD_SGIR::CPU_TARGET_LIST.val(interface_bit(mpidr))
            + GICD_SGIR::TARGET_LIST_FILTER.val(0),
    );
}

/// Acknowledges the highest-priority pending interrupt: its INTID, now active,
/// or `None` if nothing is pending.
pub fn acknowledge() -> Option<u32> {
    let iar = cpu_interface().iar.extract();
    let intid = iar.read(GICC_IAR::INTERRUPT_ID);
    if intid >= FIRST_SPECIAL_INTID {
        return None;
    }
    if intid < 16 {
        SGI_SENDER[crate::cpu::index()].store(iar.get(), Ordering::Relaxed);
    }
    Some(intid)
}

/// What GICC_EOIR and GICC_DIR take for `intid`: with an SGI's sender.
fn end_value(intid: u32) -> u32 {
    if intid < 16 {
        SGI_SENDER[crate::cpu::index()].load(Ordering::Relaxed)
    } else {
        intid
    }
}

/// Drops the running priority of `intid` and deactivates it.
pub fn end(intid: u32) {
    let value = end_value(intid);
    let gicc = cpu_interface();
    gicc.eoir.set(value);
    gicc.dir.set(value);
}

/// Drops the running priority of `intid`, leaving it active.
pub fn drop_priority(intid: u32) {
    cpu_interface().eoir.set(end_value(intid));
}

/// List register `index` of this core's virtual interface, in the GICv3 form
/// `vgic.rs` keeps.
pub fn read_list(index: usize) -> u64 {
    list_to_v3(hypervisor().lr[index].get())
}

/// Writes list register `index` from its GICv3 form.
pub fn write_list(index: usize, list: u64) {
    let value = list_from_v3(list).expect("the kernel lists INTIDs below 1020 only");
    hypervisor().lr[index].set(value);
}

/// GICH_VMCR: the virtual CPU interface's control state.
pub fn read_vmcr() -> u64 {
    u64::from(hypervisor().vmcr.get())
}

/// Restores GICH_VMCR.
pub fn write_vmcr(value: u64) {
    hypervisor().vmcr.set(value as u32);
}

/// GICH_APR: the virtual interface's active priorities.
pub fn read_active_priorities() -> u64 {
    u64::from(hypervisor().apr.get())
}

/// Restores GICH_APR.
pub fn write_active_priorities(value: u64) {
    hypervisor().apr.set(value as u32);
}

/// Writes GICH_HCR (its En and UIE bits are ICH_HCR_EL2's).
pub fn write_control(value: u64) {
    hypervisor().hcr.set(value as u32);
}
