//! A fake of the second-stage tables for the host tests of the ledgers that
//! drive them ([`crate::flip`], [`crate::balloon`]): it records every mapping,
//! flush, scrub and copy, and panics on a map over a mapped page or an unmap of
//! an unmapped one, so a test can check the tables always agree with a ledger.

use std::collections::{BTreeMap, BTreeSet};

use crate::flip::Pages;

/// The tables as a ledger drives them, and which frames hold data (a test
/// marks frames a guest wrote in `dirty`; a scrub clears them).
#[derive(Default, Debug)]
pub struct FakePages {
    /// (partition, guest address) to frame.
    pub mapped: BTreeMap<(usize, u64), u64>,
    /// Frames written since their last scrub.
    pub dirty: BTreeSet<u64>,
    /// Every frame scrubbed, in order.
    pub scrubbed: Vec<u64>,
    /// Translation flushes.
    pub flushes: usize,
    /// Every copy: (from, to, length).
    pub copies: Vec<(u64, u64, u64)>,
}

impl Pages for FakePages {
    fn map_page(&mut self, partition: usize, guest: u64, frame: u64) {
        let previous = self.mapped.insert((partition, guest), frame);
        assert_eq!(previous, None, "mapped over a mapped page");
    }
    fn unmap_page(&mut self, partition: usize, guest: u64) {
        assert!(
            self.mapped.remove(&(partition, guest)).is_some(),
            "unmapped a page that was not mapped"
        );
    }
    fn flush_translations(&mut self, _partition: usize) {
        self.flushes += 1;
    }
    fn scrub_page(&mut self, frame: u64) {
        self.dirty.remove(&frame);
        self.scrubbed.push(frame);
    }
    fn copy(&mut self, from: u64, to: u64, len: u64) {
        self.copies.push((from, to, len));
    }
}
