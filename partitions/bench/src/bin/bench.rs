//! Measures hypercall round trips in guest-virtual time and prints them:
//! - `null-hypercall`: the null call, which the kernel answers on its fast path;
//! - `general-hypercall`: a zero-length `console_write`, which takes the general
//!   path (full register save, decode and dispatch in the portable core);
//! - `plain-access`: a store to the partition's own RAM, which does not trap: the
//!   native baseline, since without a trap the guest runs exactly the instructions
//!   it would run on bare metal;
//! - `policy-trap`: the same store to an unassigned MMIO address, which traps: the
//!   kernel suspends the partition and switches to the service VM, which resumes
//!   it past the store. This is the guest -> service VM -> guest round trip. It
//!   needs a service VM that holds a control capability for this partition.
//!
//! The boot argument, if not 0, is how long to wait before measuring: time for
//! the other partitions of a larger system to run to their end first, so that
//! they do not share the measured time, and for the console to have sent their
//! lines (under Bochs COM1 takes its time, and the kernel drains it on every
//! settle). It is milliseconds where the counter's frequency is known
//! (aarch64), else tens of millions of counter ticks (x86's TSC).
//!
//! On aarch64, run under QEMU with `-icount shift=0`, where one instruction takes
//! one nanosecond of virtual time, so the figures are deterministic. On x86_64 the
//! counter is the TSC, reported in ticks (under Bochs with `clock: sync=none` it
//! advances with emulated instructions, so it is deterministic too).
#![no_std]
#![no_main]

use partition_bench::report;
use septum_sdk::{Boot, Call, arch, slot};

septum_sdk::entry!(main);

/// Calls per measurement.
const CALLS: u64 = 20_000;

fn main(boot: Boot) -> u64 {
    settle(boot.argument);
    measure("null-hypercall", CALLS, || {
        let _ = septum_sdk::null();
    });
    let empty = [0u8; 1];
    let console_write_nothing = [slot::CONSOLE, empty.as_ptr() as u64, 0, 0, 0, 0];
    measure("general-hypercall", CALLS, || {
        let _ = septum_sdk::call(Call::ConsoleWrite as u64, console_write_nothing);
    });
    let mut word = 0u32;
    let own = &raw mut word;
    measure("plain-access", TRAPS, || {
        // SAFETY: a store to a local of ours.
        unsafe { core::ptr::write_volatile(own, 1) };
    });
    measure("policy-trap", TRAPS, || {
        // SAFETY: the store traps; the service VM resumes us past it, so no memory
        // is written.
        unsafe { core::ptr::write_volatile(UNASSIGNED_MMIO as *mut u32, 1) };
    });
    0
}

/// Spins for `amount` milliseconds of the counter, or tens of millions of its
/// ticks where its frequency is unknown.
fn settle(amount: u64) {
    let ticks = match arch::counter_frequency() {
        Some(hz) => amount * hz / 1000,
        None => amount * 10_000_000,
    };
    let until = arch::counter() + ticks;
    while arch::counter() < until {
        core::hint::spin_loop();
    }
}

/// Round trips through the service VM per measurement (each costs thousands of
/// instructions).
const TRAPS: u64 = 2_000;

/// A guest-physical address no partition is granted.
#[cfg(target_arch = "aarch64")]
const UNASSIGNED_MMIO: u64 = 0x0a00_0000;
#[cfg(target_arch = "x86_64")]
const UNASSIGNED_MMIO: u64 = 0xfed0_0000;

/// Runs `call` `calls` times after a warm-up, subtracts the cost of an empty loop,
/// and prints the mean time per call.
fn measure(name: &str, calls: u64, call: impl Fn()) {
    for _ in 0..calls / 20 {
        call();
    }
    let start = arch::counter();
    for _ in 0..calls {
        core::hint::black_box(());
    }
    let empty = arch::counter() - start;
    let start = arch::counter();
    for _ in 0..calls {
        call();
    }
    let ticks = (arch::counter() - start).saturating_sub(empty);
    report(name, "calls", calls, ticks, "call");
}
