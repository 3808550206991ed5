//! The kernel's trace: what each core did, and when, in a bounded ring per core.
//!
//! This module owns the trace record ([`Record`]), its wire format (16 bytes,
//! little-endian: [`Record::encode`] and [`Record::decode`], the one place both
//! the kernel and the host tool take it from), and the ring's logic ([`Ring`]).
//! The kernel pushes one record per event (a vCPU comes onto or leaves a core, a
//! trap, a hypercall with its status, a queue send or receive, a balloon batch, a
//! supervision event); the ring never grows: once full, each new record
//! overwrites the oldest, which is counted ([`Ring::overwritten`]). So recording
//! is bounded work per event, and the ring always holds the latest records.
//! The kernel sends the rings out only when the system ends.
//!
//! Invariants:
//! - a ring holds at most [`Ring::capacity`] records;
//! - [`Ring::records`] yields them oldest first, in the order they were pushed;
//! - every record pushed is either held or counted in [`Ring::overwritten`].

use crate::event::{Event, Response};
use crate::system::{CallRegisters, Reply, Trap};
use septum_abi::Call;

/// Bytes of one record on the wire.
pub const RECORD_BYTES: usize = 16;

/// One record as a ring holds it: its wire form as two little-endian words
/// (the time; then kind, partition, vCPU, code and value, low byte first), so
/// that recording is two word stores.
pub type Slot = [u64; 2];

/// The `partition` and `vcpu` of a record about no particular partition.
pub const NONE: u8 = u8::MAX;

/// The `value` of a [`Kind::Call`] record whose call left no reply when the
/// kernel handled it (it blocked, or does not return): never a status, which is
/// 0 or negative.
pub const NO_REPLY: u32 = 1;

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// A vCPU's registers came onto the core: it runs there from now.
    Enter = 1,
    /// The vCPU's registers left the core.
    Leave = 2,
    /// The vCPU trapped; `code` is a [`TrapCode`].
    Trap = 3,
    /// The vCPU made hypercall `code`; `value` is its status (0 or a negative
    /// error, as `i32`).
    Call = 4,
    /// A queue send (`send` or `send_batch`) that succeeded; `code` is the
    /// capability slot, `value` the messages waiting after it.
    QueueSend = 5,
    /// A queue `receive` that succeeded; `code` is the slot, `value` the length.
    QueueReceive = 6,
    /// A balloon `inflate` batch that succeeded; `value` is the pages in it.
    Inflate = 7,
    /// A balloon `deflate` batch that succeeded; `value` is the pages in it.
    Deflate = 8,
    /// A supervision event about the partition; `code` is a [`Supervision`],
    /// `value` the partition's generation (for [`Supervision::Exit`]: the low 32
    /// bits of its exit code).
    Supervision = 9,
}

impl Kind {
    /// The kind with wire value `value`.
    pub fn from_u8(value: u8) -> Option<Kind> {
        Some(match value {
            1 => Kind::Enter,
            2 => Kind::Leave,
            3 => Kind::Trap,
            4 => Kind::Call,
            5 => Kind::QueueSend,
            6 => Kind::QueueReceive,
            7 => Kind::Inflate,
            8 => Kind::Deflate,
            9 => Kind::Supervision,
            _ => return None,
        })
    }

    /// Its name, as the host tool shows it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Enter => "enter",
            Kind::Leave => "leave",
            Kind::Trap => "trap",
            Kind::Call => "call",
            Kind::QueueSend => "queue-send",
            Kind::QueueReceive => "queue-receive",
            Kind::Inflate => "inflate",
            Kind::Deflate => "deflate",
            Kind::Supervision => "supervision",
        }
    }
}

/// Why a vCPU trapped (the `code` of a [`Kind::Trap`] record). A hypercall's
/// trap is its [`Kind::Call`] record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TrapCode {
    /// It waited (WFI/WFE, HLT).
    Wait = 1,
    /// Its turn ended.
    Preempted = 2,
    /// Another core kicked this one.
    Kicked = 3,
    /// An SMCCC call (PSCI).
    Smccc = 4,
    /// A fault or trapped access; `value` is the fault reason's wire number.
    Fault = 5,
}

impl TrapCode {
    /// The code with wire value `value`.
    pub fn from_u8(value: u8) -> Option<TrapCode> {
        Some(match value {
            1 => TrapCode::Wait,
            2 => TrapCode::Preempted,
            3 => TrapCode::Kicked,
            4 => TrapCode::Smccc,
            5 => TrapCode::Fault,
            _ => return None,
        })
    }

    /// Its name, as the host tool shows it.
    pub fn name(self) -> &'static str {
        match self {
            TrapCode::Wait => "wait",
            TrapCode::Preempted => "preempted",
            TrapCode::Kicked => "kicked",
            TrapCode::Smccc => "smccc",
            TrapCode::Fault => "fault",
        }
    }
}

/// A supervision event (the `code` of a [`Kind::Supervision`] record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Supervision {
    /// The partition became runnable (first start or after a restart).
    Start = 1,
    /// It faulted or trapped, and the service VM was told.
    Fault = 2,
    /// It faulted and was stopped at once (by its policy, or unsupervised).
    FaultStopped = 3,
    /// It missed its heartbeat.
    Watchdog = 4,
    /// The service VM resumed it.
    Resume = 5,
    /// It was restarted.
    Restart = 6,
    /// It was stopped for good.
    Stop = 7,
    /// It ended itself.
    Exit = 8,
}

impl Supervision {
    /// The event with wire value `value`.
    pub fn from_u8(value: u8) -> Option<Supervision> {
        Some(match value {
            1 => Supervision::Start,
            2 => Supervision::Fault,
            3 => Supervision::FaultStopped,
            4 => Supervision::Watchdog,
            5 => Supervision::Resume,
            6 => Supervision::Restart,
            7 => Supervision::Stop,
            8 => Supervision::Exit,
            _ => return None,
        })
    }

    /// Its name, as the host tool shows it.
    pub fn name(self) -> &'static str {
        match self {
            Supervision::Start => "start",
            Supervision::Fault => "fault",
            Supervision::FaultStopped => "fault-stopped",
            Supervision::Watchdog => "watchdog",
            Supervision::Resume => "resume",
            Supervision::Restart => "restart",
            Supervision::Stop => "stop",
            Supervision::Exit => "exit",
        }
    }

    /// The supervision event a console event reports, with the partition's name
    /// and the record's value (see [`Kind::Supervision`]); `None` for events that
    /// are not about supervision.
    pub fn of_event<'a>(event: &Event<'a>) -> Option<(&'a str, Supervision, u32)> {
        Some(match *event {
            Event::PartitionStart {
                name, generation, ..
            } => (name, Supervision::Start, generation),
            Event::PartitionFault {
                name,
                generation,
                response,
                ..
            } => {
                let kind = match response {
                    Response::Stop => Supervision::FaultStopped,
                    _ => Supervision::Fault,
                };
                (name, kind, generation)
            }
            Event::PartitionWatchdog {
                name, generation, ..
            } => (name, Supervision::Watchdog, generation),
            Event::PartitionResume {
                name, generation, ..
            } => (name, Supervision::Resume, generation),
            Event::PartitionRestart {
                name, generation, ..
            } => (name, Supervision::Restart, generation),
            Event::PartitionStop {
                name, generation, ..
            } => (name, Supervision::Stop, generation),
            Event::PartitionExit { name, code } => (name, Supervision::Exit, code as u32),
            _ => return None,
        })
    }
}

/// What a record says, before it is given a time, a partition and a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    /// What happened.
    pub kind: Kind,
    /// Depends on `kind`.
    pub code: u8,
    /// Depends on `kind`.
    pub value: u32,
}

impl Note {
    /// The note of a trap the core is about to handle, for every trap but a
    /// hypercall (whose record comes with its status: [`Note::of_call`]).
    pub fn of_trap(trap: &Trap) -> Option<Note> {
        let (code, value) = match trap {
            Trap::Hypercall(_) => return None,
            Trap::Smccc(call) => (TrapCode::Smccc, call.number as u32),
            Trap::Wait => (TrapCode::Wait, 0),
            Trap::Preempted => (TrapCode::Preempted, 0),
            Trap::Kicked => (TrapCode::Kicked, 0),
            Trap::Fault(fault) => (TrapCode::Fault, fault.kind as u32),
        };
        Some(Note {
            kind: Kind::Trap,
            code: code as u8,
            value,
        })
    }

    /// The notes of a hypercall the core handled, with the reply it left (if
    /// any): its [`Kind::Call`] note, then, if it succeeded and moved a message
    /// or balloon pages, the note of that.
    pub fn of_call(call: &CallRegisters, reply: Option<&Reply>) -> (Note, Option<Note>) {
        let number = u8::try_from(call.number).unwrap_or(u8::MAX);
        let status = reply.map_or(NO_REPLY, |reply| reply.status as i64 as i32 as u32);
        let this = Note {
            kind: Kind::Call,
            code: number,
            value: status,
        };
        let slot = u8::try_from(call.args[0]).unwrap_or(u8::MAX);
        let done = reply.filter(|reply| reply.status == 0);
        // The call number is matched as it came (no look-up of the `Call`):
        // this runs on every hypercall.
        const SEND: u64 = Call::Send as u64;
        const SEND_BATCH: u64 = Call::SendBatch as u64;
        const RECEIVE: u64 = Call::Receive as u64;
        const INFLATE: u64 = Call::Inflate as u64;
        const DEFLATE: u64 = Call::Deflate as u64;
        let detail = done.and_then(|reply| {
            let (kind, value) = match call.number {
                SEND | SEND_BATCH => (Kind::QueueSend, reply.results[0]),
                RECEIVE => (Kind::QueueReceive, reply.results[0]),
                INFLATE => (Kind::Inflate, call.args[2]),
                DEFLATE => (Kind::Deflate, call.args[2]),
                _ => return None,
            };
            Some(Note {
                kind,
                code: slot,
                value: u32::try_from(value).unwrap_or(u32::MAX),
            })
        });
        (this, detail)
    }

    /// The note of a vCPU coming onto a core ([`Kind::Enter`]) or leaving it
    /// ([`Kind::Leave`]).
    pub fn switch(kind: Kind) -> Note {
        Note {
            kind,
            code: 0,
            value: 0,
        }
    }

    /// The record of this note at `time_us`, about `partition` and `vcpu`
    /// (indices, or [`NONE`]).
    pub fn at(self, time_us: u64, partition: u8, vcpu: u8) -> Record {
        Record {
            time_us,
            kind: self.kind,
            partition,
            vcpu,
            code: self.code,
            value: self.value,
        }
    }
}

/// One trace record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// When, in µs on the kernel's clock.
    pub time_us: u64,
    /// What happened.
    pub kind: Kind,
    /// The partition (its index in the package), or [`NONE`].
    pub partition: u8,
    /// The vCPU (its index in the system's vCPU table), or [`NONE`].
    pub vcpu: u8,
    /// Depends on `kind`.
    pub code: u8,
    /// Depends on `kind`.
    pub value: u32,
}

/// Why bytes are not a [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not [`RECORD_BYTES`] long.
    Length(usize),
    /// An unknown kind.
    Kind(u8),
}

impl Record {
    /// Its wire form: time (8 bytes), kind, partition, vCPU, code (one byte
    /// each), value (4 bytes), little-endian.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        wire(self.slot())
    }

    /// Its wire form as a ring's slot holds it ([`Slot`]).
    pub fn slot(&self) -> Slot {
        let header = u64::from(self.kind as u8)
            | u64::from(self.partition) << 8
            | u64::from(self.vcpu) << 16
            | u64::from(self.code) << 24
            | u64::from(self.value) << 32;
        [self.time_us, header]
    }

    /// The record whose wire form is `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let bytes: &[u8; RECORD_BYTES] = bytes
            .try_into()
            .map_err(|_| DecodeError::Length(bytes.len()))?;
        let [
            t0,
            t1,
            t2,
            t3,
            t4,
            t5,
            t6,
            t7,
            kind,
            partition,
            vcpu,
            code,
            v0,
            v1,
            v2,
            v3,
        ] = *bytes;
        Ok(Record {
            time_us: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
            kind: Kind::from_u8(kind).ok_or(DecodeError::Kind(kind))?,
            partition,
            vcpu,
            code,
            value: u32::from_le_bytes([v0, v1, v2, v3]),
        })
    }
}

/// A bounded ring of records over memory given at boot (see the module
/// documentation).
#[derive(Debug)]
pub struct Ring<'a> {
    /// One slot per record.
    slots: &'a mut [Slot],
    /// The slot the next record goes in (always below the capacity, or 0).
    next: usize,
    /// Records pushed since boot: those held and those overwritten.
    pushed: u64,
}

impl<'a> Ring<'a> {
    /// A ring over `slots`, holding as many records.
    pub fn new(slots: &'a mut [Slot]) -> Ring<'a> {
        Ring {
            slots,
            next: 0,
            pushed: 0,
        }
    }

    /// Most records it holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records it holds.
    pub fn len(&self) -> usize {
        usize::try_from(self.pushed).map_or(self.capacity(), |pushed| pushed.min(self.capacity()))
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records overwritten since boot (lost to overflow).
    pub fn overwritten(&self) -> u64 {
        self.pushed - self.len() as u64
    }

    /// Adds `record`, overwriting the oldest if the ring is full (a ring of
    /// capacity 0 counts every record as overwritten). Constant work: one slot
    /// written, no division.
    pub fn push(&mut self, record: &Record) {
        self.pushed += 1;
        let Some(slot) = self.slots.get_mut(self.next) else {
            return;
        };
        *slot = record.slot();
        self.next += 1;
        if self.next == self.slots.len() {
            self.next = 0;
        }
    }

    /// The records held, oldest first, in their wire form.
    pub fn records(&self) -> impl Iterator<Item = [u8; RECORD_BYTES]> + '_ {
        let capacity = self.capacity().max(1);
        let len = self.len();
        let first = (self.next + capacity - len) % capacity;
        (0..len).map(move |offset| wire(self.slots[(first + offset) % capacity]))
    }
}

/// The wire form of a record held in `slot`.
fn wire([time, header]: Slot) -> [u8; RECORD_BYTES] {
    let mut bytes = [0; RECORD_BYTES];
    bytes[..8].copy_from_slice(&time.to_le_bytes());
    bytes[8..].copy_from_slice(&header.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests;
