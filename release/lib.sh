# Shared by the release scripts (sourced, not run). Sets REPO to the workspace root.
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The oldest glibc the portable binaries may need (CentOS 7 / RHEL 7 level; Ubuntu 16.04
# has 2.23, Debian 11 has 2.31).
FERRY_MAX_GLIBC="${FERRY_MAX_GLIBC:-2.17}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The workspace version (every ferry crate shares it).
ferry_version() {
    (cd "$REPO" && cargo pkgid -p ferry-installer) | sed 's/.*@//'
}

# Rust target triple -> Debian architecture.
deb_arch() {
    case "$1" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) die "unknown architecture $1 (x86_64 or aarch64)" ;;
    esac
}

# SOURCE_DATE_EPOCH for reproducible packages: the environment's, else the last commit's
# time, else now.
source_date_epoch() {
    if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
        echo "$SOURCE_DATE_EPOCH"
    elif git -C "$REPO" log -1 --format=%ct >/dev/null 2>&1; then
        git -C "$REPO" log -1 --format=%ct
    else
        date +%s
    fi
}

# The target directory cargo uses for this workspace.
cargo_target_dir() {
    if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
        echo "$CARGO_TARGET_DIR"
    else
        echo "$REPO/target"
    fi
}

# `deb` URIs of this machine's apt sources, one a line, in file order: one-line `.list`
# entries and deb822 `.sources` stanzas (Types including deb, Enabled not no).
apt_source_uris() {
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    local f
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    for f in ${files[@]+"${files[@]}"}; do
        case "$f" in
        *.list)
            # deb [options] URI suite components...
            sed -e 's/#.*//' "$f" | awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                print $i
            }'
            ;;
        *.sources)
            awk '
                function flush() {
                    if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no")
                        for (k = 1; k <= split(uris, u, /[ \t]+/); k++) list[++count] = u[k]
                    types = ""; uris = ""; enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                tolower($1) == "types:"   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
                tolower($1) == "uris:"    { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
                tolower($1) == "enabled:" { sub(/^[^:]*:[ \t]*/, ""); enabled = $0 }
                END {
                    flush()
                    for (i = 1; i <= count; i++) print list[i]
                }' "$f"
            ;;
        esac
    done
}

# The first apt source of this machine that serves the Debian suite $1 (its
# dists/SUITE/Release answers), or FERRY_DEBIAN_MIRROR when set. Never hard-coded: the
# mirror is whatever this machine's apt uses.
debian_mirror_for() {
    local suite="$1" uri
    if [[ -n "${FERRY_DEBIAN_MIRROR:-}" ]]; then
        echo "$FERRY_DEBIAN_MIRROR"
        return
    fi
    while read -r uri; do
        [[ "$uri" == http://* || "$uri" == https://* ]] || continue
        uri="${uri%/}"
        if wget -q -T 20 -t 2 -O /dev/null "$uri/dists/$suite/Release"; then
            echo "$uri"
            return
        fi
    done < <(apt_source_uris | awk '!seen[$0]++')
    return 1
}
