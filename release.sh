#!/usr/bin/env bash
# ./release.sh [--arch x86_64|aarch64]... [--key SECRET_KEY]
#
# Every release artefact of ferry, into dist/ (see release/README.md):
#   dist/ferry-install-VERSION-ARCH-linux-gnu   portable binaries (glibc >= 2.17)
#   dist/ferry-build-VERSION-ARCH-linux-gnu
#   dist/ferry-install_VERSION_DEBARCH.deb      Debian packages: man pages, completions,
#   dist/ferry-build_VERSION_DEBARCH.deb        /etc/ferry/trusted/, installer.toml
#   dist/SHA256SUMS                             sha256sum -c format, over all of the above
#   dist/SHA256SUMS.minisig                     with --key: minisign signature of SHA256SUMS
#
# --arch defaults to x86_64; aarch64 needs the Rust standard library for
# aarch64-unknown-linux-gnu (the build says so when it is missing). --key signs with a
# minisign-format secret key (ferry-build key generate makes one; minisign asks for its
# passphrase). Nothing here needs the network once cargo-zigbuild and the crates are
# present.
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/release/lib.sh"
cd "$REPO"

arches=()
key=""
while (($#)); do
    case "$1" in
    --arch) arches+=("${2:?--arch needs x86_64 or aarch64}") && shift 2 ;;
    --arch=*) arches+=("${1#--arch=}") && shift ;;
    --key) key="${2:?--key needs a secret key file}" && shift 2 ;;
    --key=*) key="${1#--key=}" && shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' && exit 0 ;;
    *) die "unknown argument $1 (see ./release.sh --help)" ;;
    esac
done
((${#arches[@]})) || arches=(x86_64)
[[ -z "$key" || -f "$key" ]] || die "$key: no such key file"
for tool in dpkg-deb objdump readelf gzip sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg binutils gzip coreutils)"
done
[[ -z "$key" ]] || command -v minisign >/dev/null || die "--key needs minisign (apt-get install minisign)"

start=$SECONDS
version="$(ferry_version)"
# Timestamps of man pages and packages. Not exported to cargo: the cc crate rebuilds
# every C dependency when SOURCE_DATE_EPOCH changes.
epoch="$(source_date_epoch)"
mkdir -p dist

# 1. Portable binaries (slow: a release build with LTO per architecture).
release/build-binaries.sh "${arches[@]}"

# 2. Man pages and completions, from the clap definitions (a small debug build).
say "man pages and shell completions (ferry-gen-docs)"
docs="$(cargo_target_dir)/release-docs"
rm -rf "$docs"
cargo build --quiet --locked -p ferry-gen-docs
SOURCE_DATE_EPOCH="$epoch" "$(cargo_target_dir)/debug/ferry-gen-docs" "$docs"

# 3. Debian packages.
for arch in "${arches[@]}"; do
    deb_arch="$(deb_arch "$arch")"
    for package in ferry-install ferry-build; do
        say "$package ${version} ($deb_arch)"
        SOURCE_DATE_EPOCH="$epoch" release/make-deb.sh "$package" "dist/$package-$version-$arch-linux-gnu" "$deb_arch" "$docs" dist
    done
done

# 4. Checksums (and a signature) over everything of this version in dist/.
say "dist/SHA256SUMS"
(
    cd dist
    rm -f SHA256SUMS SHA256SUMS.minisig
    shopt -s nullglob
    files=(ferry-install-"$version"-* ferry-build-"$version"-* ferry-install_"$version"_*.deb ferry-build_"$version"_*.deb)
    sha256sum "${files[@]}" >SHA256SUMS
)
if [[ -n "$key" ]]; then
    minisign -S -s "$key" -m dist/SHA256SUMS -x dist/SHA256SUMS.minisig \
        -t "ferry $version release: SHA256SUMS of the binaries and Debian packages"
fi
cat dist/SHA256SUMS
echo "release.sh: dist/ done in $((SECONDS - start))s" >&2
