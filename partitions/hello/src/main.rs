//! The demo guest: greets, counts while yielding to the others, and exits. The boot
//! argument: bits 0-31 how many ticks it counts (0: 3; `0xffff_ffff`: forever),
//! bits 32-47 how many milliseconds it waits between ticks (0: it only yields
//! once; see [`septum_sdk::pause_ms`]).
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

/// The tick count that means "count until the system ends".
const FOREVER: u64 = 0xffff_ffff;

fn main(boot: Boot) -> u64 {
    println!(
        "hello from a guest partition ({} KiB of RAM)",
        boot.ram_size / 1024
    );
    let ticks = match boot.argument & 0xffff_ffff {
        0 => 3,
        FOREVER => u64::MAX,
        ticks => ticks,
    };
    let pause = (boot.argument >> 32) & 0xffff;
    for tick in 1..=ticks {
        println!("tick {tick}");
        let _ = septum_sdk::yield_now(slot::SELF);
        septum_sdk::pause_ms(pause);
    }
    0
}
