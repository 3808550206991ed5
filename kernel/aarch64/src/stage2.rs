//! Stage-2 translation: one table hierarchy per partition that maps its
//! guest-physical addresses to the machine memory it was granted.
//!
//! Format: 4 KiB granule, 39-bit guest-physical space, walks start at level 1
//! (VTCR_EL2.SL0 = 1); blocks of 1 GiB and 2 MiB where alignment allows. The walk
//! itself is the shared [`septum_kernel::paging`] code; this module gives the
//! descriptor encoding.
//!
//! Invariants:
//! - a partition's tables map exactly its RAM (less pages the kernel has unmapped
//!   from it), the MMIO blocks of the devices its description grants (at their own
//!   addresses, as device memory) and the receive-window pages the kernel has
//!   mapped into it ([`RAM`]); every other guest-physical address faults to EL2;
//! - tables are built before the partition first runs; for a page-granular
//!   partition ([`septum_kernel::Placement::page_granular`]) its RAM is mapped with
//!   pages only and its receive window has its level-3 tables, all entries invalid;
//! - later changes are single level-3 entries of those tables (page flips: see
//!   `Vcpu::map_page` in `vcpu.rs`), and an entry made invalid stays cached until
//!   the TLB is invalidated for the partition's VMID.

use septum_kernel::paging::{Format, Tables};

use crate::mmu;

const TABLE: u64 = 0b11;
const BLOCK: u64 = 0b01;
const PAGE_DESCRIPTOR: u64 = 0b11;
const S2AP_READ_WRITE: u64 = 0b11 << 6;
const S2AP_WRITE: u64 = 0b10 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
const XN: u64 = 1 << 54;

/// Guest-physical address bits covered by the tables.
pub const IPA_BITS: u64 = 39;

/// Attributes of partition RAM: normal write-back, inner shareable, readable,
/// writable and executable.
pub const RAM: u64 = AF | SH_INNER | S2AP_READ_WRITE | MEMATTR_NORMAL_WB;

/// Attributes of a granted device: Device-nGnRE, readable and writable, never
/// executable.
pub const DEVICE: u64 = AF | S2AP_READ_WRITE | MEMATTR_DEVICE_NGNRE | XN;

/// The stage-2 descriptor format (VMSAv8-64, 4 KiB granule).
#[derive(Debug)]
pub enum Stage2Format {}

impl Format for Stage2Format {
    const ROOT_LEVEL: u32 = 1;
    const LARGEST_BLOCK_LEVEL: u32 = 1;
    const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

    fn table(address: u64) -> u64 {
        address | TABLE
    }

    fn leaf(address: u64, level: u32, attributes: u64) -> u64 {
        address | attributes | if level == 3 { PAGE_DESCRIPTOR } else { BLOCK }
    }

    fn is_table(entry: u64, _level: u32) -> bool {
        entry & 0b11 == TABLE
    }

    fn is_valid(entry: u64) -> bool {
        entry & 0b1 != 0
    }

    const WRITE: u64 = S2AP_WRITE;
}

/// One partition's stage-2 tables.
pub type Stage2 = Tables<Stage2Format>;

/// The VTCR_EL2 value for these tables: 4 KiB granule, 39-bit guest-physical space
/// starting at level 1, inner-shareable write-back table walks.
pub fn vtcr() -> u64 {
    const RES1: u64 = 1 << 31;
    let t0sz = 64 - IPA_BITS;
    let sl0_level1 = 0b01 << 6;
    let irgn0_wb = 0b01 << 8;
    let orgn0_wb = 0b01 << 10;
    let sh0_inner = 0b11 << 12;
    let tg0_4k = 0b00 << 14;
    let ps = mmu::physical_address_size_field() << 16;
    RES1 | t0sz | sl0_level1 | irgn0_wb | orgn0_wb | sh0_inner | tg0_4k | ps
}
