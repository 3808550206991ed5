//! Reading partition ELF files with bounded memory. [`read_header`] reads the file
//! header and the program headers (at most 65,535 of 56 bytes each) and checks
//! that they describe a 64-bit little-endian ELF whose loadable segments lie
//! inside the file; [`read_segment`] then reads one segment's bytes straight into
//! the caller's buffer. Nothing else of the file (sections, symbols, debugging
//! information) is read, so the memory used is that of the buffer the caller
//! sizes after checking the segments' addresses.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// `e_machine` of AArch64.
pub(crate) const EM_AARCH64: u16 = 183;
/// `e_machine` of x86-64.
pub(crate) const EM_X86_64: u16 = 62;
/// `e_type` of an executable (not relocatable, not position-independent).
pub(crate) const ET_EXEC: u16 = 2;

const HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;
const PT_LOAD: u32 = 1;

/// A loadable segment (`PT_LOAD`) that takes memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its index among the program headers.
    pub index: usize,
    /// Where its bytes are in the file.
    pub offset: u64,
    /// Its virtual address (where the loader places it).
    pub address: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Bytes in memory (the rest, past `file_size`, is zero).
    pub memory_size: u64,
}

/// What the loader needs of an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `e_type`.
    pub kind: u16,
    /// `e_machine`.
    pub machine: u16,
    /// The entry point.
    pub entry: u64,
    /// Its loadable segments that take memory, in program-header order.
    pub segments: Vec<Segment>,
}

/// The architecture `machine` names, for messages.
pub(crate) fn machine_name(machine: u16) -> String {
    match machine {
        EM_AARCH64 => "aarch64".into(),
        EM_X86_64 => "x86_64".into(),
        other => format!("machine {other}"),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Fills `buffer` with the bytes of `file` from `offset` on.
fn read_at(file: &mut File, offset: u64, buffer: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

/// Why an ELF file was refused: it cannot be read, or it is malformed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ElfError {
    /// Reading failed.
    Read(String),
    /// It is not a well-formed 64-bit little-endian ELF.
    Malformed(String),
}

/// Reads the headers of the ELF `file`, `len` bytes long.
pub(crate) fn read_header(file: &mut File, len: u64) -> Result<Header, ElfError> {
    let malformed = |message: String| Err(ElfError::Malformed(message));
    let io = |e: std::io::Error| ElfError::Read(e.to_string());
    if len < HEADER_SIZE as u64 {
        return malformed(format!("it is {len} bytes, shorter than an ELF header"));
    }
    let mut header = [0; HEADER_SIZE];
    read_at(file, 0, &mut header).map_err(io)?;
    if header[..4] != *b"\x7fELF" {
        return malformed("it is not an ELF file".into());
    }
    if header[4] != 2 || header[5] != 1 {
        return malformed("it is not a 64-bit little-endian ELF".into());
    }
    let program_headers = u64_at(&header, 32);
    let entry_size = usize::from(u16_at(&header, 54));
    let count = usize::from(u16_at(&header, 56));
    if count > 0 && entry_size != PROGRAM_HEADER_SIZE {
        return malformed(format!(
            "its program headers are {entry_size} bytes each, not {PROGRAM_HEADER_SIZE}"
        ));
    }
    let table_size = (count * PROGRAM_HEADER_SIZE) as u64;
    if program_headers
        .checked_add(table_size)
        .is_none_or(|end| end > len)
    {
        return malformed(format!(
            "its program headers ({count} at offset {program_headers}) lie past its end ({len} bytes)"
        ));
    }
    let mut table = vec![0; count * PROGRAM_HEADER_SIZE];
    read_at(file, program_headers, &mut table).map_err(io)?;
    let mut segments = Vec::new();
    for (index, raw) in table.chunks_exact(PROGRAM_HEADER_SIZE).enumerate() {
        let segment = Segment {
            index,
            offset: u64_at(raw, 8),
            address: u64_at(raw, 16),
            file_size: u64_at(raw, 32),
            memory_size: u64_at(raw, 40),
        };
        if u32_at(raw, 0) != PT_LOAD || segment.memory_size == 0 {
            continue;
        }
        if segment.file_size > segment.memory_size {
            return malformed(format!(
                "segment {index} has more bytes in the file ({}) than in memory ({})",
                segment.file_size, segment.memory_size
            ));
        }
        if segment
            .offset
            .checked_add(segment.file_size)
            .is_none_or(|end| end > len)
        {
            return malformed(format!(
                "the {} bytes of segment {index} at offset {} lie past its end ({len} bytes)",
                segment.file_size, segment.offset
            ));
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        return malformed("it has no loadable segment".into());
    }
    Ok(Header {
        kind: u16_at(&header, 16),
        machine: u16_at(&header, 18),
        entry: u64_at(&header, 24),
        segments,
    })
}

/// Reads the file bytes of `segment` into `into` (exactly `file_size` bytes long).
pub(crate) fn read_segment(
    file: &mut File,
    segment: &Segment,
    into: &mut [u8],
) -> Result<(), String> {
    read_at(file, segment.offset, into).map_err(|e| e.to_string())
}
