//! Why a hypercall failed: the status codes every call returns, and their names.

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
    /// The partition has been restarted since the generation the caller named.
    PeerRestarted = -10,
    /// The partition has used up its restart budget; it is now stopped for good.
    BudgetExhausted = -11,
    /// The policy change would loosen the policy.
    Loosening = -12,
    /// The kernel cannot tell how long the trapped instruction is, so it cannot
    /// skip it.
    CannotSkip = -13,
    /// Nothing to receive or reclaim.
    Empty = -14,
    /// The queue holds as many messages as its depth.
    QueueFull = -15,
    /// A page is not the caller's: outside its RAM and receive window, or in its
    /// window but not held, or received on another queue.
    NotOwned = -16,
    /// A page is device memory granted to the caller.
    DevicePage = -17,
    /// A page of the caller's RAM is away: sent and not yet reclaimed.
    InFlight = -18,
    /// The queue already has as many pages away as its description allows.
    FlightLimit = -19,
    /// The receive address is not page-aligned, not inside the receive window with
    /// room for the message, or a page there is in use.
    BadWindow = -20,
    /// The other end of the queue has exited or was stopped: its pages came home,
    /// and sending, receiving and waiting on the queue fail so until the service
    /// VM restarts it (then the next call says [`Error::PeerRestarted`]).
    PeerEnded = -21,
    /// A balloon batch names the same page twice.
    Duplicate = -22,
    /// Below the partition's minimum: a page of the memory it always keeps, or a
    /// memory target under its minimum.
    BelowMinimum = -23,
    /// At or past the partition's maximum: a balloon page beyond it, or a memory
    /// target over it.
    AboveMaximum = -24,
    /// Taking these pages back would leave the partition holding more than the
    /// target the service VM set.
    OverTarget = -25,
    /// The kernel's free pool has fewer frames than asked for.
    PoolEmpty = -26,
    /// A page named for deflating has a frame already.
    AlreadyBacked = -27,
    /// The partition is not devirtualizable (its description does not say
    /// `devirtualize = true`).
    NotDevirtualizable = -28,
    /// Another guest has not ended: a devirtualized guest owns the machine, so
    /// it must run alone.
    NotAlone = -29,
}

impl Error {
    /// Every error, in code order.
    pub const ALL: [Error; 29] = [
        Error::UnknownCall,
        Error::BadAddress,
        Error::TooLong,
        Error::Denied,
        Error::BadState,
        Error::InvalidArgument,
        Error::NoSuchSlot,
        Error::WrongType,
        Error::MissingRight,
        Error::PeerRestarted,
        Error::BudgetExhausted,
        Error::Loosening,
        Error::CannotSkip,
        Error::Empty,
        Error::QueueFull,
        Error::NotOwned,
        Error::DevicePage,
        Error::InFlight,
        Error::FlightLimit,
        Error::BadWindow,
        Error::PeerEnded,
        Error::Duplicate,
        Error::BelowMinimum,
        Error::AboveMaximum,
        Error::OverTarget,
        Error::PoolEmpty,
        Error::AlreadyBacked,
        Error::NotDevirtualizable,
        Error::NotAlone,
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
            Error::PeerRestarted => "peer-restarted",
            Error::BudgetExhausted => "budget-exhausted",
            Error::Loosening => "loosening",
            Error::CannotSkip => "cannot-skip",
            Error::Empty => "empty",
            Error::QueueFull => "queue-full",
            Error::NotOwned => "not-owned",
            Error::DevicePage => "device-page",
            Error::InFlight => "in-flight",
            Error::FlightLimit => "flight-limit",
            Error::BadWindow => "bad-window",
            Error::PeerEnded => "peer-ended",
            Error::Duplicate => "duplicate",
            Error::BelowMinimum => "below-minimum",
            Error::AboveMaximum => "above-maximum",
            Error::OverTarget => "over-target",
            Error::PoolEmpty => "pool-empty",
            Error::AlreadyBacked => "already-backed",
            Error::NotDevirtualizable => "not-devirtualizable",
            Error::NotAlone => "not-alone",
        }
    }
}
