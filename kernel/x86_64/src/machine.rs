//! The machine under the kernel: the COM1 console and power control.

use core::fmt;

use septum_kernel::{Console, Uart};

use crate::serial::{self, Serial};

/// The console and the power switch of a PC.
pub struct Pc {
    /// The console UART.
    pub console: Console<Serial>,
}

impl fmt::Write for Pc {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_str(s)
    }
}

impl septum_kernel::Machine for Pc {
    /// The `@@ kernel shutdown` line already says whether the shutdown was clean.
    fn power_off(&mut self, _clean: bool) -> ! {
        self.console.0.drain();
        serial::power_off()
    }
}
