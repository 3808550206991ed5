//! What the kernel counts about each partition, as the service VM reads it
//! through [`Call::Usage`](crate::Call::Usage): its traps by kind (hypercalls
//! among them), the time its vCPUs ran over its core's last frames, and the
//! messages waiting on the queues it receives from. The one place of the
//! record's layout; the kernel writes it with [`Usage::to_words`], the service
//! VM reads it with [`Usage::from_words`].
//!
//! The counts are since boot (a restart does not reset them): a reader takes
//! two records and divides the difference by the difference of their
//! [`Usage::time_us`] for a rate.

/// Why a vCPU entered the kernel, as the kernel counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum TrapKind {
    /// A Septum hypercall (the null call answered on the back end's fast path
    /// is not counted: it never reaches the portable core).
    Hypercall = 0,
    /// An SMCCC call (aarch64: PSCI through `hvc #0`).
    Smccc = 1,
    /// The vCPU waited for an event (WFI/WFE, HLT).
    Wait = 2,
    /// Its turn ended (the timer took the core back).
    Preempted = 3,
    /// Another core asked this one to look again.
    Kicked = 4,
    /// A fault or trapped access that went to the full path (reported,
    /// supervised, or emulated there).
    Fault = 5,
    /// An access the kernel emulated on its fast lane (a Linux partition's
    /// GIC, SGI register and UART; the virtio devices).
    Emulated = 6,
}

impl TrapKind {
    /// Every kind, in number order.
    pub const ALL: [TrapKind; 7] = [
        TrapKind::Hypercall,
        TrapKind::Smccc,
        TrapKind::Wait,
        TrapKind::Preempted,
        TrapKind::Kicked,
        TrapKind::Fault,
        TrapKind::Emulated,
    ];

    /// Its index in [`Usage::traps`].
    pub const fn number(self) -> usize {
        self as usize
    }

    /// A short name for the console.
    pub const fn name(self) -> &'static str {
        match self {
            TrapKind::Hypercall => "hypercall",
            TrapKind::Smccc => "smccc",
            TrapKind::Wait => "wait",
            TrapKind::Preempted => "preempted",
            TrapKind::Kicked => "kicked",
            TrapKind::Fault => "fault",
            TrapKind::Emulated => "emulated",
        }
    }
}

/// Words of a [`Call::Usage`](crate::Call::Usage) record.
pub const USAGE_WORDS: usize = 6 + TrapKind::ALL.len();

/// A partition's counters, as [`Call::Usage`](crate::Call::Usage) reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// When the kernel took the record, in µs since boot (its schedule's clock).
    pub time_us: u64,
    /// Length of one frame of the partition's core: its schedule's major frame,
    /// or the kernel's accounting period on a core without one.
    pub frame_us: u64,
    /// Whole frames the share is measured over: the last ones before the
    /// current frame (fewer just after boot).
    pub frames: u64,
    /// Time its vCPUs ran in those frames, in µs (a partition with vCPUs on
    /// several cores may run longer than the frames last).
    pub run_us: u64,
    /// Messages waiting now on the queues it receives from.
    pub waiting: u64,
    /// The depths of those queues, summed: the most that can wait.
    pub depth: u64,
    /// Traps since boot, by [`TrapKind::number`].
    pub traps: [u64; TrapKind::ALL.len()],
}

impl Usage {
    /// The record's words: time, frame length, frames, time run, waiting,
    /// depth, then the traps by kind.
    pub fn to_words(&self) -> [u64; USAGE_WORDS] {
        let mut words = [0; USAGE_WORDS];
        words[..6].copy_from_slice(&[
            self.time_us,
            self.frame_us,
            self.frames,
            self.run_us,
            self.waiting,
            self.depth,
        ]);
        words[6..].copy_from_slice(&self.traps);
        words
    }

    /// The counters a record's words give.
    pub fn from_words(words: &[u64; USAGE_WORDS]) -> Usage {
        let mut traps = [0; TrapKind::ALL.len()];
        traps.copy_from_slice(&words[6..]);
        Usage {
            time_us: words[0],
            frame_us: words[1],
            frames: words[2],
            run_us: words[3],
            waiting: words[4],
            depth: words[5],
            traps,
        }
    }

    /// Hypercalls since boot.
    pub fn hypercalls(&self) -> u64 {
        self.traps[TrapKind::Hypercall.number()]
    }

    /// Traps of every kind since boot.
    pub fn traps_total(&self) -> u64 {
        self.traps.iter().sum()
    }

    /// The share of its frames it ran, in per mille (0 before a whole frame).
    pub fn share_permille(&self) -> u64 {
        match self.frames * self.frame_us {
            0 => 0,
            span => self.run_us * 1000 / span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001, SK-AUD-008
    #[test]
    fn usage_records_round_trip_and_kinds_are_numbered_in_order() {
        let usage = Usage {
            time_us: 1,
            frame_us: 10_000,
            frames: 15,
            run_us: 60_000,
            waiting: 5,
            depth: 16,
            traps: [7, 6, 5, 4, 3, 2, 1],
        };
        assert_eq!(Usage::from_words(&usage.to_words()), usage);
        assert_eq!(usage.hypercalls(), 7);
        assert_eq!(usage.traps_total(), 28);
        assert_eq!(usage.share_permille(), 400);
        assert_eq!(Usage::default().share_permille(), 0);
        for (number, kind) in TrapKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.number(), number);
            assert!(!kind.name().is_empty());
        }
    }
}
