//! The queue rules, `queue-endpoint`, `queue-depth`, `queue-count` and
//! `queue-flight`: each queue joins two distinct partitions with a depth the
//! kernel's rings hold, and the system's queues fit the kernel's queue table and
//! its pool of pages in flight.

use std::collections::BTreeMap;

use toml::Spanned;

use super::Checker;
use crate::format::QueueEntry;
use crate::limits::{FLIGHT_MAX, MAX_QUEUES, QUEUE_DEPTH_MAX};
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
    let mut in_flight_total: u64 = 0;
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
        // Every page any queue may have away needs a frame of the kernel's pool.
        let before = in_flight_total;
        in_flight_total += u64::from(in_flight);
        if before <= FLIGHT_MAX as u64 && in_flight_total > FLIGHT_MAX as u64 {
            let message = format!(
                "with queue `{name}`, the queues allow {in_flight_total} pages in flight; the kernel allows at most {FLIGHT_MAX} in the whole system"
            );
            check.fail(q.max_in_flight.span(), "queue-flight", message);
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
