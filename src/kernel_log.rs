//! The kernel's log channel on the host: the bytes an emulator captured from it
//! (see `septum_kernel::log` for the kernel's side) decoded with `defmt-decoder`
//! against the kernel's ELF, whose `.defmt` section holds the format strings.
//!
//! The same frames carry the kernel's trace, sent when the system ends: per
//! core a `trace-ring` frame with its counts, then `trace-records` frames with
//! the ring's records in their wire form (`septum_core::trace::Record`), which
//! [`Log::trace`] collects.

use anyhow::{Context, Result, bail};
use defmt_decoder::{DecodeError, Table};
use std::path::{Path, PathBuf};

use septum_core::trace::{RECORD_BYTES, Record};

/// Where a run's log channel is captured: `target/logs/<board>/<name>.defmt`.
pub fn capture_path(board: &str, name: &str) -> PathBuf {
    crate::from_root("target/logs")
        .join(board)
        .join(format!("{name}.defmt"))
}

/// One decoded log frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its timestamp as the kernel's format shows it (µs on the kernel's clock).
    pub timestamp: String,
    /// `INFO`, `WARN`, `ERROR` (or empty for a frame without a level).
    pub level: String,
    /// The message with its arguments.
    pub message: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:<5} {}", self.timestamp, self.level, self.message)
    }
}

/// A decoded log: its frames, in order, and whether bytes were left over (a
/// frame cut off when the emulator stopped).
#[derive(Debug)]
pub struct Log {
    /// The frames.
    pub lines: Vec<Line>,
    /// Frames that did not decode (a torn frame at the end, or a log from
    /// another build of the kernel).
    pub malformed: usize,
}

/// One core's trace ring as the kernel sent it.
#[derive(Debug, Default)]
pub struct CoreTrace {
    /// Records the ring held.
    pub held: usize,
    /// Records overwritten before the end.
    pub overwritten: u64,
    /// The records, oldest first.
    pub records: Vec<Record>,
}

/// Decodes `bytes` captured from the log channel of the kernel built as `elf`
/// (from defmt's first frame separator on).
pub fn decode(elf: &Path, bytes: &[u8]) -> Result<Log> {
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let table = Table::parse(&elf_bytes)
        .with_context(|| format!("reading the defmt table of {}", elf.display()))?
        .with_context(|| format!("{} has no .defmt section", elf.display()))?;
    // The kernel's first byte is defmt's frame separator: what comes before it
    // is not the kernel's (Bochs prints its banner on the same stream).
    let start = bytes.iter().position(|&byte| byte == 0).unwrap_or(0);
    let mut decoder = table.new_stream_decoder();
    decoder.received(&bytes[start..]);
    let mut log = Log {
        lines: Vec::new(),
        malformed: 0,
    };
    loop {
        match decoder.decode() {
            Ok(frame) => log.lines.push(Line {
                timestamp: frame
                    .display_timestamp()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                level: frame
                    .level()
                    .map(|level| level.as_str().to_uppercase())
                    .unwrap_or_default(),
                message: frame.display_message().to_string(),
            }),
            Err(DecodeError::UnexpectedEof) => break,
            Err(DecodeError::Malformed) if table.encoding().can_recover() => log.malformed += 1,
            Err(DecodeError::Malformed) => {
                log.malformed += 1;
                break;
            }
        }
    }
    Ok(log)
}

/// Decodes the log file at `path` (see [`decode`]).
pub fn decode_file(elf: &Path, path: &Path) -> Result<Log> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the captured log {} (run a system first)",
            path.display()
        )
    })?;
    decode(elf, &bytes)
}

impl Log {
    /// The trace the kernel sent at the end, by core; empty if it sent none
    /// (the run did not end cleanly).
    pub fn trace(&self) -> Result<Vec<CoreTrace>> {
        let mut cores: Vec<CoreTrace> = Vec::new();
        for line in &self.lines {
            if let Some(rest) = line.message.strip_prefix("trace-ring ") {
                let cpu: usize = value(rest, "cpu")?;
                if cores.len() <= cpu {
                    cores.resize_with(cpu + 1, CoreTrace::default);
                }
                cores[cpu].held = value(rest, "held")?;
                cores[cpu].overwritten = value(rest, "overwritten")?;
            } else if let Some(rest) = line.message.strip_prefix("trace-records ") {
                let cpu: usize = value(rest, "cpu")?;
                let bytes = byte_list(rest)?;
                let core = cores
                    .get_mut(cpu)
                    .with_context(|| format!("records of core {cpu} before its ring's counts"))?;
                for chunk in bytes.chunks(RECORD_BYTES) {
                    let record = Record::decode(chunk)
                        .map_err(|e| anyhow::anyhow!("bad trace record on core {cpu}: {e:?}"))?;
                    core.records.push(record);
                }
            }
        }
        for (cpu, core) in cores.iter().enumerate() {
            if core.records.len() != core.held {
                bail!(
                    "core {cpu}: the ring held {} records, {} arrived",
                    core.held,
                    core.records.len()
                );
            }
        }
        Ok(cores)
    }
}

/// The number after `key=` in `text`.
fn value<T: std::str::FromStr>(text: &str, key: &str) -> Result<T> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("no `{key}=<number>` in `{text}`"))
}

/// The bytes of the `[1, 2, ...]` list in `text` (defmt's display of `[u8]`).
fn byte_list(text: &str) -> Result<Vec<u8>> {
    let start = text.find('[').context("no byte list")?;
    let end = text.rfind(']').context("no end of the byte list")?;
    text[start + 1..end]
        .split(',')
        .map(|byte| byte.trim().parse().context("a byte of the list"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-AUD-011
    #[test]
    fn a_trace_frame_gives_its_core_counts_and_records() {
        let record = Record {
            time_us: 7,
            kind: septum_core::trace::Kind::Enter,
            partition: 1,
            vcpu: 1,
            code: 0,
            value: 0,
        };
        let list: Vec<String> = record.encode().iter().map(u8::to_string).collect();
        let line = |message: String| Line {
            timestamp: String::new(),
            level: "INFO".into(),
            message,
        };
        let log = Log {
            lines: vec![
                line("trace-ring cpu=0 held=1 overwritten=3".into()),
                line(format!("trace-records cpu=0 [{}]", list.join(", "))),
            ],
            malformed: 0,
        };
        let cores = log.trace().expect("a well-formed trace");
        assert_eq!(cores.len(), 1);
        assert_eq!((cores[0].held, cores[0].overwritten), (1, 3));
        assert_eq!(cores[0].records, vec![record]);
        let short = Log {
            lines: vec![line("trace-ring cpu=0 held=2 overwritten=0".into())],
            malformed: 0,
        };
        assert!(
            short.trace().is_err(),
            "a ring whose records did not all arrive"
        );
    }
}
