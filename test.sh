#!/usr/bin/env bash
# Run every ferry test. Installs the Debian packages the tests use when they are missing
# (as root, or through sudo), then runs the whole workspace's tests: `cargo test
# --workspace` also builds the ferry-build and ferry-install binaries the end-to-end
# tests drive.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < .ci/debian-packages
if ((${#missing[@]})); then
    echo "test.sh: installing Debian packages: ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo test --workspace --locked "$@"
