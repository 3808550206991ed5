//! The receiving end of the messaging benchmark (see `queue-bench`): receives
//! every message on the queue in slot 2, checks that its first word is the
//! running count, and releases it. A copied message lands in the next chunk of a
//! 64 KiB assembly area, so a payload sent in chunks ends up in one piece. At an
//! end marker it answers with the count on the queue in slot 3 and starts again;
//! at the last marker it leaves.
#![no_std]
#![no_main]

use septum_sdk::queue::{COPY_MAX, CopyBuffer, Delivery, Receiver, Sender};
use septum_sdk::{Boot, Error, println};

septum_sdk::entry!(main);

const DATA: Receiver = Receiver::new(2);
const ACK: Sender = Sender::new(3);
/// Word 0 of the marker that ends a run, and of the one that ends the benchmark.
const END: u64 = u64::MAX;
const DONE: u64 = u64::MAX - 1;
/// Chunks in the assembly area: a 64 KiB payload.
const CHUNKS: usize = (64 * 1024 / COPY_MAX) as usize;

static mut ASSEMBLY: [CopyBuffer; CHUNKS] = [const { CopyBuffer([0; COPY_MAX as usize]) }; CHUNKS];

fn main(_boot: Boot) -> u64 {
    match sink() {
        Ok(()) => 0,
        Err(error) => {
            println!("queue-sink: failed: {error:?}");
            1
        }
    }
}

fn sink() -> Result<(), Error> {
    let assembly = &raw mut ASSEMBLY;
    let mut count = 0u64;
    loop {
        let chunk = (count as usize) % CHUNKS;
        // SAFETY: only this loop touches the assembly area, one chunk at a time,
        // and the message borrowing the chunk is dropped before the next turn.
        let buffer = unsafe { &mut (*assembly)[chunk] };
        let message = DATA.receive(0, buffer)?;
        let word = u64::from_le_bytes(message.bytes[..8].try_into().map_err(|_| Error::TooLong)?);
        message.release()?;
        match word {
            END | DONE => {
                let answer = count;
                while let Err(error) =
                    ACK.send_copy(&raw const answer as u64, 8, Delivery::Deferred)
                {
                    match error {
                        Error::QueueFull => ACK.wait()?,
                        error => return Err(error),
                    }
                }
                if word == DONE {
                    return Ok(());
                }
                count = 0;
            }
            word if word == count => count += 1,
            word => {
                println!("queue-sink: message {count} starts with {word:#x}");
                return Err(Error::InvalidArgument);
            }
        }
    }
}
