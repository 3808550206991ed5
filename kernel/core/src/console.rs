//! Guest console output: turns the bytes a partition writes into whole, prefixed,
//! printable lines; and the kernel's buffer of lines waiting for the UART
//! ([`output`]).
//!
//! Invariants:
//! - every line printed on behalf of a partition starts with `[<name>] `, so a guest
//!   can never forge a kernel `@@` line or another partition's output;
//! - only printable ASCII reaches the console; any other byte is shown as `\xNN`, so a
//!   guest cannot send terminal control sequences;
//! - a line longer than [`LINE_MAX`] bytes is split, never truncated.

use core::fmt;

pub mod output;

/// The longest line body (after the prefix) the kernel prints in one piece.
pub const LINE_MAX: usize = 120;

/// Collects one partition's output until a newline arrives.
#[derive(Debug, Default)]
pub struct LineBuffer {
    line: heapless::String<LINE_MAX>,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            line: heapless::String::new(),
        }
    }

    /// Adds `data` written by partition `name`, printing each line it completes.
    pub fn write(
        &mut self,
        name: impl fmt::Display + Copy,
        data: &[u8],
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        for &byte in data {
            match byte {
                b'\n' => self.flush(name, out)?,
                b'\r' => {}
                b' '..=b'~' | b'\t' => self.push_char(name, byte as char, out)?,
                _ => {
                    let mut escaped = heapless::String::<4>::new();
                    fmt::write(&mut escaped, format_args!("\\x{byte:02x}"))?;
                    for c in escaped.chars() {
                        self.push_char(name, c, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Prints whatever is buffered as a line of its own (used when the partition
    /// stops with a line unfinished). Prints nothing if the buffer is empty.
    pub fn flush(&mut self, name: impl fmt::Display, out: &mut impl fmt::Write) -> fmt::Result {
        if self.line.is_empty() {
            return Ok(());
        }
        let result = writeln!(out, "[{name}] {}", self.line);
        self.line.clear();
        result
    }

    /// Forgets a partial line without printing it (used when a partition restarts).
    pub fn clear(&mut self) {
        self.line.clear();
    }

    fn push_char(
        &mut self,
        name: impl fmt::Display,
        c: char,
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        if self.line.push(c).is_err() {
            self.flush(name, out)?;
            // The buffer is empty after a flush, so one char always fits.
            let _ = self.line.push(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> String {
        let mut buffer = LineBuffer::new();
        let mut out = String::new();
        for chunk in chunks {
            buffer.write("p", chunk, &mut out).unwrap();
        }
        buffer.flush("p", &mut out).unwrap();
        out
    }

    /// Verifies: SK-AUD-002
    #[test]
    fn lines_are_joined_across_writes_and_prefixed() {
        assert_eq!(
            run(&[b"hel", b"lo\nwor", b"ld\n"]),
            "[p] hello\n[p] world\n"
        );
    }

    /// Verifies: SK-AUD-002
    #[test]
    fn a_forged_marker_is_prefixed() {
        assert_eq!(
            run(&[b"@@ kernel shutdown status=ok\n"]),
            "[p] @@ kernel shutdown status=ok\n"
        );
    }

    /// Verifies: SK-AUD-002
    #[test]
    fn control_bytes_are_escaped() {
        assert_eq!(run(&[b"a\x1b[2Jb\r\n"]), "[p] a\\x1b[2Jb\n");
    }

    /// Verifies: SK-AUD-002
    #[test]
    fn long_lines_are_split_not_lost() {
        let long = [b'x'; LINE_MAX + 5];
        let out = run(&[&long]);
        let expected = format!("[p] {}\n[p] {}\n", "x".repeat(LINE_MAX), "xxxxx");
        assert_eq!(out, expected);
    }

    proptest! {
        /// Whatever a guest writes, every printed line carries the prefix, holds only
        /// printable ASCII, and no byte of printable input is lost.
        /// Verifies: SK-AUD-002
        #[test]
        fn output_is_prefixed_printable_and_complete(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let out = run(&[&data]);
            for line in out.lines() {
                prop_assert!(line.starts_with("[p] "));
                prop_assert!(line.len() <= LINE_MAX + 4);
                prop_assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b) || b == b'\t'));
            }
            let printable_in = data.iter().filter(|b| (b' '..=b'~').contains(*b) || **b == b'\t').count();
            let body: usize = out.lines().map(|l| l.len() - 4).sum();
            prop_assert!(body >= printable_in);
        }
    }
}
