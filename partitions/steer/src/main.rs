//! Checks that a partition's code is read for the kernel from the frame it really
//! runs on, even after a restart left another partition holding one of its pages.
//!
//! Argument 0 makes it the **sender**. Generation 1 sends the page that holds its
//! MMIO probe ([`probe`]: one store, then `ret`; the rest of the page traps) to the
//! holder, flipped, yields a few turns for the holder to take it, and crashes: the
//! service VM
//! restarts it while the holder still holds that page, so the restarted sender
//! runs that page from a substitute frame reloaded from its image. Generation 2
//! calls the probe on unassigned MMIO; the access traps, and the service VM resumes
//! it past the store. On x86 the kernel decodes the store's length from the code
//! (VT-x does not report it for an EPT violation), so it must read the substitute
//! frame: the holder has rewritten the original to a longer store, and a skip
//! decoded from it lands on a trap instead of the `ret`.
//!
//! Argument 1 makes it the **holder**: it takes the page, rewrites the probe's
//! first bytes as `mov dword [rdi + disp32], imm32` (10 bytes on x86), and holds
//! the page until the sender has ended.
#![no_std]
#![no_main]

use septum_sdk::queue::{CopyBuffer, Delivery, Receiver, Sender};
use septum_sdk::{Boot, Error, println};

septum_sdk::entry!(main);

/// Where the queue end is, in either role.
const QUEUE_SLOT: u64 = 2;
const PAGE: u64 = 4096;
/// Yields the sender makes between sending its page and crashing.
const HOLDER_TURNS: u32 = 8;
/// A 10-byte x86 store, `mov dword [rdi + 0x5eb7], 0x5eb7`, where the probe's
/// 2-byte one was.
const STEERING: [u8; 10] = [0xc7, 0x87, 0xb7, 0x5e, 0, 0, 0xb7, 0x5e, 0, 0];

fn main(boot: Boot) -> u64 {
    match boot.argument {
        0 => sender(boot.generation),
        _ => holder(),
    }
}

fn sender(generation: u32) -> u64 {
    let page = probe::page();
    if generation == 1 {
        let sender = Sender::new(QUEUE_SLOT);
        match sender.send_flip(page, PAGE, Delivery::Immediate) {
            Ok(_) => println!("sender: sent my probe page {page:#x}"),
            Err(error) => {
                println!("sender: send failed: {}", error.name());
                return 1;
            }
        }
        // Turns for the holder to take the page, if it was not waiting yet.
        for _ in 0..HOLDER_TURNS {
            let _ = septum_sdk::yield_now(septum_sdk::slot::SELF);
        }
        panic!("sender: crashing while the holder holds my probe page");
    }
    println!("sender: generation {generation}: storing to unassigned MMIO from the probe page");
    // SAFETY: the store traps; the service VM resumes this partition past it.
    unsafe { probe::store(probe::UNASSIGNED_MMIO, 0x5eb7) };
    println!("sender: generation {generation}: carried on past the MMIO store");
    0
}

fn holder() -> u64 {
    let receiver = Receiver::new(QUEUE_SLOT);
    let mut buffer = CopyBuffer::default();
    let message = loop {
        match receiver.try_receive(0, &mut buffer) {
            Ok(Some(message)) => break message,
            Ok(None) => {}
            Err(error) => {
                println!("holder: receive failed: {}", error.name());
                return 1;
            }
        }
        if let Err(error) = receiver.wait() {
            println!("holder: wait failed: {}", error.name());
            return 1;
        }
    };
    let at = message.address() as *mut u8;
    for (offset, &byte) in STEERING.iter().enumerate() {
        // SAFETY: the kernel mapped the received page at `at` for this partition
        // alone; it stays mapped while `message` is held.
        unsafe { at.add(offset).write_volatile(byte) };
    }
    println!("holder: holding the sender's probe page, its store rewritten");
    loop {
        match receiver.wait() {
            Ok(()) | Err(Error::PeerRestarted) => {}
            Err(Error::PeerEnded) => break,
            Err(error) => {
                println!("holder: wait failed: {}", error.name());
                return 1;
            }
        }
    }
    println!("holder: the sender ended; giving its page back");
    match message.release() {
        Ok(()) => 0,
        Err(error) => {
            println!("holder: release failed: {}", error.name());
            1
        }
    }
}

/// The probe: a page of code of its own, whose first instruction stores its
/// second argument at its first.
mod probe {
    unsafe extern "C" {
        fn steer_probe(address: u64, value: u32);
    }

    /// The address of the probe's page.
    pub fn page() -> u64 {
        steer_probe as *const () as u64
    }

    /// Stores `value` at `address` from the probe page.
    ///
    /// # Safety
    /// `address` must be writable, or the store must trap and be skipped.
    pub unsafe fn store(address: u64, value: u32) {
        // SAFETY: forwarded to the caller.
        unsafe { steer_probe(address, value) }
    }

    /// A guest-physical address no partition is granted (the HPET's page).
    #[cfg(target_arch = "x86_64")]
    pub const UNASSIGNED_MMIO: u64 = 0xfed0_0000;

    // `mov [rdi], esi` (89 37), `ret`, then int3 to the end of the page.
    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".pushsection .text.steer_probe, \"ax\"",
        ".balign 4096",
        ".global steer_probe",
        "steer_probe:",
        "    mov dword ptr [rdi], esi",
        "    ret",
        "    .fill 4093, 1, 0xcc",
        ".popsection",
    );

    /// A guest-physical address no partition is granted (virtio-mmio space).
    #[cfg(target_arch = "aarch64")]
    pub const UNASSIGNED_MMIO: u64 = 0x0a00_0000;

    // `str w1, [x0]`, `ret`, then `brk` to the end of the page.
    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".pushsection .text.steer_probe, \"ax\"",
        ".balign 4096",
        ".global steer_probe",
        "steer_probe:",
        "    str w1, [x0]",
        "    ret",
        "    .rept 1022",
        "    brk #0x5e",
        "    .endr",
        ".popsection",
    );
}
