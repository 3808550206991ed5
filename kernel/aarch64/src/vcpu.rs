//! Virtual CPUs: the register state of a vCPU while it is not running, its trap
//! controls, its partition's stage-2 tables ([`Space`]), and the switch between
//! vCPUs on one physical CPU.
//!
//! Invariants:
//! - when a vCPU runs, every EL1/EL0 register it can read holds either its own
//!   value or one the kernel set for it at entry; nothing leaks from the vCPU that
//!   ran before (general registers via the trap frame, system registers and the
//!   FP/SIMD file via [`store`] and [`load`]);
//! - each vCPU has its own HCR_EL2 value, installed by [`load`], so partitions may
//!   differ in what traps: a native partition's is [`HCR_NATIVE`]; a Linux
//!   partition's, [`HCR_LINUX`], differs only in letting the guest's own stage 1
//!   decide cacheability (no DC, so its MMU can be turned on) and in not trapping
//!   WFI and WFE (its idle and spin-wait loops stay in its own window);
//! - a stored vCPU's virtual timer is off on the CPU: [`store`] saves it and
//!   disables it, so it cannot fire for whatever runs next on the core; it fires
//!   again, if it is due, when the vCPU is loaded;
//! - a [`Space`] owns its partition's stage-2 tables; its VMID (in VTTBR_EL2)
//!   belongs to that partition alone and is shared by its vCPUs, so TLB
//!   maintenance by VMID touches no other partition;
//! - vCPU `n` of a partition reads MPIDR_EL1 as [`vcpu_mpidr`]`(n)`, the number
//!   PSCI calls name it by;
//! - page changes at run time ([`map_page`], [`unmap_page`]) follow the
//!   architecture's rules for live tables: a page is mapped only over an invalid
//!   entry, which no TLB holds (translation faults are never cached), so the store
//!   needs only a `DSB ISHST` to reach every table walker before the partition
//!   runs; an unmapped page stays reachable through cached translations until
//!   [`flush_translations`] orders the stores (`DSB ISHST`) before a broadcast
//!   `TLBI VMALLS12E1IS` for the partition's VMID and waits for it to complete on
//!   every core (`DSB ISH`), wherever the partition runs.
//!
//! [`store`]: septum_kernel::Vcpu::store
//! [`load`]: septum_kernel::Vcpu::load
//! [`map_page`]: septum_kernel::AddressSpace::map_page
//! [`unmap_page`]: septum_kernel::AddressSpace::unmap_page
//! [`flush_translations`]: septum_kernel::AddressSpace::flush_translations

use core::arch::{asm, global_asm};

use aarch64_cpu::asm::barrier;
use septum_abi::vcpu_mpidr;
use septum_core::relocation::Machine;
use septum_core::system::Reply;
use septum_core::vgic::ListEntry;
use septum_kernel::relocate::{MachineMemory, RelocatableTables};

use crate::boot::TrapFrame;
use crate::stage2::{self, Stage2};
use crate::vgic::VirtualInterface;

/// Generates the EL1 system-register state with its save and restore code from one
/// list, so the two can never disagree.
macro_rules! el1_registers {
    ($($name:ident),* $(,)?) => {
        /// The partition's EL1 and EL0 system registers.
        #[allow(non_snake_case)]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct El1State { $(pub $name: u64,)* }

        impl El1State {
            /// Reads every register from the CPU.
            fn store(&mut self) {
                $(
                    // SAFETY: reading an EL1/EL0 system register at EL2 has no side
                    // effects.
                    unsafe { asm!(concat!("mrs {}, ", stringify!($name)), out(reg) self.$name, options(nomem, nostack)) };
                )*
            }
            /// Writes every register to the CPU.
            fn load(&self) {
                $(
                    // SAFETY: these registers control only EL1/EL0 execution, which is
                    // not running while the kernel is; EL2 does not depend on them.
                    unsafe { asm!(concat!("msr ", stringify!($name), ", {}"), in(reg) self.$name, options(nomem, nostack)) };
                )*
            }
        }
    };
}

el1_registers!(
    sctlr_el1,
    cpacr_el1,
    ttbr0_el1,
    ttbr1_el1,
    tcr_el1,
    mair_el1,
    amair_el1,
    vbar_el1,
    contextidr_el1,
    tpidr_el0,
    tpidrro_el0,
    tpidr_el1,
    sp_el0,
    sp_el1,
    elr_el1,
    spsr_el1,
    esr_el1,
    far_el1,
    afsr0_el1,
    afsr1_el1,
    par_el1,
    cntkctl_el1,
    csselr_el1,
    mdscr_el1,
    cntv_ctl_el0,
    cntv_cval_el0,
);

/// The FP/SIMD register file.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub struct FpState {
    q: [u128; 32],
    fpcr: u64,
    fpsr: u64,
}

// The kernel itself is built without FP/SIMD (softfloat), so these registers hold
// only partition state; they are switched here.
global_asm!(
    ".arch_extension fp",
    ".arch_extension simd",
    ".global fp_store",
    "fp_store:",
    "    stp q0, q1, [x0, #0]",
    "    stp q2, q3, [x0, #32]",
    "    stp q4, q5, [x0, #64]",
    "    stp q6, q7, [x0, #96]",
    "    stp q8, q9, [x0, #128]",
    "    stp q10, q11, [x0, #160]",
    "    stp q12, q13, [x0, #192]",
    "    stp q14, q15, [x0, #224]",
    "    stp q16, q17, [x0, #256]",
    "    stp q18, q19, [x0, #288]",
    "    stp q20, q21, [x0, #320]",
    "    stp q22, q23, [x0, #352]",
    "    stp q24, q25, [x0, #384]",
    "    stp q26, q27, [x0, #416]",
    "    stp q28, q29, [x0, #448]",
    "    stp q30, q31, [x0, #480]",
    "    mrs x1, fpcr",
    "    mrs x2, fpsr",
    "    add x0, x0, #512",
    "    stp x1, x2, [x0]",
    "    ret",
    ".global fp_load",
    "fp_load:",
    "    ldp q0, q1, [x0, #0]",
    "    ldp q2, q3, [x0, #32]",
    "    ldp q4, q5, [x0, #64]",
    "    ldp q6, q7, [x0, #96]",
    "    ldp q8, q9, [x0, #128]",
    "    ldp q10, q11, [x0, #160]",
    "    ldp q12, q13, [x0, #192]",
    "    ldp q14, q15, [x0, #224]",
    "    ldp q16, q17, [x0, #256]",
    "    ldp q18, q19, [x0, #288]",
    "    ldp q20, q21, [x0, #320]",
    "    ldp q22, q23, [x0, #352]",
    "    ldp q24, q25, [x0, #384]",
    "    ldp q26, q27, [x0, #416]",
    "    ldp q28, q29, [x0, #448]",
    "    ldp q30, q31, [x0, #480]",
    "    add x0, x0, #512",
    "    ldp x1, x2, [x0]",
    "    msr fpcr, x1",
    "    msr fpsr, x2",
    "    ret",
);

unsafe extern "C" {
    fn fp_store(state: *mut FpState);
    fn fp_load(state: *const FpState);
}

/// SCTLR_EL1 at partition entry: MMU and caches off, RES1 bits set.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// CPACR_EL1 at partition entry: FP/SIMD usable at EL1 and EL0.
const CPACR_EL1_FP_ON: u64 = 0b11 << 20;
/// VBAR_EL1 at partition entry: 2 KiB just below partition RAM, never mapped. Not
/// 0: a wild jump to address 0 must read as what it is (a stage-2 instruction
/// fault), not as a vector fetch.
pub const UNMAPPED_VECTORS: u64 = septum_abi::layout::RAM_BASE - 0x800;
/// PSTATE at partition entry: EL1 using SP_EL1, D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0b0101 | (0b1111 << 6);

/// HCR_EL2 for a native partition: stage 2 on (VM), set/way invalidation upgraded
/// (SWIO), physical FIQ/IRQ/SError to EL2 (FMO, IMO, AMO), broadcast TLB and
/// barrier operations (FB, BSU = inner shareable), default-cacheable stage 1 off
/// (DC), WFI and WFE trapped (TWI, TWE), SMC trapped (TSC), implementation-defined
/// registers, ACTLR and set/way cache maintenance trapped (TIDCP, TACR, TSW), EL1
/// in AArch64 (RW).
pub const HCR_NATIVE: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (0b01 << 10)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 31);

/// HCR_EL2 for a Linux partition: [`HCR_NATIVE`] without DC, TWI and TWE.
pub const HCR_LINUX: u64 = HCR_NATIVE & !((1 << 12) | (1 << 13) | (1 << 14));

/// One partition's stage-2 translation, which its vCPUs share.
#[derive(Debug)]
pub struct Space {
    /// Its stage-2 tables, and the VTTBR_EL2 value (VMID and root) that selects
    /// them.
    stage2: Stage2,
    vttbr: u64,
    /// Whether stage 2 translates it: false only for a devirtualizable
    /// partition running natively, whose vCPUs then load [`HCR_UNTRANSLATED`].
    translated: bool,
}

impl Space {
    /// The translation of `stage2` with VMID `vmid`, which no other partition
    /// uses, on from the start unless `translated` is false.
    pub fn new(stage2: Stage2, vmid: u8, translated: bool) -> Space {
        let vttbr = (u64::from(vmid) << 48) | stage2.root();
        Space {
            stage2,
            vttbr,
            translated,
        }
    }
}

/// HCR_EL2 for a devirtualizable partition running natively: no stage 2 (VM
/// and DC clear, so its own stage 1 and memory attributes apply), and no traps
/// but the hypercall (`hvc`, which always reaches EL2) and the physical
/// interrupts the kernel keeps (FMO, IMO, AMO: its timer, and the virtual
/// interrupts the GIC's list registers still deliver); EL1 in AArch64 (RW).
pub const HCR_UNTRANSLATED: u64 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 31);

/// What a vCPU starts with: where its partition's image starts, its RAM size and
/// boot argument, and its index within the partition.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// The image's entry point.
    pub entry: u64,
    /// RAM size (x0 at vCPU 0's start).
    pub ram_size: u64,
    /// Boot argument (x1 at vCPU 0's start).
    pub argument: u64,
    /// Its index within its partition.
    pub index: usize,
    /// Whether it runs Linux: entered by the arm64 boot protocol (x0 = the
    /// boot argument, the device tree's address; x1-x3 = 0), with [`HCR_LINUX`].
    pub linux: bool,
}

/// One virtual CPU.
#[derive(Debug)]
pub struct Vcpu {
    /// General registers, ELR and SPSR while the vCPU is not running.
    frame: TrapFrame,
    el1: El1State,
    fp: FpState,
    /// Its trap controls.
    hcr: u64,
    vmpidr: u64,
    /// Its GIC virtual CPU interface, and the device interrupts waiting for it.
    pub interrupts: VirtualInterface,
    /// Where its partition starts.
    start: Start,
}

impl Vcpu {
    /// A vCPU with its partition's trap controls: vCPU 0 at the partition's
    /// entry state (a Linux partition's: the boot protocol's, see [`Start`]) (see the README, "Partition entry state"):
    /// `pc` = entry point, x0 = RAM size, x1 = boot argument, x2 = generation (1),
    /// EL1h with interrupts masked, MMU off, VBAR_EL1 = [`UNMAPPED_VECTORS`]
    /// (unmapped, so an exception the partition has no handler for traps to the
    /// kernel as a stage-2 fault on the vector fetch); a later vCPU the same, off
    /// until its partition starts it.
    pub fn new(start: Start) -> Vcpu {
        let mut vcpu = Vcpu {
            frame: TrapFrame::default(),
            el1: El1State::default(),
            fp: FpState::default(),
            hcr: if start.linux { HCR_LINUX } else { HCR_NATIVE },
            vmpidr: vcpu_mpidr(start.index),
            interrupts: VirtualInterface::default(),
            start,
        };
        septum_kernel::Vcpu::restart(&mut vcpu, 1);
        vcpu
    }

    /// The entry state, at `pc` with `x0`, `x1` and `x2` as given.
    fn reset(&mut self, pc: u64, [x0, x1, x2]: [u64; 3]) {
        self.frame = TrapFrame::default();
        self.frame.x[..3].copy_from_slice(&[x0, x1, x2]);
        self.frame.elr = pc;
        self.frame.spsr = SPSR_EL1H_MASKED;
        self.el1 = El1State {
            sctlr_el1: SCTLR_EL1_RESET,
            cpacr_el1: CPACR_EL1_FP_ON,
            vbar_el1: UNMAPPED_VECTORS,
            ..El1State::default()
        };
        self.fp = FpState::default();
        self.interrupts.reset();
    }

    /// Whether it runs Linux (see [`Start::linux`]).
    pub fn is_linux(&self) -> bool {
        self.start.linux
    }

    /// The guest's own exception state (VBAR_EL1, ESR_EL1, ELR_EL1) as last stored
    /// or, for the running partition, as the CPU holds it now.
    pub fn live_el1_exception_state() -> (u64, u64, u64) {
        let (vbar, esr, elr): (u64, u64, u64);
        // SAFETY: reading EL1 system registers at EL2 has no side effects.
        unsafe {
            asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack));
            asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
            asm!("mrs {}, elr_el1", out(reg) elr, options(nomem, nostack));
        }
        (vbar, esr, elr)
    }
}

impl septum_kernel::Vcpu for Vcpu {
    type Frame = TrapFrame;
    type Space = Space;

    fn set_reply(frame: &mut TrapFrame, reply: Reply) {
        frame.x[0] = reply.status;
        frame.x[1..4].copy_from_slice(&reply.results);
    }

    fn skip_instruction(frame: &mut TrapFrame) {
        // Every instruction that traps to EL2 here (HVC, WFI/WFE) is 4 bytes long,
        // and `trap.rs` leaves ELR_EL2 on it.
        frame.elr += 4;
    }

    fn restart(&mut self, generation: u32) {
        let Start {
            entry,
            ram_size,
            argument,
            linux,
            ..
        } = self.start;
        if linux {
            self.reset(entry, [argument, 0, 0]);
        } else {
            self.reset(entry, [ram_size, argument, u64::from(generation)]);
        }
    }

    fn refill_interrupts(&mut self, fill: impl FnOnce(&mut [ListEntry]) -> bool) {
        self.interrupts.refill(fill);
    }

    fn take_undefined(&mut self) {
        // An exception from EL1 using SP_EL1 is taken at VBAR_EL1 + 0x200,
        // from EL1 using SP_EL0 at + 0x000, from EL0 (AArch64) at + 0x400; its
        // syndrome is EC 0 ("unknown reason", what an unimplemented instruction
        // gives) with IL set for a 32-bit instruction.
        const ESR_UNKNOWN_32: u64 = 1 << 25;
        let from = self.frame.spsr;
        let vector = match from & 0b1111 {
            0b0101 => 0x200,
            0b0100 => 0x000,
            _ => 0x400,
        };
        self.el1.esr_el1 = ESR_UNKNOWN_32;
        self.el1.elr_el1 = self.frame.elr;
        self.el1.spsr_el1 = from;
        self.frame.elr = self.el1.vbar_el1 + vector;
        self.frame.spsr = SPSR_EL1H_MASKED;
    }

    fn power_on(&mut self, entry: u64, context: u64) {
        self.reset(entry, [context, 0, 0]);
    }

    fn skip_stored(&mut self, length: u8) {
        self.frame.elr += u64::from(length);
    }

    fn store(&mut self, frame: &TrapFrame) {
        self.frame = *frame;
        self.el1.store();
        // SAFETY: the virtual timer is now saved in `self.el1`; disabling it on
        // the CPU lowers its interrupt line until a vCPU that uses it is loaded.
        unsafe { asm!("msr cntv_ctl_el0, xzr", options(nomem, nostack)) };
        self.interrupts.store();
        // SAFETY: `self.fp` is a valid, aligned FpState; fp_store writes exactly it.
        unsafe { fp_store(&mut self.fp) };
    }

    fn load(&mut self, space: &Space, frame: &mut TrapFrame) {
        let hcr = if space.translated {
            self.hcr
        } else {
            HCR_UNTRANSLATED
        };
        self.el1.load();
        self.interrupts.load();
        // SAFETY: `self.fp` is a valid, aligned FpState; fp_load only reads it. The
        // FP registers, EL1 registers, VTTBR_EL2, VMPIDR_EL2 and HCR_EL2 (whose
        // value keeps stage 2 and every trap of `HCR_NATIVE` on) affect only the
        // partition, not the kernel.
        unsafe {
            fp_load(&self.fp);
            asm!("msr vttbr_el2, {}", in(reg) space.vttbr, options(nomem, nostack));
            asm!("msr vmpidr_el2, {}", in(reg) self.vmpidr, options(nomem, nostack));
            asm!("msr hcr_el2, {}", in(reg) hcr, options(nomem, nostack));
            asm!("isb", options(nomem, nostack));
        }
        *frame = self.frame;
    }
}

/// Drops every TLB entry of the VMID in `vttbr`, on every core (see
/// [`Space::flush_translations`]).
fn flush_vmid(vttbr: u64) {
    // TLBI VMALLS12E1IS acts on the VMID in VTTBR_EL2, and this partition may
    // not be the one loaded on this core, so its VTTBR is installed for the
    // operation and the loaded one put back: VTTBR_EL2 must keep selecting the
    // partition live here (it applies only to EL1&0, so the kernel's own
    // accesses are unaffected meanwhile). Stage 1 and 2 together, because TLB
    // entries that combine both are tagged by virtual address, which an
    // invalidation by IPA cannot reach. The broadcast reaches every core.
    // SAFETY: only TLB entries of this partition's VMID are dropped and
    // VTTBR_EL2 is restored before any EL1 code runs; the ISBs make each
    // VTTBR_EL2 write take effect, and the memory clobber keeps the table
    // stores before the barriers.
    unsafe {
        asm!(
            "mrs {saved}, vttbr_el2",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "msr vttbr_el2, {saved}",
            "isb",
            saved = out(reg) _,
            vttbr = in(reg) vttbr,
            options(nostack),
        );
    }
}

impl septum_kernel::AddressSpace for Space {
    fn map_page(&mut self, guest: u64, frame: u64) {
        self.stage2
            .set_page(guest, Some((frame, stage2::RAM)))
            .unwrap_or_else(|e| panic!("map_page {guest:#x}: no level-3 table, or mapped: {e:?}"));
        // The entry was invalid, so no TLB holds it: making the store visible to
        // every table walker before the partition next runs is enough.
        barrier::dsb(barrier::ISHST);
    }

    fn unmap_page(&mut self, guest: u64) {
        self.stage2
            .set_page(guest, None)
            .unwrap_or_else(|e| panic!("unmap_page {guest:#x} without a level-3 table: {e:?}"));
    }

    fn flush_translations(&mut self) {
        flush_vmid(self.vttbr);
    }

    fn set_translation(&mut self, on: bool) {
        self.translated = on;
        // TLB entries made under the other regime (with or without stage 2)
        // must not serve the new one.
        flush_vmid(self.vttbr);
    }

    fn relocation_machine(&mut self, work: &mut dyn FnMut(&mut dyn Machine)) {
        let vttbr = self.vttbr;
        let mut flush = move || flush_vmid(vttbr);
        // SAFETY: relocation names only the partition's own RAM and the frames
        // the kernel lent it, RAM the kernel maps at its address and nothing
        // else uses; `zero_page` zeroes the page it is given.
        let memory = unsafe {
            MachineMemory::new(
                crate::machine::zero_page,
                crate::machine::sync_instruction_cache,
            )
        };
        work(&mut RelocatableTables::new(
            &mut self.stage2,
            stage2::RAM,
            &mut flush,
            memory,
        ));
    }
}
