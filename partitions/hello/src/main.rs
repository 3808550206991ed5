//! The demo guest: greets, counts while yielding to the others, and exits. The boot
//! argument is how many ticks it counts (0: 3).
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    println!(
        "hello from a guest partition ({} KiB of RAM)",
        boot.ram_size / 1024
    );
    let ticks = if boot.argument == 0 { 3 } else { boot.argument };
    for tick in 1..=ticks {
        println!("tick {tick}");
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    0
}
