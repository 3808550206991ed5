//! Capabilities: what each partition may invoke. A partition's table has
//! [`CAP_SLOTS`] slots, filled from its system description at build time and
//! never changed by any hypercall, so no sequence of calls can give a partition a
//! right its description did not grant (property-tested in `system/tests.rs`).
//!
//! Every hypercall but `null` names a slot; [`lookup`] checks the slot, the type
//! and the right, in that order, before the call's other arguments are read.

pub use septum_abi::{CAP_SLOTS, CapType, Rights};
use septum_abi::{Call, Error, Need};

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What kind of object it designates.
    pub ty: CapType,
    /// What the holder may do with it (a subset of the type's possible rights).
    pub rights: Rights,
    /// The object: a partition index for control, a queue index for queue ends,
    /// zero for the others.
    pub object: u16,
    /// The badge: on a queue send end, the index of the partition that holds it,
    /// which the receiver will learn with each message; zero on other capabilities.
    /// Set by the build and checked when the kernel reads the package, so a
    /// partition cannot pose as another.
    pub badge: u16,
}

/// A partition's capability table: slot `i` is entry `i`.
pub type CapTable = [Option<Cap>; CAP_SLOTS];

/// The capability that `call` names in `slot` of `table`, checked as
/// [`Call::need`] says, in the order of [`lookup`]: the slot, then the type (one
/// of the types the call takes), then that type's right. `Ok(None)` for a call
/// that names no capability, and for an empty slot in range when any slot will
/// do (`identify`).
pub fn lookup_for(table: &CapTable, call: Call, slot: u64) -> Result<Option<Cap>, Error> {
    let entry = usize::try_from(slot).ok().and_then(|slot| table.get(slot));
    match call.need() {
        Need::Nothing => Ok(None),
        Need::AnySlot => entry.copied().ok_or(Error::NoSuchSlot),
        Need::OneOf(options) => {
            let cap = entry.copied().flatten().ok_or(Error::NoSuchSlot)?;
            let &(_, right) = options
                .iter()
                .find(|(ty, _)| *ty == cap.ty)
                .ok_or(Error::WrongType)?;
            if !cap.rights.contains(right) {
                return Err(Error::MissingRight);
            }
            Ok(Some(cap))
        }
    }
}

/// The capability in `slot` of `table`, if it has type `ty` and carries `right`.
pub fn lookup(table: &CapTable, slot: u64, ty: CapType, right: Rights) -> Result<Cap, Error> {
    let cap = usize::try_from(slot)
        .ok()
        .and_then(|slot| table.get(slot).copied().flatten())
        .ok_or(Error::NoSuchSlot)?;
    if cap.ty != ty {
        return Err(Error::WrongType);
    }
    if !cap.rights.contains(right) {
        return Err(Error::MissingRight);
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-CAP-001
    #[test]
    fn slot_then_type_then_right() {
        let mut table: CapTable = [None; CAP_SLOTS];
        table[0] = Some(Cap {
            ty: CapType::Console,
            rights: Rights::WRITE,
            object: 0,
            badge: 0,
        });
        table[1] = Some(Cap {
            ty: CapType::SelfPartition,
            rights: Rights::YIELD,
            object: 0,
            badge: 0,
        });
        let console = lookup(&table, 0, CapType::Console, Rights::WRITE);
        assert_eq!(console.map(|c| c.ty), Ok(CapType::Console));
        assert_eq!(
            lookup(&table, 2, CapType::Console, Rights::WRITE),
            Err(Error::NoSuchSlot)
        );
        assert_eq!(
            lookup(&table, 16, CapType::Console, Rights::WRITE),
            Err(Error::NoSuchSlot)
        );
        assert_eq!(
            lookup(&table, u64::MAX, CapType::Console, Rights::WRITE),
            Err(Error::NoSuchSlot)
        );
        assert_eq!(
            lookup(&table, 1, CapType::Console, Rights::WRITE),
            Err(Error::WrongType)
        );
        assert_eq!(
            lookup(&table, 1, CapType::SelfPartition, Rights::EXIT),
            Err(Error::MissingRight)
        );
    }
}
