//! VM-exit handling: turns the exit reason of the current VMCS into a hypercall, a
//! wait, a preemption, a kick or a fault for the shared kernel loop, and handles the
//! exits that concern only the CPU (CPUID, a device interrupt, an interrupt window).
//! Every exit reason the kernel does not handle becomes a fault that stops the
//! partition: no exit is ever ignored or silently resumed. The trap is handed on
//! with RIP on the instruction that exited; the kernel moves it on only when the
//! call or wait was handled.
//!
//! A data access an EPT violation stopped goes to `mmio.rs` first, which completes
//! it if the kernel emulates the register there (the fast lane: the guest resumes
//! past it, with no trap for the kernel loop unless the access left the scheduler
//! work) or gives the fault the length to skip it.
//!
//! Device interrupts: an external-interrupt exit (acknowledged on exit) is ended at
//! the local APIC and made pending in the vCPU of the partition that owns its
//! vector, and only there (`irq.rs`); a vector nobody owns is only ended. Before
//! every entry the partition about to run gets its pending interrupts injected when
//! it can take them, so an interrupt of the running partition is delivered at once
//! (or at its next interrupt window), and one of another partition when that
//! partition is next entered. Interrupts never start a turn or switch partitions:
//! the schedule alone decides who runs.

use septum_core::event::{Fault, Reason, Snapshot};
use septum_core::system::CallRegisters;
use septum_kernel::{Global, Kernel, Run, Trap};

use crate::boot::{GuestRegisters, reg};
use crate::clock;
use crate::idle::Vectors;
use crate::irq::Ended;
use crate::machine::Pc;
use crate::mmio::{self, DataAccess};
use crate::shootdown;
use crate::vcpu::{self, Vcpu};
use crate::vmx::{self, field};

/// The kernel state, filled in at boot.
pub static KERNEL: Global<Kernel<Vcpu, Pc>> = Global::new();

// Basic exit reasons (Intel SDM vol. 3, appendix C).
const EXCEPTION_OR_NMI: u64 = 0;
const EXTERNAL_INTERRUPT: u64 = 1;
const TRIPLE_FAULT: u64 = 2;
const INTERRUPT_WINDOW: u64 = 7;
const CPUID: u64 = 10;
const HLT: u64 = 12;
/// Also checked by the null-call fast path in `boot.rs`.
pub const VMCALL: u64 = 18;
const IO_INSTRUCTION: u64 = 30;
const RDMSR: u64 = 31;
const WRMSR: u64 = 32;
const EPT_VIOLATION: u64 = 48;
const PREEMPTION_TIMER: u64 = 52;

const EPT_FETCH: u64 = 1 << 2;
const CPUID_FEATURES_VMX: u32 = 1 << 5;
const CPUID_FEATURES_HYPERVISOR: u32 = 1 << 31;
/// Leaf 7 ECX: protection keys (PKU), CET shadow stacks, supervisor keys (PKS).
const CPUID_7_ECX_UNSWITCHED: u32 = (1 << 3) | (1 << 7) | (1 << 31);
/// Leaf 7 EDX: user interrupts, CET indirect-branch tracking.
const CPUID_7_EDX_UNSWITCHED: u32 = (1 << 5) | (1 << 20);

/// What an exit asks for.
enum Exit {
    /// Handled here; resume the same partition.
    Resume,
    /// A device interrupt with this vector (acknowledged by the exit); resume.
    Interrupt(u8),
    /// For the shared kernel loop.
    Trap(Trap),
}

fn classify(frame: &mut GuestRegisters) -> Exit {
    let reason = vmx::read(field::EXIT_REASON);
    let qualification = vmx::read(field::EXIT_QUALIFICATION);
    let rip = vmx::read(field::GUEST_RIP);
    let snapshot = snapshot(frame, rip);
    let fault = |kind, addr, syndrome, length| {
        Exit::Trap(Trap::Fault(Fault {
            kind,
            addr,
            syndrome,
            length,
            snapshot,
        }))
    };
    // Valid for I/O and MSR exits (not for EPT violations or exceptions).
    let exit_length = || vmx::read(field::EXIT_INSTRUCTION_LENGTH) as u8;
    match reason & 0xffff {
        VMCALL => {
            let g = &frame.gpr;
            Exit::Trap(Trap::Hypercall(CallRegisters {
                number: g[reg::RAX],
                args: [
                    g[reg::RDI],
                    g[reg::RSI],
                    g[reg::RDX],
                    g[reg::R10],
                    g[reg::R8],
                    g[reg::R9],
                ],
            }))
        }
        HLT => Exit::Trap(Trap::Wait),
        PREEMPTION_TIMER => Exit::Trap(Trap::Preempted),
        CPUID => {
            emulate_cpuid(frame);
            vcpu::skip_instruction();
            Exit::Resume
        }
        // The vector is in the exit interruption information (bits 7:0), as the
        // exit acknowledged the interrupt.
        EXTERNAL_INTERRUPT => Exit::Interrupt(vmx::read(field::EXIT_INTERRUPTION_INFO) as u8),
        // The partition can take an interrupt now: `deliver` injects it.
        INTERRUPT_WINDOW => Exit::Resume,
        EPT_VIOLATION => {
            let kind = if qualification & EPT_FETCH != 0 {
                Reason::Stage2Instruction
            } else {
                Reason::Stage2Data
            };
            // A data access is decoded from the code, once the kernel is held:
            // completed in the fast lane, or given its length (`mmio.rs`).
            fault(
                kind,
                vmx::read(field::GUEST_PHYSICAL_ADDRESS),
                qualification,
                0,
            )
        }
        EXCEPTION_OR_NMI => {
            let info = vmx::read(field::EXIT_INTERRUPTION_INFO);
            let error = vmx::read(field::EXIT_INTERRUPTION_ERROR);
            fault(
                Reason::UnhandledException,
                rip,
                (info & 0xff) | (error << 32),
                0,
            )
        }
        TRIPLE_FAULT => fault(Reason::TripleFault, rip, reason, 0),
        IO_INSTRUCTION => fault(
            Reason::IoPort,
            qualification >> 16,
            qualification,
            exit_length(),
        ),
        RDMSR | WRMSR => fault(
            Reason::SystemRegister,
            rip,
            frame.gpr[reg::RCX],
            exit_length(),
        ),
        _ => fault(Reason::UnknownTrap, rip, reason, 0),
    }
}

/// The partition's registers for the service VM: RIP, RSP, RFLAGS, rax, rdi, rsi,
/// rdx, r10.
fn snapshot(frame: &GuestRegisters, rip: u64) -> Snapshot {
    let g = &frame.gpr;
    [
        rip,
        vmx::read(field::GUEST_RSP),
        vmx::read(field::GUEST_RFLAGS),
        g[reg::RAX],
        g[reg::RDI],
        g[reg::RSI],
        g[reg::RDX],
        g[reg::R10],
    ]
}

/// CPUID as the partition sees it: the processor's answer, without VMX, without
/// the features whose CR4 bits it may not set (see `vcpu.rs`), and with the
/// hypervisor-present bit.
fn emulate_cpuid(frame: &mut GuestRegisters) {
    let leaf = frame.gpr[reg::RAX] as u32;
    let subleaf = frame.gpr[reg::RCX] as u32;
    let mut result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    match (leaf, subleaf) {
        (1, _) => {
            result.ecx = (result.ecx & !CPUID_FEATURES_VMX) | CPUID_FEATURES_HYPERVISOR;
        }
        (7, 0) => {
            result.ecx &= !CPUID_7_ECX_UNSWITCHED;
            result.edx &= !CPUID_7_EDX_UNSWITCHED;
        }
        _ => {}
    }
    frame.gpr[reg::RAX] = u64::from(result.eax);
    frame.gpr[reg::RBX] = u64::from(result.ebx);
    frame.gpr[reg::RCX] = u64::from(result.ecx);
    frame.gpr[reg::RDX] = u64::from(result.edx);
}

/// Called by `vm_exit_entry` with the guest's registers; on return, `frame` holds the
/// registers of the partition to enter, whose VMCS is current.
pub extern "C" fn handle_vm_exit(frame: &mut GuestRegisters) {
    let cpu = crate::cpu::index();
    shootdown::exited(cpu);
    frame.launch = 0;
    let exit = classify(frame);
    let run = KERNEL.with(cpu, |kernel| {
        let go_on = Run::Vcpu(
            kernel
                .loaded(cpu)
                .expect("an exit comes from a loaded vCPU"),
        );
        let run = match exit {
            Exit::Resume => go_on,
            Exit::Interrupt(vector) => match kernel.machine.interrupts.end(vector) {
                Ended::Partition(line, owner) => {
                    let vcpu = kernel.first_vcpu(owner);
                    kernel.vcpus[vcpu].pend(line);
                    go_on
                }
                Ended::Console => {
                    kernel.drain_console();
                    go_on
                }
                Ended::Kick => kernel.on_trap(cpu, &Trap::Kicked, frame),
                Ended::Nobody => go_on,
            },
            Exit::Trap(Trap::Fault(mut fault)) if fault.kind == Reason::Stage2Data => {
                match mmio::data_violation(kernel, cpu, &fault, frame) {
                    DataAccess::Completed => go_on,
                    // The access is complete; the scheduler has the work it caused done.
                    DataAccess::Reschedule => kernel.on_trap(cpu, &Trap::Kicked, frame),
                    DataAccess::Fault(length) => {
                        fault.length = length;
                        kernel.on_trap(cpu, &Trap::Fault(fault), frame)
                    }
                }
            }
            Exit::Trap(trap) => kernel.on_trap(cpu, &trap, frame),
        };
        deliver(kernel, run);
        run
    });
    until_runnable(cpu, run, frame);
}

/// Asks the kernel what core `cpu`, which has waited or has nothing loaded yet,
/// runs now, and prepares the entry if it is a vCPU (see [`deliver`]).
pub fn resume(kernel: &mut Kernel<Vcpu, Pc>, cpu: usize, frame: &mut GuestRegisters) -> Run {
    let run = kernel.resume(cpu, frame);
    deliver(kernel, run);
    run
}

/// Drives core `cpu` from `run` until it has a vCPU to enter (waiting, without
/// the kernel held, while the kernel says to idle), whose pending interrupts are
/// then injected if it can take them, and whose EPT's translations this core
/// holds no stale ones of (`shootdown.rs`).
pub fn until_runnable(cpu: usize, mut run: Run, frame: &mut GuestRegisters) {
    while let Run::Idle { until_us } = run {
        idle(cpu, until_us);
        run = KERNEL.with(cpu, |kernel| resume(kernel, cpu, frame));
    }
    shootdown::entering(cpu);
}

/// When vCPU `vcpu` is about to be entered (`run` is [`Run::Vcpu`]; its VMCS is
/// current): injects its pending interrupts if it can take them now, and expires
/// its preemption timer at once if its turn is already over (see `clock.rs`).
fn deliver(kernel: &mut Kernel<Vcpu, Pc>, run: Run) {
    if let Run::Vcpu(vcpu) = run {
        kernel.vcpus[vcpu].deliver_interrupts();
        clock::expire_if_turn_over();
    }
}

/// Sleeps on core `cpu` until `until_us` or a kick, after draining the console
/// once: see [`crate::clock::Clock::idle_until`]. The kernel is not held
/// meanwhile, except to hand on an interrupt taken while asleep.
///
/// Unlike [`Global::idle`] (aarch64's), the wait is not cut into slices to
/// drain the console while bytes wait for the UART: on x86 COM1's
/// transmitter-empty interrupt, which reaches the boot core even while it
/// sleeps, drains it, so no idle core needs to wake for that.
fn idle(cpu: usize, until_us: u64) {
    let clock = KERNEL.with(cpu, |kernel| {
        kernel.drain_console();
        kernel.machine.clock
    });
    clock.idle_until(until_us, |taken| interrupts_while_idle(cpu, taken));
}

/// Hands on the interrupts core `cpu` took while idle (already ended at the
/// local APIC), as [`handle_vm_exit`] does one acknowledged on a VM exit: a
/// partition's is made pending in its owner's first vCPU, the console's drains
/// the console. None of them ends the idle wait: interrupts never start a turn.
fn interrupts_while_idle(cpu: usize, taken: Vectors) {
    KERNEL.with(cpu, |kernel| {
        for vector in taken.iter() {
            match kernel.machine.interrupts.whose(vector) {
                Ended::Partition(line, owner) => {
                    let vcpu = kernel.first_vcpu(owner);
                    kernel.vcpus[vcpu].pend(line);
                }
                Ended::Console => kernel.drain_console(),
                Ended::Kick | Ended::Nobody => {}
            }
        }
    });
}

/// Called when VMLAUNCH or VMRESUME itself failed: a kernel bug.
pub extern "C" fn vm_entry_failed() -> ! {
    panic!(
        "VM entry failed: instruction error {}",
        vmx::read(field::INSTRUCTION_ERROR)
    )
}
