#!/usr/bin/env bash
# Line coverage of the host-tested crates: the portable core, the shared kernel
# code, the description validator, the ABI, the x86 back end's instruction
# decoder, the service VM's memory scheduler and the host tool (whose tests
# include the emulator scenarios, so this takes a few minutes). Prints a summary
# per file, writes the HTML report to target/llvm-cov/html/index.html, and ends
# with the portable core's figure: the line coverage of the files under
# kernel/core/, as its last line ("kernel/core line coverage: 98.3%").
#
#   scripts/coverage.sh          every host-tested crate, as above
#   scripts/coverage.sh --core   the portable core by its own tests alone (about a
#                                minute; scripts/test.sh runs it): also writes the
#                                figure to target/coverage/core.txt, its line count
#                                to core-lines.txt and the per-file summary to
#                                core-files.txt, for the README's figures and the
#                                evidence report
#
# Installs cargo-llvm-cov (from crates.io) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --quiet
command -v cargo-llvm-cov >/dev/null 2>&1 || cargo install cargo-llvm-cov --locked
if [ "${1:-}" = "--core" ]; then
    crates=(-p septum-core)
    cargo llvm-cov "${crates[@]}" --summary-only >/dev/null
else
    crates=(-p septum-core -p septum-kernel -p septum-description -p septum-abi
            -p septum-x86-decode -p septum-memsched -p septum)
    cargo llvm-cov "${crates[@]}" --html
fi
mkdir -p target/coverage
cargo llvm-cov report "${crates[@]}" --summary-only | tee target/coverage/summary.txt
# The same summary as JSON, whose file names are absolute: the lines and the
# lines covered of each file under kernel/core/ are added up.
figure=$(cargo llvm-cov report "${crates[@]}" --json --summary-only |
    awk 'BEGIN { RS = "\"filename\":\"" }
         NR > 1 {
             path = substr($0, 1, index($0, "\"") - 1)
             if (path !~ /\/kernel\/core\//) next
             if (!match($0, /"lines":\{"count":[0-9]+,"covered":[0-9]+/)) next
             split(substr($0, RSTART, RLENGTH), n, /[^0-9]+/)
             lines += n[2]; covered += n[3]
         }
         END {
             if (lines == 0) { print "coverage.sh: no lines of kernel/core/" > "/dev/stderr"; exit 1 }
             printf "%.1f %d\n", 100 * covered / lines, lines
         }')
if [ "${1:-}" = "--core" ]; then
    echo "${figure% *}" > target/coverage/core.txt
    echo "${figure#* }" > target/coverage/core-lines.txt
    # One crate: the summary's file names are relative to kernel/core/src/.
    cp target/coverage/summary.txt target/coverage/core-files.txt
fi
echo "kernel/core line coverage: ${figure% *}%"
