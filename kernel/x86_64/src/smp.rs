//! Starting the other cores: the boot core copies a real-mode trampoline below
//! 1 MiB and wakes each core with INIT, then two STARTUP IPIs, through its local
//! APIC; the trampoline switches the core straight from 16-bit real mode to long
//! mode on the kernel's boot page tables and GDT, and [`secondary_main`] gives the
//! core its own tables, local APIC and VMX root operation before it runs the
//! partitions pinned to it.
//!
//! Invariants:
//! - cores start one at a time, in index order: the boot core publishes the next
//!   core's index and start-up stack, and starts the core after it only once that
//!   one has said it is up, so no two cores read those values at once;
//! - a core other than the boot core touches the kernel state only after the boot
//!   core has filled it in and said so ([`release`]).

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use septum_core::event::Event;

use crate::acpi::Processors;
use crate::boot::{self, GuestRegisters};
use crate::clock::Clock;
use crate::exit::{self, KERNEL};
use crate::irq::Interrupts;
use crate::{cpu, vmx};

/// Where the trampoline runs: a page below 1 MiB (the STARTUP IPI's vector is its
/// page number) that the BIOS and the boot loader leave free.
pub const TRAMPOLINE: u64 = 0x8000;
/// Interrupt command: INIT, level triggered, asserted; then deasserted.
const INIT_ASSERT: u32 = 0xc500;
const INIT_DEASSERT: u32 = 0x8500;
/// Interrupt command: STARTUP, with the trampoline's page number as the vector.
const STARTUP: u32 = 0x0600 | (TRAMPOLINE >> 12) as u32;
/// How long a core may take to say it is up.
const START_TIMEOUT_US: u64 = 1_000_000;

/// The start-up stack top and index of the core being started, for the trampoline.
static NEXT_STACK: AtomicU64 = AtomicU64::new(0);
static NEXT_INDEX: AtomicU64 = AtomicU64::new(0);
/// How many cores besides the boot core are up (their own set-up done).
static CORES_UP: AtomicUsize = AtomicUsize::new(0);
/// Set once the kernel state is filled in.
static RELEASED: AtomicBool = AtomicBool::new(false);

global_asm!(
    // Copied to TRAMPOLINE and entered there by a STARTUP IPI, in real mode with
    // CS = TRAMPOLINE >> 4 and IP = 0: only offsets from its start are used for its
    // own data; everything else it names lies below 4 GiB, reached with 32-bit
    // operands.
    ".section .text.trampoline, \"ax\"",
    ".code16",
    ".global ap_trampoline",
    "ap_trampoline:",
    "    cli",
    "    cld",
    "    movw %cs, %ax",
    "    movw %ax, %ds",
    "    lgdtl (ap_gdt_pointer - ap_trampoline)",
    "    movl %cr4, %eax",
    "    orl $(1 << 5), %eax",                  // PAE
    "    movl %eax, %cr4",
    "    movl $__boot_pml4, %eax",
    "    movl %eax, %cr3",
    "    movl $0xc0000080, %ecx",               // EFER: LME and NXE
    "    rdmsr",
    "    orl $((1 << 8) | (1 << 11)), %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    andl $0x9fffffff, %eax",               // caches on (CD and NW clear)
    "    orl $((1 << 31) | (1 << 0)), %eax",    // paging and protection
    "    movl %eax, %cr0",
    "    ljmpl $0x08, $ap_long_mode",
    "ap_gdt_pointer:",
    "    .short 23",
    "    .long boot_gdt",
    ".global ap_trampoline_end",
    "ap_trampoline_end:",
    "",
    ".code64",
    "ap_long_mode:",
    "    movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movw %ax, %fs",
    "    movw %ax, %gs",
    "    movq {stack}(%rip), %rsp",
    "    movq {index}(%rip), %rdi",
    "    call {main}",
    "1:  hlt",
    "    jmp 1b",
    stack = sym NEXT_STACK,
    index = sym NEXT_INDEX,
    main = sym secondary_main,
    options(att_syntax),
);

unsafe extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
}

/// Starts every core of `processors` but the boot core (index 0), one at a time,
/// and returns once all are up; each then waits for [`release`]. Panics if one
/// does not come up.
///
/// # Safety
/// Once, at boot, on the boot core, after `cpu::init`, `Interrupts::init` and
/// `vmx::enable` ran there; the page at [`TRAMPOLINE`] must be free RAM that
/// nothing else uses from now on.
pub unsafe fn start_secondaries(interrupts: &Interrupts, processors: &Processors, clock: &Clock) {
    if processors.count() < 2 {
        return;
    }
    let start = &raw const ap_trampoline as u64;
    let len = &raw const ap_trampoline_end as u64 - start;
    assert!(len <= 4096, "the trampoline fits a page");
    // SAFETY: per this function's contract the page is free and ours; the
    // trampoline's bytes are code of this image.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, len as usize)
    };
    let wait_us = |us| clock.delay_us(us);
    for cpu in 1..processors.count() {
        let apic_id = processors.apic_id(cpu).expect("cpu < count");
        NEXT_STACK.store(boot::secondary_stack_top(cpu), Ordering::Relaxed);
        NEXT_INDEX.store(cpu as u64, Ordering::Relaxed);
        interrupts.send_command(apic_id, INIT_ASSERT);
        interrupts.send_command(apic_id, INIT_DEASSERT);
        wait_us(10_000);
        for _ in 0..2 {
            interrupts.send_command(apic_id, STARTUP);
            wait_us(200);
        }
        let deadline = clock.now_us() + START_TIMEOUT_US;
        while CORES_UP.load(Ordering::Acquire) < cpu {
            assert!(
                clock.now_us() < deadline,
                "core {cpu} (local APIC {apic_id}) did not start"
            );
            core::hint::spin_loop();
        }
    }
}

/// Lets the other cores use the kernel state, now filled in.
pub fn release() {
    RELEASED.store(true, Ordering::Release);
}

/// A core other than the boot core, from the trampoline, on its start-up stack:
/// sets up its own tables, local APIC and VMX root operation, says it is up, waits
/// for the kernel state, then runs the partitions pinned to it.
extern "C" fn secondary_main(index: u64) -> ! {
    let cpu = index as usize;
    // SAFETY: this core's start, once, with interrupts disabled; the boot core ran
    // `cpu::init(0)` and `Interrupts::init` before starting it.
    unsafe {
        cpu::init(cpu);
        Interrupts::init_this_core();
    }
    // SAFETY: once, on this core, with interrupts disabled.
    unsafe { vmx::enable(cpu) }.unwrap_or_else(|e| panic!("cannot use VT-x on core {cpu}: {e}"));
    CORES_UP.fetch_add(1, Ordering::Release);
    while !RELEASED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let mut frame = GuestRegisters::default();
    let run = KERNEL.with(cpu, |kernel| {
        kernel.log(Event::KernelCpuUp { cpu });
        exit::resume(kernel, cpu, &mut frame)
    });
    exit::until_runnable(cpu, run, &mut frame);
    // SAFETY: `frame` holds the registers of a partition pinned to this core, whose
    // VMCS `resume` made current here.
    unsafe { boot::enter_partition(&frame, boot::trap_stack_top(cpu)) }
}
