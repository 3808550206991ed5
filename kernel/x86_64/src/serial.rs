//! The 16550 UART on COM1 that carries the console, and the emulators' power-off
//! ports (Bochs', and QEMU's `isa-debug-exit` device where a run adds it).
//! Only the kernel touches them: partitions reach the console by hypercall, and
//! every I/O port access by a partition exits to the kernel.
//!
//! Invariant: bytes are written only into room the transmitter has (a byte while
//! the holding register is empty, or up to [`FIFO_DEPTH`] once the line status
//! says the FIFO is empty), and power-off waits until the transmitter is idle, so
//! no output is lost; a byte is read only when the line status says one has
//! arrived. The transmitter-empty interrupt (IRQ 4) is on only while the kernel
//! has bytes waiting for room.

use x86_64::instructions::port::Port;

/// The standard PC base port of COM1.
const COM1: u16 = 0x3f8;
const LINE_STATUS_DATA_READY: u8 = 1 << 0;
const LINE_STATUS_THR_EMPTY: u8 = 1 << 5;
const LINE_STATUS_IDLE: u8 = 1 << 6;
/// Interrupt enable: the transmit holding register (or FIFO) became empty.
const INTERRUPT_TRANSMIT_EMPTY: u8 = 1 << 1;
/// Bytes the 16550A's transmit FIFO holds.
const FIFO_DEPTH: u8 = 16;
/// The ISA line COM1 interrupts on.
pub const IRQ_LINE: u32 = 4;
/// Bochs (and its BIOS) quit the emulator when this port receives "Shutdown".
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
/// QEMU quits when its `isa-debug-exit` device, which the host tool puts at this
/// port for the PC's runs under QEMU (`src/pc_qemu.rs`), is written (exit status 1
/// for the value 0). Nothing at this port on a PC without it.
const QEMU_EXIT_PORT: u16 = 0xf4;

/// The console UART.
pub struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
    interrupt_enable: Port<u8>,
    /// Bytes the transmit FIFO is known to have room for.
    room: u8,
}

impl Serial {
    /// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off (but its
    /// interrupt line enabled, OUT2, for when the kernel turns the
    /// transmitter-empty interrupt on).
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
            (4, 0x0b), // DTR, RTS, OUT2 (the interrupt line)
        ];
        for (offset, value) in setup {
            // SAFETY: writing the UART's own registers, which the caller says are
            // ours alone.
            unsafe { Port::new(COM1 + offset).write(value) };
        }
        Serial {
            data: Port::new(COM1),
            line_status: Port::new(COM1 + 5),
            interrupt_enable: Port::new(COM1 + 1),
            room: 0,
        }
    }

    /// Turns the transmitter-empty interrupt on or off.
    pub fn interrupt_when_empty(&mut self, on: bool) {
        let value = if on { INTERRUPT_TRANSMIT_EMPTY } else { 0 };
        // SAFETY: writing the UART's own interrupt-enable register (divisor latch
        // off, as `com1` left it); only this object uses COM1.
        unsafe { self.interrupt_enable.write(value) };
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
        while !self.try_put(byte) {
            core::hint::spin_loop();
        }
    }

    fn try_put(&mut self, byte: u8) -> bool {
        if self.room == 0 {
            if self.status() & LINE_STATUS_THR_EMPTY == 0 {
                return false;
            }
            self.room = FIFO_DEPTH;
        }
        self.room -= 1;
        // SAFETY: the transmit FIFO has room for this byte; writing it sends it.
        unsafe { self.data.write(byte) };
        true
    }

    fn drain(&mut self) {
        while self.status() & LINE_STATUS_IDLE == 0 {
            core::hint::spin_loop();
        }
    }
}

/// Powers the machine off where the kernel knows how (Bochs, QEMU with its
/// `isa-debug-exit` device), else halts.
pub fn power_off() -> ! {
    for byte in *b"Shutdown" {
        // SAFETY: on Bochs this port ends the emulation; on other machines nothing
        // is decoded at this port.
        unsafe { Port::new(BOCHS_SHUTDOWN_PORT).write(byte) };
    }
    // SAFETY: on QEMU with its debug-exit device this ends the emulation; on other
    // machines nothing is decoded at this port.
    unsafe { Port::<u8>::new(QEMU_EXIT_PORT).write(0) };
    halt()
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
