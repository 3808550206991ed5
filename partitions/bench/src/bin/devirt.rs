//! The guest of the devirtualization scenarios (`devirt-cycle`): a
//! devirtualizable partition that starts native, keeps a pattern in 4 MiB of its
//! RAM and checks it, round after round, while the kernel virtualizes it, the
//! service VM moves its pages and devirtualizes it, and the kernel virtualizes it
//! again.
//!
//! Each round rewrites every word of the region with a pattern of the round and
//! reads it all back; a word that differs (a write lost in a move) ends it with
//! exit code 1. It prints each round's time per word, and its rate (words a
//! tick) in ‰ of its first round's, which runs natively. Every [`MEASURE_EVERY`]
//! rounds it times [`READS`] reads of a register the kernel traps while it
//! translates (aarch64 `ACTLR_EL1` through HCR_EL2.TACR, x86_64 `IA32_PAT`
//! through the MSR bitmap), so the service VM resumes each read past it, while
//! natively the read does not leave the guest. Every
//! [`ASK_EVERY`] rounds, after that timing, it asks to be virtualized: refused
//! while it is translated ([`Error::BadState`]), granted while native. The other
//! rounds write without trapping, so the service VM's relocations run beside
//! them. After its second
//! virtualization it runs [`ROUNDS_AFTER`] more rounds and exits with code 0.
//!
//! With boot argument bit [`PANIC_NATIVE`] (`devirt-native-fault`) its first
//! generation panics after its first round, natively, before it asks for
//! anything; a later generation (restarted by the service VM, translated) runs
//! [`ROUNDS_AFTER`] rounds and exits with code 0.
#![no_std]
#![no_main]

use partition_bench::report;
use septum_sdk::{Boot, Error, arch, println, slot};

septum_sdk::entry!(main);

/// Where the region starts, past the image, and its size (the stack is at the
/// top of RAM, above it).
const REGION_OFFSET: u64 = 0x10_0000;
const REGION_BYTES: u64 = 4 << 20;
/// Trapped register reads timed per round.
const READS: u64 = 100;
/// Rounds between timings of the trapped reads.
const MEASURE_EVERY: u64 = 3;
/// Rounds between requests to be virtualized (a request follows the timing of
/// its round).
const ASK_EVERY: u64 = 6;
/// Rounds it runs after its second virtualization.
const ROUNDS_AFTER: u64 = 3;
/// Most rounds it runs in all.
const MAX_ROUNDS: u64 = 10_000;
/// Boot argument bit 0: the benchmark (`bench-devirt-aarch64`,
/// `bench-devirt-x86_64`): no trapped
/// reads, so that no round waits for the service VM while it relocates.
const BENCHMARK: u64 = 1 << 0;
/// Boot argument bit 1: panic natively (see the module docs).
const PANIC_NATIVE: u64 = 1 << 1;

fn main(boot: Boot) -> u64 {
    let region = region(&boot);
    let benchmark = boot.argument & BENCHMARK != 0;
    let panic_native = boot.argument & PANIC_NATIVE != 0;
    let mut virtualized = 0;
    let mut after = 0;
    // The first round's time: it runs natively (the kernel starts it so).
    let mut native_ticks = None;
    for round in 1..=MAX_ROUNDS {
        let start = arch::counter();
        let sum = match rewrite_and_check(region, round) {
            Ok(sum) => sum,
            Err(word) => {
                println!("round {round}: word {word} lost its write: checksum broken");
                return 1;
            }
        };
        let ticks = arch::counter() - start;
        let words = region.len() as u64;
        report(
            format_args!("devirt-round-{round}"),
            "words",
            2 * words,
            ticks,
            "word",
        );
        let native = *native_ticks.get_or_insert(ticks);
        let rate_permille = native * 1000 / ticks.max(1);
        println!("round {round}: checksum {sum:#018x} ok rate_permille={rate_permille}");
        if panic_native && boot.generation == 1 {
            panic!("round {round}: panicking natively, as asked");
        }
        if panic_native && round >= ROUNDS_AFTER {
            return 0;
        }
        if round % MEASURE_EVERY == 0 && !benchmark {
            report(
                format_args!("devirt-trapped-{round}"),
                "reads",
                READS,
                time_trapped_reads(),
                "read",
            );
        }
        if round % ASK_EVERY == 0 {
            let start = arch::counter();
            match septum_sdk::virtualize(slot::SELF) {
                Ok(()) => {
                    let ticks = arch::counter() - start;
                    virtualized += 1;
                    println!("round {round}: virtualized ({virtualized})");
                    report(
                        format_args!("devirt-virtualize-{virtualized}"),
                        "calls",
                        1,
                        ticks,
                        "call",
                    );
                }
                Err(Error::BadState) => {}
                Err(error) => println!("round {round}: virtualize refused: {}", error.name()),
            }
        }
        if virtualized == 2 {
            after += 1;
            if after > ROUNDS_AFTER {
                return 0;
            }
        }
    }
    0
}

/// The region of RAM the rounds write, as words.
fn region(boot: &Boot) -> &'static mut [u64] {
    assert!(REGION_OFFSET + REGION_BYTES + 0x10_0000 <= boot.ram_size);
    let start = (septum_sdk::RAM_BASE + REGION_OFFSET) as *mut u64;
    // SAFETY: the region lies in this partition's RAM, past its image and
    // below its stack (checked above), and nothing else uses it.
    unsafe { core::slice::from_raw_parts_mut(start, (REGION_BYTES / 8) as usize) }
}

/// The pattern of word `index` in round `round`.
fn pattern(round: u64, index: usize) -> u64 {
    (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (round << 40) ^ round
}

/// Writes the round's pattern over the region and reads it back: the sum of
/// the words, or the index of the first word that does not hold its pattern.
fn rewrite_and_check(region: &mut [u64], round: u64) -> Result<u64, usize> {
    for (index, word) in region.iter_mut().enumerate() {
        // SAFETY: a word of the region.
        unsafe { core::ptr::write_volatile(word, pattern(round, index)) };
    }
    let mut sum = 0u64;
    for (index, word) in region.iter().enumerate() {
        // SAFETY: a word of the region.
        let value = unsafe { core::ptr::read_volatile(word) };
        if value != pattern(round, index) {
            return Err(index);
        }
        sum = sum.wrapping_add(value);
    }
    Ok(sum)
}

/// Counter ticks [`READS`] reads of a register the kernel traps while it
/// translates take.
fn time_trapped_reads() -> u64 {
    let start = arch::counter();
    for _ in 0..READS {
        core::hint::black_box(trapped_read());
    }
    arch::counter() - start
}

/// Reads `ACTLR_EL1`, which has no side effect; while the kernel translates
/// it traps (HCR_EL2.TACR), and the service VM resumes past it.
#[cfg(target_arch = "aarch64")]
fn trapped_read() -> u64 {
    let value: u64;
    // SAFETY: reading ACTLR_EL1 at EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {}, actlr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads `IA32_PAT` (x86_64), which has no side effect; while the kernel
/// translates every MSR access exits, and the service VM resumes past it
/// (leaving rdx:rax as they were), while natively the MSR bitmap lets it run.
#[cfg(target_arch = "x86_64")]
fn trapped_read() -> u64 {
    const IA32_PAT: u32 = 0x277;
    let (low, high): (u32, u32);
    // SAFETY: reading IA32_PAT at CPL 0 has no side effect.
    unsafe {
        core::arch::asm!(
            "rdmsr",
            in("ecx") IA32_PAT,
            inout("eax") 0 => low,
            inout("edx") 0 => high,
            options(nomem, nostack),
        )
    };
    u64::from(high) << 32 | u64::from(low)
}
