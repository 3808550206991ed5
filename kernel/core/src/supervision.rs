//! How the kernel supervises a partition, as its system description sets it: which
//! traps go to the service VM and which stop the partition at once (the trap
//! policy), how often it may be restarted (the restart budget), and how often it
//! must heartbeat (the watchdog). The vocabulary, [`TrapClass`] and [`TrapAction`],
//! is the ABI's (re-exported here); the policy built from it is kernel state.
//!
//! Invariants:
//! - a policy only ever tightens at run time: [`TrapPolicy::tighten`] refuses to
//!   turn a `stop` back into `service`;
//! - the encoding is canonical: [`Supervision::decode`] accepts exactly the bytes
//!   [`Supervision::encode`] can produce.

pub use septum_abi::{TrapAction, TrapClass};

/// The bit of `class` in a policy's stop bits (and in the package's policy byte).
fn bit(class: TrapClass) -> u8 {
    1 << class as u8
}

/// One action per trap class. The default sends every class to the service VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapPolicy {
    /// Bit `class` set: that class stops the guest.
    stop: u8,
}

/// A policy change that would loosen the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loosening;

impl TrapPolicy {
    /// The action for `class`.
    pub fn action(self, class: TrapClass) -> TrapAction {
        if self.stop & bit(class) != 0 {
            TrapAction::Stop
        } else {
            TrapAction::Service
        }
    }

    /// This policy with `class` set to `action`, whatever it was.
    pub fn with(self, class: TrapClass, action: TrapAction) -> TrapPolicy {
        let stop = match action {
            TrapAction::Stop => self.stop | bit(class),
            TrapAction::Service => self.stop & !bit(class),
        };
        TrapPolicy { stop }
    }

    /// Sets `class` to `action` if that is at least as strict as what it was.
    pub fn tighten(&mut self, class: TrapClass, action: TrapAction) -> Result<(), Loosening> {
        if action < self.action(class) {
            return Err(Loosening);
        }
        *self = self.with(class, action);
        Ok(())
    }
}

/// At most `restarts` restarts within any `period_ms` milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed per period (at most [`MAX_RESTARTS`]).
    pub restarts: u16,
    /// The period in milliseconds (at least 1).
    pub period_ms: u32,
}

/// The largest restart budget a description may give.
pub const MAX_RESTARTS: u16 = 16;

impl Default for RestartBudget {
    fn default() -> Self {
        RestartBudget {
            restarts: 3,
            period_ms: 10_000,
        }
    }
}

/// Everything about how a partition is supervised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Supervision {
    /// Where its traps go (guests only; the service VM's traps always restart it).
    pub policy: TrapPolicy,
    /// How often it may be restarted.
    pub budget: RestartBudget,
    /// Its heartbeat period in milliseconds; 0 when it has no watchdog.
    pub watchdog_ms: u32,
}

/// Bytes of an encoded [`Supervision`].
pub const SUPERVISION_SIZE: usize = 12;

impl Supervision {
    /// Appends the block, little-endian: policy stop bits (1), reserved (1),
    /// restarts (2), period in ms (4), watchdog in ms (4).
    pub fn encode(&self, out: &mut impl Extend<u8>) {
        out.extend([self.policy.stop, 0]);
        out.extend(self.budget.restarts.to_le_bytes());
        out.extend(self.budget.period_ms.to_le_bytes());
        out.extend(self.watchdog_ms.to_le_bytes());
    }

    /// Reads a block; `None` if it is short or not canonical (unknown policy bits,
    /// non-zero reserved byte, a budget over [`MAX_RESTARTS`], a zero period).
    pub fn decode(raw: &[u8]) -> Option<Supervision> {
        let raw = raw.get(..SUPERVISION_SIZE)?;
        let known = TrapClass::ALL
            .iter()
            .fold(0, |bits, &class| bits | bit(class));
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let supervision = Supervision {
            policy: TrapPolicy { stop: raw[0] },
            budget: RestartBudget {
                restarts: u16::from_le_bytes([raw[2], raw[3]]),
                period_ms: u32_at(4),
            },
            watchdog_ms: u32_at(8),
        };
        let canonical = raw[0] & !known == 0
            && raw[1] == 0
            && supervision.budget.restarts <= MAX_RESTARTS
            && supervision.budget.period_ms > 0;
        canonical.then_some(supervision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class() -> impl Strategy<Value = TrapClass> {
        proptest::sample::select(TrapClass::ALL.to_vec())
    }

    fn action() -> impl Strategy<Value = TrapAction> {
        proptest::sample::select(TrapAction::ALL.to_vec())
    }

    /// Verifies: SK-INIT-005
    #[test]
    fn stop_cannot_become_service_again() {
        let mut policy = TrapPolicy::default();
        assert_eq!(policy.action(TrapClass::Mmio), TrapAction::Service);
        policy.tighten(TrapClass::Mmio, TrapAction::Stop).unwrap();
        assert_eq!(
            policy.tighten(TrapClass::Mmio, TrapAction::Service),
            Err(Loosening)
        );
        assert_eq!(policy.action(TrapClass::Mmio), TrapAction::Stop);
        assert_eq!(policy.action(TrapClass::Port), TrapAction::Service);
    }

    proptest! {
        /// Verifies: SK-INIT-005
        #[test]
        fn tightening_never_loosens_any_class(
            start in proptest::collection::vec((class(), action()), 0..6),
            changes in proptest::collection::vec((class(), action()), 0..12),
        ) {
            let mut policy = start
                .into_iter()
                .fold(TrapPolicy::default(), |p, (c, a)| p.with(c, a));
            for (changed, wanted) in changes {
                let before = policy;
                let result = policy.tighten(changed, wanted);
                for class in TrapClass::ALL {
                    prop_assert!(policy.action(class) >= before.action(class));
                    if class != changed {
                        prop_assert_eq!(policy.action(class), before.action(class));
                    }
                }
                match result {
                    Ok(()) => prop_assert_eq!(policy.action(changed), wanted),
                    Err(Loosening) => prop_assert_eq!(policy, before),
                }
            }
        }

        /// Verifies: SK-INIT-003
        #[test]
        fn blocks_round_trip_and_only_canonical_ones_decode(
            stop in 0u8..16, restarts in 0..=MAX_RESTARTS, period_ms in 1u32.., watchdog_ms: u32,
            flips in proptest::collection::vec((0..SUPERVISION_SIZE, any::<u8>()), 0..4),
        ) {
            let supervision = Supervision {
                policy: TrapPolicy { stop },
                budget: RestartBudget { restarts, period_ms },
                watchdog_ms,
            };
            let mut bytes = Vec::new();
            supervision.encode(&mut bytes);
            prop_assert_eq!(bytes.len(), SUPERVISION_SIZE);
            prop_assert_eq!(Supervision::decode(&bytes), Some(supervision));
            for (at, value) in flips {
                bytes[at] = value;
            }
            if let Some(decoded) = Supervision::decode(&bytes) {
                let mut again = Vec::new();
                decoded.encode(&mut again);
                prop_assert_eq!(again, bytes);
            }
        }
    }
}
