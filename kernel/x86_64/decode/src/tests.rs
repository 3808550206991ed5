//! Host tests of the decoder: tables of real encodings with what each must
//! decode to, tables of what must be refused, the processor's rules for
//! writing a loaded register, and properties over random code, among them
//! agreement with the length-only decoder this one replaced.

use super::*;
use proptest::prelude::*;

/// Real encodings, what they decode to and their AT&T syntax, one a line;
/// the syntax from `llvm-mc --triple=x86_64 --disassemble` of the bytes. Each
/// must decode to its whole length and to its description: `load W rN/S E`
/// (W bytes read into register N, S bytes of it, widened with zeros or sign)
/// or `store W rN` / `store W $VALUE`; `ah`..`bh` are bits 15:8 of 0-3.
const KNOWN: &str = "
89 00                                        | store 4 r0              | movl %eax, (%rax)
88 03                                        | store 1 r0              | movb %al, (%rbx)
8b 11                                        | load 4 r2/4 zero        | movl (%rcx), %edx
8a 16                                        | load 1 r2/1 zero        | movb (%rsi), %dl
48 89 47 10                                  | store 8 r0              | movq %rax, 16(%rdi)
4c 8b 88 78 56 34 12                         | load 8 r9/8 zero        | movq 0x12345678(%rax), %r9
8b 04 24                                     | load 4 r0/4 zero        | movl (%rsp), %eax
8b 45 00                                     | load 4 r0/4 zero        | movl (%rbp), %eax
41 8b 45 00                                  | load 4 r0/4 zero        | movl (%r13), %eax
45 8b 04 24                                  | load 4 r8/4 zero        | movl (%r12), %r8d
4d 8b 3f                                     | load 8 r15/8 zero       | movq (%r15), %r15
8b 04 8d 44 33 22 11                         | load 4 r0/4 zero        | movl 0x11223344(,%rcx,4), %eax
8b 44 d8 7f                                  | load 4 r0/4 zero        | movl 127(%rax,%rbx,8), %eax
8b 05 00 10 00 00                            | load 4 r0/4 zero        | movl 4096(%rip), %eax
48 8b 20                                     | load 8 r4/8 zero        | movq (%rax), %rsp
89 20                                        | store 4 r4              | movl %esp, (%rax)
44 89 00                                     | store 4 r8              | movl %r8d, (%rax) (REX.R)
41 89 00                                     | store 4 r0              | movl %eax, (%r8) (REX.B)
4c 89 3c 24                                  | store 8 r15             | movq %r15, (%rsp)
66 89 02                                     | store 2 r0              | movw %ax, (%rdx)
66 8b 30                                     | load 2 r6/2 zero        | movw (%rax), %si
66 44 8b 08                                  | load 2 r9/2 zero        | movw (%rax), %r9w
64 66 89 02                                  | store 2 r0              | movw %ax, %fs:(%rdx)
65 89 40 20                                  | store 4 r0              | movl %eax, %gs:32(%rax)
88 20                                        | store 1 ah              | movb %ah, (%rax)
88 3b                                        | store 1 bh              | movb %bh, (%rbx)
8a 2e                                        | load 1 ch/1 zero        | movb (%rsi), %ch
8a 32                                        | load 1 dh/1 zero        | movb (%rdx), %dh
66 88 20                                     | store 1 ah              | data16 movb %ah, (%rax)
40 88 20                                     | store 1 r4              | movb %spl, (%rax)
40 8a 3f                                     | load 1 r7/1 zero        | movb (%rdi), %dil
48 8a 2e                                     | load 1 r5/1 zero        | movb (%rsi), %bpl (REX.W)
41 88 20                                     | store 1 r4              | movb %spl, (%r8)
44 88 20                                     | store 1 r12             | movb %r12b, (%rax)
45 8a 38                                     | load 1 r15/1 zero       | movb (%r8), %r15b
c6 00 5a                                     | store 1 $0x5a           | movb $0x5a, (%rax)
c6 00 ff                                     | store 1 $0xff           | movb $-1, (%rax)
c6 84 d8 78 56 34 12 01                      | store 1 $0x1            | movb $1, 0x12345678(%rax,%rbx,8)
41 c6 45 10 7f                               | store 1 $0x7f           | movb $127, 16(%r13)
40 c6 00 01                                  | store 1 $0x1            | movb $1, (%rax) (REX ignored)
c7 00 78 56 34 12                            | store 4 $0x12345678     | movl $0x12345678, (%rax)
c7 00 ff ff ff ff                            | store 4 $0xffffffff     | movl $4294967295, (%rax)
66 c7 00 34 12                               | store 2 $0x1234         | movw $0x1234, (%rax)
66 c7 00 ff ff                               | store 2 $0xffff         | movw $65535, (%rax)
66 48 c7 00 78 56 34 12                      | store 8 $0x12345678     | data16 movq $0x12345678, (%rax) (REX.W wins)
48 c7 05 10 00 00 00 ff ff ff ff             | store 8 $0xffffffffffffffff | movq $-1, 16(%rip)
48 c7 00 00 00 00 80                         | store 8 $0xffffffff80000000 | movq $-2147483648, (%rax)
48 c7 00 ff ff ff 7f                         | store 8 $0x7fffffff     | movq $2147483647, (%rax)
c7 84 24 44 33 22 11 ef be ad de             | store 4 $0xdeadbeef     | movl $0xdeadbeef, 0x11223344(%rsp)
a0 88 77 66 55 44 33 22 11                   | load 1 r0/1 zero        | movabsb 0x1122334455667788, %al
a1 88 77 66 55 44 33 22 11                   | load 4 r0/4 zero        | movabsl 0x1122334455667788, %eax
66 a1 88 77 66 55 44 33 22 11                | load 2 r0/2 zero        | movabsw 0x1122334455667788, %ax
48 a1 88 77 66 55 44 33 22 11                | load 8 r0/8 zero        | movabsq 0x1122334455667788, %rax
a2 88 77 66 55 44 33 22 11                   | store 1 r0              | movabsb %al, 0x1122334455667788
66 a3 88 77 66 55 44 33 22 11                | store 2 r0              | movabsw %ax, 0x1122334455667788
48 a3 88 77 66 55 44 33 22 11                | store 8 r0              | movabsq %rax, 0x1122334455667788
67 a1 44 33 22 11                            | load 4 r0/4 zero        | movl 0x11223344, %eax (addr32)
0f b6 00                                     | load 1 r0/4 zero        | movzbl (%rax), %eax
0f b6 20                                     | load 1 r4/4 zero        | movzbl (%rax), %esp (not AH)
0f b7 4b 04                                  | load 2 r1/4 zero        | movzwl 4(%rbx), %ecx
49 0f be 02                                  | load 1 r0/8 sign        | movsbq (%r10), %rax
0f bf 15 00 01 00 00                         | load 2 r2/4 sign        | movswl 256(%rip), %edx
0f bf 38                                     | load 2 r7/4 sign        | movswl (%rax), %edi
66 0f b6 00                                  | load 1 r0/2 zero        | movzbw (%rax), %ax
66 0f b7 00                                  | load 2 r0/2 zero        | movzww (%rax), %ax
66 0f be 20                                  | load 1 r4/2 sign        | movsbw (%rax), %sp
66 0f bf 00                                  | load 2 r0/2 sign        | movsww (%rax), %ax
66 48 0f be 00                               | load 1 r0/8 sign        | movsbq (%rax), %rax (REX.W wins)
48 0f bf 00                                  | load 2 r0/8 sign        | movswq (%rax), %rax
4c 0f b6 18                                  | load 1 r11/8 zero       | movzbq (%rax), %r11
48 0f b7 24 24                               | load 2 r4/8 zero        | movzwq (%rsp), %rsp
67 8b 08                                     | load 4 r1/4 zero        | movl (%eax), %ecx
67 8b 05 00 10 00 00                         | load 4 r0/4 zero        | movl 4096(%eip), %eax
67 8b 04 25 44 33 22 11                      | load 4 r0/4 zero        | movl 0x11223344(,%eiz,1), %eax
67 c7 04 48 01 00 00 00                      | store 4 $0x1            | movl $1, (%eax,%ecx,2)
2e 36 3e 26 64 65 66 67 48 8b 00             | load 8 r0/8 zero        | cs ss ds es fs data16 movq %gs:(%eax), %rax
66 66 66 66 66 66 66 66 66 66 66 66 66 89 00 | store 2 r0              | 13 x data16 movw %ax, (%rax): 15 bytes
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
0f                                              | 0F alone
8e d8                                           | mov to segment (8E)
8b 04                                           | SIB without its byte
8b 05 00 10 00                                  | disp32 cut short
a1 88 77 66 55 44 33 22                         | moffs cut short
66 c7 00 34                                     | imm16 cut short
48 c7 00 ff ff ff                               | imm32 of REX.W cut short
66 66 66 66 66 66 66 66 66 66 66 66 66 66 89 00 | 14 x data16 movw %ax, (%rax): 16 bytes
89 c3                                           | movl %eax, %ebx: no memory operand
88 e0                                           | movb %ah, %al: no memory operand
8a fc                                           | movb %ah, %bh: no memory operand
c7 c0 01 00 00 00                               | movl $1, %eax: no memory operand
c6 c4 01                                        | movb $1, %ah: no memory operand
0f b6 c4                                        | movzbl %ah, %eax: no memory operand
";

/// The length-only decoder this crate had before it described the moves,
/// kept unchanged as the reference [`decode`]'s lengths are checked against.
fn reference_length(code: &[u8]) -> Option<usize> {
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
    let mut rex_w = false;
    if let rex @ 0x40..=0x4F = *window.get(position)? {
        rex_w = rex & 0x08 != 0;
        position += 1;
    }
    let opcode = *window.get(position)?;
    position += 1;
    let after_opcode = match opcode {
        0x88..=0x8B => reference_modrm_length(window.get(position..)?, false)?,
        0xC6 => reference_modrm_length(window.get(position..)?, true)? + 1,
        0xC7 => {
            let immediate = if operand_size_16 && !rex_w { 2 } else { 4 };
            reference_modrm_length(window.get(position..)?, true)? + immediate
        }
        0xA0..=0xA3 if address_size_32 => 4,
        0xA0..=0xA3 => 8,
        0x0F if matches!(window.get(position), Some(0xB6 | 0xB7 | 0xBE | 0xBF)) => {
            position += 1;
            reference_modrm_length(window.get(position..)?, false)?
        }
        _ => return None,
    };
    let total = position + after_opcode;
    (total <= window.len()).then_some(total)
}

/// The reference's ModRM length (see [`reference_length`]).
fn reference_modrm_length(bytes: &[u8], reg_must_be_zero: bool) -> Option<usize> {
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
        _ if rm == 0b101 => 4,
        _ if has_sib && (*bytes.get(1)? & 0b111) == 0b101 => 4,
        _ => 0,
    };
    Some(1 + usize::from(has_sib) + displacement)
}

/// The ModRM byte of the instruction at the start of `code` (after its
/// prefixes, REX and opcode), for an opcode that has one.
fn modrm_of(code: &[u8]) -> Option<u8> {
    let mut position = code.iter().position(|byte| !is_legacy_prefix(*byte))?;
    if (0x40..=0x4F).contains(&code[position]) {
        position += 1;
    }
    match *code.get(position)? {
        0x0F => code.get(position + 2).copied(),
        0x88..=0x8B | 0xC6 | 0xC7 => code.get(position + 1).copied(),
        _ => None,
    }
}

/// Whether `byte` is one of the prefixes the decoder takes before REX.
fn is_legacy_prefix(byte: u8) -> bool {
    matches!(byte, 0x66 | 0x67 | 0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65)
}

fn name(register: Register) -> String {
    match register {
        Register::General(number) => format!("r{number}"),
        Register::HighByte(number) => ["ah", "ch", "dh", "bh"][usize::from(number)].to_string(),
    }
}

/// A move in the tables' words (see [`KNOWN`]).
fn describe(decoded: &Move) -> String {
    let width = decoded.width;
    match decoded.operation {
        Operation::Load(load) => {
            let extension = match load.extension {
                Extension::Zero => "zero",
                Extension::Sign => "sign",
            };
            format!(
                "load {width} {}/{} {extension}",
                name(load.destination),
                load.size
            )
        }
        Operation::Store(Source::Register(register)) => {
            format!("store {width} {}", name(register))
        }
        Operation::Store(Source::Immediate(value)) => format!("store {width} ${value:#x}"),
    }
}

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
    let prefixes = bytes("66 67 2e 36 3e 26 64 65 40 41 44 48 4c 4f");
    let opcodes = bytes("88 89 8a 8b c6 c7 a0 a1 a2 a3 0f");
    let plausible = (
        proptest::collection::vec(proptest::sample::select(prefixes), 0..4),
        proptest::sample::select(opcodes),
        proptest::sample::select(bytes("b6 b7 be bf")),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut code, opcode, second, rest)| {
            code.push(opcode);
            if opcode == 0x0F {
                code.push(second);
            }
            code.extend(rest);
            code
        });
    prop_oneof![
        proptest::sample::select(table(KNOWN)).prop_map(|(code, _)| code),
        plausible,
        proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

/// Verifies: SK-HM-002, SK-LNX-004
#[test]
fn known_encodings_decode_to_their_moves() {
    let known = table(KNOWN);
    assert!(known.len() >= 70);
    for (code, line) in known {
        let expected = line.split('|').nth(1).expect("a description").trim();
        let decoded = decode(&code).unwrap_or_else(|| panic!("not decoded: {line}"));
        assert_eq!(decoded.length, code.len(), "{line}");
        assert_eq!(length(&code), Some(code.len()), "{line}");
        assert_eq!(describe(&decoded), expected, "{line}");
    }
}

/// Verifies: SK-HM-002, SK-LNX-004
#[test]
fn unsupported_truncated_overlong_or_register_only_is_none() {
    for (code, line) in table(REJECTED) {
        assert_eq!(decode(&code), None, "{line}");
        assert_eq!(length(&code), None, "{line}");
    }
}

/// Verifies: SK-LNX-004
#[test]
fn loads_write_their_register_as_the_processor_does() {
    let full = 0x1122_3344_5566_7788;
    let load = |destination, size, extension| Load {
        destination,
        size,
        extension,
    };
    let (r0, ah) = (Register::General(0), Register::HighByte(0));
    let (zero, sign) = (Extension::Zero, Extension::Sign);
    // MOV r64 and r32 (zero-extends), r16 and r8 (merge), AH.
    assert_eq!(load(r0, 8, zero).write(8, full, u64::MAX), u64::MAX);
    assert_eq!(load(r0, 4, zero).write(4, full, u64::MAX), 0xffff_ffff);
    assert_eq!(
        load(r0, 2, zero).write(2, full, 0xabcd),
        0x1122_3344_5566_abcd
    );
    assert_eq!(
        load(r0, 1, zero).write(1, full, 0xfe),
        0x1122_3344_5566_77fe
    );
    assert_eq!(
        load(ah, 1, zero).write(1, full, 0x1fe),
        0x1122_3344_5566_fe88
    );
    // Bits of the value past the width never count.
    assert_eq!(
        load(r0, 1, zero).write(1, full, 0xffff_ff01),
        0x1122_3344_5566_7701
    );
    // MOVZX into 64, 32 and 16 bits.
    assert_eq!(load(r0, 8, zero).write(1, full, 0x80), 0x80);
    assert_eq!(load(r0, 4, zero).write(2, full, 0x8000), 0x8000);
    assert_eq!(
        load(r0, 2, zero).write(1, full, 0x80),
        0x1122_3344_5566_0080
    );
    // MOVSX into 64, 32 (then zero-extended) and 16 bits (merged).
    assert_eq!(
        load(r0, 8, sign).write(1, full, 0x80),
        0xffff_ffff_ffff_ff80
    );
    assert_eq!(load(r0, 8, sign).write(2, full, 0x7fff), 0x7fff);
    assert_eq!(load(r0, 4, sign).write(2, full, 0x8000), 0xffff_8000);
    assert_eq!(load(r0, 4, sign).write(1, full, 0x7f), 0x7f);
    assert_eq!(
        load(r0, 2, sign).write(1, full, 0x80),
        0x1122_3344_5566_ff80
    );
}

/// Verifies: SK-LNX-004
#[test]
fn stores_read_their_register_as_the_processor_does() {
    let full = 0x1122_3344_5566_7788;
    assert_eq!(Register::General(0).read(full, 8), full);
    assert_eq!(Register::General(0).read(full, 4), 0x5566_7788);
    assert_eq!(Register::General(0).read(full, 2), 0x7788);
    assert_eq!(Register::General(0).read(full, 1), 0x88);
    assert_eq!(Register::HighByte(3).read(full, 1), 0x77);
    assert_eq!(Register::HighByte(3).number(), 3);
    assert_eq!(Register::General(15).number(), 15);
}

proptest! {
    /// Verifies: SK-HM-002
    #[test]
    fn length_is_bounded(code in code()) {
        if let Some(decoded) = decode(&code) {
            prop_assert!(decoded.length <= MAX_INSTRUCTION_LENGTH);
            prop_assert!(decoded.length <= code.len());
        }
    }

    /// The decoder agrees with the length-only one it replaced wherever both
    /// answer, and refuses only what that one answered for a move with no
    /// memory operand.
    ///
    /// Verifies: SK-HM-002
    #[test]
    fn lengths_agree_with_the_length_only_decoder(code in code()) {
        match (decode(&code), reference_length(&code)) {
            (Some(decoded), Some(reference)) => prop_assert_eq!(decoded.length, reference),
            (Some(decoded), None) => prop_assert!(false, "{:?} has no reference length", decoded),
            (None, Some(_)) => {
                let modrm = modrm_of(&code);
                prop_assert!(modrm.is_some_and(|modrm| modrm >> 6 == 0b11), "{:02x?}", code);
            }
            (None, None) => {}
        }
    }

    /// Verifies: SK-HM-002, SK-LNX-004
    #[test]
    fn trailing_bytes_never_change_a_move(
        code in code(),
        trailing in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        if let Some(decoded) = decode(&code) {
            let mut longer = code.clone();
            longer.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&longer), Some(decoded));
            prop_assert_eq!(decode(&code[..decoded.length]), Some(decoded));
        }
    }

    /// Verifies: SK-HM-002
    #[test]
    fn truncated_instruction_is_none(code in code()) {
        if let Some(decoded) = decode(&code) {
            for short in 0..decoded.length {
                prop_assert_eq!(decode(&code[..short]), None);
            }
        }
    }

    /// What every move decodes to is in range: widths and sizes of 1, 2, 4
    /// or 8 bytes, a size never under the width, a register 0-15, AH..BH
    /// only as an 8-bit operand with no REX, an immediate within its width.
    ///
    /// Verifies: SK-LNX-004
    #[test]
    fn moves_are_well_formed(code in code()) {
        if let Some(decoded) = decode(&code) {
            let width = decoded.width;
            prop_assert!(matches!(width, 1 | 2 | 4 | 8));
            let register = match decoded.operation {
                Operation::Load(load) => {
                    prop_assert!(matches!(load.size, 1 | 2 | 4 | 8) && load.size >= width);
                    prop_assert!(load.size == width || code.contains(&0x0F));
                    Some(load.destination)
                }
                Operation::Store(Source::Register(register)) => Some(register),
                Operation::Store(Source::Immediate(value)) => {
                    prop_assert_eq!(value & !mask(width), 0);
                    None
                }
            };
            match register {
                Some(Register::General(number)) => prop_assert!(number < 16),
                Some(Register::HighByte(number)) => {
                    prop_assert!(number < 4 && width == 1);
                    let opcode_or_rex = code.iter().find(|byte| !is_legacy_prefix(**byte));
                    prop_assert!(!opcode_or_rex.is_some_and(|byte| (0x40..=0x4F).contains(byte)));
                }
                None => {}
            }
        }
    }

    /// A load changes only the bits the processor changes: a 64- or 32-bit
    /// destination all of them (the upper 32 to zero), an 8- or 16-bit one
    /// only its own.
    ///
    /// Verifies: SK-LNX-004
    #[test]
    fn a_load_changes_only_its_register_bits(
        code in code(),
        full in any::<u64>(),
        value in any::<u64>(),
    ) {
        if let Some(Move { width, operation: Operation::Load(load), .. }) = decode(&code) {
            let written = load.write(width, full, value);
            let kept = match (load.destination, load.size) {
                (Register::HighByte(_), _) => !0xff00,
                (_, 8) | (_, 4) => 0,
                (_, size) => !mask(size),
            };
            prop_assert_eq!(written & kept, full & kept);
            if load.size == 4 {
                prop_assert_eq!(written >> 32, 0);
            }
            prop_assert_eq!(load.write(width, full, value & mask(width)), written);
        }
    }
}
