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
        let mut failures = self.check(&output, service.map_or("service", |p| p.name.as_str()));
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
                guest_output || guest_event
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
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    /// Verifies: SK-AUD-003
    #[test]
    fn a_required_line_may_come_anywhere_but_must_come() {
        let mut wanted = scenario(&[], &[]);
        wanted.require = vec!["[g] hi".into()];
        assert!(wanted.check(&output(GOOD, true), "service").is_empty());
        wanted.require = vec!["[g] bye".into()];
        let failures = wanted.check(&output(GOOD, true), "service");
        assert_eq!(failures, ["missing: `[g] bye`"]);
    }

    fn scenario(expect: &[&str], forbid: &[&str]) -> Scenario {
        Scenario {
            name: "synthetic".into(),
            description: String::new(),
            verifies: Vec::new(),
            board: "qemu-virt".into(),
            system: PathBuf::new(),
            ram: None,
            timeout_s: 5,
            arguments: Default::default(),
            icount: false,
            cpus: None,
            firmware: None,
            cpu_model: None,
            expect: expect.iter().map(|s| s.to_string()).collect(),
            require: Vec::new(),
            forbid: forbid.iter().map(|s| s.to_string()).collect(),
            numbers: Vec::new(),
            final_marker: default_final(),
            kernel_args: None,
            panics: false,
            outside: None,
            input: Vec::new(),
            same_without_log_channel: false,
            log_expect: Vec::new(),
            trace_expect: Vec::new(),
        }
    }

    /// A number is read from the last line its pattern matches (of that
    /// source only) and must lie in its range; a missing line or key fails.
    ///
    /// Verifies: SK-AUD-003
    #[test]
    fn numbers_are_read_from_their_sources_last_line_and_checked_against_their_range() {
        let console = "@@ kernel boot\n@@ partition service ready\n[b] @@ net b received=9000\n\
                       @@ net b address=10.0.0.3/24 sent=5 received=2\n\
                       @@ net b address=10.0.0.3/24 sent=5 received=800\n\
                       @@ kernel shutdown status=ok code=0\n";
        let number = |min: u64, max: Option<u64>| Number {
            line: "@@ net b ".into(),
            key: "received".into(),
            min,
            max,
        };
        let checked = |number: Number| {
            let mut wanted = scenario(&[], &[]);
            wanted.numbers = vec![number];
            wanted.check(&output(console, true), "service")
        };
        assert!(checked(number(700, None)).is_empty());
        assert!(checked(number(800, Some(800))).is_empty());
        assert_eq!(
            checked(number(801, None)),
            [
                "`@@ net b address=10.0.0.3/24 sent=5 received=800`: received=800, expected at least 801"
            ]
        );
        assert_eq!(
            checked(number(0, Some(0))),
            [
                "`@@ net b address=10.0.0.3/24 sent=5 received=800`: received=800, expected from 0 to 0"
            ]
        );
        let mut other_key = number(0, None);
        other_key.key = "routed".into();
        assert_eq!(
            checked(other_key),
            ["`@@ net b address=10.0.0.3/24 sent=5 received=800` has no `routed=<number>`"]
        );
        let mut other_line = number(0, None);
        other_line.line = "@@ net c ".into();
        assert_eq!(
            checked(other_line),
            ["missing: `@@ net c ` (for its `received`)"]
        );
        let mut guest = number(0, None);
        guest.line = "net b".into();
        let mut sourceless = scenario(&[], &[]);
        sourceless.numbers = vec![guest];
        assert!(sourceless.check_sources().is_err());
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn the_outside_hosts_log_is_checked_in_order() {
        let outside = Outside {
            address: std::net::Ipv4Addr::new(192, 0, 2, 1),
            expect: vec!["echo-request 10.0.0.2".into(), "udp 10.0.0.2".into()],
            forbid: vec!["10.0.0.3".into()],
        };
        let log = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let good = log(&[
            "arp",
            "icmp echo-request 10.0.0.2 -> x",
            "udp 10.0.0.2:9 -> y",
        ]);
        assert!(outside.check(&good).is_empty());
        assert_eq!(
            outside
                .check(&log(&["udp 10.0.0.2:9", "icmp echo-request 10.0.0.2"]))
                .len(),
            1
        );
        assert_eq!(outside.check(&log(&["udp 10.0.0.3:9 -> y"])).len(), 2);
    }

    fn output(console: &str, finished: bool) -> RunOutput {
        RunOutput {
            console: console.into(),
            status: finished.then(|| ExitStatus::from_raw(0)),
            emulator_errors: Vec::new(),
            input_sent: 0,
            outside: Vec::new(),
        }
    }

    const GOOD: &str = "@@ kernel boot\n@@ partition g placed base=0x0 size=0x1000\n\
                        @@ partition service ready\n[g] hi\n@@ partition g exit code=0\n\
                        @@ kernel shutdown status=ok code=0\n";

    /// Verifies: SK-AUD-003
    #[test]
    fn a_good_run_passes() {
        let failures =
            scenario(&["ready", "[g] hi"], &["FAIL"]).check(&output(GOOD, true), "service");
        assert_eq!(failures, Vec::<String>::new());
    }

    /// A console, the scenario judging it, and the failure it must report.
    struct Case {
        console: &'static str,
        finished: bool,
        expect: &'static [&'static str],
        forbid: &'static [&'static str],
        wanted: &'static str,
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn each_rule_catches_its_violation() {
        let base = Case {
            console: GOOD,
            finished: true,
            expect: &[],
            forbid: &[],
            wanted: "",
        };
        let cases = [
            Case {
                finished: false,
                wanted: "timed out",
                ..base
            },
            Case {
                expect: &["[g] hi", "ready"],
                wanted: "missing (in order): `ready`",
                ..base
            },
            Case {
                forbid: &["[g] hi"],
                wanted: "forbidden `[g] hi`",
                ..base
            },
            Case {
                console: "@@ kernel boot\n@@ partition service ready\n",
                wanted: "last marker",
                ..base
            },
            Case {
                console: "@@ kernel panic\n@@ kernel shutdown status=ok code=0\n",
                wanted: "forbidden `@@ kernel panic`",
                ..base
            },
            Case {
                console: "[g] early\n@@ partition service ready\n@@ kernel shutdown status=ok code=0\n",
                wanted: "guest output before the service VM was ready",
                ..base
            },
        ];
        for case in cases {
            let failures = scenario(case.expect, case.forbid)
                .check(&output(case.console, case.finished), "service");
            assert!(
                failures.iter().any(|f| f.contains(case.wanted)),
                "{:?} not in {failures:?}",
                case.wanted
            );
        }
    }

    /// Every scenario file's expectations fail against a run in which nothing
    /// happened but a guest printing a copy of each expected line: each pattern
    /// that the bare frame of a run (the service VM ready, the final marker) does
    /// not satisfy is reported missing, and every scenario has one. A guest's copy
    /// of the kernel's panic line does not fail a run either.
    /// Verifies: SK-AUD-003, SK-TST-003
    #[test]
    fn no_scenario_passes_on_lines_a_guest_forged() {
        let dir = crate::from_root("tests/scenarios");
        for entry in std::fs::read_dir(&dir).expect("tests/scenarios") {
            let path = entry.expect("directory entry").path();
            let name = path.file_stem().and_then(|s| s.to_str()).expect("a name");
            let scenario = Scenario::load(name).expect("scenario parses");
            let frame = format!(
                "@@ kernel boot\n@@ partition service ready\n{}\n",
                scenario.final_marker
            );
            let mut forged = String::from("@@ kernel boot\n@@ partition service ready\n");
            for pattern in scenario.expect.iter().chain(&scenario.require) {
                forged.push_str(&format!("[intruder] {pattern}\n"));
            }
            forged.push_str(&format!(
                "[intruder] {KERNEL_PANIC}\n{}\n",
                scenario.final_marker
            ));
            let mut evidence = 0;
            for pattern in scenario.expect.iter().chain(&scenario.require) {
                let wanted = Pattern::parse(pattern);
                if frame.lines().any(|line| wanted.matches(line)) {
                    continue;
                }
                evidence += 1;
                let mut alone = scenario_like(&scenario);
                alone.expect = vec![pattern.clone()];
                let failures = alone.check(&output(&forged, true), "service");
                assert!(
                    failures.iter().any(|f| f.starts_with("missing")),
                    "{name}: `{pattern}` was satisfied by a forged line: {failures:?}"
                );
            }
            assert!(
                evidence > 0,
                "{name}: nothing beyond the bare frame is expected"
            );
            let bare = scenario_like(&scenario).check(&output(&forged, true), "service");
            assert_eq!(
                bare,
                Vec::<String>::new(),
                "{name}: a forged panic line counted"
            );
        }
    }

    /// `scenario`'s rules without its expectations.
    fn scenario_like(scenario: &Scenario) -> Scenario {
        let mut like = self::scenario(&[], &[]);
        like.final_marker = scenario.final_marker.clone();
        like
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn a_pattern_without_a_source_is_refused_in_expect_and_require() {
        let head = "description = \"d\"\nboard = \"pc\"\nsystem = \"s.toml\"\n";
        for (lines, refused) in [
            (
                "expect = [\"within=yes\"]",
                Some("`expect` pattern `within=yes`"),
            ),
            ("require = [\"ok\"]", Some("`require` pattern `ok`")),
            (
                "expect = [\"[g] ok\", \"@@ kernel\"]\nforbid = [\"LOST\"]",
                None,
            ),
        ] {
            let scenario: Scenario = toml::from_str(&format!("{head}{lines}")).expect("parses");
            let checked = scenario.check_sources().map_err(|e| e.to_string());
            match refused {
                Some(wanted) => assert!(checked.expect_err(lines).contains(wanted)),
                None => assert!(checked.is_ok(), "{lines}: {checked:?}"),
            }
        }
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn scripted_input_parses_in_order_with_escapes() {
        let text = r#"
            description = "typing"
            board = "qemu-virt"
            system = "board-support/qemu-virt/demo.toml"
            input = [
                { after = "@@ partition service ready", send = "\u0014list\n" },
                { after = "[service] >", send = "stop hello\n" },
            ]
        "#;
        let parsed: Scenario = toml::from_str(text).expect("a valid scenario");
        assert_eq!(
            parsed.input,
            [
                ConsoleInput {
                    after: "@@ partition service ready".into(),
                    send: "\u{14}list\n".into(),
                },
                ConsoleInput {
                    after: "[service] >".into(),
                    send: "stop hello\n".into(),
                },
            ]
        );
        let without: Scenario =
            toml::from_str(&text[..text.find("input").expect("input key")]).expect("valid");
        assert!(without.input.is_empty());
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn scripted_input_needs_both_keys_and_no_others() {
        let head = "description = \"d\"\nboard = \"pc\"\nsystem = \"s.toml\"\n";
        for (input, wanted) in [
            (r#"input = [{ after = "x" }]"#, "missing field `send`"),
            (r#"input = [{ send = "x" }]"#, "missing field `after`"),
            (
                r#"input = [{ after = "x", send = "y", delay_ms = 5 }]"#,
                "unknown field `delay_ms`",
            ),
        ] {
            let error = toml::from_str::<Scenario>(&format!("{head}{input}"))
                .expect_err(input)
                .to_string();
            assert!(error.contains(wanted), "{input}: {error}");
        }
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn input_left_untyped_fails_the_run() {
        let mut typing = scenario(&[], &[]);
        typing.input = vec![
            ConsoleInput {
                after: "ready".into(),
                send: "a".into(),
            },
            ConsoleInput {
                after: "prompt".into(),
                send: "b".into(),
            },
        ];
        let mut run = output(GOOD, true);
        run.input_sent = 2;
        assert!(typing.check(&run, "service").is_empty());
        run.input_sent = 1;
        assert_eq!(
            typing.check(&run, "service"),
            [
                "input 2 of 2 not typed: the console never showed `prompt` (after the inputs before it)"
            ]
        );
    }
}
