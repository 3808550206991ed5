//! The emulated SBSA UART of a Linux partition: the subset of a PL011 that the
//! Server Base System Architecture's generic UART defines (data, flags, interrupt
//! mask, raw and masked status, clear), which Linux drives as `arm,sbsa-uart`.
//!
//! The model owns the partition's receive FIFO and the interrupt line's level. It
//! never holds transmitted bytes: each one the guest writes to the data register
//! is handed straight to the caller (the partition's console line), so the
//! transmitter is always empty and never busy, and the guest never waits on it.
//!
//! Invariants:
//! - the receive FIFO holds at most [`RX_FIFO`] bytes; a byte typed while it is
//!   full is dropped and counted (a real UART's overrun), never blocking the
//!   console;
//! - the interrupt line is high exactly when a masked status bit is set
//!   ([`Uart::line`]); the raw status is derived from the FIFO, so it can never
//!   disagree with it;
//! - every access is to a 32-bit register at an aligned offset, 1, 2 or 4 bytes
//!   wide; any other access is refused and changes nothing.

/// Bytes the receive FIFO holds. A PL011's is 32 deep; this one is deeper,
/// which software cannot tell apart (it reads until the FIFO is empty), so that
/// a line typed or pasted at once is not cut: the kernel hands typed bytes over
/// only when it takes the console's input, a turn at a time.
pub const RX_FIFO: usize = 256;

// Register offsets.
const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const DMACR: u64 = 0x048;
/// Peripheral and PrimeCell identification registers (0xfe0-0xffc): a PL011.
const ID_BASE: u64 = 0xfe0;
const ID_VALUES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// Flag register bits.
const FR_TXFE: u64 = 1 << 7;
const FR_RXFF: u64 = 1 << 6;
const FR_RXFE: u64 = 1 << 4;
// Interrupt bits (IMSC, RIS, MIS, ICR).
const INT_RX: u64 = 1 << 4;
const INT_TX: u64 = 1 << 5;
const INT_RX_TIMEOUT: u64 = 1 << 6;
const INT_ALL: u64 = 0x7ff;
/// Control register at reset: UART, transmitter and receiver enabled.
const CR_RESET: u64 = 0x301;

/// What a guest access to the UART did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartEffect {
    /// Nothing beyond the register.
    None,
    /// The guest transmitted this byte.
    Sent(u8),
}

/// One partition's emulated UART.
#[derive(Debug)]
pub struct Uart {
    rx: heapless::Deque<u8, RX_FIFO>,
    /// Interrupt mask set/clear (IMSC).
    mask: u64,
    /// Registers that only read back what was written (baud, line and FIFO
    /// control, DMA control).
    ibrd: u64,
    fbrd: u64,
    lcr_h: u64,
    cr: u64,
    ifls: u64,
    dmacr: u64,
    /// Typed bytes dropped because the FIFO was full.
    overruns: u64,
}

impl Default for Uart {
    fn default() -> Uart {
        Uart::new()
    }
}

impl Uart {
    /// A UART in its reset state, with an empty FIFO.
    pub const fn new() -> Uart {
        Uart {
            rx: heapless::Deque::new(),
            mask: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: 0,
            dmacr: 0,
            overruns: 0,
        }
    }

    /// Back to the reset state (the partition restarted); typed bytes not yet
    /// read are dropped with the old instance.
    pub fn reset(&mut self) {
        *self = Uart {
            overruns: self.overruns,
            ..Uart::new()
        };
    }

    /// Typed bytes dropped so far because the FIFO was full.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// A byte typed for the partition; returns whether the interrupt line rose.
    pub fn receive(&mut self, byte: u8) -> bool {
        let was = self.line();
        if self.rx.push_back(byte).is_err() {
            self.overruns += 1;
        }
        !was && self.line()
    }

    /// Whether the interrupt line is high.
    pub fn line(&self) -> bool {
        self.raw_status() & self.mask != 0
    }

    fn raw_status(&self) -> u64 {
        let rx = if self.rx.is_empty() {
            0
        } else {
            INT_RX | INT_RX_TIMEOUT
        };
        rx | INT_TX
    }

    /// A guest read of `width` bytes at `offset`; `None` if refused.
    pub fn read(&mut self, offset: u64, width: u8) -> Option<u64> {
        let (register, shift) = register_of(offset, width)?;
        let value = match register {
            DR => self.rx.pop_front().map_or(0, u64::from),
            FR => {
                let rx = if self.rx.is_empty() {
                    FR_RXFE
                } else if self.rx.len() == RX_FIFO {
                    FR_RXFF
                } else {
                    0
                };
                FR_TXFE | rx
            }
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.mask,
            RIS => self.raw_status(),
            MIS => self.raw_status() & self.mask,
            DMACR => self.dmacr,
            id if id >= ID_BASE => u64::from(ID_VALUES[((id - ID_BASE) / 4) as usize]),
            _ => 0,
        };
        Some((value >> shift) & width_mask(width))
    }

    /// A guest write of `value` (`width` bytes) at `offset`: what it did, and
    /// whether the interrupt line rose; `None` if refused.
    pub fn write(&mut self, offset: u64, width: u8, value: u64) -> Option<(UartEffect, bool)> {
        let (register, shift) = register_of(offset, width)?;
        let was = self.line();
        let value = (value & width_mask(width)) << shift;
        let merge = |old: u64| (old & !(width_mask(width) << shift)) | value;
        let mut effect = UartEffect::None;
        match register {
            DR if shift == 0 => effect = UartEffect::Sent(value as u8),
            IBRD => self.ibrd = merge(self.ibrd) & 0xffff,
            FBRD => self.fbrd = merge(self.fbrd) & 0x3f,
            LCR_H => self.lcr_h = merge(self.lcr_h) & 0xff,
            CR => self.cr = merge(self.cr) & 0xffff,
            IFLS => self.ifls = merge(self.ifls) & 0x3f,
            IMSC => self.mask = merge(self.mask) & INT_ALL,
            DMACR => self.dmacr = merge(self.dmacr) & 0x7,
            // RSR/ECR clears errors (there are none), ICR clears edge-triggered
            // status (all of this model's is level), the rest is read-only.
            _ => {}
        }
        Some((effect, !was && self.line()))
    }
}

/// The 32-bit register an access of `width` bytes at `offset` falls in, and the
/// bit position of the access within it; `None` unless the width is 1, 2 or 4,
/// the access is aligned to it, and it lies inside the UART's 4 KiB.
fn register_of(offset: u64, width: u8) -> Option<(u64, u32)> {
    let fits = matches!(width, 1 | 2 | 4)
        && offset.is_multiple_of(u64::from(width))
        && offset < septum_abi::virt::UART_SIZE;
    fits.then_some((offset & !3, ((offset & 3) * 8) as u32))
}

fn width_mask(width: u8) -> u64 {
    (1u64 << (u32::from(width) * 8)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux's `sbsa-uart` driver does: unmask receive interrupts, take
    /// typed bytes from the data register until the FIFO reads empty, send.
    /// Verifies: SK-LNX-004, SK-LNX-007
    #[test]
    fn linux_driver_sequence() {
        let mut uart = Uart::new();
        assert_eq!(uart.read(FR, 4), Some(FR_TXFE | FR_RXFE));
        assert!(!uart.receive(b'a'), "masked: the line stays low");
        let (_, rose) = uart.write(IMSC, 4, INT_RX | INT_RX_TIMEOUT).unwrap();
        assert!(rose, "unmasking with a byte waiting raises the line");
        assert_eq!(uart.read(MIS, 4), Some(INT_RX | INT_RX_TIMEOUT));
        assert_eq!(uart.read(DR, 4), Some(u64::from(b'a')));
        assert!(!uart.line());
        assert_eq!(uart.read(FR, 4), Some(FR_TXFE | FR_RXFE));
        assert!(uart.receive(b'b'), "a byte raises the unmasked line");
        assert!(!uart.receive(b'c'), "already high");
        assert_eq!(
            uart.write(DR, 4, 0x41),
            Some((UartEffect::Sent(b'A'), false))
        );
        assert_eq!(
            uart.write(DR, 1, 0x142),
            Some((UartEffect::Sent(b'B'), false))
        );
    }

    /// Verifies: SK-LNX-004
    #[test]
    fn bad_accesses_are_refused_and_change_nothing() {
        let mut uart = Uart::new();
        uart.receive(b'x');
        assert_eq!(uart.read(DR + 1, 2), None, "misaligned");
        assert_eq!(uart.read(DR, 8), None, "too wide");
        assert_eq!(uart.read(0x1000, 4), None, "outside");
        assert_eq!(uart.write(IMSC, 3, 0xff), None);
        assert_eq!(uart.read(IMSC, 4), Some(0));
        assert_eq!(uart.read(DR, 4), Some(u64::from(b'x')), "the byte stayed");
    }

    /// Verifies: SK-LNX-007
    #[test]
    fn a_full_fifo_drops_and_counts() {
        let mut uart = Uart::new();
        for index in 0..RX_FIFO + 3 {
            uart.receive(index as u8);
        }
        assert_eq!(uart.overruns(), 3);
        assert_eq!(uart.read(FR, 4), Some(FR_TXFE | FR_RXFF));
        for index in 0..RX_FIFO {
            assert_eq!(uart.read(DR, 4), Some(u64::from(index as u8)));
        }
        uart.reset();
        assert_eq!(uart.read(FR, 4), Some(FR_TXFE | FR_RXFE));
        assert_eq!(uart.overruns(), 3);
    }

    /// Verifies: SK-LNX-004
    #[test]
    fn identification_and_byte_lanes() {
        let mut uart = Uart::new();
        assert_eq!(uart.read(0xfe0, 4), Some(0x11));
        assert_eq!(uart.read(0xffc, 4), Some(0xb1));
        uart.write(IMSC, 1, 0x30);
        uart.write(IMSC + 1, 1, 0x01);
        assert_eq!(uart.read(IMSC, 4), Some(0x130));
        assert_eq!(uart.read(IMSC + 1, 1), Some(0x01));
        assert_eq!(uart.read(RIS, 4), Some(INT_TX));
    }

    /// The line and control registers Linux programs keep what it writes,
    /// cut to their width; the receive-only and clear registers take writes
    /// and change nothing; a FIFO neither empty nor full shows neither flag.
    /// Verifies: SK-LNX-004
    #[test]
    fn control_registers_keep_their_bits_and_the_rest_ignore_writes() {
        let mut uart = Uart::default();
        assert_eq!(uart.read(CR, 4), Some(CR_RESET), "as at reset");
        let registers = [
            (IBRD, 0xffff),
            (FBRD, 0x3f),
            (LCR_H, 0xff),
            (CR, 0xffff),
            (IFLS, 0x3f),
            (DMACR, 0x7),
        ];
        for (register, bits) in registers {
            assert_eq!(
                uart.write(register, 4, u64::MAX),
                Some((UartEffect::None, false))
            );
            assert_eq!(uart.read(register, 4), Some(bits), "{register:#x}");
        }
        uart.receive(b'q');
        let before = format!("{uart:?}");
        // RSR/ECR, ICR and a reserved offset.
        for register in [0x004, 0x044, 0x100] {
            assert_eq!(
                uart.write(register, 4, u64::MAX),
                Some((UartEffect::None, false))
            );
        }
        assert_eq!(format!("{uart:?}"), before, "nothing changed");
        assert_eq!(uart.read(0x100, 4), Some(0), "reserved reads as zero");
        assert_eq!(uart.read(FR, 4), Some(FR_TXFE), "one byte waits");
    }
}
