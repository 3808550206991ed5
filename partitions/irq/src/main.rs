//! A guest that handles the interrupts of the device it is granted: it asks the
//! device for interrupts, counts those the kernel delivers, and reports.
//!
//! Boot argument 1 makes it a bystander: it enables interrupts too but is granted
//! nothing and touches no device, and must receive no interrupt while the owner
//! gets its own (it waits [`BYSTANDER_TICKS`] of its counter).
//!
//! | board | device | interrupt |
//! |---|---|---|
//! | qemu-virt | the PL031 RTC's alarm | GIC INTID 34 |
//! | pc | the CMOS RTC's periodic interrupt | IRQ 8 |
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use septum_sdk::{Boot, interrupts, println, slot};

septum_sdk::entry!(main);

/// Interrupts to wait for.
const WANTED: u32 = 2;
/// Turns to wait for them before giving up.
const PATIENCE: u32 = 2_000_000;
/// How long a bystander listens, in counter ticks (seconds on both boards).
const BYSTANDER_TICKS: u64 = 200_000_000;

static RECEIVED: AtomicU32 = AtomicU32::new(0);
static LAST: AtomicU32 = AtomicU32::new(0);

fn on_interrupt(number: u32) {
    device::acknowledge();
    LAST.store(number, Ordering::Relaxed);
    if RECEIVED.fetch_add(1, Ordering::Relaxed) + 1 < WANTED {
        device::request();
    }
}

fn main(boot: Boot) -> u64 {
    if boot.argument == 1 {
        return listen();
    }
    interrupts::enable(on_interrupt);
    device::request();
    println!("asked {} for an interrupt", device::NAME);
    let mut turns = 0;
    while RECEIVED.load(Ordering::Relaxed) < WANTED && turns < PATIENCE {
        let _ = septum_sdk::yield_now(slot::SELF);
        turns += 1;
    }
    let received = RECEIVED.load(Ordering::Relaxed);
    println!(
        "interrupts received={received} number={} {}",
        LAST.load(Ordering::Relaxed),
        if received >= WANTED { "ok" } else { "TIMEOUT" }
    );
    u64::from(received < WANTED)
}

/// The bystander: interrupts on, no device, nothing may arrive.
fn listen() -> u64 {
    interrupts::enable(|number| {
        LAST.store(number, Ordering::Relaxed);
        RECEIVED.fetch_add(1, Ordering::Relaxed);
    });
    println!("listening for interrupts that are not mine");
    let start = septum_sdk::arch::counter();
    while septum_sdk::arch::counter() - start < BYSTANDER_TICKS {
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    let received = RECEIVED.load(Ordering::Relaxed);
    println!(
        "bystander received={received} {}",
        if received == 0 { "ok" } else { "MISROUTED" }
    );
    u64::from(received != 0)
}

#[cfg(target_arch = "aarch64")]
mod device {
    //! The PL031 real-time clock at 0x0901_0000.
    pub const NAME: &str = "the PL031 RTC alarm";
    const BASE: u64 = 0x0901_0000;
    const DATA: u64 = BASE;
    const MATCH: u64 = BASE + 0x04;
    const MASK: u64 = BASE + 0x10;
    const CLEAR: u64 = BASE + 0x1c;

    fn write(register: u64, value: u32) {
        // SAFETY: the description grants this PL031; these are its registers.
        unsafe { core::ptr::write_volatile(register as *mut u32, value) };
    }

    /// Sets the alarm one second ahead and unmasks it.
    pub fn request() {
        // SAFETY: as above; reading the data register has no side effects.
        let now = unsafe { core::ptr::read_volatile(DATA as *const u32) };
        write(MATCH, now.wrapping_add(1));
        write(MASK, 1);
    }

    /// Clears the alarm's interrupt.
    pub fn acknowledge() {
        write(CLEAR, 1);
    }
}

#[cfg(target_arch = "x86_64")]
mod device {
    //! The CMOS real-time clock at ports 0x70-0x71.
    use core::arch::asm;

    pub const NAME: &str = "the CMOS RTC periodic interrupt";

    fn write(register: u8, value: u8) {
        // SAFETY: the description grants ports 0x70-0x71; selecting a CMOS register
        // and writing it affects only the RTC.
        unsafe {
            asm!("out 0x70, al", in("al") register);
            asm!("out 0x71, al", in("al") value);
        }
    }

    fn read(register: u8) -> u8 {
        let value: u8;
        // SAFETY: as above; reading a register has no effect beyond the RTC.
        unsafe {
            asm!("out 0x70, al", in("al") register);
            asm!("in al, 0x71", out("al") value);
        }
        value
    }

    /// Turns the periodic interrupt on (rate 2 Hz: register A's rate 15).
    pub fn request() {
        write(0x0a, (read(0x0a) & 0xf0) | 0x0f);
        write(0x0b, read(0x0b) | 0x40);
    }

    /// Reads register C, which acknowledges the interrupt.
    pub fn acknowledge() {
        let _ = read(0x0c);
    }
}
