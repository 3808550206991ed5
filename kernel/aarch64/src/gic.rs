//! The interrupt controller, a GICv3 ([`v3`]) or a GICv2 such as the Raspberry
//! Pi 4's GIC-400 ([`v2`]), whichever the device tree names ([`GicBlocks`]).
//! The rest of the kernel calls only this module: [`Gic::init`] at boot and
//! [`Gic::init_this_core`] on each secondary, [`Gic::enable_private`],
//! [`route_spi`], [`kick`], [`acknowledge`], [`end`] and [`drop_priority`].
//!
//! Invariants:
//! - the version is chosen once, by [`Gic::init`] on the boot core before any
//!   other core runs, and never changes; every call goes to that version's back end;
//! - both back ends keep the same rules: group 1 interrupts, EOImode 1 (priority
//!   drop and deactivation split), only the interrupts the kernel enables itself
//!   enabled, and every acknowledged interrupt ended before the kernel returns to
//!   a partition or waits again.

pub mod v2;
mod v3;

use core::sync::atomic::{AtomicU8, Ordering};

use septum_abi::layout::GICV2_CPU_INTERFACE_SIZE;
use septum_core::memory::Range;

/// The software-generated interrupt one core sends another to make it enter the
/// kernel (`septum_kernel::Machine::kick`).
pub const KICK: u32 = 1;
/// The priority of the kernel's interrupts: the middle of the range, so it is
/// implemented whatever number of priority bits the GIC has.
const PRIORITY: u8 = 0x80;
/// INTIDs from here on are special (1023: spurious, nothing pending).
const FIRST_SPECIAL_INTID: u32 = 1020;
/// How many times to poll a GIC status bit before giving up on it.
const POLL_LIMIT: u32 = 1_000_000;

/// The GIC's register blocks, as the device tree gives them.
#[derive(Clone, Copy, Debug)]
pub enum GicBlocks {
    /// `arm,gic-v3`: the distributor and the redistributors.
    V3 {
        /// GICD.
        distributor: Range,
        /// Every core's redistributor.
        redistributors: Range,
    },
    /// `arm,gic-400` or `arm,cortex-a15-gic` with the virtualization extensions.
    V2 {
        /// GICD.
        distributor: Range,
        /// GICC, the physical CPU interface.
        cpu: Range,
        /// GICH, the virtual interface control.
        hypervisor: Range,
        /// GICV, the virtual CPU interface: mapped into every native partition
        /// (see [`GicBlocks::partition_cpu_interface`]), never used by the kernel.
        virtual_cpu: Range,
    },
}

impl GicBlocks {
    /// The blocks the kernel maps for itself (not GICV, which is partitions').
    pub fn kernel_blocks(&self) -> heapless::Vec<Range, 3> {
        let mut blocks = heapless::Vec::new();
        let list: &[Range] = match self {
            GicBlocks::V3 {
                distributor,
                redistributors,
            } => &[*distributor, *redistributors],
            GicBlocks::V2 {
                distributor,
                cpu,
                hypervisor,
                ..
            } => &[*distributor, *cpu, *hypervisor],
        };
        for block in list {
            let _ = blocks.push(*block);
        }
        blocks
    }

    /// The machine block a native partition's own GIC driver uses, mapped at
    /// [`GICV2_CPU_INTERFACE`](septum_abi::layout::GICV2_CPU_INTERFACE): a GICv2's GICV, its first
    /// [`GICV2_CPU_INTERFACE_SIZE`] bytes. `None` on a GICv3, whose partitions
    /// use system registers.
    pub fn partition_cpu_interface(&self) -> Option<Range> {
        match self {
            GicBlocks::V3 { .. } => None,
            GicBlocks::V2 { virtual_cpu, .. } => {
                Range::from_start_size(virtual_cpu.start, GICV2_CPU_INTERFACE_SIZE)
            }
        }
    }
}

/// Why the GIC could not be brought up.
#[derive(Clone, Copy, Debug)]
pub enum GicError {
    /// No redistributor in the region serves the boot CPU.
    NoRedistributor,
    /// A register write or the redistributor's wake-up never completed.
    Timeout,
    /// The GICv2 has fewer list registers than the kernel uses.
    TooFewListRegisters,
}

/// Not chosen yet.
const UNKNOWN: u8 = 0;
/// The GIC version [`Gic::init`] chose: 2, 3 or [`UNKNOWN`].
static VERSION: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether the board's GIC is a GICv2 (after [`Gic::init`]).
pub fn is_v2() -> bool {
    VERSION.load(Ordering::Relaxed) == 2
}

/// This core's interface to the GIC, after [`Gic::init`] or [`Gic::init_this_core`].
pub enum Gic {
    /// A GICv3 redistributor.
    V3(v3::Gic),
    /// A GICv2: the private interrupts are banked in the distributor.
    V2,
}

impl Gic {
    /// Initialises the distributor and the boot CPU's interface, with every
    /// interrupt still disabled, and chooses the version every later call uses.
    ///
    /// # Safety
    /// The blocks must be the GIC's, mapped as device memory, used by nothing
    /// else; must run once, at boot, on the boot core, with interrupts masked.
    pub unsafe fn init(blocks: GicBlocks) -> Result<Gic, GicError> {
        match blocks {
            GicBlocks::V3 {
                distributor,
                redistributors,
            } => {
                VERSION.store(3, Ordering::Relaxed);
                // SAFETY: forwarded from this function's contract.
                unsafe { v3::Gic::init(distributor, redistributors) }.map(Gic::V3)
            }
            GicBlocks::V2 {
                distributor,
                cpu,
                hypervisor,
                ..
            } => {
                VERSION.store(2, Ordering::Relaxed);
                // SAFETY: forwarded from this function's contract.
                unsafe { v2::init(distributor, cpu, hypervisor) }.map(|()| Gic::V2)
            }
        }
    }

    /// Brings up the interface of the core running this, every private
    /// interrupt disabled. Every secondary core runs this once.
    ///
    /// # Safety
    /// [`Gic::init`] must have run with the same `blocks`; must run once per
    /// core, with interrupts masked.
    pub unsafe fn init_this_core(blocks: GicBlocks) -> Result<Gic, GicError> {
        match blocks {
            GicBlocks::V3 { redistributors, .. } => {
                // SAFETY: forwarded from this function's contract.
                unsafe { v3::Gic::init_this_core(redistributors) }.map(Gic::V3)
            }
            GicBlocks::V2 { .. } => {
                v2::init_this_core()?;
                Ok(Gic::V2)
            }
        }
    }

    /// Makes private interrupt `intid` (an SGI, 0 to 15, or a PPI, 16 to 31)
    /// group 1, of the kernel's priority, and enables it on this core.
    pub fn enable_private(&self, intid: u32) -> Result<(), GicError> {
        match self {
            Gic::V3(gic) => gic.enable_private(intid),
            Gic::V2 => v2::enable_private(intid),
        }
    }
}

/// Routes shared peripheral interrupt `intid` to the core with affinity `mpidr`,
/// as group 1 at the kernel's priority, and enables it.
///
/// # Safety
/// `blocks` must be the GIC [`Gic::init`] initialised; no other core may be
/// changing the same registers.
pub unsafe fn route_spi(blocks: GicBlocks, intid: u32, mpidr: u64) -> Result<(), GicError> {
    match blocks {
        // SAFETY: forwarded from this function's contract.
        GicBlocks::V3 { distributor, .. } => unsafe { v3::route_spi(distributor, intid, mpidr) },
        GicBlocks::V2 { .. } => v2::route_spi(intid, mpidr),
    }
}

/// Sends [`KICK`] to the core with affinity `mpidr`.
pub fn kick(mpidr: u64) {
    if is_v2() {
        v2::kick(mpidr)
    } else {
        v3::kick(mpidr)
    }
}

/// Acknowledges the highest-priority pending group 1 interrupt: returns its INTID,
/// now active, or `None` if nothing is pending (a spurious interrupt).
pub fn acknowledge() -> Option<u32> {
    if is_v2() {
        v2::acknowledge()
    } else {
        v3::acknowledge()
    }
}

/// Ends interrupt `intid`, which [`acknowledge`] returned and the kernel itself
/// handles: drops the running priority and deactivates it.
pub fn end(intid: u32) {
    if is_v2() {
        v2::end(intid)
    } else {
        v3::end(intid)
    }
}

/// Drops the running priority of acknowledged interrupt `intid` but leaves it
/// active: for a partition's interrupt, which the partition deactivates.
pub fn drop_priority(intid: u32) {
    if is_v2() {
        v2::drop_priority(intid)
    } else {
        v3::drop_priority(intid)
    }
}

/// Polls until `busy` is false, or fails after [`POLL_LIMIT`] tries.
fn wait_while(busy: impl Fn() -> bool) -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if !busy() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Timeout)
}
