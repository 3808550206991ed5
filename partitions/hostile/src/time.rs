//! Attacks on time: each makes the kernel work as hard as one partition can, so a
//! meter beside it (`partitions/timeshare`) can show that none of that work comes
//! out of another partition's window. The boot argument is the attack (below)
//! plus 1000 times its length.
//!
//! | argument % 1000 | attack | length (argument / 1000) |
//! |---|---|---|
//! | 100 | **console flood**: 256-byte console writes of whole lines, back to back | millions of counter ticks from its start |
//! | 101 | **trap storm**: stores to unassigned MMIO, back to back, each resumed past the store by the service VM | the same |
//! | 102 | **crash storm**: crashes at once in every generation, so the service VM restarts it (its whole RAM reloaded) again and again | generations |

use septum_sdk::{Boot, arch, println, slot};

/// The first time attack's argument.
pub const FIRST: u64 = 100;
/// How many there are.
pub const COUNT: u64 = 3;

/// A guest-physical address no partition is granted.
#[cfg(target_arch = "aarch64")]
const UNASSIGNED_MMIO: u64 = 0x0a00_0000;
#[cfg(target_arch = "x86_64")]
const UNASSIGNED_MMIO: u64 = 0xfed0_0000;

/// Runs the attack `boot.argument` names. Returns the exit code.
pub fn attack(boot: &Boot) -> u64 {
    let length = boot.argument / 1000;
    match boot.argument % 1000 {
        100 => flood(length),
        101 => trap_storm(length),
        _ => crash_storm(boot.generation, length),
    }
}

/// Whether `millions` of million counter ticks have passed since `start`.
fn over(start: u64, millions: u64) -> bool {
    arch::counter() - start >= millions * 1_000_000
}

fn flood(millions: u64) -> u64 {
    let mut line = [b'#'; 256];
    for end in [127, 255] {
        line[end] = b'\n';
    }
    println!("flooding the console");
    let (start, mut writes) = (arch::counter(), 0u64);
    while !over(start, millions) {
        let _ = septum_sdk::console_write(slot::CONSOLE, &line);
        writes += 1;
    }
    println!("flood over: {writes} writes of 256 bytes");
    0
}

fn trap_storm(millions: u64) -> u64 {
    println!("storming the kernel with MMIO traps");
    let (start, mut traps) = (arch::counter(), 0u64);
    while !over(start, millions) {
        // SAFETY: the store traps; the service VM resumes this partition past it.
        unsafe { core::ptr::write_volatile(UNASSIGNED_MMIO as *mut u32, 0x5eb7) };
        traps += 1;
    }
    println!("trap storm over: {traps} traps");
    0
}

fn crash_storm(generation: u32, generations: u64) -> u64 {
    if u64::from(generation) < generations {
        crash();
    }
    println!("crash storm over at generation {generation}");
    0
}

#[cfg(target_arch = "aarch64")]
fn crash() {
    // SAFETY: an undefined instruction traps; the service VM restarts us.
    unsafe { core::arch::asm!("udf #0x5e") }
}

#[cfg(target_arch = "x86_64")]
fn crash() {
    // SAFETY: `ud2` exits to the kernel; the service VM restarts us.
    unsafe { core::arch::asm!("ud2") }
}
