//! VM-exit handling: turns the exit reason of the current VMCS into a hypercall, a
//! wait, a preemption or a fault for the shared kernel loop, and handles the few
//! exits that concern only the CPU (CPUID, a host interrupt). Every exit reason the
//! kernel does not handle becomes a fault that stops the partition: no exit is
//! ever ignored or silently resumed.

use septum_core::event::{Fault, FaultKind};
use septum_core::system::CallRegisters;
use septum_kernel::{Global, Kernel, Trap};
use x86_64::instructions::port::Port;

use crate::boot::{GuestRegisters, reg};
use crate::machine::Pc;
use crate::vcpu::{self, Vcpu};
use crate::vmx::{self, field};

/// The kernel state, filled in at boot.
pub static KERNEL: Global<Kernel<Vcpu, Pc>> = Global::new();

// Basic exit reasons (Intel SDM vol. 3, appendix C).
const EXCEPTION_OR_NMI: u64 = 0;
const EXTERNAL_INTERRUPT: u64 = 1;
const TRIPLE_FAULT: u64 = 2;
const CPUID: u64 = 10;
const HLT: u64 = 12;
const VMCALL: u64 = 18;
const IO_INSTRUCTION: u64 = 30;
const RDMSR: u64 = 31;
const WRMSR: u64 = 32;
const EPT_VIOLATION: u64 = 48;
const PREEMPTION_TIMER: u64 = 52;

const EPT_FETCH: u64 = 1 << 2;
const CPUID_FEATURES_VMX: u32 = 1 << 5;
const CPUID_FEATURES_HYPERVISOR: u32 = 1 << 31;

/// What an exit asks for.
enum Exit {
    /// Handled here; resume the same partition.
    Resume,
    /// For the shared kernel loop.
    Trap(Trap),
}

fn classify(frame: &mut GuestRegisters) -> Exit {
    let reason = vmx::read(field::EXIT_REASON);
    let qualification = vmx::read(field::EXIT_QUALIFICATION);
    let rip = vmx::read(field::GUEST_RIP);
    let fault = |kind, addr, syndrome| {
        Exit::Trap(Trap::Fault(Fault {
            kind,
            addr,
            syndrome,
        }))
    };
    match reason & 0xffff {
        VMCALL => {
            // Unlike `hvc`, a VMCALL exit leaves RIP on the instruction: the reply
            // goes to the instruction after it.
            vcpu::skip_instruction();
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
        EXTERNAL_INTERRUPT => {
            // The kernel unmasks no interrupt; a stray one is acknowledged (by the
            // exit) and ended here, and the partition goes on.
            // SAFETY: a non-specific EOI to both 8259 PICs only ends the interrupt
            // in service.
            unsafe {
                Port::<u8>::new(0xa0).write(0x20);
                Port::<u8>::new(0x20).write(0x20);
            }
            Exit::Resume
        }
        EPT_VIOLATION => {
            let kind = if qualification & EPT_FETCH != 0 {
                FaultKind::Stage2Instruction
            } else {
                FaultKind::Stage2Data
            };
            fault(
                kind,
                vmx::read(field::GUEST_PHYSICAL_ADDRESS),
                qualification,
            )
        }
        EXCEPTION_OR_NMI => {
            let info = vmx::read(field::EXIT_INTERRUPTION_INFO);
            let error = vmx::read(field::EXIT_INTERRUPTION_ERROR);
            fault(
                FaultKind::UnhandledException,
                rip,
                (info & 0xff) | (error << 32),
            )
        }
        TRIPLE_FAULT => fault(FaultKind::UnhandledException, rip, reason),
        IO_INSTRUCTION => fault(FaultKind::IoPort, qualification >> 16, qualification),
        RDMSR | WRMSR => fault(FaultKind::SystemRegister, rip, frame.gpr[reg::RCX]),
        _ => fault(FaultKind::UnknownTrap, rip, reason),
    }
}

/// CPUID as the partition sees it: the processor's answer, without VMX and with the
/// hypervisor-present bit.
fn emulate_cpuid(frame: &mut GuestRegisters) {
    let leaf = frame.gpr[reg::RAX] as u32;
    let subleaf = frame.gpr[reg::RCX] as u32;
    let mut result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    if leaf == 1 {
        result.ecx = (result.ecx & !CPUID_FEATURES_VMX) | CPUID_FEATURES_HYPERVISOR;
    }
    frame.gpr[reg::RAX] = u64::from(result.eax);
    frame.gpr[reg::RBX] = u64::from(result.ebx);
    frame.gpr[reg::RCX] = u64::from(result.ecx);
    frame.gpr[reg::RDX] = u64::from(result.edx);
}

/// Called by `vm_exit_entry` with the guest's registers; on return, `frame` holds the
/// registers of the partition to enter, whose VMCS is current.
pub extern "C" fn handle_vm_exit(frame: &mut GuestRegisters) {
    frame.launch = 0;
    if let Exit::Trap(trap) = classify(frame) {
        let step = KERNEL.with(BOOT_CPU, |kernel| kernel.on_trap(BOOT_CPU, trap, frame));
        KERNEL.until_runnable(BOOT_CPU, step, frame, idle);
    }
}

/// The x86 back end runs partitions on the boot core only.
pub const BOOT_CPU: usize = 0;

/// Waits until `until_us` (the kernel is not held meanwhile).
pub fn idle(until_us: u64) {
    KERNEL
        .with(BOOT_CPU, |kernel| kernel.machine.clock)
        .idle_until(until_us);
}

/// Called when VMLAUNCH or VMRESUME itself failed: a kernel bug.
pub extern "C" fn vm_entry_failed() -> ! {
    panic!(
        "VM entry failed: instruction error {}",
        vmx::read(field::INSTRUCTION_ERROR)
    )
}
