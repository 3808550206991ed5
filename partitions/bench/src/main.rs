//! Measures hypercall round trips in guest-virtual time and prints them:
//! - `null-hypercall`: the null call, which the kernel answers on its fast path;
//! - `general-hypercall`: a zero-length `console_write`, which takes the general
//!   path (full register save, decode and dispatch in the portable core).
//!
//! On aarch64, run under QEMU with `-icount shift=0`, where one instruction takes
//! one nanosecond of virtual time, so the figures are deterministic. On x86_64 the
//! counter is the TSC, reported in ticks (under Bochs with `clock: sync=none` it
//! advances with emulated instructions, so it is deterministic too).
#![no_std]
#![no_main]

use septum_sdk::{Boot, Call, arch, println, slot};

septum_sdk::entry!(main);

/// Calls per measurement.
const CALLS: u64 = 20_000;

fn main(_boot: Boot) -> u64 {
    measure("null-hypercall", || {
        let _ = septum_sdk::null();
    });
    let empty = [0u8; 1];
    let console_write_nothing = [slot::CONSOLE, empty.as_ptr() as u64, 0, 0, 0, 0];
    measure("general-hypercall", || {
        let _ = septum_sdk::call(Call::ConsoleWrite as u64, console_write_nothing);
    });
    0
}

/// A value in thousandths, printed with three decimals.
struct Thousandths(u128);

impl core::fmt::Display for Thousandths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Runs `call` CALLS times after a warm-up, subtracts the cost of an empty loop,
/// and prints the mean time per call.
fn measure(name: &str, call: impl Fn()) {
    for _ in 0..1000 {
        call();
    }
    let start = arch::counter();
    for _ in 0..CALLS {
        core::hint::black_box(());
    }
    let empty = arch::counter() - start;
    let start = arch::counter();
    for _ in 0..CALLS {
        call();
    }
    let ticks = (arch::counter() - start).saturating_sub(empty);
    let milli_ticks = u128::from(ticks) * 1000 / u128::from(CALLS);
    let per_call = Thousandths(milli_ticks);
    match arch::counter_frequency() {
        Some(hz) => {
            let picos = u128::from(ticks) * 1_000_000_000_000 / u128::from(hz) / u128::from(CALLS);
            println!(
                "bench {name} calls={CALLS} ticks={ticks} ticks_per_call={per_call} hz={hz} ns={}",
                Thousandths(picos)
            );
        }
        None => println!("bench {name} calls={CALLS} ticks={ticks} ticks_per_call={per_call}"),
    }
}
