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
//!   core look again at what it runs; any other and a spurious one resume the
//!   partition with its registers unchanged, since an interrupt is no act of the
//!   partition's.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, HPFAR_EL2, Readable};
use septum_core::event::{Event, Fault, Reason, Snapshot};
use septum_core::system::CallRegisters;

use septum_kernel::{Global, Kernel, Trap, Woken};

use crate::boot::TrapFrame;
use crate::machine::Board;
use crate::vcpu::Vcpu;
use crate::vgic;
use crate::{gic, timer};

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

/// Handles a physical IRQ taken from a partition: acknowledges and ends it. Returns
/// [`Trap::Preempted`] for the timer's, [`Trap::Kicked`] for a kick, `None`
/// (resume the partition) otherwise.
fn interrupt() -> Option<Trap> {
    let intid = gic::acknowledge()?;
    if vgic::owner(intid).is_some() {
        device_interrupt(intid);
        return None;
    }
    if intid == gic::KICK {
        gic::end(intid);
        return Some(Trap::Kicked);
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
    let trap = if vector == VECTOR_IRQ {
        match interrupt() {
            Some(trap) => trap,
            // Not the partition's doing: it continues where it was interrupted.
            None => return,
        }
    } else {
        classify(vector, frame)
    };
    let cpu = crate::cpu::index();
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
