#!/usr/bin/env bash
# Benchmark `ferry-install verify` against the plain tools it replaces.
#
# Prints ratios measured in the same run (absolute times on shared machines are noise):
#   uncompressed bundle:  ferry-install verify  vs  sha256sum            target <= 1.15
#   gzip bundle:          ferry-install verify  vs  tar -xzf + sha256sum target <= 0.60
#   peak RSS of the verifier on both bundles (GNU time %M)               target <  64 MiB
#
# Exits non-zero only if a command fails; a missed target prints MISS.
# Knobs (environment): FERRY_BENCH_SIZE_MIB (1024), FERRY_BENCH_RUNS (3),
# FERRY_BENCH_TMPDIR (/var/tmp), FERRY_BENCH_NO_BUILD=1 (use existing binaries),
# FERRY_BENCH_KEEP=1 (keep the temp dir), CARGO_TARGET_DIR (where the binaries are).
set -euo pipefail
export LC_ALL=C

die() { echo "verify.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${FERRY_BENCH_SIZE_MIB:-1024}
RUNS=${FERRY_BENCH_RUNS:-3}
TMPBASE=${FERRY_BENCH_TMPDIR:-/var/tmp}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET_DIR = /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR

[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_SIZE_MIB must be a positive integer (got '$SIZE_MIB')"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_RUNS must be a positive integer (got '$RUNS')"

GNU_TIME=/usr/bin/time
[[ -x $GNU_TIME ]] || die "/usr/bin/time not found: install the Debian package time (apt-get install time)"
for tool in sha256sum tar head awk sort; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

# ---------------------------------------------------------------- build
if [[ ${FERRY_BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p ferry-builder -p ferry-installer)
fi
BUILD=$TARGET_DIR/release/ferry-build
INSTALL=$TARGET_DIR/release/ferry-install
[[ -x $BUILD ]] || die "$BUILD not found (build it, or unset FERRY_BENCH_NO_BUILD)"
[[ -x $INSTALL ]] || die "$INSTALL not found (build it, or unset FERRY_BENCH_NO_BUILD)"

# ---------------------------------------------------------------- temp dir
# Peak usage: payload + .tar + .tar.gz + one extraction (payload is deleted once built).
need_kib=$(( SIZE_MIB * 1024 * 4 + 256 * 1024 ))
avail_kib=$(df -Pk "$TMPBASE" | awk 'NR == 2 { print $4 }')
(( avail_kib >= need_kib )) ||
    die "$TMPBASE has $((avail_kib / 1024)) MiB free, need about $((need_kib / 1024)) MiB (set FERRY_BENCH_TMPDIR or FERRY_BENCH_SIZE_MIB)"

WORK=$(mktemp -d "$TMPBASE/ferry-bench.XXXXXX")
cleanup() {
    if [[ ${FERRY_BENCH_KEEP:-0} == 1 ]]; then
        echo "verify.sh: kept $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- inputs
if (( SIZE_MIB >= 16 )); then NFILES=16; else NFILES=$SIZE_MIB; fi
FILE_MIB=$(( SIZE_MIB / NFILES ))
TOTAL_MIB=$(( FILE_MIB * NFILES ))

log "writing $NFILES x $FILE_MIB MiB of random payload to $WORK"
mkdir -p "$WORK/payload" "$WORK/trust" "$WORK/x"
SPEC=$WORK/spec.toml
cat >"$SPEC" <<'EOF'
name = "bench-1"

[target]
distro = "debian"
codename = "bookworm"
arch = "amd64"
EOF
for ((i = 0; i < NFILES; i++)); do
    f=$(printf 'f%02d.bin' "$i")
    head -c "$((FILE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/payload/$f"
    printf '\n[[file]]\nsource = "payload/%s"\npath = "files/%s"\n' "$f" "$f" >>"$SPEC"
done

log "generating key, building bundles"
# Their reports go to stdout even with -q; keep stdout for the table.
"$BUILD" key generate --out "$WORK/k" --no-passphrase -q >/dev/null
cp "$WORK/k.pub" "$WORK/trust/k.pub"
"$BUILD" build --spec "$SPEC" --key "$WORK/k.key" --out "$WORK/none" --compression none -q >/dev/null
"$BUILD" build --spec "$SPEC" --key "$WORK/k.key" --out "$WORK/gzip" --compression gzip -q >/dev/null
TAR=$WORK/none/bench-1.ferry.tar
TGZ=$WORK/gzip/bench-1.ferry.tar.gz
[[ -f $TAR ]] || die "expected bundle $TAR was not written"
[[ -f $TGZ ]] || die "expected bundle $TGZ was not written"
rm -rf -- "$WORK/payload"   # not needed any more; keeps the page cache for the bundles
TRUST=$WORK/trust
EXTRACT=$WORK/x

# ---------------------------------------------------------------- timing helpers
# now: wall clock in microseconds (bash 5 $EPOCHREALTIME, no fork; else date).
now_us() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/[.,]/}
        echo "$t"
    else
        echo $(( $(date +%s%N) / 1000 ))
    fi
}

# timed NAME CMD...: run CMD (stdout discarded), append its wall time in seconds to
# $WORK/t.NAME. A failing command aborts the benchmark.
timed() {
    local name=$1; shift
    local t0 t1 rc=0
    t0=$(now_us)
    "$@" >/dev/null || rc=$?
    t1=$(now_us)
    (( rc == 0 )) || die "command failed with exit code $rc: $*"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e6 }' >>"$WORK/t.$name"
}

median() {
    sort -g "$WORK/t.$1" | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

verify_tar() { "$INSTALL" verify "$TAR" --trust "$TRUST" -q; }
verify_tgz() { "$INSTALL" verify "$TGZ" --trust "$TRUST" -q; }
sha_tar() { sha256sum "$TAR"; }
extract_sha() { tar -xzf "$TGZ" -C "$EXTRACT" && sha256sum "$EXTRACT"/files/*; }
clean_extract() { rm -rf -- "$EXTRACT"; mkdir -p "$EXTRACT"; }

# ---------------------------------------------------------------- warm up
log "warming the page cache (reading each bundle once)"
cat "$TAR" >/dev/null
cat "$TGZ" >/dev/null
# One untimed verify of each, so a broken verifier fails here with its message.
"$INSTALL" verify "$TAR" --trust "$TRUST" -q >/dev/null || die "ferry-install verify failed on $TAR"
"$INSTALL" verify "$TGZ" --trust "$TRUST" -q >/dev/null || die "ferry-install verify failed on $TGZ"

# ---------------------------------------------------------------- measure
# Interleave the commands being compared so drifting machine load hits both alike.
for ((r = 1; r <= RUNS; r++)); do
    log "run $r/$RUNS"
    timed A verify_tar
    timed B sha_tar
    timed C verify_tgz
    clean_extract
    timed D extract_sha
    clean_extract
done

rss_kib() {
    local out=$WORK/rss.out rc=0
    "$GNU_TIME" -f %M -o "$out" "$INSTALL" verify "$1" --trust "$TRUST" -q >/dev/null || rc=$?
    (( rc == 0 )) || die "ferry-install verify failed under /usr/bin/time (exit $rc): $1"
    tail -n 1 "$out"
}
log "measuring peak RSS"
RSS_TAR=$(rss_kib "$TAR")
RSS_TGZ=$(rss_kib "$TGZ")

# ---------------------------------------------------------------- report
A=$(median A); B=$(median B); C=$(median C); D=$(median D)
awk -v a="$A" -v b="$B" -v c="$C" -v d="$D" -v rt="$RSS_TAR" -v rg="$RSS_TGZ" \
    -v size="$TOTAL_MIB" -v runs="$RUNS" 'BEGIN {
    r1 = a / b; r2 = c / d
    m1 = rt / 1024; m2 = rg / 1024
    printf "ferry verify benchmark (%d MiB incompressible payload, median of %d)\n", size, runs
    printf "uncompressed: ferry-install verify %.2f s   sha256sum %.2f s   ratio %.2f (target <= 1.15)  %s\n",
        a, b, r1, (r1 <= 1.15 ? "PASS" : "MISS")
    printf "gzip:         ferry-install verify %.2f s   tar -xzf + sha256sum %.2f s   ratio %.2f (target <= 0.60)  %s\n",
        c, d, r2, (r2 <= 0.60 ? "PASS" : "MISS")
    printf "peak RSS:     uncompressed %.1f MiB, gzip %.1f MiB (target < 64 MiB)  %s\n",
        m1, m2, ((m1 < 64 && m2 < 64) ? "PASS" : "MISS")
}'
