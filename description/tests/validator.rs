//! The validator's test suite: one small bad file per rule in `tests/bad/`, each
//! starting with the exact errors it must produce (`# expect: ...` lines), and a
//! good file that uses every feature of the format.

use std::path::{Path, PathBuf};

use septum_description::{
    Board, CapKind, Kind, RestartBudget, Right, Supervision, TrapAction, TrapClass, parse,
};

fn board() -> Board {
    Board::load(Path::new("tests/board")).expect("test board")
}

fn bad_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("tests/bad")
        .expect("tests/bad")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_owned)
        .collect()
}

/// Verifies: SK-CFG-001, SK-CFG-002
#[test]
fn each_bad_file_fails_with_exactly_its_expected_errors() {
    let board = board();
    for path in bad_files() {
        let text = std::fs::read_to_string(&path).expect("bad file");
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let errors = parse(&path, &text, &board).expect_err(&path.display().to_string());
        let actual: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(actual, expected, "{}", path.display());
    }
}

/// Verifies: SK-CFG-002
#[test]
fn every_rule_has_a_bad_file() {
    let mut covered = std::collections::BTreeSet::new();
    for path in bad_files() {
        let text = std::fs::read_to_string(&path).expect("bad file");
        for line in expectations(&text) {
            let rule = line
                .split("error[")
                .nth(1)
                .and_then(|r| r.split(']').next());
            covered.insert(rule.expect("an error[rule]").to_owned());
        }
    }
    for rule in septum_description::RULES {
        assert!(covered.contains(*rule), "rule `{rule}` has no bad file");
    }
}

/// Verifies: SK-CFG-003
#[test]
fn the_good_file_validates_with_every_feature() {
    let path = Path::new("tests/good.toml");
    let text = std::fs::read_to_string(path).expect("good file");
    let system = parse(path, &text, &board()).unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<&str> = system.boot_order().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["service", "alpha"]);
    assert_eq!(system.major_frame_us, Some(10_000));
    let alpha = &system.partitions[0];
    assert_eq!(alpha.kind, Kind::Guest);
    assert_eq!(
        (alpha.memory_min, alpha.ram, alpha.memory_max),
        (1 << 20, 2 << 20, 4 << 20)
    );
    assert_eq!(alpha.at, Some(0x4200_0000));
    assert_eq!(alpha.devices, ["rtc"]);
    assert_eq!(alpha.receive_window, 0);
    assert_eq!(alpha.caps.len(), 4);
    let actions: Vec<_> = TrapClass::ALL
        .map(|class| alpha.supervision.action(class))
        .into();
    assert_eq!(
        actions,
        [
            TrapAction::Stop,
            TrapAction::Service,
            TrapAction::Service,
            TrapAction::Stop
        ]
    );
    assert_eq!(
        alpha.supervision.restart_budget,
        RestartBudget {
            restarts: 5,
            period_ms: 60_000
        }
    );
    assert_eq!(alpha.supervision.watchdog_ms, Some(50));
    let service = &system.partitions[1];
    assert_eq!(service.supervision, Supervision::default());
    assert_eq!(service.receive_window, 128 << 10);
    assert_eq!(service.caps[1].kind, CapKind::Control("alpha".into()));
    assert_eq!(service.caps[1].rights, [Right::Inspect, Right::Restart]);
    assert_eq!(system.queues[0].max_in_flight, 4);
}

/// Verifies: SK-CFG-003
#[test]
fn receive_windows_default_to_64k_where_a_queue_is_received_on() {
    let text = r#"
board = "testboard"

[[partition]]
name = "service"
kind = "service"
image = "service-vm"
ram = "2M"
caps = [{ kind = "queue-receive", queue = "q" }]

[[partition]]
name = "g"
kind = "guest"
image = "hello"
ram = "2M"
caps = [{ kind = "queue-send", queue = "q" }]

[[queue]]
name = "q"
from = "g"
to = "service"
depth = 4
max_in_flight = 2
"#;
    let system = parse(Path::new("inline.toml"), text, &board()).unwrap_or_else(|e| panic!("{e}"));
    let windows: Vec<u64> = system.partitions.iter().map(|p| p.receive_window).collect();
    assert_eq!(windows, [64 << 10, 0]);
}
