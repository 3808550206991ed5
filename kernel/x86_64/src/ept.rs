//! Extended page tables: one hierarchy per partition that maps its guest-physical
//! addresses to the machine memory it was granted. The walk is the shared
//! [`septum_kernel::paging`] code; this module gives the EPT descriptor encoding.
//!
//! Invariants:
//! - a partition's EPT maps exactly its RAM (read, write, execute; less pages the
//!   kernel has unmapped from it), its boot page tables (read only), the MMIO
//!   blocks of its granted devices (uncacheable, at their own addresses) and the
//!   receive-window pages the kernel has mapped into it ([`RAM`]); every other
//!   guest-physical address is an EPT violation;
//! - a page-granular partition's RAM is mapped with 4 KiB pages only and its
//!   receive window has its level-3 tables from boot, so later changes are single
//!   level-3 entries (page flips);
//! - an entry made non-present after the partition first runs stays cached until
//!   INVEPT for its EPTP (see `Vcpu::flush_translations` in `vcpu.rs`).

use septum_kernel::paging::{Format, Tables};

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXECUTE: u64 = 1 << 2;
const MEMORY_TYPE_WRITE_BACK: u64 = 6 << 3;
const LARGE_PAGE: u64 = 1 << 7;

/// Attributes of partition RAM: write-back, readable, writable, executable.
pub const RAM: u64 = READ | WRITE | EXECUTE | MEMORY_TYPE_WRITE_BACK;
/// Attributes of a granted device: uncacheable, readable and writable, never
/// executable.
pub const DEVICE: u64 = READ | WRITE;

/// Attributes of the boot page tables the kernel builds for a partition: the
/// processor's page walk reads them; the partition can never change them.
pub const READ_ONLY: u64 = READ | MEMORY_TYPE_WRITE_BACK;

/// The EPT descriptor format (4 levels, 4 KiB granule).
#[derive(Debug)]
pub enum EptFormat {}

impl Format for EptFormat {
    const ROOT_LEVEL: u32 = 0;
    const LARGEST_BLOCK_LEVEL: u32 = 2;
    const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

    fn table(address: u64) -> u64 {
        // Non-leaf entries allow everything; the leaf decides.
        address | READ | WRITE | EXECUTE
    }

    fn leaf(address: u64, level: u32, attributes: u64) -> u64 {
        address | attributes | if level < 3 { LARGE_PAGE } else { 0 }
    }

    fn is_table(entry: u64, _level: u32) -> bool {
        entry & LARGE_PAGE == 0
    }

    fn is_valid(entry: u64) -> bool {
        entry & (READ | WRITE | EXECUTE) != 0
    }

    const WRITE: u64 = WRITE;
}

/// One partition's extended page tables.
pub type Ept = Tables<EptFormat>;

/// The EPT pointer for tables rooted at `root`: write-back, 4-level walk.
pub fn pointer(root: u64) -> u64 {
    root | 6 | (3 << 3)
}
