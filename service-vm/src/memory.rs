//! The memory scheduler: on every memory report from a guest, one round of the
//! policy of [`septum_memsched`] over every guest with a balloon, and the
//! new targets handed to the kernel. It also prints the memory lines the host
//! tool turns into a CSV and a chart, and watches for guests that ignore their
//! target. A guest whose target the operator set on the console (`target`) is
//! pinned: the policy leaves it alone until `target <name> auto`.
//!
//! The scheduler works from the kernel's counts ([`MemoryInfo::held`]), never
//! from what a guest claims: a guest's reported use only weighs in up to what it
//! holds (see [`septum_memsched`]).
//!
//! Settings come from the service VM's boot argument (the description's
//! `argument`), so a system sets them without rebuilding the service VM:
//!
//! | bits | setting | 0 means |
//! |---|---|---|
//! | 8-15 | idle memory tax, percent (below 100) | [`DEFAULT_TAX`] |
//! | 16-31 | most pages a target moves in one round | [`DEFAULT_STEP`] |
//! | 32-39 | rounds a guest may hold more than its target without giving any back before it counts as refusing | never |
//! | 40 | stop a refusing guest (else only report it) | report |

use septum_abi::{CAP_SLOTS, MAX_PARTITIONS};
use septum_memsched::{Guest, Policy, Pressure};
use septum_sdk::println;
use septum_sdk::supervise::{self, MemoryInfo};

use crate::Guests;

/// Idle memory tax when the boot argument gives none (as ESX's default).
pub const DEFAULT_TAX: u8 = 75;
/// Pages a target moves per round when the boot argument gives none (16 MiB).
pub const DEFAULT_STEP: u64 = 4096;
const PAGE_KIB: u64 = 4;
/// A target stays within this much (2 MiB) of its entitlement (see
/// [`septum_memsched`]'s dead band).
const DEAD_BAND: u64 = 512;
/// A guest's memory line is printed when its target changes, when it reaches
/// its target, and otherwise only once its memory moved this much (1 MiB) since
/// the last line: a balloon moves a batch per report, and a line per batch
/// would flood the console.
const PRINT_STEP: u64 = 256;

/// The scheduler's state between rounds.
pub struct Scheduler {
    policy: Policy,
    refusal_rounds: u64,
    stop_refusers: bool,
    /// Per partition index: the guest's pressure as of its latest report.
    pressure: [Pressure; MAX_PARTITIONS],
    /// Per partition index: rounds refusing, the (target, held) last printed,
    /// the pages held last round.
    refusing: [u64; MAX_PARTITIONS],
    printed: [(u64, u64); MAX_PARTITIONS],
    last_held: [u64; MAX_PARTITIONS],
    /// Per partition index: its target was set on the console, and the policy
    /// leaves it alone.
    pinned: [bool; MAX_PARTITIONS],
}

/// The pages every guest started with, the pages they hold now and the pages in
/// the kernel's pool, read one guest at a time. The reads are not atomic: the
/// service VM's window may end between two of them and memory move before the
/// next, so a caller trusts a snapshot only when the one right after it is the
/// same.
fn ledger_snapshot(guests: &Guests) -> (u64, u64, u64) {
    let (mut initial, mut held, mut pool) = (0, 0, 0);
    for &(control, _) in guests {
        if let Ok(info) = supervise::memory_info(control) {
            initial += info.initial;
            held += info.held;
            pool = info.pool;
        }
    }
    (initial, held, pool)
}

impl Scheduler {
    /// A scheduler with the settings of boot argument `argument`.
    pub fn new(argument: u64) -> Scheduler {
        let tax = ((argument >> 8) & 0xff) as u8;
        let step = (argument >> 16) & 0xffff;
        Scheduler {
            policy: Policy {
                idle_tax_percent: if tax == 0 { DEFAULT_TAX } else { tax.min(99) },
                step: if step == 0 { DEFAULT_STEP } else { step },
                dead_band: DEAD_BAND,
            },
            refusal_rounds: (argument >> 32) & 0xff,
            stop_refusers: argument & (1 << 40) != 0,
            pressure: [Pressure::default(); MAX_PARTITIONS],
            refusing: [0; MAX_PARTITIONS],
            printed: [(0, 0); MAX_PARTITIONS],
            last_held: [0; MAX_PARTITIONS],
            pinned: [false; MAX_PARTITIONS],
        }
    }

    /// Pins the target of the guest with partition index `index` (set on the
    /// console), or hands it back to the policy.
    pub fn pin(&mut self, index: usize, pinned: bool) {
        if let Some(slot) = self.pinned.get_mut(index) {
            *slot = pinned;
        }
    }

    /// One round at `time_us`: reads every ballooning guest's memory, sets the
    /// targets the policy gives, prints what changed, and acts on refusers.
    pub fn round(&mut self, guests: &Guests, time_us: u64) {
        let mut live: heapless::Vec<(u64, usize, MemoryInfo), CAP_SLOTS> = heapless::Vec::new();
        // Every frame the guests started with is held by one of them or in the
        // kernel's pool; the live guests the scheduler weighs share all but
        // what the others hold (an ended guest holds only what it always
        // keeps, a Linux one nothing).
        let (mut initial, mut held, mut unshared, mut pool) = (0, 0, 0, 0);
        for &(control, index) in guests {
            let Ok(info) = supervise::memory_info(control) else {
                continue;
            };
            initial += info.initial;
            held += info.held;
            pool = info.pool;
            let ended = supervise::inspect(control).is_ok_and(|i| {
                matches!(
                    i.state,
                    septum_abi::PartitionState::Exited | septum_abi::PartitionState::Stopped
                )
            });
            // The ABI keeps a partition index below MAX_PARTITIONS.
            let index = usize::from(index);
            if info.shares > 0 && !ended && !self.pinned[index] {
                let _ = live.push((control, index, info));
                continue;
            }
            unshared += info.held;
            if info.shares > 0 && self.printed[index].1 != info.held {
                // A pinned guest's memory moving, or an ended guest's last line
                // (its balloon memory went to the pool).
                self.printed[index] = (info.target, info.held);
                print_line(control, time_us, info.target, &info);
            }
        }
        // The kernel's conservation law, seen from here: only on a snapshot that
        // held still (see `ledger_snapshot`), since memory may move between two
        // reads when this loop runs past the end of its window.
        if held + pool != initial {
            let snapshot = ledger_snapshot(guests);
            let (initial, held, pool) = snapshot;
            if held + pool != initial && ledger_snapshot(guests) == snapshot {
                println!("memory ledger broken: {held} held + {pool} free != {initial}");
            }
        }
        let available = initial - unshared;
        let inputs: heapless::Vec<Guest, CAP_SLOTS> = live
            .iter()
            .map(|&(_, index, info)| Guest {
                min: info.min,
                max: info.max,
                shares: info.shares,
                current: info.held,
                // Kept memory is in use by definition.
                used: info.min + info.used,
                pressure: self.pressure[index].update(info.reports, info.failures),
                target: info.target,
            })
            .collect();
        let targets = match septum_memsched::targets(&self.policy, available, &inputs) {
            Ok(targets) => targets,
            Err(error) => {
                println!("memory scheduler: no targets ({error:?})");
                return;
            }
        };
        for (&(control, index, info), &target) in live.iter().zip(&targets) {
            if target != info.target
                && let Err(error) = supervise::set_memory_target(control, 0, target)
            {
                println!("memory target refused: {}", error.name());
            }
            self.watch_refusal(control, index, &info);
            let (printed_target, printed_held) = self.printed[index];
            let settled = info.held == target && printed_held != info.held;
            if target != printed_target || printed_held.abs_diff(info.held) >= PRINT_STEP || settled
            {
                self.printed[index] = (target, info.held);
                print_line(control, time_us, target, &info);
            }
        }
    }

    /// Counts the rounds a guest holds more than its target without giving any
    /// back, and acts when they reach the configured limit.
    fn watch_refusal(&mut self, control: u64, index: usize, info: &MemoryInfo) {
        let gave_back = info.held < self.last_held[index];
        self.last_held[index] = info.held;
        if info.held <= info.target || gave_back {
            self.refusing[index] = 0;
            return;
        }
        self.refusing[index] += 1;
        if self.refusal_rounds == 0 || self.refusing[index] != self.refusal_rounds {
            return;
        }
        let name = crate::name_of(control);
        println!(
            "{name} ignores its memory target ({} pages held, target {}) for {} rounds{}",
            info.held,
            info.target,
            self.refusal_rounds,
            if self.stop_refusers {
                ": stopping it"
            } else {
                ""
            }
        );
        if self.stop_refusers
            && let Err(error) = supervise::stop(control, 0)
        {
            println!("stop of {name} refused: {}", error.name());
        }
    }
}

fn print_line(control: u64, time_us: u64, target: u64, info: &MemoryInfo) {
    println!(
        "mem t={}ms {} target={}K actual={}K min={}K max={}K used={}K",
        time_us / 1000,
        crate::name_of(control),
        target * PAGE_KIB,
        info.held * PAGE_KIB,
        info.min * PAGE_KIB,
        info.max * PAGE_KIB,
        (info.min + info.used.min(info.held.saturating_sub(info.min))) * PAGE_KIB
    );
}

/// The console's `mem` command: every guest's memory, as the kernel counts it.
pub fn list(guests: &Guests) {
    println!("  name         target     actual     min        max        claimed-used");
    for &(control, _) in guests {
        let Ok(info) = supervise::memory_info(control) else {
            continue;
        };
        println!(
            "  {:<12} {:<10} {:<10} {:<10} {:<10} {}",
            crate::name_of(control),
            kib(info.target),
            kib(info.held),
            kib(info.min),
            kib(info.max),
            if info.shares == 0 {
                heapless::String::<16>::try_from("-").unwrap_or_default()
            } else {
                kib(info.min + info.used)
            }
        );
    }
}

fn kib(pages: u64) -> heapless::String<16> {
    let mut text = heapless::String::new();
    let _ = core::fmt::write(&mut text, format_args!("{}K", pages * PAGE_KIB));
    text
}
