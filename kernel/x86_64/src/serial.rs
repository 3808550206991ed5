//! The 16550 UART on COM1 that carries the console, and Bochs' power-off port.
//! Only the kernel touches them: partitions reach the console by hypercall, and
//! every I/O port access by a partition exits to the kernel.
//!
//! Invariant: a byte is written only when the transmit holding register is empty,
//! and power-off waits until the transmitter is idle, so no output is lost; a byte
//! is read only when the line status says one has arrived.

use x86_64::instructions::port::Port;

/// The standard PC base port of COM1.
const COM1: u16 = 0x3f8;
const LINE_STATUS_DATA_READY: u8 = 1 << 0;
const LINE_STATUS_THR_EMPTY: u8 = 1 << 5;
const LINE_STATUS_IDLE: u8 = 1 << 6;
/// Bochs (and its BIOS) quit the emulator when this port receives "Shutdown".
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// The console UART.
pub struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
}

impl Serial {
    /// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
    ///
    /// # Safety
    /// Only one `Serial` may exist; COM1 must not be used by anything else.
    pub unsafe fn com1() -> Serial {
        let setup: [(u16, u8); 7] = [
            (1, 0x00), // interrupts off
            (3, 0x80), // divisor latch access
            (0, 0x01), // divisor 1: 115200 baud
            (1, 0x00),
            (3, 0x03), // 8 bits, no parity, one stop bit
            (2, 0xc7), // FIFOs on and cleared
            (4, 0x03), // DTR, RTS
        ];
        for (offset, value) in setup {
            // SAFETY: writing the UART's own registers, which the caller says are
            // ours alone.
            unsafe { Port::new(COM1 + offset).write(value) };
        }
        Serial {
            data: Port::new(COM1),
            line_status: Port::new(COM1 + 5),
        }
    }

    /// The next byte typed on the console, if one has arrived; never waits.
    pub fn receive(&mut self) -> Option<u8> {
        if self.status() & LINE_STATUS_DATA_READY == 0 {
            return None;
        }
        // SAFETY: a byte has arrived; reading the receive buffer register (the data
        // port with the divisor latch off, as `com1` left it) takes it.
        Some(unsafe { self.data.read() })
    }

    fn status(&mut self) -> u8 {
        // SAFETY: reading the line status register has no side effects.
        unsafe { self.line_status.read() }
    }
}

impl septum_kernel::Uart for Serial {
    fn put(&mut self, byte: u8) {
        while self.status() & LINE_STATUS_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: the transmit register is empty; writing it sends one byte.
        unsafe { self.data.write(byte) };
    }

    fn drain(&mut self) {
        while self.status() & LINE_STATUS_IDLE == 0 {
            core::hint::spin_loop();
        }
    }
}

/// Powers the machine off where the kernel knows how (Bochs), else halts.
pub fn power_off() -> ! {
    for byte in *b"Shutdown" {
        // SAFETY: on Bochs this port ends the emulation; on other machines nothing
        // is decoded at this port.
        unsafe { Port::new(BOCHS_SHUTDOWN_PORT).write(byte) };
    }
    halt()
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
