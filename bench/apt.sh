#!/usr/bin/env bash
# Benchmark `ferry-build build` against `apt-get update` + `apt-get download` on the same
# local signed APT repository (100 packages of ~20 KB, 20 ms latency per request).
#
# Prints median wall times and the ratio ferry-cold / apt(update+download), target <= 0.35.
# Exits non-zero only if a command fails; a missed target prints MISS.
# Knobs (environment): FERRY_BENCH_RUNS (3), FERRY_BENCH_PACKAGES (100),
# FERRY_BENCH_PACKAGE_BYTES (20000), FERRY_BENCH_LATENCY_MS (20), FERRY_BENCH_JOBS
# (unset: ferry-build's default), FERRY_BENCH_NO_BUILD=1 (use existing binaries),
# CARGO_TARGET_DIR (where the binaries are).
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/run-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/run-bench.sh"

# The fixture builds its packages with dpkg-deb, signs with gpg; apt-get checks with gpgv.
run_bench apt-bench apt-get:apt gpgv:gpgv gpg:gpg dpkg-deb:dpkg
