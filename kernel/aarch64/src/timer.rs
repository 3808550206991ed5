//! Time on aarch64: the system counter (CNTPCT_EL0, at CNTFRQ_EL0 ticks per second)
//! is the kernel's clock, and the EL2 physical timer (CNTHP, private interrupt 26)
//! takes the CPU back from a partition when its time is up.
//!
//! Invariants:
//! - while a partition runs, the timer is enabled and unmasked, set for its deadline
//!   or for the round-robin slice: the shared kernel sets a deadline before every
//!   entry to a partition, and nothing else enables the timer;
//! - when the timer interrupt is taken (`trap.rs`) or an idle wait ends, the timer is
//!   disabled before its interrupt is ended, so its level-sensitive line is low and
//!   the interrupt does not pend again before the next deadline is set;
//! - a deadline in µs becomes the first counter value at or after it, and the
//!   clock rounds down, so when the timer fires [`Timer::now_us`] has reached the
//!   deadline.

use core::arch::asm;
use core::num::NonZeroU64;

use aarch64_cpu::asm::{barrier, wfi};
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0, Readable, Writeable};

use septum_core::system::TurnEnd;
use septum_kernel::Woken;

use crate::gic;

/// The timer's interrupt: the EL2 non-secure physical timer's PPI (the value the
/// Server Base System Architecture fixes, and QEMU `virt`'s device tree gives).
pub const INTID: u32 = 26;
/// The round-robin time slice, for systems without a schedule.
const ROUND_ROBIN_SLICE_US: u64 = 10_000;
const MICROS_PER_SECOND: u64 = 1_000_000;
/// At most this many interrupts are drained after an idle wait (the timer is
/// disabled first, so normally only a kick that came late is found).
const DRAIN_LIMIT: usize = 32;

/// Microseconds on the system counter, for the kernel log's timestamps (which
/// need no [`Timer`] at hand); the same clock as [`Timer::now_us`].
pub fn counter_us() -> u64 {
    let frequency = CNTFRQ_EL0.get().max(1);
    (u128::from(CNTPCT_EL0.get()) * u128::from(MICROS_PER_SECOND) / u128::from(frequency)) as u64
}

/// The counter's rate, and the timer programmed from it.
#[derive(Clone, Copy, Debug)]
pub struct Timer {
    /// Counter ticks per second and microseconds per second, both divided by their
    /// greatest common divisor (at 62.5 MHz: 125 and 2), so that the products in
    /// conversions stay small.
    ticks: NonZeroU64,
    micros: NonZeroU64,
    /// The round-robin slice in counter ticks, as CNTHP_TVAL_EL2 takes it (a
    /// positive 32-bit signed count).
    slice_ticks: u64,
}

impl Timer {
    /// Reads the counter's frequency and disables the timer.
    ///
    /// Panics if CNTFRQ_EL0 is 0 (the firmware did not set it): the kernel cannot
    /// keep time.
    pub fn new() -> Timer {
        let frequency = NonZeroU64::new(CNTFRQ_EL0.get())
            .expect("CNTFRQ_EL0 is 0: the counter's rate is unknown");
        let divisor = gcd(frequency.get(), MICROS_PER_SECOND);
        let reduce = |value: u64| NonZeroU64::new(value / divisor).expect("a divisor of it");
        let ticks = reduce(frequency.get());
        let micros = reduce(MICROS_PER_SECOND);
        let slice_ticks = scale(ROUND_ROBIN_SLICE_US, ticks.get(), micros, true);
        disable();
        Timer {
            ticks,
            micros,
            slice_ticks: slice_ticks.min(i32::MAX as u64),
        }
    }

    /// Microseconds since the counter started (at boot); never goes backwards.
    pub fn now_us(&self) -> u64 {
        scale(CNTPCT_EL0.get(), self.micros.get(), self.ticks, false)
    }

    /// Arms the timer for the turn's end: at a time, or the round-robin slice
    /// from now; or disables it for a turn that never ends.
    pub fn set_deadline(&self, end: TurnEnd) {
        match end {
            TurnEnd::At(deadline) => set_compare(self.ticks_at(deadline)),
            TurnEnd::Never => {
                disable();
                return;
            }
            TurnEnd::Slice => {
                // SAFETY: writing CNTHP_TVAL_EL2 sets the EL2 timer's compare value
                // to the counter plus the slice (one write instead of a read and a
                // write); only the kernel uses that timer, and it touches no memory.
                unsafe {
                    asm!("msr cnthp_tval_el2, {}", in(reg) self.slice_ticks, options(nomem, nostack));
                }
            }
        }
        enable();
    }

    /// Sleeps in `wfi`, with interrupts masked, until the counter reaches
    /// `until_us` or another core kicks this one ([`gic::KICK`], pending since
    /// before the wait or arriving during it): the timer's interrupt and the kick
    /// wake `wfi`. A device interrupt that wakes it goes to `device` (which
    /// holds it for its owner or ends it). On return the timer is disabled and
    /// no kick or timer interrupt is pending or active in the GIC.
    pub fn idle_until(&self, until_us: u64, device: impl Fn(u32)) -> Woken {
        let until = self.ticks_at(until_us);
        set_compare(until);
        enable();
        let mut woken = Woken::Time;
        let mut take = |intid: u32| {
            if intid == gic::KICK {
                woken = Woken::Kicked;
            }
            if intid == gic::KICK || intid == INTID {
                gic::end(intid);
            } else {
                device(intid);
            }
        };
        while CNTPCT_EL0.get() < until {
            wfi();
            if let Some(intid) = gic::acknowledge() {
                take(intid);
                if intid == gic::KICK {
                    break;
                }
            }
        }
        disable();
        barrier::isb(barrier::SY);
        for _ in 0..DRAIN_LIMIT {
            let Some(intid) = gic::acknowledge() else {
                break;
            };
            take(intid);
        }
        woken
    }

    /// The first counter value at or after `us` microseconds.
    fn ticks_at(&self, us: u64) -> u64 {
        scale(us, self.ticks.get(), self.micros, true)
    }
}

/// Disables the timer, which lowers its interrupt line (takes effect at the next
/// context synchronisation).
pub fn disable() {
    CNTHP_CTL_EL2.set(0);
}

/// Sets the counter value the timer fires at.
fn set_compare(compare: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is the EL2 timer's compare value; only the kernel uses
    // that timer, and it touches no memory.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) compare, options(nomem, nostack)) };
}

/// Enables the timer, unmasked, to fire at the compare value just set.
fn enable() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// `value * numerator / denominator`, rounded down or (`up`) up, saturating at
/// `u64::MAX`. The product is taken in 128 bits, so it never overflows; the
/// division stays in 64 bits whenever the product fits there.
fn scale(value: u64, numerator: u64, denominator: NonZeroU64, up: bool) -> u64 {
    let product = u128::from(value) * u128::from(numerator);
    let round = if up { denominator.get() - 1 } else { 0 };
    match u64::try_from(product)
        .ok()
        .and_then(|p| p.checked_add(round))
    {
        Some(small) => small / denominator,
        None => {
            let quotient = (product + u128::from(round)) / u128::from(denominator.get());
            u64::try_from(quotient).unwrap_or(u64::MAX)
        }
    }
}

/// The greatest common divisor of two numbers, not both 0.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
