//! The aarch64 pieces of the SDK: the entry stub, the `hvc` instruction and the
//! counter. Everything else in the SDK is architecture-neutral.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

use septum_abi::layout::GICV2_CPU_INTERFACE;
use septum_gicv2::{CpuInterface, GICV_CTLR_GROUP1};
use tock_registers::interfaces::{Readable, Writeable};

/// GICV_PMR letting every priority through.
const PRIORITY_MASK_OPEN: u32 = 0xff;

// Every program starts with an arm64 Linux `Image` header (its first word branches
// over it), so that it can also run in a Linux partition, entered by Linux's boot
// protocol (see the README, "Linux in a partition").
//
// Entry state set by the kernel for a native partition (see the README,
// "Partition entry state"): EL1h with interrupts masked, stage-1 MMU off, x0 = RAM
// size in bytes (at most RAM_BASE: 1 GiB), x1 = boot argument, x2 = generation
// (passed on to `start`), all RAM outside the image zeroed. The stack goes at the
// top of RAM. Entered by Linux's boot protocol, x0 is the address of the device
// tree, above RAM_BASE, which the host tool puts after the image: the stack then
// grows down from there, the program is told the RAM below it is its RAM, and
// its argument and generation read 0.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    b 2f",                   // code0: over the header
    "    .word 0",                // code1
    "    .quad 0",                // text_offset: loaded at the start of RAM
    "    .quad __septum_image_size", // image_size: code, data and bss
    "    .quad 0b1010",           // flags: little-endian, 4 KiB pages, anywhere
    "    .quad 0, 0, 0",          // reserved
    "    .ascii \"ARM\\x64\"",    // magic
    "    .word 0",                // reserved
    "2:  mov x9, #{ram_base}",
    "    cmp x0, x9",
    "    b.hi 3f",
    "    add x9, x9, x0",
    "    mov sp, x9",
    "    bl {main}",
    "3:  mov sp, x0",             // Linux's boot protocol: x0 = the device tree
    "    sub x0, x0, x9",
    "    mov x1, xzr",
    "    mov x2, xzr",
    "    bl {main}",
    "1:  wfi",
    "    b 1b",
    ram_base = const septum_abi::layout::RAM_BASE,
    main = sym crate::start,
);

// Where a vCPU the partition starts (see `crate::start_vcpu`) begins: x0 is the top
// of its stack, under which lie the function it runs and that function's argument.
global_asm!(
    ".section .text, \"ax\"",
    ".global septum_vcpu_start",
    "septum_vcpu_start:",
    "    sub sp, x0, #16",
    "    ldp x9, x0, [sp]",
    "    blr x9",
    "1:  wfi",
    "    b 1b",
);

unsafe extern "C" {
    /// The entry of a vCPU the partition starts.
    fn septum_vcpu_start();
}

/// Starts vCPU `vcpu` of this partition at `septum_vcpu_start` with `context` in
/// x0, with the standard PSCI `CPU_ON` call.
pub fn start_vcpu(vcpu: u64, context: u64) -> Result<(), crate::Error> {
    use smccc::psci::{PSCI_CPU_ON_64, error};
    let target = septum_abi::vcpu_mpidr(vcpu as usize);
    let entry = septum_vcpu_start as *const () as u64;
    let args = [target, entry, context, 0, 0, 0];
    let (status, _) = hypercall(u64::from(PSCI_CPU_ON_64), args);
    match status as i64 {
        0 => Ok(()),
        code if code == i64::from(error::ALREADY_ON) => Err(crate::Error::BadState),
        code if code == i64::from(error::INVALID_ADDRESS) => Err(crate::Error::BadAddress),
        _ => Err(crate::Error::InvalidArgument),
    }
}

/// Makes hypercall `number` with six arguments; returns the status and three results.
#[inline(always)]
pub fn hypercall(number: u64, args: [u64; 6]) -> (u64, [u64; 3]) {
    let (status, r1, r2, r3);
    // SAFETY: `hvc #0` traps to the Septum kernel, which reads x0-x6 and writes
    // x0-x3 only, as the ABI says; it touches no memory of ours except buffers the
    // arguments name, which the callers in this crate pass as valid slices.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") number => status,
            inlateout("x1") args[0] => r1,
            inlateout("x2") args[1] => r2,
            inlateout("x3") args[2] => r3,
            in("x4") args[3],
            in("x5") args[4],
            in("x6") args[5],
            options(nostack),
        );
    }
    (status, [r1, r2, r3])
}

/// The virtual counter (CNTVCT_EL0): ticks since an arbitrary start.
#[inline(always)]
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; the ISB orders it after
    // the instructions before it.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

/// Loads the 32-bit device register at guest-physical `address` with one plain
/// `ldr` (no writeback: the syndrome the kernel emulates it from is valid).
///
/// # Safety
///
/// `address` must be a 4-byte aligned device register the partition may read.
#[inline(always)]
pub unsafe fn mmio_read32(address: u64) -> u32 {
    let value: u32;
    // SAFETY: the caller names a readable device register; the load has no
    // other effect on this program's memory.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack)) };
    value
}

/// Stores `value` to the 32-bit device register at guest-physical `address` with
/// one plain `str`, after every earlier store to memory (`dmb ish`), so that a
/// device reading rings in RAM on this store sees them.
///
/// # Safety
///
/// `address` must be a 4-byte aligned device register the partition may write.
#[inline(always)]
pub unsafe fn mmio_write32(address: u64, value: u32) {
    // SAFETY: the caller names a writable device register; the barrier orders
    // this program's earlier stores before it.
    unsafe {
        asm!(
            "dmb ish",
            "str {v:w}, [{a}]",
            a = in(reg) address,
            v = in(reg) value,
            options(nostack),
        )
    };
}

/// Loads or stores the device register of one width at guest-physical
/// `address` with one plain load or store (no writeback: the syndrome the
/// kernel emulates it from is valid), a store after every earlier one
/// (`dmb ish`): `mmio_read8` to `mmio_write64`, beside the 32-bit pair above.
macro_rules! mmio_width {
    ($read:ident, $write:ident, $t:ty, $load:literal, $store:literal, $mod:literal) => {
        /// Loads the device register at `address` (one plain load).
        ///
        /// # Safety
        ///
        /// `address` must be a naturally aligned device register the
        /// partition may read.
        #[inline(always)]
        pub unsafe fn $read(address: u64) -> $t {
            let value: u64;
            // SAFETY: the caller names a readable device register; the load
            // has no other effect on this program's memory.
            unsafe {
                asm!(concat!($load, " {v", $mod, "}, [{a}]"), a = in(reg) address, v = out(reg) value, options(nostack))
            };
            value as $t
        }

        /// Stores `value` to the device register at `address` (one plain
        /// store, after every earlier store to memory).
        ///
        /// # Safety
        ///
        /// `address` must be a naturally aligned device register the
        /// partition may write.
        #[inline(always)]
        pub unsafe fn $write(address: u64, value: $t) {
            // SAFETY: the caller names a writable device register; the
            // barrier orders this program's earlier stores before it.
            unsafe {
                asm!("dmb ish", concat!($store, " {v", $mod, "}, [{a}]"), a = in(reg) address, v = in(reg) u64::from(value), options(nostack))
            };
        }
    };
}

mmio_width!(mmio_read8, mmio_write8, u8, "ldrb", "strb", ":w");
mmio_width!(mmio_read16, mmio_write16, u16, "ldrh", "strh", ":w");
mmio_width!(mmio_read64, mmio_write64, u64, "ldr", "str", "");

/// Counter ticks per second (CNTFRQ_EL0).
pub fn counter_frequency() -> Option<u64> {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    Some(hz)
}

/// Waits for an event; the kernel takes it as giving up the turn.
pub fn wait() {
    // SAFETY: WFI traps to the kernel, which treats it as a yield.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

// The vector table a partition installs when it takes interrupts (see
// `crate::interrupts`). The IRQ vector (current EL with SP_EL1, offset 0x280) saves
// every register the handler may clobber, FP/SIMD included, and calls
// `interrupt_entry`; every other vector makes `hvc #0x5e1`, which the kernel
// reports as an unknown trap and which stops the partition.
global_asm!(
    ".section .text.septum_vectors, \"ax\"",
    ".arch_extension fp",
    ".arch_extension simd",
    ".balign 2048",
    ".global septum_vectors",
    "septum_vectors:",
    ".rept 5",
    ".balign 0x80",
    "    hvc #0x5e1",
    ".endr",
    ".balign 0x80",
    "    b septum_irq",
    ".rept 10",
    ".balign 0x80",
    "    hvc #0x5e1",
    ".endr",
    "septum_irq:",
    "    sub sp, sp, #(176 + 528)",
    "    stp x0, x1, [sp, #0]",
    "    stp x2, x3, [sp, #16]",
    "    stp x4, x5, [sp, #32]",
    "    stp x6, x7, [sp, #48]",
    "    stp x8, x9, [sp, #64]",
    "    stp x10, x11, [sp, #80]",
    "    stp x12, x13, [sp, #96]",
    "    stp x14, x15, [sp, #112]",
    "    stp x16, x17, [sp, #128]",
    "    stp x18, x29, [sp, #144]",
    "    mrs x0, elr_el1",
    "    mrs x1, spsr_el1",
    "    stp x30, x0, [sp, #160]",
    "    add x9, sp, #176",
    "    str x1, [x9], #16",
    "    mrs x0, fpcr",
    "    mrs x1, fpsr",
    "    stp x0, x1, [x9], #16",
    "    stp q0, q1, [x9], #32",
    "    stp q2, q3, [x9], #32",
    "    stp q4, q5, [x9], #32",
    "    stp q6, q7, [x9], #32",
    "    stp q16, q17, [x9], #32",
    "    stp q18, q19, [x9], #32",
    "    stp q20, q21, [x9], #32",
    "    stp q22, q23, [x9], #32",
    "    stp q24, q25, [x9], #32",
    "    stp q26, q27, [x9], #32",
    "    stp q28, q29, [x9], #32",
    "    stp q30, q31, [x9], #32",
    "    bl {entry}",
    "    add x9, sp, #176",
    "    ldr x1, [x9], #16",
    "    msr spsr_el1, x1",
    "    ldp x0, x1, [x9], #16",
    "    msr fpcr, x0",
    "    msr fpsr, x1",
    "    ldp q0, q1, [x9], #32",
    "    ldp q2, q3, [x9], #32",
    "    ldp q4, q5, [x9], #32",
    "    ldp q6, q7, [x9], #32",
    "    ldp q16, q17, [x9], #32",
    "    ldp q18, q19, [x9], #32",
    "    ldp q20, q21, [x9], #32",
    "    ldp q22, q23, [x9], #32",
    "    ldp q24, q25, [x9], #32",
    "    ldp q26, q27, [x9], #32",
    "    ldp q28, q29, [x9], #32",
    "    ldp q30, q31, [x9], #32",
    "    ldp x30, x0, [sp, #160]",
    "    msr elr_el1, x0",
    "    ldp x0, x1, [sp, #0]",
    "    ldp x2, x3, [sp, #16]",
    "    ldp x4, x5, [sp, #32]",
    "    ldp x6, x7, [sp, #48]",
    "    ldp x8, x9, [sp, #64]",
    "    ldp x10, x11, [sp, #80]",
    "    ldp x12, x13, [sp, #96]",
    "    ldp x14, x15, [sp, #112]",
    "    ldp x16, x17, [sp, #128]",
    "    ldp x18, x29, [sp, #144]",
    "    add sp, sp, #(176 + 528)",
    "    eret",
    entry = sym interrupt_entry,
);

/// Which virtual CPU interface this partition has, found by
/// [`interrupts_enable`]: the GICv3 system registers, or on a board with a GICv2
/// the GICV block the kernel maps at [`GICV2_CPU_INTERFACE`].
static GICV2: AtomicBool = AtomicBool::new(false);

/// Whether the processor lacks the GIC system register interface
/// (`ID_AA64PFR0_EL1.GIC`, bits 27:24, is 0): the board's GIC is a GICv2.
fn gic_is_v2() -> bool {
    let features: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) features, options(nomem, nostack)) };
    (features >> 24) & 0xf == 0
}

/// The GICv2 virtual CPU interface the kernel maps into every native partition.
fn gicv2_interface() -> &'static CpuInterface {
    // SAFETY: on a GICv2 board the kernel maps the GICV block at this fixed
    // address of the ABI, as device memory, for this partition alone;
    // `CpuInterface` matches its layout.
    unsafe { &*(GICV2_CPU_INTERFACE as *const CpuInterface) }
}

/// Takes the interrupt from the virtual CPU interface, hands its INTID to the
/// partition's handler, and ends it (which deactivates the device's interrupt).
extern "C" fn interrupt_entry() {
    let acknowledged: u64 = if GICV2.load(Ordering::Relaxed) {
        u64::from(gicv2_interface().iar.get())
    } else {
        let value;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority pending
        // virtual interrupt; it touches no memory.
        unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) value, options(nomem, nostack)) };
        value
    };
    let intid = (acknowledged & 0xff_ffff) as u32;
    if intid >= 1020 {
        return;
    }
    crate::interrupts::dispatch(intid);
    if GICV2.load(Ordering::Relaxed) {
        gicv2_interface().eoir.set(acknowledged as u32);
    } else {
        // SAFETY: writing ICC_EOIR1_EL1 with the acknowledged INTID ends it.
        unsafe { asm!("msr icc_eoir1_el1, {}", in(reg) acknowledged, options(nomem, nostack)) };
    }
}

/// Masks IRQs at EL1 (PSTATE.I).
pub fn interrupts_mask() {
    // SAFETY: setting PSTATE.I only holds this partition's own IRQs back.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// Unmasks IRQs at EL1 (PSTATE.I).
pub fn interrupts_unmask() {
    // SAFETY: clearing PSTATE.I lets this partition's own IRQs in; its vectors are
    // installed by `interrupts_enable` first.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Installs the vector table above, turns on this partition's virtual GIC CPU
/// interface for group 1 at every priority (the ICC system registers, or on a
/// GICv2 the GICV block), and unmasks IRQs.
pub fn interrupts_enable() {
    // SAFETY: VBAR_EL1 configures only this partition's own exception handling;
    // the vector table lives in its image and is 2 KiB aligned.
    unsafe {
        asm!(
            "adrp {t}, septum_vectors",
            "add {t}, {t}, :lo12:septum_vectors",
            "msr vbar_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        );
    }
    if gic_is_v2() {
        GICV2.store(true, Ordering::Relaxed);
        let interface = gicv2_interface();
        interface.pmr.set(PRIORITY_MASK_OPEN);
        interface.ctlr.set(GICV_CTLR_GROUP1);
    } else {
        // SAFETY: the ICC registers configure only this partition's own virtual
        // interrupt handling.
        unsafe {
            asm!(
                "mrs {t}, icc_sre_el1",
                "orr {t}, {t}, #1",
                "msr icc_sre_el1, {t}",
                "isb",
                "mov {t}, #0xff",
                "msr icc_pmr_el1, {t}",
                "mov {t}, #1",
                "msr icc_igrpen1_el1, {t}",
                t = out(reg) _,
                options(nostack),
            );
        }
    }
    // SAFETY: clearing PSTATE.I lets this partition's own IRQs in, its vectors
    // and interface set up above.
    unsafe { asm!("isb", "msr daifclr, #2", options(nomem, nostack)) };
}
