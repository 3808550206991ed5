//! The capability rules, `cap-kind`, `cap-target`, `cap-rights`, `guest-control`,
//! `queue-end` and `cap-count`: each capability names a known kind with rights
//! that kind has, designates something that exists, and is held only by a
//! partition that may hold it.

use std::collections::BTreeMap;
use std::ops::Range;

use septum_core::abi::{CapType, Rights};
use toml::Spanned;

use super::Checker;
use crate::format::{CapEntry, PartitionEntry};
use crate::limits::CAP_SLOTS;
use crate::model::{Cap, CapKind, Kind, Partition, Queue};

/// Every capability kind, in the order the `cap-kind` error lists them (the most
/// common first).
const KINDS_LISTED: [CapType; 8] = [
    CapType::Console,
    CapType::SelfPartition,
    CapType::System,
    CapType::Control,
    CapType::QueueSend,
    CapType::QueueReceive,
    CapType::Balloon,
    CapType::Watchdog,
];

/// A capability entry as a [`Cap`], or the rule it breaks on its own (without
/// looking at the rest of the system) with the span to blame.
pub(super) fn resolve_cap(entry: &CapEntry) -> Result<Cap, (Range<usize>, &'static str, String)> {
    let target = |field: &Option<Spanned<String>>, what: &str| {
        field.as_ref().map(|t| t.get_ref().clone()).ok_or_else(|| {
            let message = format!(
                "a `{}` capability needs `{what} = \"<name>\"`",
                entry.kind.get_ref()
            );
            (entry.kind.span(), "cap-target", message)
        })
    };
    let Some(ty) = CapType::from_name(entry.kind.get_ref()) else {
        let listed: Vec<&str> = KINDS_LISTED.iter().map(|ty| ty.name()).collect();
        let message = format!(
            "unknown capability kind `{}` ({})",
            entry.kind.get_ref(),
            listed.join(", ")
        );
        return Err((entry.kind.span(), "cap-kind", message));
    };
    let kind = match ty {
        CapType::Console => CapKind::Console,
        CapType::QueueSend => CapKind::QueueSend(target(&entry.queue, "queue")?),
        CapType::QueueReceive => CapKind::QueueReceive(target(&entry.queue, "queue")?),
        CapType::Control => CapKind::Control(target(&entry.partition, "partition")?),
        CapType::System => CapKind::System,
        CapType::SelfPartition => CapKind::SelfPartition,
        CapType::Balloon => CapKind::Balloon,
        CapType::Watchdog => CapKind::Watchdog,
    };
    let possible = ty.possible_rights();
    let rights = match &entry.rights {
        None => possible,
        Some(listed) => {
            let mut rights = Rights::default();
            for right in listed {
                match Rights::from_name(right.get_ref()).filter(|&r| possible.contains(r)) {
                    Some(r) => rights = rights.union(r),
                    None => {
                        let message = format!(
                            "a `{}` capability cannot carry the right `{}`",
                            entry.kind.get_ref(),
                            right.get_ref()
                        );
                        return Err((right.span(), "cap-rights", message));
                    }
                }
            }
            rights
        }
    };
    Ok(Cap { kind, rights })
}

/// Checks the capabilities of `partition` against the system's `queues` (by
/// name; the first of a name) and `partitions` (names and kinds).
pub(super) fn check_caps(
    check: &mut Checker<'_>,
    entry: &Spanned<PartitionEntry>,
    partition: &Partition,
    queues: &BTreeMap<&str, &Queue>,
    partitions: &BTreeMap<String, Kind>,
) {
    let caps = &entry.get_ref().caps;
    let name = &partition.name;
    if caps.len() > CAP_SLOTS {
        let message = format!(
            "`{name}` has {} capabilities; a partition has {CAP_SLOTS} slots",
            caps.len()
        );
        check.fail(caps[CAP_SLOTS].span(), "cap-count", message);
    }
    for spanned in caps {
        let cap = match resolve_cap(spanned.get_ref()) {
            Ok(cap) => cap,
            Err((span, rule, message)) => {
                check.fail(span, rule, message);
                continue;
            }
        };
        let span = spanned.span();
        let queue_end = |queue: &str, receive: bool| {
            queues
                .get(queue)
                .map(|q| if receive { &q.to } else { &q.from })
        };
        match &cap.kind {
            CapKind::Control(target) => {
                if partition.kind != Kind::Service {
                    let message = format!(
                        "`{name}` is a guest; only the service VM may hold partition control"
                    );
                    check.fail(span.clone(), "guest-control", message);
                }
                if !partitions.contains_key(target) {
                    let message =
                        format!("capability to control `{target}`, which is not a partition");
                    check.fail(span, "cap-target", message);
                }
            }
            CapKind::QueueSend(queue) | CapKind::QueueReceive(queue) => {
                let receive = matches!(cap.kind, CapKind::QueueReceive(_));
                match queue_end(queue, receive) {
                    None => {
                        let message =
                            format!("capability to queue `{queue}`, which does not exist");
                        check.fail(span, "cap-target", message);
                    }
                    Some(end) if end != name => {
                        let side = if receive { "receives from" } else { "sends on" };
                        let message = format!(
                            "`{name}` holds an end of queue `{queue}`, but only `{end}` {side} it"
                        );
                        check.fail(span, "queue-end", message);
                    }
                    Some(_) => {}
                }
            }
            CapKind::System if partition.kind != Kind::Service => {
                let message = format!(
                    "`{name}` is a guest; only the service VM may hold the system capability"
                );
                check.fail(span, "guest-control", message);
            }
            CapKind::System
            | CapKind::SelfPartition
            | CapKind::Console
            | CapKind::Balloon
            | CapKind::Watchdog => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-CFG-002
    #[test]
    fn the_cap_kind_error_lists_every_kind_once() {
        for ty in CapType::ALL {
            let listed = KINDS_LISTED.iter().filter(|&&t| t == ty).count();
            assert_eq!(listed, 1, "{}", ty.name());
        }
    }
}
