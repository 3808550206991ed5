//! The demo guest: greets, counts while yielding to the others, and exits.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    println!(
        "hello from a guest partition ({} KiB of RAM)",
        boot.ram_size / 1024
    );
    for tick in 1..=3 {
        println!("tick {tick}");
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    0
}
