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
//! Invariant: a [`System`] can only be obtained through [`load`] (or
//! [`parse`]), so code that receives one may rely on every rule.

mod board;
mod format;
pub mod limits;
mod model;
mod size;
mod validate;

pub use board::{Board, BoardDevice, MemoryRegion};
pub use model::{
    Cap, CapKind, ImageSource, Kind, Partition, Queue, RestartBudget, Right, Supervision, System,
    TrapAction, TrapClass, Window,
};
pub use size::parse_size;
pub use validate::RULES;

use std::fmt;
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

impl fmt::Display for DescriptionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DescriptionErrors {}

/// Reads and validates the description at `path` for `board`.
pub fn load(path: &Path, board: &Board) -> Result<System, DescriptionErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DescriptionErrors(vec![DescriptionError {
            file: path.to_owned(),
            line: 1,
            column: 1,
            rule: "file",
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse(path, &text, board)
}

/// Validates description `text`, which came from `path`, for `board`.
pub fn parse(path: &Path, text: &str, board: &Board) -> Result<System, DescriptionErrors> {
    let locate = Locator { path, text };
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

/// Turns byte offsets of the source into file positions.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    pub(crate) fn error(
        &self,
        span: std::ops::Range<usize>,
        rule: &'static str,
        message: String,
    ) -> DescriptionError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        DescriptionError {
            file: self.path.to_owned(),
            line,
            column,
            rule,
            message,
        }
    }
}
