//! The first instructions: the arm64 `Image` header, the entry point, the EL2
//! exception vector table and the register save/restore around every trap.
//!
//! Invariants:
//! - the kernel runs only at EL2 with all interrupts masked (DAIF set); each core
//!   has its index in TPIDR_EL2 and two stacks of its own: the boot stack until its
//!   first partition is entered, then the trap stack, which is empty whenever a
//!   partition runs there;
//! - a trap from a partition saves every general-purpose register, ELR_EL2 and
//!   SPSR_EL2 in a [`TrapFrame`] at the top of the trap stack, and the return path
//!   restores all of them from that frame, so a partition sees exactly the register
//!   state the kernel put there.

use core::arch::global_asm;

use septum_core::system::MAX_CPUS;

/// The guest registers saved on a trap; the layout is fixed by the assembly below.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// Where the partition resumes (ELR_EL2).
    pub elr: u64,
    /// The partition's saved PSTATE (SPSR_EL2).
    pub spsr: u64,
    /// Padding that keeps the frame a multiple of 16 bytes.
    pub _pad: u64,
}

/// Bytes per entry of `_spin_table_entries` (a `mov` and a `b`).
pub const SPIN_TABLE_ENTRY_BYTES: u64 = 8;
const _: () = assert!(MAX_CPUS <= 8, "_spin_table_entries has 8 entries");

/// Offset of the `image_size` field in the Image header below.
pub const IMAGE_SIZE_OFFSET: u64 = 16;

/// Bytes in a [`TrapFrame`].
pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 272);

// The header: see the Linux arm64 booting document. QEMU reads text_offset and
// image_size and then passes the device tree's address in x0.
global_asm!(
    ".section .text.head, \"ax\"",
    ".global _head",
    "_head:",
    "    b _start",
    "    .word 0",
    "    .quad __text_offset",    // text_offset: see link.ld
    "    .quad __kernel_end - _head + {stacks_bytes}", // image_size; the host tool adds the package
    "    .quad 0x2",              // flags: little endian, 4 KiB pages, 2 MiB-aligned base
    "    .quad 0, 0, 0",
    "    .ascii \"ARM\\x64\"",
    "    .word 0",
    "_start:",
    "    msr daifset, #0xf",
    "    mrs x9, CurrentEL",
    "    cmp x9, #(2 << 2)",
    "    b.ne 9f",                // not entered at EL2: nothing we can do
    "    adrp x9, {vectors}",
    "    add x9, x9, :lo12:{vectors}",
    "    msr vbar_el2, x9",
    "    isb",
    "    msr tpidr_el2, xzr",      // the boot core is core 0
    "    bl stacks_base",
    "    add x10, x9, #{boot_stack}",
    "    mov sp, x10",
    "    adrp x9, __bss_start",
    "    add x9, x9, :lo12:__bss_start",
    "    adrp x10, __bss_end",
    "    add x10, x10, :lo12:__bss_end",
    "1:  cmp x9, x10",
    "    b.hs 2f",
    "    stp xzr, xzr, [x9], #16",
    "    b 1b",
    "2:  bl {main}",             // x0 still holds the device tree address
    "9:  wfe",
    "    b 9b",
    // Spin-table entries, one per core index (8 bytes each): a core released
    // through its `cpu-release-addr` comes here with x0 = 0 and gets its index.
    ".global _spin_table_entries",
    "_spin_table_entries:",
    ".irp core, 0, 1, 2, 3, 4, 5, 6, 7",
    "    mov x0, #\\core",
    "    b _secondary_start",
    ".endr",
    // A secondary core, started by PSCI CPU_ON with x0 = its index: the same
    // vectors, its own stack, and the boot core's EL2 MMU settings (MAIR, TCR,
    // TTBR0, SCTLR, in that order in SECONDARY_MMU) before any Rust code runs.
    ".global _secondary_start",
    "_secondary_start:",
    "    msr daifset, #0xf",
    "    msr tpidr_el2, x0",
    "    adrp x9, {vectors}",
    "    add x9, x9, :lo12:{vectors}",
    "    msr vbar_el2, x9",
    "    bl stacks_base",
    "    mov x10, #{stacks}",
    "    madd x9, x0, x10, x9",
    "    add x9, x9, #{boot_stack}",
    "    mov sp, x9",
    "    adrp x9, {mmu}",
    "    add x9, x9, :lo12:{mmu}",
    "    ldp x10, x11, [x9]",
    "    ldp x12, x13, [x9, #16]",
    "    msr mair_el2, x10",
    "    msr tcr_el2, x11",
    "    msr ttbr0_el2, x12",
    "    dsb ish",
    "    isb",
    "    tlbi alle2",
    "    dsb ish",
    "    isb",
    "    msr sctlr_el2, x13",
    "    isb",
    "    bl {secondary}",
    "8:  wfe",
    "    b 8b",
    // stacks_base: x9 = the first byte of core 0's stacks, which are the last
    // STACKS_BYTES of the memory the header's image_size claims. Clobbers x10 only;
    // safe with the MMU off or on, since the header is written by the loader.
    ".global stacks_base",
    "stacks_base:",
    "    adrp x9, _head",
    "    add x9, x9, :lo12:_head",
    "    ldr x10, [x9, #{image_size}]",
    "    add x9, x9, x10",
    "    mov x10, #{stacks_bytes}",
    "    sub x9, x9, x10",
    "    ret",
    vectors = sym VECTORS,
    main = sym crate::kernel_main,
    secondary = sym crate::secondary_main,
    mmu = sym crate::mmu::SECONDARY_MMU,
    stacks = const crate::cpu::STACKS_PER_CORE,
    stacks_bytes = const crate::cpu::STACKS_BYTES,
    boot_stack = const crate::cpu::BOOT_STACK_BYTES,
    image_size = const IMAGE_SIZE_OFFSET,
);

unsafe extern "C" {
    static VECTORS: u8;
}

// Saves the interrupted partition's registers into a TrapFrame on the trap stack,
// calls `$handler(&mut TrapFrame)`, then restores from the (possibly rewritten) frame
// and returns to whichever partition the frame now describes.
macro_rules! lower_el_entry {
    ($label:literal, $handler:literal) => {
        concat!(
            ".balign 0x80\n",
            $label,
            ":\n",
            "    sub sp, sp, #272\n",
            "    stp x0, x1, [sp, #0]\n",
            "    stp x2, x3, [sp, #16]\n",
            "    mov x0, #",
            $handler,
            "\n",
            "    b save_and_handle\n",
        )
    };
}

global_asm!(
    ".section .text.vectors, \"ax\"",
    ".balign 0x800",
    ".global VECTORS",
    "VECTORS:",
    // Current EL with SP_EL0: never used.
    ".balign 0x80", "    mov x0, #0", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #1", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #2", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #3", "    b kernel_trap",
    // Current EL with SP_EL2: a fault in the kernel itself.
    ".balign 0x80", "    mov x0, #4", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #5", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #6", "    b kernel_trap",
    ".balign 0x80", "    mov x0, #7", "    b kernel_trap",
    // Lower EL using AArch64: the partitions.
    //
    // Synchronous traps first try the null-hypercall fast path: `hvc #0` with call
    // number 0 (x0 = 0) returns status 0 and zero results at once, as the general
    // path would, without saving any state. Only x0 is used as scratch before the
    // decision, and it is known to be 0 then, so the general path gets it back
    // unchanged.
    ".balign 0x80",
    "lower_sync:",
    "    cbnz x0, 1f",
    "    mrs x0, esr_el2",
    "    tst x0, #0x1ffffff",        // ISS: hvc immediate and reserved bits all zero
    "    b.ne 2f",
    "    lsr x0, x0, #25",           // EC and IL
    "    cmp x0, #((0x16 << 1) | 1)", // EC = HVC64, IL = 32-bit instruction
    "    b.ne 2f",
    "    mov x0, #0",
    "    mov x1, #0",
    "    mov x2, #0",
    "    mov x3, #0",
    "    eret",
    "2:  mov x0, #0",
    "1:  sub sp, sp, #272",
    "    stp x0, x1, [sp, #0]",
    "    stp x2, x3, [sp, #16]",
    "    mov x0, #0",
    "    b save_and_handle",
    lower_el_entry!("lower_irq", "1"),
    lower_el_entry!("lower_fiq", "2"),
    lower_el_entry!("lower_serror", "3"),
    // Lower EL using AArch32: partitions may not run AArch32 (HCR_EL2.RW = 1).
    lower_el_entry!("lower32_sync", "4"),
    lower_el_entry!("lower32_irq", "4"),
    lower_el_entry!("lower32_fiq", "4"),
    lower_el_entry!("lower32_serror", "4"),
    "",
    "save_and_handle:",
    "    stp x4, x5, [sp, #32]",
    "    stp x6, x7, [sp, #48]",
    "    stp x8, x9, [sp, #64]",
    "    stp x10, x11, [sp, #80]",
    "    stp x12, x13, [sp, #96]",
    "    stp x14, x15, [sp, #112]",
    "    stp x16, x17, [sp, #128]",
    "    stp x18, x19, [sp, #144]",
    "    stp x20, x21, [sp, #160]",
    "    stp x22, x23, [sp, #176]",
    "    stp x24, x25, [sp, #192]",
    "    stp x26, x27, [sp, #208]",
    "    stp x28, x29, [sp, #224]",
    "    mrs x9, elr_el2",
    "    stp x30, x9, [sp, #240]",
    "    mrs x9, spsr_el2",
    "    str x9, [sp, #256]",
    "    mov x1, sp",
    "    bl {handler}",
    "    b restore_and_return",
    "",
    // enter_partition(frame: *const TrapFrame) -> !: starts the first partition by
    // copying `frame` to the top of the trap stack and returning through it.
    ".global enter_partition",
    "enter_partition:",
    "    mrs x9, tpidr_el2",
    "    add x9, x9, #1",
    "    mov x10, #{stacks}",
    "    mul x9, x9, x10",
    "    mov x11, x9",
    "    bl stacks_base",
    "    add x9, x9, x11",
    "    sub sp, x9, #272",
    "    mov x10, sp",
    "1:  ldp x11, x12, [x0], #16",
    "    stp x11, x12, [x10], #16",
    "    cmp x10, x9",
    "    b.lo 1b",
    "",
    "restore_and_return:",
    "    ldp x30, x9, [sp, #240]",
    "    msr elr_el2, x9",
    "    ldr x9, [sp, #256]",
    "    msr spsr_el2, x9",
    "    ldp x0, x1, [sp, #0]",
    "    ldp x2, x3, [sp, #16]",
    "    ldp x4, x5, [sp, #32]",
    "    ldp x6, x7, [sp, #48]",
    "    ldp x8, x9, [sp, #64]",
    "    ldp x10, x11, [sp, #80]",
    "    ldp x12, x13, [sp, #96]",
    "    ldp x14, x15, [sp, #112]",
    "    ldp x16, x17, [sp, #128]",
    "    ldp x18, x19, [sp, #144]",
    "    ldp x20, x21, [sp, #160]",
    "    ldp x22, x23, [sp, #176]",
    "    ldp x24, x25, [sp, #192]",
    "    ldp x26, x27, [sp, #208]",
    "    ldp x28, x29, [sp, #224]",
    "    add sp, sp, #272",
    "    eret",
    "",
    // A trap taken at EL2: x0 = vector index. Report it and stop, on this core's
    // fault stack: the stack in use may be what faulted (an overflow into its
    // guard page), so nothing here touches it.
    "kernel_trap:",
    "    mov x4, sp",
    "    mrs x9, tpidr_el2",
    "    add x9, x9, #1",
    "    mov x10, #{fault_stack}",
    "    mul x9, x9, x10",
    "    adrp x10, {fault_stacks}",
    "    add x10, x10, :lo12:{fault_stacks}",
    "    add sp, x10, x9",
    "    mrs x1, esr_el2",
    "    mrs x2, elr_el2",
    "    mrs x3, far_el2",
    "    b {kernel_fault}",
    handler = sym crate::trap::handle_lower_el,
    kernel_fault = sym crate::trap::kernel_fault,
    stacks = const crate::cpu::STACKS_PER_CORE,
    fault_stack = const FAULT_STACK_BYTES,
    fault_stacks = sym FAULT_STACKS,
);

/// Bytes of each core's fault stack, on which a fault in the kernel itself is
/// reported (see `kernel_trap`).
const FAULT_STACK_BYTES: usize = 8192;

/// One fault stack per core, core 0 first.
#[repr(C, align(16))]
struct FaultStacks([[u8; FAULT_STACK_BYTES]; MAX_CPUS]);

/// Written only by the vector code, each core on its own stack, and only while
/// the kernel stops on a fault.
static mut FAULT_STACKS: FaultStacks = FaultStacks([[0; FAULT_STACK_BYTES]; MAX_CPUS]);

unsafe extern "C" {
    /// Starts running the partition whose registers `frame` holds. Never returns:
    /// the next time the kernel runs is on a trap.
    pub fn enter_partition(frame: *const TrapFrame) -> !;
}
