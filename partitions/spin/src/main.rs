//! A guest that computes without ever yielding: `argument` million rounds of a
//! busy loop, then it reports and exits. Next to another guest it shows that the
//! kernel takes the CPU back when a partition's time is up.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    println!(
        "spinning for {} million rounds without yielding",
        boot.argument
    );
    let mut value = 0u64;
    for round in 0..boot.argument * 1_000_000 {
        value = core::hint::black_box(value.wrapping_mul(31).wrapping_add(round));
    }
    println!("done spinning ({value:#x})");
    0
}
