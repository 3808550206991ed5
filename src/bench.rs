//! The benchmarks: the tables `cargo run -- bench` prints, from the consoles of
//! the benchmark scenarios (`tests/scenarios/bench-*.toml` and the others named
//! here), in guest-virtual time under QEMU `-icount` or in Bochs TSC ticks.
//!
//! A [`Report`] gets each scenario's console either by running it now
//! ([`Source::Run`], the `bench` command) or from the console its last run left
//! in `target/scenarios/` ([`Source::Saved`], for the README's generated tables:
//! `scripts/test.sh` runs every scenario, and [`table`] rebuilds a table from
//! what that run printed, so the figures check compares the README with it).
//! The Linux tables also boot bare QEMU for their baseline, which no scenario
//! does: they are made only by a run.

use anyhow::{Context, Result, bail};
use std::time::Duration;

use crate::boards::{self, Board};
use crate::scenario::Scenario;
use crate::{image, linux};

/// Where a report's consoles come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Run each scenario now (and print each line as it comes).
    Run,
    /// Read each scenario's console from its last run (`target/scenarios/`).
    Saved,
}

/// A benchmark report being written.
pub struct Report {
    source: Source,
    /// The report so far, one line each.
    pub text: String,
}

impl Report {
    /// An empty report whose consoles come from `source`.
    pub fn new(source: Source) -> Report {
        Report {
            source,
            text: String::new(),
        }
    }

    /// The console of benchmark scenario `name`, which must have passed.
    fn console(&mut self, name: &str) -> Result<String> {
        match self.source {
            Source::Run => {
                let outcome = Scenario::load(name)?.run()?;
                if !outcome.failures.is_empty() {
                    bail!(
                        "benchmark {name} failed: {:?}\n{}",
                        outcome.failures,
                        outcome.console
                    );
                }
                Ok(outcome.console)
            }
            Source::Saved => {
                let path = crate::scenario::console_log(crate::repo_root(), name);
                std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no {} (run the scenario first: cargo run -- scenario {name})",
                        path.display()
                    )
                })
            }
        }
    }

    /// Adds one line (printed at once when running).
    fn out(&mut self, line: impl Into<String>) {
        let line = line.into();
        if self.source == Source::Run {
            println!("{line}");
        }
        self.text.push_str(&line);
        self.text.push('\n');
    }
}

/// The clock a board's figures are in.
fn clock(arch: &str) -> &'static str {
    match arch {
        "aarch64" => "QEMU -icount shift=0: 1 ns = 1 instruction",
        _ => "Bochs TSC ticks, clock: sync=none",
    }
}

/// The tables of the report the README shows generated.
pub const TABLES: &[&str] = &[
    "flatness",
    "boot",
    "locks",
    "messaging",
    "balloon",
    "virtio",
    "net",
    "time",
];

/// One table of the report for `board` (one of [`TABLES`]), from the consoles
/// the last run of its scenarios saved.
pub fn table(kind: &str, board_name: &str) -> Result<String> {
    let board = boards::load(board_name)?;
    let arch = board.arch.as_str();
    let clock = clock(arch);
    let mut r = Report::new(Source::Saved);
    match kind {
        "flatness" => {
            let two = r.console(&format!("bench-{arch}"))?;
            flatness(&mut r, &two, arch, clock)?
        }
        "boot" => boot(&mut r, &board.name, arch, clock)?,
        "messaging" => messaging(&mut r, arch, clock)?,
        "balloon" => balloon(&mut r, arch, clock)?,
        "virtio" => virtio(&mut r, arch, clock)?,
        "net" => net(&mut r, arch, clock)?,
        "time" => time_isolation(&mut r, &board.name, arch, clock)?,
        "locks" => scale_locks(&mut r, &board.name, arch)?,
        _ => bail!(
            "no benchmark table `{kind}` (there are: {})",
            TABLES.join(", ")
        ),
    }
    Ok(markdown(&r.text))
}

/// A report's lines as Markdown: its first line a paragraph, its tables set
/// apart by blank lines, every other line an item of a list.
fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut previous_in_table = false;
    for (index, line) in text.lines().enumerate() {
        let in_table = line.starts_with('|');
        if index > 0 && in_table != previous_in_table {
            out.push('\n');
        }
        if index > 0 && !in_table {
            out.push_str("- ");
        }
        out.push_str(line);
        out.push('\n');
        previous_in_table = in_table;
    }
    out
}

/// Runs the four time attacks of `partitions/hostile` and `partitions/balloon`
/// beside a meter with a 400 per mille window (`tests/scenarios/*time-*.toml`)
/// and prints the meter's mean share and its worst frame under each.
fn time_isolation(r: &mut Report, board: &str, arch: &str, clock: &str) -> Result<()> {
    let prefix = if board == "pc" { "pc-" } else { "" };
    r.out(format!(
        "time isolation ({arch}, {clock}): a meter's share of its 400 per mille window, per mille:"
    ));
    r.out("| attack beside it | mean | worst frame | frames |");
    r.out("|---|---|---|---|");
    for (scenario, attack) in [
        ("time-flood", "console flood (256-byte writes)"),
        ("time-traps", "trap storm (MMIO, resumed by the service VM)"),
        ("time-restarts", "restart storm of a large partition"),
        ("time-balloon", "balloon storm (inflate and deflate)"),
    ] {
        let console = r.console(&format!("{prefix}{scenario}"))?;
        let line = console
            .lines()
            .find_map(|line| line.strip_prefix("[meter] share="))
            .with_context(|| format!("no meter line in {scenario}"))?;
        let field = |key: &str| value_of(line, key).unwrap_or("?").to_owned();
        let mean = line.split_whitespace().next().unwrap_or("?");
        r.out(format!(
            "| {attack} | {mean} | {} | {} |",
            field("worst_frame="),
            field("frames=")
        ));
    }
    Ok(())
}

/// Prints each core's kernel-lock counts from a benchmark's console (the
/// kernel's `@@ kernel locks` lines at shutdown).
fn print_lock_counts(r: &mut Report, console: &str, run: &str) {
    for line in console.lines() {
        if let Some(counts) = line.strip_prefix("@@ kernel locks ") {
            r.out(format!("kernel lock ({run}): {counts}"));
        }
    }
}

/// Prints the null, general and policy-trap round trips with 2 partitions in the
/// system (`console`, the main benchmark's run) against 8 and 64
/// (`bench-8-<arch>`, `bench-64-<arch>`): they should not grow.
fn flatness(r: &mut Report, two: &str, arch: &str, clock: &str) -> Result<()> {
    let eight = r.console(&format!("bench-8-{arch}"))?;
    let sixty_four = r.console(&format!("bench-64-{arch}"))?;
    let (unit, key) = if arch == "aarch64" {
        ("ns", "ns=")
    } else {
        ("ticks", "ticks_per_call=")
    };
    r.out(format!(
        "round trips by partitions in the system ({arch}, {clock}), {unit}:"
    ));
    r.out("| figure | 2 partitions | 8 | 64 |");
    r.out("|---|---|---|---|");
    for name in ["null-hypercall", "general-hypercall", "policy-trap"] {
        let figure = |console: &str| -> Result<String> {
            let line = figure_line(console, name)?;
            value_of(line, key)
                .map(str::to_owned)
                .with_context(|| format!("unreadable {name} figure: {line}"))
        };
        r.out(format!(
            "| {name} | {} | {} | {} |",
            figure(two)?,
            figure(&eight)?,
            figure(&sixty_four)?
        ));
    }
    Ok(())
}

/// Boots systems of 2, 8 and 64 partitions of 2 MiB (pc: 16, its scale
/// scenario) and prints the time from reset to every partition started, from the
/// kernel's `@@ kernel running` line, with what its state took.
fn boot(r: &mut Report, board: &str, arch: &str, clock: &str) -> Result<()> {
    let scenarios: &[&str] = if board == "pc" {
        &["pc-scale"]
    } else {
        &["boot-2", "boot-8", "scale-64"]
    };
    r.out(format!(
        "boot ({arch}, {clock}): reset to every partition started, partitions of 2 MiB:"
    ));
    r.out("| partitions | cores | time (µs) | kernel state (bytes) |");
    r.out("|---|---|---|---|");
    for scenario in scenarios {
        let console = r.console(scenario)?;
        let field = |prefix: &str, key: &str| {
            console
                .lines()
                .find_map(|line| line.strip_prefix(prefix))
                .and_then(|line| value_of(line, key))
                .map(str::to_owned)
                .with_context(|| format!("no `{prefix}{key}` in {scenario}"))
        };
        r.out(format!(
            "| {} | {} | {} | {} |",
            field("@@ kernel running ", "partitions=")?,
            field("@@ kernel boot ", "cpus=")?,
            field("@@ kernel running ", "us=")?,
            field("@@ kernel state ", "bytes=")?,
        ));
    }
    Ok(())
}

/// Prints each core's kernel-lock counts in the board's scale runs (the
/// largest systems, where the cores contend most).
fn scale_locks(r: &mut Report, board: &str, arch: &str) -> Result<()> {
    let scenario = if board == "pc" {
        "pc-scale"
    } else {
        "scale-64"
    };
    r.out(format!(
        "kernel lock per core ({arch}), booting and running {scenario}:"
    ));
    let console = r.console(scenario)?;
    print_lock_counts(r, &console, scenario);
    Ok(())
}

/// Boots Debian's kernel to `/init` alone on its core under Septum and on bare
/// QEMU (same kernel, device tree and initrd, both under `-icount`), with the
/// default command line and with `quiet` (which leaves the console nearly
/// silent, to tell the console's cost apart), and prints when `/init` came up
/// by Linux's own clock (which starts when its timer is set up, so both leave
/// out the same first part of its boot) and the ratio; then the
/// kernel-emulated accesses the `vgic-emulated` probe times.
fn linux_boot(r: &mut Report, board: &Board, clock: &str) -> Result<()> {
    r.out(format!(
        "Linux boot to /init, Linux's own clock (aarch64, {clock}), 128 MiB, one vCPU:"
    ));
    r.out("| command line | bare QEMU (ms) | under Septum, alone on its core (ms) | ratio |");
    r.out("|---|---|---|---|");
    for (what, system, scenario) in [
        ("default", "bench-linux", "bench-linux-aarch64"),
        (
            "default + quiet",
            "bench-linux-quiet",
            "bench-linux-quiet-aarch64",
        ),
    ] {
        let system_file = crate::from_root(format!("tests/systems/{system}.toml"));
        let description = boards::load_system(&system_file, board)?;
        let folder = crate::from_root(format!("target/linux/{system}"));
        let parts = linux::write_parts(&description, board, Some("linux"), &folder)?;
        let bare = linux::bare_boot_to_init(&parts, std::time::Duration::from_secs(300))?;
        let console = r.console(scenario)?;
        let septum = console
            .lines()
            .find_map(linux::init_up_ns)
            .with_context(|| format!("no time of /init in {scenario}"))?;
        let ms = |ns: u64| ns as f64 / 1e6;
        let ratio = septum as f64 / bare as f64;
        r.out(format!(
            "| {what} | {:.3} | {:.3} | {ratio:.3} |",
            ms(bare),
            ms(septum)
        ));
    }
    let probe = r.console("vgic-emulated")?;
    for (name, what) in [
        ("vgic-plain-load", "load from its own RAM (baseline)"),
        (
            "vgic-distributor-read",
            "emulated distributor read (GICD_TYPER)",
        ),
        (
            "vgic-distributor-write",
            "emulated distributor write (GICD_IPRIORITYR)",
        ),
        ("vgic-uart-write", "byte written to the emulated UART"),
    ] {
        let figure = figure_line(&probe, name)?;
        r.out(format!(
            "{what}, round trip from a Linux partition (aarch64, {clock}): {figure}"
        ));
    }
    Ok(())
}

/// Inflates and deflates 768 MiB through the virtio balloon of Debian's kernel
/// with 1 GiB alone on its core, under Septum (the service VM's console moves
/// the target, `bench-linux-balloon-aarch64`) and on bare QEMU with QEMU's own
/// device (its monitor moves it; same kernel, device tree, initrd and RAM, both
/// under `-icount`), and prints the time Linux's function tracer measured from
/// the configuration-change interrupt to the last page list's used-buffer
/// interrupt, the rate and the ratio (see `linux::balloon_bench`).
fn linux_balloon(r: &mut Report, board: &Board, clock: &str) -> Result<()> {
    let system_file = crate::from_root("tests/systems/bench-linux-balloon.toml");
    let description = boards::load_system(&system_file, board)?;
    let folder = crate::from_root("target/linux/bench-linux-balloon");
    let parts = linux::write_parts(&description, board, Some("linux"), &folder)?;
    let console = linux::balloon_bench::bare(&parts, Duration::from_secs(300))?;
    let bare = linux::balloon_bench::figures(&console)
        .with_context(|| format!("bare QEMU's balloon benchmark:\n{console}"))?;
    let septum = linux::balloon_bench::figures(&r.console("bench-linux-balloon-aarch64")?)?;
    r.out(format!(
        "Linux virtio-balloon, {} MiB, one vCPU: guest-virtual time from the target's change to the last page list taken (aarch64, {clock}):",
        parts.ram >> 20
    ));
    r.out("| step | bare QEMU, QEMU's device | under Septum | Septum / bare |");
    r.out("|---|---|---|---|");
    for (bare, septum) in bare.iter().zip(&septum) {
        let figure = |f: &linux::balloon_bench::Figure| {
            let mib_per_s = f.mib_per_s();
            format!(
                "{:.1} ms ({mib_per_s:.0} MiB/s, {:.2} GiB/s)",
                f.seconds() * 1e3,
                mib_per_s / 1024.0
            )
        };
        r.out(format!(
            "| {:?} {} MiB | {} | {} | {:.3} |",
            bare.step,
            bare.kib / 1024,
            figure(bare),
            figure(septum),
            septum.seconds() / bare.seconds()
        ));
    }
    Ok(())
}

/// The value of the `key=value` field (`key` with its `=`) among the
/// space-separated fields of `line`.
pub fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key))
}

/// The fields of figure `name` in a benchmark's console (what follows
/// `bench <name> ` on its line).
pub fn figure_line<'a>(console: &'a str, name: &str) -> Result<&'a str> {
    console
        .lines()
        .find_map(|line| line.split(&format!("bench {name} ")).nth(1))
        .with_context(|| format!("no {name} figure in the benchmark output"))
}

/// Runs the messaging benchmark (`partitions/bench`, `queue-bench`) and prints
/// the flip-versus-copy table and the streaming figures.
fn messaging(r: &mut Report, arch: &str, clock: &str) -> Result<()> {
    let console = r.console(&format!("bench-queue-{arch}"))?;
    // Per message or page: ns where the counter's frequency is known, else ticks.
    let figure = |name: &str| -> Result<f64> {
        let line = figure_line(&console, name)?;
        let field = |key: &str| value_of(line, key).and_then(|v| v.parse::<f64>().ok());
        field("ns=")
            .or_else(|| field("ticks_per_message=").or_else(|| field("ticks_per_page=")))
            .with_context(|| format!("unreadable {name} figure: {line}"))
    };
    let unit = if arch == "aarch64" { "ns" } else { "ticks" };
    r.out(format!(
        "messaging ({arch}, {clock}), cost per message in {unit}:"
    ));
    r.out("| payload | copy (4 KiB chunks) | flip | flip / copy |");
    r.out("|---|---|---|---|");
    for size in [64u64, 1024, 2048, 4096, 16 * 1024, 64 * 1024] {
        let copy = figure(&format!("copy-{size}"))?;
        let flip = figure(&format!("flip-{size}"))?;
        let payload = if size < 1024 {
            format!("{size} B")
        } else {
            format!("{} KiB", size / 1024)
        };
        r.out(format!(
            "| {payload} | {copy:.0} | {flip:.0} | {:.2} |",
            flip / copy
        ));
    }
    for (name, what) in [
        ("stream-unbatched", "one page per send"),
        ("stream-batched", "up to 16 pages per send"),
    ] {
        let per_page = figure(name)?;
        let rate = if arch == "aarch64" {
            format!(
                ", {:.0} MiB/s of guest-virtual time",
                4096.0 / per_page * 1e9 / 1048576.0
            )
        } else {
            String::new()
        };
        r.out(format!(
            "streaming 4 KiB pages, {what}: {per_page:.0} {unit} per page{rate}"
        ));
    }
    Ok(())
}

/// Runs the balloon benchmarks (`partitions/balloon`: `balloon-bench` and
/// `balloon-move`) and prints the inflate and deflate rates and the time the
/// memory scheduler takes to move 64 MiB from an idle guest to a busy one.
fn balloon(r: &mut Report, arch: &str, clock: &str) -> Result<()> {
    let rates = r.console(&format!("balloon-bench-{arch}"))?;
    let moved = r.console(&format!("balloon-move-{arch}"))?;
    let field = |console: &str, name: &str, key: &str| -> Result<u64> {
        let line = figure_line(console, name)?;
        value_of(line, key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in the {name} figure: {line}"))
    };
    let timed = arch == "aarch64";
    let rate = |name: &str| page_rate(&rates, name, timed);
    let unit = if timed {
        "pages per second of guest-virtual time"
    } else {
        "ticks per page"
    };
    r.out(format!("ballooning ({arch}, {clock}), {unit}:"));
    r.out("| batch | inflate | deflate |");
    r.out("|---|---|---|");
    for batch in [1, 16, septum_core::abi::balloon::BATCH_MAX] {
        r.out(format!(
            "| {batch} | {} | {} |",
            rate(&format!("inflate-batch-{batch}"))?,
            rate(&format!("deflate-batch-{batch}"))?
        ));
    }
    let pages = field(&moved, "move", "pages=")?;
    let time = if timed {
        format!("{:.1} ms", field(&moved, "move", "ns=")? as f64 / 1e6)
    } else {
        format!("{} ticks", field(&moved, "move", "ticks=")?)
    };
    r.out(format!(
        "memory scheduler moving {} MiB from an idle guest to a busy one: {time}",
        pages * 4 / 1024
    ));
    Ok(())
}

/// The rate of balloon figure `name` in a benchmark's console: pages per
/// second where the counter's frequency is known (`timed`), else ticks per page.
fn page_rate(console: &str, name: &str, timed: bool) -> Result<String> {
    let line = figure_line(console, name)?;
    let field = |key: &str| -> Result<u64> {
        value_of(line, key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in the {name} figure: {line}"))
    };
    Ok(if timed {
        field("pages_per_s=")?.to_string()
    } else {
        format!("{:.0}", field("ticks=")? as f64 / field("pages=")? as f64)
    })
}

/// Runs the virtio-balloon benchmark (`partitions/virtio`, `virtio-bench`) and
/// prints the rates of the two front ends of the balloon ledger: the device's
/// queues in chains of 1, 64 and 256 frame numbers, the hypercalls in batches
/// of 1 and 64.
fn virtio(r: &mut Report, arch: &str, clock: &str) -> Result<()> {
    let console = r.console(&format!("virtio-bench-{arch}"))?;
    let timed = arch == "aarch64";
    let unit = if timed {
        "pages per second of guest-virtual time"
    } else {
        "ticks per page"
    };
    r.out(format!(
        "ballooning through virtio and through hypercalls ({arch}, {clock}), {unit}:"
    ));
    r.out("| front end | pages a chain or batch | inflate | deflate |");
    r.out("|---|---|---|---|");
    for (front, what, sizes) in [
        ("virtio-balloon queues", "chain", &[1, 64, 256][..]),
        ("hypercalls", "batch", &[1, 64][..]),
    ] {
        let prefix = if what == "chain" {
            "virtio"
        } else {
            "hypercall"
        };
        for size in sizes {
            r.out(format!(
                "| {front} | {size} | {} | {} |",
                page_rate(&console, &format!("{prefix}-inflate-{what}-{size}"), timed)?,
                page_rate(&console, &format!("{prefix}-deflate-{what}-{size}"), timed)?
            ));
        }
    }
    Ok(())
}

/// Runs the network benchmark (`bench-net-<arch>`: UDP through the kernel's
/// router, then a page-flip stream, in one run) and prints both per unit and
/// per byte.
fn net(r: &mut Report, arch: &str, clock: &str) -> Result<()> {
    let console = r.console(&format!("bench-net-{arch}"))?;
    let timed = arch == "aarch64";
    let unit = if timed { "ns" } else { "ticks" };
    r.out(format!(
        "UDP through the router against page flips, one run ({arch}, {clock}):"
    ));
    r.out(format!(
        "| path | bytes a unit | {unit} a unit | bytes per 1,000 {unit} |"
    ));
    r.out("|---|---|---|---|");
    for (name, what, bytes) in [
        (
            "udp-1472",
            "UDP datagrams (smoltcp both ends, 8 in flight)",
            1472.0,
        ),
        ("stream-unbatched", "page flips, one page a send", 4096.0),
        (
            "stream-batched",
            "page flips, up to 16 pages a send",
            4096.0,
        ),
    ] {
        let line = figure_line(&console, name)?;
        let field = |key: &str| value_of(line, key).and_then(|v| v.parse::<f64>().ok());
        let per_unit = if timed {
            field("ns=")
        } else {
            field("ticks_per_datagram=").or_else(|| field("ticks_per_page="))
        }
        .with_context(|| format!("unreadable {name} figure: {line}"))?;
        r.out(format!(
            "| {what} | {bytes:.0} | {per_unit:.0} | {:.1} |",
            bytes / per_unit * 1000.0
        ));
    }
    Ok(())
}

/// Prints a device interrupt's injection, from the guest's register write to
/// its handler, on both aarch64 boards (`inject-virt`, `inject-rpi4`): the GICv3's
/// list registers against the GIC-400's.
fn device_interrupts(r: &mut Report, clock: &str) -> Result<()> {
    for (scenario, board) in [
        ("inject-virt", "virt, GICv3, PL061 GPIO"),
        ("inject-rpi4", "raspi4b, GIC-400, mini UART"),
    ] {
        let console = r.console(scenario)?;
        r.out(format!(
            "device interrupt, register write to handler ({board}, {clock}): {}",
            figure_line(&console, "device-interrupt")?
        ));
    }
    Ok(())
}

/// Every table and figure for `board_name`, in the order `cargo run -- bench`
/// prints them.
pub fn all(r: &mut Report, board_name: &str) -> Result<()> {
    let board = boards::load(board_name)?;
    let console = r.console(&format!("bench-{}", board.arch))?;
    let clock = clock(&board.arch);
    for (name, what) in [
        ("null-hypercall", "null hypercall round trip"),
        (
            "general-hypercall",
            "general hypercall round trip (console_write of 0 bytes)",
        ),
        ("plain-access", "store that does not trap (native baseline)"),
        (
            "policy-trap",
            "policy trap round trip: guest -> service VM (resume past the store) -> guest",
        ),
    ] {
        let figure = figure_line(&console, name)?;
        r.out(format!("{what} ({}, {clock}): {figure}", board.arch));
    }
    print_lock_counts(r, &console, "one core");
    let two = r.console(&format!("bench-2cpu-{}", board.arch))?;
    r.out(format!(
        "policy trap round trip, 2 cores, the other idle ({}, {clock}): {}",
        board.arch,
        figure_line(&two, "policy-trap")?
    ));
    print_lock_counts(r, &two, "2 cores, the other idle");
    flatness(r, &console, &board.arch, clock)?;
    boot(r, &board.name, &board.arch, clock)?;
    scale_locks(r, &board.name, &board.arch)?;
    messaging(r, &board.arch, clock)?;
    balloon(r, &board.arch, clock)?;
    virtio(r, &board.arch, clock)?;
    net(r, &board.arch, clock)?;
    time_isolation(r, &board.name, &board.arch, clock)?;
    if board.arch == "aarch64" {
        device_interrupts(r, clock)?;
        linux_boot(r, &board, clock)?;
        linux_balloon(r, &board, clock)?;
        let network = r.console(linux::net_bench::SCENARIO)?;
        print!("{}", linux::net_bench::report(&network, clock)?);
    }
    let size = image::kernel_size(&boards::kernel_elf(&board)?)?;
    r.out(format!(
        "kernel image ({}): {} bytes loaded (code and data), {} bytes zero-initialised (bss), {} bytes of stacks after the package (in no file)",
        board.arch, size.loaded, size.zeroed, size.claimed_after_package
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-TST-004
    #[test]
    fn a_report_becomes_markdown_with_its_tables_set_apart() {
        let text = "caption:\n| a | b |\n|---|---|\n| 1 | 2 |\nafter one\nafter two\n";
        assert_eq!(
            markdown(text),
            "caption:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- after one\n- after two\n"
        );
        assert!(table("nothing", "qemu-virt").is_err());
        assert!(table("boot", "no-board").is_err());
    }
}
