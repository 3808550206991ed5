//! The memory scheduler's policy: from each guest's limits, shares and use, the
//! memory target the service VM gives it next round. A pure function of its
//! inputs, so it is tested here on the host; the service VM (`service-vm/src/
//! memory.rs`) calls it and the guests' balloon drivers follow the targets. It is
//! the service VM's policy, not the kernel's: the kernel only enforces the
//! targets, within each guest's minimum and maximum, whatever this crate computes.
//!
//! **Entitlement (idle memory tax).** Memory goes to guests in proportion to their
//! shares, but a page a guest does not use costs it more than a page it uses, as
//! in VMware ESX: a guest with `shares` S holding P pages, of which it demands D,
//! has a shares-per-page ratio `S / (min(P, D) + k · max(0, P − D))`, where
//! `k = 1 / (1 − tax)`. Pages are handed out a quantum at a time to the guest
//! whose ratio after the quantum is highest, from every guest's minimum up to its
//! maximum, until the memory runs out. A higher tax lets idle guests keep less.
//!
//! **Demand.** A guest's demand is what it reports in use; one under allocation
//! pressure (its latest report counted new failed allocations, see
//! [`Pressure`]) demands its current
//! memory plus one step. What a guest reports is clamped to what the kernel says
//! it holds, so a guest that lies about its use cannot claim more than it has.
//!
//! **Rate limit.** A target moves at most `step` pages a round, except that the
//! targets never sum to more than the available memory: increases are cut first,
//! then decreases go faster when they must.
//!
//! **Dead band.** A target within `dead_band` pages of its entitlement stays
//! where it is (unless the entitlement is the guest's minimum or maximum): the
//! entitlement swings by a quantum or two as pressure comes and goes, and
//! following every swing would have balloons give and take the same pages over
//! and over. A decrease is held only while the targets still fit the memory, so
//! holding one never lets another guest's increase take memory nobody freed.
//!
//! Invariants (property-tested below):
//! - the targets sum to at most the available memory;
//! - every target lies in its guest's `[min, max]`;
//! - with inputs held still, the targets reach the unlimited entitlement within
//!   `ceil(largest gap / step)` rounds, so a guest whose demand rises gets memory
//!   from idle guests within a bounded number of rounds.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use septum_abi::MAX_PARTITIONS;

/// Pages handed out at a time when computing the entitlement.
pub const QUANTUM: u64 = 64;

/// The scheduler's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Idle memory tax, in percent (0 to 99): how much more an idle page costs.
    pub idle_tax_percent: u8,
    /// Most pages a target moves in one round.
    pub step: u64,
    /// Moves of this many pages or fewer are not made.
    pub dead_band: u64,
}

/// One guest as the scheduler sees it (all sizes in pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guest {
    /// Its description's minimum.
    pub min: u64,
    /// Its description's maximum.
    pub max: u64,
    /// Its description's shares (weight against the other guests).
    pub shares: u32,
    /// Pages it holds, as the kernel counts them.
    pub current: u64,
    /// Pages it reports in use.
    pub used: u64,
    /// It failed allocations since the last round.
    pub pressure: bool,
    /// Its target from the last round.
    pub target: u64,
}

/// Whether a guest is under allocation pressure, judged per report rather than
/// per round: rounds also run on the other guests' reports, and a guest that
/// failed allocations stays under pressure until it reports again without new
/// failures. (Judged per round, a guest's pressure flickered off whenever
/// another guest reported, and the targets swung back and forth with it.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    reports: u64,
    failures: u64,
    under: bool,
}

impl Pressure {
    /// The pressure after a round that sees the guest's report count `reports`
    /// and its failed-allocation count `failures` (both as the kernel last
    /// recorded them).
    pub fn update(&mut self, reports: u64, failures: u64) -> bool {
        if reports != self.reports {
            self.under = failures > self.failures;
            self.reports = reports;
            self.failures = failures;
        }
        self.under
    }
}

/// Why no targets could be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The guests' minimums add up to more than the available memory.
    Overcommitted,
    /// More guests than a system holds, a minimum above a maximum, or a tax of
    /// 100 % or more.
    Invalid,
}

/// The targets for the next round: one per guest, in `guests`' order.
pub type Targets = heapless::Vec<u64, MAX_PARTITIONS>;

impl Guest {
    /// What the guest demands this round, within its limits.
    fn demand(&self, policy: &Policy) -> u64 {
        let used = self.used.min(self.current);
        let wanted = if self.pressure {
            self.current.saturating_add(policy.step)
        } else {
            used
        };
        wanted.clamp(self.min, self.max)
    }

    /// Holding `pages`, its cost in tax-weighted pages, scaled by `100 − tax`
    /// (the same factor for every guest, so ratios compare exactly in integers).
    fn cost(&self, pages: u64, demand: u64, policy: &Policy) -> u128 {
        let used = u128::from(pages.min(demand));
        let idle = u128::from(pages.saturating_sub(demand));
        used * u128::from(100 - policy.idle_tax_percent) + idle * 100
    }
}

/// The entitlement of every guest with no rate limit: minimums first, then the
/// rest of `available` a quantum at a time by shares per tax-weighted page.
pub fn entitlement(
    policy: &Policy,
    available: u64,
    guests: &[Guest],
) -> Result<Targets, PolicyError> {
    check(policy, available, guests)?;
    let demands: heapless::Vec<u64, MAX_PARTITIONS> =
        guests.iter().map(|g| g.demand(policy)).collect();
    let mut pages: Targets = guests.iter().map(|g| g.min).collect();
    let mut left = available - guests.iter().map(|g| g.min).sum::<u64>();
    while left > 0 {
        // The guest whose shares per tax-weighted page stay highest after one
        // more quantum; ties go to the lower index.
        let mut best: Option<(usize, u64)> = None;
        for (index, guest) in guests.iter().enumerate() {
            let grant = QUANTUM.min(left).min(guest.max - pages[index]);
            if grant == 0 {
                continue;
            }
            let better = best.is_none_or(|(b, b_grant)| {
                let mine = guest.cost(pages[index] + grant, demands[index], policy);
                let theirs = guests[b].cost(pages[b] + b_grant, demands[b], policy);
                u128::from(guest.shares) * theirs > u128::from(guests[b].shares) * mine
            });
            if better {
                best = Some((index, grant));
            }
        }
        let Some((index, grant)) = best else { break };
        pages[index] += grant;
        left -= grant;
    }
    Ok(pages)
}

/// The targets for the next round: the entitlement, each moved at most
/// `policy.step` from the guest's last target, and never more than `available`
/// in all.
pub fn targets(policy: &Policy, available: u64, guests: &[Guest]) -> Result<Targets, PolicyError> {
    let ideal = entitlement(policy, available, guests)?;
    let last = |g: &Guest| g.target.clamp(g.min, g.max);
    let mut next: Targets = guests
        .iter()
        .zip(&ideal)
        .map(|(g, &ideal)| {
            let low = last(g).saturating_sub(policy.step).max(g.min);
            let high = last(g).saturating_add(policy.step).min(g.max);
            ideal.clamp(low, high)
        })
        .collect();
    let mut excess = next.iter().sum::<u64>().saturating_sub(available);
    // Cut increases first (down to the last target); then, only when the memory
    // shrank, decreases go further than one step: down to the entitlement, then
    // to the minimums (which fit: `check` saw to that).
    for phase in 0..3 {
        for (index, guest) in guests.iter().enumerate() {
            let floor = match phase {
                0 => last(guest),
                1 => ideal[index],
                _ => guest.min,
            };
            let cut = next[index].saturating_sub(floor).min(excess);
            next[index] -= cut;
            excess -= cut;
        }
    }
    Ok(hold_small_moves(policy, available, guests, &ideal, next))
}

/// `next` with every target whose entitlement `ideal` lies within the dead band
/// of its last target held there, except that decreases are made after all
/// when holding them would not fit `available` (`next` fits, and holding an
/// increase only lowers the sum).
fn hold_small_moves(
    policy: &Policy,
    available: u64,
    guests: &[Guest],
    ideal: &Targets,
    next: Targets,
) -> Targets {
    let settle = |hold_decreases: bool| -> Targets {
        guests
            .iter()
            .zip(ideal.iter().zip(&next))
            .map(|(guest, (&ideal, &target))| {
                let last = guest.target.clamp(guest.min, guest.max);
                let small = last.abs_diff(ideal) <= policy.dead_band
                    && ideal != guest.min
                    && ideal != guest.max;
                if small && (hold_decreases || target >= last) {
                    last
                } else {
                    target
                }
            })
            .collect()
    };
    let held = settle(true);
    if held.iter().sum::<u64>() <= available {
        held
    } else {
        settle(false)
    }
}

fn check(policy: &Policy, available: u64, guests: &[Guest]) -> Result<(), PolicyError> {
    let valid = guests.len() <= MAX_PARTITIONS
        && policy.idle_tax_percent < 100
        && guests.iter().all(|g| g.min <= g.max);
    if !valid {
        return Err(PolicyError::Invalid);
    }
    let minimums = guests
        .iter()
        .try_fold(0u64, |sum, g| sum.checked_add(g.min));
    match minimums {
        Some(sum) if sum <= available => Ok(()),
        _ => Err(PolicyError::Overcommitted),
    }
}

#[cfg(test)]
mod tests;
