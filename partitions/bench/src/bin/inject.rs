//! Times a device interrupt's way from the device to the partition's handler.
//! The partition raises the interrupt itself, with a register write that makes
//! its granted device assert its line at once, reading the counter just before;
//! its handler reads the counter again and silences the device. The difference,
//! over 64 interrupts, is the injection: the physical interrupt taken by
//! the kernel at EL2, the owner found, the list register written, the virtual
//! interrupt taken at EL1 and acknowledged. On `virt` the GIC is a GICv3 (list
//! registers in ICH system registers, the partition's interface the ICC system
//! registers); on the Raspberry Pi 4 a GIC-400 (GICH list registers over MMIO,
//! the partition's interface the GICV block).
//!
//! | argument | board | device | raised by | INTID |
//! |---|---|---|---|---|
//! | 0 | qemu-virt | the PL061 GPIO at 0x0903_0000 | unmasking pin 0, level-sensitive on its present level | 39 |
//! | 1 | rpi4 | the mini UART (AUX) at 0xfe21_5000 | enabling its transmit interrupt, the FIFO empty | 125 |
//!
//! It prints `bench device-interrupt …` (the figure) and exits 1 if an
//! interrupt did not come, or came with another number.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    injection::run(boot.argument)
}

#[cfg(target_arch = "aarch64")]
mod injection {
    use super::*;
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
    use partition_bench::report;
    use septum_sdk::{arch, interrupts};

    /// Interrupts timed.
    const ROUNDS: u64 = 64;
    /// The counter when the handler ran (0: not yet).
    static HANDLED_AT: AtomicU64 = AtomicU64::new(0);
    /// The number the last interrupt came with.
    static NUMBER: AtomicU32 = AtomicU32::new(0);
    /// How long to wait for one interrupt, in counter ticks, before giving up.
    const PATIENCE_TICKS: u64 = 1_000_000_000;

    /// A device that can raise its interrupt on request.
    struct Device {
        name: &'static str,
        intid: u32,
        prepare: fn(),
        raise: fn(),
        silence: fn(),
    }

    const DEVICES: [Device; 2] = [
        Device {
            name: "pl061-gpio",
            intid: 39,
            prepare: gpio::prepare,
            raise: gpio::raise,
            silence: gpio::silence,
        },
        Device {
            name: "mini-uart",
            intid: 125,
            prepare: mini_uart::prepare,
            raise: mini_uart::raise,
            silence: mini_uart::silence,
        },
    ];

    /// The index in [`DEVICES`] of the device timed (set before interrupts are
    /// enabled).
    static DEVICE: AtomicUsize = AtomicUsize::new(0);

    fn on_interrupt(number: u32) {
        (DEVICES[DEVICE.load(Ordering::Relaxed)].silence)();
        NUMBER.store(number, Ordering::Relaxed);
        HANDLED_AT.store(arch::counter(), Ordering::Release);
    }

    pub fn run(argument: u64) -> u64 {
        let Some(device) = DEVICES.get(argument as usize) else {
            println!("inject: no device {argument}");
            return 1;
        };
        (device.prepare)();
        DEVICE.store(argument as usize, Ordering::Relaxed);
        interrupts::enable(on_interrupt);
        let mut total = 0;
        for round in 0..ROUNDS {
            HANDLED_AT.store(0, Ordering::Relaxed);
            let raised_at = arch::counter();
            (device.raise)();
            let mut handled_at = 0;
            while handled_at == 0 && arch::counter() - raised_at < PATIENCE_TICKS {
                handled_at = HANDLED_AT.load(Ordering::Acquire);
            }
            let number = NUMBER.load(Ordering::Relaxed);
            if handled_at == 0 || number != device.intid {
                println!(
                    "inject: {} round {round}: interrupt {number} (expected {}) {}",
                    device.name,
                    device.intid,
                    if handled_at == 0 {
                        "TIMEOUT"
                    } else {
                        "MISROUTED"
                    }
                );
                return 1;
            }
            total += handled_at - raised_at;
        }
        println!(
            "inject: {} interrupts of {} (INTID {}) ok",
            ROUNDS, device.name, device.intid
        );
        report("device-interrupt", "interrupts", ROUNDS, total, "interrupt");
        0
    }

    fn write(register: u64, value: u32) {
        // SAFETY: the description grants this device (see the module docs);
        // `register` is one of its registers.
        unsafe { core::ptr::write_volatile(register as *mut u32, value) };
    }

    fn read(register: u64) -> u32 {
        // SAFETY: as in `write`; the registers read here have no side effects.
        unsafe { core::ptr::read_volatile(register as *const u32) }
    }

    mod gpio {
        //! The PL061 GPIO of `virt`, pin 0.
        use super::{read, write};
        const BASE: u64 = 0x0903_0000;
        /// GPIODATA with every pin in the address mask.
        const DATA: u64 = BASE + 0x3fc;
        const DIRECTION: u64 = BASE + 0x400;
        const SENSE: u64 = BASE + 0x404;
        const EVENT: u64 = BASE + 0x40c;
        const MASK: u64 = BASE + 0x410;
        const CLEAR: u64 = BASE + 0x41c;
        const PIN: u32 = 1 << 0;

        /// Pin 0 an input, level-sensitive, its event its present level: it
        /// interrupts whenever unmasked.
        pub fn prepare() {
            write(MASK, 0);
            write(DIRECTION, read(DIRECTION) & !PIN);
            write(SENSE, read(SENSE) | PIN);
            write(EVENT, (read(EVENT) & !PIN) | (read(DATA) & PIN));
        }

        pub fn raise() {
            write(MASK, PIN);
        }

        pub fn silence() {
            write(MASK, 0);
            write(CLEAR, PIN);
        }
    }

    mod mini_uart {
        //! The BCM2711's mini UART (the AUX block).
        use super::{read, write};
        const BASE: u64 = 0xfe21_5000;
        const ENABLES: u64 = BASE + 0x04;
        const INTERRUPT_ENABLE: u64 = BASE + 0x44;
        const TRANSMIT_INTERRUPT: u32 = 1 << 1;

        /// The mini UART enabled, its interrupts off.
        pub fn prepare() {
            write(ENABLES, read(ENABLES) | 1);
            write(INTERRUPT_ENABLE, 0);
        }

        /// Its transmit FIFO is empty: enabling the transmit interrupt raises it.
        pub fn raise() {
            write(INTERRUPT_ENABLE, TRANSMIT_INTERRUPT);
        }

        pub fn silence() {
            write(INTERRUPT_ENABLE, 0);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod injection {
    use super::*;

    /// The figure compares the two GICs; the pc board's interrupt path is timed
    /// by the `irq` scenarios.
    pub fn run(_argument: u64) -> u64 {
        println!("inject: aarch64 only");
        0
    }
}
