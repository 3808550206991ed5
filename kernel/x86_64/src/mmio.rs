//! Data accesses stopped by an EPT violation: the x86 fast lane (see the
//! core's `virt.rs`) and the length the service VM needs to skip one.
//!
//! VT-x reports the guest-physical address and whether the access read or
//! wrote, but neither the instruction's length (the exit's length field is not
//! valid for EPT violations) nor its register or width, so the code bytes at
//! the guest's RIP are read and decoded with [`septum_x86_decode`]. This
//! module owns that read and what follows from it:
//!
//! - outside the partition's RAM, a supported move whose direction agrees with
//!   the exit is offered to the kernel ([`Kernel::emulate_access`]); if the
//!   kernel emulates it, the loaded value is written into the guest's register
//!   as the processor would have written it, RIP moves past the instruction,
//!   and the guest resumes (or, if the access left the kernel work to do, the
//!   core takes the full path as for a kick);
//! - anything else (inside RAM, an instruction the decoder refuses, code it
//!   cannot read, a direction that disagrees, an address nobody emulates) is
//!   the fault it always was, with the decoded length for skipping it (0:
//!   cannot be skipped).
//!
//! The code is read only on these exits, only while the partition runs in
//! 64-bit mode on the boot page tables (whose identity mapping makes RIP a
//! guest-physical address), and through the core's accessor, which reads the
//! frames the partition runs on now (a substitute after a restart, not the
//! original a receiver may still hold and rewrite).

use septum_abi::layout::PAGE_SIZE;
use septum_core::event::Fault;
use septum_core::vgic::Access;
use septum_kernel::Kernel;
use septum_x86_decode::{Move, Operation, Register, Source};

use crate::boot::{GuestRegisters, reg};
use crate::machine::Pc;
use crate::vcpu::{self, Vcpu};
use crate::vmx::{self, field};

/// EPT violation qualification: the access was a data read, a data write.
const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
/// Guest CS access rights: a 64-bit code segment.
const CS_LONG_MODE: u64 = 1 << 13;
/// Guest IA32_EFER: long mode is active.
const EFER_LMA: u64 = 1 << 10;

/// Where each register of the processor's numbering (rax, rcx, rdx, rbx, rsp,
/// rbp, rsi, rdi, r8-r15) is saved on an exit: its index in
/// [`GuestRegisters::gpr`], or `None` for rsp, which the VMCS holds.
const SAVED_AT: [Option<usize>; 16] = [
    Some(reg::RAX),
    Some(reg::RCX),
    Some(reg::RDX),
    Some(reg::RBX),
    None,
    Some(reg::RBP),
    Some(reg::RSI),
    Some(reg::RDI),
    Some(reg::R8),
    Some(reg::R9),
    Some(reg::R10),
    Some(reg::R11),
    Some(reg::R12),
    Some(reg::R13),
    Some(reg::R14),
    Some(reg::R15),
];

/// What became of a data access an EPT violation stopped.
pub enum DataAccess {
    /// Emulated and complete: resume the guest past it.
    Completed,
    /// Emulated and complete, but the kernel has work to do for it: take the
    /// full path as for a kick.
    Reschedule,
    /// Not emulated: the fault it is, with the length to skip it (0: cannot).
    Fault(u8),
}

/// The data access `fault` (an EPT violation, with the guest's RIP in its
/// snapshot) of the vCPU live on core `cpu`, whose registers are `frame`:
/// completed in the fast lane if it is a supported move outside the
/// partition's RAM that the kernel emulates, else the fault to report (see the
/// module docs).
pub fn data_violation(
    kernel: &mut Kernel<Vcpu, Pc>,
    cpu: usize,
    fault: &Fault,
    frame: &mut GuestRegisters,
) -> DataAccess {
    let rip = fault.snapshot[0];
    let Some(decoded) = decode_at(kernel, cpu, rip) else {
        return DataAccess::Fault(0);
    };
    let not_emulated = DataAccess::Fault(decoded.length as u8);
    if in_ram(kernel, cpu, fault.addr) {
        return not_emulated;
    }
    let writes = fault.syndrome & EPT_WRITE != 0;
    let access = match decoded.operation {
        Operation::Load(_) if fault.syndrome & EPT_READ != 0 && !writes => Access::Read,
        Operation::Store(Source::Register(register)) if writes => {
            Access::Write(register.read(read_register(frame, register), decoded.width))
        }
        Operation::Store(Source::Immediate(value)) if writes => Access::Write(value),
        // The code at RIP is not what stopped (another vCPU rewrote it).
        _ => return not_emulated,
    };
    let Some(completed) = kernel.emulate_access(cpu, fault.addr, decoded.width, access) else {
        return not_emulated;
    };
    if let Operation::Load(load) = decoded.operation {
        let register = load.destination;
        let full = read_register(frame, register);
        write_register(
            frame,
            register,
            load.write(decoded.width, full, completed.value),
        );
    }
    vmx::write(field::GUEST_RIP, rip + decoded.length as u64);
    if completed.reschedule {
        DataAccess::Reschedule
    } else {
        DataAccess::Completed
    }
}

/// The move at `rip` of the vCPU live on core `cpu`, if it is one the decoder
/// knows and the code can be read (see the module docs).
fn decode_at(kernel: &mut Kernel<Vcpu, Pc>, cpu: usize, rip: u64) -> Option<Move> {
    const LONGEST: u64 = 15;
    let vcpu = kernel.loaded(cpu)?;
    let partition = kernel.system.vcpus()[vcpu].partition();
    let long_mode = vmx::read(field::GUEST_EFER) & EFER_LMA != 0
        && vmx::read(field::GUEST_CS_ACCESS) & CS_LONG_MODE != 0;
    if !long_mode || vmx::read(field::GUEST_CR3) != vcpu::BOOT_TABLES {
        return None;
    }
    let mut bytes = [0u8; LONGEST as usize];
    // The instruction may end before a page the partition does not have: then
    // only the bytes up to that page are read.
    let to_page_end = (rip | (PAGE_SIZE - 1)) + 1 - rip;
    for available in [LONGEST, to_page_end.min(LONGEST)] {
        let code = &mut bytes[..available as usize];
        if kernel.read_guest(partition, rip, code).is_ok() {
            return septum_x86_decode::decode(code);
        }
    }
    None
}

/// Whether guest-physical `address` is in the RAM of the partition of the
/// vCPU live on core `cpu`.
fn in_ram(kernel: &Kernel<Vcpu, Pc>, cpu: usize, address: u64) -> bool {
    kernel.loaded(cpu).is_some_and(|vcpu| {
        let partition = kernel.system.vcpus()[vcpu].partition();
        let ram = kernel.system.partitions()[partition].guest_ram();
        (ram.start..ram.end).contains(&address)
    })
}

/// The 64-bit register that holds `register`, as the guest left it.
fn read_register(frame: &GuestRegisters, register: Register) -> u64 {
    match SAVED_AT[register.number()] {
        Some(index) => frame.gpr[index],
        None => vmx::read(field::GUEST_RSP),
    }
}

/// Sets the 64-bit register that holds `register` to `value` for the guest's
/// next entry.
fn write_register(frame: &mut GuestRegisters, register: Register, value: u64) {
    match SAVED_AT[register.number()] {
        Some(index) => frame.gpr[index] = value,
        None => vmx::write(field::GUEST_RSP, value),
    }
}
