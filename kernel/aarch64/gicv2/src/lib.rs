//! The GICv2 (ARM GIC-400) as the aarch64 back end drives it: the register
//! layouts of the distributor (GICD), the CPU interface (GICC) and the virtual
//! interface control (GICH), and the translation between a GICv2 list register
//! and the GICv3 `ICH_LR<n>_EL2` layout in which the back end keeps every vCPU's
//! list registers, whichever GIC the board has. A partition's virtual CPU
//! interface (GICV, which the kernel maps at
//! `septum_abi::layout::GICV2_CPU_INTERFACE`) has the CPU interface's layout;
//! the SDK drives it with the same types.
//!
//! This crate owns no state and touches no hardware: the back end and the SDK
//! cast a mapped block to these types. It is `no_std`, forbids `unsafe`, and its layouts and
//! encodings are tested on the host.
//!
//! Invariants:
//! - every layout matches the GICv2 architecture specification (IHI 0048B),
//!   checked at compile time by `register_structs!` and on the host by offset;
//! - [`list_to_v3`] and [`list_from_v3`] are inverse for every GICv2 list
//!   register value whose priority's low three bits are clear (GICv2 keeps five
//!   priority bits) and whose physical INTID field is zero unless it is
//!   hardware-linked.
#![no_std]
#![forbid(unsafe_code)]

pub use layouts::*;

/// The register layouts. `register_bitfields!` and `register_structs!` generate
/// items (field modules, values, padding) that cannot carry documentation.
#[allow(missing_docs)]
mod layouts {
    use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
    use tock_registers::{register_bitfields, register_structs};

    register_bitfields! {u32,
        /// GICD_CTLR.
        pub GICD_CTLR [
            /// Group 0 forwarding (with security extensions, the non-secure view has
            /// only bit 0: group 1).
            ENABLE_GRP0 OFFSET(0) NUMBITS(1) [],
            /// Group 1 forwarding (no security extensions).
            ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        ],
        /// GICD_TYPER.
        pub GICD_TYPER [
            /// Shared interrupts implemented: 32 × (N + 1) INTIDs in all.
            IT_LINES_NUMBER OFFSET(0) NUMBITS(5) [],
            /// The GIC has the security extensions: what EL2 sees is the non-secure view.
            SECURITY_EXTN OFFSET(10) NUMBITS(1) [],
        ],
        /// GICD_SGIR.
        pub GICD_SGIR [
            /// The SGI's INTID.
            SGI_INTID OFFSET(0) NUMBITS(4) [],
            /// One bit per CPU interface the SGI goes to.
            CPU_TARGET_LIST OFFSET(16) NUMBITS(8) [],
            /// 0: to the CPU interfaces in the target list.
            TARGET_LIST_FILTER OFFSET(24) NUMBITS(2) [],
        ],
        /// GICC_IAR (and the value written back to GICC_EOIR and GICC_DIR).
        pub GICC_IAR [
            /// The interrupt's INTID (1023: spurious).
            INTERRUPT_ID OFFSET(0) NUMBITS(10) [],
            /// For an SGI, the CPU interface that sent it.
            CPU_ID OFFSET(10) NUMBITS(3) [],
        ],
        /// GICH_HCR: the same bits as ICH_HCR_EL2 where the back end uses them.
        pub GICH_HCR [
            /// The virtual CPU interface is enabled.
            EN OFFSET(0) NUMBITS(1) [],
            /// Maintenance interrupt while at most one list register is valid.
            UIE OFFSET(1) NUMBITS(1) [],
        ],
        /// GICH_VTR.
        pub GICH_VTR [
            /// List registers implemented, minus one.
            LIST_REGS OFFSET(0) NUMBITS(6) [],
        ],
        /// GICH_LR<n>.
        pub GICH_LR [
            /// The INTID the virtual CPU interface presents.
            VIRTUAL_ID OFFSET(0) NUMBITS(10) [],
            /// With HW: the physical INTID the virtual one's end deactivates.
            PHYSICAL_ID OFFSET(10) NUMBITS(10) [],
            /// The top five bits of the virtual interrupt's priority.
            PRIORITY OFFSET(23) NUMBITS(5) [],
            /// 0 invalid, 1 pending, 2 active, 3 pending and active.
            STATE OFFSET(28) NUMBITS(2) [],
            /// Group 1.
            GRP1 OFFSET(30) NUMBITS(1) [],
            /// Hardware-linked to a physical interrupt.
            HW OFFSET(31) NUMBITS(1) [],
        ],
    }

    /// GICC_CTLR with the security extensions, non-secure view (EL2's): group 1
    /// enabled, EOImodeNS (priority drop and deactivation split).
    pub const GICC_CTLR_NON_SECURE: u32 = (1 << 0) | (1 << 9);
    /// GICC_CTLR without the security extensions: both groups enabled, group 1
    /// interrupts acknowledged through GICC_IAR (AckCtl; without it GICC_IAR
    /// reads 1022 for them), priority drop and deactivation split for both
    /// groups (EOImodeS and EOImodeNS).
    pub const GICC_CTLR_SINGLE_SECURITY: u32 =
        (1 << 0) | (1 << 1) | (1 << 2) | (1 << 9) | (1 << 10);

    register_structs! {
        /// The distributor (GICD), as far as the kernel uses it.
        pub Distributor {
            (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
            (0x0004 => pub typer: ReadOnly<u32, GICD_TYPER::Register>),
            (0x0008 => _reserved0),
            (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
            (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
            (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
            (0x0200 => _reserved1),
            (0x0400 => pub ipriorityr: [ReadWrite<u8>; 1020]),
            (0x07fc => _reserved2),
            (0x0800 => pub itargetsr: [ReadWrite<u8>; 1020]),
            (0x0bfc => _reserved3),
            (0x0f00 => pub sgir: WriteOnly<u32, GICD_SGIR::Register>),
            (0x0f04 => @END),
        }
    }

    /// GICV_CTLR as a partition sets it: group 1 virtual interrupts (the kernel
    /// puts every virtual interrupt in group 1) signalled as IRQs, and
    /// acknowledged through GICV_IAR (AckCtl: the virtual interface answers a
    /// read of GICV_IAR as a secure access does, which without AckCtl reads 1022
    /// for a group 1 interrupt; so does QEMU's, where that left a partition
    /// taking the same interrupt forever).
    pub const GICV_CTLR_GROUP1: u32 = (1 << 1) | (1 << 2);

    register_structs! {
        /// The CPU interface (GICC), and a partition's virtual CPU interface
        /// (GICV): 8 KiB, the deactivation register in its second page.
        pub CpuInterface {
            (0x0000 => pub ctlr: ReadWrite<u32>),
            (0x0004 => pub pmr: ReadWrite<u32>),
            (0x0008 => _reserved0),
            (0x000c => pub iar: ReadOnly<u32, GICC_IAR::Register>),
            (0x0010 => pub eoir: WriteOnly<u32, GICC_IAR::Register>),
            (0x0014 => _reserved1),
            (0x1000 => pub dir: WriteOnly<u32, GICC_IAR::Register>),
            (0x1004 => @END),
        }
    }

    register_structs! {
        /// The virtual interface control (GICH) of the CPU that accesses it.
        pub HypervisorInterface {
            (0x0000 => pub hcr: ReadWrite<u32, GICH_HCR::Register>),
            (0x0004 => pub vtr: ReadOnly<u32, GICH_VTR::Register>),
            (0x0008 => pub vmcr: ReadWrite<u32>),
            (0x000c => _reserved0),
            (0x00f0 => pub apr: ReadWrite<u32>),
            (0x00f4 => _reserved1),
            (0x0100 => pub lr: [ReadWrite<u32, GICH_LR::Register>; 64]),
            (0x0200 => @END),
        }
    }
}

// ICH_LR<n>_EL2 (GICv3) fields, the form the back end keeps list registers in.
const V3_STATE_SHIFT: u32 = 62;
const V3_HW: u64 = 1 << 61;
const V3_GROUP1: u64 = 1 << 60;
const V3_PRIORITY_SHIFT: u32 = 48;
const V3_PHYSICAL_SHIFT: u32 = 32;
// GICH_LR<n> fields, as plain shifts for the translation.
const V2_VIRTUAL_MASK: u32 = 0x3ff;
const V2_PHYSICAL_SHIFT: u32 = 10;
const V2_PRIORITY_SHIFT: u32 = 23;
const V2_STATE_SHIFT: u32 = 28;
const V2_GROUP1: u32 = 1 << 30;
const V2_HW: u32 = 1 << 31;
/// GICv2 keeps the top five of a priority's eight bits.
const PRIORITY_DROPPED_BITS: u32 = 3;

/// The GICv3 `ICH_LR<n>_EL2` value that means what GICv2 list register `list`
/// means.
pub fn list_to_v3(list: u32) -> u64 {
    let state = u64::from((list >> V2_STATE_SHIFT) & 0b11);
    let priority = u64::from(((list >> V2_PRIORITY_SHIFT) & 0x1f) << PRIORITY_DROPPED_BITS);
    let hardware = list & V2_HW != 0;
    let physical = if hardware {
        u64::from((list >> V2_PHYSICAL_SHIFT) & V2_VIRTUAL_MASK)
    } else {
        0
    };
    (state << V3_STATE_SHIFT)
        | if hardware { V3_HW } else { 0 }
        | if list & V2_GROUP1 != 0 { V3_GROUP1 } else { 0 }
        | (priority << V3_PRIORITY_SHIFT)
        | (physical << V3_PHYSICAL_SHIFT)
        | u64::from(list & V2_VIRTUAL_MASK)
}

/// The GICv2 list register value that means what GICv3 `ICH_LR<n>_EL2` value
/// `list` means, or `None` if GICv2 cannot hold it (an INTID past 1019).
pub fn list_from_v3(list: u64) -> Option<u32> {
    let virtual_id = u32::try_from(list & 0xffff_ffff).ok()?;
    let physical_id = ((list >> V3_PHYSICAL_SHIFT) & 0x3ff) as u32;
    let hardware = list & V3_HW != 0;
    if virtual_id > 1019 || (hardware && ((list >> V3_PHYSICAL_SHIFT) & 0x1fff) > 1019) {
        return None;
    }
    let state = ((list >> V3_STATE_SHIFT) & 0b11) as u32;
    let priority = ((list >> V3_PRIORITY_SHIFT) & 0xff) as u32 >> PRIORITY_DROPPED_BITS;
    Some(
        (state << V2_STATE_SHIFT)
            | if hardware {
                V2_HW | (physical_id << V2_PHYSICAL_SHIFT)
            } else {
                0
            }
            | if list & V3_GROUP1 != 0 { V2_GROUP1 } else { 0 }
            | (priority << V2_PRIORITY_SHIFT)
            | virtual_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use proptest::prelude::*;
    use tock_registers::LocalRegisterCopy;

    /// Verifies: SK-INIT-012
    #[test]
    fn the_layouts_put_each_register_where_the_gicv2_specification_does() {
        assert_eq!(offset_of!(Distributor, typer), 0x004);
        assert_eq!(offset_of!(Distributor, igroupr), 0x080);
        assert_eq!(offset_of!(Distributor, isenabler), 0x100);
        assert_eq!(offset_of!(Distributor, icenabler), 0x180);
        assert_eq!(offset_of!(Distributor, ipriorityr), 0x400);
        assert_eq!(offset_of!(Distributor, itargetsr), 0x800);
        assert_eq!(offset_of!(Distributor, sgir), 0xf00);
        assert_eq!(offset_of!(CpuInterface, pmr), 0x004);
        assert_eq!(offset_of!(CpuInterface, iar), 0x00c);
        assert_eq!(offset_of!(CpuInterface, eoir), 0x010);
        assert_eq!(offset_of!(CpuInterface, dir), 0x1000);
        assert_eq!(offset_of!(HypervisorInterface, vtr), 0x004);
        assert_eq!(offset_of!(HypervisorInterface, vmcr), 0x008);
        assert_eq!(offset_of!(HypervisorInterface, apr), 0x0f0);
        assert_eq!(offset_of!(HypervisorInterface, lr), 0x100);
        assert_eq!(size_of::<HypervisorInterface>(), 0x200);
    }

    /// A hardware-linked pending interrupt, as the back end injects a granted
    /// device's: its fields land where GICH_LR has them.
    ///
    /// Verifies: SK-INIT-012
    #[test]
    fn a_hardware_linked_list_register_keeps_its_fields_in_gicv2_form() {
        let v3 = (1u64 << 62) | (1 << 61) | (1 << 60) | (0xa0 << 48) | (79 << 32) | 79;
        let v2 = list_from_v3(v3).expect("fits GICv2");
        let fields = LocalRegisterCopy::<u32, GICH_LR::Register>::new(v2);
        assert_eq!(fields.read(GICH_LR::VIRTUAL_ID), 79);
        assert_eq!(fields.read(GICH_LR::PHYSICAL_ID), 79);
        assert_eq!(fields.read(GICH_LR::PRIORITY), 0xa0 >> 3);
        assert_eq!(fields.read(GICH_LR::STATE), 1);
        assert!(fields.is_set(GICH_LR::GRP1));
        assert!(fields.is_set(GICH_LR::HW));
        assert_eq!(list_to_v3(v2), v3);
    }

    /// Verifies: SK-INIT-012
    #[test]
    fn an_intid_gicv2_cannot_hold_is_refused() {
        assert_eq!(list_from_v3((1 << 62) | 1020), None);
        assert_eq!(
            list_from_v3((1 << 62) | (1 << 61) | (1020 << 32) | 40),
            None
        );
    }

    proptest! {
        /// Verifies: SK-INIT-012
        #[test]
        fn gicv2_list_registers_survive_the_round_trip_through_the_gicv3_form(
            virtual_id in 0u32..1020,
            physical_id in 0u32..1020,
            priority in 0u32..32,
            state in 0u32..4,
            group1: bool,
            hardware: bool,
        ) {
            let v2 = virtual_id
                | if hardware { (1 << 31) | (physical_id << 10) } else { 0 }
                | (priority << 23)
                | (state << 28)
                | if group1 { 1 << 30 } else { 0 };
            prop_assert_eq!(list_from_v3(list_to_v3(v2)), Some(v2));
        }
    }
}
