//! A native guest of the kernel's IP router: the SDK's network stack
//! (`septum_sdk::net`: `virtio-drivers` and `smoltcp`) and raw virtio-net
//! drivers. Its port's address is in bits 0-39 of its boot argument
//! (`septum_sdk::net::address`); bits 40-47 pick its role and bits 48-55 and
//! 56-62 give it a parameter each. A peer's address is this partition's own
//! with its last octet replaced by the parameter.
//!
//! 1. **echo**: a UDP echo server on port 7; it ends after echoing `bye`.
//! 2. **client**: sends 16 datagrams of known payloads (1 to 1,472 bytes) to
//!    the echo server at peer bits 48-55, one at a time, checks each echo, and
//!    ends with `bye`.
//! 3. **bystander**: counts every frame its device receives; it ends once no
//!    partition but bits 48-55 others (fellow listeners) can run.
//! 4. **deaf**: brings its device up and never posts a receive buffer; ends as
//!    the bystander does.
//! 5. **hostile**: crafts raw frames and breaks the rings' rules (see
//!    [`hostile`]); the victim is peer bits 48-55, the deaf partition bits 56-62.
//! 6. **bench**: UDP throughput to the sink at peer bits 48-55 (see [`udp`]).
//! 7. **sink**: the benchmark's receiving end.
//! 8. **far client**: the client's conversation with an echo server beyond
//!    the uplink, at 192.0.2.<bits 48-55> (TEST-NET-1, outside every subnet).
//!
//! The stack's roles and the hostile one first give up their turn a few times,
//! so that every partition of the system has brought its device up before the
//! first frame is sent (partitions start in round robin).
#![no_std]
#![no_main]

mod frames;
mod hostile;
mod listen;
mod udp;

use core::mem::MaybeUninit;

use septum_sdk::net::{Port, Stack, address, program_bits};
use septum_sdk::{Boot, heap, println, slot};

septum_sdk::entry!(main);

/// Bytes of heap: the driver's rings and buffers and the sockets' buffers.
const HEAP_SIZE: usize = 256 << 10;
/// Turns given up before the first frame.
const STARTUP_TURNS: u32 = 20;

static mut HEAP: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];

/// Gives up the rest of the turn.
pub fn idle() {
    let _ = septum_sdk::yield_now(slot::SELF);
}

fn main(boot: Boot) -> u64 {
    let Some(own) = address(boot.argument) else {
        println!("net: no address in the boot argument");
        return 1;
    };
    // SAFETY: `main` runs once, and this is the only reference to the heap's
    // memory ever made; the heap keeps it for the program's life.
    if !unsafe { (&raw mut HEAP).as_mut() }.is_some_and(|memory| heap::give(memory)) {
        return 1;
    }
    let bits = program_bits(boot.argument);
    let (role, first, second) = (
        bits & 0xff,
        (bits >> 8 & 0xff) as u8,
        (bits >> 16 & 0x7f) as u8,
    );
    let peer = |octet: u8| [own.ip[0], own.ip[1], own.ip[2], octet];
    let result = match role {
        1 => stack(own).and_then(|mut stack| udp::echo(&mut stack)),
        2 => stack(own).and_then(|mut stack| startup(|| udp::client(&mut stack, peer(first)))),
        3 => listen::bystander(u64::from(first)),
        4 => listen::deaf(u64::from(first)),
        5 => startup(|| hostile::run(own, peer(first), peer(second))),
        6 => stack(own).and_then(|mut stack| startup(|| udp::bench(&mut stack, peer(first)))),
        7 => stack(own).and_then(|mut stack| udp::sink(&mut stack)),
        8 => {
            stack(own).and_then(|mut stack| startup(|| udp::client(&mut stack, [192, 0, 2, first])))
        }
        role => Err(if role == 0 { "no role" } else { "unknown role" }),
    };
    match result {
        Ok(()) => 0,
        Err(why) => {
            println!("net: {why}");
            1
        }
    }
}

/// The stack on this partition's port.
fn stack(own: septum_abi::net::Address) -> Result<Stack, &'static str> {
    match Port::open() {
        Ok(port) => Ok(Stack::new(port, own)),
        Err(error) => {
            println!("net: {error:?}");
            Err("no net device")
        }
    }
}

/// Runs `role` after giving up [`STARTUP_TURNS`] turns.
fn startup<T>(role: impl FnOnce() -> T) -> T {
    for _ in 0..STARTUP_TURNS {
        idle();
    }
    role()
}
