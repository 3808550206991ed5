#!/usr/bin/env bash
# Installs what Septum's build, demo and tests need on a fresh Debian 12 machine
# that has only rustup. Idempotent: each step checks before it acts.
#
#   scripts/setup.sh          everything (QEMU for aarch64 and x86, Bochs, GRUB for BIOS and UEFI, OVMF,
#                             Debian's arm64 kernel and busybox for Linux partitions, and
#                             the Raspberry Pi 4's boot firmware and device tree)
#   scripts/setup.sh --quiet  the same, printing only what it changes
set -euo pipefail

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }
# Progress (each step's number; apt's and rustup's own bars) only where a person
# watches: not with --quiet, not in CI, and only on a terminal.
watched=0
[ "$quiet" = 0 ] && [ -z "${CI:-}" ] && [ -t 1 ] && watched=1
step() { say "step $1 of 4: $2"; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then echo sudo; else
            echo "setup: need root (or sudo) to install packages" >&2; exit 1
        fi
    fi
}
SUDO=$(need_root)

# --- Rust: the toolchain pinned in rust-toolchain.toml, with its targets ---------------
cd "$(dirname "$0")/.."
step 1 "the Rust toolchain of rust-toolchain.toml, with its targets"
if [ "$watched" = 1 ]; then
    rustup toolchain install   # reads rust-toolchain.toml: channel, targets, components
else
    rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
fi

# --- Debian packages ------------------------------------------------------------------
# QEMU 10 comes from bookworm-backports (the image's qemu-utils is from there and
# conflicts with bookworm's 7.2); Bochs and the GRUB tools come from bookworm.
packages_missing() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

backports_list=/etc/apt/sources.list.d/septum-backports.sources
add_backports() {
    if grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then return; fi
    say "adding bookworm-backports to apt sources"
    local uri keyring
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$keyring" | $SUDO tee "$backports_list" >/dev/null
    apt_updated=0
}

# apt's quiet flags and the output it drops: none where a person watches (apt
# then draws its download and install progress), else -qq and nothing shown.
apt_quiet=(-qq)
apt_out=/dev/null
if [ "$watched" = 1 ]; then apt_quiet=(-o Dpkg::Progress-Fancy=1); apt_out=/dev/stdout; fi

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
}

qemu_pkgs=(qemu-system-arm qemu-system-x86)
# grub-efi-amd64-bin and ovmf: the PC image boots UEFI machines too, tested under
# QEMU with OVMF.
other_pkgs=(bochs bochsbios vgabios bochs-sdl grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools cpio ovmf)

step 2 "QEMU, Bochs and the GRUB tools (Debian packages)"
missing_qemu=$(packages_missing "${qemu_pkgs[@]}")
missing_other=$(packages_missing "${other_pkgs[@]}")
if [ -n "$missing_qemu" ] || [ -n "$missing_other" ]; then
    add_backports
    apt_update_once
fi
if [ -n "$missing_qemu" ]; then
    say "installing $missing_qemu (bookworm-backports)"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${apt_quiet[@]}" -t bookworm-backports $missing_qemu >"$apt_out"
fi
if [ -n "$missing_other" ]; then
    say "installing $missing_other"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${apt_quiet[@]}" $missing_other >"$apt_out"
fi

# --- Linux partitions: the arm64 kernel, its virtio modules, busybox (target/linux/) ---
step 3 "the Debian arm64 kernel and busybox for Linux partitions"
if [ "$quiet" = 1 ]; then scripts/fetch-linux.sh --quiet; else scripts/fetch-linux.sh; fi

# --- Raspberry Pi 4: boot firmware and device tree (target/rpi4/) ----------------------
step 4 "the Raspberry Pi 4's boot firmware and device tree"
if [ "$quiet" = 1 ]; then scripts/fetch-rpi4.sh --quiet; else scripts/fetch-rpi4.sh; fi
say "ready: $(qemu-system-aarch64 --version | head -n1)"
