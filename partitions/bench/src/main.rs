//! Measures the null-hypercall round trip in guest-virtual time and prints it.
//! Run under QEMU with `-icount shift=0`, where one instruction takes one
//! nanosecond of virtual time, so the figure is deterministic.
#![no_std]
#![no_main]

use septum_sdk::{Boot, arch, println};

septum_sdk::entry!(main);

/// Calls per measurement.
const CALLS: u64 = 20_000;

fn main(_boot: Boot) -> u64 {
    let hz = arch::counter_frequency();
    // Warm up caches and the TLB, then measure an empty loop to subtract.
    for _ in 0..1000 {
        let _ = septum_sdk::null();
    }
    let start = arch::counter();
    for _ in 0..CALLS {
        core::hint::black_box(());
    }
    let empty = arch::counter() - start;
    let start = arch::counter();
    for _ in 0..CALLS {
        let _ = septum_sdk::null();
    }
    let ticks = (arch::counter() - start).saturating_sub(empty);
    let picos = u128::from(ticks) * 1_000_000_000_000 / u128::from(hz) / u128::from(CALLS);
    println!(
        "bench null-hypercall calls={CALLS} ticks={ticks} hz={hz} ns={}.{:03}",
        picos / 1000,
        picos % 1000
    );
    0
}
