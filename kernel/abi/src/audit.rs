//! The audit ring, as [`Call::AuditRead`](crate::Call::AuditRead) copies it out:
//! the [`Record`] and its wire layout.
//!
//! A record is [`RECORD_SIZE`] bytes: 4 little-endian 64-bit words: µs since boot;
//! the partition index (bits 0-7), the [`Kind`] (bits 8-15) and the partition's
//! generation (bits 32-63); then two kind-specific words (see [`Kind`]). Only
//! [`Record::to_words`] and [`Record::from_words`] know the layout.

/// Bytes of one record.
pub const RECORD_SIZE: usize = 32;

/// What the record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A policy trap: reason number, address.
    Trap = 1,
    /// A fault: reason number, address.
    Fault = 2,
    /// A missed heartbeat: period µs, µs late.
    Watchdog = 3,
    /// A restart: new generation, restarts in the current budget period.
    Restart = 4,
    /// A stop: 1 by the service VM, 2 by its policy, 3 past its restart budget.
    Stop = 5,
    /// A policy change: [`TrapClass`](crate::TrapClass) number, [`TrapAction`](crate::TrapAction)
    /// number.
    Policy = 6,
    /// A refused hypercall: call number, error code.
    CapabilityError = 7,
    /// A virtio driver's violation: the device's
    /// [`Device::id`](crate::virtio::Device::id), the
    /// [`Violation`](crate::virtio::Violation) number (bits 0-7) and, for a
    /// refused page list, the [`Error`](crate::Error) code (bits 8-15).
    Device = 9,
    /// A resume by the service VM: flags, 0.
    Resume = 8,
    /// A change of a devirtualizable partition's translation or memory: the
    /// [`Relocation`] step number, pages concerned (0 where none).
    Relocation = 10,
}

/// What a [`Kind::Relocation`] record reports (its first detail word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relocation {
    /// The partition was taken under the kernel's translation.
    Virtualized = 1,
    /// An evacuation of machine frames began (pages: the range's).
    EvacuationBegun = 2,
    /// The evacuation ended (pages: the range's).
    Evacuated = 3,
    /// A devirtualization began.
    DevirtualizationBegun = 4,
    /// Every page is at its home frame and the translation is off.
    Devirtualized = 5,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 10] = [
        Kind::Trap,
        Kind::Fault,
        Kind::Watchdog,
        Kind::Restart,
        Kind::Stop,
        Kind::Policy,
        Kind::CapabilityError,
        Kind::Resume,
        Kind::Device,
        Kind::Relocation,
    ];

    /// The kind with this number.
    pub fn from_number(number: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == number)
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Trap => "trap",
            Kind::Fault => "fault",
            Kind::Watchdog => "watchdog",
            Kind::Restart => "restart",
            Kind::Stop => "stop",
            Kind::Policy => "policy",
            Kind::CapabilityError => "capability-error",
            Kind::Resume => "resume",
            Kind::Device => "device",
            Kind::Relocation => "relocation",
        }
    }
}

/// Words of one record.
pub const RECORD_WORDS: usize = RECORD_SIZE / 8;

/// One audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// µs since boot.
    pub time_us: u64,
    /// The partition's index.
    pub partition: u8,
    /// What happened.
    pub kind: Kind,
    /// The partition's generation at the time.
    pub generation: u32,
    /// Kind-specific details (see [`Kind`]).
    pub detail: [u64; 2],
}

impl Record {
    /// The record's words.
    pub fn to_words(&self) -> [u64; RECORD_WORDS] {
        let identity = u64::from(self.partition)
            | (u64::from(self.kind as u8) << 8)
            | (u64::from(self.generation) << 32);
        [self.time_us, identity, self.detail[0], self.detail[1]]
    }

    /// The record's bytes (its words, little-endian).
    pub fn to_bytes(&self) -> [u8; RECORD_SIZE] {
        let mut bytes = [0; RECORD_SIZE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Reads a record from its words; `None` if its kind is not one the ABI
    /// defines.
    pub fn from_words(words: &[u64; RECORD_WORDS]) -> Option<Record> {
        let identity = words[1];
        Some(Record {
            time_us: words[0],
            partition: identity as u8,
            kind: Kind::from_number((identity >> 8) as u8)?,
            generation: (identity >> 32) as u32,
            detail: [words[2], words[3]],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001, SK-AUD-004
    #[test]
    fn records_round_trip_and_lay_out_as_documented() {
        for kind in Kind::ALL {
            let record = Record {
                time_us: 0x1234,
                partition: 2,
                kind,
                generation: 7,
                detail: [8, 1],
            };
            let words = record.to_words();
            assert_eq!(words, [0x1234, 2 | ((kind as u64) << 8) | (7 << 32), 8, 1]);
            assert_eq!(Record::from_words(&words), Some(record));
            assert_eq!(record.to_bytes()[8..16], words[1].to_le_bytes());
        }
        assert_eq!(
            Record::from_words(&[0; RECORD_WORDS]),
            None,
            "kind 0 is none"
        );
    }
}
