//! A ballooning guest for the balloon tests and benchmark. Its balloon
//! capability is in slot 2. Its role is in bits 0-7 of the boot argument:
//!
//! 1. **idle**: allocates and fills a few pages, then only follows its target:
//!    it gives back what it can spare, blocks until the target changes, and,
//!    once it has given memory away, ends when it holds its initial memory again
//!    and its pages are intact;
//! 2. **hungry**: allocates and fills pages until it holds `goal` more than it
//!    started with (bits 8-31, in pages; 0: up to its maximum); reports the
//!    time from its start to then (`balloon-bench move`), fills what else it
//!    got, and checks every page;
//! 3. **hostile**: sends every kind of bad batch, checks each changed nothing,
//!    then gives some pages back and takes some again; with bit 8 it then
//!    panics and, restarted, checks it holds its initial memory again. Bits
//!    32-63: a device page it may name (0: none);
//! 4. **bench**: times inflating and deflating 4,096 pages in batches of 1, 16
//!    and [`BATCH_MAX`];
//! 5. **stubborn**: reports but never gives anything back;
//! 6. **storm**: inflates and deflates its top [`BATCH_MAX`] pages, batch after
//!    batch, for bits 8-31 million counter ticks: the most scrubbing and
//!    remapping one partition can ask of the kernel (a time attack, beside a
//!    meter);
//! 7. **tide**: forever, fills pages until it holds `goal` more than it started
//!    with (bits 8-31, in pages) or has tried for `ms` milliseconds (bits
//!    32-47, on the counter as [`septum_sdk::pause_ms`] reads it), checks them,
//!    holds them for `ms`, releases them all and follows its target for `ms`
//!    while the memory scheduler takes them back; it first follows its target
//!    for bits 48-63 milliseconds, so two tidal guests can take turns (the live
//!    demo's memory mover).
#![no_std]
#![no_main]

use septum_abi::layout::{PAGE_SIZE, RAM_BASE};
use septum_sdk::balloon::{self, Allocator, BATCH_MAX, Driver};
use septum_sdk::{Boot, Error, arch, println, slot};

septum_sdk::entry!(main);

const BALLOON: u64 = 2;

fn main(boot: Boot) -> u64 {
    let mut allocator = Allocator::empty();
    let mut driver = Driver::new(BALLOON, 16);
    let (target, held, max) = match driver.start(&mut allocator, boot.ram_size) {
        Ok(memory) => memory,
        Err(error) => {
            println!("balloon: cannot start: {}", error.name());
            return 1;
        }
    };
    let result = match boot.argument & 0xff {
        1 => idle(&mut driver, &mut allocator, held),
        2 => hungry(
            &mut driver,
            &mut allocator,
            held,
            (boot.argument >> 8) & 0xff_ffff,
            max,
        ),
        3 => hostile(&boot, held, target, max),
        4 => bench(&boot, held),
        5 => stubborn(),
        6 => storm(held, (boot.argument >> 8) & 0xff_ffff),
        7 => tide(
            &mut driver,
            &mut allocator,
            held,
            (boot.argument >> 8) & 0xff_ffff,
            (boot.argument >> 32) & 0xffff,
            boot.argument >> 48,
        ),
        role => {
            println!("balloon: no role {role}");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            println!("balloon: {}", error.name());
            1
        }
    }
}

/// What a page holds: its address, mixed with `salt`, at both ends.
fn fill(address: u64, salt: u64) {
    let words = address as *mut u64;
    // SAFETY: `address` is a page of balloon memory the allocator just handed
    // out, backed and used by nothing else.
    unsafe {
        words.write_volatile(address ^ salt);
        words.add(511).write_volatile(!address ^ salt);
    }
}

fn intact(address: u64, salt: u64) -> bool {
    let words = address as *const u64;
    // SAFETY: a page this partition allocated and filled, still backed.
    unsafe {
        words.read_volatile() == address ^ salt && words.add(511).read_volatile() == !address ^ salt
    }
}

const SALT: u64 = 0x5eb7_0b00_1100_0000;

fn idle(driver: &mut Driver, allocator: &mut Allocator, initial: u64) -> Result<(), Error> {
    let mut mine = [0u64; 64];
    for page in &mut mine {
        *page = allocator.allocate().ok_or(Error::PoolEmpty)?;
        fill(*page, SALT);
    }
    let mut gave = 0;
    loop {
        let step = driver.step(allocator)?;
        gave += step.inflated;
        if !mine.iter().all(|&p| intact(p, SALT)) {
            println!("idle: data lost");
            return Err(Error::BadState);
        }
        if gave > 0 && step.held >= initial {
            println!(
                "idle: gave {gave} pages away and holds {} again; its {} pages are intact",
                step.held,
                mine.len()
            );
            return Ok(());
        }
        if step.inflated + step.deflated == 0 {
            balloon::wait(BALLOON)?;
        }
    }
}

fn hungry(
    driver: &mut Driver,
    allocator: &mut Allocator,
    first: u64,
    goal: u64,
    max: u64,
) -> Result<(), Error> {
    let start = arch::counter();
    let goal = if goal == 0 {
        max - first
    } else {
        goal.min(max - first)
    };
    let mut allocated = 0u64;
    let mut held = first;
    while held < first + goal {
        while let Some(page) = allocator.allocate() {
            fill(page, SALT);
            allocated += 1;
        }
        let step = driver.step(allocator)?;
        held = step.held;
        if step.deflated == 0 {
            septum_sdk::yield_now(slot::SELF)?;
        }
    }
    let ticks = arch::counter() - start;
    while let Some(page) = allocator.allocate() {
        fill(page, SALT);
        allocated += 1;
    }
    let all_intact = allocator.used().all(|page| intact(page, SALT));
    println!(
        "hungry: grew from {first} to {held} pages (max {max}), {allocated} pages filled, data {}",
        if all_intact { "intact" } else { "LOST" }
    );
    bench_line("move", goal, ticks);
    if all_intact {
        Ok(())
    } else {
        Err(Error::BadState)
    }
}

fn tide(
    driver: &mut Driver,
    allocator: &mut Allocator,
    first: u64,
    goal: u64,
    ms: u64,
    delay: u64,
) -> Result<(), Error> {
    follow(driver, allocator, delay)?;
    let ticks = septum_sdk::ms_to_ticks(ms);
    for round in 1u64.. {
        let start = arch::counter();
        while allocator.held_pages() < first + goal && arch::counter() - start < ticks {
            while let Some(page) = allocator.allocate() {
                fill(page, SALT);
            }
            driver.step(allocator)?;
            septum_sdk::yield_now(slot::SELF)?;
        }
        let all_intact = allocator.used().all(|page| intact(page, SALT));
        println!(
            "tide {round}: flood to {} pages, data {}",
            allocator.held_pages(),
            if all_intact { "intact" } else { "LOST" }
        );
        if !all_intact {
            return Err(Error::BadState);
        }
        follow(driver, allocator, ms)?;
        allocator.release_all();
        follow(driver, allocator, ms)?;
        println!("tide {round}: ebb to {} pages", allocator.held_pages());
    }
    Ok(())
}

/// Follows the target for `ms` milliseconds, yielding after each step.
fn follow(driver: &mut Driver, allocator: &mut Allocator, ms: u64) -> Result<(), Error> {
    let ticks = septum_sdk::ms_to_ticks(ms);
    let start = arch::counter();
    while arch::counter() - start < ticks {
        driver.step(allocator)?;
        septum_sdk::yield_now(slot::SELF)?;
    }
    Ok(())
}

fn bench_line(what: &str, pages: u64, ticks: u64) {
    match arch::counter_frequency() {
        Some(hz) => {
            let ns = u128::from(ticks) * 1_000_000_000 / u128::from(hz);
            let rate = u128::from(pages) * 1_000_000_000 / ns.max(1);
            println!("balloon-bench {what} pages={pages} ticks={ticks} ns={ns} pages_per_s={rate}");
        }
        None => println!("balloon-bench {what} pages={pages} ticks={ticks}"),
    }
}

fn hostile(boot: &Boot, held: u64, target: u64, max: u64) -> Result<(), Error> {
    let kept = RAM_BASE + boot.ram_size;
    let top = RAM_BASE + held * PAGE_SIZE;
    if boot.generation > 1 {
        println!(
            "hostile: generation {} holds {held} pages, target {target}",
            boot.generation
        );
        let zero = (0..8).all(|i| {
            // SAFETY: a backed balloon page (the restart backed every page up to
            // the initial memory).
            unsafe { ((top - (i + 1) * PAGE_SIZE) as *const u64).read_volatile() == 0 }
        });
        println!(
            "hostile: pages given back before the restart read {}",
            if zero { "zero" } else { "DATA" }
        );
        return Ok(());
    }
    let device = boot.argument >> 32 << 12;
    let long = [kept; BATCH_MAX + 1];
    let cases: [(&str, bool, &[u64]); 11] = [
        ("empty", true, &[]),
        ("unaligned", true, &[kept + 8]),
        ("kept", true, &[RAM_BASE]),
        ("hole", true, &[top]),
        ("outside", true, &[0x1000]),
        ("duplicate", true, &[kept, kept + PAGE_SIZE, kept]),
        ("device", true, &[device]),
        ("too-many", true, &long),
        ("past-max", false, &[RAM_BASE + max * PAGE_SIZE]),
        ("backed", false, &[kept]),
        ("over-target", false, &[top]),
    ];
    for (name, inflate, list) in cases {
        if name == "device" && device == 0 {
            continue;
        }
        let result = if inflate {
            balloon::inflate(BALLOON, list)
        } else {
            balloon::deflate(BALLOON, list)
        };
        let (_, now, _) = balloon::report(BALLOON, 0, 0, 0)?;
        let answer = result.err().map_or("accepted", Error::name);
        println!(
            "hostile: {name}: {answer}, held {}",
            if now == held { "unchanged" } else { "CHANGED" }
        );
    }
    // Give 16 pages back, take 8 again, fill them, and panic: the restart must
    // bring the initial memory back, scrubbed.
    let given: [u64; 16] = core::array::from_fn(|i| top - (i as u64 + 1) * PAGE_SIZE);
    let memory = balloon::inflate(BALLOON, &given)?;
    let memory_after = balloon::deflate(BALLOON, &given[..8]);
    println!(
        "hostile: gave 16 (held {}), took 8 back: {}",
        memory.held,
        memory_after.map_or_else(|e| e.name(), |_| "ok")
    );
    for &page in &given[..8] {
        fill(page, SALT);
    }
    if boot.argument & (1 << 8) == 0 {
        println!("hostile: done");
        return Ok(());
    }
    panic!("hostile: crashing with balloon pages moved");
}

fn bench(boot: &Boot, held: u64) -> Result<(), Error> {
    const PAGES: usize = 4096;
    let kept = RAM_BASE + boot.ram_size;
    let top = RAM_BASE + held * PAGE_SIZE;
    if (top - kept) / PAGE_SIZE < PAGES as u64 {
        println!("bench: needs {PAGES} balloon pages");
        return Err(Error::TooLong);
    }
    let mut list = [0u64; BATCH_MAX];
    for batch in [1usize, 16, BATCH_MAX] {
        let mut ticks = [0u64; 2];
        for (direction, spent) in ticks.iter_mut().enumerate() {
            let start = arch::counter();
            let mut done = 0;
            while done < PAGES {
                for (i, page) in list[..batch].iter_mut().enumerate() {
                    *page = top - ((done + i) as u64 + 1) * PAGE_SIZE;
                }
                if direction == 0 {
                    balloon::inflate(BALLOON, &list[..batch])?;
                } else {
                    balloon::deflate(BALLOON, &list[..batch])?;
                }
                done += batch;
            }
            *spent = arch::counter() - start;
        }
        let name = |what| {
            let mut text = heapless::String::<24>::new();
            let _ = core::fmt::write(&mut text, format_args!("{what}-batch-{batch}"));
            text
        };
        bench_line(&name("inflate"), PAGES as u64, ticks[0]);
        bench_line(&name("deflate"), PAGES as u64, ticks[1]);
    }
    Ok(())
}

fn stubborn() -> Result<(), Error> {
    loop {
        balloon::report(BALLOON, 0, 0, 0)?;
        septum_sdk::yield_now(slot::SELF)?;
    }
}

fn storm(held: u64, millions: u64) -> Result<(), Error> {
    let top = RAM_BASE + held * PAGE_SIZE;
    let list: [u64; BATCH_MAX] = core::array::from_fn(|i| top - (i as u64 + 1) * PAGE_SIZE);
    println!("storm: inflating and deflating {BATCH_MAX} pages back to back");
    let (start, mut rounds) = (arch::counter(), 0u64);
    while arch::counter() - start < millions * 1_000_000 {
        balloon::inflate(BALLOON, &list)?;
        balloon::deflate(BALLOON, &list)?;
        rounds += 1;
    }
    println!("storm: over after {rounds} rounds");
    Ok(())
}
