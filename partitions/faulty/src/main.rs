//! A guest that misbehaves on purpose, so tests can show the kernel catches it.
//! The boot argument picks the fault:
//!
//! | argument | what it does |
//! |---|---|
//! | 0 | writes just past the end of its RAM (stage-2 / EPT data fault) |
//! | 1 | executes an undefined instruction |
//! | 2 | accesses a system register the kernel traps |
//! | 3 | makes a secure monitor call |
//! | 4 | jumps to an address outside its RAM (stage-2 instruction fault) |
#![no_std]
#![no_main]

use core::arch::asm;
use septum_sdk::{Boot, arch::RAM_BASE, println};

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
        // SAFETY: an undefined instruction traps; the kernel stops this partition.
        1 => unsafe { asm!("udf #0x5e") },
        // SAFETY: PMU registers are trapped to EL2; the kernel stops this partition.
        2 => unsafe { asm!("mrs {}, pmcr_el0", out(reg) _) },
        // SAFETY: SMC is trapped to EL2; the kernel stops this partition.
        3 => unsafe { asm!("smc #0") },
        // SAFETY: the fetch from outside our RAM faults at stage 2 before any
        // instruction there runs; the kernel stops this partition.
        4 => unsafe { asm!("br {}", in(reg) outside) },
        _ => {
            println!("unknown mode");
            return 2;
        }
    }
    println!("still running after the fault: the kernel failed to stop me");
    1
}
