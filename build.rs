//! Checks every system description in the repository and builds the bare-metal
//! images (the kernels and every partition program) so that a plain `cargo run` or
//! `cargo test` has them. A description that breaks a rule fails the build with
//! its file, line, column and rule. Each image is built by a nested cargo
//! for its own target, in `target/images`, and the host tool finds them through the
//! `SEPTUM_IMAGE_DIR` variable set here: `<dir>/<role>/<target>/release/<binary>`,
//! where the role is `kernel` or `partitions`.
//!
//! Images are always built in release mode: they are what runs on the boards, and
//! the benchmarks measure them.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use septum_description::{Board, DescriptionErrors};

/// A bare-metal build: its folder under `target/images` (kernels and partitions
/// need different flags, sometimes for the same target, so they build apart), the
/// target triple, the packages, and extra rustc flags.
struct ImageBuild {
    role: &'static str,
    target: &'static str,
    packages: &'static [&'static str],
    rustflags: &'static [&'static str],
}

/// Every partition program of the workspace.
const PARTITIONS: &[&str] = &[
    "service-vm",
    "partition-hello",
    "partition-faulty",
    "partition-hostile-args",
    "partition-bench",
    "partition-spin",
    "partition-vcpus",
    "partition-probe",
    "partition-timeshare",
    "partition-fuzz",
    "partition-irq",
    "partition-hostile",
    "partition-leak",
    "partition-stream",
    "partition-balloon",
    "partition-steer",
    "partition-virtio",
    "partition-net",
];
const PARTITION_FLAGS: &[&str] = &[
    "-Clink-arg=-Tseptum-partition.ld",
    "-Crelocation-model=static",
];

const BUILDS: &[ImageBuild] = &[
    ImageBuild {
        // The kernel never touches FP/SIMD registers: they belong to partitions.
        role: "kernel",
        target: "aarch64-unknown-none-softfloat",
        packages: &["septum-aarch64"],
        rustflags: &[],
    },
    ImageBuild {
        // The same kernel linked at 0x20_0000 (RAM base 0 + 2 MiB), for boards
        // whose RAM starts at 0 (the Raspberry Pi 4: `kernel_base` in its board.toml).
        role: "kernel-at-0x200000",
        target: "aarch64-unknown-none-softfloat",
        packages: &["septum-aarch64"],
        rustflags: &["-Clink-arg=--defsym=KERNEL_BASE=0x200000"],
    },
    ImageBuild {
        role: "partitions",
        target: "aarch64-unknown-none",
        packages: PARTITIONS,
        rustflags: PARTITION_FLAGS,
    },
    ImageBuild {
        // Linked at fixed low addresses and entered in 32-bit mode: no PIE.
        role: "kernel",
        target: "x86_64-unknown-none",
        packages: &["septum-x86_64"],
        rustflags: &["-Crelocation-model=static"],
    },
    ImageBuild {
        role: "partitions",
        target: "x86_64-unknown-none",
        packages: PARTITIONS,
        rustflags: PARTITION_FLAGS,
    },
];

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let target_dir = root.join("target").join("images");
    check_descriptions(&root);
    for watched in ["kernel", "partitions", "service-vm", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=SEPTUM_SKIP_IMAGES");
    println!("cargo:rustc-env=SEPTUM_IMAGE_DIR={}", target_dir.display());
    if env::var_os("SEPTUM_SKIP_IMAGES").is_some() {
        return;
    }
    for build in BUILDS {
        build_images(&root, &target_dir.join(build.role), build);
    }
}

/// Validates `board-support/<board>/*.toml` against their board, and each
/// `tests/systems/*.toml` against every board it names.
fn check_descriptions(root: &Path) {
    let boards: Vec<(PathBuf, Board)> = read_dir(&root.join("board-support"))
        .into_iter()
        .filter(|folder| folder.join("board.toml").is_file())
        .map(|folder| {
            let board = Board::load(&folder).unwrap_or_else(|e| panic!("{e}"));
            (folder, board)
        })
        .collect();
    let mut failures = Vec::new();
    for (folder, board) in &boards {
        println!("cargo:rerun-if-changed={}", folder.display());
        for path in read_dir(folder) {
            let description =
                path.extension().is_some_and(|e| e == "toml") && !path.ends_with("board.toml");
            if description && let Err(errors) = septum_description::load(&path, board) {
                failures.push(errors.to_string());
            }
        }
    }
    let systems = root.join("tests").join("systems");
    println!("cargo:rerun-if-changed={}", systems.display());
    for path in read_dir(&systems) {
        let results: Vec<_> = boards
            .iter()
            .map(|(_, board)| septum_description::load(&path, board))
            .collect();
        // A description is for a board unless the board rule says otherwise.
        let for_this_board = |r: &&Result<_, DescriptionErrors>| match r {
            Ok(_) => true,
            Err(errors) => errors.0.iter().all(|e| e.rule != "board"),
        };
        let relevant: Vec<_> = results.iter().filter(for_this_board).collect();
        if relevant.is_empty() {
            failures.push(format!(
                "{}: names no board of board-support/",
                path.display()
            ));
        }
        failures.extend(
            relevant
                .into_iter()
                .filter_map(|r| r.as_ref().err().map(ToString::to_string)),
        );
    }
    failures.sort();
    failures.dedup();
    if !failures.is_empty() {
        panic!("invalid system descriptions:\n{}", failures.join("\n"));
    }
}

fn read_dir(folder: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn build_images(root: &Path, target_dir: &Path, build: &ImageBuild) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            build.target,
            "--target-dir",
        ])
        .arg(target_dir);
    for package in build.packages {
        command.args(["-p", package]);
    }
    // The outer cargo's settings (coverage instrumentation, clippy's wrapper, a
    // host target) must not leak into the bare-metal builds.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        command.env_remove(variable);
    }
    command.env("CARGO_ENCODED_RUSTFLAGS", build.rustflags.join("\x1f"));
    // The kernel log keeps frames of level `info` and above (defmt's default
    // keeps only errors).
    command.env("DEFMT_LOG", "info");
    let output = command
        .output()
        .expect("run cargo for the bare-metal images");
    if !output.status.success() {
        panic!(
            "building {} for {} failed:\n{}",
            build.packages.join(", "),
            build.target,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
