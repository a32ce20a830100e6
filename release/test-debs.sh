#!/usr/bin/env bash
# release/test-debs.sh DEB... -- check ferry's Debian packages with dpkg-deb --info and
# --contents: control fields, Depends, conffiles, owners and modes of every entry, the
# binary (the same bytes as dist/'s portable one when that is present), one man page per
# (sub)command that man renders without warnings, bash/zsh/fish completions, and for
# ferry-install /etc/ferry/trusted/ (0755) and a fully commented installer.toml conffile.
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/lib.sh"

(($#)) || die "usage: $0 DEB..."
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-test-debs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
    echo "FAIL $deb_name: $*" >&2
    failures=$((failures + 1))
}

# The tar listing line of ./PATH: "MODE OWNER".
entry() { awk -v p="./$1" '$6 == p { print $1, $2 }' "$work/contents"; }
expect_entry() {
    local path="$1" want="$2" got
    got="$(entry "$path")"
    [[ "$got" == "$want" ]] || fail "$path is '${got:-missing}', expected '$want'"
}

for deb in "$@"; do
    deb_name="$(basename "$deb")"
    [[ -f "$deb" ]] || die "$deb: no such file"
    package="$(dpkg-deb -f "$deb" Package)"
    version="$(dpkg-deb -f "$deb" Version)"
    arch="$(dpkg-deb -f "$deb" Architecture)"
    [[ "$deb_name" == "${package}_${version}_${arch}.deb" ]] || fail "file name does not match ${package}_${version}_${arch}.deb"
    [[ "$package" == ferry-install || "$package" == ferry-build ]] || fail "unexpected package $package"
    dpkg-deb --info "$deb" >"$work/info"
    dpkg-deb --contents "$deb" >"$work/contents"
    dpkg-deb --ctrl-tarfile "$deb" | tar -t | sort >"$work/control-members"

    # Control fields.
    for field in Maintainer Description Section Priority Installed-Size Depends Source; do
        [[ -n "$(dpkg-deb -f "$deb" "$field")" ]] || fail "no $field field"
    done
    depends="$(dpkg-deb -f "$deb" Depends)"
    [[ "$depends" =~ libc6\ \(\>=\ 2\.([0-9]+)\) ]] || fail "Depends '$depends' has no libc6 (>= 2.N)"
    ((${BASH_REMATCH[1]:-99} <= ${FERRY_MAX_GLIBC#2.})) || fail "Depends '$depends' needs a glibc above $FERRY_MAX_GLIBC"
    grep -q '^  ferry-' "$work/info" || fail "no long description"
    # Compressed with xz, which every supported dpkg (Ubuntu 16.04's 1.18 included) reads.
    ar t "$deb" | grep -qx 'data.tar.xz' || fail "data member is not data.tar.xz: $(ar t "$deb" | tr '\n' ' ')"

    # Every entry belongs to root; directories 0755, files 0644 except the binary.
    awk '$2 != "root/root" { print }' "$work/contents" | grep . && fail "entries not owned by root/root"
    awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" { print }' "$work/contents" | grep . && fail "directories not 0755"
    awk -v bin="./usr/bin/$package" '$1 ~ /^-/ && $6 != bin && $1 != "-rw-r--r--" { print }' "$work/contents" |
        grep . && fail "files not 0644"
    expect_entry "usr/bin/$package" "-rwxr-xr-x root/root"
    expect_entry "usr/share/doc/$package/copyright" "-rw-r--r-- root/root"
    expect_entry "usr/share/doc/$package/changelog.gz" "-rw-r--r-- root/root"
    expect_entry "usr/share/bash-completion/completions/$package" "-rw-r--r-- root/root"
    expect_entry "usr/share/zsh/vendor-completions/_$package" "-rw-r--r-- root/root"
    expect_entry "usr/share/fish/vendor_completions.d/$package.fish" "-rw-r--r-- root/root"

    # Man pages: the command's and one per subcommand, each rendering cleanly.
    expect_entry "usr/share/man/man1/$package.1.gz" "-rw-r--r-- root/root"
    pages="$(awk '$6 ~ /^\.\/usr\/share\/man\/man1\/.*\.1\.gz$/ { print $6 }' "$work/contents")"
    count="$(grep -c . <<<"$pages")"
    ((count >= 5)) || fail "only $count man page(s)"
    case "$package" in
    ferry-install) subs=(verify inspect inventory plan apply backup-create rollback status) ;;
    ferry-build) subs=(build resolve sign key-generate) ;;
    esac
    for sub in "${subs[@]}"; do
        grep -qx "./usr/share/man/man1/$package-$sub.1.gz" <<<"$pages" || fail "no man page $package-$sub.1.gz"
    done
    rm -rf "$work/root"
    mkdir "$work/root"
    dpkg-deb -x "$deb" "$work/root"
    for page in "$work/root/usr/share/man/man1/"*.1.gz; do
        warnings="$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null || true)"
        [[ -z "$warnings" ]] || fail "$(basename "$page"): $warnings"
        zcat "$page" | grep -q '^\.SH SYNOPSIS' || fail "$(basename "$page"): no SYNOPSIS"
    done
    grep -q "complete .*$package" "$work/root/usr/share/bash-completion/completions/$package" ||
        fail "bash completion does not register $package"
    grep -q "^#compdef $package" "$work/root/usr/share/zsh/vendor-completions/_$package" ||
        fail "zsh completion has no #compdef"
    bash -n "$work/root/usr/share/bash-completion/completions/$package" || fail "bash completion: syntax error"

    # The binary: the portable one, when dist/ has it.
    raw="$(dirname "$deb")/$package-$version-$(case "$arch" in amd64) echo x86_64 ;; arm64) echo aarch64 ;; esac)-linux-gnu"
    if [[ -f "$raw" ]]; then
        cmp -s "$raw" "$work/root/usr/bin/$package" || fail "usr/bin/$package differs from $raw"
    fi

    # md5sums covers every file outside /etc, conffiles name exactly the files in /etc.
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./md5sums >"$work/md5sums"
    (cd "$work/root" && md5sum --quiet -c "$work/md5sums") || fail "md5sums do not match"
    want_md5="$(awk '$1 ~ /^-/ && $6 !~ /^\.\/etc\// { print substr($6, 3) }' "$work/contents" | sort)"
    [[ "$(awk '{ print $2 }' "$work/md5sums" | sort)" == "$want_md5" ]] || fail "md5sums does not list every file outside /etc"

    if [[ "$package" == ferry-install ]]; then
        grep -qx './conffiles' "$work/control-members" || fail "no conffiles"
        conffiles="$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)"
        [[ "$conffiles" == /etc/ferry/installer.toml ]] || fail "conffiles is '$conffiles'"
        expect_entry "etc/ferry/" "drwxr-xr-x root/root"
        expect_entry "etc/ferry/trusted/" "drwxr-xr-x root/root"
        expect_entry "etc/ferry/installer.toml" "-rw-r--r-- root/root"
        toml="$work/root/etc/ferry/installer.toml"
        grep -v '^#' "$toml" | grep . && fail "installer.toml has lines that are not commented out"
        for key in '# trust = ' '# threshold = ' '# backup_dir = ' '# \[redis\]' '# \[postgres\]' '# \[mongodb\]' '# \[\[backup\]\]'; do
            grep -q "^$key" "$toml" || fail "installer.toml lacks '$key'"
        done
        # Uncommented, the example is the one in installer/src/config.rs.
        sed -n '/^\/\/! ```toml$/,/^\/\/! ```$/p' "$REPO/installer/src/config.rs" | sed -e '1d' -e '$d' \
            -e 's/^\/\/! \{0,1\}//' >"$work/example"
        sed -n '/^# trust = /,$p' "$toml" | sed -e 's/^# \{0,1\}//' | diff -u "$work/example" - ||
            fail "installer.toml is not config.rs's example"
        [[ -z "$(find "$work/root/etc/ferry/trusted" -mindepth 1)" ]] || fail "/etc/ferry/trusted/ is not empty"
    else
        ! grep -qx './conffiles' "$work/control-members" || fail "ferry-build has conffiles"
        grep -q ' \./etc/' "$work/contents" && fail "ferry-build ships files in /etc"
    fi
    if ((failures == 0)); then
        echo "ok   $deb_name: $(grep -c . "$work/contents") entries, $count man pages, Depends: $depends"
    fi
done
((failures == 0)) || die "$failures check(s) failed"
