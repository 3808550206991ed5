//! Running an image on an emulator: with a hard timeout and the console captured
//! (tests, benchmarks), or attached to the terminal (the demo).

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

use crate::board::Board;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// RAM size for the emulator, such as `1G`.
    pub ram: String,
    /// Run with `-icount shift=0,align=off,sleep=off`: virtual time advances one
    /// nanosecond per instruction, so timings are deterministic.
    pub icount: bool,
    /// Kill the emulator after this long.
    pub timeout: Duration,
}

/// What a captured run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Everything written to the console, with `\r` removed.
    pub console: String,
    /// The emulator's exit status; `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
}

fn command(board: &Board, image: &Path, options: &RunOptions) -> Command {
    let mut command = Command::new(&board.emulator);
    command
        .args(&board.machine)
        .args(["-m", &options.ram, "-no-reboot", "-kernel"])
        .arg(image);
    if options.icount {
        command.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    command
}

/// Runs `image` with the console captured, killing the emulator at the timeout.
pub fn run_captured(board: &Board, image: &Path, options: &RunOptions) -> Result<RunOutput> {
    let mut child = command(board, image, options)
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let status = match child.wait_timeout(options.timeout)? {
        Some(status) => Some(status),
        None => {
            child.kill()?;
            child.wait()?;
            None
        }
    };
    let bytes = reader.join().expect("console reader");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let mut console = String::from_utf8_lossy(&bytes).replace('\r', "");
    if !stderr.trim().is_empty() {
        console.push_str("\n[emulator stderr] ");
        console.push_str(stderr.trim());
        console.push('\n');
    }
    Ok(RunOutput { console, status })
}

/// Runs `image` with the console on this terminal (`Ctrl-A x` quits QEMU).
pub fn run_interactive(board: &Board, image: &Path, options: &RunOptions) -> Result<ExitStatus> {
    command(board, image, options)
        .arg("-nographic")
        .status()
        .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))
}
