//! The audit ring: a bounded record of every security-relevant event (traps,
//! faults, missed heartbeats, restarts, stops, resumes, policy changes and refused
//! hypercalls), which the service VM reads through its system capability.
//!
//! Invariants:
//! - the ring never grows past [`AUDIT_CAPACITY`] records;
//! - a record is lost only when the ring is full, and every loss is counted: the
//!   number of records ever written equals those read plus those held plus
//!   [`AuditRing::lost`].

use heapless::Deque;
pub use septum_abi::audit::{
    Kind as AuditKind, RECORD_SIZE as AUDIT_RECORD_SIZE, Record as AuditRecord,
};

/// Records the ring holds before the oldest are lost.
pub const AUDIT_CAPACITY: usize = 64;

/// The ring.
#[derive(Debug, Default)]
pub struct AuditRing {
    records: Deque<AuditRecord, AUDIT_CAPACITY>,
    lost: u64,
}

impl AuditRing {
    /// Adds a record; when the ring is full the oldest record is dropped and counted.
    pub fn push(&mut self, record: AuditRecord) {
        if self.records.is_full() {
            self.records.pop_front();
            self.lost += 1;
        }
        // Cannot fail: there is room now.
        let _ = self.records.push_back(record);
    }

    /// Takes the oldest record.
    pub fn pop(&mut self) -> Option<AuditRecord> {
        self.records.pop_front()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the ring holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records lost to overflow since boot.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(time_us: u64) -> AuditRecord {
        AuditRecord {
            time_us,
            partition: 2,
            kind: AuditKind::Restart,
            generation: 7,
            detail: [8, 1],
        }
    }

    proptest! {
        /// Verifies: SK-AUD-004
        #[test]
        fn overflow_is_counted_never_silent(ops in proptest::collection::vec(any::<bool>(), 0..400)) {
            let mut ring = AuditRing::default();
            let (mut written, mut read) = (0u64, 0u64);
            let mut last_taken = None;
            for push in ops {
                if push {
                    ring.push(record(written));
                    written += 1;
                } else if let Some(taken) = ring.pop() {
                    // Oldest first.
                    prop_assert!(last_taken.is_none_or(|last| taken.time_us > last));
                    last_taken = Some(taken.time_us);
                    read += 1;
                }
                prop_assert!(ring.len() <= AUDIT_CAPACITY);
                prop_assert_eq!(ring.is_empty(), written == read + ring.lost());
                prop_assert_eq!(written, read + ring.len() as u64 + ring.lost());
            }
        }
    }
}
