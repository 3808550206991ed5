//! The consumer of the page-flip demo: receives pages on the queue whose receive
//! end is in slot 2, checks that each holds the next sequence number in every
//! word (see the producer), releases it, and reports. It takes its first page's
//! number as the start (0 unless it was restarted mid-stream); when the producer
//! restarts, it is told once and starts again from the next page it gets.
//!
//! Argument: bits 0-31 the page count of the stream (0: 1,000): it stops after
//! the page numbered one less; bit 33 panic after 300 pages in generation 1;
//! bit 34 hold the first page (in window page 0) until the second one has been
//! checked, so the producer's page 0 stays away while it probes.
#![no_std]
#![no_main]

use septum_sdk::queue::{CopyBuffer, Received, Receiver};
use septum_sdk::{Boot, Error, println};

septum_sdk::entry!(main);

fn main(boot: Boot) -> u64 {
    let total = match boot.argument & 0xffff_ffff {
        0 => 1_000,
        count => count,
    };
    let crash = boot.argument & (1 << 33) != 0 && boot.generation == 1;
    let receiver = Receiver::new(2);
    let mut buffer = CopyBuffer::default();
    let mut first_buffer = CopyBuffer::default();
    let mut expected = None;
    let mut received = 0u64;
    println!(
        "consumer: generation {}, expecting {total} pages",
        boot.generation
    );
    let mut held = None;
    if boot.argument & (1 << 34) != 0 {
        let first = match receiver.receive(0, &mut first_buffer) {
            Ok(message) => message,
            Err(error) => {
                println!("consumer: receive failed: {error:?}");
                return 1;
            }
        };
        if let Err(code) = check(&first, &mut expected) {
            return code;
        }
        received += 1;
        held = Some(first);
    }
    while expected != Some(total) {
        if crash && received == 300 {
            panic!("consumer: crashing after 300 pages");
        }
        let message = match receiver.receive(1, &mut buffer) {
            Ok(message) => message,
            Err(Error::PeerRestarted) => {
                println!("consumer: peer restarted after {received} pages");
                expected = None;
                continue;
            }
            Err(error) => {
                println!("consumer: receive failed: {error:?}");
                return 1;
            }
        };
        if let Err(code) = check(&message, &mut expected) {
            return code;
        }
        let released = release(message).and_then(|()| held.take().map_or(Ok(()), release));
        if let Err(code) = released {
            return code;
        }
        received += 1;
        if received.is_multiple_of(1000) {
            println!("consumer: {received} pages in order, content checked");
        }
    }
    println!(
        "consumer: done, {received} pages in order, content checked, last {}",
        total - 1
    );
    0
}

/// Checks that `message` is page `expected` (or, when nothing is expected yet,
/// takes its number as the start) and moves `expected` on; the exit code on
/// failure.
fn check(message: &Received, expected: &mut Option<u64>) -> Result<(), u64> {
    let word = |index: usize| {
        u64::from_le_bytes(message.bytes[index * 8..index * 8 + 8].try_into().unwrap())
    };
    let sequence = *expected.get_or_insert(sequence_of(word(0)));
    let bad = (0..message.bytes.len() / 8).find(|&index| word(index) != pattern(sequence, index));
    if let Some(index) = bad {
        println!(
            "consumer: page {sequence} word {index} reads {:#x}: out of order or corrupt",
            word(index)
        );
        return Err(2);
    }
    *expected = Some(sequence + 1);
    Ok(())
}

/// Gives a checked page back to the producer; the exit code on failure.
fn release(message: Received) -> Result<(), u64> {
    message.release().map_err(|error| {
        println!("consumer: release failed: {error:?}");
        3
    })
}

/// The page number that word 0 of a page encodes.
fn sequence_of(word0: u64) -> u64 {
    (word0 ^ MAGIC) >> 16
}

const MAGIC: u64 = 0x5e97_0000_0000_0000;

/// Word `index` of page `sequence` (the producer's pattern).
fn pattern(sequence: u64, index: usize) -> u64 {
    (sequence << 16) ^ index as u64 ^ MAGIC
}
