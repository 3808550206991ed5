//! The supervision rules, `policy`, `restart-budget` and `watchdog`: they check a
//! partition's `policy`, `restart_budget` and `watchdog_ms` keys (and, for the
//! watchdog, its capabilities) and turn them into its [`Supervision`].

use septum_core::abi::{CapType, Rights, TrapAction, TrapClass};
use toml::Spanned;

use super::{Checker, resolve_cap};
use crate::format::PartitionEntry;
use crate::limits::MAX_RESTARTS;
use crate::model::{CapKind, Kind, RestartBudget, Supervision};

/// Most restarts a budget may allow (the kernel's limit).
const RESTARTS_MAX: i64 = MAX_RESTARTS as i64;
/// Longest restart-budget period: one hour.
const PERIOD_MS_MAX: i64 = 3_600_000;
/// Longest heartbeat period: one minute.
const WATCHDOG_MS_MAX: u64 = 60_000;

/// The supervision `entry` asks for, checking every supervision rule on the way.
pub(super) fn check_supervision(
    check: &mut Checker<'_>,
    entry: &PartitionEntry,
    kind: Kind,
) -> Supervision {
    Supervision {
        policy: check_policy(check, entry, kind),
        restart_budget: check_restart_budget(check, entry),
        watchdog_ms: check_watchdog(check, entry),
    }
}

/// Rule `policy`: known classes and actions, and no policy on the service VM.
fn check_policy(
    check: &mut Checker<'_>,
    entry: &PartitionEntry,
    kind: Kind,
) -> Vec<(TrapClass, TrapAction)> {
    let mut policy = Supervision::default().policy;
    let Some(table) = &entry.policy else {
        return policy;
    };
    let name = entry.name.get_ref();
    if kind == Kind::Service {
        let message = format!(
            "`{name}` is the service VM: its traps always restart it, so it takes no `policy`"
        );
        check.fail(table.span(), "policy", message);
        return policy;
    }
    for (class, action) in table.get_ref() {
        let Some(known_class) = TrapClass::from_name(class.get_ref()) else {
            let classes: Vec<&str> = TrapClass::ALL.iter().map(|c| c.name()).collect();
            let message = format!(
                "`{name}` has a policy for trap class `{}`, which does not exist ({})",
                class.get_ref(),
                classes.join(", ")
            );
            check.fail(class.span(), "policy", message);
            continue;
        };
        let Some(known_action) = TrapAction::from_name(action.get_ref()) else {
            let actions: Vec<String> = TrapAction::ALL
                .iter()
                .map(|a| format!("`{}`", a.name()))
                .collect();
            let message = format!(
                "`{name}` has trap action `{}` for `{}`; it must be {}",
                action.get_ref(),
                class.get_ref(),
                actions.join(" or ")
            );
            check.fail(action.span(), "policy", message);
            continue;
        };
        for (listed, action) in &mut policy {
            if *listed == known_class {
                *action = known_action;
            }
        }
    }
    policy
}

/// Rule `restart-budget`: exactly the keys `restarts` (0 to 16) and `period_ms`
/// (1 to 3,600,000).
fn check_restart_budget(check: &mut Checker<'_>, entry: &PartitionEntry) -> RestartBudget {
    let mut budget = RestartBudget::default();
    let Some(table) = &entry.restart_budget else {
        return budget;
    };
    let name = entry.name.get_ref();
    let in_range = |value: &Spanned<toml::Value>, low: i64, high: i64| {
        value
            .get_ref()
            .as_integer()
            .filter(|number| (low..=high).contains(number))
    };
    for (key, value) in table.get_ref() {
        match key.get_ref().as_str() {
            "restarts" => match in_range(value, 0, RESTARTS_MAX) {
                Some(restarts) => budget.restarts = restarts.try_into().expect("at most 16"),
                None => {
                    let message = format!(
                        "restart budget of `{name}` allows {} restarts; it must be a whole number from 0 to {RESTARTS_MAX}",
                        value.get_ref()
                    );
                    check.fail(value.span(), "restart-budget", message);
                }
            },
            "period_ms" => match in_range(value, 1, PERIOD_MS_MAX) {
                Some(period) => budget.period_ms = period.try_into().expect("at most an hour"),
                None => {
                    let message = format!(
                        "restart budget of `{name}` has a period of {} ms; it must be a whole number from 1 to {PERIOD_MS_MAX}",
                        value.get_ref()
                    );
                    check.fail(value.span(), "restart-budget", message);
                }
            },
            other => {
                let message = format!(
                    "restart budget of `{name}` has an unknown key `{other}` (it takes `restarts` and `period_ms`)"
                );
                check.fail(key.span(), "restart-budget", message);
            }
        }
    }
    for required in ["restarts", "period_ms"] {
        if !table.get_ref().keys().any(|key| key.get_ref() == required) {
            let message = format!("restart budget of `{name}` needs `{required}`");
            check.fail(table.span(), "restart-budget", message);
        }
    }
    budget
}

/// Rule `watchdog`: a period of 1 to 60,000 ms, given exactly when the partition
/// holds a `watchdog` capability with the `heartbeat` right.
fn check_watchdog(check: &mut Checker<'_>, entry: &PartitionEntry) -> Option<u32> {
    let name = entry.name.get_ref();
    let heartbeat_cap = entry.caps.iter().find(|cap| {
        resolve_cap(cap.get_ref()).is_ok_and(|resolved| {
            resolved.kind == CapKind::Watchdog && resolved.rights.contains(Rights::HEARTBEAT)
        })
    });
    // A watchdog capability that breaks a capability rule has its own error; it is
    // not reported missing here as well.
    let broken_watchdog_cap = entry.caps.iter().any(|cap| {
        *cap.get_ref().kind.get_ref() == CapType::Watchdog.name()
            && resolve_cap(cap.get_ref()).is_err()
    });
    let Some(period) = &entry.watchdog_ms else {
        if let Some(cap) = heartbeat_cap {
            let message = format!(
                "`{name}` holds a `watchdog` capability with the `heartbeat` right but sets no `watchdog_ms` (its heartbeat period)"
            );
            check.fail(cap.span(), "watchdog", message);
        }
        return None;
    };
    let ms = *period.get_ref();
    if ms == 0 || ms > WATCHDOG_MS_MAX {
        let message =
            format!("watchdog period of `{name}` is {ms} ms; it must be 1 to {WATCHDOG_MS_MAX} ms");
        check.fail(period.span(), "watchdog", message);
    }
    if heartbeat_cap.is_none() && !broken_watchdog_cap {
        let message = format!(
            "`{name}` sets `watchdog_ms` but holds no `watchdog` capability with the `heartbeat` right to heartbeat through"
        );
        check.fail(period.span(), "watchdog", message);
    }
    Some(u32::try_from(ms).unwrap_or(u32::MAX))
}
