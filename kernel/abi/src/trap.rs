//! The trap-policy vocabulary: the classes of trap a guest can take and what the
//! kernel does with each, with their numbers (as [`Call::SetPolicy`] takes them
//! and audit records carry them) and their names (as system descriptions spell
//! them, `policy = { mmio = "stop" }`, and as `@@ partition <name> policy
//! class=<c> action=<a>` lines print them). The kernel's policy, the description
//! format, the host tool and the partitions all use these types.
//!
//! Invariant (tested below): numbers and names round-trip for every class and
//! every action, and no other number or name is accepted.
//!
//! [`Call::SetPolicy`]: crate::Call::SetPolicy

/// What kind of trap a guest took. Each class has its own action in a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum TrapClass {
    /// A data access outside the partition's RAM and granted devices (unassigned
    /// MMIO): a stage-2 / EPT data violation.
    Mmio = 0,
    /// An I/O port the partition was not granted (x86).
    Port = 1,
    /// A trapped system register (aarch64) or MSR (x86).
    SystemRegister = 2,
    /// A trapped instruction: SMC on aarch64.
    Instruction = 3,
}

impl TrapClass {
    /// Every class, in number order.
    pub const ALL: [TrapClass; 4] = [
        TrapClass::Mmio,
        TrapClass::Port,
        TrapClass::SystemRegister,
        TrapClass::Instruction,
    ];

    /// The class with this number.
    pub fn from_number(number: u64) -> Option<TrapClass> {
        TrapClass::ALL.into_iter().find(|c| *c as u64 == number)
    }

    /// The class's name in descriptions and `@@` lines.
    pub fn name(self) -> &'static str {
        match self {
            TrapClass::Mmio => "mmio",
            TrapClass::Port => "port",
            TrapClass::SystemRegister => "sysreg",
            TrapClass::Instruction => "instruction",
        }
    }

    /// The class with this name.
    pub fn from_name(name: &str) -> Option<TrapClass> {
        TrapClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What the kernel does with a trap of some class. The order is strictness:
/// a later action is stricter, and a policy may only move to a stricter one at
/// run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum TrapAction {
    /// Suspend the guest and let the service VM decide (when the service VM holds a
    /// control capability for it; otherwise the kernel stops it).
    Service = 0,
    /// Stop the guest at once. Stricter than [`TrapAction::Service`].
    Stop = 1,
}

impl TrapAction {
    /// Every action, in number order (which is strictness order).
    pub const ALL: [TrapAction; 2] = [TrapAction::Service, TrapAction::Stop];

    /// The action with this number.
    pub fn from_number(number: u64) -> Option<TrapAction> {
        TrapAction::ALL.into_iter().find(|a| *a as u64 == number)
    }

    /// The action's name in descriptions and `@@` lines.
    pub fn name(self) -> &'static str {
        match self {
            TrapAction::Service => "service",
            TrapAction::Stop => "stop",
        }
    }

    /// The action with this name.
    pub fn from_name(name: &str) -> Option<TrapAction> {
        TrapAction::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001, SK-INIT-005
    #[test]
    fn trap_classes_round_trip_by_number_and_by_name() {
        for (number, class) in TrapClass::ALL.into_iter().enumerate() {
            assert_eq!(class as usize, number, "ALL is in number order");
            assert_eq!(TrapClass::from_number(class as u64), Some(class));
            assert_eq!(TrapClass::from_name(class.name()), Some(class));
            assert_eq!(
                TrapClass::from_name(class.name()).map(TrapClass::name),
                Some(class.name())
            );
        }
        assert_eq!(TrapClass::from_number(4), None);
        assert_eq!(TrapClass::from_number(u64::MAX), None);
        assert_eq!(TrapClass::from_name("system-register"), None);
    }

    /// Verifies: SK-API-001, SK-INIT-005
    #[test]
    fn trap_actions_round_trip_by_number_and_by_name() {
        for (number, action) in TrapAction::ALL.into_iter().enumerate() {
            assert_eq!(action as usize, number, "ALL is in number order");
            assert_eq!(TrapAction::from_number(action as u64), Some(action));
            assert_eq!(TrapAction::from_name(action.name()), Some(action));
            assert_eq!(
                TrapAction::from_name(action.name()).map(TrapAction::name),
                Some(action.name())
            );
        }
        assert_eq!(TrapAction::from_name("stop"), Some(TrapAction::Stop));
        assert!(TrapAction::Stop > TrapAction::Service, "stop is stricter");
        assert_eq!(TrapAction::from_number(2), None);
        assert_eq!(TrapAction::from_name("restart"), None);
    }
}
