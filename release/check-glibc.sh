#!/usr/bin/env bash
# release/check-glibc.sh BINARY... -- fail if a binary needs a glibc newer than
# FERRY_MAX_GLIBC (default 2.17).
#
# Reads the versioned dynamic symbols (`objdump -T`; `readelf --dyn-syms` for an ELF
# this objdump cannot read, such as aarch64 on an x86_64 host) and prints, per binary,
# the GLIBC_ versions it needs and its shared libraries (NEEDED). A binary that needs a
# newer version fails the check, with the symbols that need it listed.
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/lib.sh"

(($#)) || die "usage: $0 BINARY..."
max="$FERRY_MAX_GLIBC"

# 0 when version $1 <= $2.
version_le() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$1" ]]; }

# "VERSION SYMBOL" for each GLIBC_-versioned undefined or defined dynamic symbol.
glibc_symbols() {
    local bin="$1"
    if objdump -T "$bin" >/dev/null 2>&1; then
        # ... DF *UND* 0000000000000000 (GLIBC_2.2.5) memcpy   (or GLIBC_2.2.5 without parens)
        objdump -T "$bin" | awk '{
            for (i = 1; i <= NF; i++) if ($i ~ /^\(?GLIBC_[0-9.]+\)?$/) {
                v = $i; gsub(/[()]/, "", v); sub(/^GLIBC_/, "", v); print v, $NF
            }
        }'
    else
        # ... FUNC GLOBAL DEFAULT UND memcpy@GLIBC_2.17 (2)
        readelf -W --dyn-syms "$bin" | awk '{
            for (i = 1; i <= NF; i++) if ($i ~ /@@?GLIBC_[0-9.]+$/) {
                n = split($i, p, /@+GLIBC_/); print p[2], p[1]
            }
        }'
    fi
}

status=0
for bin in "$@"; do
    [[ -f "$bin" ]] || die "$bin: no such file"
    file_type="$(od -An -c -N4 "$bin" | tr -d ' ')"
    [[ "$file_type" == '177ELF' ]] || die "$bin: not an ELF file"
    symbols="$(glibc_symbols "$bin")"
    versions="$(awk '{print $1}' <<<"$symbols" | sort -uV | tr '\n' ' ')"
    needed="$(readelf -W -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
    [[ -n "$symbols" ]] || die "$bin: no GLIBC_ symbol versions found (static, or not a glibc binary?)"
    highest="$(awk '{print $1}' <<<"$symbols" | sort -V | tail -n1)"
    if version_le "$highest" "$max"; then
        echo "ok   $bin: needs GLIBC $highest <= $max (versions: ${versions% }; libraries: ${needed% })"
    else
        echo "FAIL $bin: needs GLIBC $highest > $max (versions: ${versions% })"
        awk -v max="$max" '{print $1, $2}' <<<"$symbols" | sort -u -V | while read -r v sym; do
            version_le "$v" "$max" || echo "       GLIBC_$v $sym"
        done
        status=1
    fi
done
exit "$status"
