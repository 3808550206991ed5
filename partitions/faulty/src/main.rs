//! A guest that misbehaves on purpose, so tests can show the kernel catches it.
//! The boot argument picks the fault:
//!
//! | argument | aarch64 | x86_64 |
//! |---|---|---|
//! | 0 | writes just past the end of its RAM (stage-2 data fault) | the same (EPT violation) |
//! | 1 | `udf`: undefined instruction | `ud2`: invalid opcode |
//! | 2 | reads PMCR_EL0, a trapped system register | reads IA32_APIC_BASE, a trapped MSR |
//! | 3 | `smc`: a call to the secure monitor | writes I/O port 0xCF9 (reset control) |
//! | 4 | jumps outside its RAM (stage-2 instruction fault) | the same (EPT violation) |
#![no_std]
#![no_main]

use core::arch::asm;
use septum_sdk::{Boot, RAM_BASE, println};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    let outside = RAM_BASE + boot.ram_size + 0x1000;
    println!("misbehaving on purpose: mode {}", boot.argument);
    match boot.argument {
        0 => {
            println!("writing {outside:#x}, outside my RAM");
            // SAFETY: this write is meant to fault; the kernel stops us before it
            // can complete, so no memory of ours is affected.
            unsafe { core::ptr::write_volatile(outside as *mut u64, 0x5eb7_0000_dead_beef) };
        }
        1 => undefined_instruction(),
        2 => privileged_register(),
        3 => firmware_call(),
        // SAFETY: the fetch from outside our RAM faults before any instruction there
        // runs; the kernel stops this partition.
        4 => unsafe { jump(outside) },
        _ => {
            println!("unknown mode");
            return 2;
        }
    }
    println!("still running after the fault: the kernel failed to stop me");
    1
}

#[cfg(target_arch = "aarch64")]
mod misdeeds {
    use super::asm;

    pub fn undefined_instruction() {
        // SAFETY: an undefined instruction traps; the kernel stops this partition.
        unsafe { asm!("udf #0x5e") }
    }

    pub fn privileged_register() {
        // SAFETY: PMU registers are trapped to EL2; the kernel stops this partition.
        unsafe { asm!("mrs {}, pmcr_el0", out(reg) _) }
    }

    pub fn firmware_call() {
        // SAFETY: SMC is trapped to EL2; the kernel stops this partition.
        unsafe { asm!("smc #0") }
    }

    /// # Safety
    /// Transfers control to `target`; only for targets that fault.
    pub unsafe fn jump(target: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { asm!("br {}", in(reg) target) }
    }
}

#[cfg(target_arch = "x86_64")]
mod misdeeds {
    use super::asm;

    pub fn undefined_instruction() {
        // SAFETY: `ud2` raises #UD, which exits to the kernel; it stops us.
        unsafe { asm!("ud2") }
    }

    pub fn privileged_register() {
        // SAFETY: every MSR access exits to the kernel, which stops this partition.
        unsafe { asm!("rdmsr", in("ecx") 0x1b_u32, out("eax") _, out("edx") _) }
    }

    pub fn firmware_call() {
        // SAFETY: every port access exits to the kernel, which stops this partition.
        unsafe { asm!("out dx, al", in("dx") 0xcf9_u16, in("al") 0x06_u8) }
    }

    /// # Safety
    /// Transfers control to `target`; only for targets that fault.
    pub unsafe fn jump(target: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { asm!("jmp {}", in(reg) target) }
    }
}

use misdeeds::{firmware_call, jump, privileged_register, undefined_instruction};
