//! The console UART as the kernel drives it: synchronously at boot and when it
//! dies ([`Console`]), and without ever waiting once partitions run
//! ([`Uart::try_put`], through the core's console ring).

use core::fmt;

/// A byte-at-a-time serial port.
pub trait Uart {
    /// Sends one byte, waiting while the transmitter is full.
    fn put(&mut self, byte: u8);
    /// Sends one byte if the transmitter can take it now; never waits. Returns
    /// whether it took the byte.
    fn try_put(&mut self, byte: u8) -> bool;
    /// Waits until every byte sent so far has left the port.
    fn drain(&mut self);
}

/// A console on a [`Uart`]: text with `\n` sent as `\r\n`, so it reads well on a
/// terminal.
pub struct Console<U>(pub U);

impl<U: Uart> fmt::Write for Console<U> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(byte);
        }
        Ok(())
    }
}
