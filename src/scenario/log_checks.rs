//! The scenario checks that read the kernel's log channel (QEMU boards): the
//! decoded log's messages ([`Scenario::log_expect`]), the trace the kernel sent
//! at shutdown ([`Scenario::trace_expect`]), and whether the `@@` lines are the
//! same without the channel ([`Scenario::same_without_log_channel`]).

use anyhow::Result;
use std::path::Path;

use super::Scenario;
use crate::boards::Board;
use crate::emulator::{self, RunOptions, RunOutput};

/// Adds a failure to `failures` for the first of `wanted` that no item of
/// `found` after the previous one's contains.
fn in_order(wanted: &[String], found: &[&str], what: &str, failures: &mut Vec<String>) {
    let mut from = 0;
    for text in wanted {
        match found[from..]
            .iter()
            .position(|item| item.contains(text.as_str()))
        {
            Some(at) => from += at + 1,
            None => {
                failures.push(format!("missing in the {what} (in order): `{text}`"));
                return;
            }
        }
    }
}

/// Keys of `@@` lines whose values depend on timing (how long boot took, how
/// late a watchdog was seen, how often a lock was taken).
const TIMING_KEYS: [&str; 4] = ["us", "late_us", "taken", "contended"];

/// The kernel's `@@` lines of `console`, with the values of [`TIMING_KEYS`]
/// replaced by `*`.
pub fn structured_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|line| line.starts_with("@@ "))
        .map(|line| {
            let words = line.split(' ').map(|word| match word.split_once('=') {
                Some((key, _)) if TIMING_KEYS.contains(&key) => format!("{key}=*"),
                _ => word.to_owned(),
            });
            words.collect::<Vec<_>>().join(" ")
        })
        .collect()
}

impl Scenario {
    /// Every way the kernel's log captured at `log` falls short of
    /// [`Scenario::log_expect`] and [`Scenario::trace_expect`] (nothing if
    /// neither asks anything), including a log that does not decode or a trace
    /// whose switches do not match.
    pub(super) fn check_log(
        &self,
        board: &Board,
        log: &Path,
        partitions: Vec<String>,
    ) -> Vec<String> {
        if self.log_expect.is_empty() && self.trace_expect.is_empty() {
            return Vec::new();
        }
        self.read_log(board, log, partitions)
            .unwrap_or_else(|error| vec![format!("kernel log: {error:#}")])
    }

    /// Boots the image at `image` again as `options` say but without the log
    /// channel: a failure if the `@@` lines differ from `output`'s.
    pub(super) fn compare_without_log_channel(
        &self,
        board: &Board,
        image: &Path,
        options: &RunOptions,
        output: &RunOutput,
    ) -> Result<Option<String>> {
        let without = RunOptions {
            log: None,
            ..options.clone()
        };
        let quiet = emulator::run_captured(board, image, &without)?;
        let (with, without) = (
            structured_lines(&output.console),
            structured_lines(&quiet.console),
        );
        Ok((with != without).then(|| {
            format!(
                "the `@@` lines differ without the log channel:\n--- with ---\n{}\n--- without ---\n{}",
                with.join("\n"),
                without.join("\n")
            )
        }))
    }

    fn read_log(&self, board: &Board, log: &Path, partitions: Vec<String>) -> Result<Vec<String>> {
        let log = crate::kernel_log::decode_file(&crate::boards::kernel_elf(board)?, log)?;
        let mut failures = Vec::new();
        let messages: Vec<&str> = log.lines.iter().map(|l| l.message.as_str()).collect();
        in_order(&self.log_expect, &messages, "kernel log", &mut failures);
        if !self.trace_expect.is_empty() {
            let timeline = crate::timeline::Timeline::build(&log.trace()?, partitions)?;
            let mut marks: Vec<(u64, String)> = timeline
                .marks
                .iter()
                .filter(|m| m.kind == septum_core::trace::Kind::Supervision)
                .filter_map(|m| {
                    let name = timeline.partition_name(m.partition?);
                    Some((m.time_us, format!("{name} {}", m.name)))
                })
                .collect();
            marks.sort();
            let marks: Vec<&str> = marks.iter().map(|(_, mark)| mark.as_str()).collect();
            in_order(&self.trace_expect, &marks, "kernel trace", &mut failures);
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-AUD-010
    #[test]
    fn structured_lines_keep_the_kernel_lines_without_their_timing_values() {
        let console = "@@ kernel running partitions=3 us=1234\n[g] us=5\n\
                       @@ kernel locks cpu=0 taken=88 contended=0\n@@ kernel shutdown status=ok code=0\n";
        assert_eq!(
            structured_lines(console),
            [
                "@@ kernel running partitions=3 us=*",
                "@@ kernel locks cpu=0 taken=* contended=*",
                "@@ kernel shutdown status=ok code=0",
            ]
        );
    }
}
