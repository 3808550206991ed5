//! The figures and counts the README states, measured by the tools, and the
//! check that keeps the README equal to them.
//!
//! A figure in the README is wrapped in a marker, `<!--fig:NAME-->VALUE<!--/fig-->`,
//! which Markdown renders as `VALUE` alone. `NAME` says how the figure is
//! measured (see [`measure`]):
//!
//! | name | measured from |
//! |---|---|
//! | `rules` | the description validator's rule list |
//! | `requirements`, `requirements-must`, `requirements-verified`, `families`, `family:SK-XX` | the catalogue (`tests/requirements/`) and the tests' tags |
//! | `tests` | `cargo test -- --list`: every test the README's test command runs |
//! | `scenarios` | `tests/scenarios/*.toml` |
//! | `limit:NAME` | the constant the kernel enforces |
//! | `kernel:ARCH:loaded`, `:zeroed`, `:stacks` | the release kernel ELF |
//! | `image:BOARD` | the bootable image of the board's default system, in bytes |
//! | `trusted-lines:ARCH` | the kernel's crates for `ARCH`, code lines outside tests |
//! | `coverage:core`, `coverage:core-lines` | `target/coverage/core.txt` and `core-lines.txt`, written by `scripts/coverage.sh --core` |
//! | `table:KIND:BOARD` (`KIND` one of [`crate::bench::TABLES`]; a generated table: `<!--table:KIND:BOARD-->` … `<!--/table-->` around lines of its own) | [`crate::bench::table`], from the saved consoles of the board's benchmark scenarios |
//! | `run:SCENARIO:NEEDLE:KEY` | `target/scenarios/SCENARIO.log`, the console of the scenario's last run: field `KEY=` after `NEEDLE` on the first line holding it (with no `KEY`, the word right after `NEEDLE`) |
//!
//! Every figure is compared by its [`tolerance`]: the repository's counts and
//! sizes exactly (thousands separators aside); the coverage, which the property
//! tests move by a tenth or so, within [`COVERAGE_TOLERANCE`] percentage points;
//! the emulators' figures, which repeat exactly on one host but drift by a few
//! parts in a million between hosts, within [`EMULATOR_TOLERANCE`] of the
//! measurement (and at least [`EMULATOR_FLOOR`]); and the kernel-lock counts of the multi-core runs, which depend
//! on how the host interleaves the emulated cores, by their words alone. `cargo run -- figures --write`
//! measures every figure the README names, rewrites the markers and writes
//! `docs/figures.md`, the list an assessor reads (and refuses to while a saved
//! console is older than the kernel its board runs: [`stale_consoles`]); `--check` (run by
//! `scripts/test.sh` after a full run) fails when a marker's value is not what
//! was measured, a marker names something that cannot be measured, or
//! `docs/figures.md` is not what `--write` would write.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

mod counts;
pub use counts::code_lines;

/// How far the core's coverage may drift from the README, in percentage points.
pub const COVERAGE_TOLERANCE: f64 = 0.5;

const OPEN: &str = "<!--fig:";
const CLOSE: &str = "<!--/fig-->";
const TABLE_OPEN: &str = "<!--table:";
const TABLE_CLOSE: &str = "<!--/table-->";

/// One marker in a document: the figure's name, its stated value, and where the
/// value lies (a byte range of the document).
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// The figure's name.
    pub name: String,
    /// The value the document states.
    pub value: String,
    /// Where the value lies in the document.
    pub span: std::ops::Range<usize>,
    /// The line it is on (1-based), for messages.
    pub line: usize,
}

/// The markers of `text`, in order: the inline figures and the generated
/// tables.
pub fn markers(text: &str) -> Result<Vec<Marker>> {
    let mut found = scan(text, OPEN, CLOSE, false)?;
    found.extend(scan(text, TABLE_OPEN, TABLE_CLOSE, true)?);
    found.sort_by_key(|marker| marker.span.start);
    Ok(found)
}

/// The markers of one kind (`open` … `-->` value `close`); a table's value may
/// span lines, a figure's may not.
fn scan(text: &str, open: &str, close: &str, multiline: bool) -> Result<Vec<Marker>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find(open) {
        let start = from + offset;
        let line = text[..start].matches('\n').count() + 1;
        let name_start = start + open.len();
        let name_end = text[name_start..]
            .find("-->")
            .map(|end| name_start + end)
            .with_context(|| format!("line {line}: unterminated figure marker"))?;
        let value_start = name_end + "-->".len();
        let value_end = text[value_start..]
            .find(close)
            .map(|end| value_start + end)
            .with_context(|| format!("line {line}: figure marker without {close}"))?;
        let value = &text[value_start..value_end];
        if (!multiline && value.contains('\n')) || value.contains(open) {
            bail!("line {line}: figure marker not closed where it should be");
        }
        let prefix = if multiline { "table:" } else { "" };
        found.push(Marker {
            name: format!("{prefix}{}", &text[name_start..name_end]),
            value: value.to_owned(),
            span: value_start..value_end,
            line,
        });
        from = value_end + close.len();
    }
    Ok(found)
}

/// `text` with each marker's value replaced by `values[name]` (markers whose
/// name `values` lacks keep theirs).
pub fn rewrite(text: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for marker in markers(text)? {
        out.push_str(&text[at..marker.span.start]);
        match values.get(&marker.name) {
            Some(table) if marker.name.starts_with("table:") => {
                out.push('\n');
                out.push_str(table.trim_end());
                out.push('\n');
            }
            Some(value) => out.push_str(value),
            None => out.push_str(&marker.value),
        }
        at = marker.span.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// A figure's value as a number: thousands separators, a trailing `%` and
/// surrounding space are ignored.
fn number(value: &str) -> Option<f64> {
    value
        .trim()
        .trim_end_matches('%')
        .replace(',', "")
        .parse()
        .ok()
}

/// How closely a stated figure must agree with its measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// Equal, thousands separators aside.
    Exact,
    /// Within this many units either way.
    Absolute(f64),
    /// Within this fraction of the measurement either way; in a table, each
    /// number on its own, the words between them exactly.
    Relative(f64),
    /// The same words with any numbers: counts of events that depend on how
    /// the host interleaves the emulated cores.
    Form,
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Exact => write!(f, "exact"),
            Tolerance::Absolute(units) => write!(f, "± {units}"),
            Tolerance::Relative(fraction) => {
                write!(f, "± {}% (at least {EMULATOR_FLOOR})", fraction * 100.0)
            }
            Tolerance::Form => write!(f, "words only: the counts vary with the host"),
        }
    }
}

/// How far an emulator's figure may drift between hosts. QEMU under `-icount`
/// and Bochs with its own clock repeat a run exactly on one host, but a figure
/// that involves the console or several cores moves by a few parts in a million
/// between hosts (Bochs' policy trap: 7,675.145 ticks here, 7,675.131 in CI).
pub const EMULATOR_TOLERANCE: f64 = 0.005;

/// The least an emulator's figure may drift, in its own unit: a figure near one
/// unit is a few counter ticks over many calls, and one tick more moves it by
/// about a hundredth (the Pi's store to its own RAM: 0.992 ns, then 1.000).
pub const EMULATOR_FLOOR: f64 = 0.01;

/// How far a number in a time-isolation table may drift, in its own unit (per
/// mille of a frame, or frames). The meter counts whole frames, so a drift of a
/// few parts in a million that moves one frame boundary past the end of its
/// measurement adds or drops a frame, and that frame can be the worst: CI once
/// measured Bochs' trap storm at 65 frames and a worst frame of 395 where this
/// host gave 64 and 397.
pub const TIME_TABLE_TOLERANCE: f64 = 5.0;

/// The tolerance of figure `name`: the emulators' times (`run:…:ns`,
/// `run:…:us`, `run:…:ticks_per_call`, `run:…:ticks_per_word`, the rates
/// `run:…:rate_permille` and the benchmark tables) are relative, the
/// time-isolation tables' shares and frame counts are within
/// [`TIME_TABLE_TOLERANCE`], counts an emulator run gives (the fuzzer's) are
/// exact.
pub fn tolerance(name: &str) -> Tolerance {
    if name == "coverage:core" {
        Tolerance::Absolute(COVERAGE_TOLERANCE)
    } else if name.starts_with("table:time:") {
        Tolerance::Absolute(TIME_TABLE_TOLERANCE)
    } else if name.starts_with("table:locks:") {
        Tolerance::Form
    } else if name.starts_with("table:")
        || name.ends_with(":ns")
        || name.ends_with(":us")
        || name.ends_with(":ticks_per_call")
        || name.ends_with(":ticks_per_word")
        || name.ends_with(":rate_permille")
    {
        Tolerance::Relative(EMULATOR_TOLERANCE)
    } else {
        Tolerance::Exact
    }
}

/// Whether `stated` (from the README) agrees with `measured` for figure `name`.
pub fn agrees(name: &str, stated: &str, measured: &str) -> bool {
    let tolerance = tolerance(name);
    let stated_words = words(stated);
    let measured_words = words(measured);
    stated_words.len() == measured_words.len()
        && stated_words
            .iter()
            .zip(&measured_words)
            .all(|(stated, measured)| word_agrees(tolerance, stated, measured))
}

/// `text` split at white space and at the `|` and `=` that separate table
/// cells and fields, so numbers stand alone.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || c == '|' || c == '=')
        .filter(|word| !word.is_empty())
        .collect()
}

/// Whether one word of a figure agrees with its measurement.
fn word_agrees(tolerance: Tolerance, stated: &str, measured: &str) -> bool {
    let (Some(stated), Some(measured)) = (number(stated), number(measured)) else {
        return stated == measured;
    };
    let allowed = match tolerance {
        Tolerance::Exact => 0.0,
        Tolerance::Absolute(units) => units,
        Tolerance::Relative(fraction) => (fraction * measured.abs()).max(EMULATOR_FLOOR),
        Tolerance::Form => return true,
    };
    (stated - measured).abs() <= allowed + f64::EPSILON
}

/// `value` as the README writes numbers: integers of five digits or more with
/// thousands separators; anything else as measured.
pub fn format(value: &str) -> String {
    let Ok(integer) = value.parse::<u64>() else {
        return value.to_owned();
    };
    let digits = integer.to_string();
    if digits.len() < 5 {
        return digits;
    }
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Measures the figure `name` in the repository at `root`. See the module docs
/// for the names.
pub fn measure(root: &Path, name: &str) -> Result<String> {
    let mut parts = name.splitn(2, ':');
    let kind = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let value = match kind {
        "rules" => septum_description::RULES.len().to_string(),
        "requirements" | "requirements-must" | "requirements-verified" | "families" | "family" => {
            counts::catalogue(root, kind, rest)?
        }
        "tests" => counts::listed_tests(root)?.to_string(),
        "scenarios" => std::fs::read_dir(root.join("tests/scenarios"))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "toml"))
            .count()
            .to_string(),
        "limit" => limit(rest)?.to_string(),
        "kernel" => kernel_size(rest)?,
        "image" => default_image_size(rest)?.to_string(),
        "trusted-lines" => counts::trusted_lines(root, rest)?.to_string(),
        "coverage" if rest == "core" || rest == "core-lines" => {
            let path = root.join(format!("target/coverage/{rest}.txt"));
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no {} (run scripts/coverage.sh --core first)",
                    path.display()
                )
            })?;
            text.trim().to_owned()
        }
        "run" => from_run(root, rest)?,
        "table" => {
            let (kind, board) = rest
                .split_once(':')
                .with_context(|| format!("table `{rest}` needs KIND:BOARD"))?;
            crate::bench::table(kind, board)?
        }
        _ => bail!("unknown figure `{name}`"),
    };
    Ok(format(&value))
}

/// A limit the kernel enforces, by the name the README uses.
fn limit(name: &str) -> Result<u64> {
    use septum_description::limits;
    Ok(match name {
        "partitions" => limits::MAX_PARTITIONS as u64,
        "cpus" => limits::MAX_CPUS as u64,
        "vcpus-per-partition" => limits::MAX_VCPUS as u64,
        "vcpus" => limits::MAX_SYSTEM_VCPUS as u64,
        "queues" => limits::MAX_QUEUES as u64,
        "queue-depth" => u64::from(limits::QUEUE_DEPTH_MAX),
        "capability-slots" => limits::CAP_SLOTS as u64,
        "restarts" => u64::from(limits::MAX_RESTARTS),
        "windows" => limits::MAX_WINDOWS as u64,
        "ram-mib" => limits::RAM_MAX >> 20,
        "name-bytes" => limits::NAME_MAX as u64,
        "console-write-bytes" => septum_core::abi::CONSOLE_WRITE_MAX,
        _ => bail!("unknown limit `{name}`"),
    })
}

/// The bytes of the bootable image of `board`'s default system, as
/// `cargo run -- image --board <board>` writes it.
fn default_image_size(board: &str) -> Result<u64> {
    let board = crate::boards::load(board)?;
    let system = crate::boards::load_system(&crate::boards::default_system(&board), &board)?;
    let image = crate::scenario::build_image(&board, &system, "demo", "")?;
    Ok(std::fs::metadata(&image)?.len())
}

/// `ARCH:loaded`, `ARCH:zeroed` or `ARCH:stacks` of the release kernel ELF.
fn kernel_size(what: &str) -> Result<String> {
    let (arch, part) = what
        .split_once(':')
        .with_context(|| format!("kernel figure `{what}` needs ARCH:PART"))?;
    let size = crate::image::kernel_size(&crate::image::kernel_elf(arch)?)?;
    Ok(match part {
        "loaded" => size.loaded,
        "zeroed" => size.zeroed,
        "stacks" => size.claimed_after_package,
        _ => bail!("unknown kernel figure `{part}` (loaded, zeroed, stacks)"),
    }
    .to_string())
}

/// `SCENARIO:NEEDLE:KEY` from the scenario's saved console.
fn from_run(root: &Path, what: &str) -> Result<String> {
    let mut parts = what.splitn(3, ':');
    let (Some(scenario), Some(needle), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("run figure `{what}` needs SCENARIO:NEEDLE:KEY");
    };
    let path = crate::scenario::console_log(root, scenario);
    let console = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no {} (run the scenario first: cargo run -- scenario {scenario})",
            path.display()
        )
    })?;
    run_field(&console, needle, key)
        .with_context(|| format!("{}: no `{needle}` with `{key}`", path.display()))
}

/// Field `KEY=` (or, with no key, the first word) of what follows `needle` on the
/// first line of `console` that holds it.
pub fn run_field(console: &str, needle: &str, key: &str) -> Option<String> {
    let after = console.lines().find_map(|line| line.split(needle).nth(1))?;
    if key.is_empty() {
        return after.split_whitespace().next().map(str::to_owned);
    }
    crate::bench::value_of(after, &format!("{key}=")).map(str::to_owned)
}

/// What one figure check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each figure the document names, with its measured value (or why it could
    /// not be measured).
    pub measured: BTreeMap<String, Result<String, String>>,
    /// The disagreements and failures, one line each.
    pub problems: Vec<String>,
}

/// Measures every figure `document` names and compares.
pub fn check(document: &str, measure: impl Fn(&str) -> Result<String>) -> Result<Report> {
    let mut report = Report::default();
    let found = markers(document)?;
    for marker in &found {
        let measured = report
            .measured
            .entry(marker.name.clone())
            .or_insert_with(|| measure(&marker.name).map_err(|e| format!("{e:#}")))
            .clone();
        match measured {
            Ok(value) if agrees(&marker.name, &marker.value, &value) => {}
            Ok(value) => report.problems.push(format!(
                "README.md:{}: `{}` says {} but the measurement gives {value}",
                marker.line, marker.name, marker.value
            )),
            Err(why) => report.problems.push(format!(
                "README.md:{}: `{}` cannot be measured: {why}",
                marker.line, marker.name
            )),
        }
    }
    Ok(report)
}

/// `docs/figures.md` for the figures `document` names, with the values it states.
pub fn list(document: &str) -> Result<String> {
    let mut values = BTreeMap::new();
    for marker in markers(document)? {
        values.entry(marker.name).or_insert(marker.value);
    }
    let mut out = String::from(
        "# Figures\n\n\
         Generated by `cargo run -- figures --write` from the figures the README states;\n\
         do not edit. `scripts/test.sh` measures each afresh after a full run and fails\n\
         when one differs beyond its tolerance (`src/figures.rs` says how each is\n\
         measured and why each tolerance).\n\n\
         | figure | value | tolerance |\n|---|---|---|\n",
    );
    for (name, value) in values {
        let value = if name.starts_with("table:") {
            format!("a table of {} lines", value.trim().lines().count())
        } else {
            value
        };
        let _ = writeln!(out, "| `{name}` | {value} | {} |", tolerance(&name));
    }
    Ok(out)
}

/// The scenarios whose console in `target/scenarios/` is older than the kernel
/// ELF their board boots (the console of a kernel since rebuilt), by name.
/// Scenarios without a saved console are not listed: a figure that needs one
/// fails to measure on its own.
pub fn stale_consoles(root: &Path) -> Result<Vec<String>> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified());
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/scenarios"))? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        let Ok(console) = modified(&crate::scenario::console_log(root, name)) else {
            continue;
        };
        let scenario = crate::scenario::Scenario::load(name)?;
        let kernel = crate::boards::kernel_elf(&crate::boards::load(&scenario.board)?)?;
        if modified(&kernel).is_ok_and(|built| built > console) {
            stale.push(name.to_owned());
        }
    }
    stale.sort();
    Ok(stale)
}

/// `cargo run -- figures [--check] [--write]`: measures every figure the README
/// at `root` names, prints each, and with `write` rewrites the README's values
/// and `docs/figures.md`; with `check`, fails on any disagreement (see the
/// module docs).
pub fn command(root: &Path, check_only: bool, write: bool) -> Result<()> {
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)?;
    let report = check(&readme, |name| measure(root, name))?;
    for (name, measured) in &report.measured {
        match measured {
            Ok(value) => println!("{name} = {value}"),
            Err(why) => println!("{name}: not measured: {why}"),
        }
    }
    if write {
        let stale = stale_consoles(root)?;
        if !stale.is_empty() {
            bail!(
                "not writing: these consoles in target/scenarios are older than the kernel \
                 their board runs, so their figures are not the code's (run the full suite, \
                 scripts/test.sh, first): {}",
                stale.join(", ")
            );
        }
        let values: BTreeMap<String, String> = report
            .measured
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.clone().ok()?)))
            .collect();
        let written = rewrite(&readme, &values)?;
        std::fs::write(&readme_path, &written)?;
        std::fs::write(root.join("docs/figures.md"), list(&written)?)?;
        println!("wrote README.md and docs/figures.md");
        if report.measured.values().any(Result::is_err) {
            bail!("some figures could not be measured: their old values stay");
        }
        return Ok(());
    }
    let mut problems = report.problems;
    let listed = std::fs::read_to_string(root.join("docs/figures.md")).unwrap_or_default();
    if listed != list(&readme)? {
        problems.push(
            "docs/figures.md is not what the README's figures give: run cargo run -- figures --write"
                .to_owned(),
        );
    }
    if check_only && !problems.is_empty() {
        for problem in &problems {
            eprintln!("figures: {problem}");
        }
        bail!(
            "{} figure problems (after a full run, `cargo run -- figures --write` measures and writes them)",
            problems.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values `docs/figures.md` lists, by figure.
    fn listed_values() -> BTreeMap<String, String> {
        let listed = std::fs::read_to_string(crate::from_root("docs/figures.md")).unwrap();
        listed
            .lines()
            .filter_map(|line| {
                let mut cells = line.split(" | ");
                let name = cells.next()?.strip_prefix("| `")?.strip_suffix('`')?;
                Some((name.to_owned(), cells.next()?.to_owned()))
            })
            .collect()
    }

    /// Verifies: SK-TST-004
    #[test]
    fn markers_are_read_and_rewritten_in_place() {
        let text = "a <!--fig:rules-->5<!--/fig--> b <!--fig:tests-->1,000<!--/fig-->\n";
        let found = markers(text).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[1].name.as_str(), found[1].value.as_str()),
            ("tests", "1,000")
        );
        let values = BTreeMap::from([("rules".to_owned(), "54".to_owned())]);
        assert_eq!(
            rewrite(text, &values).unwrap(),
            "a <!--fig:rules-->54<!--/fig--> b <!--fig:tests-->1,000<!--/fig-->\n"
        );
        assert!(markers("x <!--fig:rules-->5").is_err());
        assert!(markers("x <!--fig:rules-->5\n<!--/fig-->").is_err());
        assert_eq!(format("1048576"), "1,048,576");
        assert_eq!(format("7455"), "7455");
        assert_eq!(format("17.000"), "17.000");
        assert!(agrees("tests", "1,000", "1000"));
        assert!(!agrees("tests", "999", "1000"));
        assert!(agrees("coverage:core", "98.3", "98.6"));
        assert!(!agrees("coverage:core", "98.3", "97.7"));
        let name = "run:bench-x86_64:bench policy-trap :ticks_per_call";
        assert!(agrees(name, "7675.145", "7675.131"));
        assert!(!agrees(name, "7675.145", "7800"));
        let small = "run:bench-rpi4:bench plain-access :ns";
        assert!(agrees(small, "0.992", "1.000"));
        assert!(!agrees(small, "0.992", "1.050"));
        let table = "| policy-trap | 7675.145 | 7675.205 |\n- core 0\n";
        assert!(agrees(
            "table:flatness:pc",
            table,
            "| policy-trap | 7675.131 | 7675.220 |\n- core 0\n"
        ));
        assert!(!agrees(
            "table:flatness:pc",
            table,
            "| policy-trap | 7675.131 | 9000 |\n- core 0\n"
        ));
        assert!(!agrees(
            "table:flatness:pc",
            table,
            "| null-hypercall | 7675.145 | 7675.205 |\n- core 0\n"
        ));
        assert!(!agrees(
            "table:flatness:pc",
            table,
            "| policy-trap | 7675.145 |\n- core 0\n"
        ));
        let time = "| trap storm (MMIO, resumed by the service VM) | 397 | 397 | 64 |\n";
        assert!(agrees(
            "table:time:pc",
            time,
            "| trap storm (MMIO, resumed by the service VM) | 397 | 395 | 65 |\n"
        ));
        assert!(!agrees(
            "table:time:pc",
            time,
            "| trap storm (MMIO, resumed by the service VM) | 397 | 380 | 65 |\n"
        ));
        let locks = "- kernel lock (pc-scale): cpu=0 taken=69 contended=22\n";
        assert!(agrees(
            "table:locks:pc",
            locks,
            "- kernel lock (pc-scale): cpu=0 taken=75 contended=26\n"
        ));
        assert!(!agrees(
            "table:locks:pc",
            locks,
            "- kernel lock (scale-64): cpu=0 taken=75 contended=26\n"
        ));
        assert_eq!(
            run_field(
                "[bench] bench null-hypercall calls=20 ns=17.000\n",
                "bench null-hypercall ",
                "ns"
            ),
            Some("17.000".to_owned())
        );
        assert_eq!(
            run_field("[meter] share=398 worst_frame=391\n", "[meter] share=", ""),
            Some("398".to_owned())
        );
        assert_eq!(
            code_lines("// c\n\nfn a() {}\n  // d\n#[cfg(test)]\nmod t {}\n"),
            1
        );
    }

    /// Verifies: SK-TST-004
    #[test]
    fn the_readme_check_fails_when_a_figure_is_edited_by_hand() {
        let readme = std::fs::read_to_string(crate::from_root("README.md")).unwrap();
        let listed = listed_values();
        // The figures as docs/figures.md lists them; a generated table (listed by
        // its size only) as the README has it.
        let tables: BTreeMap<String, String> = markers(&readme)
            .unwrap()
            .into_iter()
            .filter(|marker| marker.name.starts_with("table:"))
            .map(|marker| (marker.name, marker.value))
            .collect();
        let measured = |name: &str| {
            tables
                .get(name)
                .or_else(|| listed.get(name))
                .cloned()
                .with_context(|| format!("{name} is not in docs/figures.md"))
        };
        // The committed README agrees with the committed list of figures.
        let report = check(&readme, measured).unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        assert!(report.measured.len() >= 20, "{:?}", report.measured.keys());
        assert_eq!(
            std::fs::read_to_string(crate::from_root("docs/figures.md")).unwrap(),
            list(&readme).unwrap()
        );
        // A copy with one figure changed by hand fails, naming it and its line.
        let first = markers(&readme).unwrap().remove(0);
        let mut edited = readme.clone();
        edited.replace_range(first.span.clone(), "123456");
        let report = check(&edited, measured).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].starts_with(&format!(
            "README.md:{}: `{}` says 123456 but the measurement gives",
            first.line, first.name
        )));
        assert_ne!(list(&edited).unwrap(), list(&readme).unwrap());
        // A marker naming something that cannot be measured fails too.
        let unknown = format!("{readme}<!--fig:limit:nothing-->1<!--/fig-->\n");
        let report = check(&unknown, |name| measure(crate::repo_root(), name)).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("`limit:nothing` cannot be measured: unknown limit"))
        );
    }

    /// Verifies: SK-TST-004, SK-CFG-004
    #[test]
    fn the_static_figures_are_measured_from_the_code() {
        let root = crate::repo_root();
        assert_eq!(
            measure(root, "rules").unwrap(),
            septum_description::RULES.len().to_string()
        );
        assert_eq!(measure(root, "limit:partitions").unwrap(), "64");
        let all: usize = measure(root, "requirements").unwrap().parse().unwrap();
        let families: usize = measure(root, "families").unwrap().parse().unwrap();
        assert!(
            all >= 120 && families >= 15,
            "{all} requirements in {families} families"
        );
        assert!(measure(root, "family:SK-NOPE").is_err());
        let trusted: usize = measure(root, "trusted-lines:aarch64")
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap();
        assert!(trusted > 1000, "{trusted}");
        assert!(measure(root, "run:no-such-scenario:x:y").is_err());
    }
}
