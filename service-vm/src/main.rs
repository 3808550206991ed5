//! The service VM: the privileged partition the kernel starts before any guest, and
//! the monitor that decides what happens to a guest that misbehaves.
//!
//! Its capabilities: console (slot 0), self (slot 1), system (slot 2, rights
//! `ready`, `shutdown`, `monitor`), then any number of control capabilities, one per
//! guest it supervises, and optionally a watchdog capability. It finds them by
//! identifying its own slots, so it rebuilds its whole view from the kernel's state
//! whenever it starts, including after the kernel restarted it.
//!
//! Its policy, one handler per event kind:
//! - **trap** (the guest's policy sent it here): resume the guest past the access;
//!   if the kernel cannot skip that instruction, restart the guest;
//! - **fault** and **missed heartbeat**: restart the guest (the kernel stops it for
//!   good once its restart budget is spent);
//! - **exited** / **stopped**: note it; when no guest is left, shut down;
//! - **memory** (a guest reported its memory use): one round of the memory
//!   scheduler ([`memory`]), which sets every ballooning guest's target;
//! - **console**: the operator pressed Ctrl-T; read commands from the input events:
//!   `list`, `mem`, `net`, `top [n]` (alias `status`; see [`top`]), `restart
//!   <name>`, `stop <name>`, `resume <name>`, `audit`, `shutdown`, `help`.
//!
//! The boot argument holds test switches: bit 0 crashes the first instance on its
//! first event, bit 1 tightens every guest's MMIO policy to `stop` before `ready`
//! (and shows that loosening it again is refused), bit 2 makes the first instance
//! stop heartbeating on its first event, bit 3 makes the first instance, once
//! ready, evacuate 64 MiB and then 1 MiB of its first guest's frames and
//! devirtualize it (the devirtualization benchmark: see [`relocation_bench`]).
//! Bits 8 and up set the memory scheduler (see [`memory`]).
#![no_std]
#![no_main]

mod memory;
mod top;
mod uplink;

use septum_abi::event::Kind;
use septum_abi::{CapType, MAX_PARTITIONS, Reason, TrapAction, TrapClass, audit};
use septum_sdk::supervise::{self, Event};
use septum_sdk::{Boot, Error, println, slot};

septum_sdk::entry!(main);

const CRASH_ON_FIRST_EVENT: u64 = 1 << 0;
const STRICT_MMIO: u64 = 1 << 1;
const HANG_ON_FIRST_EVENT: u64 = 1 << 2;
const RELOCATION_BENCH: u64 = 1 << 3;
/// Traps per partition reported line by line.
const LOUD_TRAPS: u32 = 3;
/// 4 KiB pages in a MiB (the console's `target` takes MiB).
const PAGES_PER_MIB: u64 = 256;

/// The guests this instance supervises: (control slot, partition index).
pub(crate) type Guests = heapless::Vec<(u64, u16), MAX_PARTITIONS>;

fn main(boot: Boot) -> u64 {
    println!(
        "service VM up, generation {}, {} KiB of RAM",
        boot.generation,
        boot.ram_size / 1024
    );
    let guests: Guests = supervise::slots_of(CapType::Control).collect();
    let watchdog = supervise::slots_of(CapType::Watchdog)
        .next()
        .map(|(s, _)| s);
    if boot.argument & STRICT_MMIO != 0 && boot.generation == 1 {
        tighten_mmio(&guests);
    }
    match septum_sdk::ready(slot::SYSTEM) {
        Ok(()) if boot.generation > 1 => {
            println!("restarted; supervising {} guests", guests.len());
            list(&guests);
        }
        Ok(()) => {}
        Err(error) => {
            println!("ready refused: {}", error.name());
            return 1;
        }
    }
    let first_instance = boot.generation == 1;
    if first_instance
        && boot.argument & RELOCATION_BENCH != 0
        && let Some(&(control, _)) = guests.first()
    {
        relocation_bench(control);
    }
    let mut console = Console {
        own_ram: boot.ram_size,
        own_generation: boot.generation,
        ..Console::default()
    };
    let mut scheduler = memory::Scheduler::new(boot.argument);
    let mut uplink = uplink::Uplink::start();
    let mut handled = 0u64;
    loop {
        if let Some(slot) = watchdog {
            let _ = supervise::heartbeat(slot);
        }
        let event = match next_event(uplink.as_mut(), &mut console.top, &guests) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(error) => {
                println!("cannot take events: {}", error.name());
                return 1;
            }
        };
        handled += 1;
        if first_instance && handled == 1 {
            misbehave_if_asked(boot.argument);
        }
        if event.kind == Kind::Memory {
            scheduler.round(&guests, event.time_us);
            continue;
        }
        handle(&event, &guests, &mut console, &mut scheduler);
        if console.shutdown {
            break;
        }
        // A guest that ended left its balloon memory to the others.
        if matches!(event.kind, Kind::Exited | Kind::Stopped) {
            scheduler.round(&guests, event.time_us);
        }
        if event.live_guests == 0 && matches!(event.kind, Kind::Exited | Kind::Stopped) {
            break;
        }
    }
    if let Some(uplink) = &uplink {
        let counts = &uplink.counts;
        println!(
            "uplink carried {} out, {} in, answered {} ARP requests, dropped {}",
            counts.out, counts.into, counts.arp, counts.dropped
        );
    }
    match console.shutdown {
        true => println!("shutting down at the operator's request"),
        false => println!("all guests done, shutting down"),
    }
    let error = septum_sdk::shutdown(slot::SYSTEM, 0);
    println!("shutdown refused: {}", error.name());
    1
}

/// The next event: waited for, or, with an uplink to carry or a status view
/// running, polled for between rounds of the uplink and refreshes of the view
/// (the core is yielded when the uplink moved nothing).
fn next_event(
    uplink: Option<&mut uplink::Uplink>,
    top: &mut Option<top::Top>,
    guests: &Guests,
) -> Result<Option<Event>, Error> {
    if uplink.is_none() && top.is_none() {
        return supervise::wait_event(slot::SYSTEM).map(Some);
    }
    if let Some(event) = supervise::poll_event(slot::SYSTEM)? {
        return Ok(Some(event));
    }
    if let Some(view) = top
        && !view.tick(guests)
    {
        *top = None;
    }
    if !uplink.is_some_and(uplink::Uplink::poll) {
        septum_sdk::yield_now(slot::SELF)?;
    }
    Ok(None)
}

fn handle(
    event: &Event,
    guests: &Guests,
    console: &mut Console,
    scheduler: &mut memory::Scheduler,
) {
    let Some(&(control, _)) = guests
        .iter()
        .find(|(_, i)| u64::from(*i) == event.partition)
    else {
        match event.kind {
            Kind::Console => console.open(),
            Kind::Input => event
                .input()
                .for_each(|b| console.key(b, guests, scheduler)),
            _ => println!("event {:?} about partition {}", event.kind, event.partition),
        }
        return;
    };
    let name = name_of(control);
    let reason = event.reason.map_or("-", |r| r.name());
    match event.kind {
        Kind::Trap if event.reason == Some(Reason::SystemRegister) && undefined(control, event) => {
            println!(
                "{name} gen {} trapped ({reason} at pc {:#x}): it takes an undefined-instruction exception there",
                event.generation, event.snapshot[0]
            );
        }
        Kind::Trap => {
            // The ABI keeps a partition index below MAX_PARTITIONS.
            let traps = &mut console.traps[event.partition as usize];
            *traps += 1;
            if *traps <= LOUD_TRAPS {
                println!(
                    "{name} gen {} trapped ({reason} at {:#x}, pc {:#x}): resuming past it",
                    event.generation, event.address, event.snapshot[0]
                );
            } else if *traps == LOUD_TRAPS + 1 {
                println!("{name} keeps trapping: resuming it quietly from now on");
            }
            match supervise::resume(control, event.generation, true) {
                Err(Error::CannotSkip) => restart(control, &name, event.generation),
                Err(error) => println!("resume of {name} refused: {}", error.name()),
                Ok(()) => {}
            }
        }
        Kind::Fault | Kind::Watchdog => {
            println!(
                "{name} gen {} {} ({reason} at {:#x}, pc {:#x}): restarting it",
                event.generation,
                if event.kind == Kind::Fault {
                    "faulted"
                } else {
                    "missed its heartbeat"
                },
                event.address,
                event.snapshot[0]
            );
            restart(control, &name, event.generation);
        }
        Kind::Exited => println!("{name} exited with code {}", event.detail),
        Kind::Stopped => println!("{name} was stopped by the kernel"),
        Kind::Console | Kind::Input | Kind::Memory => {}
    }
}

/// A trapped system register of a partition that has exception vectors of its
/// own (a Linux partition) is an instruction its CPU does not have: it takes
/// the undefined-instruction exception there, as on hardware. False for any
/// other partition, which is resumed past it instead.
fn undefined(control: u64, event: &Event) -> bool {
    supervise::inspect(control).is_ok_and(|info| info.linux)
        && supervise::resume_undefined(control, event.generation).is_ok()
}

fn restart(control: u64, name: &str, generation: u32) {
    match supervise::restart(control, generation) {
        Ok(_) => {}
        Err(Error::BudgetExhausted) => {
            println!("{name} used up its restart budget: it stays stopped")
        }
        Err(error) => println!("restart of {name} refused: {}", error.name()),
    }
}

pub(crate) fn name_of(control: u64) -> heapless::String<16> {
    let mut name = heapless::String::new();
    if let Ok(info) = supervise::inspect(control) {
        let _ = name.push_str(info.name());
    }
    name
}

fn list(guests: &Guests) {
    for &(control, _) in guests {
        if let Ok(info) = supervise::inspect(control) {
            println!(
                "  {:<12} {:<10} gen={} restarts={} ram={}K",
                info.name(),
                info.state.name(),
                info.generation,
                info.restarts,
                info.ram / 1024
            );
        }
    }
}

/// Each guest's network port: its address and counters (the kernel's).
fn net(guests: &Guests) {
    for &(control, _) in guests {
        let Ok(counters) = supervise::net_info(control) else {
            continue;
        };
        let Some(address) = septum_abi::net::Address::from_word(counters.address) else {
            continue;
        };
        println!("  {:<12} {address} {counters}", name_of(control));
    }
}

fn tighten_mmio(guests: &Guests) {
    for &(control, _) in guests {
        let name = name_of(control);
        match supervise::set_policy(control, TrapClass::Mmio, TrapAction::Stop) {
            Ok(()) => println!("policy of {name}: mmio traps now stop it"),
            Err(error) => println!("policy of {name} not tightened: {}", error.name()),
        }
        if let Err(error) = supervise::set_policy(control, TrapClass::Mmio, TrapAction::Service) {
            println!(
                "loosening the policy of {name} back: refused ({})",
                error.name()
            );
        }
    }
}

/// The test switches of the boot argument, applied on the first instance's first
/// event.
fn misbehave_if_asked(argument: u64) {
    if argument & CRASH_ON_FIRST_EVENT != 0 {
        println!("crashing on purpose");
        // SAFETY: an undefined instruction traps to the kernel, which restarts this
        // partition; nothing after it runs.
        unsafe { crash() };
    }
    if argument & HANG_ON_FIRST_EVENT != 0 {
        println!("hanging on purpose");
        loop {
            core::hint::spin_loop();
        }
    }
}

/// # Safety
/// Never returns: the kernel stops or restarts the partition.
#[cfg(target_arch = "aarch64")]
unsafe fn crash() {
    // SAFETY: see the caller.
    unsafe { core::arch::asm!("udf #0") }
}

/// # Safety
/// Never returns: the kernel stops or restarts the partition.
#[cfg(target_arch = "x86_64")]
unsafe fn crash() {
    // SAFETY: see the caller.
    unsafe { core::arch::asm!("ud2") }
}

/// The operator's console: a line of typed input and its commands; how many
/// traps of each partition were reported; the status view, while it runs.
struct Console {
    line: heapless::String<64>,
    traps: [u32; MAX_PARTITIONS],
    /// The operator typed `shutdown`.
    shutdown: bool,
    top: Option<top::Top>,
    /// This instance's RAM and generation (for its own row in `top`).
    own_ram: u64,
    own_generation: u32,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            line: heapless::String::new(),
            shutdown: false,
            traps: [0; MAX_PARTITIONS],
            top: None,
            own_ram: 0,
            own_generation: 0,
        }
    }
}

/// The console's commands, as `help` and Ctrl-T list them: two lines, each
/// shorter than the kernel's console line (120 bytes), which would otherwise
/// split the list in mid-word.
const COMMANDS: [&str; 2] = [
    "list, mem, net, top [n], restart <name>, stop <name>, resume <name>, audit,",
    "target <name> <MiB>, evacuate <name> <address> <pages>, devirtualize <name>, shutdown, help",
];

/// Prints the commands, each line after `heading`.
fn print_commands(heading: &str) {
    for line in COMMANDS {
        println!("{heading}: {line}");
    }
}

impl Console {
    fn open(&mut self) {
        self.line.clear();
        self.end_top();
        print_commands("console");
    }

    fn end_top(&mut self) {
        if self.top.take().is_some() {
            println!("top: ended");
        }
    }

    fn key(&mut self, byte: u8, guests: &Guests, scheduler: &mut memory::Scheduler) {
        // A key ends the status view (the line feed of the Enter that started it
        // does not).
        if self.top.is_some() {
            if byte != b'\n' {
                self.end_top();
            }
            return;
        }
        match byte {
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.line);
                match line.trim() {
                    "" => {}
                    "shutdown" => {
                        println!("> shutdown");
                        self.shutdown = true;
                    }
                    line => {
                        let mut words = line.split_whitespace();
                        if let Some("top" | "status") = words.next() {
                            println!("> {line}");
                            self.top = top::Top::start(
                                words.next(),
                                guests,
                                self.own_ram,
                                self.own_generation,
                            );
                        } else {
                            command(line, guests, scheduler);
                        }
                    }
                }
            }
            0x20..=0x7e => {
                let _ = self.line.push(byte as char);
            }
            _ => {}
        }
    }
}

fn command(line: &str, guests: &Guests, scheduler: &mut memory::Scheduler) {
    println!("> {line}");
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let guest = words.next().and_then(|name| {
        guests
            .iter()
            .copied()
            .find(|&(control, _)| name_of(control) == name)
    });
    let target = guest.map(|(control, _)| control);
    let result = match (verb, target) {
        ("list", _) => {
            list(guests);
            Ok(())
        }
        ("audit", _) => {
            audit();
            Ok(())
        }
        ("mem", _) => {
            memory::list(guests);
            Ok(())
        }
        ("net", _) => {
            net(guests);
            Ok(())
        }
        ("restart", Some(control)) => supervise::restart(control, 0).map(|_| ()),
        ("stop", Some(control)) => supervise::stop(control, 0),
        ("resume", Some(control)) => supervise::resume(control, 0, false),
        ("target", Some(control)) => {
            let index = guest.map_or(0, |(_, index)| usize::from(index));
            match words.next() {
                Some("auto") => {
                    scheduler.pin(index, false);
                    Ok(())
                }
                Some(size) if size.parse::<u64>().is_ok() => {
                    let mib = size.parse::<u64>().unwrap_or(0);
                    scheduler.pin(index, true);
                    supervise::set_memory_target(control, 0, mib * PAGES_PER_MIB)
                }
                _ => {
                    println!(
                        "target <name> <MiB>|auto: set the guest's memory target, or hand it back to the scheduler"
                    );
                    Ok(())
                }
            }
        }
        ("evacuate", Some(control)) => {
            let first = words
                .next()
                .and_then(|word| u64::from_str_radix(word.trim_start_matches("0x"), 16).ok());
            let pages = words.next().and_then(|word| word.parse::<u64>().ok());
            match (first, pages) {
                (Some(first), Some(pages)) => {
                    relocation(supervise::evacuate(control, first, pages), control)
                }
                _ => {
                    println!(
                        "evacuate <name> <machine address, hex> <pages>: move the guest's pages off those frames"
                    );
                    Ok(())
                }
            }
        }
        ("devirtualize", Some(control)) => relocation(supervise::devirtualize(control), control),
        ("restart" | "stop" | "resume" | "target" | "evacuate" | "devirtualize", None) => {
            println!("no such guest");
            Ok(())
        }
        _ => {
            print_commands("commands");
            Ok(())
        }
    };
    if let Err(error) = result {
        println!("refused: {}", error.name());
    }
}

/// The devirtualization benchmark (test switch bit 3): evacuates the 64 MiB
/// from 2 MiB into the devirtualizable guest of control capability `control`
/// (placed identity at `RAM_BASE`), then the MiB before them, and devirtualizes
/// it, each to its end; the kernel's lines time each step. (The large one goes
/// first, so that the console lines of the service VM's start, which the kernel
/// drains in between, weigh on it least.) The devirtualization stops this
/// instance, so nothing after it runs.
fn relocation_bench(control: u64) {
    const MIB: u64 = 1 << 20;
    const PAGE: u64 = 4096;
    let base = septum_sdk::RAM_BASE;
    let large = supervise::evacuate(control, base + 2 * MIB, 64 * MIB / PAGE);
    let outcome = relocation(large, control)
        .and_then(|()| {
            let small = supervise::evacuate(control, base + MIB, MIB / PAGE);
            relocation(small, control)
        })
        .and_then(|()| relocation(supervise::devirtualize(control), control));
    if let Err(error) = outcome {
        println!("relocation benchmark refused: {}", error.name());
    }
}

/// Carries a relocation the kernel began (`started`) to its end, a bounded
/// part per call; a devirtualization that ends does not return here.
fn relocation(started: Result<bool, Error>, control: u64) -> Result<(), Error> {
    let mut more = started?;
    let mut calls = 1u64;
    while more {
        more = supervise::relocate(control)?;
        calls += 1;
    }
    println!("relocated in {calls} calls");
    Ok(())
}

fn audit() {
    let mut records = [[0u64; audit::RECORD_WORDS]; 16];
    match supervise::audit_read(slot::SYSTEM, &mut records) {
        Ok((copied, lost, remaining)) => {
            for words in &records[..copied] {
                let Some(record) = audit::Record::from_words(words) else {
                    println!("  (a record of an unknown kind)");
                    continue;
                };
                println!(
                    "  t={}us partition={} gen={} {} {:#x} {:#x}",
                    record.time_us,
                    record.partition,
                    record.generation,
                    record.kind.name(),
                    record.detail[0],
                    record.detail[1]
                );
            }
            println!("  ({copied} shown, {remaining} more, {lost} lost to overflow)");
        }
        Err(error) => println!("audit refused: {}", error.name()),
    }
}
