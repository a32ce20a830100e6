#!/usr/bin/env bash
# ferry end to end on local fixtures, no network: generate a signing key, build a signed
# bundle from local files, verify it, inspect it, add a co-signature and require two
# signers, then show that a tampered bundle is refused with exit code 3.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "building ferry-build and ferry-install"
cargo build --quiet --locked -p ferry-builder -p ferry-installer
bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug"

work="$(mktemp -d /tmp/ferry-demo.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"

say "connected side: a spec with local files"
mkdir -p payload
head -c 2000000 /dev/urandom > payload/tyk-gateway_5.2.5_amd64.deb
printf '{"listen_port": 8080, "health_check_endpoint_name": "hello"}\n' > payload/tyk.conf
cat > spec.toml <<'SPEC'
name = "demo-5.2.5-debian-bookworm-amd64"
channel = "demo/debian-bookworm-amd64"
expires_in_days = 30

[target]
distro = "debian"
codename = "bookworm"
arch = "amd64"

[[file]]
source = "payload/tyk-gateway_5.2.5_amd64.deb"
path = "files/tyk-gateway_5.2.5_amd64.deb"

[[file]]
source = "payload/tyk.conf"
path = "files/tyk.conf"

[[step]]
component = "gateway"
service = "tyk-gateway"
configs = ["/opt/tyk-gateway/tyk.conf"]
only_if_installed = true
health = { url = "http://127.0.0.1:8080/hello", json_status = ["pass"], timeout_secs = 60 }

[[backup]]
kind = "redis"
config = "/opt/tyk-gateway/tyk.conf"
SPEC
cat spec.toml

say "ferry-build key generate (two keys: release and security review)"
"$bin/ferry-build" key generate --out release --no-passphrase
"$bin/ferry-build" key generate --out review --no-passphrase

say "ferry-build build (gzip, split into 1 MiB parts for removable media)"
"$bin/ferry-build" build --spec spec.toml --key release.key --out media --split 1M

say "ferry-build sign: the reviewer co-signs the bundle"
"$bin/ferry-build" sign media/demo-5.2.5-debian-bookworm-amd64.ferry.tar.gz.000 --key review.key --out media/review.minisig

say "air-gapped side: trust both public keys"
mkdir -p trusted && cp release.pub review.pub trusted/

say "ferry-install inspect (manifest only, not verified)"
"$bin/ferry-install" inspect media/demo-5.2.5-debian-bookworm-amd64.ferry.tar.gz.000

say "ferry-install verify with a 2-of-2 threshold"
"$bin/ferry-install" verify media/demo-5.2.5-debian-bookworm-amd64.ferry.tar.gz.000 \
    --trust trusted --threshold 2 --signature media/review.minisig

say "a tampered bundle: one byte flipped in the middle of part .001"
cp -r media tampered
part=tampered/demo-5.2.5-debian-bookworm-amd64.ferry.tar.gz.001
offset=$(( $(stat -c %s "$part") / 2 ))
byte=$(od -An -tu1 -j "$offset" -N1 "$part" | tr -d ' ')
printf "$(printf '\\%03o' $(( byte ^ 1 )))" | dd of="$part" bs=1 seek="$offset" conv=notrunc status=none
set +e
"$bin/ferry-install" verify tampered/demo-5.2.5-debian-bookworm-amd64.ferry.tar.gz.000 --trust trusted
code=$?
set -e
if [[ $code -ne 3 ]]; then
    echo "expected exit code 3 for a tampered bundle, got $code" >&2
    exit 1
fi
echo "refused with exit code 3, as it must be"

say "summary"
echo "built, co-signed and verified a split bundle; a one-byte change was refused (exit 3)."
echo "nothing was installed: this demo covers keys, bundles and verification."
