//! The PL011 UART that carries the console. Only the kernel touches it: partitions
//! reach the console through the `console_write` hypercall.
//!
//! Invariant: every byte is written only after the transmit FIFO has room, and read
//! only when the receive FIFO holds one.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {u32,
    DR [
        /// The received or transmitted character.
        DATA OFFSET(0) NUMBITS(8) [],
    ],
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
    LCR_H [
        /// Word length: 8 bits.
        WLEN OFFSET(5) NUMBITS(2) [Eight = 0b11],
        /// FIFOs enabled.
        FEN OFFSET(4) NUMBITS(1) [],
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) [],
    ],
}

register_structs! {
    Registers {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x02c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => @END),
    }
}

/// The console UART.
pub struct Pl011 {
    registers: &'static Registers,
}

// SAFETY: a `Pl011` is the only user of its register block, so moving it to another
// context moves the exclusive right to use the device with it.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Takes over the PL011 whose registers are at `base`, keeping the baud rate the
    /// firmware set, in 8N1 with FIFOs, transmitter and receiver on.
    ///
    /// # Safety
    /// `base` must be the address of a PL011 register block, mapped as device memory
    /// in the kernel's address space, used by nothing else.
    pub unsafe fn new(base: u64) -> Pl011 {
        // SAFETY: the caller guarantees `base` points at a mapped PL011 that only
        // this object uses; `Registers` matches its layout.
        let registers = unsafe { &*(base as *const Registers) };
        registers.cr.write(CR::UARTEN::CLEAR);
        registers.lcr_h.write(LCR_H::WLEN::Eight + LCR_H::FEN::SET);
        registers
            .cr
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        Pl011 { registers }
    }

    /// The PL011 at `base` as it is set up already ([`Pl011::new`] did it).
    ///
    /// # Safety
    /// As for [`Pl011::new`]; the caller is, for as long as it keeps the
    /// object, the device's only user.
    pub unsafe fn set_up(base: u64) -> Pl011 {
        // SAFETY: the caller guarantees `base` points at a mapped PL011 that only
        // this object uses; `Registers` matches its layout.
        let registers = unsafe { &*(base as *const Registers) };
        Pl011 { registers }
    }

    /// The next byte typed on the console, if one has arrived; never waits.
    pub fn receive(&mut self) -> Option<u8> {
        if self.registers.fr.is_set(FR::RXFE) {
            return None;
        }
        // Reading DR pops the FIFO; its error bits (framing, parity, break, overrun)
        // above the character are dropped: a console byte is taken as it comes.
        Some(self.registers.dr.read(DR::DATA) as u8)
    }
}

impl septum_kernel::Uart for Pl011 {
    fn put(&mut self, byte: u8) {
        while self.registers.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.registers.dr.set(u32::from(byte));
    }

    fn try_put(&mut self, byte: u8) -> bool {
        if self.registers.fr.is_set(FR::TXFF) {
            return false;
        }
        self.registers.dr.set(u32::from(byte));
        true
    }

    fn drain(&mut self) {
        while self.registers.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}
