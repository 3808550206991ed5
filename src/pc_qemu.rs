//! Booting the PC's image as a USB stick on QEMU's `q35` machine, with UEFI
//! firmware (OVMF) or a BIOS (SeaBIOS): the loader path that a person's PC takes
//! from the same image. QEMU's TCG has no VMX, so such a run ends at the kernel's
//! `@@ kernel unsupported need=vt-x` line; VT-x itself is tested under Bochs
//! ([`crate::emulator`]). The kernel ends the run through QEMU's `isa-debug-exit`
//! device, which this module puts at the port the kernel writes on power-off.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::boards::Board;
use crate::emulator::{self, RunOptions, RunOutput};

/// The firmware a PC boots the image with.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// UEFI: OVMF (Debian's `ovmf`), which starts GRUB's `EFI/BOOT/BOOTX64.EFI`
    /// from the image's EFI system partition.
    Uefi,
    /// A BIOS: SeaBIOS, QEMU's own, which starts GRUB from the image's MBR.
    Bios,
}

/// OVMF's code and the template of its variable store (Debian's `ovmf`).
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The kernel's power-off port for QEMU (`kernel/x86_64/src/serial.rs`).
const DEBUG_EXIT: &str = "isa-debug-exit,iobase=0xf4,iosize=1";

/// Boots `image` (the PC's GRUB image) as a USB stick under QEMU with `firmware`,
/// the console captured as [`emulator::run_captured`] captures it. QEMU exits with
/// status 1 when the kernel powers off, so runs are judged by their `@@` lines.
pub fn run_from_usb(
    board: &Board,
    firmware: Firmware,
    image: &Path,
    options: &RunOptions,
) -> Result<RunOutput> {
    if board.arch != "x86_64" {
        bail!(
            "board `{}` is not a PC: only a PC's image boots from a USB stick with a firmware",
            board.name
        );
    }
    let mut command = Command::new("qemu-system-x86_64");
    command.args(["-M", "q35", "-m", &options.ram, "-no-reboot"]);
    if firmware == Firmware::Uefi {
        let vars = variable_store(image)?;
        command
            .args(["-drive"])
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .args(["-drive"])
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    if let Some(cpus) = options.cpus {
        command.args(["-smp", &cpus.to_string()]);
    }
    command
        .args(["-drive"])
        .arg(format!(
            "if=none,id=stick,format=raw,readonly=on,file={}",
            image.display()
        ))
        .args([
            "-device",
            "qemu-xhci",
            "-device",
            "usb-storage,drive=stick,bootindex=0",
        ])
        .args(["-device", DEBUG_EXIT])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    emulator::captured(command, options, false)
}

/// A fresh copy of OVMF's variable store beside `image`: the firmware writes its
/// boot entries there, and each run starts from the template.
fn variable_store(image: &Path) -> Result<PathBuf> {
    let vars = image.with_extension("ovmf-vars.fd");
    std::fs::copy(OVMF_VARS, &vars)
        .with_context(|| format!("cannot copy {OVMF_VARS} (run scripts/setup.sh)"))?;
    Ok(vars)
}
