#!/usr/bin/env bash
# The test command: installs what is missing, runs every test (host, QEMU, Bochs),
# measures the portable core's coverage, then writes the traceability matrix, JUnit
# XML, JSON and the evidence report (HTML) to target/trace/ and fails if the
# evidence has a gap (see tests/requirements/README.md), and finally fails if a
# figure the README states differs from this run's measurement (src/figures.rs).
#
#   scripts/test.sh            everything
#   scripts/test.sh ARGS...    passes ARGS to cargo test (a filter, say); the
#                              coverage, trace and figures checks then run only for
#                              a full run
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --quiet
log=target/trace/cargo-test.log
mkdir -p target/trace
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
if [ $# -eq 0 ]; then
    scripts/coverage.sh --core | tail -1
    cargo run -q -- trace --results "$log"
    cargo run -q -- figures --check > target/trace/figures.txt
fi
# The closing line: the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
