//! Interoperability with Debian's stock `minisign`: keys and signatures go both ways.

use crate::roundtrip::{keygen, project};
use ferry_tests::{ferry_build, ferry_install, require_tool, run_in, run_with_stdin, TestDir};
use std::path::Path;

fn minisign() -> std::path::PathBuf {
    require_tool("minisign", "minisign")
}

/// Build the project's spec with `key` into `out`, uncompressed, and return the bundle path.
fn build_with(dir: &TestDir, key: &str, out: &str, env: &[(&str, &str)]) -> String {
    let run = ferry_build(
        dir.path(),
        &[
            "build",
            "--spec",
            "spec.toml",
            "--key",
            key,
            "--out",
            out,
            "--compression",
            "none",
            "--json",
        ],
        env,
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["files"][0].as_str().unwrap().to_string()
}

/// Pull one member out of a plain bundle with GNU tar.
fn extract(dir: &TestDir, bundle: &str, member: &str, to: &str) {
    let tar = require_tool("tar", "tar");
    let out = std::process::Command::new(tar)
        .args(["-xOf", bundle, member])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -x {member}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join(to), out.stdout).unwrap();
}

fn key_id_of(dir: &TestDir, pub_file: &str) -> String {
    // minisign writes the id without leading zeros; ferry's KEYID has 16 digits.
    let text = std::fs::read_to_string(dir.join(pub_file)).unwrap();
    let printed = text.lines().next().unwrap().rsplit(' ').next().unwrap();
    format!("{:016X}", u64::from_str_radix(printed, 16).unwrap())
}

#[test]
fn minisign_verifies_a_ferry_signature() {
    let dir = TestDir::new();
    project(&dir);
    let bundle = build_with(&dir, "k1.key", "out", &[]);
    let id = key_id_of(&dir, "k1.pub");
    extract(&dir, &bundle, "ferry/manifest.json", "manifest.json");
    extract(
        &dir,
        &bundle,
        &format!("ferry/signatures/{id}.minisig"),
        "manifest.json.minisig",
    );
    let minisign_verify = || {
        run_in(
            dir.path(),
            &minisign(),
            &[
                "-V",
                "-p",
                "k1.pub",
                "-m",
                "manifest.json",
                "-x",
                "manifest.json.minisig",
            ],
            &[],
        )
    };
    let run = minisign_verify().ok();
    assert!(
        run.stdout.contains(
            "Trusted comment: ferry/1 name=demo-5.2.5 channel=demo/bookworm-amd64 sequence="
        ),
        "{}",
        run.stdout
    );
    // A changed manifest is refused by minisign too.
    let mut m = std::fs::read(dir.join("manifest.json")).unwrap();
    m[10] ^= 1;
    std::fs::write(dir.join("manifest.json"), m).unwrap();
    let bad = minisign_verify();
    assert_ne!(bad.code, 0);
}

#[test]
fn keys_made_by_minisign_sign_bundles_through_ferry_build() {
    let dir = TestDir::new();
    project(&dir);
    // Without a password.
    run_in(
        dir.path(),
        &minisign(),
        &["-G", "-W", "-p", "nopw.pub", "-s", "nopw.key"],
        &[],
    )
    .ok();
    // With a password, typed on stdin.
    run_with_stdin(
        dir.path(),
        &minisign(),
        &["-G", "-p", "pw.pub", "-s", "pw.key"],
        b"s3cret\ns3cret\n",
        &[],
    )
    .ok();
    for (key, public, env) in [
        ("nopw.key", "nopw.pub", vec![]),
        ("pw.key", "pw.pub", vec![("FERRY_PASSPHRASE", "s3cret")]),
    ] {
        let bundle = build_with(&dir, key, &format!("out-{key}"), &env);
        let run = ferry_install(
            dir.path(),
            &["verify", &bundle, "--trust", public, "--json"],
        )
        .ok();
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["signers"][0], key_id_of(&dir, public));
    }
    // The wrong passphrase is refused, and says so.
    ferry_build(
        dir.path(),
        &[
            "build",
            "--spec",
            "spec.toml",
            "--key",
            "pw.key",
            "--out",
            "wrong",
        ],
        &[("FERRY_PASSPHRASE", "nope")],
    )
    .code(1)
    .stderr_has("passphrase");
    assert!(!dir.join("wrong").exists());
    // Without a terminal or FERRY_PASSPHRASE, an encrypted key cannot be opened.
    ferry_build(
        dir.path(),
        &[
            "build",
            "--spec",
            "spec.toml",
            "--key",
            "pw.key",
            "--out",
            "none",
        ],
        &[],
    )
    .code(1)
    .stderr_has("FERRY_PASSPHRASE");
}

#[test]
fn minisign_signs_with_ferry_keys_and_ferry_counts_it() {
    let dir = TestDir::new();
    project(&dir);
    // An encrypted ferry key (scrypt with minisign's parameters) and an unencrypted one.
    ferry_build(
        dir.path(),
        &["key", "generate", "--out", "enc"],
        &[("FERRY_PASSPHRASE", "hunter2")],
    )
    .ok();
    let first = std::fs::read_to_string(dir.join("enc.key")).unwrap();
    assert!(
        first.starts_with("untrusted comment: minisign encrypted secret key"),
        "{first}"
    );
    keygen(&dir, "plain");
    let bundle = build_with(&dir, "k1.key", "out", &[]);
    extract(&dir, &bundle, "ferry/manifest.json", "manifest.json");
    let inspect = ferry_install(dir.path(), &["inspect", &bundle, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let comment = v["signatures"][0]["trusted_comment"]
        .as_str()
        .unwrap()
        .to_string();
    for (key, stdin) in [("enc", "hunter2\n"), ("plain", "")] {
        let sig = format!("{key}.minisig");
        run_with_stdin(
            dir.path(),
            &minisign(),
            &[
                "-S",
                "-s",
                &format!("{key}.key"),
                "-m",
                "manifest.json",
                "-x",
                &sig,
                "-t",
                &comment,
            ],
            stdin.as_bytes(),
            &[],
        )
        .ok();
        // The stock tool's signature is a valid ferry co-signature.
        std::fs::create_dir_all(dir.join(format!("trust-{key}"))).unwrap();
        for p in ["k1.pub", &format!("{key}.pub")] {
            std::fs::copy(
                dir.join(p),
                dir.join(format!("trust-{key}")).join(Path::new(p)),
            )
            .unwrap();
        }
        ferry_install(
            dir.path(),
            &[
                "verify",
                &bundle,
                "--trust",
                &format!("trust-{key}"),
                "--threshold",
                "2",
                "--signature",
                &sig,
            ],
        )
        .ok();
    }
}
