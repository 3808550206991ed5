//! The host tool's commands over the kernel's log channel: `logs` prints a
//! run's kernel log, decoded ([`print_log`]); `trace-run` runs a system and
//! writes what the kernel did as a Perfetto trace and a picture ([`trace_run`]).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boards::{self, Board};
use crate::emulator::{self, RunOptions};
use crate::kernel_log::{self, Log};
use crate::timeline::Timeline;

/// Where `cargo run -- run` captures the kernel's log on `board`.
pub fn run_log(board: &Board) -> PathBuf {
    kernel_log::capture_path(&board.name, "run")
}

/// Decodes the kernel log captured at `file` (by default the last `run`'s on
/// `board`) and prints its frames, without the trace's frames.
pub fn print_log(board: &Board, file: Option<PathBuf>) -> Result<()> {
    let file = file.unwrap_or_else(|| run_log(board));
    let log = kernel_log::decode_file(&crate::boards::kernel_elf(board)?, &file)?;
    for line in log
        .lines
        .iter()
        .filter(|l| !l.message.starts_with("trace-"))
    {
        println!("{line}");
    }
    let trace_frames = log.lines.len()
        - log
            .lines
            .iter()
            .filter(|l| !l.message.starts_with("trace-"))
            .count();
    if trace_frames > 0 {
        println!("({trace_frames} trace frames left out: `cargo run -- trace-run` draws them)");
    }
    if log.malformed > 0 {
        println!("({} frames did not decode)", log.malformed);
    }
    Ok(())
}

/// Prints what [`trace_run`] wrote, and a summary of the timeline.
pub fn report(files: &TraceFiles) {
    let timeline = &files.timeline;
    println!(
        "{} runs and {} marks over {} µs on {} cores ({} records overwritten)",
        timeline.runs.len(),
        timeline.marks.len(),
        timeline.end_us - timeline.start_us,
        timeline.overwritten.len(),
        timeline.overwritten.iter().sum::<u64>()
    );
    println!(
        "wrote {} (open it in https://ui.perfetto.dev), {} and {}",
        files.json.display(),
        files.svg.display(),
        files.records.display()
    );
}

/// The files `trace-run` wrote.
#[derive(Debug)]
pub struct TraceFiles {
    /// The Perfetto trace (Chrome trace-event JSON).
    pub json: PathBuf,
    /// The picture.
    pub svg: PathBuf,
    /// The records the picture was drawn from.
    pub records: PathBuf,
    /// The timeline they show.
    pub timeline: Timeline,
}

/// Boots `system` on `board` (for `for_s` seconds, then a clean shutdown; or,
/// without it, until it shuts down on its own), and writes the kernel's trace
/// of it to `output` (by default `target/trace-run/<board>/<system>.json`) with the
/// picture beside it (`.svg`).
pub fn trace_run(
    board: &Board,
    system: &Path,
    for_s: Option<u64>,
    output: Option<PathBuf>,
) -> Result<TraceFiles> {
    let description = boards::load_system(system, board)?;
    let name = system
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("system");
    let image = crate::scenario::build_image(board, &description, name, "")?;
    let log_file = kernel_log::capture_path(&board.name, &format!("trace-{name}"));
    let quit_after = for_s.map(Duration::from_secs);
    let options = RunOptions {
        ram: board.default_ram.clone(),
        icount: false,
        timeout: quit_after.unwrap_or(Duration::from_secs(120)) + Duration::from_secs(60),
        cpus: Some(boards::cpus_used(&description)).filter(|&cpus| cpus > 1),
        cpu_model: None,
        input: Vec::new(),
        kernel_args: None,
        outside: None,
        quit_after,
        log: Some(log_file.clone()),
    };
    if !emulator::run_timed(board, &image, &options)? {
        bail!("the system did not shut down cleanly: the kernel sends its trace only then");
    }
    let log = kernel_log::decode_file(&crate::boards::kernel_elf(board)?, &log_file)?;
    let partitions = description
        .boot_order()
        .map(|partition| partition.name.clone())
        .collect();
    let json = output.unwrap_or_else(|| {
        crate::from_root("target/trace-run")
            .join(&board.name)
            .join(format!("{name}.json"))
    });
    let title = format!("Septum trace: {name} on {}", board.name);
    write_trace(&log, partitions, &json, &title)
}

/// Writes the trace in `log` as `json`, with its picture (`.svg`) and the
/// records it was drawn from (`.records`, see [`crate::timeline::write_records`])
/// beside it.
pub fn write_trace(
    log: &Log,
    partitions: Vec<String>,
    json: &Path,
    title: &str,
) -> Result<TraceFiles> {
    let cores = log.trace()?;
    let records = crate::timeline::write_records(&cores, &partitions);
    let timeline = Timeline::build(&cores, partitions)?;
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let text = serde_json::to_string(&timeline.perfetto_json())?;
    std::fs::write(json, text).with_context(|| format!("writing {}", json.display()))?;
    let records_file = json.with_extension("records");
    std::fs::write(&records_file, records)
        .with_context(|| format!("writing {}", records_file.display()))?;
    let svg = json.with_extension("svg");
    std::fs::write(&svg, timeline.svg(title))
        .with_context(|| format!("writing {}", svg.display()))?;
    Ok(TraceFiles {
        json: json.to_path_buf(),
        svg,
        records: records_file,
        timeline,
    })
}
