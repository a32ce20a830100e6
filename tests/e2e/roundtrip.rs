//! generate → build → verify → inspect, in every shape a bundle can take.

use ferry_tests::{ferry_build, ferry_install, noise, sha256_file, TestDir};
use std::path::{Path, PathBuf};

/// A spec with a few payload files (one executable) and a fresh unencrypted key.
pub fn project(dir: &TestDir) -> PathBuf {
    dir.write("payload/tyk-gateway_5.2.5_amd64.deb", noise(300_000, 7));
    dir.write("payload/tyk.conf", b"{\"listen_port\": 8080}\n");
    let tool = dir.write("payload/tool.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir.write(
        "spec.toml",
        r#"
name = "demo-5.2.5"
channel = "demo/bookworm-amd64"
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
path = "files/conf/tyk.conf"

[[file]]
source = "payload/tool.sh"
path = "files/tool.sh"

[[step]]
component = "gateway"
service = "tyk-gateway"
configs = ["/opt/tyk-gateway/tyk.conf"]
health = { url = "http://127.0.0.1:8080/hello", json_status = ["pass"], timeout_secs = 30 }

[[backup]]
kind = "files"
paths = ["/opt/tyk-gateway"]
"#,
    );
    keygen(dir, "k1");
    std::fs::create_dir_all(dir.join("trusted")).unwrap();
    std::fs::copy(dir.join("k1.pub"), dir.join("trusted/k1.pub")).unwrap();
    dir.join("spec.toml")
}

/// `ferry-build key generate --out NAME --no-passphrase`.
pub fn keygen(dir: &TestDir, name: &str) {
    ferry_build(
        dir.path(),
        &["key", "generate", "--out", name, "--no-passphrase"],
        &[],
    )
    .ok();
}

fn build(dir: &TestDir, out: &str, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec![
        "build",
        "--spec",
        "spec.toml",
        "--key",
        "k1.key",
        "--out",
        out,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = ferry_build(dir.path(), &args, &[]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| dir.join(p.as_str().unwrap()))
        .collect()
}

fn verify(dir: &TestDir, bundle: &Path, extra: &[&str]) -> ferry_tests::Run {
    let mut args = vec!["verify", bundle.to_str().unwrap(), "--trust", "trusted"];
    args.extend_from_slice(extra);
    ferry_install(dir.path(), &args)
}

#[test]
fn gzip_and_plain_whole_and_split_all_verify_and_inspect() {
    let dir = TestDir::new();
    project(&dir);
    for (out, extra, parts) in [
        ("gz", vec![], 1),
        ("plain", vec!["--compression", "none"], 1),
        ("gz-split", vec!["--split", "100K"], 0),
        (
            "plain-split",
            vec!["--compression", "none", "--split", "64K"],
            0,
        ),
    ] {
        let files = build(&dir, out, &extra);
        if parts == 1 {
            assert_eq!(files.len(), 1, "{out}");
        } else {
            assert!(files.len() > 2, "{out}: {files:?}");
            assert!(files[0].to_str().unwrap().ends_with(".000"));
        }
        let run = verify(&dir, &files[0], &["--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["verified"], true);
        assert_eq!(v["files"], 3);
        assert_eq!(v["payload_bytes"], 300_000 + 22 + 18);
        assert_eq!(v["compressed"], !out.starts_with("plain"));
        let inspect = ferry_install(
            dir.path(),
            &["inspect", files[0].to_str().unwrap(), "--json"],
        )
        .ok();
        let m: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(m["verified"], false);
        assert_eq!(m["manifest"]["name"], "demo-5.2.5");
        assert_eq!(m["manifest"]["channel"], "demo/bookworm-amd64");
        assert_eq!(
            m["manifest"]["steps"][0]["health"]["json_status"][0],
            "pass"
        );
        let files_json = m["manifest"]["files"].as_array().unwrap();
        let tool = files_json
            .iter()
            .find(|f| f["path"] == "files/tool.sh")
            .unwrap();
        assert_eq!(tool["mode"], "0755", "executable bit carried");
        assert_eq!(m["signatures"].as_array().unwrap().len(), 1);
        // The human form says plainly that nothing was verified.
        ferry_install(dir.path(), &["inspect", files[0].to_str().unwrap()])
            .ok()
            .stdout_has("NOT VERIFIED");
    }
}

#[test]
fn split_bundle_can_be_named_without_the_part_suffix() {
    let dir = TestDir::new();
    project(&dir);
    let files = build(&dir, "out", &["--split", "50K"]);
    let base = files[0]
        .to_str()
        .unwrap()
        .trim_end_matches(".000")
        .to_string();
    verify(&dir, Path::new(&base), &[]).ok().stdout_has("OK:");
}

#[test]
fn rebuilding_with_fewer_parts_removes_stale_parts() {
    let dir = TestDir::new();
    project(&dir);
    let many = build(&dir, "out", &["--split", "40K"]);
    let few = build(&dir, "out", &["--split", "200K"]);
    assert!(few.len() < many.len());
    for stale in &many[few.len()..] {
        assert!(!stale.exists(), "{} left behind", stale.display());
    }
    verify(&dir, &few[0], &[]).ok();
}

#[test]
fn same_source_date_epoch_gives_byte_identical_bundles() {
    let dir = TestDir::new();
    project(&dir);
    let env = [("SOURCE_DATE_EPOCH", "1763683200")];
    let mut hashes = vec![];
    for out in ["a", "b"] {
        for compression in ["gzip", "none"] {
            let run = ferry_build(
                dir.path(),
                &[
                    "build",
                    "--spec",
                    "spec.toml",
                    "--key",
                    "k1.key",
                    "--out",
                    out,
                    "--compression",
                    compression,
                    "--json",
                ],
                &env,
            )
            .ok();
            let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            let file = dir.join(v["files"][0].as_str().unwrap());
            assert_eq!(v["sha256"].as_str().unwrap(), sha256_file(&file));
            assert_eq!(v["created"], "2025-11-21T00:00:00Z");
            hashes.push(v["sha256"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(hashes[0], hashes[2], "gzip builds differ");
    assert_eq!(hashes[1], hashes[3], "plain builds differ");
    assert_ne!(hashes[0], hashes[1]);
}

#[test]
fn two_of_three_threshold_with_detached_cosignatures() {
    let dir = TestDir::new();
    project(&dir);
    keygen(&dir, "k2");
    keygen(&dir, "k3");
    for k in ["k2", "k3"] {
        std::fs::copy(
            dir.join(format!("{k}.pub")),
            dir.join(format!("trusted/{k}.pub")),
        )
        .unwrap();
    }
    let bundle = build(&dir, "out", &[]).remove(0);
    let b = bundle.to_str().unwrap();
    // One embedded signature does not meet 2-of-3.
    verify(&dir, &bundle, &["--threshold", "2"])
        .code(3)
        .stderr_has("ferry/manifest.json");
    // A co-signature by a second trusted key does.
    ferry_build(
        dir.path(),
        &["sign", b, "--key", "k2.key", "--out", "k2.minisig"],
        &[],
    )
    .ok();
    let run = verify(
        &dir,
        &bundle,
        &["--threshold", "2", "--signature", "k2.minisig", "--json"],
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);
    assert_eq!(v["threshold"], 2);
    // Threshold 3 is still unmet.
    verify(
        &dir,
        &bundle,
        &["--threshold", "3", "--signature", "k2.minisig"],
    )
    .code(3);
    // Co-signing again with the first key adds no second vote.
    ferry_build(
        dir.path(),
        &["sign", b, "--key", "k1.key", "--out", "k1-again.minisig"],
        &[],
    )
    .ok();
    verify(
        &dir,
        &bundle,
        &["--threshold", "2", "--signature", "k1-again.minisig"],
    )
    .code(3)
    .stderr_has("threshold");
    // The same detached file twice is one key, once: k1 + k2 make two, not three.
    verify(
        &dir,
        &bundle,
        &[
            "--threshold",
            "3",
            "--signature",
            "k2.minisig",
            "--signature",
            "k2.minisig",
        ],
    )
    .code(3)
    .stderr_has("threshold");
    // Threshold from installer.toml under --root.
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc/ferry/trusted")).unwrap();
    for k in ["k1", "k2", "k3"] {
        std::fs::copy(
            dir.join(format!("{k}.pub")),
            root.join(format!("etc/ferry/trusted/{k}.pub")),
        )
        .unwrap();
    }
    std::fs::write(root.join("etc/ferry/installer.toml"), "threshold = 2\n").unwrap();
    ferry_install(dir.path(), &["--root", "root", "verify", b]).code(3);
    ferry_install(
        dir.path(),
        &["--root", "root", "verify", b, "--signature", "k2.minisig"],
    )
    .ok();
}

#[test]
fn a_cosigner_refuses_a_corrupted_bundle() {
    let dir = TestDir::new();
    project(&dir);
    let bundle = build(&dir, "out", &["--compression", "none"]).remove(0);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    ferry_build(
        dir.path(),
        &[
            "sign",
            bundle.to_str().unwrap(),
            "--key",
            "k1.key",
            "--out",
            "x.minisig",
        ],
        &[],
    )
    .code(3)
    .stderr_has("files/tyk-gateway_5.2.5_amd64.deb");
    assert!(!dir.join("x.minisig").exists());
}

#[test]
fn spec_errors_name_the_field_and_write_nothing() {
    let dir = TestDir::new();
    project(&dir);
    let spec = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
    dir.write(
        "bad.toml",
        spec.replace(
            "source = \"payload/tyk.conf\"",
            "source = \"payload/nope.conf\"",
        ),
    );
    ferry_build(
        dir.path(),
        &[
            "build", "--spec", "bad.toml", "--key", "k1.key", "--out", "o",
        ],
        &[],
    )
    .code(1)
    .stderr_has("file[1].source");
    dir.write("bad2.toml", format!("{spec}\n[[package]]\nname = \"tyk-gateway\"\n[[repository]]\nid = \"tyk\"\nurl = \"http://127.0.0.1:1/\"\nsuite = \"bookworm\"\n"));
    ferry_build(
        dir.path(),
        &[
            "build",
            "--spec",
            "bad2.toml",
            "--key",
            "k1.key",
            "--out",
            "o",
        ],
        &[
            ("FERRY_RETRY_DELAY_MS", "1"),
            ("XDG_CACHE_HOME", dir.join("cache").to_str().unwrap()),
        ],
    )
    .code(1)
    .stderr_has("http://127.0.0.1:1/dists/bookworm/InRelease");
    assert!(!dir.join("o").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = TestDir::new();
    ferry_install(dir.path(), &["verify"]).code(2);
    ferry_install(dir.path(), &["frobnicate"]).code(2);
    ferry_build(dir.path(), &["build", "--spec"], &[]).code(2);
    ferry_install(dir.path(), &["verify", "x", "--threshold", "0"]).code(2);
}

#[test]
fn key_generate_refuses_to_overwrite_and_protects_the_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    keygen(&dir, "k");
    let mode = std::fs::metadata(dir.join("k.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(dir.join("k.key")).unwrap();
    ferry_build(
        dir.path(),
        &["key", "generate", "--out", "k", "--no-passphrase"],
        &[],
    )
    .code(1)
    .stderr_has("--force");
    assert_eq!(before, std::fs::read(dir.join("k.key")).unwrap());
}
