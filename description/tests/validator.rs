//! The validator's test suite: one small bad file per rule in `tests/bad/`, each
//! starting with the exact errors it must produce (`# expect: ...` lines), and a
//! good file that uses every feature of the format. A bad file that breaks an
//! image rule is valid as a description; its `# elf: <file> <recipe>` lines give
//! the ELF files it needs (see `elf/mod.rs`), and its `# image:` and `# file:`
//! lines the kernel and initrd files of its Linux partitions (see
//! `linux_files/mod.rs`), written to a scratch folder where its relative
//! `path`s and workspace programs are looked for. A `# board-arch: <arch>` line
//! checks it against the test board with that architecture, and a
//! `# board-reserved: none` line against the test board without its reserved
//! memory (so that a partition may be placed identity, at 0x4000_0000), and a
//! `# board-gic: 2` line against the test board with a GICv2.

mod elf;
mod linux_files;

use std::path::{Path, PathBuf};

use septum_core::abi::virtio::Device;
use septum_description::{
    Board, CapKind, DESCRIPTION_MAX, ERRORS_SHOWN, ImageFile, Kind, NIC, RestartBudget, Rights,
    Supervision, TrapAction, TrapClass, load, load_images, parse,
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

/// Where the test files of a description are: a relative path, or a workspace
/// program or a default Linux file (each written as a good one on first use),
/// in `folder`; an absolute path as it is.
fn locate_in(folder: &Path, file: ImageFile<'_>) -> PathBuf {
    let (name, good) = match file {
        ImageFile::Described(path) => return folder.join(path),
        ImageFile::Workspace(name) => (format!("program-{name}"), elf::build("")),
        ImageFile::DefaultKernel => ("default-kernel".into(), linux_files::image("")),
        ImageFile::DefaultInitrd => ("default-initrd".into(), linux_files::file("len=100")),
    };
    let path = folder.join(name);
    if !path.exists() {
        std::fs::write(&path, good).expect("write a good file");
    }
    path
}

fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_owned)
        .collect()
}

/// Verifies: SK-CFG-001, SK-CFG-002, SK-CFG-005, SK-CFG-007, SK-LNX-001, SK-CFG-008, SK-CFG-009, SK-CFG-010, SK-CFG-011, SK-CFG-013
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
        let mut board = match text.lines().find_map(|l| l.strip_prefix("# board-arch: ")) {
            Some(arch) => Board {
                arch: arch.into(),
                ..board.clone()
            },
            None => board.clone(),
        };
        if text.lines().any(|l| l == "# board-reserved: none") {
            board.reserved.clear();
        }
        if text.lines().any(|l| l == "# board-gic: 2") {
            board.gic_version = Some(2);
        }
        let errors = match parse(&path, &text, &board) {
            Err(errors) => errors,
            Ok(system) => {
                let stem = path.file_stem().expect("a name").to_string_lossy();
                let folder = scratch(&format!("bad-{stem}"));
                for line in text.lines() {
                    if let Some(recipe) = line.strip_prefix("# elf: ") {
                        elf::write(&folder, recipe);
                    } else if let Some(recipe) = line.strip_prefix("# image: ") {
                        linux_files::write(&folder, recipe, linux_files::image);
                    } else if let Some(recipe) = line.strip_prefix("# file: ") {
                        linux_files::write(&folder, recipe, linux_files::file);
                    }
                }
                load_images(&system, &board, &|file| locate_in(&folder, file))
                    .expect_err(&path.display().to_string())
            }
        };
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
    // The port is a virtio device too, after those `virtio` lists (by slot).
    assert_eq!(alpha.virtio, [Device::Console, Device::Net]);
    let port = alpha.net.expect("alpha has a port");
    assert_eq!(
        (port.address.to_string(), port.uplink),
        ("10.0.0.2/24".into(), false)
    );
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
    assert_eq!(
        service.caps[1].rights,
        Rights::INSPECT.union(Rights::RESTART)
    );
    assert_eq!(system.queues[0].max_in_flight, 4);
    let uplink = service.net.expect("the service VM has a port");
    assert_eq!(
        (uplink.address.to_string(), uplink.uplink),
        ("10.0.0.1/24".into(), true)
    );
    assert_eq!(
        (service.devices.as_slice(), service.virtio.as_slice()),
        (&["nic".to_owned()][..], &[Device::Net][..])
    );
}

/// A devirtualizable guest: placed identity, alone on core 0 but for the service
/// VM, a partition program of one vCPU holding only a console, beside a guest
/// on core 1. The flag is carried into the model for it alone. On the test
/// board, whose kernel keeps the first 16 MiB of RAM, the identity placement is
/// refused as overlapping the kernel's memory.
///
/// Verifies: SK-CFG-013
#[test]
fn a_devirtualizable_guest_is_placed_identity_alone_on_its_core() {
    let text = r#"
board = "testboard"

[[partition]]
name = "service"
kind = "service"
image = "service-vm"
ram = "2M"

[[partition]]
name = "native"
kind = "guest"
image = "hello"
ram = "4M"
at = "0x4000_0000"
caps = [{ kind = "console" }]
devirtualize = true

[[partition]]
name = "other"
kind = "guest"
image = "hello"
ram = "2M"
cpus = [1]
devirtualize = false
"#;
    let mut open = board();
    open.reserved.clear();
    let system = parse(Path::new("native.toml"), text, &open).unwrap_or_else(|e| panic!("{e}"));
    let flags: Vec<(&str, bool)> = system
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.devirtualize))
        .collect();
    assert_eq!(
        flags,
        [("service", false), ("native", true), ("other", false)]
    );
    assert_eq!(system.partitions[1].at, Some(0x4000_0000));
    let errors = parse(Path::new("native.toml"), text, &board()).expect_err("the kernel's RAM");
    let rules: Vec<&str> = errors.0.iter().map(|e| e.rule).collect();
    assert_eq!(rules, ["memory-overlap"]);
}

/// A system whose service VM is the uplink (granted `devices`) and whose guest
/// has a port, for `board`.
fn uplink_system(board: &str, devices: &str) -> String {
    format!(
        "board = \"{board}\"\nsubnets = [\"10.0.0.0/24\"]\n\
         [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n\
         devices = {devices}\nnet = {{ address = \"10.0.0.1/24\", uplink = true }}\n\
         [[partition]]\nname = \"g\"\nkind = \"guest\"\nimage = \"hello\"\nram = \"2M\"\n\
         net = {{ address = \"10.0.0.2/24\" }}\n"
    )
}

/// The boards' own recipes: on `qemu-virt` the service VM granted the NIC may be
/// the uplink (the NIC is QEMU's first virtio-net device, on its highest
/// virtio-mmio transport); `pc` has no NIC, so no system there has an uplink.
///
/// Verifies: SK-CFG-007
#[test]
fn the_uplink_needs_the_boards_nic_which_pc_lacks() {
    let virt = Board::load(Path::new("../board-support/qemu-virt")).expect("qemu-virt");
    let nic = virt.device(NIC).expect("qemu-virt has a NIC");
    assert_eq!(
        (nic.mmio[0].base, nic.mmio[0].size, nic.irqs.as_slice()),
        (0x0a00_3e00, 0x200, &[79][..])
    );
    let text = uplink_system("qemu-virt", "[\"nic\"]");
    let system = parse(Path::new("virt.toml"), &text, &virt).unwrap_or_else(|e| panic!("{e}"));
    assert!(system.partitions[0].net.is_some_and(|port| port.uplink));

    let pc = Board::load(Path::new("../board-support/pc")).expect("pc");
    assert!(pc.device(NIC).is_none());
    let text = uplink_system("pc", "[]");
    let errors = parse(Path::new("pc.toml"), &text, &pc).expect_err("no NIC on pc");
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "pc.toml:9:43: error[net-uplink]: the uplink `service` needs the board's NIC, and board pc has no NIC"
        ]
    );
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

/// A description of `partitions` partitions (the service VM and guests `g1`,
/// ...) and `queues` queues from the service VM to `g1`, each allowing
/// `in_flight` pages in flight.
fn system_of(partitions: usize, queues: usize, in_flight: usize) -> String {
    let mut text = String::from("board = \"testboard\"\n");
    for index in 0..partitions {
        let (name, kind) = match index {
            0 => ("service".to_owned(), "service"),
            _ => (format!("g{index}"), "guest"),
        };
        text += &format!(
            "[[partition]]\nname = \"{name}\"\nkind = \"{kind}\"\nimage = \"hello\"\nram = \"2M\"\n"
        );
    }
    for index in 0..queues {
        text += &format!(
            "[[queue]]\nname = \"q{index}\"\nfrom = \"service\"\nto = \"g1\"\ndepth = 64\nmax_in_flight = {in_flight}\n"
        );
    }
    text
}

/// The rules of the kernel's limits: a system at each limit passes, one past it
/// fails with the limit's rule. The limits are the kernel's own constants.
///
/// Verifies: SK-CFG-004
#[test]
fn the_kernels_limits_are_rules_at_their_exact_values() {
    use septum_description::limits::{MAX_PARTITIONS, MAX_QUEUES, QUEUE_DEPTH_MAX};
    let board = board();
    let rules = |text: &str| -> Vec<&'static str> {
        match parse(Path::new("limits.toml"), text, &board) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|e| e.rule).collect(),
        }
    };
    let per_queue = QUEUE_DEPTH_MAX as usize;
    assert_eq!(
        rules(&system_of(MAX_PARTITIONS, MAX_QUEUES, per_queue)),
        Vec::<&str>::new()
    );
    assert_eq!(
        rules(&system_of(MAX_PARTITIONS + 1, 1, 1)),
        ["partition-count"]
    );
    assert_eq!(rules(&system_of(2, MAX_QUEUES + 1, 1)), ["queue-count"]);
}

/// A fresh folder for test `name`'s files.
fn scratch(name: &str) -> PathBuf {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("scratch folder");
    folder
}

/// A description file is read only if it is a regular file of at most
/// [`DESCRIPTION_MAX`] bytes: a device such as `/dev/zero`, a folder or a huge
/// file is refused before it is read.
///
/// Verifies: SK-CFG-001, SK-CFG-012
#[test]
fn only_regular_files_of_bounded_size_are_read() {
    let board = board();
    let message = |path: &Path| {
        let errors = load(path, &board).expect_err("refused");
        assert_eq!(errors.0.len(), 1);
        assert_eq!((errors.0[0].rule, errors.0[0].line), ("file", 1));
        errors.0[0].message.clone()
    };
    assert_eq!(message(Path::new("/dev/zero")), "not a regular file");
    assert_eq!(message(Path::new("tests")), "not a regular file");
    let huge = scratch("huge-description").join("huge.toml");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(DESCRIPTION_MAX + 1).expect("sparse file");
    assert_eq!(
        message(&huge),
        format!(
            "the file is {} bytes; a description is at most {DESCRIPTION_MAX}",
            DESCRIPTION_MAX + 1
        )
    );
    assert!(message(Path::new("tests/no-such-file.toml")).starts_with("cannot read the file: "));
}

/// The images of the good file load and are flattened as the kernel loads them:
/// each segment's file bytes at its offset from the RAM base, gaps and
/// zero-filled parts zero (and not stored past the last file byte), the entry
/// point as an offset.
///
/// Verifies: SK-CFG-003, SK-CFG-005
#[test]
fn the_good_files_images_load_flattened() {
    let board = board();
    let system = load(Path::new("tests/good.toml"), &board).unwrap_or_else(|e| panic!("{e}"));
    let folder = scratch("good-images");
    std::fs::create_dir_all(folder.join("prebuilt")).expect("folder");
    elf::write(
        &folder,
        "prebuilt/service.elf entry=0x40001000 load=0x40001000:8:0x3000 load=0x40000000:16:16",
    );
    let images = load_images(&system, &board, &|file| locate_in(&folder, file))
        .unwrap_or_else(|e| panic!("{e}"));
    // File order: `alpha` (the workspace program, a default ELF), then `service`.
    assert_eq!(
        (images[0].bytes.clone(), images[0].entry_offset),
        (vec![0xa0; 64], 0)
    );
    let service = &images[1];
    assert_eq!(service.bytes.len(), 0x1008);
    assert_eq!(service.bytes[..16], [0xa1; 16]);
    assert!(service.bytes[16..0x1000].iter().all(|&b| b == 0));
    assert_eq!(service.bytes[0x1000..], [0xa0; 8]);
    assert_eq!(service.entry_offset, 0x1000);
}

/// However many errors a description has, the report shows the first
/// [`ERRORS_SHOWN`], one a line, and counts the rest.
///
/// Verifies: SK-CFG-001, SK-CFG-012
#[test]
fn a_long_report_shows_the_first_errors_and_counts_the_rest() {
    let devices = vec!["\"rtc\""; ERRORS_SHOWN + 51].join(", ");
    let text = format!(
        "board = \"testboard\"\n[[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\ndevices = [{devices}]\n"
    );
    let errors = parse(Path::new("many.toml"), &text, &board()).expect_err("invalid");
    assert_eq!(
        errors.0.len(),
        ERRORS_SHOWN + 51,
        "150 repeats, and too many MMIO blocks"
    );
    let report = errors.to_string();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), ERRORS_SHOWN + 1);
    assert!(lines[0].starts_with("many.toml:7:19: error[device-shared]: "));
    assert_eq!(lines[ERRORS_SHOWN], "... and 51 more errors");
}

/// Columns count characters, not bytes, also after other characters on the line.
///
/// Verifies: SK-CFG-001
#[test]
fn columns_count_characters() {
    let line = "caps = [{ kind = \"ééé\" }, { kind = \"µ\" }]";
    let text = format!(
        "board = \"testboard\"\n[[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n{line}\n"
    );
    let errors = parse(Path::new("chars.toml"), &text, &board()).expect_err("invalid");
    let columns: Vec<(usize, usize)> = errors.0.iter().map(|e| (e.line, e.column)).collect();
    let column_of = |needle: &str| line[..line.find(needle).expect("there")].chars().count() + 1;
    assert_eq!(
        columns,
        [(7, column_of("\"ééé\"")), (7, column_of("\"µ\""))]
    );
}
