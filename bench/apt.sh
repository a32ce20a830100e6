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

die() { echo "apt.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET_DIR = /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR

# The fixture builds its packages with dpkg-deb, signs with gpg; apt-get checks with gpgv.
for pair in apt-get:apt gpgv:gpgv gpg:gpg dpkg-deb:dpkg; do
    tool=${pair%%:*}
    command -v "$tool" >/dev/null ||
        die "$tool not found: install the Debian package ${pair#*:} (apt-get install ${pair#*:})"
done

if [[ ${FERRY_BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p ferry-builder --bin ferry-build &&
        cargo build --release -p ferry-tests --bin apt-bench)
fi
BUILD=$TARGET_DIR/release/ferry-build
BENCH=$TARGET_DIR/release/apt-bench
[[ -x $BUILD ]] || die "$BUILD not found (build it, or unset FERRY_BENCH_NO_BUILD)"
[[ -x $BENCH ]] || die "$BENCH not found (build it, or unset FERRY_BENCH_NO_BUILD)"

FERRY_BUILD=$BUILD exec "$BENCH"
