//! Running an image on an emulator: with a hard timeout and the console captured
//! (tests, benchmarks), or attached to the terminal (the demo). QEMU runs the
//! aarch64 boards; Bochs runs the PC, because it emulates VT-x.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

use crate::boards::Board;
use septum_description::parse_size;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// RAM size for the emulator, such as `1G`.
    pub ram: String,
    /// QEMU only: run with `-icount shift=0,align=off,sleep=off`, so virtual time
    /// advances one nanosecond per instruction and timings are deterministic. (Bochs
    /// runs are deterministic anyway with `clock: sync=none`.)
    pub icount: bool,
    /// Kill the emulator after this long.
    pub timeout: Duration,
    /// CPU cores to emulate (QEMU's `-smp`); the board's default if `None`.
    pub cpus: Option<u32>,
}

/// What a captured run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Everything written to the console, with `\r` removed.
    pub console: String,
    /// The emulator's exit status; `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// Errors the emulator logged about the guest's use of the hardware (for Bochs:
    /// failed VMX instructions and VM entries).
    pub emulator_errors: Vec<String>,
}

/// Runs `image` with the console captured, killing the emulator at the timeout.
pub fn run_captured(board: &Board, image: &Path, options: &RunOptions) -> Result<RunOutput> {
    match board.emulator.as_str() {
        "bochs" => bochs(board, image, options, false),
        _ => qemu_captured(board, image, options),
    }
}

/// Runs `image` with the console on this terminal until the emulator exits.
/// Returns whether the system shut down cleanly: QEMU's exit status (PSCI
/// SYSTEM_OFF exits with 0), or for Bochs, which always exits with 1 on power-off,
/// the kernel's `@@ kernel shutdown status=ok` line.
pub fn run_interactive(board: &Board, image: &Path, options: &RunOptions) -> Result<bool> {
    match board.emulator.as_str() {
        "bochs" => {
            let output = bochs(board, image, options, true)?;
            Ok(output.console.contains("@@ kernel shutdown status=ok"))
        }
        _ => Ok(qemu_command(board, image, options)
            .arg("-nographic")
            .status()
            .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))?
            .success()),
    }
}

fn qemu_command(board: &Board, image: &Path, options: &RunOptions) -> Command {
    let mut command = Command::new(&board.emulator);
    command
        .args(&board.machine)
        .args(["-m", &options.ram, "-no-reboot", "-kernel"])
        .arg(image);
    if options.icount {
        command.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    if let Some(cpus) = options.cpus {
        command.args(["-smp", &cpus.to_string()]);
    }
    command
}

fn qemu_captured(board: &Board, image: &Path, options: &RunOptions) -> Result<RunOutput> {
    let mut child = qemu_command(board, image, options)
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
    let status = wait_or_kill(&mut child, options.timeout)?;
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
    Ok(RunOutput {
        console,
        status,
        emulator_errors: Vec::new(),
    })
}

fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    Ok(match child.wait_timeout(timeout)? {
        Some(status) => Some(status),
        None => {
            child.kill()?;
            child.wait()?;
            None
        }
    })
}

/// Lines of bochs.log that report a failed VMX instruction or VM entry.
const BOCHS_VMX_ERRORS: [&str; 2] = ["VMFAIL", "VMENTER FAIL"];

/// Boots the ISO `image` under Bochs. The console goes to a file (captured) or to
/// this terminal (`interactive`). Bochs exits with status 1 when the kernel powers
/// off, so runs are judged by their console, not by that status.
fn bochs(
    board: &Board,
    image: &Path,
    options: &RunOptions,
    interactive: bool,
) -> Result<RunOutput> {
    let work = image.with_extension("bochs");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let serial = work.join("serial.log");
    let log = work.join("bochs.log");
    let megabytes = parse_size(&options.ram).map_err(anyhow::Error::msg)? >> 20;
    let mut rc = board.machine.join("\n");
    rc.push_str(&format!(
        "\nmegs: {megabytes}\nata0-master: type=cdrom, path={}, status=inserted\n\
         com1: enabled=1, mode=file, dev={}\nlog: {}\n",
        image.display(),
        serial.display(),
        log.display()
    ));
    std::fs::write(work.join("bochsrc"), rc)?;
    // This Bochs has its debugger built in: `c` makes it run instead of prompting.
    std::fs::write(work.join("commands"), "c\n")?;
    let mut command = Command::new(&board.emulator);
    command
        .current_dir(&work)
        .args(["-q", "-f", "bochsrc", "-rc", "commands"])
        .env("SDL_VIDEODRIVER", "dummy")
        .env("SDL_AUDIODRIVER", "dummy")
        .stdin(Stdio::null());
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))?;
    let status = if interactive {
        Some(echo_while_running(&mut child, &serial)?)
    } else {
        wait_or_kill(&mut child, options.timeout)?
    };
    let console = std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .replace('\r', "");
    let emulator_errors: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|line| BOCHS_VMX_ERRORS.iter().any(|e| line.contains(e)))
        .map(str::to_owned)
        .collect();
    Ok(RunOutput {
        console,
        status,
        emulator_errors,
    })
}

/// Copies what the emulator writes to the `serial` file onto this terminal until the
/// emulator exits.
fn echo_while_running(child: &mut Child, serial: &Path) -> Result<ExitStatus> {
    use std::io::Write;
    let mut shown = 0;
    let mut show_new = || -> Result<()> {
        let bytes = std::fs::read(serial).unwrap_or_default();
        if bytes.len() > shown {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes[shown..])?;
            out.flush()?;
            shown = bytes.len();
        }
        Ok(())
    };
    loop {
        if let Some(status) = child.wait_timeout(Duration::from_millis(100))? {
            show_new()?;
            return Ok(status);
        }
        show_new()?;
    }
}
