//! The virtio-console device's own state (one port, no multiport, no
//! configuration): the bytes typed for it and not yet delivered, and the line
//! its output is assembled into.
//!
//! Invariants:
//! - typed bytes wait in a bounded queue ([`INPUT_MAX`]); a byte that finds it
//!   full is dropped and counted, never blocking the console;
//! - output is taken only from device-readable chains of at most
//!   [`TRANSMIT_MAX`] bytes and goes out as whole lines with the kernel's
//!   prefix, like every guest's console output.

use core::fmt;

use septum_abi::virtio::Violation;
use septum_abi::virtio::console::TRANSMIT_MAX;

use super::queue::{Chain, GuestMemory};
use crate::console::LineBuffer;

/// Bytes typed for the console that may wait for the driver's buffers.
pub const INPUT_MAX: usize = 256;

/// The console device's state.
#[derive(Debug, Default)]
pub struct ConsoleModel {
    input: heapless::Deque<u8, INPUT_MAX>,
    /// Typed bytes dropped because the queue was full.
    pub dropped: u64,
    /// Typed bytes wait, or the driver posted buffers: worth a delivery.
    pub deliver: bool,
    line: LineBuffer,
}

/// How the console's lines are labelled: `<partition>:hvc0`.
#[derive(Clone, Copy)]
pub struct Port<'a>(pub &'a str);

impl fmt::Display for Port<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:hvc0", self.0)
    }
}

impl ConsoleModel {
    /// A typed byte: queued for the driver (dropped and counted if full).
    pub fn receive(&mut self, byte: u8) {
        if self.input.push_back(byte).is_err() {
            self.dropped += 1;
        }
        self.deliver = true;
    }

    /// Whether bytes wait for delivery.
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Writes waiting bytes into the device-writable buffers of `chain`;
    /// returns how many (they leave the queue).
    pub fn deliver_into(
        &mut self,
        chain: &Chain,
        memory: &mut impl GuestMemory,
    ) -> Result<usize, Violation> {
        if chain.buffers().iter().any(|b| !b.writable) {
            return Err(Violation::BadChain);
        }
        let mut bytes = [0u8; INPUT_MAX];
        let (front, back) = self.input.as_slices();
        bytes[..front.len()].copy_from_slice(front);
        bytes[front.len()..front.len() + back.len()].copy_from_slice(back);
        let written = chain.write(memory, &bytes[..self.input.len()])?;
        for _ in 0..written {
            self.input.pop_front();
        }
        Ok(written)
    }

    /// Copies the output of a transmit chain into `bytes`; returns how many.
    pub fn read_output(
        chain: &Chain,
        memory: &mut impl GuestMemory,
        bytes: &mut [u8; TRANSMIT_MAX as usize],
    ) -> Result<usize, Violation> {
        let len = chain.readable_len().ok_or(Violation::BadChain)?;
        if len > u64::from(TRANSMIT_MAX) {
            return Err(Violation::BadChain);
        }
        chain.read(memory, &mut bytes[..len as usize])
    }

    /// Puts output `bytes` on the console as `port`'s lines, written to `out`.
    pub fn output(&mut self, port: Port<'_>, bytes: &[u8], out: &mut impl fmt::Write) {
        let _ = self.line.write(port, bytes, out);
    }

    /// Back to power-on: waiting input and a partial line are forgotten.
    pub fn reset(&mut self) {
        self.input.clear();
        self.deliver = false;
        self.line = LineBuffer::new();
    }
}
