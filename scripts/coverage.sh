#!/usr/bin/env bash
# Line coverage of the host-tested crates: the portable core, the shared kernel
# code, the description validator, the ABI, the x86 back end's instruction
# decoder, the service VM's memory scheduler and the host tool (whose tests
# include the emulator scenarios, so this takes a few minutes). Prints a summary
# per file and writes the HTML report to target/llvm-cov/html/index.html.
# Installs cargo-llvm-cov (from crates.io) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --quiet
command -v cargo-llvm-cov >/dev/null 2>&1 || cargo install cargo-llvm-cov --locked
crates=(-p septum-core -p septum-kernel -p septum-description -p septum-abi
        -p septum-x86-decode -p septum-memsched -p septum)
cargo llvm-cov "${crates[@]}" --html
cargo llvm-cov report "${crates[@]}" --summary-only
