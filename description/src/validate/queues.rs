//! The queue rules, `queue-endpoint`, `queue-depth` and `queue-count`: each
//! queue joins two distinct partitions with a depth the kernel's rings hold, and
//! the system's queues fit the kernel's queue table (so the pages in flight never
//! exceed `FLIGHT_MAX`: each queue's are at most its depth).

use std::collections::BTreeMap;

use toml::Spanned;

use super::Checker;
use crate::format::QueueEntry;
use crate::limits::{MAX_QUEUES, QUEUE_DEPTH_MAX};
use crate::model::{Kind, Queue};

/// Checks every queue against `partitions` (names and kinds) and the kernel's
/// limits, and returns them in file order.
pub(super) fn check_queues(
    check: &mut Checker<'_>,
    entries: &[Spanned<QueueEntry>],
    partitions: &BTreeMap<String, Kind>,
) -> Vec<Queue> {
    if entries.len() > MAX_QUEUES {
        let message = format!(
            "the system has {} queues; the kernel holds at most {MAX_QUEUES}",
            entries.len()
        );
        check.fail(
            entries[MAX_QUEUES].get_ref().name.span(),
            "queue-count",
            message,
        );
    }
    let mut queues = Vec::new();
    for entry in entries {
        let q = entry.get_ref();
        let name = q.name.get_ref();
        for end in [&q.from, &q.to] {
            if !partitions.contains_key(end.get_ref()) {
                let message = format!(
                    "queue `{name}` names `{}`, which is not a partition",
                    end.get_ref()
                );
                check.fail(end.span(), "queue-endpoint", message);
            }
        }
        if q.from.get_ref() == q.to.get_ref() {
            let message = format!("queue `{name}` joins `{}` to itself", q.from.get_ref());
            check.fail(q.to.span(), "queue-endpoint", message);
        }
        let depth = *q.depth.get_ref();
        if depth == 0 || depth > QUEUE_DEPTH_MAX {
            let message =
                format!("queue `{name}` has depth {depth}; it must be 1 to {QUEUE_DEPTH_MAX}");
            check.fail(q.depth.span(), "queue-depth", message);
        }
        let in_flight = *q.max_in_flight.get_ref();
        if in_flight == 0 || in_flight > depth {
            let message = format!(
                "queue `{name}` allows {in_flight} pages in flight; it must be 1 to its depth {depth}"
            );
            check.fail(q.max_in_flight.span(), "queue-depth", message);
        }
        queues.push(Queue {
            name: name.clone(),
            from: q.from.get_ref().clone(),
            to: q.to.get_ref().clone(),
            depth,
            max_in_flight: in_flight,
        });
    }
    queues
}
