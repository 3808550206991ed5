//! What the kernel counts about one partition, for the service VM's status
//! view ([`Call::Usage`](septum_abi::Call::Usage)): its traps by kind since
//! boot, and the time its vCPUs ran in each of the last [`FRAMES`] frames of its
//! core.
//!
//! Frames are the schedule's major frames where the partition's core has a
//! schedule (they start at multiples of the frame length on the kernel's clock,
//! as the schedule's do), else periods of [`DEFAULT_FRAME_US`]. The time a vCPU
//! ran is charged as an interval ([`Usage::ran`]) when it leaves its core or its
//! turn ends; an interval that spans frames is split at their boundaries.
//!
//! Invariants:
//! - a frame's slot holds only time inside that frame: slot `f % FRAMES` belongs
//!   to frame `f` for the [`FRAMES`] frames up to the latest one seen, and is
//!   zeroed before a later frame takes it over;
//! - time older than the frames kept is dropped, never charged to a later frame;
//! - the counts only grow (they wrap only after 2^64 traps).

use septum_abi::usage::{TrapKind, Usage as Record};

/// Frames whose run time is kept: the share is measured over the last
/// `FRAMES - 1` whole ones (the current frame is still running).
pub const FRAMES: usize = 16;

/// Length of a frame on a core without a schedule, in µs.
pub const DEFAULT_FRAME_US: u64 = 10_000;

/// One partition's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    traps: [u64; TrapKind::ALL.len()],
    frame_us: u64,
    /// The latest frame seen (its number: start time / frame length).
    latest: u64,
    /// µs run in frame `f`, at `f % FRAMES`, for the frames up to `latest`.
    run_us: [u64; FRAMES],
}

impl Usage {
    /// Nothing counted yet, over frames of `frame_us` µs (at least 1).
    pub fn new(frame_us: u64) -> Usage {
        Usage {
            traps: [0; TrapKind::ALL.len()],
            frame_us: frame_us.max(1),
            latest: 0,
            run_us: [0; FRAMES],
        }
    }

    /// Counts one trap of `kind`.
    pub fn count(&mut self, kind: TrapKind) {
        let count = &mut self.traps[kind.number()];
        *count = count.wrapping_add(1);
    }

    /// Traps of `kind` counted since boot.
    pub fn count_of(&self, kind: TrapKind) -> u64 {
        self.traps[kind.number()]
    }

    /// Charges the time from `from_us` to `to_us` (the kernel's clock) as run,
    /// split over the frames it spans. Intervals may come in any order (vCPUs
    /// on several cores); one that ends before it starts charges nothing.
    pub fn ran(&mut self, from_us: u64, to_us: u64) {
        let mut at = from_us;
        while at < to_us {
            let frame = at / self.frame_us;
            let end = to_us.min((frame + 1) * self.frame_us);
            self.reach(frame);
            if frame + FRAMES as u64 > self.latest {
                self.run_us[frame as usize % FRAMES] += end - at;
            }
            at = end;
        }
    }

    /// Makes `frame` seen: the slots of the frames after the latest one up to it
    /// are zeroed and handed over.
    fn reach(&mut self, frame: u64) {
        if frame <= self.latest {
            return;
        }
        let fresh = (frame - self.latest).min(FRAMES as u64);
        for step in 0..fresh {
            self.run_us[(frame - step) as usize % FRAMES] = 0;
        }
        self.latest = frame;
    }

    /// The record at `now_us`: the counts, and the time run over the whole
    /// frames before the current one that are kept (none before the first ends).
    /// Waiting messages and queue depths are the queues' (left 0 here).
    pub fn record(&mut self, now_us: u64) -> Record {
        let current = now_us / self.frame_us;
        self.reach(current);
        let frames = current.min(FRAMES as u64 - 1);
        let run_us = (1..=frames)
            .map(|back| self.run_us[(current - back) as usize % FRAMES])
            .sum();
        Record {
            time_us: now_us,
            frame_us: self.frame_us,
            frames,
            run_us,
            traps: self.traps,
            ..Record::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Verifies: SK-AUD-008
    #[test]
    fn traps_are_counted_by_kind() {
        let mut usage = Usage::new(1000);
        usage.count(TrapKind::Hypercall);
        usage.count(TrapKind::Hypercall);
        usage.count(TrapKind::Preempted);
        let record = usage.record(0);
        assert_eq!(record.hypercalls(), 2);
        assert_eq!(record.traps[TrapKind::Preempted.number()], 1);
        assert_eq!(record.traps_total(), 3);
    }

    /// Verifies: SK-AUD-008, SK-AUD-009
    #[test]
    fn a_window_in_every_frame_gives_its_share() {
        // A 4 ms window in each 10 ms frame, for 40 frames.
        let mut usage = Usage::new(10_000);
        for frame in 0..40 {
            let start = frame * 10_000 + 2_000;
            usage.ran(start, start + 4_000);
        }
        let record = usage.record(400_500);
        assert_eq!(record.frames, FRAMES as u64 - 1);
        assert_eq!(record.run_us, 4_000 * (FRAMES as u64 - 1));
        assert_eq!(record.share_permille(), 400);
        // Just after boot, only the whole frames so far count.
        let mut early = Usage::new(10_000);
        early.ran(2_000, 6_000);
        early.ran(12_000, 16_000);
        assert_eq!(early.record(5_000).frames, 0);
        assert_eq!(early.record(5_000).share_permille(), 0);
        let record = early.record(25_000);
        assert_eq!((record.frames, record.run_us), (2, 8_000));
    }

    /// Verifies: SK-AUD-008
    #[test]
    fn time_is_split_at_frame_boundaries_and_old_time_is_dropped() {
        let mut usage = Usage::new(1_000);
        usage.ran(500, 2_500);
        assert_eq!(usage.run_us[..3], [500, 1_000, 500]);
        // Long past: every slot handed over, the old time gone.
        usage.ran(100_000, 100_100);
        usage.ran(600, 700);
        let record = usage.record(101_000);
        assert_eq!(record.run_us, 100);
        // An interval that ends before it starts charges nothing.
        usage.ran(101_500, 101_400);
        assert_eq!(usage.record(102_000).run_us, 100);
    }

    proptest! {
        /// Whatever intervals are charged, in whatever order, the time counted
        /// over the kept frames is exactly the part of the intervals inside
        /// them, and never more than the frames last times the overlap.
        /// Verifies: SK-AUD-008, SK-AUD-009
        #[test]
        fn the_time_counted_is_the_time_inside_the_kept_frames(
            frame_us in 1u64..5_000,
            intervals in proptest::collection::vec((0u64..200_000, 0u64..20_000), 0..40),
            later in 0u64..50_000,
        ) {
            let mut usage = Usage::new(frame_us);
            let mut end_max = 0;
            for &(start, length) in &intervals {
                usage.ran(start, start + length);
                end_max = end_max.max(start + length);
            }
            let now = end_max + later;
            let record = usage.record(now);
            let current = now / frame_us;
            let first = current - record.frames;
            let (from, to) = (first * frame_us, current * frame_us);
            // Only intervals charged while their frame was still kept count:
            // replay the same order to know which.
            let mut latest = 0u64;
            let mut expected = 0;
            for &(start, length) in &intervals {
                let mut at = start;
                while at < start + length {
                    let frame = at / frame_us;
                    let end = (start + length).min((frame + 1) * frame_us);
                    latest = latest.max(frame);
                    if frame + FRAMES as u64 > latest && at >= from && end <= to {
                        expected += end - at;
                    }
                    at = end;
                }
            }
            prop_assert_eq!(record.run_us, expected);
            prop_assert!(record.frames < FRAMES as u64);
        }
    }
}
