//! The hypercall ABI of Septum: the one place where call numbers, status codes and
//! the register convention are defined. The kernel, the service VM and every guest
//! partition use these definitions, so they cannot drift apart.
//!
//! # Register convention
//!
//! | | aarch64 (`hvc #0`) | x86_64 (`vmcall`) |
//! |---|---|---|
//! | call number | x0 | rax |
//! | arguments 1-6 | x1-x6 | rdi, rsi, rdx, r10, r8, r9 |
//! | status | x0 | rax |
//! | results 1-3 | x1-x3 | rdi, rsi, rdx |
//!
//! The status is `0` for success or a negative [`Error`] code, as a two's complement
//! 64-bit value. The three result registers are always written (zero where a call
//! has no result); every other register is preserved.
//!
//! Invariant: numbers and codes are never reused. A retired call keeps its number
//! reserved.
#![no_std]
#![forbid(unsafe_code)]

/// Maximum number of bytes one [`Call::ConsoleWrite`] may carry.
pub const CONSOLE_WRITE_MAX: u64 = 256;

/// The hypercalls, by number. Every call but `Null` names a capability slot in
/// `a1`: the kernel checks that the slot holds a capability of the right type with
/// the right before it looks at any other argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Call {
    /// Does nothing and returns `0`. Used to measure the round-trip cost.
    Null = 0,
    /// Writes bytes to the console. `a1` = console capability (right `write`),
    /// `a2` = guest address, `a3` = length (at most [`CONSOLE_WRITE_MAX`]). The
    /// kernel prefixes each line with the partition's name, so no partition can
    /// forge another's output or a `@@` line. Result 1 = bytes written.
    ConsoleWrite = 1,
    /// The service VM reports that it is ready; guests start only after this.
    /// `a1` = system capability (right `ready`); allowed once per boot.
    Ready = 2,
    /// Gives up the rest of the caller's turn. `a1` = self capability (right
    /// `yield`). Result 1 = how many other partitions are still runnable.
    Yield = 3,
    /// Ends the calling partition. `a1` = self capability (right `exit`), `a2` =
    /// exit code. Does not return.
    Exit = 4,
    /// Powers the system off. `a1` = system capability (right `shutdown`), `a2` = 0
    /// for a clean shutdown, any other value reports a failure. Does not return.
    Shutdown = 5,
}

impl Call {
    /// Every call, in number order.
    pub const ALL: [Call; 6] = [
        Call::Null,
        Call::ConsoleWrite,
        Call::Ready,
        Call::Yield,
        Call::Exit,
        Call::Shutdown,
    ];

    /// Looks up a call by number; `None` for a number no call has.
    pub fn from_number(number: u64) -> Option<Call> {
        Call::ALL.into_iter().find(|call| *call as u64 == number)
    }

    /// The call's name as the README's ABI table gives it.
    pub fn name(self) -> &'static str {
        match self {
            Call::Null => "null",
            Call::ConsoleWrite => "console_write",
            Call::Ready => "ready",
            Call::Yield => "yield",
            Call::Exit => "exit",
            Call::Shutdown => "shutdown",
        }
    }
}

/// Why a hypercall failed. Returned as the negative status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// No call has this number.
    UnknownCall = -1,
    /// A guest address or buffer is not inside the caller's RAM.
    BadAddress = -2,
    /// A length is larger than the call allows.
    TooLong = -3,
    /// Retired: before capabilities, "the caller's kind may not make this call".
    /// Kept so that the number is never reused.
    Denied = -4,
    /// The call does not fit the caller's state (for example a second `ready`).
    BadState = -5,
    /// An argument has a value the call does not define.
    InvalidArgument = -6,
    /// The capability slot is out of range or empty.
    NoSuchSlot = -7,
    /// The slot holds a capability of another type than the call needs.
    WrongType = -8,
    /// The capability lacks the right the call needs.
    MissingRight = -9,
}

impl Error {
    /// Every error, in code order.
    pub const ALL: [Error; 9] = [
        Error::UnknownCall,
        Error::BadAddress,
        Error::TooLong,
        Error::Denied,
        Error::BadState,
        Error::InvalidArgument,
        Error::NoSuchSlot,
        Error::WrongType,
        Error::MissingRight,
    ];

    /// The status code as it travels in the status register.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// Reads a status register value: `Ok(())` for `0`, the error for a known code.
    /// An unknown non-zero status is returned unchanged as `Err(Err(raw))`.
    pub fn from_status(status: u64) -> Result<(), Result<Error, u64>> {
        if status == 0 {
            return Ok(());
        }
        let code = status as i64;
        Err(Error::ALL
            .into_iter()
            .find(|error| error.code() == code)
            .ok_or(status))
    }

    /// A short name for logs and the README.
    pub fn name(self) -> &'static str {
        match self {
            Error::UnknownCall => "unknown-call",
            Error::BadAddress => "bad-address",
            Error::TooLong => "too-long",
            Error::Denied => "denied",
            Error::BadState => "bad-state",
            Error::InvalidArgument => "invalid-argument",
            Error::NoSuchSlot => "no-such-slot",
            Error::WrongType => "wrong-type",
            Error::MissingRight => "missing-right",
        }
    }
}

/// Capability slots per partition.
pub const CAP_SLOTS: usize = 16;

/// Capability types, as they travel in the system package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CapType {
    /// The console.
    Console = 1,
    /// The send end of a queue.
    QueueSend = 2,
    /// The receive end of a queue.
    QueueReceive = 3,
    /// Control over one partition (service VM only).
    Control = 4,
    /// The system as a whole: `ready` and `shutdown` (service VM only).
    System = 5,
    /// The holder itself: `yield` and `exit`.
    SelfPartition = 6,
    /// The holder's balloon.
    Balloon = 7,
    /// The holder's watchdog.
    Watchdog = 8,
}

impl CapType {
    /// Every type, in number order.
    pub const ALL: [CapType; 8] = [
        CapType::Console,
        CapType::QueueSend,
        CapType::QueueReceive,
        CapType::Control,
        CapType::System,
        CapType::SelfPartition,
        CapType::Balloon,
        CapType::Watchdog,
    ];

    /// The type with this number.
    pub fn from_number(number: u8) -> Option<CapType> {
        CapType::ALL.into_iter().find(|t| *t as u8 == number)
    }

    /// The rights a capability of this type may carry.
    pub fn possible_rights(self) -> Rights {
        match self {
            CapType::Console => Rights::WRITE,
            CapType::QueueSend => Rights::SEND,
            CapType::QueueReceive => Rights::RECEIVE,
            CapType::Control => Rights(
                Rights::INSPECT.0
                    | Rights::RESUME.0
                    | Rights::RESTART.0
                    | Rights::STOP.0
                    | Rights::SET_MEMORY_TARGET.0,
            ),
            CapType::System => Rights(Rights::READY.0 | Rights::SHUTDOWN.0),
            CapType::SelfPartition => Rights(Rights::YIELD.0 | Rights::EXIT.0),
            CapType::Balloon => Rights(Rights::INFLATE.0 | Rights::DEFLATE.0),
            CapType::Watchdog => Rights::HEARTBEAT,
        }
    }
}

/// A set of rights, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights(pub u16);

impl Rights {
    /// Console: write.
    pub const WRITE: Rights = Rights(1 << 0);
    /// Queue: send.
    pub const SEND: Rights = Rights(1 << 1);
    /// Queue: receive.
    pub const RECEIVE: Rights = Rights(1 << 2);
    /// Control: read state and registers.
    pub const INSPECT: Rights = Rights(1 << 3);
    /// Control: resume.
    pub const RESUME: Rights = Rights(1 << 4);
    /// Control: restart.
    pub const RESTART: Rights = Rights(1 << 5);
    /// Control: stop.
    pub const STOP: Rights = Rights(1 << 6);
    /// Control: set the memory target.
    pub const SET_MEMORY_TARGET: Rights = Rights(1 << 7);
    /// System: report ready.
    pub const READY: Rights = Rights(1 << 8);
    /// System: power off.
    pub const SHUTDOWN: Rights = Rights(1 << 9);
    /// Self: yield.
    pub const YIELD: Rights = Rights(1 << 10);
    /// Self: exit.
    pub const EXIT: Rights = Rights(1 << 11);
    /// Balloon: give pages back.
    pub const INFLATE: Rights = Rights(1 << 12);
    /// Balloon: take pages again.
    pub const DEFLATE: Rights = Rights(1 << 13);
    /// Watchdog: heartbeat.
    pub const HEARTBEAT: Rights = Rights(1 << 14);

    /// Whether every right of `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Where a partition's RAM starts in its own (guest-physical) address space. It is
/// the same on both architectures, so partition images differ only in their
/// instruction set.
pub mod layout {
    /// Guest-physical base of every partition's RAM.
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// Size of a page and of the smallest unit of partition RAM.
    pub const PAGE_SIZE: u64 = 4096;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn call_numbers_round_trip_and_are_unique() {
        for call in Call::ALL {
            assert_eq!(Call::from_number(call as u64), Some(call));
        }
        assert_eq!(Call::from_number(Call::ALL.len() as u64), None);
        assert_eq!(Call::from_number(u64::MAX), None);
    }

    /// Verifies: SK-API-001
    #[test]
    fn error_codes_round_trip_and_are_negative() {
        for error in Error::ALL {
            assert!(error.code() < 0);
            assert_eq!(Error::from_status(error.code() as u64), Err(Ok(error)));
        }
        assert_eq!(Error::from_status(0), Ok(()));
        assert_eq!(Error::from_status(-99i64 as u64), Err(Err(-99i64 as u64)));
    }
}
