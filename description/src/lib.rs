//! System descriptions: the TOML file that fixes a Septum system at build time, and
//! the board recipes it is checked against.
//!
//! [`load`] reads a description, checks every rule in [`validate`] and returns a
//! [`System`] whose facts all hold, or every error found. Each error names the file,
//! the line and column of the offending value, and the rule it breaks, e.g.
//!
//! ```text
//! tests/bad-systems/memory-overlap.toml:14:6: error[memory-overlap]: RAM of `b` (0x40000000..0x40200000) overlaps RAM of `a`
//! ```
//!
//! [`load_images`] then reads each partition's program (a bounded read of an ELF
//! file; for a Linux partition, its kernel and initrd, with the device tree
//! generated from the description), checks it against its partition and board
//! (the image rules), and flattens it into the bytes the kernel loads.
//!
//! Invariant: a [`System`] can only be obtained through [`load`] (or
//! [`parse`]), so code that receives one may rely on every rule; the images
//! [`load_images`] returns satisfy the image rules too.

mod board;
mod elf;
mod format;
mod images;
pub mod limits;
mod linux;
mod model;
mod size;
mod validate;

pub use board::{Board, BoardDevice, MemoryRegion, NIC};
pub use images::{Image, ImageFile, load_images};
pub use linux::{GATEWAY_PARAMETER, IP_PARAMETER, LinuxParts};
pub use model::{
    Cap, CapKind, ImageSource, Kind, LinuxBoot, Location, Partition, Queue, RestartBudget,
    Supervision, System, Window,
};
pub use septum_core::abi::{CapType, Rights, TrapAction, TrapClass};
pub use size::parse_size;
pub use validate::RULES;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One broken rule, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptionError {
    /// The description file.
    pub file: PathBuf,
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// The rule's stable identifier (listed in the README).
    pub rule: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {}",
            self.file.display(),
            self.line,
            self.column,
            self.rule,
            self.message
        )
    }
}

/// All errors of one description, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptionErrors(pub Vec<DescriptionError>);

/// Most errors shown, one a line, before the rest are counted.
pub const ERRORS_SHOWN: usize = 100;

impl fmt::Display for DescriptionErrors {
    /// One error a line, the first [`ERRORS_SHOWN`] of them, then how many more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().take(ERRORS_SHOWN).enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        if let Some(more) = self.0.len().checked_sub(ERRORS_SHOWN).filter(|&n| n > 0) {
            write!(f, "\n... and {more} more errors")?;
        }
        Ok(())
    }
}

impl std::error::Error for DescriptionErrors {}

/// Longest description read: 1 MiB, hundreds of times a full system's.
pub const DESCRIPTION_MAX: u64 = 1 << 20;

/// Reads and validates the description at `path` for `board`. A file that is not
/// a regular file, or is longer than [`DESCRIPTION_MAX`], is refused (rule
/// `file`) without reading it.
pub fn load(path: &Path, board: &Board) -> Result<System, DescriptionErrors> {
    let refuse = |message: String| {
        DescriptionErrors(vec![DescriptionError {
            file: path.to_owned(),
            line: 1,
            column: 1,
            rule: "file",
            message,
        }])
    };
    let (file, len) = open_regular(path).map_err(&refuse)?;
    if len > DESCRIPTION_MAX {
        return Err(refuse(format!(
            "the file is {len} bytes; a description is at most {DESCRIPTION_MAX}"
        )));
    }
    let mut text = String::new();
    file.take(DESCRIPTION_MAX)
        .read_to_string(&mut text)
        .map_err(|e| refuse(format!("cannot read the file: {e}")))?;
    parse(path, &text, board)
}

/// Opens `path` if it is a regular file (not a device, pipe or folder, which
/// could be endless or block) and returns it with its length.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), String> {
    let cannot = |e: std::io::Error| format!("cannot read the file: {e}");
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err("not a regular file".into());
    }
    let file = File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    Ok((file, metadata.len()))
}

/// Validates description `text`, which came from `path`, for `board`.
pub fn parse(path: &Path, text: &str, board: &Board) -> Result<System, DescriptionErrors> {
    let locate = Locator::new(path, text);
    let file: format::SystemFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        DescriptionErrors(vec![locate.error(
            span,
            "syntax",
            e.message().trim().to_owned(),
        )])
    })?;
    validate::validate(file, board, &locate)
}

/// Turns byte offsets of the source into file positions, each in time
/// logarithmic in the file's length (so that locating many errors, even on one
/// long line, stays fast).
pub(crate) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// Byte offsets of the UTF-8 continuation bytes (those that start no
    /// character), so that columns count characters.
    continuations: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(path: &'a Path, text: &'a str) -> Locator<'a> {
        let breaks = text.match_indices('\n').map(|(at, _)| at + 1);
        let bytes = text.bytes().enumerate();
        Locator {
            path,
            text,
            line_starts: std::iter::once(0).chain(breaks).collect(),
            continuations: bytes
                .filter(|&(_, b)| b & 0xc0 == 0x80)
                .map(|(at, _)| at)
                .collect(),
        }
    }

    pub(crate) fn error(
        &self,
        span: std::ops::Range<usize>,
        rule: &'static str,
        message: String,
    ) -> DescriptionError {
        let Location { line, column } = self.location(span);
        DescriptionError {
            file: self.path.to_owned(),
            line,
            column,
            rule,
            message,
        }
    }

    /// Where the text at `span` starts.
    pub(crate) fn location(&self, span: std::ops::Range<usize>) -> Location {
        let at = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= at);
        let start = self.line_starts[line - 1];
        let continuations = self.continuations.partition_point(|&c| c < at)
            - self.continuations.partition_point(|&c| c < start);
        let column = at - start - continuations + 1;
        Location { line, column }
    }
}
