//! Temporal partitioning: the fixed cyclic schedule of one core, ARINC 653 style. A
//! major frame repeats for ever; within it, time windows belong to partitions. A
//! partition runs only inside its own windows; when its window ends the kernel takes
//! the core back, and time that belongs to nobody (or to a partition that cannot
//! run) is idle.
//!
//! Invariants (property-tested below):
//! - [`Schedule::at`] names a partition only inside one of that partition's windows,
//!   and the deadline it gives is that window's end, never later;
//! - the windows of one core never overlap (checked by [`Schedule::new`]; the
//!   description validator also rejects such systems);
//! - the windows are kept in time order, so finding the one at an instant is a
//!   binary search: its cost grows with the log of the core's windows only.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::package::Package;

/// One window of the schedule (kept small: a system has up to 64 per core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The partition (package index) that owns the window.
    pub partition: u8,
    /// Start, in µs from the start of the frame.
    pub offset_us: u32,
    /// End, in µs from the start of the frame.
    pub end_us: u32,
}

/// What the schedule says about an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// `partition` owns the core until `until_us`.
    Window {
        /// The window's owner.
        partition: usize,
        /// When the window ends (µs since the schedule began).
        until_us: u64,
    },
    /// Nobody owns the core until `until_us`.
    Gap {
        /// When the next window starts (µs since the schedule began).
        until_us: u64,
    },
}

/// Why a schedule was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The major frame is zero.
    EmptyFrame,
    /// A window is empty, ends after the frame, or overlaps another on the core.
    BadWindow(usize),
}

/// The schedule of one core.
#[derive(Clone, Debug)]
pub struct Schedule {
    frame_us: u64,
    slots: Box<[Slot]>,
}

impl Schedule {
    /// The schedule of core `cpu` in `package`, or `None` if the system has no major
    /// frame (its partitions then share the core round-robin).
    pub fn for_cpu(package: &Package<'_>, cpu: u32) -> Option<Result<Schedule, ScheduleError>> {
        let frame = u64::from(package.major_frame_us()?);
        let mut windows = Vec::new();
        for (partition, spec) in package.partitions().enumerate() {
            let mine = spec.resources.windows().iter().filter(|w| w.cpu == cpu);
            windows.extend(mine.map(|w| Slot {
                // A package has at most MAX_PARTITIONS (64) partitions.
                partition: partition as u8,
                offset_us: w.offset_us,
                end_us: w.offset_us.saturating_add(w.length_us),
            }));
        }
        Some(Schedule::new(frame, windows))
    }

    /// A schedule with major frame `frame_us` and these windows.
    pub fn new(
        frame_us: u64,
        windows: impl IntoIterator<Item = Slot>,
    ) -> Result<Schedule, ScheduleError> {
        if frame_us == 0 {
            return Err(ScheduleError::EmptyFrame);
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (index, slot) in windows.into_iter().enumerate() {
            let fits = slot.offset_us < slot.end_us && u64::from(slot.end_us) <= frame_us;
            let overlaps = slots
                .iter()
                .any(|other| slot.offset_us < other.end_us && other.offset_us < slot.end_us);
            if !fits || overlaps {
                return Err(ScheduleError::BadWindow(index));
            }
            slots.push(slot);
        }
        slots.sort_unstable_by_key(|slot| slot.offset_us);
        Ok(Schedule {
            frame_us,
            slots: slots.into_boxed_slice(),
        })
    }

    /// The major frame in µs.
    pub fn frame_us(&self) -> u64 {
        self.frame_us
    }

    /// The windows, in time order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Who owns the core at `now_us` (µs since the schedule began), and until when.
    pub fn at(&self, now_us: u64) -> Turn {
        let frame_start = now_us - now_us % self.frame_us;
        let offset = now_us - frame_start;
        let starts = |s: &Slot| u64::from(s.offset_us);
        // The windows before `later` start at or before `offset`; only the last of
        // them can hold it, since windows do not overlap.
        let later = self.slots.partition_point(|s| starts(s) <= offset);
        if let Some(slot) = later.checked_sub(1).map(|index| &self.slots[index])
            && offset < u64::from(slot.end_us)
        {
            return Turn::Window {
                partition: usize::from(slot.partition),
                until_us: frame_start + u64::from(slot.end_us),
            };
        }
        let next_start = self.slots.get(later).map(starts).map_or_else(
            // No later window in this frame: the first one of the next frame.
            || frame_start + self.frame_us + self.slots.first().map_or(0, starts),
            |start| frame_start + start,
        );
        Turn::Gap {
            until_us: next_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(partition: u8, offset_us: u32, end_us: u32) -> Slot {
        Slot {
            partition,
            offset_us,
            end_us,
        }
    }

    /// Verifies: SK-TMP-001
    #[test]
    fn windows_gaps_and_frames() {
        let schedule = Schedule::new(10_000, [slot(1, 2_000, 6_000), slot(0, 0, 1_000)]).unwrap();
        assert_eq!(
            schedule.at(0),
            Turn::Window {
                partition: 0,
                until_us: 1_000
            }
        );
        assert_eq!(
            schedule.at(999),
            Turn::Window {
                partition: 0,
                until_us: 1_000
            }
        );
        assert_eq!(schedule.at(1_000), Turn::Gap { until_us: 2_000 });
        assert_eq!(
            schedule.at(5_999),
            Turn::Window {
                partition: 1,
                until_us: 6_000
            }
        );
        assert_eq!(schedule.at(6_000), Turn::Gap { until_us: 10_000 });
        assert_eq!(
            schedule.at(10_500),
            Turn::Window {
                partition: 0,
                until_us: 11_000
            }
        );
        assert_eq!(schedule.at(37_000), Turn::Gap { until_us: 40_000 });
    }

    /// Verifies: SK-TMP-001
    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(Schedule::new(0, []).unwrap_err(), ScheduleError::EmptyFrame);
        let overlap = [slot(0, 0, 500), slot(1, 400, 600)];
        assert_eq!(
            Schedule::new(1_000, overlap).unwrap_err(),
            ScheduleError::BadWindow(1)
        );
        assert_eq!(
            Schedule::new(1_000, [slot(0, 900, 1_100)]).unwrap_err(),
            ScheduleError::BadWindow(0)
        );
        assert_eq!(
            Schedule::new(1_000, [slot(0, 5, 5)]).unwrap_err(),
            ScheduleError::BadWindow(0)
        );
    }

    proptest! {
        /// At any instant, a named owner is inside one of its own windows and its
        /// deadline is that window's end; a gap lasts until the next window starts.
        /// Verifies: SK-TMP-001
        #[test]
        fn owners_only_run_inside_their_windows(
            cuts in proptest::collection::btree_set(1u32..999, 2..12),
            now in 0u64..1_000_000,
        ) {
            let cuts: Vec<u32> = cuts.into_iter().collect();
            let windows = cuts.chunks_exact(2).enumerate().map(|(i, pair)| slot((i % 3) as u8, pair[0], pair[1]));
            let schedule = Schedule::new(1_000, windows).unwrap();
            let offset = now % 1_000;
            match schedule.at(now) {
                Turn::Window { partition, until_us } => {
                    let window = schedule.slots().iter().find(|s| u64::from(s.offset_us) <= offset && offset < u64::from(s.end_us));
                    prop_assert_eq!(window.map(|s| usize::from(s.partition)), Some(partition));
                    prop_assert_eq!(until_us, now - offset + u64::from(window.unwrap().end_us));
                }
                Turn::Gap { until_us } => {
                    prop_assert!(schedule.slots().iter().all(|s| offset < u64::from(s.offset_us) || offset >= u64::from(s.end_us)));
                    prop_assert!(until_us > now);
                    let next_is_window = matches!(schedule.at(until_us), Turn::Window { .. });
                    prop_assert!(next_is_window);
                }
            }
        }
    }
}
