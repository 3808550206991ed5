//! Virtual CPUs: one VMCS per vCPU, its controls and initial guest state, its
//! partition's EPT ([`Space`]), and the switch between the vCPUs of one core.
//!
//! Partition entry state (see the README): 64-bit mode at CPL 0 with paging on
//! through read-only boot page tables that identity-map the first 4 GiB of
//! guest-physical space with 2 MiB pages (EPT, not these tables, decides what is
//! reachable), interrupts off, rdi = RAM size, rsi = boot argument, rip = the
//! image's entry point, an empty IDT. A vCPU its partition starts later
//! (`vcpu_start`) begins in the same state at the address it asked for, with its
//! context in rdi and nothing in rsi or rdx.
//!
//! Invariants:
//! - every exception the guest raises, every I/O port and MSR access not granted,
//!   HLT, CPUID and VMCALL exit to the kernel, and so does the VMX preemption timer,
//!   which the clock arms before every entry (see `clock.rs`); the one exception
//!   is a devirtualizable partition while it runs natively (its [`Space`] not
//!   translated): EPT is off and no exception, port or MSR exits (see
//!   [`write_translation_mode`]), and every vCPU's VMCS is put in its space's
//!   mode, and its other mode's cached translations dropped, at its next load;
//! - when a partition runs, its VMCS is current, and its x87/SSE state and the
//!   registers the VMCS does not hold (CR2, DR0-DR3, DR6, IA32_KERNEL_GS_BASE) are
//!   on the CPU; the other partitions' general registers, FPU state and those
//!   registers are in their `Vcpu`, so none passes from one partition to the next;
//! - a partition's CR8 is the task priority of its own virtual-APIC page (TPR
//!   shadow): it never reaches the local APIC;
//! - a partition cannot set the CR4 bits of processor features whose state the
//!   kernel does not switch (protection keys, CET, PKS, user interrupts);
//! - a device interrupt is pending only in its owner's `Vcpu`, and is injected only
//!   into that partition's VMCS, just before an entry into it, when the partition
//!   can take it (RFLAGS.IF set, no STI or MOV SS blocking); until then its VMCS
//!   has interrupt-window exiting on, and off again once nothing is pending;
//! - a [`Space`] owns its partition's EPT, shared by its vCPUs; the EPTP belongs
//!   to that partition alone; each vCPU has its own VMCS (so its own controls,
//!   which the next issue may set apart for a Linux guest) and its own VPID;
//! - a VMCS's host state is that of the core its vCPU is pinned to (trap stack,
//!   GDT, TSS, GS base); the boot core writes it and then clears it (VMCLEAR), so
//!   that it is first made current, and only ever used, on that core.
//!
//! Page changes at run time ([`map_page`], [`unmap_page`]) write one EPT entry. A
//! page is mapped only over a non-present entry, which no TLB or paging-structure
//! cache holds, so mapping needs no invalidation. An unmapped page stays reachable
//! through translations cached for this EPTP until [`flush_translations`], which
//! runs INVEPT single-context for the EPTP on the core that calls it and counts a
//! flush in the [`Space`], so that the next [`load`] of each of its vCPUs that has
//! not seen that flush runs it again on the core that loads it. INVEPT
//! single-context drops every mapping derived from the EPTP's tables,
//! guest-physical and combined, whatever their VPID and PCID, so no INVVPID is
//! needed. The two together reach every TLB that may hold the partition's
//! translations, because only partitions of one vCPU change mappings at run time
//! (the package's rule), and the kernel unmaps their pages only on their own core
//! while they run there (the INVEPT now covers that core), or while they are live
//! on no core: then they run next only after a `load`, on their own core.
//! Relocation is the exception: it changes a devirtualizable partition's EPT in
//! the service VM's calls, on another core than the partition's, so its flushes
//! go to every core (`shootdown.rs`).
//!
//! [`map_page`]: septum_kernel::AddressSpace::map_page
//! [`unmap_page`]: septum_kernel::AddressSpace::unmap_page
//! [`flush_translations`]: septum_kernel::AddressSpace::flush_translations
//! [`load`]: septum_kernel::Vcpu::load

use core::arch::asm;

use septum_core::memory::{FreeRanges, MemoryError};
use septum_core::relocation::Machine;
use septum_core::system::Reply;
use septum_core::vgic::ListEntry;
use septum_kernel::relocate::{MachineMemory, RelocatableTables};
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr0, Cr2, Cr3, Cr4};
use x86_64::registers::debug::{DebugAddressRegister, Dr0, Dr1, Dr2, Dr3, Dr6};
use x86_64::registers::model_specific::{Efer, KernelGsBase};

use crate::boot::{GuestRegisters, reg};
use crate::ept::{self, Ept};
use crate::vmx::{self, control_msr, field};

pub use septum_abi::layout::{
    X86_BOOT_TABLE_PAGES as BOOT_TABLE_PAGES, X86_BOOT_TABLES as BOOT_TABLES,
};

// Control bits (Intel SDM vol. 3, chapter 25).
const PIN_EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
const PIN_NMI_EXITING: u32 = 1 << 3;
const PIN_PREEMPTION_TIMER: u32 = 1 << 6;
const PRIMARY_INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
const PRIMARY_HLT_EXITING: u32 = 1 << 7;
const PRIMARY_USE_TPR_SHADOW: u32 = 1 << 21;
const PRIMARY_MWAIT_EXITING: u32 = 1 << 10;
const PRIMARY_RDPMC_EXITING: u32 = 1 << 11;
const PRIMARY_USE_IO_BITMAPS: u32 = 1 << 25;
const PRIMARY_USE_MSR_BITMAPS: u32 = 1 << 28;
const PRIMARY_MONITOR_EXITING: u32 = 1 << 29;
/// The primary control that turns the secondary controls on.
pub const PRIMARY_SECONDARY_CONTROLS: u32 = 1 << 31;
/// The secondary control that turns EPT on.
pub const SECONDARY_ENABLE_EPT: u32 = 1 << 1;
const SECONDARY_ENABLE_VPID: u32 = 1 << 5;
const EXIT_HOST_64_BIT: u32 = 1 << 9;
const EXIT_ACK_INTERRUPT: u32 = 1 << 15;
const EXIT_SAVE_EFER: u32 = 1 << 20;
const EXIT_SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
const EXIT_LOAD_EFER: u32 = 1 << 21;
const ENTRY_64_BIT_GUEST: u32 = 1 << 9;
const ENTRY_LOAD_EFER: u32 = 1 << 15;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
/// CR4 bits a partition may not set: VMXE (required in VMX operation), and the
/// features whose state the kernel does not switch between partitions (PKRU,
/// control-flow enforcement, supervisor keys, user interrupts). The partition
/// reads them as 0; setting one exits, and is a fault.
const CR4_HOST_OWNED: u64 = CR4_VMXE | (0b1111 << 22);
const EFER_LME_LMA: u64 = (1 << 8) | (1 << 10);
const RFLAGS_IF: u64 = 1 << 9;
/// Interruptibility state: blocking by STI, blocking by MOV SS.
const BLOCKING_STI_MOV_SS: u64 = 0b11;
/// VM-entry interruption information: valid, type external interrupt (0).
const INJECT_EXTERNAL_INTERRUPT: u64 = 1 << 31;

/// A partition's I/O and MSR bitmaps: every port it is not granted and every
/// MSR exits while it is translated; natively nothing does.
#[derive(Clone, Copy, Debug)]
pub struct Bitmaps {
    /// I/O bitmap A (ports 0 to 0x7fff).
    pub io_a: u64,
    /// I/O bitmap B (ports 0x8000 to 0xffff).
    pub io_b: u64,
    /// The MSR bitmap of every translated partition: all ones (reads and
    /// writes, low and high MSRs).
    pub msr: u64,
    /// The MSR bitmap of a native partition: all zeros, no MSR exits.
    pub msr_native: u64,
}

/// The kernel's state that a VM exit returns to (VMCS host-state area), on the
/// core the partition is pinned to.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// Code, data and TSS selectors.
    pub selectors: crate::cpu::Selectors,
    /// The core's GDT, IDT and TSS base addresses.
    pub tables: (u64, u64, u64),
    /// The core's `cpu::PerCpu` (host GS base).
    pub gs_base: u64,
    /// The core's trap stack's top (host RSP).
    pub stack_top: u64,
    /// The VM-exit entry point (host RIP).
    pub exit_entry: u64,
}

/// What a vCPU starts with.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// Guest RIP at entry.
    pub entry: u64,
    /// RAM size (passed in rdi).
    pub ram_size: u64,
    /// Boot argument (passed in rsi).
    pub argument: u64,
    /// VPID (non-zero, unique per vCPU).
    pub vpid: u16,
}

/// One partition's EPT, which its vCPUs share.
#[derive(Debug)]
pub struct Space {
    /// Its EPT, and the EPT pointer that selects it.
    ept: Ept,
    eptp: u64,
    /// Flushes of its translations so far (see the module's documentation).
    flushes: u64,
    /// Whether EPT translates it: false only for a devirtualizable partition
    /// while it runs natively (see [`Vcpu::apply_translation`]).
    translated: bool,
}

impl Space {
    /// The translation of `ept`, in use from the start unless `translated` is
    /// false; nothing this core cached for its root survives.
    pub fn new(ept: Ept, translated: bool) -> Space {
        let eptp = ept::pointer(ept.root());
        vmx::invept(eptp);
        Space {
            ept,
            eptp,
            flushes: 0,
            translated,
        }
    }
}

/// The x87/SSE register file as FXSAVE stores it.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct FxArea([u8; 512]);

impl FxArea {
    /// The state after FNINIT with SSE exceptions masked (FCW 0x37f, MXCSR 0x1f80).
    fn reset() -> FxArea {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037f_u16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80_u32.to_le_bytes());
        FxArea(area)
    }
}

/// The processor state a partition can change without a VM exit that neither
/// the VMCS guest area nor FXSAVE covers: the kernel saves it when the partition
/// leaves the CPU and loads it when it comes back, so no value passes from one
/// partition to the next on a core. (CR8, the task priority, is virtualised
/// instead: see [`Vcpu::virtual_apic`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Switched {
    /// The last page-fault address.
    cr2: u64,
    /// Breakpoint addresses (DR7, which enables them, is in the VMCS).
    breakpoints: [u64; 4],
    /// Debug status.
    dr6: u64,
    /// The base SWAPGS exchanges with GS's (IA32_KERNEL_GS_BASE), which WRGSBASE
    /// and SWAPGS can set without an MSR exit.
    kernel_gs_base: u64,
}

impl Switched {
    /// The values at reset (DR6's fixed bits set).
    const RESET: Switched = Switched {
        cr2: 0,
        breakpoints: [0; 4],
        dr6: 0xffff_0ff0,
        kernel_gs_base: 0,
    };

    /// The values on this CPU now.
    fn read() -> Switched {
        let dr6 = Dr6::read_raw();
        Switched {
            cr2: Cr2::read_raw(),
            breakpoints: [Dr0::read(), Dr1::read(), Dr2::read(), Dr3::read()],
            dr6,
            kernel_gs_base: KernelGsBase::read().as_u64(),
        }
    }

    /// Puts these values on this CPU. The kernel itself uses none of them: it
    /// takes no page faults, sets no breakpoints (DR7 on its side is 0) and never
    /// executes SWAPGS.
    fn write(&self) {
        let [dr0, dr1, dr2, dr3] = self.breakpoints;
        Dr0::write(dr0);
        Dr1::write(dr1);
        Dr2::write(dr2);
        Dr3::write(dr3);
        KernelGsBase::write(VirtAddr::new_truncate(self.kernel_gs_base));
        // SAFETY: CR2 only records a fault address; DR6 gets back a value the CPU
        // itself produced (bits 63:32 clear), so neither write faults or changes
        // how the kernel runs.
        unsafe {
            asm!(
                "mov cr2, {cr2}",
                "mov dr6, {dr6}",
                cr2 = in(reg) self.cr2,
                dr6 = in(reg) self.dr6,
                options(nostack, preserves_flags),
            )
        };
    }
}

/// One virtual CPU.
#[derive(Debug)]
pub struct Vcpu {
    vmcs: u64,
    vpid: u16,
    /// Whether its VMCS translates through EPT (its space's mode when it was
    /// last loaded), and the MSR bitmaps of the two modes.
    translated: bool,
    msr_bitmaps: (u64, u64),
    /// The flushes of its partition's translations its core has seen (see the
    /// module's documentation).
    flushes_seen: u64,
    registers: GuestRegisters,
    fx: FxArea,
    /// The registers neither the VMCS nor FXSAVE switch.
    switched: Switched,
    /// The virtual-APIC page: its task priority (VTPR) is the partition's CR8.
    virtual_apic: u64,
    launched: bool,
    /// Bit `n`: an interrupt of IRQ line `n` waits to be injected.
    pending: u32,
    /// Whether this VMCS has interrupt-window exiting on.
    window: bool,
    /// Where it starts.
    entry: u64,
    /// RAM size and boot argument, passed at every start.
    boot_arguments: (u64, u64),
    /// Work on the VMCS for the next [`load`](septum_kernel::Vcpu::load), which
    /// makes it current: back to the entry state, or RIP moved past a trapped
    /// instruction.
    on_load: OnLoad,
}

/// VMCS work that waits until the VMCS is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnLoad {
    Nothing,
    /// The entry state, at this RIP.
    Reset(u64),
    Skip(u8),
}

impl Vcpu {
    /// A vCPU at the partition's entry state, with its VMCS fully written (for the
    /// core `host` describes) and cleared, that translates through `space`.
    pub fn new<const N: usize>(
        frames: &mut FreeRanges<N>,
        space: &Space,
        start: Start,
        bitmaps: &Bitmaps,
        host: &Host,
    ) -> Result<Vcpu, MemoryError> {
        let eptp = space.eptp;
        let vmcs = frames.allocate(4096, 4096)?.start;
        let virtual_apic = frames.allocate(4096, 4096)?.start;
        // SAFETY: both pages were free and are now this vCPU's alone; the kernel
        // maps RAM at its physical address.
        unsafe {
            core::ptr::write_bytes(virtual_apic as *mut u8, 0, 4096);
            core::ptr::write_bytes(vmcs as *mut u8, 0, 4096);
            (vmcs as *mut u32).write(vmx::revision_id());
            vmx::load(vmcs, true);
        }
        write_controls(start, eptp, virtual_apic, bitmaps).unwrap_or_else(|e| panic!("{e}"));
        let msr_bitmaps = (bitmaps.msr, bitmaps.msr_native);
        write_translation_mode(space.translated, msr_bitmaps);
        write_host_state(host);
        write_guest_state(start.entry);
        // SAFETY: the VMCS initialised above.
        unsafe { vmx::clear(vmcs) };
        Ok(Vcpu {
            vmcs,
            vpid: start.vpid,
            translated: space.translated,
            msr_bitmaps,
            flushes_seen: space.flushes,
            registers: entry_registers(start.ram_size, start.argument, 1),
            fx: FxArea::reset(),
            switched: Switched::RESET,
            virtual_apic,
            launched: false,
            pending: 0,
            window: false,
            entry: start.entry,
            boot_arguments: (start.ram_size, start.argument),
            on_load: OnLoad::Nothing,
        })
    }

    /// Keeps an interrupt of IRQ `line` pending for this partition (one of its
    /// granted lines: see `irq::Interrupts::end`).
    pub fn pend(&mut self, line: u32) {
        self.pending |= 1 << line;
    }

    /// Called just before entering this partition, with its VMCS current: injects
    /// its lowest pending interrupt (vector `irq::VECTOR_BASE` + line) if the
    /// partition can take one now, and turns interrupt-window exiting on while
    /// anything is still pending (the exit comes when it can take the next), off
    /// when nothing is.
    pub fn deliver_interrupts(&mut self) {
        if self.pending == 0 && !self.window {
            return;
        }
        if self.pending != 0
            && vmx::read(field::GUEST_RFLAGS) & RFLAGS_IF != 0
            && vmx::read(field::GUEST_INTERRUPTIBILITY) & BLOCKING_STI_MOV_SS == 0
        {
            let line = self.pending.trailing_zeros();
            self.pending &= !(1 << line);
            let vector = u64::from(crate::irq::VECTOR_BASE) + u64::from(line);
            vmx::write(
                field::ENTRY_INTERRUPTION_INFO,
                INJECT_EXTERNAL_INTERRUPT | vector,
            );
        }
        let window = self.pending != 0;
        if window != self.window {
            let primary = vmx::read(field::PRIMARY_CONTROLS);
            let primary = if window {
                primary | u64::from(PRIMARY_INTERRUPT_WINDOW_EXITING)
            } else {
                primary & !u64::from(PRIMARY_INTERRUPT_WINDOW_EXITING)
            };
            vmx::write(field::PRIMARY_CONTROLS, primary);
            self.window = window;
        }
    }
}

/// General registers at entry: rdi = RAM size, rsi = boot argument, rdx =
/// generation.
fn entry_registers(ram_size: u64, argument: u64, generation: u32) -> GuestRegisters {
    let mut registers = GuestRegisters::default();
    registers.gpr[reg::RDI] = ram_size;
    registers.gpr[reg::RSI] = argument;
    registers.gpr[reg::RDX] = u64::from(generation);
    registers
}

/// The execution, exit and entry controls the kernel needs: (VMCS field, its
/// capability MSRs, the bits wanted), the primary controls before the secondary
/// ones (whose capability MSR exists only where the primary ones allow them).
fn wanted_controls() -> [(u32, (u32, u32), u32); 5] {
    let pin = PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING | PIN_PREEMPTION_TIMER;
    let primary = PRIMARY_HLT_EXITING
        | PRIMARY_USE_TPR_SHADOW
        | PRIMARY_MWAIT_EXITING
        | PRIMARY_RDPMC_EXITING
        | PRIMARY_USE_IO_BITMAPS
        | PRIMARY_USE_MSR_BITMAPS
        | PRIMARY_MONITOR_EXITING
        | PRIMARY_SECONDARY_CONTROLS;
    let secondary = SECONDARY_ENABLE_EPT | SECONDARY_ENABLE_VPID;
    // The timer's remaining value is saved on exit, so a turn continues across
    // traps until the clock arms a new one.
    let exit = EXIT_HOST_64_BIT
        | EXIT_ACK_INTERRUPT
        | EXIT_SAVE_EFER
        | EXIT_LOAD_EFER
        | EXIT_SAVE_PREEMPTION_TIMER;
    let entry = ENTRY_64_BIT_GUEST | ENTRY_LOAD_EFER;
    [
        (field::PIN_CONTROLS, control_msr::PIN, pin),
        (field::PRIMARY_CONTROLS, control_msr::PRIMARY, primary),
        (field::SECONDARY_CONTROLS, control_msr::SECONDARY, secondary),
        (field::EXIT_CONTROLS, control_msr::EXIT, exit),
        (field::ENTRY_CONTROLS, control_msr::ENTRY, entry),
    ]
}

/// Checks, at boot, that the processor allows every control the kernel needs,
/// so a machine that lacks one is refused before any partition is placed.
pub fn check_controls() -> Result<(), vmx::VmxError> {
    for (_, msrs, wanted) in wanted_controls() {
        vmx::adjust_controls(msrs, wanted)?;
    }
    Ok(())
}

/// Writes the execution, exit and entry controls. CR8 goes through the TPR
/// shadow: the partition's MOV to and from CR8 reach the task priority in its own
/// virtual-APIC page, never the local APIC's, so no partition can mask the
/// interrupts the kernel or another partition waits for, and each one's priority
/// is kept with its vCPU without an exit (the TPR threshold is 0: lowering the
/// priority never exits either).
fn write_controls(
    start: Start,
    eptp: u64,
    virtual_apic: u64,
    bitmaps: &Bitmaps,
) -> Result<(), vmx::VmxError> {
    for (encoding, msrs, wanted) in wanted_controls() {
        vmx::write(encoding, u64::from(vmx::adjust_controls(msrs, wanted)?));
    }
    // Turned on only while an interrupt waits (`deliver_interrupts`): check now
    // that the CPU has it.
    vmx::adjust_controls(control_msr::PRIMARY, PRIMARY_INTERRUPT_WINDOW_EXITING)?;
    // The exception and MSR bitmaps depend on the mode: `write_translation_mode`.
    vmx::write(field::IO_BITMAP_A, bitmaps.io_a);
    vmx::write(field::IO_BITMAP_B, bitmaps.io_b);
    vmx::write(field::EPT_POINTER, eptp);
    vmx::write(field::VPID, u64::from(start.vpid));
    vmx::write(field::VIRTUAL_APIC_ADDRESS, virtual_apic);
    vmx::write(field::TPR_THRESHOLD, 0);
    vmx::write(field::CR4_MASK, CR4_HOST_OWNED);
    vmx::write(field::CR0_MASK, 0);
    Ok(())
}

/// Puts the current VMCS in one translation mode. Translated: EPT on, the
/// partition's I/O bitmaps and the all-ones MSR bitmap, every exception exits.
/// Native: EPT off, so the guest's own page tables (placed identity) name
/// machine memory; no I/O, MSR or exception exits. What still exits natively is
/// what VMX always intercepts (CPUID, VMCALL, the VMX instructions, INVD,
/// XSETBV, a triple fault), and what the kernel keeps for its own schedule:
/// external interrupts, the preemption timer and HLT. `msr_bitmaps` are the
/// translated and the native MSR bitmap.
fn write_translation_mode(translated: bool, msr_bitmaps: (u64, u64)) {
    let primary = vmx::read(field::PRIMARY_CONTROLS);
    let secondary = vmx::read(field::SECONDARY_CONTROLS);
    let io = u64::from(PRIMARY_USE_IO_BITMAPS);
    let ept = u64::from(SECONDARY_ENABLE_EPT);
    let (primary, secondary, msr, exceptions) = if translated {
        (primary | io, secondary | ept, msr_bitmaps.0, 0xffff_ffff)
    } else {
        (primary & !io, secondary & !ept, msr_bitmaps.1, 0)
    };
    vmx::write(field::PRIMARY_CONTROLS, primary);
    vmx::write(field::SECONDARY_CONTROLS, secondary);
    vmx::write(field::MSR_BITMAP, msr);
    vmx::write(field::EXCEPTION_BITMAP, exceptions);
}

/// Checks, at boot, that the processor can run a partition natively: with EPT
/// and the I/O bitmaps off (neither forced on, and no unconditional I/O
/// exiting), and with INVVPID to drop one mode's cached translations.
pub fn check_native_mode() -> Result<(), &'static str> {
    const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    let [
        _,
        (_, primary_msrs, primary),
        (_, secondary_msrs, secondary),
        ..,
    ] = wanted_controls();
    let io = PRIMARY_USE_IO_BITMAPS | UNCONDITIONAL_IO_EXITING;
    let lacking = |_| "the processor lacks a control the kernel needs";
    let primary = vmx::adjust_controls(primary_msrs, primary & !io).map_err(lacking)?;
    let secondary =
        vmx::adjust_controls(secondary_msrs, secondary & !SECONDARY_ENABLE_EPT).map_err(lacking)?;
    if primary & io != 0 {
        return Err("the processor forces I/O exiting on");
    }
    if secondary & SECONDARY_ENABLE_EPT != 0 {
        return Err("the processor forces EPT on");
    }
    if !vmx::has_invvpid() {
        return Err("the processor has no INVVPID");
    }
    Ok(())
}

fn write_host_state(host: &Host) {
    let (gdt, idt, tss) = host.tables;
    vmx::write(field::HOST_CR0, Cr0::read_raw());
    vmx::write(field::HOST_CR3, Cr3::read_raw().0.start_address().as_u64());
    vmx::write(field::HOST_CR4, Cr4::read_raw());
    vmx::write(field::HOST_EFER, Efer::read_raw());
    let data = u64::from(host.selectors.data.0);
    for encoding in [
        field::HOST_ES_SELECTOR,
        field::HOST_SS_SELECTOR,
        field::HOST_DS_SELECTOR,
        field::HOST_FS_SELECTOR,
        field::HOST_GS_SELECTOR,
    ] {
        vmx::write(encoding, data);
    }
    vmx::write(field::HOST_CS_SELECTOR, u64::from(host.selectors.code.0));
    vmx::write(field::HOST_TR_SELECTOR, u64::from(host.selectors.tss.0));
    for (encoding, value) in [
        (field::HOST_FS_BASE, 0),
        (field::HOST_GS_BASE, host.gs_base),
        (field::HOST_TR_BASE, tss),
        (field::HOST_GDTR_BASE, gdt),
        (field::HOST_IDTR_BASE, idt),
        (field::HOST_SYSENTER_CS, 0),
        (field::HOST_SYSENTER_ESP, 0),
        (field::HOST_SYSENTER_EIP, 0),
        (field::HOST_RSP, host.stack_top),
        (field::HOST_RIP, host.exit_entry),
    ] {
        vmx::write(encoding, value);
    }
}

fn write_guest_state(entry: u64) {
    let cr0 = vmx::fixed_cr0(CR0_PE | CR0_ET | CR0_NE | CR0_PG);
    let cr4 = vmx::fixed_cr4(CR4_PAE | CR4_VMXE);
    vmx::write(field::GUEST_CR0, cr0);
    vmx::write(field::CR0_READ_SHADOW, cr0);
    vmx::write(field::GUEST_CR3, BOOT_TABLES);
    vmx::write(field::GUEST_CR4, cr4);
    vmx::write(field::CR4_READ_SHADOW, cr4 & !CR4_VMXE);
    vmx::write(field::GUEST_EFER, EFER_LME_LMA);
    // Segments in order ES, CS, SS, DS, FS, GS, LDTR, TR: selector, limit, access
    // rights, base. Flat 64-bit code, flat data, no LDT, a minimal busy TSS.
    const CODE: (u64, u64) = (0x08, 0xa09b);
    const DATA: (u64, u64) = (0x10, 0xc093);
    const LDTR_UNUSABLE: (u64, u64) = (0, 1 << 16);
    const TSS_BUSY_64: (u64, u64) = (0x18, 0x8b);
    let segments = [
        DATA,
        CODE,
        DATA,
        DATA,
        DATA,
        DATA,
        LDTR_UNUSABLE,
        TSS_BUSY_64,
    ];
    for (index, (selector, access)) in segments.into_iter().enumerate() {
        let step = 2 * index as u32;
        let limit = if selector == TSS_BUSY_64.0 {
            0x67
        } else {
            0xffff_ffff
        };
        vmx::write(field::GUEST_ES_SELECTOR + step, selector);
        vmx::write(field::GUEST_ES_LIMIT + step, limit);
        vmx::write(field::GUEST_ES_ACCESS + step, access);
        vmx::write(field::GUEST_ES_BASE + step, 0);
    }
    for (encoding, value) in [
        (field::GUEST_GDTR_BASE, 0),
        (field::GUEST_GDTR_LIMIT, 0),
        (field::GUEST_IDTR_BASE, 0),
        (field::GUEST_IDTR_LIMIT, 0),
        (field::GUEST_DR7, 0x400),
        (field::GUEST_RSP, 0),
        (field::GUEST_RIP, entry),
        (field::GUEST_RFLAGS, 0x2),
        (field::GUEST_PENDING_DEBUG, 0),
        (field::GUEST_SYSENTER_CS, 0),
        (field::GUEST_SYSENTER_ESP, 0),
        (field::GUEST_SYSENTER_EIP, 0),
        (field::GUEST_DEBUGCTL, 0),
        (field::GUEST_INTERRUPTIBILITY, 0),
        (field::GUEST_ACTIVITY_STATE, 0),
        (field::VMCS_LINK_POINTER, u64::MAX),
    ] {
        vmx::write(encoding, value);
    }
}

impl septum_kernel::Vcpu for Vcpu {
    type Frame = GuestRegisters;
    type Space = Space;

    fn set_reply(frame: &mut GuestRegisters, reply: Reply) {
        frame.gpr[reg::RAX] = reply.status;
        frame.gpr[reg::RDI] = reply.results[0];
        frame.gpr[reg::RSI] = reply.results[1];
        frame.gpr[reg::RDX] = reply.results[2];
    }

    fn skip_instruction(_frame: &mut GuestRegisters) {
        skip_instruction();
    }

    fn restart(&mut self, generation: u32) {
        let (ram_size, argument) = self.boot_arguments;
        self.reset(self.entry, entry_registers(ram_size, argument, generation));
    }

    fn power_on(&mut self, entry: u64, context: u64) {
        let mut registers = GuestRegisters::default();
        registers.gpr[reg::RDI] = context;
        self.reset(entry, registers);
    }

    fn refill_interrupts(&mut self, _fill: impl FnOnce(&mut [ListEntry]) -> bool) {
        // No virtual interrupt controller: no partition on this back end has one.
    }

    fn take_undefined(&mut self) {
        unreachable!("the core refuses it: no partition on x86 has the Linux profile")
    }

    fn skip_stored(&mut self, length: u8) {
        if self.on_load == OnLoad::Nothing {
            self.on_load = OnLoad::Skip(length);
        }
    }

    fn store(&mut self, frame: &GuestRegisters) {
        self.registers = *frame;
        self.switched = Switched::read();
        // SAFETY: FXSAVE64 writes 512 bytes to a 16-byte aligned area of ours.
        unsafe { asm!("fxsave64 [{}]", in(reg) &mut self.fx, options(nostack)) };
    }

    fn load(&mut self, space: &Space, frame: &mut GuestRegisters) {
        // SAFETY: `self.vmcs` is this vCPU's VMCS, initialised in `new`; FXRSTOR64
        // reads a valid area (the reset state or one FXSAVE64 wrote) and affects
        // only the FPU, which the kernel (soft-float) does not use.
        unsafe {
            vmx::load(self.vmcs, false);
            asm!("fxrstor64 [{}]", in(reg) &self.fx, options(nostack));
        }
        self.switched.write();
        if self.translated != space.translated {
            self.apply_translation(space);
        }
        if self.flushes_seen != space.flushes {
            vmx::invept(space.eptp);
            self.flushes_seen = space.flushes;
        }
        match core::mem::replace(&mut self.on_load, OnLoad::Nothing) {
            OnLoad::Nothing => {}
            OnLoad::Reset(entry) => {
                write_guest_state(entry);
                if self.window {
                    let primary = vmx::read(field::PRIMARY_CONTROLS)
                        & !u64::from(PRIMARY_INTERRUPT_WINDOW_EXITING);
                    vmx::write(field::PRIMARY_CONTROLS, primary);
                    self.window = false;
                }
            }
            OnLoad::Skip(length) => {
                let rip = vmx::read(field::GUEST_RIP) + u64::from(length);
                vmx::write(field::GUEST_RIP, rip);
            }
        }
        *frame = self.registers;
        frame.launch = u64::from(!self.launched);
        self.launched = true;
    }
}

impl Vcpu {
    /// Puts its current VMCS in its space's translation mode (see
    /// [`write_translation_mode`]) and drops, on this core, what was cached
    /// under the other one: the linear mappings of its VPID (native) and the
    /// combined mappings of its EPT (translated).
    fn apply_translation(&mut self, space: &Space) {
        write_translation_mode(space.translated, self.msr_bitmaps);
        vmx::invvpid(self.vpid);
        vmx::invept(space.eptp);
        self.translated = space.translated;
    }

    /// Puts the stored state to the entry state at `entry` with `registers`, to
    /// be written into the VMCS at the next load. Only while it is live on no
    /// core.
    fn reset(&mut self, entry: u64, registers: GuestRegisters) {
        self.registers = registers;
        self.fx = FxArea::reset();
        self.switched = Switched::RESET;
        // SAFETY: the vCPU's own virtual-APIC page, which only this vCPU's VMCS
        // names; the vCPU is live on no core, so no CPU uses it now.
        unsafe { core::ptr::write_bytes(self.virtual_apic as *mut u8, 0, 4096) };
        self.on_load = OnLoad::Reset(entry);
    }
}

impl septum_kernel::AddressSpace for Space {
    fn map_page(&mut self, guest: u64, frame: u64) {
        // Over a non-present entry, which nothing caches: no invalidation needed.
        self.ept
            .set_page(guest, Some((frame, ept::RAM)))
            .unwrap_or_else(|e| panic!("map_page {guest:#x}: no level-3 table, or mapped: {e:?}"));
    }

    fn unmap_page(&mut self, guest: u64) {
        self.ept
            .set_page(guest, None)
            .unwrap_or_else(|e| panic!("unmap_page {guest:#x} without a level-3 table: {e:?}"));
    }

    fn flush_translations(&mut self) {
        vmx::invept(self.eptp);
        self.flushes += 1;
    }

    fn set_translation(&mut self, on: bool) {
        // Each vCPU's next load puts its VMCS in the new mode and flushes
        // there (`Vcpu::apply_translation`); the core reloads a vCPU live on
        // any core before it runs again.
        self.translated = on;
    }

    fn relocation_machine(&mut self, work: &mut dyn FnMut(&mut dyn Machine)) {
        // The partition may run on another core while its pages move.
        let eptp = self.eptp;
        let mut flush = move || crate::shootdown::flush_everywhere(crate::cpu::index(), eptp);
        // SAFETY: relocation names only the partition's own RAM and the frames
        // the kernel lent it, RAM the kernel maps at its address and nothing
        // else uses; `zero_page` zeroes the page it is given.
        let memory = unsafe { MachineMemory::new(crate::machine::zero_page, |_| {}) };
        work(&mut RelocatableTables::new(
            &mut self.ept,
            ept::RAM,
            &mut flush,
            memory,
        ));
    }
}

/// Turns the current VMCS's VMX-preemption timer on or off (off: the kernel's
/// timer never ends the vCPU's turn, which it asks for a turn that never ends).
/// The exit control that saves the timer's value goes with it: VM entry
/// refuses it without the timer. Writes the controls only when they change.
pub fn set_preemption_timer(on: bool) {
    for (field, bit) in [
        (field::PIN_CONTROLS, PIN_PREEMPTION_TIMER),
        (field::EXIT_CONTROLS, EXIT_SAVE_PREEMPTION_TIMER),
    ] {
        let controls = vmx::read(field) as u32;
        let wanted = if on { controls | bit } else { controls & !bit };
        if wanted != controls {
            vmx::write(field, u64::from(wanted));
        }
    }
}

/// Moves the current VMCS's guest past the instruction that caused the VM exit.
pub fn skip_instruction() {
    let rip = vmx::read(field::GUEST_RIP) + vmx::read(field::EXIT_INSTRUCTION_LENGTH);
    vmx::write(field::GUEST_RIP, rip);
}
