//! Host tests of the scenario checks: consoles and logs fed to them by hand.

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
        ["`@@ net b address=10.0.0.3/24 sent=5 received=800`: received=800, expected at least 801"]
    );
    assert_eq!(
        checked(number(0, Some(0))),
        ["`@@ net b address=10.0.0.3/24 sent=5 received=800`: received=800, expected from 0 to 0"]
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
    let failures = scenario(&["ready", "[g] hi"], &["FAIL"]).check(&output(GOOD, true), "service");
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
        ["input 2 of 2 not typed: the console never showed `prompt` (after the inputs before it)"]
    );
}
