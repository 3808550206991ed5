//! What the benchmark partitions share: fixed-point figures and the report line
//! the host tool (`cargo run -- bench`) reads.
#![no_std]

use septum_sdk::{arch, println};

/// A value in thousandths, printed with three decimals.
pub struct Thousandths(pub u128);

impl core::fmt::Display for Thousandths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Prints `bench <name> <count_name>=<count> ticks=<ticks> ticks_per_<unit>=...`,
/// with nanoseconds per unit where the counter's frequency is known.
pub fn report(name: impl core::fmt::Display, count_name: &str, count: u64, ticks: u64, unit: &str) {
    let per_unit = Thousandths(u128::from(ticks) * 1000 / u128::from(count.max(1)));
    match arch::counter_frequency() {
        Some(hz) => {
            let picos =
                u128::from(ticks) * 1_000_000_000_000 / u128::from(hz) / u128::from(count.max(1));
            println!(
                "bench {name} {count_name}={count} ticks={ticks} ticks_per_{unit}={per_unit} hz={hz} ns={}",
                Thousandths(picos)
            );
        }
        None => {
            println!("bench {name} {count_name}={count} ticks={ticks} ticks_per_{unit}={per_unit}")
        }
    }
}
