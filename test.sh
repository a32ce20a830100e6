#!/usr/bin/env bash
# Run every ferry test. Installs the Debian packages the tests use when they are missing
# (as root, or through sudo), then runs the whole workspace's tests: `cargo test
# --workspace` also builds the ferry-build and ferry-install binaries the end-to-end
# tests drive.
set -euo pipefail
cd "$(dirname "$0")"

.ci/ensure-packages test.sh

exec cargo test --workspace --locked "$@"
