//! The x86_64 pieces of the SDK: the entry stub, the `vmcall` instruction, the
//! counter, and the partition's own GDT, IDT and interrupt entry (installed by
//! [`interrupts_enable`]). Everything else in the SDK is architecture-neutral.

use core::arch::{asm, global_asm};

// Entry state set by the kernel (see the README, "Partition entry state"): 64-bit
// mode, interrupts off, rdi = RAM size in bytes, rsi = boot argument, rdx =
// generation (passed on to `start`), all RAM
// outside the image zeroed. The stack goes at the top of RAM.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    mov rsp, {ram_base}",
    "    add rsp, rdi",
    "    call {main}",
    "2:  hlt",
    "    jmp 2b",
    ram_base = const septum_abi::layout::RAM_BASE,
    main = sym crate::start,
);

// Where a vCPU the partition starts (see `crate::start_vcpu`) begins: rdi is the
// top of its stack, under which lie the function it runs and that function's
// argument.
global_asm!(
    ".section .text, \"ax\"",
    ".global septum_vcpu_start",
    "septum_vcpu_start:",
    "    lea rsp, [rdi - 16]",
    "    mov rax, [rsp]",
    "    mov rdi, [rsp + 8]",
    "    call rax",
    "2:  hlt",
    "    jmp 2b",
);

unsafe extern "C" {
    /// The entry of a vCPU the partition starts.
    fn septum_vcpu_start();
}

/// Starts vCPU `vcpu` of this partition at `septum_vcpu_start` with `context` in
/// rdi, with Septum's `vcpu_start` call.
pub fn start_vcpu(vcpu: u64, context: u64) -> Result<(), crate::Error> {
    let entry = septum_vcpu_start as *const () as u64;
    crate::typed(crate::Call::VcpuStart, [vcpu, entry, context, 0, 0, 0]).map(|_| ())
}

/// Makes hypercall `number` with six arguments; returns the status and three results.
#[inline(always)]
pub fn hypercall(number: u64, args: [u64; 6]) -> (u64, [u64; 3]) {
    let (status, r1, r2, r3);
    // SAFETY: `vmcall` exits to the Septum kernel, which reads rax, rdi, rsi, rdx,
    // r10, r8 and r9 and writes rax, rdi, rsi and rdx only, as the ABI says; it
    // touches no memory of ours except buffers the arguments name, which the callers
    // in this crate pass as valid slices.
    unsafe {
        asm!(
            "vmcall",
            inlateout("rax") number => status,
            inlateout("rdi") args[0] => r1,
            inlateout("rsi") args[1] => r2,
            inlateout("rdx") args[2] => r3,
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            options(nostack),
        );
    }
    (status, [r1, r2, r3])
}

/// The time-stamp counter: ticks since an arbitrary start.
#[inline(always)]
pub fn counter() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `lfence; rdtsc` reads the time-stamp counter; no memory is touched.
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Loads the 32-bit device register at guest-physical `address` with one plain
/// `mov` (the kernel decodes it to emulate the load).
///
/// # Safety
///
/// `address` must be a 4-byte aligned device register the partition may read.
#[inline(always)]
pub unsafe fn mmio_read32(address: u64) -> u32 {
    let value: u32;
    // SAFETY: the caller names a readable device register; the load has no
    // other effect on this program's memory.
    unsafe {
        asm!("mov {v:e}, dword ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack))
    };
    value
}

/// Stores `value` to the 32-bit device register at guest-physical `address` with
/// one plain `mov` (x86 keeps stores in order, so a device reading rings in RAM
/// on this store sees every earlier one).
///
/// # Safety
///
/// `address` must be a 4-byte aligned device register the partition may write.
#[inline(always)]
pub unsafe fn mmio_write32(address: u64, value: u32) {
    // SAFETY: the caller names a writable device register.
    unsafe {
        asm!("mov dword ptr [{a}], {v:e}", a = in(reg) address, v = in(reg) value, options(nostack))
    };
}

/// Loads or stores the device register of one width at guest-physical
/// `address` with one plain `mov` (the kernel decodes it to emulate the
/// access): `mmio_read8` to `mmio_write64`, beside the 32-bit pair above.
macro_rules! mmio_width {
    ($read:ident, $write:ident, $t:ty, $reg:ident, $mod:literal, $size:literal) => {
        /// Loads the device register at `address` (one plain `mov`).
        ///
        /// # Safety
        ///
        /// `address` must be a naturally aligned device register the
        /// partition may read.
        #[inline(always)]
        pub unsafe fn $read(address: u64) -> $t {
            let value: $t;
            // SAFETY: the caller names a readable device register; the load
            // has no other effect on this program's memory.
            unsafe {
                asm!(concat!("mov {v", $mod, "}, ", $size, " ptr [{a}]"), a = in(reg) address, v = out($reg) value, options(nostack))
            };
            value
        }

        /// Stores `value` to the device register at `address` (one plain `mov`).
        ///
        /// # Safety
        ///
        /// `address` must be a naturally aligned device register the
        /// partition may write.
        #[inline(always)]
        pub unsafe fn $write(address: u64, value: $t) {
            // SAFETY: the caller names a writable device register.
            unsafe {
                asm!(concat!("mov ", $size, " ptr [{a}], {v", $mod, "}"), a = in(reg) address, v = in($reg) value, options(nostack))
            };
        }
    };
}

mmio_width!(mmio_read8, mmio_write8, u8, reg_byte, "", "byte");
mmio_width!(mmio_read16, mmio_write16, u16, reg, ":x", "word");
mmio_width!(mmio_read64, mmio_write64, u64, reg, "", "qword");

/// Counter ticks per second: not reported by every x86 CPU (or by Bochs), so the
/// counter is given in ticks.
pub fn counter_frequency() -> Option<u64> {
    None
}

/// Waits for an event; the kernel takes it as giving up the turn.
pub fn wait() {
    // SAFETY: HLT exits to the kernel, which treats it as a yield.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}

/// The vector of IRQ line 0 inside the partition: the kernel injects IRQ line `n`
/// as vector `IRQ_VECTOR_BASE + n` (kernel/x86_64/src/irq.rs).
const IRQ_VECTOR_BASE: usize = 0x20;
/// IRQ lines with a vector: 24, as many as a PC's I/O APIC has inputs.
const IRQ_LINES: usize = 24;
/// IDT entries: the 32 exception vectors and one per IRQ line. A vector past them
/// (`int n` with a larger n) is a #GP, which exits to the kernel.
const VECTORS: usize = IRQ_VECTOR_BASE + IRQ_LINES;
/// The kernel's guest selectors (its VMCS loads them at entry): 64-bit code, data.
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;

/// The partition's GDT: null, then flat 64-bit code (0x08) and flat data (0x10), the
/// descriptors the kernel's entry state describes, with the accessed bit preset so
/// the CPU never writes them.
static GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// The partition's IDT, filled in by [`interrupts_enable`].
#[repr(C, align(16))]
struct Idt(core::cell::UnsafeCell<[u64; 2 * VECTORS]>);

// SAFETY: written only by `interrupts_enable` with interrupts off, which is the
// only writer; the CPU reads it afterwards.
unsafe impl Sync for Idt {}

// The stubs below are written out for exactly this many lines.
const _: () = assert!(IRQ_LINES == 24);

static IDT: Idt = Idt(core::cell::UnsafeCell::new([0; 2 * VECTORS]));

/// The operand of LGDT and LIDT.
#[repr(C, packed)]
struct TablePointer {
    limit: u16,
    base: u64,
}

// The partition's interrupt vectors.
//
// Exceptions (vectors 0 to 31): the kernel's exception bitmap sends every exception
// the CPU raises to the kernel, which stops the partition with an
// `unhandled-exception` fault before this IDT is read. What can still reach these
// stubs is a software `int n` with n < 32: each stub (8 bytes apart, so the fault
// address names the vector) executes INVD, which always exits to the kernel and
// which it reports as `fault reason=unknown-trap addr=<stub> syndrome=0xd` (exit
// reason 13), stopping the partition. It never returns.
//
// IRQ line n (vector 0x20 + n): the CPU has pushed 40 bytes (SS, RSP, RFLAGS, CS,
// RIP) onto a stack it first aligned to 16 bytes. The stub saves rdi and passes the
// line in it; the common entry saves the other eight caller-saved registers (nine
// pushes: the stack is 16-byte aligned again at the call), calls
// `interrupt_entry(line)` and returns with IRETQ. The partition is built without
// SSE, so no vector register needs saving; the code has no red zone.
global_asm!(
    ".section .text.septum_vectors, \"ax\"",
    ".balign 16",
    ".global septum_exception_stubs",
    "septum_exception_stubs:",
    ".rept 32",
    ".balign 8",
    "3:  invd",
    "    jmp 3b",
    ".endr",
    ".balign 16",
    ".global septum_irq_stubs",
    "septum_irq_stubs:",
    ".irp line, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23",
    ".balign 16",
    "    push rdi",
    "    mov edi, \\line",
    "    jmp septum_irq_common",
    ".endr",
    "septum_irq_common:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    cld",
    "    call {entry}",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    pop rdi",
    "    iretq",
    entry = sym interrupt_entry,
);

unsafe extern "C" {
    static septum_exception_stubs: [u8; 32 * 8];
    static septum_irq_stubs: [u8; IRQ_LINES * 16];
}

/// Called by the IRQ entry with the line whose vector was taken.
extern "C" fn interrupt_entry(line: u32) {
    crate::interrupts::dispatch(line);
}

/// A 64-bit interrupt gate to `handler`: present, DPL 0, the code selector, no
/// interrupt stack (the interrupt runs on the current stack, at CPL 0 as the
/// partition). Interrupts stay off in the handler until IRETQ.
fn gate(handler: u64) -> [u64; 2] {
    const PRESENT_INTERRUPT_GATE: u64 = 0x8e;
    let low = (handler & 0xffff)
        | (u64::from(CODE_SELECTOR) << 16)
        | (PRESENT_INTERRUPT_GATE << 40)
        | ((handler >> 16 & 0xffff) << 48);
    [low, handler >> 32]
}

/// Clears RFLAGS.IF.
pub fn interrupts_mask() {
    // SAFETY: `cli` only holds this partition's own interrupts back.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Sets RFLAGS.IF.
pub fn interrupts_unmask() {
    // SAFETY: `sti` lets this partition's own interrupts in; its IDT is installed by
    // `interrupts_enable` first.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Installs the partition's own GDT and IDT (see the vectors above), reloads the
/// segment registers from the GDT, and enables interrupts: the kernel then injects
/// each interrupt of a granted IRQ line `n` as vector 0x20 + n, and the entry calls
/// `crate::interrupts::dispatch(n)`.
pub fn interrupts_enable() {
    let exceptions = (&raw const septum_exception_stubs) as u64;
    let irqs = (&raw const septum_irq_stubs) as u64;
    // SAFETY: interrupts are off (they are only turned on below, and the IDT is not
    // loaded yet or holds these same values), so nothing reads the table while it is
    // written; `interrupts_enable` is the only writer.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, entry) in idt.chunks_exact_mut(2).enumerate() {
        let handler = if vector < IRQ_VECTOR_BASE {
            exceptions + 8 * vector as u64
        } else {
            irqs + 16 * (vector - IRQ_VECTOR_BASE) as u64
        };
        entry.copy_from_slice(&gate(handler));
    }
    let gdt = TablePointer {
        limit: (core::mem::size_of_val(&GDT) - 1) as u16,
        base: GDT.as_ptr() as u64,
    };
    let idt = TablePointer {
        limit: (core::mem::size_of::<[u64; 2 * VECTORS]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the GDT holds the same flat code and data descriptors, at the same
    // selectors, as the segments the partition already runs with, so reloading CS
    // (through a far return) and the data segments changes nothing but where the
    // CPU finds them; the IDT's gates point at the entry stubs above. Both tables
    // are statics, so they outlive every use. STI lets the kernel's injected
    // interrupts in, which the IRQ entry handles without changing any register.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "lidt [{idt}]",
            "push {code}",
            "lea {scratch}, [rip + 2f]",
            "push {scratch}",
            "retfq",
            "2:",
            "mov {scratch:e}, {data}",
            "mov ds, {scratch:e}",
            "mov es, {scratch:e}",
            "mov ss, {scratch:e}",
            "mov fs, {scratch:e}",
            "mov gs, {scratch:e}",
            "sti",
            gdt = in(reg) &gdt,
            idt = in(reg) &idt,
            code = const CODE_SELECTOR,
            data = const DATA_SELECTOR,
            scratch = out(reg) _,
        );
    }
}
