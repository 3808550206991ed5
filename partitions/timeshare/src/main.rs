//! Measures, in the guest's own counter time, how much of the elapsed time this
//! partition actually ran, and checks it against the share its time windows give
//! it. It reads the counter in a tight loop: a jump between two reads larger than
//! [`GAP_TICKS`] is time it did not run (another partition's window, or idle).
//! It measures whole frames: from the end of one gap to the end of the first gap
//! after [`MEASURE_TICKS`] (times the length factor). Each gap ends a frame (the
//! partition has one window per frame), and it checks every frame's share as well
//! as the whole: a frame in which someone else's work overran into its window
//! shows there even when the average hides it.
//!
//! Boot argument: the expected share in per mille (0 to 999), plus 1000 times the
//! style: 0 spins, 1 yields after every read, 2 makes the null hypercall after every
//! read (which must not buy time: on both architectures it takes the kernel's fast
//! path, which arms no timer), 3 first makes exactly [`KNOWN_CALLS`] `identify`
//! calls and nothing else (no console line before its report), then spins, so
//! that the kernel's count of its hypercalls is known (the `top-counters`
//! scenarios); plus 10,000 times a length factor (0 counts as 1).
#![no_std]
#![no_main]

use septum_sdk::{Boot, arch, println, slot};

septum_sdk::entry!(main);

/// A jump between two counter reads larger than this is time not run.
const GAP_TICKS: u64 = 20_000;
/// How long to measure, in counter ticks (tens of milliseconds on both boards).
const MEASURE_TICKS: u64 = 4_000_000;
/// How far the measured share may be from the expected one, in per mille.
const TOLERANCE: u64 = 50;
/// Hypercalls style 3 makes before it measures.
const KNOWN_CALLS: u64 = 1000;

/// What the partition does between two counter reads.
enum Style {
    Spin,
    Yield,
    NullCall,
    /// Spins after [`KNOWN_CALLS`] calls.
    KnownCalls,
}

fn main(boot: Boot) -> u64 {
    let expected = boot.argument % 1000;
    let measure_ticks = MEASURE_TICKS * (boot.argument / 10_000).max(1);
    let style = match boot.argument / 1000 % 10 {
        0 => Style::Spin,
        1 => Style::Yield,
        2 => Style::NullCall,
        _ => Style::KnownCalls,
    };
    // Style 3 says nothing before its report: its only calls are the known ones.
    let description = match style {
        Style::Spin => Some("spinning"),
        Style::Yield => Some("yielding after every read"),
        Style::NullCall => Some("making the null call after every read"),
        Style::KnownCalls => None,
    };
    match description {
        Some(description) => println!("measuring my share of the CPU, {description}"),
        None => {
            for _ in 0..KNOWN_CALLS {
                let _ = septum_sdk::supervise::identify(slot::SELF);
            }
        }
    }
    // Measure whole frames: from the end of a gap (the start of one of its
    // windows) to the end of the first gap after MEASURE_TICKS. Ending anywhere
    // else would count part of a gap or part of a window, off by up to a window.
    let mut last = arch::counter();
    let begun = last;
    loop {
        let now = step_and_read(&style);
        let gap = now - last >= GAP_TICKS;
        last = now;
        if gap || now - begun >= measure_ticks {
            break;
        }
    }
    let start = last;
    let mut ran = 0;
    let mut frame = Frame::starting(start);
    let mut frames = 0u64;
    // The frame share farthest from the expected one.
    let mut worst = None::<u64>;
    loop {
        let now = step_and_read(&style);
        let step = now - last;
        last = now;
        if step < GAP_TICKS {
            ran += step;
            frame.ran += step;
        } else {
            let share = frame.share(now);
            frames += 1;
            if worst.is_none_or(|w| share.abs_diff(expected) > w.abs_diff(expected)) {
                worst = Some(share);
            }
            frame = Frame::starting(now);
        }
        let elapsed = now - start;
        // A partition that is never off the CPU sees no gap: stop anyway.
        if elapsed >= measure_ticks && (step >= GAP_TICKS || elapsed >= 4 * measure_ticks) {
            break;
        }
    }
    let elapsed = last - start;
    let share = ran * 1000 / elapsed;
    let worst = worst.unwrap_or(share);
    let within = share.abs_diff(expected) <= TOLERANCE && worst.abs_diff(expected) <= TOLERANCE;
    println!(
        "share={share} worst_frame={worst} frames={frames} expected={expected} ran={ran} elapsed={elapsed} within={}",
        if within { "yes" } else { "no" }
    );
    u64::from(!within)
}

/// The frame being measured: from the end of one gap to the end of the next.
struct Frame {
    start: u64,
    ran: u64,
}

impl Frame {
    fn starting(at: u64) -> Frame {
        Frame { start: at, ran: 0 }
    }

    /// Its share in per mille, if it ends at `end`.
    fn share(&self, end: u64) -> u64 {
        self.ran * 1000 / (end - self.start).max(1)
    }
}

/// Does what `style` says between two reads, then reads the counter.
fn step_and_read(style: &Style) -> u64 {
    match style {
        Style::Spin | Style::KnownCalls => {}
        Style::Yield => {
            let _ = septum_sdk::yield_now(slot::SELF);
        }
        Style::NullCall => {
            let _ = septum_sdk::null();
        }
    }
    arch::counter()
}
