//! `septum`: the host tool. Builds bootable images from system descriptions, runs
//! them on the emulator, and runs the benchmarks.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use septum::boards::{self, Board};
use septum::emulator::{self, RunOptions};
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
    /// Measure the figures the README states (see src/figures.rs): print them,
    /// fail if the README disagrees (--check), or write them into the README and
    /// docs/figures.md (--write).
    Figures {
        #[arg(long)]
        check: bool,
        #[arg(long, conflicts_with = "check")]
        write: bool,
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
            let (image, cpus) = image_for(&board, system)?;
            let quit_after = for_s.map(Duration::from_secs);
            let options = RunOptions {
                ram: ram.unwrap_or_else(|| board.default_ram.clone()),
                icount: false,
                timeout: quit_after.map_or(Duration::MAX, |after| after + Duration::from_secs(60)),
                cpus: (cpus > 1).then_some(cpus),
                cpu_model: None,
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
            let (image, _) = image_for(&board, system)?;
            if board.sd_image {
                let kernel = std::fs::read(&image)
                    .with_context(|| format!("reading {}", image.display()))?;
                septum::sd_image::write(&board, &kernel, &output)?;
            } else {
                std::fs::copy(&image, &output)
                    .with_context(|| format!("writing {}", output.display()))?;
            }
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
        Command::Bench { board } => septum::bench::all(
            &mut septum::bench::Report::new(septum::bench::Source::Run),
            &board,
        )?,
        Command::Figures { check, write } => {
            septum::figures::command(septum::repo_root(), check, write)?
        }
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
            std::fs::write(
                out.join("report.html"),
                septum::report::html(repo, &requirements, &tags, &traced),
            )?;
            println!(
                "wrote {}/matrix.md, junit.xml, trace.json, report.html",
                out.display()
            );
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

/// The bootable image of `system` (the board's default system if none), and the
/// processors it needs: one more than the highest core a partition is pinned to.
fn image_for(board: &Board, system: Option<PathBuf>) -> Result<(PathBuf, u32)> {
    let system = system.unwrap_or_else(|| boards::default_system(board));
    let description = boards::load_system(&system, board)?;
    let name = system
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("system");
    let cpus = boards::cpus_used(&description);
    Ok((scenario::build_image(board, &description, name, "")?, cpus))
}
