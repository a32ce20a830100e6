#!/usr/bin/env bash
# Benchmark `ferry-build build` of a spec with one container image against
# `skopeo copy docker://… docker-archive:…` of the same image, both pulling from the same
# local registry (Debian's docker-registry on 127.0.0.1; ~300 MiB incompressible image
# in 6 layers).
#
# Prints median wall times and the ratio ferry-cold / skopeo, target <= 1.0, checks that
# a warm rebuild downloads no blob, and shows one cold `--compression gzip` build.
# Exits non-zero only if a command fails (or the warm build downloads a blob); a missed
# target prints MISS.
# Knobs (environment): FERRY_BENCH_RUNS (3), FERRY_BENCH_IMAGE_MIB (300),
# FERRY_BENCH_IMAGE_LAYERS (6), FERRY_BENCH_JOBS (unset: ferry-build's default),
# FERRY_BENCH_NO_BUILD=1 (use existing binaries), CARGO_TARGET_DIR (where the binaries
# are), TMPDIR (where the registry storage, caches and outputs go).
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/run-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/run-bench.sh"

# The fixture serves the image with docker-registry and pushes it with skopeo, which is
# also the baseline.
run_bench oci-bench docker-registry:docker-registry skopeo:skopeo
