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
//! | 5 | writes, then reads, an unassigned MMIO address ([`UNASSIGNED_MMIO`]) and carries on if resumed | the same |
//! | 6 | generation 1 leaves a marker in RAM outside its image, yields 3 times, then executes `udf`; later generations report whether the marker survived | the same with `ud2` |
//! | 7 | executes `udf` in every generation (a crash loop) | `ud2` |
//! | 8 | heartbeats (watchdog in slot 2) 5 times, then generation 1 spins without heartbeating; later generations heartbeat 20 times and exit | the same |
//! | 9 | drops to AArch32 at EL0 and executes `wfi` there, in a loop | (unknown mode) |
//! | 10 | waits bits 8-31 milliseconds (yielding; [`septum_sdk::pause_ms`]), then executes `udf`, in every generation (a paced crash loop: the live demo's crasher) | `ud2` |
//!
//! The mode is bits 0-7 of the argument. Modes 5 to 8 and 10 serve the service-VM
//! tests and the live demo, where a supervisor resumes or restarts it.
#![no_std]
#![no_main]

use core::arch::asm;
use septum_sdk::{Boot, RAM_BASE, println, slot};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    let outside = RAM_BASE + boot.ram_size + 0x1000;
    let mode = boot.argument & 0xff;
    println!("misbehaving on purpose: mode {mode}");
    match mode {
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
        5 => return touch_unassigned_mmio(),
        6 => return crash_after_marking(boot),
        7 => {
            println!("generation {}: crashing", boot.generation);
            undefined_instruction();
        }
        8 => return hang_once(boot),
        10 => {
            let ms = (boot.argument >> 8) & 0xff_ffff;
            septum_sdk::pause_ms(ms);
            println!("generation {}: crashing after {ms} ms", boot.generation);
            undefined_instruction();
        }
        #[cfg(target_arch = "aarch64")]
        9 => misdeeds::aarch32_wait(),
        _ => {
            println!("unknown mode");
            return 2;
        }
    }
    println!("still running after the fault: the kernel failed to stop me");
    1
}

/// A guest-physical address no partition is granted: virtio-mmio space on
/// qemu-virt, the HPET's page on a PC.
#[cfg(target_arch = "aarch64")]
const UNASSIGNED_MMIO: u64 = 0x0a00_0000;
#[cfg(target_arch = "x86_64")]
const UNASSIGNED_MMIO: u64 = 0xfed0_0000;

fn touch_unassigned_mmio() -> u64 {
    println!("writing unassigned MMIO at {UNASSIGNED_MMIO:#x}");
    // SAFETY: the access traps to the kernel; a supervisor resumes us past it, so
    // no memory is touched.
    unsafe { core::ptr::write_volatile(UNASSIGNED_MMIO as *mut u32, 0x5eb7) };
    // SAFETY: as above; a skipped load leaves the register as it was.
    let value = unsafe { core::ptr::read_volatile(UNASSIGNED_MMIO as *const u32) };
    println!("carried on after the MMIO accesses (read {value:#x})");
    0
}

/// A word in the middle of RAM: outside the image, below the stack.
fn marker(boot: &Boot) -> *mut u64 {
    (RAM_BASE + boot.ram_size / 2) as *mut u64
}

fn crash_after_marking(boot: Boot) -> u64 {
    // SAFETY: the marker lies in our own RAM, unused by the image and the stack.
    let found = unsafe { core::ptr::read_volatile(marker(&boot)) };
    println!("generation {}: marker reads {found:#x}", boot.generation);
    if boot.generation > 1 {
        if found == 0 {
            println!("restarted with scrubbed RAM");
            return 0;
        }
        println!("the marker survived the restart");
        return 1;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(marker(&boot), 0x5eb7_1a57) };
    println!("marker written");
    for _ in 0..3 {
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    println!("crashing");
    undefined_instruction();
    1
}

/// Where mode 8 expects its watchdog capability.
const WATCHDOG_SLOT: u64 = 2;

fn hang_once(boot: Boot) -> u64 {
    let beats = if boot.generation == 1 { 5 } else { 20 };
    for _ in 0..beats {
        if let Err(error) = septum_sdk::supervise::heartbeat(WATCHDOG_SLOT) {
            println!("heartbeat refused: {}", error.name());
            return 1;
        }
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    if boot.generation == 1 {
        println!("generation 1: hanging without heartbeats");
        loop {
            core::hint::spin_loop();
        }
    }
    println!("generation {}: healthy, exiting", boot.generation);
    0
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

    /// A32 code: `wfi`, then a branch back to it.
    static AARCH32_WAIT_LOOP: [u32; 2] = [0xe320_f003, 0xeaff_fffd];

    /// Lets EL0 execute `wfi` without a trap to EL1 (SCTLR_EL1.nTWI), then leaves
    /// EL1 for EL0 in AArch32 state (SPSR_EL1.M = 0b1_0000, user mode, with IRQ,
    /// FIQ and SError masked) at a loop of `wfi`. The kernel must take the first
    /// trap from AArch32 as a fault, not as a wait.
    pub fn aarch32_wait() {
        const SCTLR_NTWI: u64 = 1 << 16;
        const SPSR_AARCH32_USER_MASKED: u64 = 0b1_0000 | (0b111 << 6);
        // SAFETY: the eret leaves this program for good: the A32 loop never comes
        // back, and the kernel stops (or the service VM decides about) this
        // partition at its first trap.
        unsafe {
            asm!(
                "mrs {ntwi}, sctlr_el1",
                "orr {ntwi}, {ntwi}, {bit}",
                "msr sctlr_el1, {ntwi}",
                "msr spsr_el1, {spsr}",
                "msr elr_el1, {code}",
                "isb",
                "eret",
                ntwi = in(reg) 0u64,
                bit = in(reg) SCTLR_NTWI,
                spsr = in(reg) SPSR_AARCH32_USER_MASKED,
                code = in(reg) AARCH32_WAIT_LOOP.as_ptr(),
                options(noreturn),
            )
        }
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
