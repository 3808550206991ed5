//! Small files for the Linux rules' tests, written from one-line recipes (the
//! `# image:` and `# file:` lines of the bad files), so no binary is committed.
//!
//! An `# image:` recipe is a file name and `key=value` words, each overriding
//! the default of a good little-endian arm64 `Image` header followed by bytes
//! `0x5a`:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `len` | the file's length in bytes | 4096 |
//! | `image_size` | the header's `image_size` | `0x10000` |
//! | `text_offset` | the header's `text_offset` | 0 |
//! | `flags` | the header's `flags` (bit 0: big-endian) | `0xa` |
//! | `magic` | the word at offset 56 | `0x644d5241` (`ARM\x64`) |
//!
//! A `# file:` recipe is a file name and `len=<bytes>`: a file of that many
//! bytes `0xc3` (an initrd).

use std::path::Path;

use crate::elf::number;

/// The bytes of the `Image` `recipe` (without its file name) describes.
pub fn image(recipe: &str) -> Vec<u8> {
    let (mut len, mut image_size, mut text_offset, mut flags, mut magic) =
        (4096, 0x1_0000, 0, 0xa, 0x644d_5241);
    for word in recipe.split_whitespace() {
        let (key, value) = word.split_once('=').expect("key=value");
        match key {
            "len" => len = number(value),
            "image_size" => image_size = number(value),
            "text_offset" => text_offset = number(value),
            "flags" => flags = number(value),
            "magic" => magic = number(value),
            other => panic!("unknown Image recipe key `{other}`"),
        }
    }
    let mut bytes = vec![0x5a; 64.max(len as usize)];
    bytes[..8].fill(0);
    bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
    bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
    bytes[24..32].copy_from_slice(&flags.to_le_bytes());
    bytes[32..56].fill(0);
    bytes[56..60].copy_from_slice(&(magic as u32).to_le_bytes());
    bytes[60..64].fill(0);
    bytes.truncate(len as usize);
    bytes
}

/// The bytes of the plain file `recipe` describes.
pub fn file(recipe: &str) -> Vec<u8> {
    let len = recipe
        .strip_prefix("len=")
        .map(number)
        .unwrap_or_else(|| panic!("`{recipe}`: a file recipe is `len=<bytes>`"));
    vec![0xc3; len as usize]
}

/// Writes the file of `line` (`<file> key=value ...`) into `folder`, made by
/// `make`.
pub fn write(folder: &Path, line: &str, make: fn(&str) -> Vec<u8>) {
    let (name, recipe) = line.split_once(' ').unwrap_or((line, ""));
    std::fs::write(folder.join(name), make(recipe)).expect("write the file");
}
