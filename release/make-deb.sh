#!/usr/bin/env bash
# release/make-deb.sh PACKAGE BINARY ARCH DOCS_DIR OUT_DIR -- build PACKAGE_VERSION_ARCH.deb
# with dpkg-deb from a staged tree (no debhelper, no cargo-deb).
#
#   PACKAGE   ferry-install or ferry-build
#   BINARY    the stripped portable binary (release/build-binaries.sh)
#   ARCH      Debian architecture: amd64, arm64
#   DOCS_DIR  output of ferry-gen-docs: man/*.1 and completions/{bash,zsh,fish}/
#
# Both packages carry /usr/bin/PACKAGE, one man page per (sub)command, bash, zsh and fish
# completions, and /usr/share/doc/PACKAGE/{copyright,changelog.gz}. ferry-install also
# carries /etc/ferry/trusted/ (0755: the keys in it are public) and the conffile
# /etc/ferry/installer.toml, made from the example in installer/src/config.rs with every
# line commented out, so the defaults apply until an administrator changes it.
#
# Depends comes from the binary's NEEDED libraries and GLIBC_ symbol versions. The
# packages are xz-compressed (dpkg >= 1.15.6: Ubuntu 16.04 and Debian 11 included),
# owned by root, with timestamps clamped to SOURCE_DATE_EPOCH (default: the last
# commit's time) so that the same inputs give the same .deb.
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/lib.sh"

(($# == 5)) || die "usage: $0 PACKAGE BINARY ARCH DOCS_DIR OUT_DIR"
package="$1" binary="$2" arch="$3" docs="$4" out_dir="$5"
version="$(ferry_version)"
maintainer="${FERRY_MAINTAINER:-ferry maintainers <ferry@example.invalid>}"
epoch="$(source_date_epoch)"
export SOURCE_DATE_EPOCH="$epoch"

case "$package" in
ferry-install)
    section="admin"
    description="verify and apply signed ferry bundles on air-gapped hosts
 ferry-install is the air-gapped side of ferry. Before anything else
 happens it checks a ferry bundle: every signature against the trusted keys
 in /etc/ferry/trusted/, its expiry, that it is not an older bundle being
 replayed, and every byte of every file. It then backs up configuration
 files and databases, installs the bundle's Debian packages step by step
 with dpkg, restarts and health-checks each service, and rolls everything
 back when a step fails.
 .
 Host settings live in /etc/ferry/installer.toml."
    ;;
ferry-build)
    section="admin"
    description="build signed ferry bundles of Debian packages and images
 ferry-build is the connected side of ferry. From a spec it resolves
 packages and their dependencies from signed APT repositories, fetches
 container images from registries, and writes one signed, self-describing
 bundle, optionally with the ferry-install package beside it, for
 ferry-install to verify and apply on an air-gapped host."
    ;;
*) die "unknown package $package (ferry-install or ferry-build)" ;;
esac

[[ -x "$binary" ]] || die "$binary: not an executable"
[[ -d "$docs/man" && -d "$docs/completions" ]] || die "$docs: no man/ and completions/ (run ferry-gen-docs)"
changelog_version="$(sed -n '1s/^ferry (\([^)]*\)).*/\1/p' "$REPO/release/debian/changelog")"
[[ "$changelog_version" == "$version" ]] ||
    die "release/debian/changelog starts at $changelog_version, the crates are at $version: add an entry for $version"

# --- Depends, from what the binary links against ----------------------------------
glibc="$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1 || true)"
[[ -n "$glibc" ]] || glibc="$(readelf -W --dyn-syms "$binary" | grep -o '@GLIBC_[0-9.]*' | sed 's/@GLIBC_//' | sort -V | tail -n1)"
[[ -n "$glibc" ]] || die "$binary: no GLIBC_ symbol versions"
depends=("libc6 (>= $glibc)")
while read -r lib; do
    case "$lib" in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libutil.so.1 | ld-linux*.so.*) ;;
    libgcc_s.so.1) depends+=("libgcc-s1 | libgcc1") ;;
    "") ;;
    *) die "$binary needs $lib: add its Debian package to release/make-deb.sh" ;;
    esac
done < <(readelf -W -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
depends_line="$(printf '%s, ' "${depends[@]}")"
depends_line="${depends_line%, }"

# --- The staged tree ---------------------------------------------------------------
stage="$(mktemp -d "${TMPDIR:-/tmp}/ferry-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/$package"
umask 022
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$root/usr/share/doc/$package" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$binary" "$root/usr/bin/$package"
shopt -s nullglob
pages=("$docs/man/$package".1 "$docs/man/$package"-*.1)
((${#pages[@]} > 1)) || die "$docs/man: no pages for $package"
for page in "${pages[@]}"; do
    gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$docs/completions/bash/$package" "$root/usr/share/bash-completion/completions/$package"
install -m 0644 "$docs/completions/zsh/_$package" "$root/usr/share/zsh/vendor-completions/_$package"
install -m 0644 "$docs/completions/fish/$package.fish" "$root/usr/share/fish/vendor_completions.d/$package.fish"
install -m 0644 "$REPO/release/debian/copyright" "$root/usr/share/doc/$package/copyright"
gzip -9n <"$REPO/release/debian/changelog" >"$root/usr/share/doc/$package/changelog.gz"
if [[ -f "$REPO/release/debian/$package.lintian-overrides" ]]; then
    mkdir -p "$root/usr/share/lintian/overrides"
    install -m 0644 "$REPO/release/debian/$package.lintian-overrides" \
        "$root/usr/share/lintian/overrides/$package"
fi

conffiles=()
if [[ "$package" == ferry-install ]]; then
    install -d -m 0755 "$root/etc/ferry" "$root/etc/ferry/trusted"
    {
        cat <<'EOF'
# /etc/ferry/installer.toml: this host's settings for ferry-install.
#
# Every line is commented out, so the built-in defaults apply: trusted keys in
# /etc/ferry/trusted/ (*.pub, minisign format), one signature required, backups
# under /var/backups/ferry, the service manager detected. Uncomment and edit
# what this host needs; dpkg keeps your changes on upgrades (and asks when the
# packaged example changed).
#
# An unknown key is an error, so a misspelt setting is never silently ignored.
# `ferry-install --config FILE ...` reads another file instead.
#
EOF
        # The example of installer/src/config.rs's module documentation.
        sed -n '/^\/\/! ```toml$/,/^\/\/! ```$/p' "$REPO/installer/src/config.rs" |
            sed -e '1d' -e '$d' -e 's/^\/\/!$//' -e 's/^\/\/! //' |
            sed -e 's/^./# &/' -e 's/^$/#/'
    } >"$root/etc/ferry/installer.toml"
    grep -q '^# \[redis\]' "$root/etc/ferry/installer.toml" ||
        die "installer/src/config.rs: no \`\`\`toml example in the module documentation"
    if grep -v '^#' "$root/etc/ferry/installer.toml" | grep -q .; then
        die "installer.toml: a line is not commented out"
    fi
    chmod 0644 "$root/etc/ferry/installer.toml"
    conffiles+=(/etc/ferry/installer.toml)
fi

installed_size="$(du -s -k --apparent-size "$root" --exclude=DEBIAN | cut -f1)"
{
    echo "Package: $package"
    echo "Source: ferry"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $installed_size"
    echo "Depends: $depends_line"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Description: $description"
} >"$root/DEBIAN/control"
if ((${#conffiles[@]})); then
    printf '%s\n' "${conffiles[@]}" >"$root/DEBIAN/conffiles"
fi
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/"*
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$out_dir"
deb="$out_dir/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z9 --build "$root" "$deb" >/dev/null
echo "$deb"
