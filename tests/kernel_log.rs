//! The kernel's log channel end to end, on both boards: the `kernel-trace` and
//! `pc-kernel-trace` scenarios boot a system whose guest crashes and is
//! restarted, with the log channel captured (QEMU `virt`'s second PL011, Bochs'
//! port 0xE9); this test decodes the capture against the kernel's ELF and checks
//! the kernel's own records and the trace it sent at shutdown, through the
//! Perfetto trace file the host tool writes.

use septum::kernel_log;
use septum::scenario::Scenario;
use septum::timeline::Timeline;

/// Runs scenario `name` (which must pass) and decodes its kernel log.
fn captured_log(name: &str, arch: &str) -> kernel_log::Log {
    let scenario = Scenario::load(name).expect("scenario file");
    let outcome = scenario.run().expect("scenario could not be run");
    assert!(
        outcome.failures.is_empty(),
        "scenario failed:\n{}\n--- console ---\n{}",
        outcome.failures.join("\n"),
        outcome.console
    );
    let elf = septum::image::kernel_elf(arch).expect("the kernel");
    let capture = outcome.log.expect("a scenario captures the log channel");
    kernel_log::decode_file(&elf, &capture).expect("the capture decodes")
}

mod qemu_virt {
    /// Verifies: SK-AUD-010, SK-AUD-011
    #[test]
    fn the_kernel_log_decodes_and_its_trace_shows_the_fault_and_the_restart_in_order() {
        super::check("kernel-trace", "aarch64", "board=qemu-virt");
    }
}

mod pc {
    /// Verifies: SK-AUD-010, SK-AUD-011
    #[test]
    fn the_kernel_log_decodes_and_its_trace_shows_the_fault_and_the_restart_in_order() {
        super::check("pc-kernel-trace", "x86_64", "board=pc");
    }
}

/// Decodes the log of scenario `name` on `arch` (whose boot record names
/// `board`), writes its Perfetto trace and checks both.
fn check(name: &str, arch: &str, board: &str) {
    let log = captured_log(name, arch);
    assert_eq!(log.malformed, 0, "every frame decodes");
    let first = log.lines.first().expect("the kernel logged");
    assert!(
        first
            .message
            .starts_with(&format!("boot arch={arch} {board}"))
            && first.message.ends_with("log-channel=true"),
        "the boot record comes first: {first}"
    );
    assert!(!first.timestamp.is_empty(), "frames carry timestamps");
    let last = log.lines.last().expect("the kernel logged");
    assert_eq!(
        last.message, "shutdown clean=true",
        "the shutdown record comes last"
    );

    let names = ["service", "faulty", "hello"].map(String::from).to_vec();
    let json = septum::from_root("target/trace-run").join(format!("{name}.json"));
    let files = septum::trace_run::write_trace(&log, names.clone(), &json, name)
        .expect("every switch on a core is matched");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.json).expect("trace written"))
            .expect("the trace is JSON");
    let events = written["traceEvents"].as_array().expect("trace events");
    // On every core track, runs follow one another without overlapping.
    let mut runs: Vec<(u64, u64, u64)> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["pid"] == 1)
        .map(|e| {
            let number = |key: &str| e[key].as_u64().expect("a number");
            (number("tid"), number("ts"), number("dur"))
        })
        .collect();
    runs.sort();
    assert!(runs.len() > 10, "the partitions took turns: {runs:?}");
    for pair in runs.windows(2) {
        let ((core_a, start_a, duration_a), (core_b, start_b, _)) = (pair[0], pair[1]);
        assert!(
            core_a != core_b || start_a + duration_a <= start_b,
            "runs overlap on core {core_a}: {pair:?}"
        );
    }
    let tracks: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    for track in ["core 0", "service", "faulty", "hello"] {
        assert!(tracks.contains(&track), "no track `{track}` in {tracks:?}");
    }
    // The faulty guest's supervision marks, in the trace file's order.
    let faulty = 1;
    let mut marks: Vec<(u64, &str)> = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["cat"] == "supervision" && e["tid"] == faulty)
        .map(|e| {
            (
                e["ts"].as_u64().expect("ts"),
                e["name"].as_str().expect("name"),
            )
        })
        .collect();
    marks.sort();
    let names: Vec<&str> = marks.iter().map(|(_, name)| *name).collect();
    assert_eq!(
        names,
        ["start gen=1", "fault gen=1", "restart gen=2", "exit code=0"],
        "faulty starts, faults, is restarted and ends itself, in that order"
    );
    let timeline: &Timeline = &files.timeline;
    assert_eq!(timeline.overwritten, [0], "the rings held the whole run");
}
