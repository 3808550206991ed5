//! The host side of Septum: turns a system description into a bootable image, runs
//! it on an emulator, and checks what the console says.
//!
//! - [`bench`]: the benchmark tables, from scenarios run now or their saved
//!   consoles;
//! - [`boards`]: finding board recipes (`board-support/<board>/board.toml`) and
//!   loading system descriptions for them (the format and its validator are the
//!   `septum-description` crate);
//! - [`package`]: the system package built from a validated description;
//! - [`image`]: ELF flattening and the bootable kernel image or ISO;
//! - [`linux`]: the default kernel and initramfs of Linux partitions, fetched and
//!   built into `target/linux/`;
//! - [`layout`]: a picture (SVG) of a system's memory and time layout on its board;
//! - [`memory_chart`]: memory over time from the service VM's console, as CSV and
//!   as a chart (SVG);
//! - [`emulator`]: running an image under QEMU with a hard timeout;
//! - [`pc_qemu`]: booting the PC's image as a USB stick under QEMU with UEFI or
//!   BIOS firmware (the loader path; QEMU has no VT-x);
//! - [`sd_image`]: the Raspberry Pi 4's SD-card image (MBR and FAT32);
//! - [`scenario`]: test scenarios and their console expectations;
//! - [`console_lines`]: which console lines an expectation may count (their
//!   source, as the kernel marks it);
//! - [`kernel_log`]: the kernel's log channel, decoded with `defmt-decoder`
//!   against the kernel's ELF, and the trace rings the kernel sends on it;
//! - [`timeline`]: those rings as runs and marks in time, written as a Perfetto
//!   trace and drawn as a picture (SVG);
//! - [`trace_run`]: the `logs` and `trace-run` commands;
//! - [`trace`]: the requirement catalogue, test tags, and the traceability matrix;
//! - [`figures`]: the figures and counts the README states, measured, and the
//!   check that keeps them true;
//! - [`report`]: the evidence report, one HTML page for an assessor.

pub mod bench;
pub mod boards;
pub mod console_lines;
pub mod emulator;
pub mod figures;
pub mod image;
pub mod kernel_log;
pub mod layout;
pub mod linux;
pub mod memory_chart;
pub mod outside;
pub mod package;
pub mod pc_qemu;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod sd_image;
pub mod timeline;
pub mod trace;
pub mod trace_run;

use std::path::{Path, PathBuf};

/// The repository root (where `Cargo.toml`, `board-support/` and `tests/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `text` with the characters XML and HTML give a meaning escaped, for the
/// pictures, the JUnit XML and the evidence report.
pub fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Resolves `path` against the repository root unless it is absolute.
pub fn from_root(path: impl AsRef<Path>) -> PathBuf {
    repo_root().join(path)
}
