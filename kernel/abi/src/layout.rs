//! Where things are in a partition's own (guest-physical) address space. Its
//! RAM starts at the same address on both architectures, so partition images
//! differ only in their instruction set.

/// Guest-physical base of every partition's RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Size of a page and of the smallest unit of partition RAM.
pub const PAGE_SIZE: u64 = 4096;
/// Guest-physical base of every partition's receive window, where pages it
/// receives on queues are mapped (its size is in the system description).
pub const RECEIVE_WINDOW_BASE: u64 = 0x8000_0000;
/// Guest-physical base of a native partition's virtual GIC CPU interface on
/// a board whose GIC is a GICv2 (the Raspberry Pi 4's GIC-400): the kernel
/// maps the GIC's GICV block there, [`GICV2_CPU_INTERFACE_SIZE`] bytes with
/// the CPU interface's layout. A board with a GICv3 maps nothing there: its
/// partitions use the ICC system registers, and the processor's
/// `ID_AA64PFR0_EL1.GIC` field says which a partition has.
pub const GICV2_CPU_INTERFACE: u64 = 0x3ffe_0000;
/// Bytes of the virtual CPU interface mapped at [`GICV2_CPU_INTERFACE`].
pub const GICV2_CPU_INTERFACE_SIZE: u64 = 0x2000;
/// Pages of an x86_64 partition's boot page tables: a PML4, a PDPT and four
/// page directories of 2 MiB pages that identity-map its first 4 GiB.
pub const X86_BOOT_TABLE_PAGES: u64 = 6;
/// Guest-physical address of an x86_64 partition's boot page tables, just
/// under its RAM: its CR3 at entry. A devirtualizable partition's tables sit
/// at this machine address too (placed identity like its RAM), because while
/// it runs natively its CR3 names machine memory.
pub const X86_BOOT_TABLES: u64 = RAM_BASE - X86_BOOT_TABLE_PAGES * PAGE_SIZE;
