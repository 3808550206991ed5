//! The x86-64 memory moves a guest uses to touch MMIO, decoded in full: the
//! x86_64 back end's decoder (`kernel/x86_64/src/mmio.rs` is its only user). It
//! is a crate of its own, inside the back end's folder, because the back end is a
//! bare-metal binary that cannot be built for the host, and this code is tested
//! there; the portable core has no architecture code.
//!
//! On an EPT violation VT-x reports the guest-physical address and whether the
//! access read or wrote, but not the instruction: neither its length, nor its
//! register, nor its width. The kernel reads up to 15 code bytes at the guest's
//! RIP and asks [`decode`] what the instruction is: a [`Move`] says how long it
//! is (to resume past it, or to skip it when the service VM asks), how many
//! bytes it moves, and for a load which register takes the value and how
//! ([`Load::write`]), for a store what value is stored ([`Source`]). That is
//! all an emulated device register needs ("the fast lane"); [`length`] is the
//! length alone.
//!
//! This module owns only the memory moves a guest uses for MMIO, decoded in
//! 64-bit mode (default operand size 32, address size 64), with a memory
//! operand:
//!
//! | opcode | form | width | register |
//! |---|---|---|---|
//! | 88 /r, 8A /r | `MOV r/m8, r8`, `MOV r8, r/m8` | 1 | AL..BL, AH..BH without REX; with REX SPL..DIL, R8B..R15B |
//! | 89 /r, 8B /r | `MOV r/m, r`, `MOV r, r/m` | 2 (66), 4, 8 (REX.W) | 0-15 (REX.R) |
//! | C6 /0 ib | `MOV r/m8, imm8` | 1 | the immediate |
//! | C7 /0 iw/id | `MOV r/m, imm` | 2 (66, imm16), 4 (imm32), 8 (REX.W, imm32 sign-extended) | the immediate |
//! | A0, A2 | `MOV AL, moffs`, `MOV moffs, AL` | 1 | 0 |
//! | A1, A3 | `MOV rAX, moffs`, `MOV moffs, rAX` | 2, 4, 8 | 0 |
//! | 0F B6 /r, 0F B7 /r | `MOVZX r, r/m8`, `MOVZX r, r/m16` | 1, 2 into 2, 4 or 8 bytes | 0-15 |
//! | 0F BE /r, 0F BF /r | `MOVSX r, r/m8`, `MOVSX r, r/m16` | 1, 2 into 2, 4 or 8 bytes | 0-15 |
//!
//! with the prefixes 66, 67, the six segment overrides (any number, in any
//! order) and one REX right before the opcode. A load's register is written as
//! the processor writes it ([`Load::write`]): a 32-bit destination is
//! zero-extended to 64 bits, an 8- or 16-bit one is merged into the register
//! (its other bits unchanged), MOVZX zero-extends and MOVSX sign-extends the
//! value to the destination's size first. AH, CH, DH and BH (an 8-bit register
//! field of 4-7 with no REX prefix) are bits 15:8 of rax, rcx, rdx and rbx
//! ([`Register::HighByte`]), never the low byte of rsp, rbp, rsi or rdi.
//!
//! Invariants (tested on the host):
//! - the answer is exact or `None`, never a guess: anything else (LOCK, REP,
//!   other opcodes, a prefix after REX, C6/C7 with reg != 0, a register operand
//!   where the memory operand belongs, since such a move touches no memory) is
//!   `None`;
//! - a length is never more than 15 or than the bytes given, and bytes after the
//!   instruction never change the answer.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The architectural limit: a longer instruction raises #GP instead of running.
const MAX_INSTRUCTION_LENGTH: usize = 15;

/// One of the supported memory moves, as [`decode`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// Bytes of the instruction, prefixes and immediate included: at most 15.
    pub length: usize,
    /// Bytes of memory it reads or writes: 1, 2, 4 or 8.
    pub width: u8,
    /// A load or a store, and its register or value.
    pub operation: Operation,
}

/// The direction of a [`Move`] and what it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// It reads memory into a register.
    Load(Load),
    /// It writes this to memory.
    Store(Source),
}

/// Where a load puts the value it reads, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// The destination register.
    pub destination: Register,
    /// Bytes of the destination operand: 1, 2, 4 or 8, never less than the
    /// move's width (more only for MOVZX and MOVSX); 1 for [`Register::HighByte`].
    pub size: u8,
    /// How the value read is widened to `size` bytes.
    pub extension: Extension,
}

/// How a load widens the value it reads to its destination's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// With zeros: MOVZX, and MOV (which reads as many bytes as it writes).
    Zero,
    /// With copies of its top bit: MOVSX.
    Sign,
}

/// What a store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The low `width` bytes of a register (or AH..BH).
    Register(Register),
    /// This value: the instruction's immediate, `width` bytes of it (for a
    /// REX.W store, the 32-bit immediate sign-extended to 64 bits, as the
    /// processor does). Bits above `width` bytes are zero.
    Immediate(u64),
}

/// A general register operand, in the processor's numbering: 0 rax, 1 rcx,
/// 2 rdx, 3 rbx, 4 rsp, 5 rbp, 6 rsi, 7 rdi, 8-15 r8-r15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// Register 0-15, whose low bytes are the operand (as many as it has).
    General(u8),
    /// AH, CH, DH or BH: bits 15:8 of register 0-3 (rax, rcx, rdx, rbx).
    HighByte(u8),
}

impl Register {
    /// The number (0-15) of the 64-bit register that holds the operand.
    pub fn number(self) -> usize {
        match self {
            Register::General(number) | Register::HighByte(number) => usize::from(number),
        }
    }

    /// The operand, `width` bytes, given `full`, the value of the register
    /// numbered [`Register::number`]: what a store of it writes.
    pub fn read(self, full: u64, width: u8) -> u64 {
        match self {
            Register::General(_) => full & mask(width),
            Register::HighByte(_) => (full >> 8) & 0xff,
        }
    }
}

impl Load {
    /// The new value of the register numbered [`Register::number`] after this
    /// load, `width` bytes wide (the move's), read `value` (only its low
    /// `width` bytes count) into it, when it held `full` before: the value is
    /// widened to [`Load::size`] bytes as [`Load::extension`] says, then a
    /// 64-bit destination takes it, a 32-bit one takes it zero-extended to 64
    /// bits, and an 8- or 16-bit one (AH..BH: bits 15:8) takes it in its bytes
    /// with every other bit of `full` unchanged.
    pub fn write(&self, width: u8, full: u64, value: u64) -> u64 {
        let read = value & mask(width);
        let widened = match self.extension {
            Extension::Zero => read,
            Extension::Sign => {
                let unused = 64 - 8 * u32::from(width.min(8));
                (((read << unused) as i64) >> unused) as u64
            }
        };
        match (self.destination, self.size) {
            (Register::HighByte(_), _) => (full & !0xff00) | ((read & 0xff) << 8),
            (_, 8) => widened,
            (_, 4) => widened & mask(4),
            (_, size) => (full & !mask(size)) | (widened & mask(size)),
        }
    }
}

/// The low `width` bytes of a 64-bit value, as a mask (all ones from 8 bytes).
fn mask(width: u8) -> u64 {
    match width {
        0 => 0,
        1..=7 => (1u64 << (8 * u32::from(width))) - 1,
        _ => u64::MAX,
    }
}

/// Length in bytes of the instruction at the start of `code`, if it is one of
/// the supported memory moves; `None` otherwise (see [`decode`]).
pub fn length(code: &[u8]) -> Option<usize> {
    decode(code).map(|decoded| decoded.length)
}

/// The instruction at the start of `code`, if it is one of the supported
/// memory moves; `None` otherwise (unknown opcode or form, a register operand
/// where the memory operand belongs, truncated bytes, more than 15 bytes).
/// Bytes after the instruction are ignored.
pub fn decode(code: &[u8]) -> Option<Move> {
    let window = &code[..code.len().min(MAX_INSTRUCTION_LENGTH)];
    let mut operand_size_16 = false;
    let mut address_size_32 = false;
    let mut position = 0;
    loop {
        match *window.get(position)? {
            0x66 => operand_size_16 = true,
            0x67 => address_size_32 = true,
            0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        position += 1;
    }
    // A REX must come last; a prefix after it is not a supported opcode below.
    let rex = match *window.get(position)? {
        rex @ 0x40..=0x4F => {
            position += 1;
            Some(rex)
        }
        _ => None,
    };
    let rex_w = rex.is_some_and(|rex| rex & 0x08 != 0);
    let rex_r = rex.map_or(0, |rex| (rex & 0x04) << 1);
    // The size of a full-size operand: REX.W wins over 66.
    let full_size = match (rex_w, operand_size_16) {
        (true, _) => 8,
        (false, true) => 2,
        (false, false) => 4,
    };
    // A register named by ModRM.reg, of `size` bytes.
    let register = |reg: u8, size: u8| match (size, rex, reg) {
        (1, None, 4..=7) => Register::HighByte(reg - 4),
        _ => Register::General(reg | rex_r),
    };
    let load = |reg, size| {
        Operation::Load(Load {
            destination: register(reg, size),
            size,
            extension: Extension::Zero,
        })
    };
    let store = |reg, size| Operation::Store(Source::Register(register(reg, size)));
    let opcode = *window.get(position)?;
    position += 1;
    let (width, operation, after_opcode) = match opcode {
        0x88..=0x8B => {
            let operand = memory_operand(window.get(position..)?)?;
            let width = if opcode & 1 == 0 { 1 } else { full_size };
            let operation = if opcode & 2 == 0 {
                store(operand.reg, width)
            } else {
                load(operand.reg, width)
            };
            (width, operation, operand.length)
        }
        0xC6 | 0xC7 => {
            let operand = memory_operand(window.get(position..)?)?;
            if operand.reg != 0 {
                return None;
            }
            let width = if opcode == 0xC6 { 1 } else { full_size };
            // The immediate: imm8, imm16 or imm32 (sign-extended for REX.W).
            let immediate_length = usize::from(width.min(4));
            let at = position + operand.length;
            let bytes = window.get(at..at + immediate_length)?;
            let value = bytes
                .iter()
                .rev()
                .fold(0u64, |value, &byte| (value << 8) | u64::from(byte));
            let value = if width == 8 {
                i64::from(value as u32 as i32) as u64
            } else {
                value
            };
            let operation = Operation::Store(Source::Immediate(value));
            (width, operation, operand.length + immediate_length)
        }
        0xA0..=0xA3 => {
            let width = if opcode & 1 == 0 { 1 } else { full_size };
            // rAX, always the low bytes: AH is not reachable from these opcodes.
            let accumulator = Register::General(0);
            let operation = if opcode & 2 == 0 {
                Operation::Load(Load {
                    destination: accumulator,
                    size: width,
                    extension: Extension::Zero,
                })
            } else {
                Operation::Store(Source::Register(accumulator))
            };
            (width, operation, if address_size_32 { 4 } else { 8 })
        }
        0x0F => {
            let second = *window.get(position)?;
            let (width, extension) = match second {
                0xB6 => (1, Extension::Zero),
                0xB7 => (2, Extension::Zero),
                0xBE => (1, Extension::Sign),
                0xBF => (2, Extension::Sign),
                _ => return None,
            };
            position += 1;
            let operand = memory_operand(window.get(position..)?)?;
            let operation = Operation::Load(Load {
                destination: register(operand.reg, full_size),
                size: full_size,
                extension,
            });
            (width, operation, operand.length)
        }
        _ => return None,
    };
    let length = position + after_opcode;
    (length <= window.len()).then_some(Move {
        length,
        width,
        operation,
    })
}

/// What a ModRM byte with a memory operand says.
struct MemoryOperand {
    /// Its reg field (0-7, without REX.R).
    reg: u8,
    /// Bytes taken by the ModRM byte and what it implies (SIB, displacement).
    length: usize,
}

/// The ModRM byte at the start of `bytes`, if it names memory (not a register)
/// and is not truncated before its displacement. The displacement itself is
/// counted, not read, so the caller checks the total against the bytes given.
/// 32-bit addressing (prefix 67) uses the same layout in 64-bit mode.
fn memory_operand(bytes: &[u8]) -> Option<MemoryOperand> {
    let modrm = *bytes.first()?;
    let mode = modrm >> 6;
    let rm = modrm & 0b111;
    if mode == 0b11 {
        return None;
    }
    let has_sib = rm == 0b100;
    let displacement = match mode {
        0b01 => 1,
        0b10 => 4,
        _ if rm == 0b101 => 4, // RIP-relative (EIP-relative with 67)
        _ if has_sib && (*bytes.get(1)? & 0b111) == 0b101 => 4, // SIB: no base, disp32
        _ => 0,
    };
    Some(MemoryOperand {
        reg: (modrm >> 3) & 0b111,
        length: 1 + usize::from(has_sib) + displacement,
    })
}

#[cfg(test)]
mod tests;
