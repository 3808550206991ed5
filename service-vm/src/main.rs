//! The service VM: the privileged partition the kernel starts before any guest.
//!
//! For now it reports ready (which lets the guests start), then keeps yielding to the
//! guests until none of them can run any more, and shuts the system down cleanly.
//! The service-VM issue grows this into the monitor that handles faults, traps and
//! restarts.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    println!("service VM up, {} KiB of RAM", boot.ram_size / 1024);
    if let Err(error) = septum_sdk::ready() {
        println!("ready refused: {}", error.name());
        return 1;
    }
    // Yield until every guest has exited or been stopped.
    while septum_sdk::yield_now().is_ok_and(|others| others > 0) {}
    println!("all guests done, shutting down");
    match septum_sdk::shutdown(0) {
        Err(error) => {
            println!("shutdown refused: {}", error.name());
            1
        }
    }
}
