//! Builds the bare-metal images (the kernel and every partition program) so that a
//! plain `cargo run` or `cargo test` has them. Each image is built by a nested cargo
//! for its own target, in `target/images`, and the host tool finds them through the
//! `SEPTUM_IMAGE_DIR` variable set here: `<dir>/<role>/<target>/release/<binary>`,
//! where the role is `kernel` or `partitions`.
//!
//! Images are always built in release mode: they are what runs on the boards, and
//! the benchmarks measure them.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

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
