//! The status view: `top` on the operator's console. Every second it prints,
//! for the service VM and each guest it supervises, what the kernel says:
//! state, generation and restarts ([`supervise::inspect`]), memory held and
//! target ([`supervise::memory_info`]), the share of its core's last frames it
//! ran, its traps and hypercalls per second and in all, and the messages
//! waiting on the queues it receives from ([`supervise::usage`]). Rates are
//! the difference of two of the kernel's records over the difference of their
//! times; nothing here is measured by the service VM itself.
//!
//! `top` refreshes until a key is pressed (any byte but a line feed, so that
//! the Enter that started it does not end it; under Bochs, where a line goes
//! when Enter is pressed, a key and Enter) or Ctrl-T comes again; `top <n>`
//! prints `n` refreshes (1 to [`MAX_REFRESHES`]) and ends. Meanwhile the
//! service VM polls for events instead of blocking, yielding its core between
//! looks, so supervision goes on.

use septum_abi::MAX_PARTITIONS;
use septum_abi::usage::Usage;
use septum_sdk::supervise;
use septum_sdk::{println, slot};

use crate::{Guests, name_of};

/// Time between refreshes, in µs of the kernel's clock.
const PERIOD_US: u64 = 1_000_000;
/// Most refreshes `top <n>` asks for.
pub const MAX_REFRESHES: u64 = 1000;
const PAGE_KIB: u64 = 4;

/// A running status view.
pub struct Top {
    /// Refreshes still to print (`None`: until a key).
    left: Option<u64>,
    /// When the next refresh is due.
    due_us: u64,
    printed: u64,
    /// The service VM's own RAM and generation, which it knows from its boot.
    own_ram: u64,
    own_generation: u32,
    /// Per partition index: its last record, the base of its rates.
    last: [Option<Usage>; MAX_PARTITIONS],
}

impl Top {
    /// Parses the command's argument (none: until a key) and takes the first
    /// records; `None` (with a message) if the argument is bad.
    pub fn start(
        argument: Option<&str>,
        guests: &Guests,
        own_ram: u64,
        own_generation: u32,
    ) -> Option<Top> {
        let left = match argument.map(str::parse::<u64>) {
            None => None,
            Some(Ok(count @ 1..=MAX_REFRESHES)) => Some(count),
            Some(_) => {
                println!("top [n]: n from 1 to {MAX_REFRESHES} refreshes, or none: until a key");
                return None;
            }
        };
        let own = match supervise::usage(slot::SYSTEM) {
            Ok(own) => own,
            Err(error) => {
                println!("top: usage refused: {}", error.name());
                return None;
            }
        };
        let mut top = Top {
            left,
            due_us: own.time_us + PERIOD_US,
            printed: 0,
            own_ram,
            own_generation,
            last: [None; MAX_PARTITIONS],
        };
        top.last[0] = Some(own);
        for &(control, index) in guests {
            top.last[usize::from(index)] = supervise::usage(control).ok();
        }
        match left {
            Some(1) => println!("top: one refresh, in a second"),
            Some(count) => println!("top: {count} refreshes, one a second"),
            None => println!("top: a refresh a second until a key is pressed"),
        }
        Some(top)
    }

    /// Prints a refresh if one is due; false once the last has been printed.
    pub fn tick(&mut self, guests: &Guests) -> bool {
        let Ok(own) = supervise::usage(slot::SYSTEM) else {
            return false;
        };
        if own.time_us < self.due_us {
            return true;
        }
        self.due_us = own.time_us + PERIOD_US;
        self.printed += 1;
        println!(
            "top {}: t={}ms; share: per mille of the last {} frames of {}us; /s: per second; mem: held/target",
            self.printed,
            own.time_us / 1000,
            own.frames,
            own.frame_us
        );
        let own_ram = self.own_ram / 1024;
        let own_row = Row {
            name: "service",
            state: "running",
            generation: self.own_generation,
            restarts: self.own_generation.saturating_sub(1),
            held_kib: own_ram,
            target_kib: own_ram,
        };
        self.print(0, &own_row, own);
        for &(control, index) in guests {
            let (Ok(info), Ok(usage)) = (supervise::inspect(control), supervise::usage(control))
            else {
                continue;
            };
            let memory = supervise::memory_info(control).ok();
            let row = Row {
                name: &name_of(control),
                state: info.state.name(),
                generation: info.generation,
                restarts: info.restarts,
                held_kib: memory
                    .as_ref()
                    .map_or(info.ram / 1024, |m| m.held * PAGE_KIB),
                target_kib: memory
                    .as_ref()
                    .map_or(info.ram / 1024, |m| m.target * PAGE_KIB),
            };
            self.print(usize::from(index), &row, usage);
        }
        match &mut self.left {
            Some(left) => {
                *left -= 1;
                *left > 0
            }
            None => true,
        }
    }

    /// Prints partition `index`'s row and keeps `usage` as the base of its
    /// next rates.
    fn print(&mut self, index: usize, row: &Row<'_>, usage: Usage) {
        let last = self.last[index].replace(usage).unwrap_or(usage);
        let span_us = usage.time_us.saturating_sub(last.time_us).max(1);
        let rate = |now: u64, then: u64| now.saturating_sub(then) * 1_000_000 / span_us;
        println!(
            "  {:<9} gen={} rst={} {:<9} share={:<4} traps/s={:<5} calls/s={:<6} calls={:<7} mem={:<13} queue={}/{}",
            row.name,
            row.generation,
            row.restarts,
            row.state,
            usage.share_permille(),
            rate(usage.traps_total(), last.traps_total()),
            rate(usage.hypercalls(), last.hypercalls()),
            usage.hypercalls(),
            Memory(row.held_kib, row.target_kib),
            usage.waiting,
            usage.depth
        );
    }
}

/// What a row shows besides the kernel's counts.
struct Row<'a> {
    name: &'a str,
    state: &'a str,
    generation: u32,
    restarts: u32,
    held_kib: u64,
    target_kib: u64,
}

/// Memory held and target, in KiB, as `<held>K/<target>K`, padded as a whole.
struct Memory(u64, u64);

impl core::fmt::Display for Memory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut text = heapless::String::<48>::new();
        let _ = core::fmt::write(&mut text, format_args!("{}K/{}K", self.0, self.1));
        f.pad(&text)
    }
}
