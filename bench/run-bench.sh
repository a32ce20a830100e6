# Shared by bench/apt.sh and bench/oci.sh (sourced, not run): check the Debian tools a
# benchmark needs, build ferry-build and the benchmark binary in release mode (unless
# FERRY_BENCH_NO_BUILD=1), then run the benchmark.
#   run_bench BENCH_BIN TOOL:PACKAGE...

die() { echo "error: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

run_bench() {
    local bench_bin=$1 pair tool
    shift
    local root target_dir
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    [[ $target_dir = /* ]] || target_dir=$root/$target_dir
    for pair in "$@"; do
        tool=${pair%%:*}
        command -v "$tool" >/dev/null ||
            die "$tool not found: install the Debian package ${pair#*:} (apt-get install ${pair#*:})"
    done
    if [[ ${FERRY_BENCH_NO_BUILD:-0} != 1 ]]; then
        log "building release binaries"
        (cd "$root" && cargo build --release -p ferry-builder --bin ferry-build &&
            cargo build --release -p ferry-tests --bin "$bench_bin")
    fi
    local build=$target_dir/release/ferry-build bench=$target_dir/release/$bench_bin
    [[ -x $build ]] || die "$build not found (build it, or unset FERRY_BENCH_NO_BUILD)"
    [[ -x $bench ]] || die "$bench not found (build it, or unset FERRY_BENCH_NO_BUILD)"
    FERRY_BUILD=$build exec "$bench"
}
