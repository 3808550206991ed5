//! Trap classification: turns the exception syndrome of a trap from a partition into
//! a hypercall (Septum's, or an SMCCC call such as PSCI), a wait, or a fault, and a
//! physical interrupt into a preemption or a kick, and hands it to the shared
//! kernel loop.
//!
//! Invariants:
//! - the trap is handed on with ELR_EL2 on the instruction that trapped (for `hvc`,
//!   whose exception returns past it, moved back by its 4 bytes): the kernel moves
//!   it on only when the call or wait was handled;
//! - every exception class the kernel does not expect, and every FIQ, SError or
//!   trap from AArch32 state (whichever vector it came through), becomes a fault
//!   that stops the partition: no exception is ever ignored or silently resumed;
//! - an IRQ is acknowledged and ended before the partition runs again. The timer's
//!   ([`timer::INTID`]) preempts the partition; a kick ([`gic::KICK`]) makes the
//!   core look again at what it runs; the virtual timer's is masked at its source
//!   and becomes the loaded vCPU's virtual interrupt; the maintenance interrupt
//!   refills the loaded vCPU's list registers; any other and a spurious one
//!   resume the partition with its registers unchanged, since an interrupt is no
//!   act of the partition's;
//! - the fast lane ([`fast_lane`]) completes, for a Linux partition, a load or
//!   store at an emulated device register (the syndrome names the register and
//!   width: ESR_EL2.ISV), a write of the SGI register, and an access to a debug
//!   or performance-monitor register (read as zero, writes ignored), and moves
//!   ELR_EL2 past the instruction; whatever it does not complete is classified
//!   and handed on as before.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, HPFAR_EL2, Readable};
use septum_abi::virt::VTIMER_INTID;
use septum_core::event::{Event, Fault, Reason, Snapshot};
use septum_core::system::CallRegisters;

use septum_kernel::{Global, Kernel, Trap, Woken};

use crate::boot::TrapFrame;
use crate::machine::Board;
use crate::vcpu::Vcpu;
use crate::vgic;
use crate::{gic, timer};
use septum_core::vgic::Access;

/// The kernel state, filled in at boot.
pub static KERNEL: Global<Kernel<Vcpu, Board>> = Global::new();

// Exception classes (ESR_ELx.EC) the kernel handles.
const EC_WFX: u64 = 0x01;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;
const EC_IABT_LOWER: u64 = 0x20;
const EC_DABT_LOWER: u64 = 0x24;
/// ESR_ELx.IL: the trapped instruction was 32 bits long.
const ESR_IL: u64 = 1 << 25;
// Data abort syndrome (ISS) fields.
/// The syndrome describes the access (ISV): width, register, direction.
const DABT_ISV: u64 = 1 << 24;
const DABT_SAS_SHIFT: u64 = 22;
/// The load sign-extends (SSE).
const DABT_SSE: u64 = 1 << 21;
const DABT_SRT_SHIFT: u64 = 16;
/// The register is 64 bits wide (SF), else 32.
const DABT_SF: u64 = 1 << 15;
/// The fault was on a stage-1 table walk (S1PTW), not the access itself.
const DABT_S1PTW: u64 = 1 << 7;
/// A write (WnR).
const DABT_WNR: u64 = 1 << 6;
/// The zero register's number in a syndrome.
const XZR: usize = 31;
/// SPSR_EL2.M[4]: the trap came from AArch32 state.
const SPSR_AARCH32: u64 = 1 << 4;
/// Bit 31 of an SMCCC function number (a "fast call"): Septum's call numbers never
/// have it.
const SMCCC_FAST_CALL: u64 = 1 << 31;
/// Bytes of an A64 instruction (`hvc`).
const INSTRUCTION: u64 = 4;

// Which vector a trap arrived through (set by the vector table in `boot.rs`).
const VECTOR_SYNC: u64 = 0;
const VECTOR_IRQ: u64 = 1;

/// Size of an EL1 vector table, to recognise a fetch from an unmapped one.
const VECTOR_TABLE_SIZE: u64 = 0x800;

/// Classifies the exception that arrived through `vector` (any but the IRQ vector)
/// with the registers in `frame` (moving ELR_EL2 back onto an `hvc`).
pub fn classify(vector: u64, frame: &mut TrapFrame) -> Trap {
    let esr = ESR_EL2.get();
    // The syndrome register is read once, above.
    let class = ESR_EL2::EC.read(esr);
    // FIQ and SError from a partition, and anything from AArch32, are errors: the
    // kernel uses no FIQs, and partitions may not run AArch32. With EL1 in AArch64
    // (HCR_EL2.RW), a trap from AArch32 at EL0 arrives through the AArch64 vectors
    // like any other: only the saved PSTATE (SPSR_EL2.M[4]) tells it apart, and an
    // A32 `wfi` would otherwise pass for a wait.
    let aarch64_sync = vector == VECTOR_SYNC && frame.spsr & SPSR_AARCH32 == 0;
    if aarch64_sync && class == EC_HVC64 && esr & 0xffff == 0 {
        return call(frame);
    }
    if aarch64_sync && class == EC_WFX {
        return Trap::Wait;
    }
    // A trapped A64 instruction is 4 bytes long (ESR_EL2.IL set), and the trap's
    // return address is that instruction, so a skip moves past exactly it.
    let length = if esr & ESR_IL != 0 { 4 } else { 0 };
    let fault = |kind, addr| {
        Trap::Fault(Fault {
            kind,
            addr,
            syndrome: esr,
            length,
            snapshot: snapshot(frame),
        })
    };
    if !aarch64_sync {
        return fault(Reason::UnknownTrap, frame.elr);
    }
    match class {
        EC_SMC64 => fault(Reason::MonitorCall, frame.elr),
        EC_SYSREG => fault(Reason::SystemRegister, frame.elr),
        EC_DABT_LOWER => fault(Reason::Stage2Data, faulting_ipa()),
        EC_IABT_LOWER => {
            let (vbar, guest_esr, guest_elr) = Vcpu::live_el1_exception_state();
            let fetch = FAR_EL2.get();
            if fetch.wrapping_sub(vbar) < VECTOR_TABLE_SIZE {
                // The partition took an exception at EL1 and its vector table is not
                // mapped: it has no handler. Report the exception it took.
                let mut fault = Fault::new(Reason::UnhandledException, guest_elr, guest_esr);
                fault.snapshot = snapshot(frame);
                fault.snapshot[0] = guest_elr;
                Trap::Fault(fault)
            } else {
                fault(Reason::Stage2Instruction, faulting_ipa())
            }
        }
        _ => fault(Reason::UnknownTrap, frame.elr),
    }
}

/// An `hvc #0`: a Septum call, or an SMCCC one (bit 31 of the function number
/// set). ELR_EL2, past the `hvc`, is moved back onto it.
fn call(frame: &mut TrapFrame) -> Trap {
    frame.elr -= INSTRUCTION;
    let x = &frame.x;
    let call = CallRegisters {
        number: x[0],
        args: [x[1], x[2], x[3], x[4], x[5], x[6]],
    };
    if call.number & SMCCC_FAST_CALL != 0 {
        Trap::Smccc(call)
    } else {
        Trap::Hypercall(call)
    }
}

/// The partition's registers for the service VM: PC, SP_EL1, PSTATE, x0-x4.
fn snapshot(frame: &TrapFrame) -> Snapshot {
    let sp: u64;
    // SAFETY: reading SP_EL1 at EL2 has no side effects; it holds the trapped
    // partition's stack pointer (partitions run at EL1h).
    unsafe { core::arch::asm!("mrs {}, sp_el1", out(reg) sp, options(nomem, nostack)) };
    let x = &frame.x;
    [frame.elr, sp, frame.spsr, x[0], x[1], x[2], x[3], x[4]]
}

/// The guest-physical address of a stage-2 abort: the page from HPFAR_EL2, the
/// offset within it from FAR_EL2.
fn faulting_ipa() -> u64 {
    let page = (HPFAR_EL2.get() & 0x0000_0fff_ffff_fff0) << 8;
    page | (FAR_EL2.get() & 0xfff)
}

/// Handles a physical IRQ taken from a partition on core `cpu`: acknowledges
/// and ends it. Returns [`Trap::Preempted`] for the timer's, [`Trap::Kicked`] for
/// a kick, `None` (resume the partition) otherwise.
fn interrupt(cpu: usize) -> Option<Trap> {
    let intid = gic::acknowledge()?;
    if vgic::owner(intid).is_some() {
        device_interrupt(intid);
        return None;
    }
    if intid == gic::KICK {
        gic::end(intid);
        return Some(Trap::Kicked);
    }
    if intid == VTIMER_INTID {
        // The loaded vCPU's virtual timer: its line is lowered at the source
        // (the guest unmasks it when it sets its next deadline), and the vCPU
        // takes it as a virtual interrupt.
        mask_virtual_timer();
        gic::end(intid);
        KERNEL.with(cpu, |kernel| kernel.raise_private(cpu, intid));
        return None;
    }
    if intid == vgic::MAINTENANCE {
        gic::end(intid);
        KERNEL.with(cpu, |kernel| kernel.lists_have_room(cpu));
        return None;
    }
    let expired = intid == timer::INTID;
    if expired {
        // Lower the timer's line before ending its interrupt, so it does not pend
        // again; the kernel sets the next deadline before the next entry.
        timer::disable();
        barrier::isb(barrier::SY);
    }
    gic::end(intid);
    expired.then_some(Trap::Preempted)
}

/// Entry from the vector table for every trap from a partition.
pub extern "C" fn handle_lower_el(vector: u64, frame: &mut TrapFrame) {
    let cpu = crate::cpu::index();
    let trap = if vector == VECTOR_IRQ {
        match interrupt(cpu) {
            Some(trap) => trap,
            // Not the partition's doing: it continues where it was interrupted.
            None => return,
        }
    } else {
        let aarch64_sync = vector == VECTOR_SYNC && frame.spsr & SPSR_AARCH32 == 0;
        match aarch64_sync.then(|| fast_lane(cpu, frame)) {
            Some(FastLane::Done) => return,
            // The access is complete; the scheduler has the work it caused done.
            Some(FastLane::Reschedule) => Trap::Kicked,
            Some(FastLane::NotHandled) | None => classify(vector, frame),
        }
    };
    let run = KERNEL.with(cpu, |kernel| kernel.on_trap(cpu, &trap, frame));
    KERNEL.until_runnable(cpu, run, frame, idle);
}

/// Handles interrupt `intid`, acknowledged, that is not the kernel's own (not
/// the timer's, not a kick). A granted device's interrupt is for the owner's
/// vCPU 0, which deactivates it (module docs of vgic.rs): injected if that vCPU
/// runs here and can take it, else held for it; the vCPU that was interrupted
/// continues. Any other is ended.
fn device_interrupt(intid: u32) {
    let Some(owner) = vgic::owner(intid) else {
        gic::end(intid);
        return;
    };
    gic::drop_priority(intid);
    let cpu = crate::cpu::index();
    KERNEL.with(cpu, |kernel| {
        let vcpu = kernel.first_vcpu(owner);
        if kernel.loaded(cpu) != Some(vcpu) || !vgic::inject(intid) {
            kernel.vcpus[vcpu].interrupts.hold(intid);
        }
    });
}

/// Sets the virtual timer's mask bit (CNTV_CTL_EL0.IMASK), lowering its
/// interrupt line before the interrupt is ended.
fn mask_virtual_timer() {
    const IMASK: u64 = 1 << 1;
    let control: u64;
    // SAFETY: CNTV_CTL_EL0 is the loaded vCPU's virtual timer control; masking
    // it changes only when that vCPU's timer interrupt is signalled.
    unsafe {
        asm!("mrs {}, cntv_ctl_el0", out(reg) control, options(nomem, nostack));
        asm!("msr cntv_ctl_el0, {}", "isb", in(reg) control | IMASK, options(nomem, nostack));
    }
}

/// What the fast lane did with a trap.
enum FastLane {
    /// Not its trap: the full path handles it.
    NotHandled,
    /// Completed: the registers in the frame updated and ELR_EL2 past the
    /// instruction.
    Done,
    /// Completed, and the partition owes kernel work now: the full path runs
    /// the scheduler (as for a kick) before the vCPU continues.
    Reschedule,
}

/// The fast lane for a synchronous trap from AArch64 on core `cpu` (see the
/// module docs).
fn fast_lane(cpu: usize, frame: &mut TrapFrame) -> FastLane {
    let esr = ESR_EL2.get();
    let done = match ESR_EL2::EC.read(esr) {
        EC_DABT_LOWER if esr & DABT_ISV != 0 && esr & DABT_S1PTW == 0 => {
            emulate_data_access(cpu, esr, frame)
        }
        EC_SYSREG if emulate_system_register(cpu, esr, frame) => FastLane::Done,
        _ => FastLane::NotHandled,
    };
    if !matches!(done, FastLane::NotHandled) {
        frame.elr += INSTRUCTION;
    }
    done
}

/// A load or store described by syndrome `esr` at an emulated device register.
fn emulate_data_access(cpu: usize, esr: u64, frame: &mut TrapFrame) -> FastLane {
    let width = 1u8 << ((esr >> DABT_SAS_SHIFT) & 0b11);
    let register = ((esr >> DABT_SRT_SHIFT) & 0x1f) as usize;
    let write = esr & DABT_WNR != 0;
    let access = match (write, register) {
        (false, _) => Access::Read,
        (true, XZR) => Access::Write(0),
        (true, register) => Access::Write(frame.x[register]),
    };
    let address = faulting_ipa();
    let Some(completed) = KERNEL.with(cpu, |kernel| {
        kernel.emulate_access(cpu, address, width, access)
    }) else {
        return FastLane::NotHandled;
    };
    if !write && register != XZR {
        let mut value = completed.value;
        if esr & DABT_SSE != 0 {
            let unused = 64 - 8 * u32::from(width);
            value = (((value << unused) as i64) >> unused) as u64;
        }
        if esr & DABT_SF == 0 {
            value &= 0xffff_ffff;
        }
        frame.x[register] = value;
    }
    if completed.reschedule {
        FastLane::Reschedule
    } else {
        FastLane::Done
    }
}

/// A trapped system register access (syndrome `esr`) by a Linux partition: a
/// write of ICC_SGI1R_EL1 sends its SGI; the other SGI registers (group 0, and
/// the alias for the other security state) are ignored; CPACR_EL1 (trapped by
/// CPTR_EL2.TCPAC) reads as it is and takes only its FP/SIMD enable, so the
/// guest can turn FP on for itself but nothing the kernel keeps off; debug
/// and trace registers (op0 = 2) and the performance monitors read as zero and
/// ignore writes, since a partition has neither. Anything else is not completed
/// here.
fn emulate_system_register(cpu: usize, esr: u64, frame: &mut TrapFrame) -> bool {
    let field = |shift: u64, bits: u64| (esr >> shift) & ((1 << bits) - 1);
    let (op0, op2, op1, crn, crm) = (
        field(20, 2),
        field(17, 3),
        field(14, 3),
        field(10, 4),
        field(1, 4),
    );
    let register = field(5, 5) as usize;
    let read = esr & 1 != 0;
    let value = if register == XZR {
        0
    } else {
        frame.x[register]
    };
    let sgi_register = op0 == 3 && op1 == 0 && crn == 12 && crm == 11 && (5..=7).contains(&op2);
    let monitors = op0 == 3 && ((crn == 9 && crm >= 12) || (crn == 14 && crm >= 8));
    let cpacr = op0 == 3 && op1 == 0 && crn == 1 && crm == 0 && op2 == 2;
    KERNEL.with(cpu, |kernel| {
        let linux = kernel
            .loaded(cpu)
            .is_some_and(|vcpu| kernel.vcpus[vcpu].is_linux());
        if !linux {
            return false;
        }
        if sgi_register && !read {
            return op2 != 5 || kernel.send_sgi(cpu, value);
        }
        if cpacr {
            access_cpacr(read, register, value, frame);
            return true;
        }
        if op0 == 2 || monitors {
            if read && register != XZR {
                frame.x[register] = 0;
            }
            return true;
        }
        false
    })
}

/// A Linux partition's access to its CPACR_EL1 (see
/// [`emulate_system_register`]): a read into register `register`, or a write of
/// `value`'s FP/SIMD enable field.
fn access_cpacr(read: bool, register: usize, value: u64, frame: &mut TrapFrame) {
    /// CPACR_EL1.FPEN: FP/SIMD at EL1 and EL0.
    const FPEN: u64 = 0b11 << 20;
    if read {
        let current: u64;
        // SAFETY: reading the loaded vCPU's CPACR_EL1 has no side effects.
        unsafe { asm!("mrs {}, cpacr_el1", out(reg) current, options(nomem, nostack)) };
        if register != XZR {
            frame.x[register] = current;
        }
    } else {
        // SAFETY: only the FP/SIMD enable is taken; FP registers are the vCPU's
        // own (switched with it), and everything else stays off.
        unsafe { asm!("msr cpacr_el1, {}", in(reg) value & FPEN, options(nomem, nostack)) };
    }
}

/// Sleeps on this core until `until_us` or a kick (the kernel is not held
/// meanwhile): see [`crate::timer::Timer::idle_until`].
pub fn idle(until_us: u64) -> Woken {
    let cpu = crate::cpu::index();
    KERNEL
        .with(cpu, |kernel| kernel.machine.timer)
        .idle_until(until_us, device_interrupt)
}

/// Entry from the vector table for an exception taken at EL2 (on this core's fault
/// stack; `sp` is the stack pointer when it was taken): a kernel bug. An access
/// to a stack's guard page is reported as that stack's overflow.
pub extern "C" fn kernel_fault(vector: u64, esr: u64, elr: u64, far: u64, sp: u64) -> ! {
    if let Some((cpu, stack)) = crate::cpu::guarded_stack(far) {
        crate::report_on_stop(Event::KernelStackOverflow {
            cpu,
            stack,
            guard: far & !(crate::cpu::GUARD_BYTES - 1),
            pc: elr,
        });
        panic!(
            "kernel stack overflow: core {cpu}'s {} stack ran into its guard page (sp {sp:#x})",
            stack.name()
        )
    }
    panic!("exception at EL2: vector={vector} esr={esr:#x} elr={elr:#x} far={far:#x} sp={sp:#x}")
}
