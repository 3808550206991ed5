//! The kernel's own address space at EL2 (stage 1, TTBR0_EL2): an identity map of
//! RAM as normal cacheable memory and of the devices the kernel drives as device
//! memory, built from 1 GiB blocks in one level-1 table, except the gigabyte that
//! holds the kernel's stacks, which is mapped in 2 MiB blocks and, around the
//! stacks, 4 KiB pages, so that the page below each stack can stay unmapped: a
//! guard page, where an overflow faults at once.
//!
//! Invariants:
//! - virtual address = physical address for everything the kernel touches, so the
//!   physical addresses in partition descriptions and page tables can be used
//!   directly;
//! - device memory is never executable;
//! - a guard page is never mapped;
//! - after the MMU is on, entries are only ever added (an invalid entry becomes
//!   valid; [`map`] leaves valid ones alone), so no break-before-make sequence is
//!   needed.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL2, ReadWriteable, Readable, SCTLR_EL2, TCR_EL2, TTBR0_EL2, Writeable,
};
use core::cell::UnsafeCell;
use septum_core::memory::Range;

const GIB: u64 = 1 << 30;
const BLOCK_2M: u64 = 2 << 20;
const PAGE: u64 = 4096;
/// Virtual and physical addresses the kernel map covers: 39 bits (512 GiB).
const VA_BITS: u64 = 39;

// MAIR_EL2 attribute indexes.
const ATTR_DEVICE: u64 = 0; // Device-nGnRE
const ATTR_NORMAL: u64 = 1; // Normal, inner/outer write-back read/write-allocate
const MAIR_VALUE: u64 = 0x04 | (0xff << 8);
/// TCR_EL2 bits 31 and 23 are RES1 when HCR_EL2.E2H is 0.
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);

// Descriptor bits (stage 1, EL2 regime).
const VALID_BLOCK: u64 = 0b01;
/// A table descriptor (levels 1 and 2) or a page descriptor (level 3).
const VALID_TABLE_OR_PAGE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const XN: u64 = 1 << 54;

const NORMAL: u64 = AF | (ATTR_NORMAL << 2) | SH_INNER;

/// A translation table: 512 entries.
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are written only by the boot CPU during start-up, with
// interrupts masked, before any other CPU or partition runs.
unsafe impl Sync for Table {}

impl Table {
    const fn new() -> Table {
        Table(UnsafeCell::new([0; 512]))
    }

    fn address(&self) -> u64 {
        self.0.get() as u64
    }
}

/// The level-1 table: 512 entries of 1 GiB each.
static KERNEL_TABLE: Table = Table::new();
/// The gigabyte of the stacks, in 2 MiB blocks.
static STACKS_LEVEL2: Table = Table::new();
/// The 2 MiB blocks that hold guard pages, in 4 KiB pages (the stacks of every
/// core fit in 1 MiB, so they touch at most two such blocks).
static STACKS_LEVEL3: [Table; 2] = [Table::new(), Table::new()];

/// The boot core's MAIR_EL2, TCR_EL2, TTBR0_EL2 and SCTLR_EL2, which a secondary
/// core loads (with its MMU still off) before it runs any Rust code.
#[repr(C, align(64))]
pub struct MmuSettings(pub UnsafeCell<[u64; 4]>);

// SAFETY: written once by the boot core before any secondary core is started, and
// only read afterwards.
unsafe impl Sync for MmuSettings {}

/// See [`MmuSettings`].
pub static SECONDARY_MMU: MmuSettings = MmuSettings(UnsafeCell::new([0; 4]));

/// Records the boot core's MMU settings for the secondary cores, and cleans them to
/// the point of coherency, where a core with its MMU off reads.
pub fn publish_for_secondaries() {
    let settings = [
        MAIR_EL2.get(),
        TCR_EL2.get(),
        TTBR0_EL2.get(),
        SCTLR_EL2.get(),
    ];
    // SAFETY: only the boot core writes, once, before it starts any secondary core.
    unsafe { *SECONDARY_MMU.0.get() = settings };
    // SAFETY: cleaning one cache line by address has no effect on its contents.
    unsafe { core::arch::asm!("dc cvac, {}", in(reg) SECONDARY_MMU.0.get(), options(nostack)) };
    barrier::dsb(barrier::SY);
}

/// The largest physical address size the CPU supports, as the TCR/VTCR `PS` field
/// encodes it, capped at 40 bits (what 39-bit tables need).
pub fn physical_address_size_field() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b010)
}

/// Maps `range` with 1 GiB blocks, as device memory or normal memory.
///
/// # Safety
/// Must only be called on the boot CPU during start-up, with interrupts masked. A
/// range that covers memory the kernel uses must be mapped as normal memory.
pub unsafe fn map(range: Range, device: bool) {
    let attributes = if device {
        VALID_BLOCK | AF | (ATTR_DEVICE << 2) | XN
    } else {
        VALID_BLOCK | NORMAL
    };
    let first = range.start / GIB;
    let last = (range.end - 1) / GIB;
    for index in first..=last.min((1 << (VA_BITS - 30)) - 1) {
        // SAFETY: per this function's contract nothing else accesses the table now;
        // the accesses are aligned u64 loads and stores into a static.
        unsafe {
            let entry = &mut (*KERNEL_TABLE.0.get())[index as usize];
            if *entry == 0 {
                *entry = (index * GIB) | attributes;
            }
        }
    }
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
}

/// Maps the gigabyte that holds `guards` as normal memory in 2 MiB blocks and
/// 4 KiB pages, leaving each guard page unmapped. Panics if the guard pages span
/// more than one gigabyte or more than two 2 MiB blocks (the stacks' layout
/// keeps them within 1 MiB).
///
/// # Safety
/// The MMU is off, on the boot CPU, before [`map`] has mapped that gigabyte.
unsafe fn map_with_guards(guards: &[u64]) {
    let Some(&first) = guards.first() else {
        return;
    };
    let gigabyte = first / GIB;
    assert!(
        guards
            .iter()
            .all(|&page| page / GIB == gigabyte && page % PAGE == 0),
        "the guard pages lie in one gigabyte, page-aligned"
    );
    // SAFETY: per this function's contract nothing else accesses the tables and
    // the MMU is off (no translation uses them yet); all accesses are aligned
    // stores into statics.
    unsafe {
        let level2 = &mut *STACKS_LEVEL2.0.get();
        for (index, entry) in level2.iter_mut().enumerate() {
            *entry = (gigabyte * GIB + index as u64 * BLOCK_2M) | VALID_BLOCK | NORMAL;
        }
        let mut split: [Option<u64>; 2] = [None; 2];
        for &page in guards {
            let block = (page % GIB) / BLOCK_2M;
            let slot = match split.iter().position(|&b| b == Some(block)) {
                Some(slot) => slot,
                None => {
                    let slot = split
                        .iter()
                        .position(Option::is_none)
                        .expect("the guard pages lie in at most two 2 MiB blocks");
                    split[slot] = Some(block);
                    let base = gigabyte * GIB + block * BLOCK_2M;
                    let level3 = &mut *STACKS_LEVEL3[slot].0.get();
                    for (index, entry) in level3.iter_mut().enumerate() {
                        *entry = (base + index as u64 * PAGE) | VALID_TABLE_OR_PAGE | NORMAL;
                    }
                    level2[block as usize] = STACKS_LEVEL3[slot].address() | VALID_TABLE_OR_PAGE;
                    slot
                }
            };
            (*STACKS_LEVEL3[slot].0.get())[((page % BLOCK_2M) / PAGE) as usize] = 0;
        }
        (*KERNEL_TABLE.0.get())[gigabyte as usize] = STACKS_LEVEL2.address() | VALID_TABLE_OR_PAGE;
    }
}

/// Turns the EL2 MMU and caches on, after mapping the gigabyte of the kernel's
/// stacks around their `guards` and `early` (the kernel image and the device
/// tree) as normal memory.
///
/// # Safety
/// Must be called once, on the boot CPU, with the MMU off, before anything relies
/// on memory attributes; `early` must cover the code and stack in use, and no
/// guard page may hold anything in use.
pub unsafe fn enable(early: &[Range], guards: &[u64]) {
    // SAFETY: forwarded from this function's contract; nothing is mapped yet.
    unsafe { map_with_guards(guards) };
    for range in early {
        // SAFETY: forwarded from this function's contract.
        unsafe { map(*range, false) };
    }
    MAIR_EL2.set(MAIR_VALUE);
    let fields = TCR_EL2::T0SZ.val(64 - VA_BITS)
        + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::SH0::Inner
        + TCR_EL2::TG0::KiB_4
        + TCR_EL2::PS.val(physical_address_size_field());
    TCR_EL2.set(fields.value | TCR_EL2_RES1);
    TTBR0_EL2.set(KERNEL_TABLE.0.get() as u64);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating EL2 TLB entries has no effect on memory.
    unsafe { core::arch::asm!("tlbi alle2", options(nostack)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    SCTLR_EL2.modify(
        SCTLR_EL2::M::Enable
            + SCTLR_EL2::C::Cacheable
            + SCTLR_EL2::I::Cacheable
            + SCTLR_EL2::SA::Enable,
    );
    barrier::isb(barrier::SY);
}
