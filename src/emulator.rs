//! Running an image on an emulator: with a hard timeout and the console captured
//! (tests, benchmarks), or attached to the terminal (the demo). QEMU runs the
//! aarch64 boards; Bochs runs the PC, because it emulates VT-x.
//!
//! The console goes both ways. A captured run can type scripted input into it, each
//! piece once the console has shown the text it waits for; an interactive run passes
//! what is typed on the terminal to the guest. QEMU's console is its standard input
//! and output (`-serial stdio`); Bochs' COM1 connects to a TCP socket on the loopback
//! interface that this tool listens on (`mode=socket-client`), because Bochs' `file`
//! mode only writes.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

use crate::boards::Board;
use crate::outside::OutsideHost;
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
    /// CPU cores to emulate (QEMU's `-smp`, the `count` of Bochs' `cpu:` line); the
    /// board's default if `None`.
    pub cpus: Option<u32>,
    /// Bochs only: the processor model of its `cpu:` line (such as
    /// `core2_penryn_t9600`, which has VT-x without EPT); the board's if `None`.
    pub cpu_model: Option<String>,
    /// What to type on the console, in order, in a captured run.
    pub input: Vec<ConsoleInput>,
    /// QEMU only: the kernel's command line (`-append`, which fills the device
    /// tree's `/chosen/bootargs`), if any. (The pc image carries its own, in
    /// GRUB's menu: see `scenario::build_image`.)
    pub kernel_args: Option<String>,
    /// QEMU only: give the board a NIC whose far side is a host of this tool at
    /// this address ([`OutsideHost`]), in a captured run.
    pub outside: Option<Ipv4Addr>,
    /// Type Ctrl-T and `shutdown` on the console this long after the start, so the
    /// service VM ends the system cleanly (`cargo run -- run --for`).
    pub quit_after: Option<Duration>,
    /// Capture the kernel's log channel into this file (see
    /// [`crate::kernel_log`]): under QEMU a second PL011 (QEMU's second
    /// `-serial`), without which the board has no second UART; under Bochs port
    /// 0xE9 (Bochs' standard output), dropped without it.
    pub log: Option<PathBuf>,
}

/// What [`RunOptions::quit_after`] types: the console escape, then the service
/// VM's `shutdown` command.
pub const QUIT: &str = "\u{14}shutdown\n";

/// Bytes to type on the console once it has shown some text.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleInput {
    /// The text to wait for. It must appear after the previous input's `after` text;
    /// the console is matched with its `\r` bytes removed.
    pub after: String,
    /// The bytes to type, all at once.
    pub send: String,
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
    /// How many of the run's [`RunOptions::input`] were typed: the rest waited for
    /// text that never appeared.
    pub input_sent: usize,
    /// The outside host's log ([`RunOptions::outside`]): one line per frame.
    pub outside: Vec<String>,
}

/// Runs `image` with the console captured, killing the emulator at the timeout.
pub fn run_captured(board: &Board, image: &Path, options: &RunOptions) -> Result<RunOutput> {
    match board.emulator.as_str() {
        "bochs" => bochs(board, image, options, false),
        _ => qemu_captured(board, image, options, false),
    }
}

/// Runs `image` with the console captured and copied to this terminal until the
/// emulator exits or [`RunOptions::timeout`] passes, typing [`QUIT`] once
/// [`RunOptions::quit_after`] has passed. Returns whether the system shut down
/// cleanly (the kernel's `@@ kernel shutdown status=ok` line, and for QEMU its exit
/// status).
pub fn run_timed(board: &Board, image: &Path, options: &RunOptions) -> Result<bool> {
    let output = match board.emulator.as_str() {
        "bochs" => bochs(board, image, options, false)?,
        _ => qemu_captured(board, image, options, true)?,
    };
    let clean = output.console.contains("@@ kernel shutdown status=ok");
    Ok(clean && (board.emulator == "bochs" || output.status.is_some_and(|s| s.success())))
}

/// The first line `cargo run -- run` prints: how the system ends (for `for_s`:
/// [`RunOptions::quit_after`]).
pub fn quit_hint(board: &Board, for_s: Option<u64>) -> String {
    let escape = if board.emulator == "bochs" {
        "Ctrl-C"
    } else {
        "Ctrl-A x"
    };
    match for_s {
        Some(seconds) => format!(
            "septum: {} runs for {seconds} s, then this tool types Ctrl-T and `shutdown` to end it",
            board.name
        ),
        None => format!(
            "septum: to quit, press Ctrl-T, type `shutdown` and press Enter (or {escape} to kill the emulator)",
        ),
    }
}

/// Runs `image` with the console on this terminal until the emulator exits; what is
/// typed goes to the guest. QEMU puts the terminal in raw mode and passes every key
/// on (Enter as `\r`; `Ctrl-A x` quits QEMU); for Bochs the terminal keeps its line
/// editing, and each line goes to the guest when Enter is pressed (ending in `\n`).
/// Returns whether the system shut down cleanly: QEMU's exit status (PSCI
/// SYSTEM_OFF exits with 0), or for Bochs, which always exits with 1 on power-off,
/// the kernel's `@@ kernel shutdown status=ok` line.
pub fn run_interactive(board: &Board, image: &Path, options: &RunOptions) -> Result<bool> {
    match board.emulator.as_str() {
        "bochs" => {
            let output = bochs(board, image, options, true)?;
            Ok(output.console.contains("@@ kernel shutdown status=ok"))
        }
        _ => Ok(qemu_command(board, image, options)?
            .args(["-nographic", "-serial", "mon:stdio"])
            .args(log_serial(options))
            .status()
            .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))?
            .success()),
    }
}

/// QEMU's second `-serial`, the kernel's log channel, if [`RunOptions::log`]
/// asks for it (its folder is made here).
fn log_serial(options: &RunOptions) -> Vec<String> {
    match &options.log {
        Some(path) => vec!["-serial".into(), format!("file:{}", path.display())],
        None => Vec::new(),
    }
}

fn qemu_command(board: &Board, image: &Path, options: &RunOptions) -> Result<Command> {
    if let Some(parent) = options.log.as_ref().and_then(|path| path.parent()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
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
    if let Some(tree) = &board.device_tree {
        command.arg("-dtb").arg(crate::from_root(tree));
    }
    let args: Vec<&str> = [board.kernel_args.as_deref(), options.kernel_args.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if !args.is_empty() {
        command.args(["-append", &args.join(" ")]);
    }
    Ok(command)
}

fn qemu_captured(
    board: &Board,
    image: &Path,
    options: &RunOptions,
    echo: bool,
) -> Result<RunOutput> {
    let outside = options.outside.map(OutsideHost::start).transpose()?;
    let mut command = qemu_command(board, image, options)?;
    if let Some(host) = &outside {
        command.args(host.qemu_options());
    }
    command.args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    command.args(log_serial(options));
    let mut output = captured(command, options, echo)?;
    output.outside = outside.map(OutsideHost::finish).unwrap_or_default();
    Ok(output)
}

/// Runs a QEMU `command` whose console is its standard input and output
/// (`-serial stdio`), killing it at the timeout, typing the run's input, and
/// copying the console to this terminal if `echo`.
pub(crate) fn captured(
    mut command: Command,
    options: &RunOptions,
    echo: bool,
) -> Result<RunOutput> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program} (run scripts/setup.sh)"))?;
    let output = child.stdout.take().expect("piped");
    let input = child.stdin.take().expect("piped");
    let script = options.input.clone();
    let quit = options.quit_after;
    let follower = std::thread::spawn(move || follow_console(output, input, &script, echo, quit));
    let status = wait_or_kill(&mut child, options.timeout)?;
    let followed = follower.join().expect("console follower");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let mut console = String::from_utf8_lossy(&followed.console).into_owned();
    if !stderr.trim().is_empty() {
        console.push_str("\n[emulator stderr] ");
        console.push_str(stderr.trim());
        console.push('\n');
    }
    Ok(RunOutput {
        console,
        status,
        emulator_errors: Vec::new(),
        input_sent: followed.input_sent,
        outside: Vec::new(),
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

/// A bochsrc line of the board, with the processor count set to `cpus` and the
/// processor model to `model` (each if given) in the `cpu:` line.
fn bochs_line(line: &str, cpus: Option<u32>, model: Option<&str>) -> String {
    let Some(options) = line.trim_start().strip_prefix("cpu:") else {
        return line.to_owned();
    };
    if cpus.is_none() && model.is_none() {
        return line.to_owned();
    }
    let replaced = [
        ("model=", model.map(str::to_owned)),
        ("count=", cpus.map(|cpus| cpus.to_string())),
    ];
    let mut options: Vec<String> = options
        .split(',')
        .map(|option| option.trim().to_owned())
        .filter(|option| {
            !replaced
                .iter()
                .any(|(key, value)| value.is_some() && option.starts_with(key))
        })
        .collect();
    for (key, value) in replaced {
        if let Some(value) = value {
            options.push(format!("{key}{value}"));
        }
    }
    format!("cpu: {}", options.join(", "))
}

/// Boots the ISO `image` under Bochs. Its COM1 connects to a socket this tool
/// listens on, which carries the console both ways. The console is captured, and
/// copied to this terminal if `interactive`, which also sends what is typed to the
/// guest. Bochs exits with status 1 when the kernel powers off, so runs are judged by
/// their console, not by that status.
fn bochs(
    board: &Board,
    image: &Path,
    options: &RunOptions,
    interactive: bool,
) -> Result<RunOutput> {
    let work = image.with_extension("bochs");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let log = work.join("bochs.log");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot listen for Bochs' COM1 on the loopback interface")?;
    let megabytes = parse_size(&options.ram).map_err(anyhow::Error::msg)? >> 20;
    // Without a log file the kernel finds no log channel: port 0xE9 reads as
    // nothing there.
    let mut rc = board
        .machine
        .iter()
        .filter(|line| options.log.is_some() || !line.starts_with("port_e9_hack"))
        .map(|line| bochs_line(line, options.cpus, options.cpu_model.as_deref()))
        .collect::<Vec<_>>()
        .join("\n");
    rc.push_str(&format!(
        "\nmegs: {megabytes}\nata0-master: type=cdrom, path={}, status=inserted\n\
         com1: enabled=1, mode=socket-client, dev={}\nlog: {}\n",
        image.display(),
        listener.local_addr()?,
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
    // Bochs writes what the kernel sends to port 0xE9 (its `port_e9_hack`) on
    // its standard output: the kernel's log channel.
    let log_channel = match &options.log {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )
        }
        None => Stdio::null(),
    };
    command.stdout(log_channel).stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} (run scripts/setup.sh)", board.emulator))?;
    let Some(console) = accept_console(&listener, &mut child, options.timeout)? else {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "Bochs did not connect its COM1 to the console socket (see {})",
            log.display()
        );
    };
    if interactive {
        forward_keyboard(console.try_clone()?);
    }
    let input = console.try_clone()?;
    let script = options.input.clone();
    let (echo, quit) = (
        interactive || options.quit_after.is_some(),
        options.quit_after,
    );
    let follower = std::thread::spawn(move || follow_console(console, input, &script, echo, quit));
    let status = if interactive {
        Some(child.wait()?)
    } else {
        wait_or_kill(
            &mut child,
            options.timeout.saturating_sub(started.elapsed()),
        )?
    };
    let followed = follower.join().expect("console follower");
    let emulator_errors: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|line| BOCHS_VMX_ERRORS.iter().any(|e| line.contains(e)))
        .map(str::to_owned)
        .collect();
    Ok(RunOutput {
        console: String::from_utf8_lossy(&followed.console).into_owned(),
        status,
        emulator_errors,
        input_sent: followed.input_sent,
        outside: Vec::new(),
    })
}

/// Waits for Bochs to connect to `listener` (it does so as it starts, before the
/// guest runs). `None` if Bochs exits or `timeout` passes first.
fn accept_console(
    listener: &TcpListener,
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<TcpStream>> {
    listener.set_nonblocking(true)?;
    let started = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(Some(stream));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if child.try_wait()?.is_some() || started.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends what is typed on this terminal to `console` until standard input closes
/// or the console does. The terminal stays in its normal mode, so a line goes when
/// Enter is pressed. The thread is left blocked on the terminal when the emulator
/// exits; it ends with this process.
fn forward_keyboard(mut console: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut console);
    });
}

/// What [`follow_console`] saw and did.
struct Followed {
    /// The console, with `\r` removed.
    console: Vec<u8>,
    /// How many scripted inputs were typed.
    input_sent: usize,
}

/// Reads the console from `output` until it closes, copying it to this terminal if
/// `echo`, and types each of `script`'s inputs into `input` once its trigger has
/// appeared, and [`QUIT`] once `quit_after` has passed (checked as output arrives:
/// a live system prints all the time). Once `input` refuses a write (the emulator
/// has gone), nothing more is typed.
fn follow_console(
    mut output: impl Read,
    mut input: impl Write,
    script: &[ConsoleInput],
    echo: bool,
    mut quit_after: Option<Duration>,
) -> Followed {
    let started = Instant::now();
    let mut console = Vec::new();
    let mut triggers = Triggers::new(script);
    let mut input_open = true;
    let mut input_sent = 0;
    let mut chunk = [0; 4096];
    loop {
        let read = match output.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if echo {
            let mut terminal = std::io::stdout().lock();
            let _ = terminal.write_all(&chunk[..read]);
            let _ = terminal.flush();
        }
        console.extend(chunk[..read].iter().filter(|&&byte| byte != b'\r'));
        for due in triggers.due(&console) {
            input_open = input_open
                && input
                    .write_all(due.send.as_bytes())
                    .and_then(|()| input.flush())
                    .is_ok();
            input_sent += usize::from(input_open);
        }
        if quit_after.is_some_and(|after| started.elapsed() >= after) {
            quit_after = None;
            input_open = input_open
                && input
                    .write_all(QUIT.as_bytes())
                    .and_then(|()| input.flush())
                    .is_ok();
        }
    }
    Followed {
        console,
        input_sent,
    }
}

/// Finds, as the console grows, the scripted inputs whose `after` text has appeared:
/// each one's text is searched for only after the previous one's.
struct Triggers<'a> {
    script: &'a [ConsoleInput],
    /// How many inputs have come due.
    fired: usize,
    /// Where in the console the next input's text may begin.
    search_from: usize,
}

impl<'a> Triggers<'a> {
    fn new(script: &'a [ConsoleInput]) -> Triggers<'a> {
        Triggers {
            script,
            fired: 0,
            search_from: 0,
        }
    }

    /// The inputs that come due now that the console reads `console` (everything so
    /// far), in order.
    fn due(&mut self, console: &[u8]) -> &'a [ConsoleInput] {
        let first = self.fired;
        while let Some(next) = self.script.get(self.fired) {
            let wanted = next.after.as_bytes();
            match find(&console[self.search_from..], wanted) {
                Some(at) => {
                    self.search_from += at + wanted.len();
                    self.fired += 1;
                }
                None => {
                    // The text may yet straddle what has come and what is to come.
                    let straddle = console.len().saturating_sub(wanted.len().saturating_sub(1));
                    self.search_from = self.search_from.max(straddle);
                    break;
                }
            }
        }
        &self.script[first..self.fired]
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(steps: &[(&str, &str)]) -> Vec<ConsoleInput> {
        steps
            .iter()
            .map(|&(after, send)| ConsoleInput {
                after: after.into(),
                send: send.into(),
            })
            .collect()
    }

    /// Hands out its bytes a few at a time, as a pipe or a socket does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = self.step.min(self.bytes.len()).min(buffer.len());
            buffer[..count].copy_from_slice(&self.bytes[..count]);
            self.bytes = &self.bytes[count..];
            Ok(count)
        }
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn a_core_count_and_a_model_replace_those_of_the_bochs_cpu_line_only() {
        let cpu = "cpu: model=corei7_skylake_x, count=1, ips=50000000";
        assert_eq!(bochs_line(cpu, None, None), cpu);
        assert_eq!(
            bochs_line(cpu, Some(2), None),
            "cpu: model=corei7_skylake_x, ips=50000000, count=2"
        );
        assert_eq!(
            bochs_line(cpu, None, Some("core2_penryn_t9600")),
            "cpu: count=1, ips=50000000, model=core2_penryn_t9600"
        );
        assert_eq!(
            bochs_line("cpu: model=x", Some(4), Some("y")),
            "cpu: model=y, count=4"
        );
        assert_eq!(bochs_line("megs: 256", Some(2), Some("y")), "megs: 256");
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn each_input_waits_for_its_text_after_the_previous_ones() {
        let inputs = script(&[("ready", "1"), ("ready", "2"), ("tick", "3")]);
        let mut triggers = Triggers::new(&inputs);
        assert!(triggers.due(b"boot\nrea").is_empty());
        // The first trigger straddles two reads; the second needs a later `ready`.
        assert_eq!(triggers.due(b"boot\nready\ntick\n"), &inputs[..1]);
        assert!(triggers.due(b"boot\nready\ntick\n").is_empty());
        assert_eq!(
            triggers.due(b"boot\nready\ntick\nready again\ntick\n"),
            &inputs[1..]
        );
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn the_follower_types_each_input_once_and_keeps_the_console_without_cr() {
        let inputs = script(&[("ready", "\u{14}list\n"), ("> ", "stop\n"), ("never", "x")]);
        for step in [1, 2, 3, 4096] {
            let output = Trickle {
                bytes: b"boot\r\nservice ready\r\n> \r\nbye\r\n",
                step,
            };
            let mut typed = Vec::new();
            let followed = follow_console(output, &mut typed, &inputs, false, None);
            assert_eq!(followed.console, b"boot\nservice ready\n> \nbye\n");
            assert_eq!(typed, b"\x14list\nstop\n", "reads of {step} bytes");
            assert_eq!(followed.input_sent, 2);
        }
    }

    /// Verifies: SK-HM-006
    #[test]
    fn a_timed_run_types_the_quit_command_once_its_time_has_passed() {
        let console = || Trickle {
            bytes: b"boot\r\ntick\r\ntick\r\n",
            step: 5,
        };
        let mut typed = Vec::new();
        follow_console(console(), &mut typed, &[], false, Some(Duration::ZERO));
        assert_eq!(typed, QUIT.as_bytes(), "typed once, at the first output");
        let mut typed = Vec::new();
        follow_console(
            console(),
            &mut typed,
            &[],
            false,
            Some(Duration::from_secs(3600)),
        );
        assert!(typed.is_empty(), "not before its time");
    }
}
