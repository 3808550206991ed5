//! The service VM: the privileged partition the kernel starts before any guest.
//!
//! For now it reports ready (which lets the guests start), then keeps yielding to the
//! guests until none of them can run any more, and shuts the system down cleanly.
//! Its capabilities: console (slot 0), self (slot 1), system (slot 2).
//! The service-VM issue grows this into the monitor that handles faults, traps and
//! restarts.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println, slot};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    println!("service VM up, {} KiB of RAM", boot.ram_size / 1024);
    if let Err(error) = septum_sdk::ready(slot::SYSTEM) {
        println!("ready refused: {}", error.name());
        return 1;
    }
    // Yield until every guest has exited or been stopped.
    while septum_sdk::yield_now(slot::SELF).is_ok_and(|others| others > 0) {}
    println!("all guests done, shutting down");
    let error = septum_sdk::shutdown(slot::SYSTEM, 0);
    println!("shutdown refused: {}", error.name());
    1
}
