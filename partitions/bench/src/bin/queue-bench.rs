//! Measures messaging on the queue to `queue-sink` (send end in slot 2; the
//! sink's acknowledgements come back on the queue in slot 3):
//! - `copy-<size>` and `flip-<size>`: the cost per message of a copy through the
//!   kernel versus a page flip, for payloads of 64 B to 64 KiB. A copy carries at
//!   most `COPY_MAX` (4 KiB), so a longer payload goes in chunks; a flip sends the
//!   payload's pages as one message. The sink receives every message, reads its
//!   first word, and releases it;
//! - `stream-unbatched` and `stream-batched`: the throughput of a stream of 4 KiB
//!   pages sent one per call and in batches of up to 16.
//!
//! Boot argument bit 0: wait until no other partition can run before the
//! first run (so that the benchmark follows others in the same system); bit 1:
//! the streaming runs only.
//!
//! Every send is deferred, so sender and sink take turns (each runs until it must
//! wait), as in a stream. A run ends with an end marker that the sink answers
//! with the count it received; the time of an empty run (marker and answer only)
//! is subtracted. On aarch64 under `-icount shift=0` the figures are in
//! nanoseconds of guest-virtual time; on x86_64 in TSC ticks.
#![no_std]
#![no_main]

use partition_bench::report;
use septum_sdk::queue::{BATCH_MAX, COPY_MAX};
use septum_sdk::queue::{CopyBuffer, Delivery, Receiver, Sender};
use septum_sdk::{Boot, Error, arch, println, slot};

septum_sdk::entry!(main);

const DATA: Sender = Sender::new(2);
const ACK: Receiver = Receiver::new(3);
const PAGE: u64 = 4096;
/// Pages the sender sends from: the data queue's `max_in_flight`.
const POOL_PAGES: u64 = 64;
/// Messages per payload size and path.
const MESSAGES: u64 = 128;
/// Pages per streaming run.
const STREAM_PAGES: u64 = 1024;
/// Word 0 of the marker that ends a run, and of the one that ends the benchmark.
const END: u64 = u64::MAX;
const DONE: u64 = u64::MAX - 1;

#[repr(C, align(4096))]
struct Pool([u8; (POOL_PAGES * PAGE) as usize]);

static mut POOL: Pool = Pool([0; (POOL_PAGES * PAGE) as usize]);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Copy,
    Flip,
    FlipBatched,
}

/// Boot argument bits: wait until alone; streams only.
const WAIT_ALONE: u64 = 1;
const STREAMS_ONLY: u64 = 2;

fn main(boot: Boot) -> u64 {
    if boot.argument & WAIT_ALONE != 0 {
        while septum_sdk::yield_now(slot::SELF).is_ok_and(|others| others > 0) {}
    }
    match run_all(boot.argument & STREAMS_ONLY != 0) {
        Ok(()) => 0,
        Err(error) => {
            println!("queue-bench: failed: {error:?}");
            1
        }
    }
}

fn run_all(streams_only: bool) -> Result<(), Error> {
    let pool = &raw mut POOL as u64;
    let overhead = run(pool, Path::Copy, 0, 0)?;
    println!("queue-bench: an empty run (marker and answer) takes {overhead} ticks");
    let sizes: &[u64] = match streams_only {
        true => &[],
        false => &[64, 1024, 2048, 4096, 16 * 1024, 64 * 1024],
    };
    for &size in sizes {
        for (path, name) in [(Path::Copy, "copy"), (Path::Flip, "flip")] {
            let ticks = run(pool, path, size, MESSAGES)?.saturating_sub(overhead);
            let label = format_args!("{name}-{size}");
            report(label, "messages", MESSAGES, ticks, "message");
        }
    }
    for (path, name) in [
        (Path::Flip, "stream-unbatched"),
        (Path::FlipBatched, "stream-batched"),
    ] {
        let ticks = run(pool, path, PAGE, STREAM_PAGES)?.saturating_sub(overhead);
        report(name, "pages", STREAM_PAGES, ticks, "page");
    }
    end_run(pool, DONE).map(drop)
}

/// Sends `count` messages of `size` bytes by `path`, then the end marker; waits
/// for the sink's answer and for every page to come home. Returns the ticks it
/// all took.
fn run(pool: u64, path: Path, size: u64, count: u64) -> Result<u64, Error> {
    let start = arch::counter();
    let sends = match path {
        Path::Copy => send_copies(pool, size, count)?,
        Path::Flip | Path::FlipBatched => send_flips(pool, size, count, path == Path::FlipBatched)?,
    };
    let counted = end_run(pool, END)?;
    if counted != sends {
        println!("queue-bench: the sink counted {counted} messages of {sends}");
        return Err(Error::InvalidArgument);
    }
    Ok(arch::counter() - start)
}

/// Sends `count` payloads of `size` bytes as copies of at most [`COPY_MAX`]
/// bytes. Returns the messages sent.
fn send_copies(pool: u64, size: u64, count: u64) -> Result<u64, Error> {
    let chunks = size.div_ceil(COPY_MAX);
    let mut sent = 0;
    for _ in 0..count {
        for chunk in 0..chunks {
            let at = pool + chunk * COPY_MAX;
            let len = (size - chunk * COPY_MAX).min(COPY_MAX);
            stamp(at, sent);
            while let Err(error) = DATA.send_copy(at, len, Delivery::Deferred) {
                wait_if_busy(error)?;
            }
            sent += 1;
        }
    }
    Ok(sent)
}

/// Sends `count` payloads of `size` bytes by page flip, from pool slots of the
/// payload's pages used in turn (pages come home in the order they were sent),
/// one message per call or up to [`BATCH_MAX`] one-page messages per call.
/// Returns the messages sent, once every page is home.
fn send_flips(pool: u64, size: u64, count: u64, batched: bool) -> Result<u64, Error> {
    let pages = size.div_ceil(PAGE);
    let slots = POOL_PAGES / pages;
    let slot_address = |message: u64| pool + (message % slots) * pages * PAGE;
    let (mut sent, mut home) = (0, 0);
    while sent < count {
        while DATA.reclaim()?.is_some() {
            home += 1;
        }
        let free = slots - (sent - home / pages);
        if free == 0 {
            DATA.wait()?;
            continue;
        }
        let result = if batched {
            let burst = free.min(BATCH_MAX as u64).min(count - sent);
            let mut batch = [(0, 0); BATCH_MAX];
            for (index, entry) in batch.iter_mut().enumerate().take(burst as usize) {
                let message = sent + index as u64;
                stamp(slot_address(message), message);
                *entry = (slot_address(message), size);
            }
            DATA.send_batch(&batch[..burst as usize], Delivery::Deferred)
                .map(|_| burst)
        } else {
            stamp(slot_address(sent), sent);
            DATA.send_flip(slot_address(sent), size, Delivery::Deferred)
                .map(|_| 1)
        };
        match result {
            Ok(burst) => sent += burst,
            Err(error) => wait_if_busy(error)?,
        }
    }
    while home < sent * pages {
        match DATA.reclaim()? {
            Some(_) => home += 1,
            None => DATA.wait()?,
        }
    }
    Ok(sent)
}

/// Waits for room after a refusal that only means "not now".
fn wait_if_busy(error: Error) -> Result<(), Error> {
    match error {
        Error::QueueFull | Error::FlightLimit => DATA.wait(),
        error => Err(error),
    }
}

/// Sends the marker `marker` and returns the count the sink answers with.
fn end_run(pool: u64, marker: u64) -> Result<u64, Error> {
    let at = pool + (POOL_PAGES - 1) * PAGE;
    stamp(at, marker);
    while let Err(error) = DATA.send_copy(at, 8, Delivery::Deferred) {
        wait_if_busy(error)?;
    }
    let mut buffer = CopyBuffer::default();
    let answer = ACK.receive(0, &mut buffer)?;
    let counted = u64::from_le_bytes(answer.bytes[..8].try_into().map_err(|_| Error::TooLong)?);
    Ok(counted)
}

/// Writes `word` into the first word of the page or chunk at `at`.
fn stamp(at: u64, word: u64) {
    // SAFETY: `at` is in this partition's pool, 8-byte aligned, and present: a
    // copy chunk never leaves, and a flip slot is stamped only once its pages are
    // home.
    unsafe { (at as *mut u64).write_volatile(word) };
}
