//! The length of the x86-64 instruction a guest used to touch MMIO: the x86_64
//! back end's decoder (`kernel/x86_64/src/exit.rs` is its only user). It is a
//! crate of its own, inside the back end's folder, because the back end is a
//! bare-metal binary that cannot be built for the host, and this code is tested
//! there; the portable core has no architecture code.
//!
//! On an EPT violation VT-x does not report the instruction length, so when the
//! service VM asks for a faulting access to be skipped, the kernel reads up to 15
//! code bytes at the guest's RIP and asks [`length`] how far to advance it.
//!
//! This module owns only the memory moves a guest uses for MMIO, decoded in
//! 64-bit mode (default operand size 32, address size 64): `MOV` 88/89/8A/8B,
//! `MOV` C6 /0 and C7 /0 with an immediate, `MOV` A0-A3 with a direct offset,
//! and `MOVZX`/`MOVSX` 0F B6/B7/BE/BF; with the prefixes 66, 67, the six segment
//! overrides and one REX right before the opcode.
//!
//! Invariants (tested on the host):
//! - the answer is the exact length or `None`, never a guess: anything else
//!   (LOCK, REP, other opcodes, a prefix after REX, C6/C7 with reg != 0) is `None`;
//! - a length is never more than 15 or than the bytes given, and bytes after the
//!   instruction never change it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The architectural limit: a longer instruction raises #GP instead of running.
const MAX_INSTRUCTION_LENGTH: usize = 15;

/// Length in bytes of the instruction at the start of `code`, if it is one of
/// the supported memory moves; `None` otherwise (unknown opcode, truncated
/// bytes, more than 15 bytes). Bytes after the instruction are ignored.
pub fn length(code: &[u8]) -> Option<usize> {
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
    let mut rex_w = false;
    if let rex @ 0x40..=0x4F = *window.get(position)? {
        rex_w = rex & 0x08 != 0;
        position += 1;
    }
    let opcode = *window.get(position)?;
    position += 1;
    let after_opcode = match opcode {
        0x88..=0x8B => modrm_operand_length(window.get(position..)?, false)?,
        0xC6 => modrm_operand_length(window.get(position..)?, true)? + 1,
        0xC7 => {
            let immediate = if operand_size_16 && !rex_w { 2 } else { 4 };
            modrm_operand_length(window.get(position..)?, true)? + immediate
        }
        0xA0..=0xA3 if address_size_32 => 4,
        0xA0..=0xA3 => 8,
        0x0F if matches!(window.get(position), Some(0xB6 | 0xB7 | 0xBE | 0xBF)) => {
            position += 1;
            modrm_operand_length(window.get(position..)?, false)?
        }
        _ => return None,
    };
    let total = position + after_opcode;
    (total <= window.len()).then_some(total)
}

/// Bytes taken by the ModRM byte at the start of `bytes` and what it implies
/// (SIB, displacement); `None` if truncated before the displacement, or if
/// `reg_must_be_zero` and the reg field is not 0. The displacement itself is
/// counted, not read, so the caller checks the total against the bytes given.
/// 32-bit addressing (prefix 67) uses the same layout in 64-bit mode.
fn modrm_operand_length(bytes: &[u8], reg_must_be_zero: bool) -> Option<usize> {
    let modrm = *bytes.first()?;
    let mode = modrm >> 6;
    let reg = (modrm >> 3) & 0b111;
    let rm = modrm & 0b111;
    if reg_must_be_zero && reg != 0 {
        return None;
    }
    if mode == 0b11 {
        return Some(1);
    }
    let has_sib = rm == 0b100;
    let displacement = match mode {
        0b01 => 1,
        0b10 => 4,
        _ if rm == 0b101 => 4, // RIP-relative (EIP-relative with 67)
        _ if has_sib && (*bytes.get(1)? & 0b111) == 0b101 => 4, // SIB: no base, disp32
        _ => 0,
    };
    Some(1 + usize::from(has_sib) + displacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real encodings and their AT&T syntax, one a line, from
    /// `llvm-mc --triple=x86_64 --show-encoding`; the hand-written ones checked
    /// with `llvm-mc --disassemble` and `objdump`. Each must decode to its length.
    const KNOWN: &str = "
89 00                                        | movl %eax, (%rax)
88 03                                        | movb %al, (%rbx)
8b 11                                        | movl (%rcx), %edx
8a 16                                        | movb (%rsi), %dl
89 c3                                        | movl %eax, %ebx (register)
48 89 47 10                                  | movq %rax, 16(%rdi)
4c 8b 88 78 56 34 12                         | movq 0x12345678(%rax), %r9
8b 04 24                                     | movl (%rsp), %eax
8b 45 00                                     | movl (%rbp), %eax
41 8b 45 00                                  | movl (%r13), %eax
45 8b 04 24                                  | movl (%r12), %r8d
8b 04 8d 44 33 22 11                         | movl 0x11223344(,%rcx,4), %eax
8b 44 d8 7f                                  | movl 127(%rax,%rbx,8), %eax
8b 05 00 10 00 00                            | movl 4096(%rip), %eax
66 89 02                                     | movw %ax, (%rdx)
64 66 89 02                                  | movw %ax, %fs:(%rdx)
65 89 40 20                                  | movl %eax, %gs:32(%rax)
c6 00 5a                                     | movb $0x5a, (%rax)
c6 84 d8 78 56 34 12 01                      | movb $1, 0x12345678(%rax,%rbx,8)
41 c6 45 10 7f                               | movb $127, 16(%r13)
c7 00 78 56 34 12                            | movl $0x12345678, (%rax)
c7 c0 01 00 00 00                            | movl $1, %eax (C7 /0, register)
66 c7 00 34 12                               | movw $0x1234, (%rax)
66 48 c7 00 78 56 34 12                      | data16 movq $0x12345678, (%rax) (REX.W wins)
48 c7 05 10 00 00 00 ff ff ff ff             | movq $-1, 16(%rip)
c7 84 24 44 33 22 11 ef be ad de             | movl $0xdeadbeef, 0x11223344(%rsp)
a0 88 77 66 55 44 33 22 11                   | movabsb 0x1122334455667788, %al
a1 88 77 66 55 44 33 22 11                   | movabsl 0x1122334455667788, %eax
66 a1 88 77 66 55 44 33 22 11                | movabsw 0x1122334455667788, %ax
a2 88 77 66 55 44 33 22 11                   | movabsb %al, 0x1122334455667788
48 a3 88 77 66 55 44 33 22 11                | movabsq %rax, 0x1122334455667788
67 a1 44 33 22 11                            | movl 0x11223344, %eax (addr32)
0f b6 00                                     | movzbl (%rax), %eax
0f b7 4b 04                                  | movzwl 4(%rbx), %ecx
49 0f be 02                                  | movsbq (%r10), %rax
0f bf 15 00 01 00 00                         | movswl 256(%rip), %edx
66 0f b6 00                                  | movzbw (%rax), %ax
67 8b 08                                     | movl (%eax), %ecx
67 8b 05 00 10 00 00                         | movl 4096(%eip), %eax
67 8b 04 25 44 33 22 11                      | movl 0x11223344(,%eiz,1), %eax
67 c7 04 48 01 00 00 00                      | movl $1, (%eax,%ecx,2)
2e 36 3e 26 64 65 66 67 48 8b 00             | cs ss ds es fs data16 movq %gs:(%eax), %rax
66 66 66 66 66 66 66 66 66 66 66 66 66 89 00 | 13 x data16 movw %ax, (%rax): 15 bytes
";

    /// Byte sequences that must be `None`, one a line, with why.
    const REJECTED: &str = "
                                                | empty
66 67 2e                                        | only prefixes
f0 89 00                                        | lock movl %eax, (%rax)
f3 a4                                           | rep movsb
f2 89 00                                        | repne prefix
90                                              | nop
48 66 89 00                                     | REX then 66
40 48 89 00                                     | two REX
c6 08 01                                        | C6 /1
c7 f8 00 00 00 00                               | xbegin (C7 /7)
0f b8 00                                        | 0F B8 (popcnt without F3)
8e d8                                           | mov to segment (8E)
8b 04                                           | SIB without its byte
8b 05 00 10 00                                  | disp32 cut short
a1 88 77 66 55 44 33 22                         | moffs cut short
66 c7 00 34                                     | imm16 cut short
66 66 66 66 66 66 66 66 66 66 66 66 66 66 89 00 | 14 x data16 movw %ax, (%rax): 16 bytes
";

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
            .collect()
    }

    /// The byte sequences of a table, each with its line for failure messages.
    fn table(lines: &str) -> Vec<(Vec<u8>, &str)> {
        lines
            .lines()
            .filter_map(|line| Some((bytes(line.split_once('|')?.0), line)))
            .collect()
    }

    /// A known encoding; or supported prefixes, a supported opcode and random
    /// bytes after it; or arbitrary bytes: the code the properties run on.
    fn code() -> impl Strategy<Value = Vec<u8>> {
        let prefixes = bytes("66 67 2e 36 3e 26 64 65 40 48 4f");
        let opcodes = bytes("88 89 8a 8b c6 c7 a0 a1 a2 a3 0f");
        let plausible = (
            proptest::collection::vec(proptest::sample::select(prefixes), 0..4),
            proptest::sample::select(opcodes),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(mut code, opcode, rest)| {
                code.push(opcode);
                code.extend(rest);
                code
            });
        prop_oneof![
            proptest::sample::select(table(KNOWN)).prop_map(|(code, _)| code),
            plausible,
            proptest::collection::vec(any::<u8>(), 0..20),
        ]
    }

    /// Verifies: SK-HM-002
    #[test]
    fn known_encodings_have_their_lengths() {
        let known = table(KNOWN);
        assert!(known.len() >= 20);
        for (code, line) in known {
            assert_eq!(length(&code), Some(code.len()), "{line}");
        }
    }

    /// Verifies: SK-HM-002
    #[test]
    fn unsupported_truncated_or_overlong_is_none() {
        for (code, line) in table(REJECTED) {
            assert_eq!(length(&code), None, "{line}");
        }
    }

    proptest! {
        /// Verifies: SK-HM-002
        #[test]
        fn length_is_bounded(code in code()) {
            if let Some(decoded) = length(&code) {
                prop_assert!(decoded <= MAX_INSTRUCTION_LENGTH);
                prop_assert!(decoded <= code.len());
            }
        }

        /// Verifies: SK-HM-002
        #[test]
        fn trailing_bytes_never_change_a_length(
            code in code(),
            trailing in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            if let Some(decoded) = length(&code) {
                let mut longer = code.clone();
                longer.extend_from_slice(&trailing);
                prop_assert_eq!(length(&longer), Some(decoded));
            }
        }

        /// Verifies: SK-HM-002
        #[test]
        fn truncated_instruction_is_none(code in code()) {
            if let Some(decoded) = length(&code) {
                for short in 0..decoded {
                    prop_assert_eq!(length(&code[..short]), None);
                }
            }
        }
    }
}
