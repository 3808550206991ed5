//! Time on x86: the TSC, calibrated once at boot against the 8254 PIT (whose rate,
//! 1,193,182 Hz, is fixed on every PC), and the VMX preemption timer that takes the
//! CPU back from a partition when its time is up; and the idle wait on the TSC
//! clock ([`Clock::idle_until`], which sleeps in `idle.rs`).
//!
//! Invariant: each turn of a partition starts with a preemption-timer value derived
//! from its deadline (or the round-robin slice), written to its VMCS; the CPU saves
//! what is left on every exit, so traps during the turn do not extend it. The turn's
//! end is also kept as an absolute TSC value in the core's
//! [`PerCpu::turn_end_tsc`](crate::cpu::PerCpu::turn_end_tsc), and every entry
//! that continues a turn (the general exit path and the null-call fast path) checks
//! it: the timer alone is not enough, since an emulator may drop the part of a timer
//! period that elapsed before each exit, and exits every few dozen ticks would then
//! stop the timer altogether (Bochs does; `pc-windows-null` fails without the check).

use core::arch::asm;
use core::sync::atomic::Ordering;
use septum_kernel::Woken;
use x86_64::instructions::port::Port;

use septum_core::system::TurnEnd;

use crate::cpu;
use crate::idle::{self, Vectors};
use crate::vcpu;
use crate::vmx::{self, field};

const PIT_HZ: u64 = 1_193_182;
/// PIT ticks the calibration waits for: 10 ms.
const CALIBRATION_TICKS: u16 = 11_932;
const IA32_VMX_MISC: u32 = 0x485;
/// The round-robin time slice, for systems without a schedule.
const ROUND_ROBIN_SLICE_US: u64 = 10_000;

/// Makes the current VMCS's preemption timer expire at the next VM entry if the
/// TSC has passed the turn's end, whatever value the timer has left.
pub fn expire_if_turn_over() {
    if tsc() >= cpu::this_core().turn_end_tsc.load(Ordering::Relaxed) {
        vmx::write(field::PREEMPTION_TIMER, 0);
    }
}

/// Reads the time-stamp counter.
pub fn tsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `lfence; rdtsc` reads the counter and touches no memory.
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// The calibrated clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    ticks_per_us: u64,
    /// The preemption timer counts down once every 2^shift TSC ticks.
    preemption_shift: u32,
}

impl Clock {
    /// Measures the TSC against 10 ms of PIT channel 2 (gated through port 0x61,
    /// speaker off).
    ///
    /// # Safety
    /// Must run once at boot with interrupts off; it reprograms PIT channel 2.
    pub unsafe fn calibrate() -> Clock {
        let mut gate = Port::<u8>::new(0x61);
        let mut command = Port::<u8>::new(0x43);
        let mut channel2 = Port::<u8>::new(0x42);
        // SAFETY: per this function's contract the PIT's channel 2 is ours; the
        // sequence is the PIT's documented one-shot programming.
        let elapsed = unsafe {
            let control = gate.read();
            gate.write((control & !0x02) | 0x01);
            command.write(0b1011_0000); // channel 2, low then high byte, mode 0
            let [low, high] = CALIBRATION_TICKS.to_le_bytes();
            channel2.write(low);
            channel2.write(high);
            let start = tsc();
            while gate.read() & 0x20 == 0 {
                core::hint::spin_loop();
            }
            tsc() - start
        };
        let hz = elapsed * PIT_HZ / u64::from(CALIBRATION_TICKS);
        Clock {
            ticks_per_us: (hz / 1_000_000).max(1),
            preemption_shift: (vmx::read_msr(IA32_VMX_MISC) & 0x1f) as u32,
        }
    }

    /// TSC ticks per microsecond.
    pub fn ticks_per_us(&self) -> u64 {
        self.ticks_per_us
    }

    /// Microseconds since the TSC started.
    pub fn now_us(&self) -> u64 {
        tsc() / self.ticks_per_us
    }

    /// Arms the current VMCS's preemption timer for the turn's end (a time, or
    /// the round-robin slice) and keeps that end for this core. A turn that
    /// never ends turns the VMCS's preemption timer off instead; the next turn
    /// with an end on this core turns it back on.
    pub fn set_deadline(&self, end: TurnEnd) {
        let core = cpu::this_core();
        let left_us = match end {
            TurnEnd::At(deadline_us) => deadline_us.saturating_sub(self.now_us()),
            TurnEnd::Slice => ROUND_ROBIN_SLICE_US,
            TurnEnd::Never => {
                core.turn_end_tsc.store(u64::MAX, Ordering::Relaxed);
                core.preemption_timer_off.store(true, Ordering::Relaxed);
                vcpu::set_preemption_timer(false);
                return;
            }
        };
        if core.preemption_timer_off.load(Ordering::Relaxed) {
            vcpu::set_preemption_timer(true);
        }
        let left_ticks = left_us.saturating_mul(self.ticks_per_us);
        core.turn_end_tsc
            .store(tsc().saturating_add(left_ticks), Ordering::Relaxed);
        let timer = left_ticks >> self.preemption_shift;
        vmx::write(field::PREEMPTION_TIMER, timer.min(u64::from(u32::MAX)));
    }

    /// Spins for `us` microseconds (at boot, to pace the start of the other
    /// cores).
    pub fn delay_us(&self, us: u64) {
        let until_us = self.now_us().saturating_add(us);
        while self.now_us() < until_us {
            core::hint::spin_loop();
        }
    }

    /// Sleeps in HLT until `until_us` (`u64::MAX`: no deadline) or a kick (see
    /// `idle.rs`); the interrupts for the kernel that come meanwhile (a
    /// partition's device, the console) go to `hand_on`, and the sleep goes on.
    pub fn idle_until(&self, until_us: u64, hand_on: impl Fn(Vectors)) -> Woken {
        let until_tsc = match until_us {
            u64::MAX => u64::MAX,
            _ => until_us.saturating_mul(self.ticks_per_us),
        };
        loop {
            let wait = idle::wait(until_tsc);
            if !wait.taken.is_empty() {
                hand_on(wait.taken);
            }
            if wait.kicked {
                return Woken::Kicked;
            }
            if tsc() >= until_tsc {
                return Woken::Time;
            }
        }
    }
}
