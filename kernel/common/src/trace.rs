//! The kernel's trace rings, one per core (the record and the ring's logic are
//! the core's: `septum_core::trace`).
//!
//! The kernel pushes records while it holds its lock: each core into its own
//! ring, one record per event, so tracing costs the same bounded work per event
//! whatever the ring holds. When the system ends (power-off), the kernel sends
//! every ring out on the log channel ([`Trace::send_out`]): for each core a
//! `trace-ring` frame with its counts, then its records oldest first, in their
//! wire form, [`RECORDS_PER_FRAME`] to a `trace-records` frame. Nothing is sent
//! while partitions run, so no window pays for it.
//!
//! Invariant: the memory of the rings is the kernel's alone from boot on (taken
//! from the free frames before any partition is placed there).

use heapless::Vec;
use septum_core::memory::FreeRanges;
use septum_core::system::MAX_CPUS;
use septum_core::trace::{RECORD_BYTES, Record, Ring, Slot};

use crate::paging::PAGE;

/// Records each core's ring holds.
pub const RING_RECORDS: usize = 4096;
/// Records sent in one frame at the end.
pub const RECORDS_PER_FRAME: usize = 16;

/// One trace ring per core.
pub struct Trace {
    rings: Vec<Ring<'static>, MAX_CPUS>,
}

/// Takes memory for `cpus` rings (at most [`MAX_CPUS`]) from `frames`.
pub fn trace_rings<const N: usize>(frames: &mut FreeRanges<N>, cpus: usize) -> Trace {
    let cpus = cpus.clamp(1, MAX_CPUS);
    let slots = cpus * RING_RECORDS;
    let memory = frames
        .allocate((slots * size_of::<Slot>()) as u64, PAGE)
        .expect("RAM for the trace rings");
    // SAFETY: the range was free and is now the kernel's alone, for as long as the
    // kernel runs; RAM is mapped at its physical address; the range is
    // page-aligned, so aligned for the slots' words, and the slice covers exactly
    // the range. Any bits are valid words.
    let slots = unsafe { core::slice::from_raw_parts_mut(memory.start as *mut Slot, slots) };
    Trace::over(slots)
}

impl Trace {
    /// Rings of [`RING_RECORDS`] over `slots`, one per core for as many cores
    /// as it has room for (at most [`MAX_CPUS`]).
    pub fn over(slots: &'static mut [Slot]) -> Trace {
        let rings = slots
            .chunks_exact_mut(RING_RECORDS)
            .take(MAX_CPUS)
            .map(Ring::new)
            .collect();
        Trace { rings }
    }

    /// Adds `record` to core `cpu`'s ring (a core without one records nothing).
    pub(crate) fn push(&mut self, cpu: usize, record: &Record) {
        if let Some(ring) = self.rings.get_mut(cpu) {
            ring.push(record);
        }
    }

    /// Core `cpu`'s records, oldest first (for the kernel loop's tests).
    #[cfg(test)]
    pub(crate) fn records(&self, cpu: usize) -> alloc::vec::Vec<Record> {
        self.rings[cpu]
            .records()
            .map(|bytes| Record::decode(&bytes).expect("a record the ring wrote"))
            .collect()
    }

    /// Sends every ring out on the log channel (see the module documentation).
    pub(crate) fn send_out(&self) {
        for (cpu, ring) in self.rings.iter().enumerate() {
            defmt::info!(
                "trace-ring cpu={=usize} held={=usize} overwritten={=u64}",
                cpu,
                ring.len(),
                ring.overwritten()
            );
            let mut chunk = [0u8; RECORDS_PER_FRAME * RECORD_BYTES];
            let mut filled = 0;
            for record in ring.records() {
                chunk[filled..filled + RECORD_BYTES].copy_from_slice(&record);
                filled += RECORD_BYTES;
                if filled == chunk.len() {
                    send_chunk(cpu, &chunk);
                    filled = 0;
                }
            }
            if filled > 0 {
                send_chunk(cpu, &chunk[..filled]);
            }
        }
    }
}

fn send_chunk(cpu: usize, records: &[u8]) {
    defmt::info!("trace-records cpu={=usize} {=[u8]}", cpu, records);
}
