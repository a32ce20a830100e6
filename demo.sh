#!/usr/bin/env bash
# ferry's Tyk demo, end to end on this machine with no network but 127.0.0.1: Tyk-like
# packages in signed APT repositories laid out like Tyk's, a registry, Redis, a throwaway
# root running Tyk 4.0.8; then ferry-build tyk, ferry-install verify, plan and apply to
# 5.2.5, and a broken 5.2.6 rolled back automatically. README.md, "The demo", tells more.
#
# Installs the Debian packages it needs when they are missing (as test.sh does), builds
# ferry, then runs the demo (tests/src/bin/tyk_demo.rs), which needs root: dpkg chroots
# into the throwaway root to run the packages' maintainer scripts. Arguments go to the
# demo: --keep DIR keeps the bundles, backup sets and logs.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")"

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "demo.sh: the demo needs root (dpkg chroots into a throwaway root to run maintainer scripts), and sudo is not installed: run it as root" >&2
        exit 1
    fi
    echo "demo.sh: not root: the Debian packages are installed and the demo is run with sudo (dpkg chroots into a throwaway root to run maintainer scripts)" >&2
    sudo="sudo"
fi

.ci/ensure-packages demo.sh

echo "demo.sh: building ferry-build, ferry-install and the demo" >&2
cargo build --quiet --locked -p ferry-builder -p ferry-installer -p ferry-tests --bins
target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"

# From the caller's directory, so that a relative --keep DIR is where they expect it.
cd "$caller"
exec $sudo "$target/debug/ferry-tyk-demo" "$@"
