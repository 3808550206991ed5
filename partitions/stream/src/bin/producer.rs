//! The producer of the page-flip demo: streams numbered pages to the consumer on
//! the queue whose send end is in slot 2. Each page holds its sequence number in
//! every word, mixed with the word's index, so the consumer can check the whole
//! page. It keeps [`BUFFERS`] pages of its own; a page it sent comes back with
//! `reclaim` once the consumer has released it.
//!
//! Argument: bits 0-31 the number of pages to send (0: 1,000), bit 32 send in
//! batches, bit 33 panic after 300 pages in generation 1 (the service VM restarts
//! it), bit 34 read page 0 right after sending it in generation 1 (which must
//! fault), bit 35 first try every bad send and print the kernel's answer to each.
//! With bits 34 and 35 the consumer should hold page 0 until page 1 arrives (its
//! own bit 34), so page 0 is away whatever the schedule does meanwhile.
#![no_std]
#![no_main]

use septum_sdk::queue::{COPY_MAX, Delivery, Sender};
use septum_sdk::{Boot, Error, println};

/// Pages of its own it sends from.
const BUFFERS: usize = 8;
const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

#[repr(C, align(4096))]
struct Buffers([[u64; WORDS]; BUFFERS]);

static mut PAGES: Buffers = Buffers([[0; WORDS]; BUFFERS]);

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    let total = match boot.argument & 0xffff_ffff {
        0 => 1_000,
        count => count,
    };
    let batched = boot.argument & (1 << 32) != 0;
    let crash = boot.argument & (1 << 33) != 0 && boot.generation == 1;
    let sender = Sender::new(2);
    let base = &raw mut PAGES as u64;
    let mut free: [u64; BUFFERS] = core::array::from_fn(|i| base + (i * PAGE) as u64);
    let mut free_count = BUFFERS;
    println!(
        "producer: generation {}, sending {total} pages",
        boot.generation
    );
    let mut sequence = 0u64;
    let probing = boot.argument & (1 << 35) != 0;
    let reading_sent = boot.argument & (1 << 34) != 0 && boot.generation == 1;
    if probing || reading_sent {
        // Page 0 of the stream goes first, from buffer 0; it rejoins the free
        // list when the consumer releases it.
        free.rotate_left(1);
        free_count -= 1;
        sequence = 1;
    }
    if probing {
        probe(&sender, base);
    }
    if reading_sent {
        fill(base, 0);
        let sent = sender.send_flip(base, PAGE as u64, Delivery::Deferred);
        println!("producer: sent page {base:#x}: {sent:?}; reading it back");
        // SAFETY: deliberately reads a page this partition no longer owns: the
        // kernel must take a stage-2 / EPT fault (the service VM resumes it past the
        // read, so the value read is meaningless).
        let _ = unsafe { (base as *const u64).read_volatile() };
        println!("producer: resumed after the read");
    }
    while sequence < total {
        if crash && sequence == 300 {
            panic!("producer: crashing at page 300");
        }
        while let Some(page) = take_back(&sender) {
            free[free_count] = page;
            free_count += 1;
        }
        if free_count == 0 {
            match sender.wait() {
                Err(Error::PeerEnded) => {
                    println!("producer: consumer ended after {sequence} pages");
                    break;
                }
                Err(error) => println!("producer: wait: {error:?}"),
                Ok(()) => {}
            }
            continue;
        }
        let burst = if batched { free_count } else { 1 }.min((total - sequence) as usize);
        let mut batch = [(0u64, 0u64); BUFFERS];
        for (slot, entry) in batch.iter_mut().enumerate().take(burst) {
            let page = free[free_count - 1 - slot];
            fill(page, sequence + slot as u64);
            *entry = (page, PAGE as u64);
        }
        let result = if batched {
            sender.send_batch(&batch[..burst], Delivery::Deferred)
        } else {
            sender.send_flip(batch[0].0, PAGE as u64, Delivery::Deferred)
        };
        match result {
            Ok(_) => {
                free_count -= burst;
                sequence += burst as u64;
                if sequence.is_multiple_of(1000) || sequence == total {
                    println!("producer: sent {sequence}");
                }
            }
            Err(Error::QueueFull | Error::FlightLimit) => {
                let _ = sender.wait();
            }
            Err(Error::PeerRestarted) => println!("producer: consumer restarted"),
            Err(Error::PeerEnded) => {
                println!("producer: consumer ended after {sequence} pages");
                break;
            }
            Err(error) => {
                println!("producer: send failed: {error:?}");
                return 1;
            }
        }
    }
    // Wait for every page to come back before leaving.
    while free_count < BUFFERS {
        match take_back(&sender) {
            Some(page) => {
                free[free_count] = page;
                free_count += 1;
            }
            None => {
                if let Err(error) = sender.wait() {
                    println!(
                        "producer: {} pages missing: {error:?}",
                        BUFFERS - free_count
                    );
                    return 4;
                }
            }
        }
    }
    println!("producer: done, all {BUFFERS} pages back");
    0
}

/// Tries each bad send once and prints what the kernel says; none may change
/// anything, which the stream that follows checks. Sends page 0 of the stream
/// from `base` (twice: the second time it is away).
fn probe(sender: &Sender, base: u64) {
    use septum_sdk::queue::Receiver;
    let report = |what: &str, result: Result<u64, Error>| {
        println!(
            "producer: probe {what}: {}",
            result.map_or_else(|e| e.name(), |_| "accepted")
        );
    };
    report(
        "misaligned",
        sender.send_flip(base + 8, 64, Delivery::Deferred),
    );
    report("empty", sender.send_flip(base, 0, Delivery::Deferred));
    report(
        "too-long",
        sender.send_flip(base, 65 * 1024, Delivery::Deferred),
    );
    report(
        "outside-ram",
        sender.send_flip(0x1000, 64, Delivery::Deferred),
    );
    report(
        "kernel-window",
        sender.send_flip(0x8000_0000, 64, Delivery::Deferred),
    );
    report(
        "copy-too-long",
        sender.send_copy(base, COPY_MAX + 1, Delivery::Deferred),
    );
    let duplicate = [(base, 64), (base, 64)];
    report(
        "batch-duplicate",
        sender.send_batch(&duplicate, Delivery::Deferred),
    );
    report(
        "wrong-type",
        Sender::new(0).send_flip(base, 64, Delivery::Deferred),
    );
    report(
        "no-cap",
        Sender::new(9).send_flip(base, 64, Delivery::Deferred),
    );
    let mut buffer = septum_sdk::queue::CopyBuffer::default();
    let received = Receiver::new(2).try_receive(0, &mut buffer).map(|_| 0);
    report("receive-on-send-end", received);
    // Page 0 of the stream, sent twice: the second time the page is away.
    fill(base, 0);
    report("first-send", sender.send_flip(base, 64, Delivery::Deferred));
    report("in-flight", sender.send_flip(base, 64, Delivery::Deferred));
}

/// A page the consumer released, if any (news of a consumer restart is printed).
fn take_back(sender: &Sender) -> Option<u64> {
    loop {
        match sender.reclaim() {
            Ok(page) => return page,
            Err(Error::PeerRestarted) => println!("producer: consumer restarted"),
            Err(error) => {
                println!("producer: reclaim failed: {error:?}");
                return None;
            }
        }
    }
}

/// Writes page `sequence`'s pattern into the page at `address`.
fn fill(address: u64, sequence: u64) {
    let words = address as *mut u64;
    for index in 0..WORDS {
        // SAFETY: `address` is one of this partition's own buffer pages, present
        // (it was never sent or it was reclaimed), and nothing else refers to it.
        unsafe { words.add(index).write_volatile(pattern(sequence, index)) };
    }
}

/// Word `index` of page `sequence`.
fn pattern(sequence: u64, index: usize) -> u64 {
    (sequence << 16) ^ index as u64 ^ 0x5e97_0000_0000_0000
}
