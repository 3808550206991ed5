//! `septum`: the host tool. Builds bootable images from system descriptions, runs
//! them on the emulator, and runs the benchmarks.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use septum::boards::{self, Board};
use septum::emulator::{self, RunOptions};
use septum::image;
use septum::linux;
use septum::memory_chart;
use septum::package;
use septum::scenario::{self, Scenario};
use septum::trace;
use septum::trace_run;

#[derive(Parser)]
#[command(name = "septum", about = "Build, run and measure Septum systems")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a system on the emulator with the console on this terminal.
    Run {
        /// Board folder under board-support/.
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// System description; the board's default system if absent.
        #[arg(long)]
        system: Option<PathBuf>,
        /// Emulator RAM, such as 512M or 2G; the board's default if absent.
        #[arg(long)]
        ram: Option<String>,
        /// End the run on its own after this many seconds: type Ctrl-T and
        /// `shutdown` on the console, then fail unless the system shut down cleanly
        /// within a minute.
        #[arg(long = "for", value_name = "SECONDS")]
        for_s: Option<u64>,
        /// Print the kernel's log (its log channel, decoded) after the run.
        #[arg(long)]
        logs: bool,
    },
    /// Print the kernel's log of the last `run` (its log channel, decoded
    /// against the kernel's ELF), with timestamps.
    Logs {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// A captured log channel to decode instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Run a system and write what the kernel did as a Perfetto trace (open it in
    /// ui.perfetto.dev) and a picture beside it (SVG).
    TraceRun {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// System description; the board's default system if absent.
        #[arg(long)]
        system: Option<PathBuf>,
        /// End the run after this many seconds (the default system runs until
        /// ended); without it the system must end on its own.
        #[arg(long = "for", value_name = "SECONDS")]
        for_s: Option<u64>,
        /// Where to write the trace; `target/trace-run/<board>/<system>.json` if absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write the bootable image of a system.
    Image {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        #[arg(long)]
        system: Option<PathBuf>,
        /// Where to write the image.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Write a Linux partition's generated device tree and initrd into a folder,
    /// and print how to boot them with its kernel on bare QEMU.
    LinuxParts {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// System description.
        #[arg(long)]
        system: PathBuf,
        /// The Linux partition; the system's only one if absent.
        #[arg(long)]
        partition: Option<String>,
        /// The folder to write `<partition>.dtb` and `<partition>.initrd` into.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Draw a system's memory and time layout as SVG.
    Layout {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// System description; the board's default system if absent.
        #[arg(long)]
        system: Option<PathBuf>,
        /// Where to write the SVG.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Chart memory over time (SVG) from a CSV of the memory scheduler's samples.
    Chart {
        /// The CSV file (`time_ms,partition,target_kib,actual_kib,min_kib,max_kib,used_kib`).
        csv: PathBuf,
        /// Where to write the SVG.
        #[arg(long, short)]
        output: PathBuf,
        /// The chart's title; "memory over time (<CSV>)" if absent.
        #[arg(long)]
        title: Option<String>,
    },
    /// Validate system descriptions for a board, with their partition images and
    /// the package `image` would write, and report every broken rule.
    Check {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// Description files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run test scenarios from tests/scenarios/ by name and report each.
    Scenario {
        /// Scenario names (file stems).
        #[arg(required = true)]
        names: Vec<String>,
        /// Print the console of scenarios that pass too.
        #[arg(long)]
        console: bool,
    },
    /// Write the traceability matrix (Markdown, JUnit, JSON) from the output of
    /// `cargo test`, and fail if a must-verify requirement lacks a passing test, a
    /// test names an unknown requirement, or a test verifies nothing.
    Trace {
        /// A file holding the output of `cargo test`.
        #[arg(long)]
        results: PathBuf,
        /// Where to write the files.
        #[arg(long, default_value = "target/trace")]
        out: PathBuf,
    },
    /// Run the hypercall fuzzer for longer than the default suite does.
    Fuzz {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
        /// Hypercalls to make.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u32,
        /// Seed (0: taken from the counter, and printed).
        #[arg(long, default_value_t = 0)]
        seed: u32,
    },
    /// Run the benchmarks and print their figures.
    Bench {
        #[arg(long, default_value = "qemu-virt")]
        board: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run {
            board,
            system,
            ram,
            for_s,
            logs,
        } => {
            let board = boards::load(&board)?;
            println!("{}", emulator::quit_hint(&board, for_s));
            let image = image_for(&board, system)?;
            let quit_after = for_s.map(Duration::from_secs);
            let options = RunOptions {
                ram: ram.unwrap_or_else(|| board.default_ram.clone()),
                icount: false,
                timeout: quit_after.map_or(Duration::MAX, |after| after + Duration::from_secs(60)),
                cpus: None,
                input: Vec::new(),
                kernel_args: None,
                outside: None,
                quit_after,
                log: Some(trace_run::run_log(&board)),
            };
            let clean = if quit_after.is_some() {
                emulator::run_timed(&board, &image, &options)?
            } else {
                emulator::run_interactive(&board, &image, &options)?
            };
            if logs {
                trace_run::print_log(&board, None)?;
            }
            if !clean {
                bail!("the system did not shut down cleanly");
            }
        }
        Command::Logs { board, file } => trace_run::print_log(&boards::load(&board)?, file)?,
        Command::TraceRun {
            board,
            system,
            for_s,
            output,
        } => {
            let board = boards::load(&board)?;
            let system = system.unwrap_or_else(|| boards::default_system(&board));
            trace_run::report(&trace_run::trace_run(&board, &system, for_s, output)?);
        }
        Command::Image {
            board,
            system,
            output,
        } => {
            let board = boards::load(&board)?;
            let image = image_for(&board, system)?;
            std::fs::copy(&image, &output)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}", output.display());
        }
        Command::LinuxParts {
            board,
            system,
            partition,
            output,
        } => {
            let board = boards::load(&board)?;
            let description = boards::load_system(&system, &board)?;
            let parts = linux::write_parts(&description, &board, partition.as_deref(), &output)?;
            let virtio: String = parts
                .qemu_virtio_options()
                .iter()
                .map(|option| format!(" {option}"))
                .collect();
            println!(
                "wrote {} and {} ({}); to boot them on bare QEMU:\n\
                 qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -smp {} -m {}K -nographic -kernel {} -initrd {} -dtb {}{virtio}",
                parts.device_tree.display(),
                parts.initrd.display(),
                parts.virtio_summary(),
                parts.vcpus,
                parts.ram >> 10,
                parts.kernel.display(),
                parts.initrd.display(),
                parts.device_tree.display()
            );
        }
        Command::Layout {
            board,
            system,
            output,
        } => {
            let board = boards::load(&board)?;
            let path = system.unwrap_or_else(|| boards::default_system(&board));
            let description = boards::load_system(&path, &board)?;
            std::fs::write(&output, septum::layout::render_svg(&description, &board))
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}", output.display());
        }
        Command::Chart { csv, output, title } => {
            let samples = memory_chart::read_csv(&csv)?;
            if samples.is_empty() {
                bail!("no memory samples in {}", csv.display());
            }
            let title = title.unwrap_or_else(|| format!("memory over time ({})", csv.display()));
            memory_chart::plot(&samples, &title, &output)?;
            println!("wrote {}", output.display());
        }
        Command::Check { board, files } => {
            let board = boards::load(&board)?;
            let mut failed = false;
            for file in &files {
                // Everything `image` checks: the description, then its images and
                // package (built in memory and set up as the kernel would).
                let checked = boards::load_system(file, &board)
                    .and_then(|system| package::build(&system, &board).map(|_| system));
                match checked {
                    Ok(system) => println!(
                        "{}: valid for `{}` ({} partitions, {} queues; images and package checked)",
                        file.display(),
                        board.name,
                        system.partitions.len(),
                        system.queues.len()
                    ),
                    Err(errors) => {
                        failed = true;
                        eprintln!("{errors}");
                    }
                }
            }
            if failed {
                std::process::exit(1);
            }
        }
        Command::Scenario { names, console } => {
            let mut failed = 0;
            let bar = septum::progress::bar(names.len() as u64, "scenarios");
            for name in &names {
                bar.set_message(name.clone());
                let outcome = Scenario::load(name)?.run()?;
                bar.inc(1);
                bar.suspend(|| {
                    if outcome.failures.is_empty() {
                        println!("scenario {name}: pass");
                        if console {
                            println!("{}", outcome.console);
                        }
                    } else {
                        println!("scenario {name}: FAIL\n{}", outcome.console);
                        for failure in &outcome.failures {
                            println!("  - {failure}");
                        }
                    }
                });
                failed += usize::from(!outcome.failures.is_empty());
            }
            bar.finish_and_clear();
            println!("{} passed, {failed} failed", names.len() - failed);
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Command::Bench { board } => bench(&board)?,
        Command::Fuzz {
            board,
            iterations,
            seed,
        } => {
            let name = if board == "pc" { "pc-fuzz" } else { "fuzz" };
            let mut scenario = Scenario::load(name)?;
            scenario.arguments.insert(
                "fuzz".into(),
                (u64::from(seed) << 32) | u64::from(iterations),
            );
            scenario.expect = vec![
                "[fuzz] kernel-alive=yes".into(),
                "@@ kernel shutdown status=ok".into(),
            ];
            scenario.timeout_s = 3600;
            let outcome = scenario.run()?;
            for line in outcome
                .console
                .lines()
                .filter(|l| l.starts_with("[fuzz]") || l.contains("denied-total"))
            {
                println!("{line}");
            }
            if !outcome.failures.is_empty() {
                bail!(
                    "fuzzing found a problem: {:?}\n{}",
                    outcome.failures,
                    outcome.console
                );
            }
        }
        Command::Trace { results, out } => {
            let repo = septum::repo_root();
            let requirements = trace::load_catalogue(&repo.join("tests/requirements"))?;
            let tags = trace::collect_tags(repo)?;
            let output = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let traced = trace::trace(&requirements, &tags, &trace::parse_results(&output));
            std::fs::create_dir_all(&out)?;
            std::fs::write(
                out.join("matrix.md"),
                trace::matrix_markdown(&requirements, &traced),
            )?;
            std::fs::write(out.join("junit.xml"), trace::junit(&traced))?;
            std::fs::write(out.join("trace.json"), trace::json(&requirements, &traced))?;
            println!("wrote {}/matrix.md, junit.xml, trace.json", out.display());
            if !traced.problems.is_empty() {
                for problem in &traced.problems {
                    eprintln!("trace: {problem}");
                }
                bail!("{} traceability problems", traced.problems.len());
            }
        }
    }
    Ok(())
}

/// Runs the four time attacks of `partitions/hostile` and `partitions/balloon`
/// beside a meter with a 400 per mille window (`tests/scenarios/*time-*.toml`)
/// and prints the meter's mean share and its worst frame under each.
fn time_isolation_bench(board: &str, arch: &str, clock: &str) -> Result<()> {
    let prefix = if board == "pc" { "pc-" } else { "" };
    println!(
        "time isolation ({arch}, {clock}): a meter's share of its 400 per mille window, per mille:"
    );
    println!("| attack beside it | mean | worst frame | frames |");
    println!("|---|---|---|---|");
    for (scenario, attack) in [
        ("time-flood", "console flood (256-byte writes)"),
        ("time-traps", "trap storm (MMIO, resumed by the service VM)"),
        ("time-restarts", "restart storm of a large partition"),
        ("time-balloon", "balloon storm (inflate and deflate)"),
    ] {
        let console = run_benchmark(&format!("{prefix}{scenario}"))?;
        let line = console
            .lines()
            .find_map(|line| line.strip_prefix("[meter] share="))
            .with_context(|| format!("no meter line in {scenario}"))?;
        let field = |key: &str| value_of(line, key).unwrap_or("?").to_owned();
        let mean = line.split_whitespace().next().unwrap_or("?");
        println!(
            "| {attack} | {mean} | {} | {} |",
            field("worst_frame="),
            field("frames=")
        );
    }
    Ok(())
}

/// Prints each core's kernel-lock counts from a benchmark's console (the
/// kernel's `@@ kernel locks` lines at shutdown).
fn print_lock_counts(console: &str, run: &str) {
    for line in console.lines() {
        if let Some(counts) = line.strip_prefix("@@ kernel locks ") {
            println!("kernel lock ({run}): {counts}");
        }
    }
}

/// Prints the null, general and policy-trap round trips with 2 partitions in the
/// system (`console`, the main benchmark's run) against 8 and 64
/// (`bench-8-<arch>`, `bench-64-<arch>`): they should not grow.
fn flatness_bench(two: &str, arch: &str, clock: &str) -> Result<()> {
    let eight = run_benchmark(&format!("bench-8-{arch}"))?;
    let sixty_four = run_benchmark(&format!("bench-64-{arch}"))?;
    let (unit, key) = if arch == "aarch64" {
        ("ns", "ns=")
    } else {
        ("ticks", "ticks_per_call=")
    };
    println!("round trips by partitions in the system ({arch}, {clock}), {unit}:");
    println!("| figure | 2 partitions | 8 | 64 |");
    println!("|---|---|---|---|");
    for name in ["null-hypercall", "general-hypercall", "policy-trap"] {
        let figure = |console: &str| -> Result<String> {
            let line = figure_line(console, name)?;
            value_of(line, key)
                .map(str::to_owned)
                .with_context(|| format!("unreadable {name} figure: {line}"))
        };
        println!(
            "| {name} | {} | {} | {} |",
            figure(two)?,
            figure(&eight)?,
            figure(&sixty_four)?
        );
    }
    Ok(())
}

/// Boots systems of 2, 8 and 64 partitions of 2 MiB (pc: 16, its scale
/// scenario) and prints the time from reset to every partition started, from the
/// kernel's `@@ kernel running` line, with what its state took.
fn boot_bench(board: &str, arch: &str, clock: &str) -> Result<()> {
    let scenarios: &[&str] = if board == "pc" {
        &["pc-scale"]
    } else {
        &["boot-2", "boot-8", "scale-64"]
    };
    println!("boot ({arch}, {clock}): reset to every partition started, partitions of 2 MiB:");
    println!("| partitions | cores | time (µs) | kernel state (bytes) |");
    println!("|---|---|---|---|");
    for scenario in scenarios {
        let console = run_benchmark(scenario)?;
        let field = |prefix: &str, key: &str| {
            console
                .lines()
                .find_map(|line| line.strip_prefix(prefix))
                .and_then(|line| value_of(line, key))
                .map(str::to_owned)
                .with_context(|| format!("no `{prefix}{key}` in {scenario}"))
        };
        println!(
            "| {} | {} | {} | {} |",
            field("@@ kernel running ", "partitions=")?,
            field("@@ kernel boot ", "cpus=")?,
            field("@@ kernel running ", "us=")?,
            field("@@ kernel state ", "bytes=")?,
        );
        if scenario.contains("scale") {
            print_lock_counts(&console, scenario);
        }
    }
    Ok(())
}

/// Boots Debian's kernel to `/init` alone on its core under Septum and on bare
/// QEMU (same kernel, device tree and initrd, both under `-icount`), with the
/// default command line and with `quiet` (which leaves the console nearly
/// silent, to tell the console's cost apart), and prints when `/init` came up
/// by Linux's own clock (which starts when its timer is set up, so both leave
/// out the same first part of its boot) and the ratio; then the
/// kernel-emulated accesses the `vgic-emulated` probe times.
fn linux_boot_bench(board: &boards::Board, clock: &str) -> Result<()> {
    println!("Linux boot to /init, Linux's own clock (aarch64, {clock}), 128 MiB, one vCPU:");
    println!("| command line | bare QEMU (ms) | under Septum, alone on its core (ms) | ratio |");
    println!("|---|---|---|---|");
    for (what, system, scenario) in [
        ("default", "bench-linux", "bench-linux-aarch64"),
        (
            "default + quiet",
            "bench-linux-quiet",
            "bench-linux-quiet-aarch64",
        ),
    ] {
        let system_file = septum::from_root(format!("tests/systems/{system}.toml"));
        let description = boards::load_system(&system_file, board)?;
        let folder = septum::from_root(format!("target/linux/{system}"));
        let parts = linux::write_parts(&description, board, Some("linux"), &folder)?;
        let bare = linux::bare_boot_to_init(&parts, std::time::Duration::from_secs(300))?;
        let console = run_benchmark(scenario)?;
        let septum = console
            .lines()
            .find_map(linux::init_up_ns)
            .with_context(|| format!("no time of /init in {scenario}"))?;
        let ms = |ns: u64| ns as f64 / 1e6;
        let ratio = septum as f64 / bare as f64;
        println!(
            "| {what} | {:.3} | {:.3} | {ratio:.3} |",
            ms(bare),
            ms(septum)
        );
    }
    let probe = run_benchmark("vgic-emulated")?;
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
        println!("{what}, round trip from a Linux partition (aarch64, {clock}): {figure}");
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
fn linux_balloon_bench(board: &boards::Board, clock: &str) -> Result<()> {
    let system_file = septum::from_root("tests/systems/bench-linux-balloon.toml");
    let description = boards::load_system(&system_file, board)?;
    let folder = septum::from_root("target/linux/bench-linux-balloon");
    let parts = linux::write_parts(&description, board, Some("linux"), &folder)?;
    let console = linux::balloon_bench::bare(&parts, Duration::from_secs(300))?;
    let bare = linux::balloon_bench::figures(&console)
        .with_context(|| format!("bare QEMU's balloon benchmark:\n{console}"))?;
    let septum = linux::balloon_bench::figures(&run_benchmark("bench-linux-balloon-aarch64")?)?;
    println!(
        "Linux virtio-balloon, {} MiB, one vCPU: guest-virtual time from the target's change to the last page list taken (aarch64, {clock}):",
        parts.ram >> 20
    );
    println!("| step | bare QEMU, QEMU's device | under Septum | Septum / bare |");
    println!("|---|---|---|---|");
    for (bare, septum) in bare.iter().zip(&septum) {
        let figure = |f: &linux::balloon_bench::Figure| {
            let mib_per_s = f.mib_per_s();
            format!(
                "{:.1} ms ({mib_per_s:.0} MiB/s, {:.2} GiB/s)",
                f.seconds() * 1e3,
                mib_per_s / 1024.0
            )
        };
        println!(
            "| {:?} {} MiB | {} | {} | {:.3} |",
            bare.step,
            bare.kib / 1024,
            figure(bare),
            figure(septum),
            septum.seconds() / bare.seconds()
        );
    }
    Ok(())
}

/// Runs benchmark scenario `name` and returns its console.
fn run_benchmark(name: &str) -> Result<String> {
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

/// The value of the `key=value` field (`key` with its `=`) among the
/// space-separated fields of `line`.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key))
}

/// The fields of figure `name` in a benchmark's console (what follows
/// `bench <name> ` on its line).
fn figure_line<'a>(console: &'a str, name: &str) -> Result<&'a str> {
    console
        .lines()
        .find_map(|line| line.split(&format!("bench {name} ")).nth(1))
        .with_context(|| format!("no {name} figure in the benchmark output"))
}

/// Runs the messaging benchmark (`partitions/bench`, `queue-bench`) and prints
/// the flip-versus-copy table and the streaming figures.
fn messaging_bench(arch: &str, clock: &str) -> Result<()> {
    let console = run_benchmark(&format!("bench-queue-{arch}"))?;
    // Per message or page: ns where the counter's frequency is known, else ticks.
    let figure = |name: &str| -> Result<f64> {
        let line = figure_line(&console, name)?;
        let field = |key: &str| value_of(line, key).and_then(|v| v.parse::<f64>().ok());
        field("ns=")
            .or_else(|| field("ticks_per_message=").or_else(|| field("ticks_per_page=")))
            .with_context(|| format!("unreadable {name} figure: {line}"))
    };
    let unit = if arch == "aarch64" { "ns" } else { "ticks" };
    println!("messaging ({arch}, {clock}), cost per message in {unit}:");
    println!("| payload | copy (4 KiB chunks) | flip | flip / copy |");
    println!("|---|---|---|---|");
    for size in [64u64, 1024, 2048, 4096, 16 * 1024, 64 * 1024] {
        let copy = figure(&format!("copy-{size}"))?;
        let flip = figure(&format!("flip-{size}"))?;
        let payload = if size < 1024 {
            format!("{size} B")
        } else {
            format!("{} KiB", size / 1024)
        };
        println!("| {payload} | {copy:.0} | {flip:.0} | {:.2} |", flip / copy);
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
        println!("streaming 4 KiB pages, {what}: {per_page:.0} {unit} per page{rate}");
    }
    Ok(())
}

/// Runs the balloon benchmarks (`partitions/balloon`: `balloon-bench` and
/// `balloon-move`) and prints the inflate and deflate rates and the time the
/// memory scheduler takes to move 64 MiB from an idle guest to a busy one.
fn balloon_bench(arch: &str, clock: &str) -> Result<()> {
    let rates = run_benchmark(&format!("balloon-bench-{arch}"))?;
    let moved = run_benchmark(&format!("balloon-move-{arch}"))?;
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
    println!("ballooning ({arch}, {clock}), {unit}:");
    println!("| batch | inflate | deflate |");
    println!("|---|---|---|");
    for batch in [1, 16, septum_core::abi::balloon::BATCH_MAX] {
        println!(
            "| {batch} | {} | {} |",
            rate(&format!("inflate-batch-{batch}"))?,
            rate(&format!("deflate-batch-{batch}"))?
        );
    }
    let pages = field(&moved, "move", "pages=")?;
    let time = if timed {
        format!("{:.1} ms", field(&moved, "move", "ns=")? as f64 / 1e6)
    } else {
        format!("{} ticks", field(&moved, "move", "ticks=")?)
    };
    println!(
        "memory scheduler moving {} MiB from an idle guest to a busy one: {time}",
        pages * 4 / 1024
    );
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
fn virtio_bench(arch: &str, clock: &str) -> Result<()> {
    let console = run_benchmark(&format!("virtio-bench-{arch}"))?;
    let timed = arch == "aarch64";
    let unit = if timed {
        "pages per second of guest-virtual time"
    } else {
        "ticks per page"
    };
    println!("ballooning through virtio and through hypercalls ({arch}, {clock}), {unit}:");
    println!("| front end | pages a chain or batch | inflate | deflate |");
    println!("|---|---|---|---|");
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
            println!(
                "| {front} | {size} | {} | {} |",
                page_rate(&console, &format!("{prefix}-inflate-{what}-{size}"), timed)?,
                page_rate(&console, &format!("{prefix}-deflate-{what}-{size}"), timed)?
            );
        }
    }
    Ok(())
}

/// Runs the network benchmark (`bench-net-<arch>`: UDP through the kernel's
/// router, then a page-flip stream, in one run) and prints both per unit and
/// per byte.
fn net_bench(arch: &str, clock: &str) -> Result<()> {
    let console = run_benchmark(&format!("bench-net-{arch}"))?;
    let timed = arch == "aarch64";
    let unit = if timed { "ns" } else { "ticks" };
    println!("UDP through the router against page flips, one run ({arch}, {clock}):");
    println!("| path | bytes a unit | {unit} a unit | bytes per 1,000 {unit} |");
    println!("|---|---|---|---|");
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
        println!(
            "| {what} | {bytes:.0} | {per_unit:.0} | {:.1} |",
            bytes / per_unit * 1000.0
        );
    }
    Ok(())
}

fn image_for(board: &Board, system: Option<PathBuf>) -> Result<PathBuf> {
    let system = system.unwrap_or_else(|| boards::default_system(board));
    let description = boards::load_system(&system, board)?;
    let name = system
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("system");
    scenario::build_image(board, &description, name, "")
}

fn bench(board_name: &str) -> Result<()> {
    let board = boards::load(board_name)?;
    let console = run_benchmark(&format!("bench-{}", board.arch))?;
    let clock = match board.arch.as_str() {
        "aarch64" => "QEMU -icount shift=0: 1 ns = 1 instruction",
        _ => "Bochs TSC ticks, clock: sync=none",
    };
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
        println!("{what} ({}, {clock}): {figure}", board.arch);
    }
    print_lock_counts(&console, "one core");
    let two = run_benchmark(&format!("bench-2cpu-{}", board.arch))?;
    println!(
        "policy trap round trip, 2 cores, the other idle ({}, {clock}): {}",
        board.arch,
        figure_line(&two, "policy-trap")?
    );
    print_lock_counts(&two, "2 cores, the other idle");
    flatness_bench(&console, &board.arch, clock)?;
    boot_bench(&board.name, &board.arch, clock)?;
    messaging_bench(&board.arch, clock)?;
    balloon_bench(&board.arch, clock)?;
    virtio_bench(&board.arch, clock)?;
    net_bench(&board.arch, clock)?;
    time_isolation_bench(&board.name, &board.arch, clock)?;
    if board.arch == "aarch64" {
        linux_boot_bench(&board, clock)?;
        linux_balloon_bench(&board, clock)?;
        let network = run_benchmark(linux::net_bench::SCENARIO)?;
        print!("{}", linux::net_bench::report(&network, clock)?);
    }
    let size = image::kernel_size(&image::kernel_elf(&board.arch)?)?;
    println!(
        "kernel image ({}): {} bytes loaded (code and data), {} bytes zero-initialised (bss), {} bytes of stacks after the package (in no file)",
        board.arch, size.loaded, size.zeroed, size.claimed_after_package
    );
    Ok(())
}
