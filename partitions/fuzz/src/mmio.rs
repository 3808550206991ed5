//! An emulated-device fuzzer for Linux partitions: booted by Linux's boot
//! protocol, it makes random loads and stores, 1 to 8 bytes wide and aligned to
//! their width, across the windows of its emulated GICv3 (distributor and the
//! whole redistributor window, frames of vCPUs it does not have included) and
//! its UART (every register but the data register, so it prints no junk), and
//! some load and store pairs (which give the kernel no syndrome to decode), and
//! random writes of the trapped system registers the kernel completes itself
//! (the SGI register, a debug and a performance-monitor register). The
//! kernel completes what it emulates and faults the rest to the service VM,
//! which resumes it past the access. At the end it checks that its distributor
//! still reads as the emulated one and reports. Fixed seed, so a run repeats.
#![no_std]
#![no_main]

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

/// Accesses made.
const ACCESSES: u64 = 20_000;
/// The generator's seed.
const SEED: u64 = 0x5eed;

fn main(_boot: Boot) -> u64 {
    fuzz::run()
}

#[cfg(target_arch = "aarch64")]
mod fuzz {
    use super::*;
    use core::arch::asm;
    use partition_fuzz::Random;
    use septum_sdk::abi::virt::{GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE, UART_BASE, UART_SIZE};

    /// The distributor's type register and what the kernel's model reads there.
    const TYPER: u64 = GICD_BASE + 4;
    const TYPER_VALUE: u64 = 0x0348_0002;

    /// One access of `width` bytes at `address`: a load, or a store of `value`.
    fn access(address: u64, width: u64, store: Option<u64>) {
        // SAFETY: `address` lies in one of this partition's emulated device
        // windows (or a redistributor frame it lacks), aligned to `width`; the
        // kernel completes the access or the service VM resumes past it, and
        // nothing here is memory Rust knows of.
        unsafe {
            match (width, store) {
                (1, None) => asm!("ldrb {v:w}, [{a}]", a = in(reg) address, v = out(reg) _),
                (2, None) => asm!("ldrh {v:w}, [{a}]", a = in(reg) address, v = out(reg) _),
                (4, None) => asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = out(reg) _),
                (_, None) => asm!("ldr {v}, [{a}]", a = in(reg) address, v = out(reg) _),
                (1, Some(v)) => asm!("strb {v:w}, [{a}]", a = in(reg) address, v = in(reg) v),
                (2, Some(v)) => asm!("strh {v:w}, [{a}]", a = in(reg) address, v = in(reg) v),
                (4, Some(v)) => asm!("str {v:w}, [{a}]", a = in(reg) address, v = in(reg) v),
                (_, Some(v)) => asm!("str {v}, [{a}]", a = in(reg) address, v = in(reg) v),
            }
        }
    }

    /// A random write of one of the trapped system registers the kernel
    /// completes: `ICC_SGI1R_EL1` (SGIs to whatever affinity it names),
    /// `MDSCR_EL1` or `PMCR_EL0` (written to nothing).
    fn system_register(which: u64, value: u64) {
        // SAFETY: each write traps to the kernel, which sends an SGI to this
        // partition's own vCPUs or ignores it; this vCPU runs with interrupts
        // masked, so a pending SGI only waits.
        unsafe {
            match which {
                0 => asm!("msr icc_sgi1r_el1, {v}", v = in(reg) value),
                1 => asm!("msr mdscr_el1, {v}", v = in(reg) value),
                _ => asm!("msr pmcr_el0, {v}", v = in(reg) value),
            }
        }
    }

    /// A load or store pair at `address` (16-byte aligned): no syndrome.
    fn pair(address: u64, store: bool) {
        // SAFETY: as for `access`.
        unsafe {
            if store {
                asm!("stp xzr, xzr, [{a}]", a = in(reg) address);
            } else {
                asm!("ldp {x}, {y}, [{a}]", a = in(reg) address, x = out(reg) _, y = out(reg) _);
            }
        }
    }

    pub fn run() -> u64 {
        let mut random = Random(SEED);
        let windows = [
            (GICD_BASE, GICD_SIZE),
            (GICR_BASE, GICR_SIZE),
            (UART_BASE, UART_SIZE),
        ];
        let (mut pairs, mut stores, mut registers) = (0u64, 0u64, 0u64);
        println!("fuzzing {ACCESSES} accesses to the emulated devices, seed={SEED:#x}");
        for _ in 0..ACCESSES {
            let (base, size) = windows[random.below(3) as usize];
            if random.below(32) == 0 {
                system_register(random.below(3), random.word());
                registers += 1;
                continue;
            }
            if random.below(64) == 0 {
                let store = random.below(2) == 1;
                pair(base + random.below(size) / 16 * 16, store);
                pairs += 1;
                continue;
            }
            let width = 1 << random.below(4);
            let offset = random.below(size) / width * width;
            let store = random.below(2) == 1 && !(base == UART_BASE && offset < 4);
            let value = random.word();
            access(base + offset, width, store.then_some(value));
            stores += u64::from(store);
        }
        let typer: u64;
        // SAFETY: the emulated distributor's type register.
        unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) TYPER, v = out(reg) typer) };
        let intact = typer == TYPER_VALUE;
        println!(
            "mmio fuzz done accesses={ACCESSES} stores={stores} pairs={pairs} system-registers={registers} distributor-intact={}",
            if intact { "yes" } else { "no" }
        );
        u64::from(!intact)
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod fuzz {
    use super::*;

    pub fn run() -> u64 {
        println!(
            "mmio fuzz: there are no emulated devices on this architecture ({ACCESSES}, {SEED})"
        );
        0
    }
}
