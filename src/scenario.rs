//! Test scenarios: a system, how to boot it, and what its console must (and must
//! not) say. Each scenario is a TOML file in `tests/scenarios/`.
//!
//! Expectations count only lines from the source they name: the kernel's own
//! (`@@ `) or one partition's (`[name] `), never text a guest printed inside its
//! own line (see [`crate::console_lines`]).
//!
//! Rules every scenario is judged by, beyond its own expectations:
//! - the run must end with the final marker (by default
//!   `@@ kernel shutdown status=ok`) as its last `@@` line, within the timeout;
//! - no kernel line `@@ kernel panic` may appear, unless the scenario injects a
//!   fault that must stop the kernel (`panics`): then it must be the last line;
//! - no guest activity (its output, or its start, fault, exit or denied call) may
//!   come before `@@ partition <service> ready`;
//! - every scripted input must have been typed (its trigger text appeared).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boards::{self, Board};
use crate::console_lines::Pattern;
use crate::emulator::{self, ConsoleInput, RunOptions, RunOutput};
use crate::pc_qemu::{self, Firmware};
use crate::{image, package};
use septum_description::{Kind, System};

mod log_checks;
pub use log_checks::structured_lines;

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name (its file stem); set by [`Scenario::load`].
    #[serde(skip)]
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// The requirements it verifies (`tests/requirements/`).
    #[serde(default)]
    pub verifies: Vec<String>,
    /// The board to boot.
    pub board: String,
    /// The system description, relative to the repository root.
    pub system: PathBuf,
    /// Emulator RAM; the board's default if absent.
    pub ram: Option<String>,
    /// Hard timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Boot arguments that replace the description's, by partition name.
    #[serde(default)]
    pub arguments: std::collections::BTreeMap<String, u64>,
    /// Run with deterministic virtual time (`-icount`).
    #[serde(default)]
    pub icount: bool,
    /// CPU cores to emulate (QEMU's `-smp`, Bochs' `count`); the board's default
    /// if absent.
    pub cpus: Option<u32>,
    /// The pc only: boot its image as a USB stick under QEMU with this firmware
    /// (`uefi` or `bios`) instead of under the board's emulator, to test the
    /// loader path; QEMU has no VT-x, so the kernel stops at
    /// `@@ kernel unsupported need=vt-x` (see [`crate::pc_qemu`]).
    pub firmware: Option<Firmware>,
    /// Bochs only: the processor model to emulate instead of the board's (such
    /// as `core2_penryn_t9600`, VT-x without EPT).
    pub cpu_model: Option<String>,
    /// Patterns that must match console lines, in this order. Each names the
    /// source of its line (`@@ ` or `[name] `, see [`crate::console_lines`]).
    #[serde(default)]
    pub expect: Vec<String>,
    /// Patterns that must match some console line, in any order (for lines whose
    /// order against the others depends on timing, such as another core's); each
    /// names its source.
    #[serde(default)]
    pub require: Vec<String>,
    /// Patterns that no console line may match; one that names no source matches
    /// text anywhere on any line.
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Numbers on console lines that must lie in a range (for counters whose
    /// exact value depends on timing), as in
    /// `numbers = [{ line = "@@ net b ", key = "received", min = 700 }]`.
    #[serde(default)]
    pub numbers: Vec<Number>,
    /// The last `@@` line must start with this.
    #[serde(default = "default_final")]
    pub final_marker: String,
    /// The kernel's command line (QEMU's `-append` on aarch64, GRUB's menu on the
    /// pc), such as `septum.self-test=stack-overflow` for a fault-injection
    /// self-test.
    pub kernel_args: Option<String>,
    /// The scenario injects a fault that must stop the kernel: its run ends with
    /// `@@ kernel panic` (which is then its final marker) instead of never
    /// showing it.
    #[serde(default)]
    pub panics: bool,
    /// A host on the far side of the board's NIC (QEMU boards): what it must
    /// see, from the harness's own log of the frames that reached it.
    pub outside: Option<Outside>,
    /// What to type on the console, in order: each `send` once the console shows
    /// its `after` text, after the previous one's, as in
    /// `input = [{ after = "@@ partition service ready", send = "\u0014list\n" }]`.
    #[serde(default)]
    pub input: Vec<ConsoleInput>,
    /// Boot the system a second time without the kernel's log channel, and fail
    /// if the kernel's `@@` lines differ (their timing values aside: see
    /// [`structured_lines`]): the channel changes nothing the tests read.
    #[serde(default)]
    pub same_without_log_channel: bool,
    /// Text the kernel's log must hold (QEMU boards: its log channel, decoded),
    /// each in a frame's message, in this order.
    #[serde(default)]
    pub log_expect: Vec<String>,
    /// Supervision events the kernel's trace (sent on the log channel at
    /// shutdown) must show, as `<partition> <event>` (such as `faulty restart
    /// gen=2`), in this order; the trace's switches must match on every core.
    #[serde(default)]
    pub trace_expect: Vec<String>,
}

/// The host beyond the uplink (`[outside]`): its address and the lines its log
/// must hold, in this order (each a substring of a line), or must not hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outside {
    /// Its IPv4 address.
    pub address: std::net::Ipv4Addr,
    /// Text its log's lines must contain, in this order.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Text no line of its log may contain.
    #[serde(default)]
    pub forbid: Vec<String>,
}

/// A number a console line must show (`numbers`): the value of `<key>=<n>` on
/// the last line that `line` matches, from `min` to `max`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Number {
    /// The line's pattern, naming its source as `expect`'s do.
    pub line: String,
    /// The key whose value is the number.
    pub key: String,
    /// Its least value.
    #[serde(default)]
    pub min: u64,
    /// Its greatest value, if it has one.
    pub max: Option<u64>,
}

impl Number {
    /// What is wrong with the number on `lines`, if anything.
    fn check(&self, lines: &[&str]) -> Option<String> {
        let key = &self.key;
        let wanted = Pattern::parse(&self.line);
        let Some(line) = lines.iter().rev().find(|line| wanted.matches(line)) else {
            return Some(format!("missing: `{}` (for its `{key}`)", self.line));
        };
        let value = line.split_whitespace().find_map(|word| {
            let value = word.strip_prefix(key.as_str())?.strip_prefix('=')?;
            value.parse::<u64>().ok()
        });
        let Some(value) = value else {
            return Some(format!("`{line}` has no `{key}=<number>`"));
        };
        let range = match self.max {
            Some(max) => format!("from {} to {max}", self.min),
            None => format!("at least {}", self.min),
        };
        (value < self.min || self.max.is_some_and(|max| value > max))
            .then(|| format!("`{line}`: {key}={value}, expected {range}"))
    }
}

/// The kernel's panic line, which fails every scenario.
const KERNEL_PANIC: &str = "@@ kernel panic";

fn default_timeout() -> u64 {
    60
}

fn default_final() -> String {
    "@@ kernel shutdown status=ok".into()
}

/// A finished scenario run.
#[derive(Debug)]
pub struct Outcome {
    /// The console.
    pub console: String,
    /// Problems found; empty if the scenario passed.
    pub failures: Vec<String>,
    /// Where the kernel's log channel was captured (QEMU boards).
    pub log: Option<PathBuf>,
}

/// Where a scenario's last run leaves its console (with the outside host's lines
/// marked `outside| `): `target/scenarios/<name>.log`, read by the figures
/// check and the evidence report.
pub fn console_log(root: &Path, name: &str) -> PathBuf {
    root.join("target/scenarios").join(format!("{name}.log"))
}

impl Scenario {
    /// Loads `tests/scenarios/<name>.toml`.
    pub fn load(name: &str) -> Result<Scenario> {
        let path = crate::from_root("tests/scenarios").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no scenario {}", path.display()))?;
        let mut scenario: Scenario =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        scenario.name = name.to_owned();
        scenario
            .check_sources()
            .with_context(|| path.display().to_string())?;
        Ok(scenario)
    }

    /// Refuses an `expect` or `require` pattern that names no source: any partition
    /// could print it, so a line matching it proves nothing.
    fn check_sources(&self) -> Result<()> {
        let numbers: Vec<String> = self.numbers.iter().map(|n| n.line.clone()).collect();
        for (key, patterns) in [
            ("expect", &self.expect),
            ("require", &self.require),
            ("numbers", &numbers),
        ] {
            if let Some(bare) = patterns.iter().find(|p| Pattern::parse(p).source.is_none()) {
                bail!(
                    "`{key}` pattern `{bare}` names no source: start it with `@@ ` (a kernel \
                     line) or `[name] ` (a line of partition `name`)"
                );
            }
        }
        Ok(())
    }

    /// Builds the image, boots it and checks the console.
    pub fn run(&self) -> Result<Outcome> {
        let board = boards::load(&self.board)?;
        let mut system = boards::load_system(&crate::from_root(&self.system), &board)?;
        for (name, argument) in &self.arguments {
            let partition = system
                .partitions
                .iter_mut()
                .find(|p| &p.name == name)
                .with_context(|| {
                    format!("scenario sets the argument of unknown partition `{name}`")
                })?;
            partition.argument = *argument;
        }
        let command_line = self.kernel_args.as_deref().unwrap_or("");
        let image_path = build_image(&board, &system, &self.name, command_line)?;
        let board = if board.sd_image {
            let tree = card_device_tree(&board, &self.name);
            Board {
                device_tree: Some(tree.to_string_lossy().into_owned()),
                ..board
            }
        } else {
            board
        };
        let options = RunOptions {
            ram: self
                .ram
                .clone()
                .unwrap_or_else(|| board.default_ram.clone()),
            icount: self.icount,
            timeout: Duration::from_secs(self.timeout_s),
            cpus: self.cpus,
            cpu_model: self.cpu_model.clone(),
            input: self.input.clone(),
            kernel_args: self.kernel_args.clone(),
            outside: self.outside.as_ref().map(|outside| outside.address),
            quit_after: None,
            log: Some(crate::kernel_log::capture_path(&board.name, &self.name)),
        };
        let output = match self.firmware {
            Some(firmware) => pc_qemu::run_from_usb(&board, firmware, &image_path, &options)?,
            None => emulator::run_captured(&board, &image_path, &options)?,
        };
        let service = system.boot_order().find(|p| p.kind == Kind::Service);
        let native = system.boot_order().find(|p| p.devirtualize);
        let mut failures = self.check_with(
            &output,
            service.map_or("service", |p| p.name.as_str()),
            native.map(|p| p.name.as_str()),
        );
        if self.same_without_log_channel {
            failures.extend(self.compare_without_log_channel(
                &board,
                &image_path,
                &options,
                &output,
            )?);
        }
        if let Err(error) = self.chart_memory(&output.console) {
            failures.push(format!("memory chart: {error:#}"));
        }
        if let Some(log) = &options.log {
            let partitions = system.boot_order().map(|p| p.name.clone()).collect();
            failures.extend(self.check_log(&board, log, partitions));
        }
        let mut console = output.console;
        for line in &output.outside {
            console.push_str(&format!("outside| {line}\n"));
        }
        let log = console_log(crate::repo_root(), &self.name);
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&log, &console).with_context(|| format!("writing {}", log.display()))?;
        Ok(Outcome {
            console,
            failures,
            log: options.log,
        })
    }

    /// Writes the memory the service VM printed over the run, if any, as
    /// `target/memory/<scenario>.csv` and a chart beside it (`.svg`).
    fn chart_memory(&self, console: &str) -> Result<()> {
        let samples = crate::memory_chart::parse_console(console);
        if samples.is_empty() {
            return Ok(());
        }
        let out = crate::from_root("target/memory");
        let csv = out.join(format!("{}.csv", self.name));
        crate::memory_chart::write_csv(&samples, &csv)?;
        let title = format!("memory over time: {}", self.name);
        crate::memory_chart::plot(&samples, &title, &csv.with_extension("svg"))
    }

    /// Every way `output` falls short of this scenario.
    pub fn check(&self, output: &RunOutput, service: &str) -> Vec<String> {
        self.check_with(output, service, None)
    }

    /// As [`Scenario::check`], for a system whose devirtualizable partition
    /// `native` starts natively before the service VM (and so may be active
    /// before the service VM is ready).
    pub fn check_with(
        &self,
        output: &RunOutput,
        service: &str,
        native: Option<&str>,
    ) -> Vec<String> {
        let lines: Vec<&str> = output.console.lines().collect();
        let mut failures: Vec<String> = output
            .emulator_errors
            .iter()
            .map(|e| format!("emulator reported: {e}"))
            .collect();
        if output.status.is_none() {
            failures.push(format!("timed out after {} s", self.timeout_s));
        }
        if let Some(unsent) = self.input.get(output.input_sent) {
            failures.push(format!(
                "input {} of {} not typed: the console never showed `{}` (after the inputs before it)",
                output.input_sent + 1,
                self.input.len(),
                unsent.after
            ));
        }
        let mut from = 0;
        for pattern in &self.expect {
            let wanted = Pattern::parse(pattern);
            match lines[from..].iter().position(|line| wanted.matches(line)) {
                Some(at) => from += at + 1,
                None => {
                    failures.push(format!("missing (in order): `{pattern}`"));
                    break;
                }
            }
        }
        for pattern in &self.require {
            let wanted = Pattern::parse(pattern);
            if !lines.iter().any(|line| wanted.matches(line)) {
                failures.push(format!("missing: `{pattern}`"));
            }
        }
        failures.extend(
            self.numbers
                .iter()
                .filter_map(|number| number.check(&lines)),
        );
        if let Some(outside) = &self.outside {
            failures.extend(outside.check(&output.outside));
        }
        let panic = (!self.panics).then_some(KERNEL_PANIC);
        for pattern in self.forbid.iter().map(String::as_str).chain(panic) {
            let unwanted = Pattern::parse(pattern);
            if let Some(line) = lines.iter().find(|line| unwanted.matches(line)) {
                failures.push(format!("forbidden `{pattern}` appeared: `{line}`"));
            }
        }
        let final_marker = if self.panics {
            KERNEL_PANIC
        } else {
            &self.final_marker
        };
        match lines.iter().rev().find(|line| line.starts_with("@@ ")) {
            Some(last) if last.starts_with(final_marker) => {}
            last => failures.push(format!(
                "last marker is {last:?}, expected `{final_marker}`"
            )),
        }
        let ready = format!("@@ partition {service} ready");
        let service_line = format!("[{service}] ");
        let service_marker = format!("@@ partition {service} ");
        let native_line = native.map(|name| format!("[{name}] "));
        let native_marker = native.map(|name| format!("@@ partition {name} "));
        let is_native = |line: &str| {
            native_line.as_deref().is_some_and(|l| line.starts_with(l))
                || native_marker
                    .as_deref()
                    .is_some_and(|m| line.starts_with(m))
        };
        // Guest activity: a guest's own output, or a kernel line about something a
        // guest did (the kernel's boot-time `placed` and `tables` lines and the
        // service VM's policy changes, which are about a guest, are not activity).
        let early_guest = lines
            .iter()
            .take_while(|line| !line.starts_with(&ready))
            .find(|line| {
                let guest_output = line.starts_with('[') && !line.starts_with(&service_line);
                let guest_event = line.starts_with("@@ partition ")
                    && !line.starts_with(&service_marker)
                    && !line.contains(" placed ")
                    && !line.contains(" tables ")
                    && !line.contains(" policy ");
                (guest_output || guest_event) && !is_native(line)
            });
        if let Some(line) = early_guest {
            failures.push(format!(
                "guest output before the service VM was ready: `{line}`"
            ));
        }
        failures
    }
}

impl Outside {
    /// Every way the outside host's `log` falls short.
    fn check(&self, log: &[String]) -> Vec<String> {
        let mut failures = Vec::new();
        let mut from = 0;
        for wanted in &self.expect {
            match log[from..]
                .iter()
                .position(|line| line.contains(wanted.as_str()))
            {
                Some(at) => from += at + 1,
                None => {
                    failures.push(format!("the outside host never saw (in order): `{wanted}`"));
                    break;
                }
            }
        }
        for unwanted in &self.forbid {
            if let Some(line) = log.iter().find(|line| line.contains(unwanted.as_str())) {
                failures.push(format!(
                    "the outside host saw forbidden `{unwanted}`: `{line}`"
                ));
            }
        }
        failures
    }
}

/// Builds the bootable image of `system` for `board` as
/// `target/systems/<board>/<name>.img`. The pc image carries the kernel's
/// `command_line` (GRUB's menu); on aarch64 QEMU passes it at run time.
pub fn build_image(
    board: &Board,
    system: &System,
    name: &str,
    command_line: &str,
) -> Result<PathBuf> {
    let spinner =
        crate::progress::spinner(&format!("building the image of {name} for {}", board.name));
    let package = package::build(system, board)?;
    let kernel = crate::boards::kernel_elf(board)?;
    let out_dir = crate::from_root("target/systems").join(&board.name);
    std::fs::create_dir_all(&out_dir)?;
    match board.arch.as_str() {
        "aarch64" if board.sd_image => {
            // What boots is what the SD card holds: the card is made, and its
            // kernel image and device tree are read back from it.
            let card = crate::sd_image::card(board, &image::arm64_image(&kernel, &package)?)?;
            let out = out_dir.join(format!("{name}.img"));
            write_atomically(
                &out,
                &crate::sd_image::read_file(&card, crate::sd_image::KERNEL_FILE)?,
            )?;
            write_atomically(
                &card_device_tree(board, name),
                &crate::sd_image::read_file(&card, crate::sd_image::DEVICE_TREE_FILE)?,
            )?;
            spinner.finish_and_clear();
            Ok(out)
        }
        "aarch64" => {
            let out = out_dir.join(format!("{name}.img"));
            write_atomically(&out, &image::arm64_image(&kernel, &package)?)?;
            spinner.finish_and_clear();
            Ok(out)
        }
        "x86_64" => {
            let out = out_dir.join(format!("{name}.iso"));
            image::grub_iso(&kernel, &package, command_line, &out)?;
            spinner.finish_and_clear();
            Ok(out)
        }
        other => bail!("unsupported architecture `{other}`"),
    }
}

/// Where [`build_image`] puts the device tree it read back from the SD card of
/// scenario `name` (boards with `sd_image`).
fn card_device_tree(board: &Board, name: &str) -> PathBuf {
    crate::from_root("target/systems")
        .join(&board.name)
        .join(format!("{name}.dtb"))
}

/// Writes via a temporary file and a rename, so parallel test runs never see a
/// half-written image.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp{}-{unique}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

#[cfg(test)]
mod tests;
