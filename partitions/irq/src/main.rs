//! A guest that handles the interrupts of the device it is granted: it asks the
//! device for interrupts, counts those the kernel delivers, and reports.
//!
//! Boot argument 1 makes it a bystander: it enables interrupts too but is granted
//! nothing and touches no device, and must receive no interrupt while the owner
//! gets its own (it waits [`BYSTANDER_TICKS`] of its counter).
//!
//! Boot argument 2 tests masking: it asks for one interrupt with interrupts masked,
//! yields until the device reports it raised the interrupt (so the interrupt may
//! arrive in another partition's turn), spins a little longer, checks that nothing
//! came in, unmasks, and must take the interrupt within [`PROMPT_TICKS`] without
//! making another hypercall. On aarch64 the GIC list register delivers it on
//! unmask; on x86 the kernel injects it at the next entry with RFLAGS.IF set, or
//! through the interrupt-window exit.
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

/// How long to wait, masked, for the device to raise its interrupt.
const MASKED_LIMIT_TICKS: u64 = 20_000_000_000;
/// How soon after unmasking a pending interrupt must arrive, in counter ticks
/// (well under a millisecond on both boards; a partition's turn lasts milliseconds).
const PROMPT_TICKS: u64 = 100_000;

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
    match boot.argument {
        1 => return listen(),
        2 => return masked(),
        _ => {}
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

/// Masking: nothing arrives while masked, and the pending interrupt arrives at
/// once on unmask.
fn masked() -> u64 {
    interrupts::enable(|number| {
        device::acknowledge();
        LAST.store(number, Ordering::Relaxed);
        RECEIVED.fetch_add(1, Ordering::Relaxed);
    });
    interrupts::mask();
    device::request();
    let start = septum_sdk::arch::counter();
    let mut raised = false;
    while !raised && septum_sdk::arch::counter() - start < MASKED_LIMIT_TICKS {
        raised = device::raised();
        // Others run meanwhile, so the interrupt may arrive in their turn and wait
        // for this partition to be entered with interrupts masked.
        let _ = septum_sdk::yield_now(slot::SELF);
    }
    if !raised {
        println!("masked: the device never raised its interrupt TIMEOUT");
        return 1;
    }
    // Give the kernel time to take the physical interrupt and make it pending here.
    let settle = septum_sdk::arch::counter();
    while septum_sdk::arch::counter() - settle < PROMPT_TICKS {
        core::hint::spin_loop();
    }
    let while_masked = RECEIVED.load(Ordering::Relaxed);
    let unmasked_at = septum_sdk::arch::counter();
    interrupts::unmask();
    let mut waited = 0;
    while RECEIVED.load(Ordering::Relaxed) == 0 && waited < BYSTANDER_TICKS {
        waited = septum_sdk::arch::counter() - unmasked_at;
    }
    let prompt = while_masked == 0 && RECEIVED.load(Ordering::Relaxed) > 0 && waited < PROMPT_TICKS;
    println!(
        "masked received={while_masked}, after unmask number={} waited={waited} {}",
        LAST.load(Ordering::Relaxed),
        if prompt { "ok" } else { "LATE" }
    );
    u64::from(!prompt)
}

/// The bystander: interrupts on, no device, nothing may arrive.
fn listen() -> u64 {
    interrupts::enable(|number| {
        LAST.store(number, Ordering::Relaxed);
        RECEIVED.fetch_add(1, Ordering::Relaxed);
    });
    println!("listening for interrupts that are not mine");
    // It spins rather than yields, so that it holds the core for whole turns and is
    // likely the partition running when the owner's interrupt arrives: an interrupt
    // given to whoever runs would then land here.
    let start = septum_sdk::arch::counter();
    while septum_sdk::arch::counter() - start < BYSTANDER_TICKS {
        core::hint::spin_loop();
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
    const RAW_STATUS: u64 = BASE + 0x14;
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

    /// Whether the alarm has raised its interrupt line (the raw status; reading it
    /// changes nothing).
    pub fn raised() -> bool {
        // SAFETY: as above; the raw interrupt status register is read-only.
        unsafe { core::ptr::read_volatile(RAW_STATUS as *const u32) & 1 != 0 }
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

    /// Whether the RTC has raised its interrupt (register C's IRQF). Reading C also
    /// acknowledges it at the RTC; the interrupt already sent stays pending for the
    /// partition.
    pub fn raised() -> bool {
        read(0x0c) & 0x80 != 0
    }
}
