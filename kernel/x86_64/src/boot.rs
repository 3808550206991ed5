//! The first instructions: the multiboot2 header, the 32-bit entry that GRUB jumps
//! to, the switch to 64-bit long mode, and the VM-exit entry and exit paths.
//!
//! Entry state from GRUB (multiboot2): 32-bit protected mode, paging off, EAX = the
//! multiboot2 magic, EBX = the physical address of the boot information.
//!
//! Invariants:
//! - the boot page tables identity-map the first 4 GiB with 2 MiB pages (all RAM on
//!   the PCs and emulators we support, plus the local APIC and I/O APIC);
//! - the kernel runs with interrupts disabled; the boot core on the boot stack until
//!   its first partition starts, every other core on its start-up stack
//!   ([`secondary_stack_top`]) until then; afterwards each core runs on its own trap
//!   stack ([`trap_stack_top`]), which is empty whenever a partition runs there (its
//!   top is the host RSP of the VMCS of every partition pinned to that core);
//! - a VM exit saves every guest general-purpose register except RSP (which the VMCS
//!   holds) in a [`GuestRegisters`] frame, and the entry path restores all of them.

use core::arch::global_asm;

use septum_core::system::MAX_CPUS;

/// The guest registers saved on a VM exit; the layout is fixed by the assembly.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct GuestRegisters {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8 to r15 (15 registers).
    pub gpr: [u64; 15],
    /// Non-zero: enter with VMLAUNCH (the VMCS was never launched); zero: VMRESUME.
    pub launch: u64,
}

/// Index of each register in [`GuestRegisters::gpr`].
pub mod reg {
    /// rax
    pub const RAX: usize = 0;
    /// rbx
    pub const RBX: usize = 1;
    /// rcx
    pub const RCX: usize = 2;
    /// rdx
    pub const RDX: usize = 3;
    /// rsi
    pub const RSI: usize = 4;
    /// rdi
    pub const RDI: usize = 5;
    /// rbp
    pub const RBP: usize = 6;
    /// r8
    pub const R8: usize = 7;
    /// r9
    pub const R9: usize = 8;
    /// r10
    pub const R10: usize = 9;
    /// r11
    pub const R11: usize = 10;
    /// r12
    pub const R12: usize = 11;
    /// r13
    pub const R13: usize = 12;
    /// r14
    pub const R14: usize = 13;
    /// r15
    pub const R15: usize = 14;
}

const _: () = assert!(core::mem::size_of::<GuestRegisters>() == 128);

/// Bytes of each trap stack and each start-up stack, its guard page included
/// (`link.ld` reserves [`MAX_CPUS`] trap stacks and `MAX_CPUS - 1` start-up
/// stacks of this size; see `stacks.rs`).
pub const STACK_BYTES: u64 = 0x10000;
const _: () = assert!(MAX_CPUS == 8, "link.ld reserves stacks for 8 cores");

unsafe extern "C" {
    static __trap_stacks: u8;
    static __secondary_stacks: u8;
}

/// The top of core `cpu`'s trap stack.
pub fn trap_stack_top(cpu: usize) -> u64 {
    assert!(cpu < MAX_CPUS);
    &raw const __trap_stacks as u64 + (cpu as u64 + 1) * STACK_BYTES
}

/// The top of the start-up stack of core `cpu` (not the boot core, which starts on
/// the boot stack).
pub fn secondary_stack_top(cpu: usize) -> u64 {
    assert!((1..MAX_CPUS).contains(&cpu));
    &raw const __secondary_stacks as u64 + cpu as u64 * STACK_BYTES
}

global_asm!(
    // The multiboot2 header: magic, architecture (i386), length, checksum, end tag.
    ".section .multiboot2, \"a\"",
    ".balign 8",
    "2:",
    ".long 0xe85250d6",
    ".long 0",
    ".long 3f - 2b",
    ".long 0x100000000 - (0xe85250d6 + (3f - 2b))",
    ".short 0, 0",
    ".long 8",
    "3:",
    "",
    ".section .text.boot32, \"ax\"",
    ".code32",
    ".global _start32",
    "_start32:",
    "    cli",
    "    movl $__boot_stack_top, %esp",
    "    movl %eax, %edi",             // multiboot2 magic
    "    movl %ebx, %esi",             // boot information
    // Zero the PML4, the PDPT and the four page directories.
    "    movl $__boot_pml4, %edx",
    "    xorl %eax, %eax",
    "    movl $((6 * 4096) / 4), %ecx",
    "1:  movl %eax, (%edx)",
    "    addl $4, %edx",
    "    loop 1b",
    // 2048 directory entries of 2 MiB: identity map of 0 to 4 GiB.
    "    xorl %ecx, %ecx",
    "1:  movl %ecx, %eax",
    "    shll $21, %eax",
    "    orl $0x83, %eax",             // present, writable, large page
    "    movl %eax, __boot_pd(,%ecx,8)",
    "    incl %ecx",
    "    cmpl $2048, %ecx",
    "    jb 1b",
    // Four PDPT entries, one per page directory; one PML4 entry.
    "    xorl %ecx, %ecx",
    "1:  movl %ecx, %eax",
    "    shll $12, %eax",
    "    addl $__boot_pd, %eax",
    "    orl $0x3, %eax",
    "    movl %eax, __boot_pdpt(,%ecx,8)",
    "    incl %ecx",
    "    cmpl $4, %ecx",
    "    jb 1b",
    "    movl $__boot_pdpt, %eax",
    "    orl $0x3, %eax",
    "    movl %eax, __boot_pml4",
    // Long mode: PAE, EFER.LME (and NXE), paging.
    "    movl $__boot_pml4, %eax",
    "    movl %eax, %cr3",
    "    movl %cr4, %eax",
    "    orl $(1 << 5), %eax",
    "    movl %eax, %cr4",
    "    movl $0xc0000080, %ecx",
    "    rdmsr",
    "    orl $((1 << 8) | (1 << 11)), %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    orl $((1 << 31) | (1 << 0)), %eax",
    "    movl %eax, %cr0",
    "    lgdt boot_gdt_pointer",
    "    ljmp $0x08, $4f",
    "",
    ".code64",
    "4:  movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movw %ax, %fs",
    "    movw %ax, %gs",
    "    movl %edi, %edi",              // zero-extend magic and boot information
    "    movl %esi, %esi",
    // Clear .bss (the boot tables and stacks are in .boot, not .bss).
    "    movq $__bss_start, %rdx",
    "1:  cmpq $__bss_end, %rdx",
    "    jae 1f",
    "    movq $0, (%rdx)",
    "    addq $8, %rdx",
    "    jmp 1b",
    "1:  call {main}",
    "1:  hlt",
    "    jmp 1b",
    "",
    ".section .rodata",
    ".balign 16",
    // Also the GDT other cores switch to long mode with (`smp.rs`).
    ".global boot_gdt",
    "boot_gdt:",
    "    .quad 0",
    "    .quad 0x00af9a000000ffff",     // 0x08: 64-bit code
    "    .quad 0x00cf92000000ffff",     // 0x10: data
    "boot_gdt_pointer:",
    "    .short boot_gdt_pointer - boot_gdt - 1",
    "    .long boot_gdt",
    main = sym crate::kernel_main,
    options(att_syntax),
);

global_asm!(
    // VM exit: the VMCS host RIP. RSP = top of this core's trap stack, GS base =
    // this core's `cpu::PerCpu`.
    //
    // The fast path answers the null call (a VMCALL with RAX = 0) here, as the
    // general path would: success and zero results in RAX, RDI, RSI and RDX, RIP
    // past the VMCALL. It changes no kernel state. The call buys no time: the exit
    // saved the preemption timer's remaining value, and once the TSC has passed the
    // turn's end (this core's `PerCpu::turn_end_tsc`) the timer is zeroed, so the
    // partition exits for preemption before its next instruction. Anything else
    // goes to the general path with every register as the guest left it.
    ".global vm_exit_entry",
    "vm_exit_entry:",
    "    test rax, rax",
    "    jnz 3f",
    "    push rcx",
    "    push rdx",
    "    mov edx, {exit_reason}",
    "    vmread rcx, rdx",
    "    cmp ecx, {vmcall}",          // the whole field: basic reason and no flags
    "    jne 2f",
    "    mov edx, {instruction_length}",
    "    vmread rax, rdx",
    "    mov edx, {guest_rip}",
    "    vmread rcx, rdx",
    "    add rcx, rax",
    "    vmwrite rdx, rcx",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    cmp rax, qword ptr gs:[{turn_end}]", // this core's turn end (`cpu::PerCpu`)
    "    jb 1f",
    "    mov edx, {preemption_timer}",  // the turn is over: the timer expires at entry
    "    xor ecx, ecx",
    "    vmwrite rdx, rcx",
    "1:  pop rdx",
    "    pop rcx",
    "    xor eax, eax",
    "    xor edi, edi",
    "    xor esi, esi",
    "    xor edx, edx",
    "    vmresume",
    "    call {failed}",               // only reached if the entry failed
    "2:  pop rdx",
    "    pop rcx",
    "    xor eax, eax",                // it was 0
    "3:  sub rsp, 128",
    "    mov [rsp + 0], rax",
    "    mov [rsp + 8], rbx",
    "    mov [rsp + 16], rcx",
    "    mov [rsp + 24], rdx",
    "    mov [rsp + 32], rsi",
    "    mov [rsp + 40], rdi",
    "    mov [rsp + 48], rbp",
    "    mov [rsp + 56], r8",
    "    mov [rsp + 64], r9",
    "    mov [rsp + 72], r10",
    "    mov [rsp + 80], r11",
    "    mov [rsp + 88], r12",
    "    mov [rsp + 96], r13",
    "    mov [rsp + 104], r14",
    "    mov [rsp + 112], r15",
    "    mov rdi, rsp",
    "    call {handler}",
    "    jmp 5f",
    "",
    // enter_partition(frame: *const GuestRegisters, stack_top: u64) -> !: copies
    // the frame to the top of the core's trap stack and enters the partition
    // through the common path.
    ".global enter_partition",
    "enter_partition:",
    "    mov rsp, rsi",
    "    sub rsp, 128",
    "    mov rsi, rdi",
    "    mov rdi, rsp",
    "    mov rcx, 16",
    "    cld",
    "    rep movsq",
    "",
    "5:  cmp qword ptr [rsp + 120], 0",   // flags survive the moves and the lea below
    "    mov rax, [rsp + 0]",
    "    mov rbx, [rsp + 8]",
    "    mov rcx, [rsp + 16]",
    "    mov rdx, [rsp + 24]",
    "    mov rsi, [rsp + 32]",
    "    mov rdi, [rsp + 40]",
    "    mov rbp, [rsp + 48]",
    "    mov r8, [rsp + 56]",
    "    mov r9, [rsp + 64]",
    "    mov r10, [rsp + 72]",
    "    mov r11, [rsp + 80]",
    "    mov r12, [rsp + 88]",
    "    mov r13, [rsp + 96]",
    "    mov r14, [rsp + 104]",
    "    mov r15, [rsp + 112]",
    "    lea rsp, [rsp + 128]",
    "    jne 6f",
    "    vmresume",
    "    jmp 7f",
    "6:  vmlaunch",
    "7:  call {failed}",               // only reached if the entry failed
    handler = sym crate::exit::handle_vm_exit,
    failed = sym crate::exit::vm_entry_failed,
    exit_reason = const crate::vmx::field::EXIT_REASON,
    instruction_length = const crate::vmx::field::EXIT_INSTRUCTION_LENGTH,
    guest_rip = const crate::vmx::field::GUEST_RIP,
    vmcall = const crate::exit::VMCALL,
    preemption_timer = const crate::vmx::field::PREEMPTION_TIMER,
    turn_end = const crate::cpu::TURN_END_OFFSET,
);

unsafe extern "C" {
    /// Starts running the partition whose registers `frame` holds, with its VMCS
    /// current, on the trap stack whose top is `stack_top` (this core's). Never
    /// returns: the kernel next runs on a VM exit.
    pub fn enter_partition(frame: *const GuestRegisters, stack_top: u64) -> !;
    /// The VM-exit entry point, for the VMCS host RIP.
    pub fn vm_exit_entry();
}
