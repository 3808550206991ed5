//! Supervision events, as [`Call::WaitEvent`](crate::Call::WaitEvent) hands them to
//! the service VM: the [`Record`] the kernel fills and the service VM reads, and its
//! wire layout.
//!
//! A record is [`RECORD_SIZE`] bytes: 16 little-endian 64-bit words. Words 0 to 7
//! are the header (see the `WORD_*` constants). Words 8 to 15 are a register
//! snapshot for traps, faults and missed heartbeats (program counter, stack
//! pointer, status register (PSTATE / RFLAGS), then the first five argument
//! registers: x0-x4, or rax, rdi, rsi, rdx, r10), or the typed bytes for
//! [`Kind::Input`]. Only [`Record::to_words`] and [`Record::from_words`] know the
//! layout: neither side shifts words by hand.

use crate::Reason;

/// Bytes of one record.
pub const RECORD_SIZE: usize = 128;
/// Words of one record.
pub const RECORD_WORDS: usize = RECORD_SIZE / 8;
/// Word: the [`Kind`] number.
pub const WORD_KIND: usize = 0;
/// Word: the partition's index in the system (the service VM is 0).
pub const WORD_PARTITION: usize = 1;
/// Word: the partition's generation when the event happened.
pub const WORD_GENERATION: usize = 2;
/// Word: the [`Reason`] number (traps, faults, watchdog).
pub const WORD_REASON: usize = 3;
/// Word: the faulting address (guest-physical for stage-2 faults, the port for
/// I/O, else the program counter).
pub const WORD_ADDRESS: usize = 4;
/// Word: the raw syndrome (ESR on aarch64, exit qualification on x86).
pub const WORD_SYNDROME: usize = 5;
/// Word: kind-specific: the exit code ([`Kind::Exited`]); µs past the deadline
/// ([`Kind::Watchdog`]); the byte count ([`Kind::Input`]); the panic code; the
/// system register or MSR number where known; else 0.
pub const WORD_DETAIL: usize = 6;
/// Word: µs since boot when the event happened.
pub const WORD_TIME: usize = 7;
/// First word of the snapshot or the input bytes.
pub const WORD_SNAPSHOT: usize = 8;
/// Words of the snapshot.
pub const SNAPSHOT_WORDS: usize = 8;
/// Most input bytes one [`Kind::Input`] event carries.
pub const INPUT_MAX: usize = SNAPSHOT_WORDS * 8;

/// [`Call::WaitEvent`](crate::Call::WaitEvent) flag: return at once when no
/// event is queued, instead of blocking.
pub const NO_WAIT: u64 = 1;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// A guest took a trap its policy sends to the service VM; it is suspended.
    Trap = 1,
    /// A guest faulted (or reported a panic); it is suspended.
    Fault = 2,
    /// A guest missed its heartbeat; it is suspended.
    Watchdog = 3,
    /// A guest ended itself; nothing to decide.
    Exited = 4,
    /// The kernel stopped a guest (its policy said `stop`, or its restart budget
    /// ran out); nothing to decide.
    Stopped = 5,
    /// The operator typed the escape key: the service VM has the console until it
    /// gives it back. No partition is involved (partition word 0).
    Console = 6,
    /// Bytes the operator typed while the service VM has the console.
    Input = 7,
    /// A guest reported its memory use
    /// ([`Call::BalloonReport`](crate::Call::BalloonReport)); one is queued per
    /// guest at a time. Nothing to decide.
    Memory = 8,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 8] = [
        Kind::Trap,
        Kind::Fault,
        Kind::Watchdog,
        Kind::Exited,
        Kind::Stopped,
        Kind::Console,
        Kind::Input,
        Kind::Memory,
    ];

    /// The kind with this number.
    pub fn from_number(number: u64) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u64 == number)
    }

    /// Whether the partition waits, suspended, for the service VM's decision.
    pub fn suspends(self) -> bool {
        matches!(self, Kind::Trap | Kind::Fault | Kind::Watchdog)
    }
}

/// One supervision event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: Kind,
    /// The partition it concerns (0, the service VM, for console events).
    pub partition: u64,
    /// The partition's generation at the time.
    pub generation: u32,
    /// Why, for traps, faults and missed heartbeats.
    pub reason: Option<Reason>,
    /// The faulting address (see [`WORD_ADDRESS`]).
    pub address: u64,
    /// The raw syndrome.
    pub syndrome: u64,
    /// Kind-specific detail (see [`WORD_DETAIL`]).
    pub detail: u64,
    /// When it happened, in µs since boot (the kernel's clock).
    pub time_us: u64,
    /// The register snapshot, or the typed bytes of an input event.
    pub snapshot: [u64; SNAPSHOT_WORDS],
}

impl Record {
    /// A record of `kind` about `partition` at its `generation`, at `time_us`,
    /// with every other field zero.
    pub fn new(kind: Kind, partition: u64, generation: u32, time_us: u64) -> Record {
        Record {
            kind,
            partition,
            generation,
            reason: None,
            address: 0,
            syndrome: 0,
            detail: 0,
            time_us,
            snapshot: [0; SNAPSHOT_WORDS],
        }
    }

    /// The record's words, as the kernel writes them.
    pub fn to_words(&self) -> [u64; RECORD_WORDS] {
        let mut words = [0; RECORD_WORDS];
        words[WORD_KIND] = self.kind as u64;
        words[WORD_PARTITION] = self.partition;
        words[WORD_GENERATION] = u64::from(self.generation);
        words[WORD_REASON] = self.reason.map_or(0, |r| r as u64);
        words[WORD_ADDRESS] = self.address;
        words[WORD_SYNDROME] = self.syndrome;
        words[WORD_DETAIL] = self.detail;
        words[WORD_TIME] = self.time_us;
        words[WORD_SNAPSHOT..].copy_from_slice(&self.snapshot);
        words
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
        let mut snapshot = [0; SNAPSHOT_WORDS];
        snapshot.copy_from_slice(&words[WORD_SNAPSHOT..]);
        Some(Record {
            kind: Kind::from_number(words[WORD_KIND])?,
            partition: words[WORD_PARTITION],
            generation: words[WORD_GENERATION] as u32,
            reason: Reason::from_number(words[WORD_REASON]),
            address: words[WORD_ADDRESS],
            syndrome: words[WORD_SYNDROME],
            detail: words[WORD_DETAIL],
            time_us: words[WORD_TIME],
            snapshot,
        })
    }

    /// The typed bytes of a [`Kind::Input`] event.
    pub fn input(&self) -> impl Iterator<Item = u8> + '_ {
        let count = (self.detail as usize).min(INPUT_MAX);
        self.snapshot
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .take(count)
    }

    /// Adds a typed byte to a [`Kind::Input`] event; `false` if it is full.
    pub fn push_input(&mut self, byte: u8) -> bool {
        let at = self.detail as usize;
        if at >= INPUT_MAX {
            return false;
        }
        let (word, shift) = (at / 8, (at % 8) * 8);
        self.snapshot[word] = (self.snapshot[word] & !(0xff << shift)) | (u64::from(byte) << shift);
        self.detail += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn records_round_trip_through_their_words() {
        for kind in Kind::ALL {
            let mut record = Record::new(kind, 3, 7, 123_456);
            record.reason = Some(Reason::Stage2Data);
            record.address = 0x0a00_0000;
            record.syndrome = u64::MAX;
            record.detail = 42;
            record.snapshot = [1, 2, 3, 4, 5, 6, 7, 8];
            let words = record.to_words();
            assert_eq!(words[WORD_KIND], kind as u64);
            assert_eq!(words[WORD_REASON], Reason::Stage2Data as u64);
            assert_eq!(Record::from_words(&words), Some(record));
            let bytes = record.to_bytes();
            assert_eq!(bytes[..8], (kind as u64).to_le_bytes());
        }
        assert_eq!(
            Record::from_words(&[0; RECORD_WORDS]),
            None,
            "kind 0 is none"
        );
    }

    /// Verifies: SK-API-001
    #[test]
    fn input_bytes_fill_the_snapshot_in_order_up_to_its_size() {
        let mut record = Record::new(Kind::Input, 0, 1, 0);
        for byte in 0..INPUT_MAX as u8 {
            assert!(record.push_input(byte));
        }
        assert!(!record.push_input(0xff), "full");
        assert!(record.input().eq(0..INPUT_MAX as u8));
        let back = Record::from_words(&record.to_words()).unwrap();
        assert!(back.input().eq(0..INPUT_MAX as u8));
    }
}
