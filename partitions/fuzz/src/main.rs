//! A hypercall fuzzer: makes `iterations` random and mutated hypercalls (random call
//! numbers, slots and arguments, addresses in and around its RAM), then checks that
//! the kernel still answers and reports what it saw. The seed is printed, so a run
//! can be repeated.
//!
//! Boot argument: iterations in the low 32 bits, seed in the high 32 (0: a seed from
//! the counter).
//!
//! Its capability table (see `tests/systems/fuzz.toml`): slot 0, a console without
//! the write right; slot 1, itself with only `yield`; slot 2, the console it reports
//! on; slot 15, itself with `exit`. The generator never aims at slots 2 and 15, so
//! it can neither print junk nor end itself; every other slot, type and right is
//! fair game.
#![no_std]
#![no_main]

use core::fmt::Write;
use partition_fuzz::Random;
use septum_sdk::{Boot, Call, RAM_BASE, arch};

septum_sdk::entry!(main);

/// The console this partition reports on.
const REPORT_SLOT: u64 = 2;
/// Its exit capability.
const EXIT_SLOT: u64 = 15;

/// A console on slot [`REPORT_SLOT`].
struct Report;

impl Write for Report {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        septum_sdk::console_write(REPORT_SLOT, s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

fn main(boot: Boot) -> u64 {
    let iterations = boot.argument & 0xffff_ffff;
    let seed = match boot.argument >> 32 {
        0 => arch::counter() | 1,
        given => given,
    };
    let _ = writeln!(Report, "fuzzing {iterations} hypercalls, seed={seed:#x}");
    let mut random = Random(seed);
    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..iterations {
        let number = match random.below(10) {
            0..=6 => random.below(Call::ALL.len() as u64 + 2),
            _ => random.word(),
        };
        let slot = loop {
            let slot = match random.below(4) {
                0..=2 => random.below(20),
                _ => random.word(),
            };
            if slot != REPORT_SLOT && slot != EXIT_SLOT {
                break slot;
            }
        };
        let mut args = [slot, 0, 0, 0, 0, 0];
        for arg in &mut args[1..] {
            *arg = match random.below(5) {
                0 => RAM_BASE + random.below(boot.ram_size + 0x2000),
                1 => random.below(512),
                2 => RAM_BASE.wrapping_sub(random.below(0x1000)),
                3 => u64::MAX - random.below(16),
                _ => random.word(),
            };
        }
        match septum_sdk::call(number, args) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    let alive = septum_sdk::null().is_ok();
    let _ = writeln!(
        Report,
        "fuzz done iterations={iterations} seed={seed:#x} accepted={accepted} refused={refused} kernel-alive={}",
        if alive { "yes" } else { "no" }
    );
    septum_sdk::exit(EXIT_SLOT, u64::from(!alive))
}
