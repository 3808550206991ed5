//! The kernel's own descriptor tables and per-core data: per core a GDT with a TSS
//! (VMX requires a usable host TR, and a TSS descriptor is marked busy when loaded,
//! so cores cannot share one) and a [`PerCpu`] block that the core's GS base points
//! at; one IDT for all cores, whose every exception vector (all but the reserved
//! 9, 15, 22-27 and 31, which no processor raises) reports the exception and stops
//! the kernel, and whose interrupt vectors (32 to 255) are the idle wait's
//! (`idle.rs`). Interrupts stay disabled in the kernel except in the idle wait's
//! HLT, so elsewhere only exceptions, which are kernel bugs, can arrive here. The
//! page fault and double fault vectors run on the core's fault stack (the TSS's
//! first interrupt stack), so that a stack that overflowed into its guard page
//! (`stacks.rs`) is not needed to report it.
//!
//! Invariants: core `n`'s GS base is `&PER_CPU[n]` whenever it runs the kernel (set
//! by [`init`], and by every VM exit through the VMCS host GS base of the partitions
//! pinned to it); every core's GDT has the same selectors.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64};
use septum_core::system::MAX_CPUS;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::model_specific::GsBase;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

/// The selectors the kernel runs with (also the VMCS host selectors).
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    /// 64-bit code.
    pub code: SegmentSelector,
    /// Data (and stack).
    pub data: SegmentSelector,
    /// The task state segment.
    pub tss: SegmentSelector,
}

/// One core's GDT and TSS, built once by that core and never changed.
struct Tables {
    gdt: UnsafeCell<GlobalDescriptorTable>,
    tss: UnsafeCell<TaskStateSegment>,
}

/// The IDT, built once by the boot core and only read afterwards.
struct Idt(UnsafeCell<InterruptDescriptorTable>);

// SAFETY: core `n`'s tables are written only by `init(n)`, once, on core `n`, before
// anything else uses them; afterwards the CPU reads them and the kernel never
// writes.
unsafe impl Sync for Tables {}
// SAFETY: written only by `init(0)`, on the boot core before any other core starts;
// read-only afterwards.
unsafe impl Sync for Idt {}

static TABLES: [Tables; MAX_CPUS] = [const {
    Tables {
        gdt: UnsafeCell::new(GlobalDescriptorTable::new()),
        tss: UnsafeCell::new(TaskStateSegment::new()),
    }
}; MAX_CPUS];

static IDT: Idt = Idt(UnsafeCell::new(InterruptDescriptorTable::new()));

/// Bytes of each core's fault stack.
const FAULT_STACK_BYTES: usize = 8192;

/// One fault stack per core, core 0 first: the TSS's first interrupt stack.
#[repr(C, align(16))]
struct FaultStacks([[u8; FAULT_STACK_BYTES]; MAX_CPUS]);

/// Written only by the CPU, each core on its own stack, while the kernel stops
/// on a page fault or double fault.
static mut FAULT_STACKS: FaultStacks = FaultStacks([[0; FAULT_STACK_BYTES]; MAX_CPUS]);

/// The fault stack's index in the TSS's interrupt stack table.
const FAULT_STACK_INDEX: u16 = 0;

/// What each core keeps for itself, reached through its GS base.
#[repr(C)]
pub struct PerCpu {
    /// The TSC value at which the core's current turn ends (`clock.rs`); read by
    /// the null-call fast path in `boot.rs` at [`TURN_END_OFFSET`].
    pub turn_end_tsc: AtomicU64,
    /// Whether a turn that never ends has run on this core, so that a VMCS
    /// here may have its preemption timer off: a turn with an end then checks
    /// its own (`clock.rs`).
    pub preemption_timer_off: AtomicBool,
    /// The core's index: 0 for the boot core, then in ACPI MADT order.
    index: usize,
}

/// Offset of [`PerCpu::turn_end_tsc`], for the assembly.
pub const TURN_END_OFFSET: usize = core::mem::offset_of!(PerCpu, turn_end_tsc);
const INDEX_OFFSET: usize = core::mem::offset_of!(PerCpu, index);

static PER_CPU: [PerCpu; MAX_CPUS] = {
    let mut cores = [const {
        PerCpu {
            turn_end_tsc: AtomicU64::new(0),
            preemption_timer_off: AtomicBool::new(false),
            index: 0,
        }
    }; MAX_CPUS];
    let mut index = 0;
    while index < MAX_CPUS {
        cores[index].index = index;
        index += 1;
    }
    cores
};

/// The index of the core this runs on.
pub fn index() -> usize {
    let index: usize;
    // SAFETY: GS base points at this core's `PerCpu` (module invariant); reading
    // its index field has no side effects.
    unsafe {
        asm!("mov {}, qword ptr gs:[{offset}]", out(reg) index, offset = const INDEX_OFFSET, options(nostack, preserves_flags, readonly));
    }
    index
}

/// This core's [`PerCpu`].
pub fn this_core() -> &'static PerCpu {
    &PER_CPU[index()]
}

/// Where core `cpu`'s [`PerCpu`] is (its GS base, also the VMCS host GS base).
pub fn per_cpu_address(cpu: usize) -> u64 {
    &raw const PER_CPU[cpu] as u64
}

// One entry stub per exception vector: push a zero error code where the CPU pushes
// none, push the vector, and report.
global_asm!(
    ".macro exception_stub vector, has_error",
    ".global exception_\\vector",
    "exception_\\vector:",
    ".if \\has_error == 0",
    "    push 0",
    ".endif",
    "    push \\vector",
    "    jmp exception_common",
    ".endm",
    "exception_stub 0, 0",
    "exception_stub 1, 0",
    "exception_stub 2, 0",
    "exception_stub 3, 0",
    "exception_stub 4, 0",
    "exception_stub 5, 0",
    "exception_stub 6, 0",
    "exception_stub 7, 0",
    "exception_stub 8, 1",
    "exception_stub 10, 1",
    "exception_stub 11, 1",
    "exception_stub 12, 1",
    "exception_stub 13, 1",
    "exception_stub 14, 1",
    "exception_stub 16, 0",
    "exception_stub 17, 1",
    "exception_stub 18, 0",
    "exception_stub 19, 0",
    "exception_stub 20, 0",
    "exception_stub 21, 1",
    "exception_stub 28, 0",
    "exception_stub 29, 1",
    "exception_stub 30, 1",
    "exception_common:",
    "    mov rdi, [rsp]",
    "    mov rsi, [rsp + 8]",
    "    mov rdx, [rsp + 16]",
    "    mov rcx, cr2",
    "    call {report}",
    report = sym kernel_exception,
);

unsafe extern "C" {
    fn exception_0();
    fn exception_1();
    fn exception_2();
    fn exception_3();
    fn exception_4();
    fn exception_5();
    fn exception_6();
    fn exception_7();
    fn exception_8();
    fn exception_10();
    fn exception_11();
    fn exception_12();
    fn exception_13();
    fn exception_14();
    fn exception_16();
    fn exception_17();
    fn exception_18();
    fn exception_19();
    fn exception_20();
    fn exception_21();
    fn exception_28();
    fn exception_29();
    fn exception_30();
}

extern "C" fn kernel_exception(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    const PAGE_FAULT: u64 = 14;
    if vector == PAGE_FAULT
        && let Some((cpu, stack)) = crate::stacks::guarded_stack(cr2)
    {
        crate::report_on_stop(septum_core::event::Event::KernelStackOverflow {
            cpu,
            stack,
            guard: cr2 & !(crate::stacks::GUARD_BYTES - 1),
            pc: rip,
        });
        panic!(
            "kernel stack overflow: core {cpu}'s {} stack ran into its guard page",
            stack.name()
        )
    }
    panic!(
        "CPU exception in the kernel: vector={vector} error={error:#x} rip={rip:#x} cr2={cr2:#x}"
    )
}

fn address(stub: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(stub as *const () as u64)
}

/// Loads core `cpu`'s GDT and TSS and the IDT (which core 0 builds), and points GS
/// base at the core's [`PerCpu`]. Returns the selectors in use.
///
/// # Safety
/// Must be called once per core, on core `cpu`, with interrupts disabled, before
/// any other code of that core depends on the segment registers, GS or the IDT;
/// core 0 first, before any other core starts.
pub unsafe fn init(cpu: usize) -> Selectors {
    // SAFETY: per this function's contract nothing else touches this core's tables
    // now (nor the IDT, on core 0); they are statics, so the 'static references the
    // CPU keeps stay valid.
    let (gdt, tss) = unsafe { (&mut *TABLES[cpu].gdt.get(), &mut *TABLES[cpu].tss.get()) };
    let fault_stack = &raw const FAULT_STACKS as u64 + ((cpu + 1) * FAULT_STACK_BYTES) as u64;
    tss.interrupt_stack_table[usize::from(FAULT_STACK_INDEX)] = VirtAddr::new(fault_stack);
    let tss: &'static TaskStateSegment = tss;
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    if cpu == 0 {
        // SAFETY: as above: the boot core builds the IDT before other cores start.
        unsafe { build_idt(&mut *IDT.0.get()) };
    }
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, of the right
    // kinds; the TSS descriptor is loaded into TR once. GS base is set after GS is
    // loaded (which clears it), to this core's own block.
    unsafe {
        CS::set_reg(code);
        for set in [
            DS::set_reg,
            ES::set_reg,
            SS::set_reg,
            FS::set_reg,
            GS::set_reg,
        ] {
            set(data);
        }
        load_tss(tss_selector);
        GsBase::write(VirtAddr::new(per_cpu_address(cpu)));
        (*IDT.0.get()).load();
    }
    Selectors {
        code,
        data,
        tss: tss_selector,
    }
}

/// Points every exception vector at its stub.
///
/// # Safety
/// Each handler address is an exception stub above, which follows the CPU's calling
/// convention for its vector (error code or not) and never returns.
unsafe fn build_idt(idt: &mut InterruptDescriptorTable) {
    // SAFETY: per this function's contract.
    unsafe {
        idt.divide_error.set_handler_addr(address(exception_0));
        idt.debug.set_handler_addr(address(exception_1));
        idt.non_maskable_interrupt
            .set_handler_addr(address(exception_2));
        idt.breakpoint.set_handler_addr(address(exception_3));
        idt.overflow.set_handler_addr(address(exception_4));
        idt.bound_range_exceeded
            .set_handler_addr(address(exception_5));
        idt.invalid_opcode.set_handler_addr(address(exception_6));
        idt.device_not_available
            .set_handler_addr(address(exception_7));
        idt.double_fault
            .set_handler_addr(address(exception_8))
            .set_stack_index(FAULT_STACK_INDEX);
        idt.invalid_tss.set_handler_addr(address(exception_10));
        idt.segment_not_present
            .set_handler_addr(address(exception_11));
        idt.stack_segment_fault
            .set_handler_addr(address(exception_12));
        idt.general_protection_fault
            .set_handler_addr(address(exception_13));
        idt.page_fault
            .set_handler_addr(address(exception_14))
            .set_stack_index(FAULT_STACK_INDEX);
        idt.x87_floating_point
            .set_handler_addr(address(exception_16));
        idt.alignment_check.set_handler_addr(address(exception_17));
        idt.machine_check.set_handler_addr(address(exception_18));
        idt.simd_floating_point
            .set_handler_addr(address(exception_19));
        idt.virtualization.set_handler_addr(address(exception_20));
        idt.cp_protection_exception
            .set_handler_addr(address(exception_21));
        idt.hv_injection_exception
            .set_handler_addr(address(exception_28));
        idt.vmm_communication_exception
            .set_handler_addr(address(exception_29));
        idt.security_exception
            .set_handler_addr(address(exception_30));
    }
    crate::idle::install(idt);
}

/// Where core `cpu`'s GDT and TSS and the IDT are (for the VMCS host state): (GDT,
/// IDT, TSS).
pub fn table_addresses(cpu: usize) -> (u64, u64, u64) {
    (
        TABLES[cpu].gdt.get() as u64,
        IDT.0.get() as u64,
        TABLES[cpu].tss.get() as u64,
    )
}
