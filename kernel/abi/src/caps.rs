//! Capabilities as the ABI names them: the slots of a partition's table, the
//! types a slot can hold and the rights a capability carries, with their numbers
//! (as they travel in the system package and in [`Call::Identify`]'s results) and
//! their names (as system descriptions spell them: `kind = "queue-send"`,
//! `rights = ["inspect"]`). Every other crate takes them from here.
//!
//! Invariants (tested below): numbers and names round-trip for every type and
//! every right, each right is one bit of its own with a name, and some type may
//! carry each right.
//!
//! [`Call::Identify`]: crate::Call::Identify

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

    /// The type's name in system descriptions (a capability's `kind`).
    pub fn name(self) -> &'static str {
        match self {
            CapType::Console => "console",
            CapType::QueueSend => "queue-send",
            CapType::QueueReceive => "queue-receive",
            CapType::Control => "control",
            CapType::System => "system",
            CapType::SelfPartition => "self",
            CapType::Balloon => "balloon",
            CapType::Watchdog => "watchdog",
        }
    }

    /// The type with this name in system descriptions.
    pub fn from_name(name: &str) -> Option<CapType> {
        CapType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The rights a capability of this type may carry.
    pub fn possible_rights(self) -> Rights {
        match self {
            CapType::Console => Rights::WRITE,
            CapType::QueueSend => Rights::SEND,
            CapType::QueueReceive => Rights::RECEIVE,
            CapType::Control => Rights::INSPECT
                .union(Rights::RESUME)
                .union(Rights::RESTART)
                .union(Rights::STOP)
                .union(Rights::SET_MEMORY_TARGET),
            CapType::System => Rights::READY.union(Rights::SHUTDOWN).union(Rights::MONITOR),
            CapType::SelfPartition => Rights::YIELD.union(Rights::EXIT),
            CapType::Balloon => Rights::INFLATE.union(Rights::DEFLATE),
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
    /// System: take supervision events and read the audit ring.
    pub const MONITOR: Rights = Rights(1 << 15);

    /// Every right, in bit order, with its name in system descriptions (an
    /// entry of a capability's `rights`).
    pub const NAMED: [(Rights, &'static str); 16] = [
        (Rights::WRITE, "write"),
        (Rights::SEND, "send"),
        (Rights::RECEIVE, "receive"),
        (Rights::INSPECT, "inspect"),
        (Rights::RESUME, "resume"),
        (Rights::RESTART, "restart"),
        (Rights::STOP, "stop"),
        (Rights::SET_MEMORY_TARGET, "set-memory-target"),
        (Rights::READY, "ready"),
        (Rights::SHUTDOWN, "shutdown"),
        (Rights::YIELD, "yield"),
        (Rights::EXIT, "exit"),
        (Rights::INFLATE, "inflate"),
        (Rights::DEFLATE, "deflate"),
        (Rights::HEARTBEAT, "heartbeat"),
        (Rights::MONITOR, "monitor"),
    ];

    /// The right with this name in system descriptions.
    pub fn from_name(name: &str) -> Option<Rights> {
        Rights::NAMED
            .into_iter()
            .find_map(|(right, named)| (named == name).then_some(right))
    }

    /// The name of this right in system descriptions; `None` unless the set
    /// holds exactly one right.
    pub fn name(self) -> Option<&'static str> {
        Rights::NAMED
            .into_iter()
            .find_map(|(right, name)| (right == self).then_some(name))
    }

    /// Every right of `self` and of `other`.
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// Whether every right of `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn cap_types_round_trip_by_number_and_by_name() {
        for ty in CapType::ALL {
            assert_eq!(CapType::from_number(ty as u8), Some(ty));
            assert_eq!(CapType::from_name(ty.name()), Some(ty));
            assert_eq!(
                CapType::from_name(ty.name()).map(CapType::name),
                Some(ty.name())
            );
        }
        assert_eq!(CapType::from_number(0), None);
        assert_eq!(CapType::from_number(CapType::ALL.len() as u8 + 1), None);
        assert_eq!(CapType::from_name("Console"), None);
        assert_eq!(CapType::from_name(""), None);
    }

    /// Verifies: SK-API-001
    #[test]
    fn rights_round_trip_by_bit_and_by_name() {
        let mut seen = Rights::default();
        for (right, name) in Rights::NAMED {
            assert_eq!(right.0.count_ones(), 1, "{name} is one bit");
            assert!(!seen.contains(right), "{name} has a bit of its own");
            seen = seen.union(right);
            assert_eq!(Rights::from_name(name), Some(right));
            assert_eq!(right.name(), Some(name));
            assert_eq!(Rights(right.0).name(), Some(name));
        }
        assert_eq!(seen, Rights(u16::MAX), "every bit is a named right");
        assert_eq!(Rights::from_name("Inspect"), None);
        assert_eq!(Rights::default().name(), None);
        assert_eq!(Rights::READY.union(Rights::SHUTDOWN).name(), None);
    }

    /// Verifies: SK-API-001
    #[test]
    fn every_right_is_one_some_type_may_carry() {
        let carried = CapType::ALL
            .into_iter()
            .fold(Rights::default(), |all, ty| all.union(ty.possible_rights()));
        for (right, name) in Rights::NAMED {
            assert!(carried.contains(right), "some type carries {name}");
        }
        for ty in CapType::ALL {
            assert_ne!(ty.possible_rights(), Rights::default(), "{}", ty.name());
        }
    }
}
