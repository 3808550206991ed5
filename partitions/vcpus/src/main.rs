//! A guest with two vCPUs that both count: vCPU 0 starts vCPU 1 (PSCI `CPU_ON` on
//! aarch64, `vcpu_start` on x86_64), each prints a line after every few million
//! rounds of a busy loop, and once vCPU 1 is done vCPU 0 reports and the partition
//! exits. Given one vCPU only, it counts alone (the start is refused).
//!
//! The boot argument: bits 0-7, lines each vCPU prints (0: 4); bit 8, vCPU 1
//! faults after its lines in generation 1 (an undefined instruction, which the
//! service VM answers with a restart), and vCPU 0 then counts on until the kernel
//! suspends the partition, so that generation 2 runs to the end.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

const LINES: u64 = 0xff;
const FAULT_IN_FIRST: u64 = 1 << 8;
/// Busy-loop rounds between two lines.
const ROUNDS: u64 = 3_000_000;

/// vCPU 1's stack.
static mut VCPU_1_STACK: [u64; 1024] = [0; 1024];
/// Set by vCPU 1 when it has printed its lines.
static VCPU_1_DONE: AtomicU64 = AtomicU64::new(0);

fn main(boot: Boot) -> u64 {
    let generation = u64::from(boot.generation);
    let lines = lines(boot.argument);
    // SAFETY: vCPU 1 is started at most once per generation (a second start is
    // refused while it is on), and a restart reloads this memory, so nothing else
    // uses the stack while vCPU 1 runs on it.
    let stack = unsafe { &mut *core::ptr::addr_of_mut!(VCPU_1_STACK) };
    let context = boot.argument | (generation << 32);
    let pair = match septum_sdk::start_vcpu(1, stack, vcpu_1, context) {
        Ok(()) => {
            println!("vcpu 0 started vcpu 1 in generation {generation}");
            true
        }
        Err(error) => {
            println!("counting alone: vcpu 1 not started ({})", error.name());
            false
        }
    };
    count(0, lines, generation);
    if !pair {
        return 0;
    }
    if generation == 1 && boot.argument & FAULT_IN_FIRST != 0 {
        // Counting on until vCPU 1's fault suspends the whole partition.
        count(0, u64::MAX, generation);
    }
    while VCPU_1_DONE.load(Ordering::Acquire) == 0 {
        septum_sdk::arch::wait();
    }
    println!("both vcpus counted {lines} lines in generation {generation}");
    0
}

/// vCPU 1: its context is the boot argument with the generation in bits 32-63.
extern "C" fn vcpu_1(context: u64) -> ! {
    let generation = context >> 32;
    count(1, lines(context), generation);
    if generation == 1 && context & FAULT_IN_FIRST != 0 {
        println!("vcpu 1 faulting");
        undefined_instruction();
    }
    VCPU_1_DONE.store(1, Ordering::Release);
    loop {
        septum_sdk::arch::wait();
    }
}

fn lines(argument: u64) -> u64 {
    match argument & LINES {
        0 => 4,
        lines => lines,
    }
}

/// Prints `lines` lines as vCPU `vcpu`, one after every [`ROUNDS`] rounds.
fn count(vcpu: u64, lines: u64, generation: u64) {
    let mut value = 0u64;
    for line in 1..=lines {
        for round in 0..ROUNDS {
            value = core::hint::black_box(value.wrapping_mul(31).wrapping_add(round));
        }
        println!("vcpu {vcpu} count {line} gen {generation}");
    }
}

/// Executes an undefined instruction: the kernel suspends the partition.
fn undefined_instruction() {
    // SAFETY: the instruction traps to the kernel before it does anything.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("udf #0x5e")
    };
    // SAFETY: as above (#UD exits to the kernel).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("ud2")
    };
}
