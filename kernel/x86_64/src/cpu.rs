//! The kernel's own descriptor tables: a GDT with a TSS (VMX requires a usable host
//! TR), and an IDT whose every exception vector (all but the reserved 9, 15, 22-27
//! and 31, which no processor raises) reports the exception and stops the kernel. Interrupts stay disabled in the kernel, so only exceptions, which are
//! kernel bugs, can arrive here.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
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

/// Tables built once at boot and never changed.
struct Tables {
    gdt: UnsafeCell<GlobalDescriptorTable>,
    tss: UnsafeCell<TaskStateSegment>,
    idt: UnsafeCell<InterruptDescriptorTable>,
}

// SAFETY: the tables are written only by `init`, once, on the boot CPU before
// anything else runs; afterwards the CPU reads them and the kernel never writes.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables {
    gdt: UnsafeCell::new(GlobalDescriptorTable::new()),
    tss: UnsafeCell::new(TaskStateSegment::new()),
    idt: UnsafeCell::new(InterruptDescriptorTable::new()),
};

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
    panic!(
        "CPU exception in the kernel: vector={vector} error={error:#x} rip={rip:#x} cr2={cr2:#x}"
    )
}

fn address(stub: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(stub as *const () as u64)
}

/// Loads the kernel's GDT, TSS and IDT. Returns the selectors in use.
///
/// # Safety
/// Must be called once, on the boot CPU, with interrupts disabled, before any
/// other code depends on the segment registers or the IDT.
pub unsafe fn init() -> Selectors {
    // SAFETY: per this function's contract nothing else touches the tables now;
    // they are statics, so the 'static references the CPU keeps stay valid.
    let (gdt, tss, idt) = unsafe {
        (
            &mut *TABLES.gdt.get(),
            &*TABLES.tss.get(),
            &mut *TABLES.idt.get(),
        )
    };
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    // SAFETY: each handler address is an exception stub above, which follows the
    // CPU's calling convention for its vector (error code or not) and never returns.
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
        idt.double_fault.set_handler_addr(address(exception_8));
        idt.invalid_tss.set_handler_addr(address(exception_10));
        idt.segment_not_present
            .set_handler_addr(address(exception_11));
        idt.stack_segment_fault
            .set_handler_addr(address(exception_12));
        idt.general_protection_fault
            .set_handler_addr(address(exception_13));
        idt.page_fault.set_handler_addr(address(exception_14));
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
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, of the right
    // kinds; the TSS descriptor is loaded into TR once.
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
    }
    idt.load();
    Selectors {
        code,
        data,
        tss: tss_selector,
    }
}

/// Where the GDT, IDT and TSS are (for the VMCS host state).
pub fn table_addresses() -> (u64, u64, u64) {
    (
        TABLES.gdt.get() as u64,
        TABLES.idt.get() as u64,
        TABLES.tss.get() as u64,
    )
}
