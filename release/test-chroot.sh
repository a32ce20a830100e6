#!/usr/bin/env bash
# release/test-chroot.sh DIST_DIR [SUITE] -- install ferry's Debian packages into a
# minimal Debian root (debootstrap --variant=minbase, default suite bullseye: Debian 11,
# glibc 2.31) and use them there, as root:
#
#   - dpkg -i both packages with the root's own dpkg; the conffile is registered,
#     /etc/ferry/trusted/ is 0755, the bash completion loads;
#   - ferry-install --version, ferry-build --version;
#   - ferry-build key generate, build --with-installer (the real ferry-install .deb);
#     sha256sum -c SHA256SUMS inside the root, minisign -V of SHA256SUMS outside;
#   - ferry-install verify of that bundle with the installed (all-commented)
#     installer.toml and the key in /etc/ferry/trusted/; a tampered copy exits 3;
#     the conffile's example, uncommented, is accepted as a configuration;
#   - dpkg -r keeps installer.toml, dpkg -P removes it and keeps the administrator's key.
#
# The root comes from the mirror this machine's apt sources name (never a built-in
# host; FERRY_DEBIAN_MIRROR overrides) and is cached as a tarball per suite and
# architecture in FERRY_CI_CACHE (default /var/cache/ferry-ci as root, else
# target/ferry-ci); every run unpacks a fresh copy and removes it afterwards.
set -euo pipefail
# shellcheck source=release/lib.sh
source "$(dirname "$0")/lib.sh"

(($# >= 1)) || die "usage: $0 DIST_DIR [SUITE]   or   $0 --prepare [SUITE] (only make the cached root)"
prepare_only=""
if [[ "$1" == --prepare ]]; then
    prepare_only=1
else
    dist="$(cd "$1" && pwd)"
fi
suite="${2:-bullseye}"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, dpkg in the root)"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
command -v minisign >/dev/null || die "minisign is missing (apt-get install minisign)"
arch="$(dpkg --print-architecture)"
version="$(ferry_version)"
install_deb="ferry-install_${version}_${arch}.deb"
build_deb="ferry-build_${version}_${arch}.deb"
if [[ -z "$prepare_only" ]]; then
    [[ -f "$dist/$install_deb" && -f "$dist/$build_deb" ]] || die "$dist has no $install_deb and $build_deb (run ./release.sh)"
fi

if [[ -n "${FERRY_CI_CACHE:-}" ]]; then
    cache="$FERRY_CI_CACHE"
elif mkdir -p /var/cache/ferry-ci 2>/dev/null && [[ -w /var/cache/ferry-ci ]]; then
    cache=/var/cache/ferry-ci
else
    cache="$(cargo_target_dir)/ferry-ci"
fi
mkdir -p "$cache"
tarball="$cache/debootstrap-$suite-minbase-$arch.tar.gz"

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-chroot.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"

if [[ ! -f "$tarball" ]]; then
    mirror="$(debian_mirror_for "$suite")" ||
        die "none of this machine's apt sources serves $suite (dists/$suite/Release); set FERRY_DEBIAN_MIRROR"
    say "debootstrap --variant=minbase $suite ($arch) from this machine's apt mirror"
    start=$SECONDS
    mkdir "$work/boot"
    debootstrap --variant=minbase --arch="$arch" "$suite" "$work/boot" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        die "debootstrap $suite failed"
    }
    rm -f "$work/boot/var/cache/apt/archives/"*.deb
    tar -C "$work/boot" --numeric-owner -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "${work:?}/boot"
    echo "debootstrap took $((SECONDS - start))s; cached as $tarball" >&2
else
    echo "using the cached $suite root $tarball" >&2
fi

[[ -z "$prepare_only" ]] || exit 0
mkdir "$root"
tar -C "$root" --numeric-owner -xzf "$tarball"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C chroot "$root" "$@"; }
check() {
    local what="$1"
    shift
    if "$@"; then echo "ok   $what"; else die "$what"; fi
}

echo "root: $(in_root sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), $(in_root ldd --version | head -n1)"
mkdir -p "$root/tmp/ferry"
cp "$dist/$install_deb" "$dist/$build_deb" "$root/tmp/ferry/"

say "dpkg -i $install_deb $build_deb (in the $suite root)"
in_root dpkg -i "/tmp/ferry/$install_deb" "/tmp/ferry/$build_deb"
check "both packages installed" test "$(in_root dpkg-query -W -f '${db:Status-Abbrev}' ferry-install ferry-build)" = "ii ii "
check "installer.toml is a registered conffile" \
    grep -q '^ /etc/ferry/installer.toml [0-9a-f]\{32\}$' <<<"$(in_root dpkg-query -W -f '${Conffiles}\n' ferry-install)"
check "/etc/ferry/trusted is root-owned 0755" test "$(stat -c '%a %U:%G' "$root/etc/ferry/trusted")" = "755 root:root"
check "man page installed" test -s "$root/usr/share/man/man1/ferry-install-verify.1.gz"
check "bash completion registers ferry-install" \
    in_root bash -c 'source /usr/share/bash-completion/completions/ferry-install && complete -p ferry-install >/dev/null'

say "running them"
got="$(in_root ferry-install --version)"
check "ferry-install --version: $got" test "$got" = "ferry-install $version"
got="$(in_root ferry-build --version)"
check "ferry-build --version: $got" test "$got" = "ferry-build $version"

mkdir -p "$root/tmp/w"
head -c 300000 /dev/urandom >"$root/tmp/w/payload.bin"
cat >"$root/tmp/w/spec.toml" <<EOF
name = "release-check-$suite"
[target]
distro = "debian"
codename = "$suite"
arch = "$arch"

[[file]]
source = "payload.bin"
path = "files/payload.bin"
EOF
in_root sh -c 'cd /tmp/w && ferry-build --quiet key generate --out release --no-passphrase'
in_root sh -c "cd /tmp/w && ferry-build build --spec spec.toml --key release.key --out media --with-installer /tmp/ferry/$install_deb"
bundle="release-check-$suite.ferry.tar.gz"
check "media has the bundle, the installer, SHA256SUMS(.minisig), README-airgap.txt" \
    test -f "$root/tmp/w/media/$bundle" -a -f "$root/tmp/w/media/$install_deb" -a \
    -f "$root/tmp/w/media/SHA256SUMS" -a -f "$root/tmp/w/media/SHA256SUMS.minisig" -a -f "$root/tmp/w/media/README-airgap.txt"
check "shipped installer is the release's" cmp -s "$dist/$install_deb" "$root/tmp/w/media/$install_deb"
check "sha256sum -c SHA256SUMS (in the root)" in_root sh -c 'cd /tmp/w/media && sha256sum --strict -c SHA256SUMS'
check "minisign -Vm SHA256SUMS -p release.pub" \
    minisign -Vm "$root/tmp/w/media/SHA256SUMS" -p "$root/tmp/w/release.pub"

cp "$root/tmp/w/release.pub" "$root/etc/ferry/trusted/release.pub"
check "ferry-install verify (installed config, key in /etc/ferry/trusted)" \
    in_root ferry-install verify "/tmp/w/media/$bundle"
sed -n '/^# trust = /,$p' "$root/etc/ferry/installer.toml" | sed 's/^# \{0,1\}//' >"$root/tmp/w/uncommented.toml"
check "installer.toml's example, uncommented, is a valid configuration" \
    in_root ferry-install --quiet --config /tmp/w/uncommented.toml backup list
cp "$root/tmp/w/media/$bundle" "$root/tmp/w/tampered.ferry.tar.gz"
size="$(stat -c %s "$root/tmp/w/tampered.ferry.tar.gz")"
printf 'X' | dd of="$root/tmp/w/tampered.ferry.tar.gz" bs=1 seek=$((size / 2)) conv=notrunc status=none
set +e
in_root ferry-install --quiet verify /tmp/w/tampered.ferry.tar.gz 2>"$work/tampered.err"
code=$?
set -e
check "a tampered bundle is refused with exit code 3 (got $code)" test "$code" = 3

say "dpkg -r, dpkg -P"
in_root dpkg -r ferry-install ferry-build >/dev/null
check "dpkg -r removes the binaries" test ! -e "$root/usr/bin/ferry-install" -a ! -e "$root/usr/bin/ferry-build"
check "dpkg -r keeps installer.toml" test -f "$root/etc/ferry/installer.toml"
in_root dpkg -P ferry-install ferry-build >/dev/null 2>&1
check "dpkg -P removes installer.toml" test ! -e "$root/etc/ferry/installer.toml"
check "dpkg -P keeps the administrator's key" test -f "$root/etc/ferry/trusted/release.pub"
echo "all checks passed in $suite"
