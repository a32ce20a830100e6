#!/usr/bin/env bash
# release/build-binaries.sh [ARCH...] -- portable release builds of ferry-install and
# ferry-build for Linux, linked against glibc 2.17 symbols with cargo-zigbuild, so that
# they run on any glibc >= 2.17 (Debian 8+, Ubuntu 14.04+, RHEL 7+).
#
# ARCH is x86_64 (default) or aarch64. Writes, stripped:
#   dist/ferry-install-VERSION-ARCH-linux-gnu
#   dist/ferry-build-VERSION-ARCH-linux-gnu
# and checks them with release/check-glibc.sh.
#
# Needs: cargo-zigbuild and zig (pip install ziglang cargo-zigbuild; installed here when
# missing), the Rust standard library of the target (rustup target add ...), and a strip
# for the target (binutils; for aarch64 on an x86_64 host: binutils-aarch64-linux-gnu).
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO"

# The cargo profile: `release` for artefacts; CI's checks use `ci-release` (no LTO, more
# codegen units: the same code and glibc symbols, built in about half the time).
profile="${FERRY_RELEASE_PROFILE:-release}"

# pip versions known to work; FERRY_ZIGBUILD_PIP overrides.
ZIGBUILD_PIP="${FERRY_ZIGBUILD_PIP:-ziglang==0.17.1 cargo-zigbuild==0.24.0}"

arches=("$@")
((${#arches[@]})) || arches=(x86_64)
version="$(ferry_version)"
target_dir="$(cargo_target_dir)"
mkdir -p dist

ensure_zigbuild() {
    # cargo-zigbuild finds zig on PATH or as the ziglang Python module.
    if command -v cargo-zigbuild >/dev/null &&
        { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
        return
    fi
    say "installing cargo-zigbuild and zig from PyPI ($ZIGBUILD_PIP)"
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check $ZIGBUILD_PIP ||
        die "cannot install cargo-zigbuild: pip install $ZIGBUILD_PIP"
    hash -r
    command -v cargo-zigbuild >/dev/null ||
        die "cargo-zigbuild is installed but not on PATH ($(python3 -m site --user-base)/bin?)"
}

strip_tool() {
    local arch="$1"
    if [[ "$arch" == "$(uname -m)" ]]; then
        echo strip
    elif command -v "$arch-linux-gnu-strip" >/dev/null; then
        echo "$arch-linux-gnu-strip"
    else
        die "no strip for $arch: apt-get install binutils-${arch/_/-}-linux-gnu"
    fi
}

# Every architecture is checked before the first (slow) build starts.
for arch in "${arches[@]}"; do
    deb_arch "$arch" >/dev/null
    triple="$arch-unknown-linux-gnu"
    if [[ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]]; then
        cat >&2 <<EOF
error: the Rust standard library for $triple is not installed, so the $arch binaries
cannot be built on this machine.
help: on a machine that can download it, run
          rustup target add $triple
          ./release.sh --arch $arch
      (zig cross-links, so no $arch C toolchain is needed; stripping needs
      $arch-linux-gnu-strip from binutils-${arch/_/-}-linux-gnu). See release/README.md.
EOF
        exit 2
    fi
    strip_tool "$arch" >/dev/null
done
ensure_zigbuild

for arch in "${arches[@]}"; do
    triple="$arch-unknown-linux-gnu"
    strip="$(strip_tool "$arch")"
    say "cargo zigbuild --profile $profile --target $triple.$FERRY_MAX_GLIBC (ferry-install, ferry-build)"
    start=$SECONDS
    cargo zigbuild --profile "$profile" --locked --target "$triple.$FERRY_MAX_GLIBC" \
        -p ferry-installer -p ferry-builder
    echo "build took $((SECONDS - start))s" >&2
    for bin in ferry-install ferry-build; do
        out="dist/$bin-$version-$arch-linux-gnu"
        cp "$target_dir/$triple/$profile/$bin" "$out.tmp"
        # As dh_strip does for executables.
        "$strip" --remove-section=.comment --remove-section=.note "$out.tmp"
        chmod 0755 "$out.tmp"
        mv "$out.tmp" "$out"
        echo "$out"
    done
    "$REPO/release/check-glibc.sh" "dist/ferry-install-$version-$arch-linux-gnu" \
        "dist/ferry-build-$version-$arch-linux-gnu"
done
