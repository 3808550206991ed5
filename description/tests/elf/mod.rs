//! Small ELF files for the image rules' tests, written from one-line recipes (the
//! `# elf:` lines of the bad files), so no binary is committed. A recipe is a file
//! name and `key=value` words, each overriding the default of a good aarch64
//! executable linked at the partition RAM base:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `machine` | `e_machine` | 183 (AArch64) |
//! | `type` | `e_type` | 2 (executable) |
//! | `class` | `EI_CLASS` | 2 (64-bit) |
//! | `entry` | the entry point | `0x40000000` |
//! | `load` | a `PT_LOAD` segment, `address:file_size:memory_size`; repeatable | `0x40000000:64:64` |
//! | `phentsize` | `e_phentsize` | 56 |
//! | `truncate` | cut the file to this many bytes | |
//!
//! Segment bytes are laid out from offset 4096 in the file, each filled with
//! `0xa0 + its index`.

use std::path::Path;

/// A number written in decimal or as `0x` hexadecimal, with `_` allowed.
pub fn number(text: &str) -> u64 {
    let clean = text.replace('_', "");
    match clean.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => clean.parse(),
    }
    .unwrap_or_else(|_| panic!("`{text}` is not a number"))
}

/// The bytes of the ELF `recipe` (without its file name) describes.
pub fn build(recipe: &str) -> Vec<u8> {
    let (mut machine, mut kind, mut class, mut entry, mut phentsize) = (183, 2, 2, 0x4000_0000, 56);
    let mut loads = Vec::new();
    let mut truncate = None;
    for word in recipe.split_whitespace() {
        let (key, value) = word.split_once('=').expect("key=value");
        match key {
            "machine" => machine = number(value),
            "type" => kind = number(value),
            "class" => class = number(value),
            "entry" => entry = number(value),
            "phentsize" => phentsize = number(value),
            "truncate" => truncate = Some(number(value) as usize),
            "load" => {
                let fields: Vec<u64> = value.split(':').map(number).collect();
                loads.push((fields[0], fields[1], fields[2]));
            }
            other => panic!("unknown ELF recipe key `{other}`"),
        }
    }
    if loads.is_empty() {
        loads.push((0x4000_0000, 64, 64));
    }
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[class as u8, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&(kind as u16).to_le_bytes());
    elf.extend_from_slice(&(machine as u16).to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64, phentsize as u16, loads.len() as u16, 64, 0, 0] {
        elf.extend_from_slice(&u16::to_le_bytes(half));
    }
    let mut offset = 4096u64;
    for &(address, file_size, memory_size) in &loads {
        elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf.extend_from_slice(&5u32.to_le_bytes()); // R X
        for field in [offset, address, address, file_size, memory_size, 4096] {
            elf.extend_from_slice(&field.to_le_bytes());
        }
        offset += file_size;
    }
    elf.resize(4096, 0);
    for (index, &(_, file_size, _)) in loads.iter().enumerate() {
        elf.extend(std::iter::repeat_n(0xa0 + index as u8, file_size as usize));
    }
    if let Some(len) = truncate {
        elf.truncate(len);
    }
    elf
}

/// Writes the ELF of `line` (`<file> key=value ...`) into `folder`.
pub fn write(folder: &Path, line: &str) {
    let (name, recipe) = line.split_once(' ').unwrap_or((line, ""));
    std::fs::write(folder.join(name), build(recipe)).expect("write the ELF");
}
