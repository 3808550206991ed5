//! Which console lines a scenario's expectations may count: only lines whose
//! source the kernel vouches for.
//!
//! The kernel writes every console line itself. Its own lines start with `@@ `;
//! every line a partition prints goes out whole, sanitised and prefixed with
//! `[<name>] ` (`septum_core::console`), so no partition can print a line that
//! starts with `@@ ` or with another partition's prefix. A pattern therefore names
//! its source the same way, and matches only a line from that source:
//!
//! - `@@ <text>`: a kernel line whose text after `@@ ` contains `<text>`;
//! - `[<name>] <text>`: a line of partition `<name>` whose text after the prefix
//!   contains `<text>`;
//! - anything else names no source and matches any line that contains it. Only
//!   `forbid` may use such patterns: a guest that prints one can make a run fail,
//!   never pass.

use std::fmt;

/// Who printed a console line, as its start says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// The kernel (`@@ `).
    Kernel,
    /// Partition `.0` (`[name] `).
    Partition(&'a str),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Kernel => f.write_str("@@"),
            Source::Partition(name) => write!(f, "[{name}]"),
        }
    }
}

/// Splits `text` into its source and the rest, if it starts with one.
pub fn split(text: &str) -> Option<(Source<'_>, &str)> {
    if let Some(rest) = text.strip_prefix("@@ ") {
        return Some((Source::Kernel, rest));
    }
    let inner = text.strip_prefix('[')?;
    let (name, rest) = inner.split_once("] ")?;
    let plain = !name.is_empty() && !name.contains(['[', ']', ' ']);
    plain.then_some((Source::Partition(name), rest))
}

/// A console text a scenario looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern<'a> {
    /// The source a matching line must have; `None`: any line.
    pub source: Option<Source<'a>>,
    /// Text the line must contain after its source.
    pub text: &'a str,
}

impl<'a> Pattern<'a> {
    /// Reads a pattern as the module documentation describes.
    pub fn parse(pattern: &'a str) -> Pattern<'a> {
        match split(pattern) {
            Some((source, text)) => Pattern {
                source: Some(source),
                text,
            },
            None => Pattern {
                source: None,
                text: pattern,
            },
        }
    }

    /// Whether console line `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        match self.source {
            None => line.contains(self.text),
            Some(source) => {
                split(line).is_some_and(|(from, rest)| from == source && rest.contains(self.text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-AUD-003
    #[test]
    fn sources_are_read_from_the_start_of_a_line_only() {
        assert_eq!(
            split("@@ kernel boot"),
            Some((Source::Kernel, "kernel boot"))
        );
        assert_eq!(
            split("[hello] hi"),
            Some((Source::Partition("hello"), "hi"))
        );
        assert_eq!(
            split("[hello] @@ kernel"),
            Some((Source::Partition("hello"), "@@ kernel"))
        );
        for none in [
            "@@kernel",
            " @@ kernel",
            "hello",
            "[] x",
            "[a b] x",
            "[a]x",
            "x [a] y",
        ] {
            assert_eq!(split(none), None, "{none}");
        }
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn a_pattern_matches_only_lines_of_its_own_source() {
        let kernel = Pattern::parse("@@ kernel panic");
        assert!(kernel.matches("@@ kernel panic"));
        assert!(!kernel.matches("[evil] @@ kernel panic"));
        assert!(!kernel.matches("[evil] x @@ kernel panic"));
        let guest = Pattern::parse("[victim] within=yes");
        assert!(guest.matches("[victim] share=400 within=yes"));
        assert!(!guest.matches("[evil] [victim] within=yes"));
        assert!(!guest.matches("[victim2] within=yes"));
        assert!(!guest.matches("@@ partition victim within=yes"));
        let anywhere = Pattern::parse("LEAKED");
        assert!(anywhere.matches("[evil] LEAKED"));
        assert!(!anywhere.matches("[evil] leaked"));
    }
}
