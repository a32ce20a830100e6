//! Hostile bundles. Each must be refused with exit code 3 and a message naming the
//! offending entry, and nothing may be written: not by `verify`, and not outside the
//! staging directory (which is removed again) by an extracting read.

use ferry_bundle::{read_bundle, BundleSource, Check, NullReporter, Timestamp, TrustPolicy};
use ferry_keys::{SecretKey, TrustStore};
use ferry_tests::forge::{gzip, Fixture, Forge, RawEntry};
use ferry_tests::{ferry_install, Run, TestDir};

/// How a hostile case is presented to the verifier.
struct Case<'a> {
    bytes: Vec<u8>,
    name: &'a str,
    args: Vec<String>,
}

fn case(bytes: Vec<u8>) -> Case<'static> {
    Case {
        bytes,
        name: "bundle.ferry.tar",
        args: vec![],
    }
}

const STATE: &str = "root/var/lib/ferry/state.json";

/// A directory that trusts the fixture's key (`trusted/k.pub`) and holds `files`.
fn host(fix: &Fixture, files: &[(&str, &[u8])]) -> TestDir {
    let dir = TestDir::new();
    dir.write("trusted/k.pub", fix.public_key_file());
    for (name, bytes) in files {
        dir.write(name, bytes);
    }
    dir
}

/// `ferry-install verify BUNDLE --trust trusted EXTRA...` in `dir`.
fn verify(dir: &TestDir, bundle: &str, extra: &[&str]) -> Run {
    let mut args = vec!["verify", bundle, "--trust", "trusted"];
    args.extend_from_slice(extra);
    ferry_install(dir.path(), &args)
}

/// The same, against the host root `dir/root` (for its state.json).
fn verify_root(dir: &TestDir, bundle: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--root", "root", "verify", bundle, "--trust", "trusted"];
    args.extend_from_slice(extra);
    ferry_install(dir.path(), &args)
}

/// A state.json that applied `sequence` on `channel`.
fn state_json(channel: &str, sequence: u64, newest_created: Timestamp) -> String {
    format!(
        r#"{{"channels": {{"{channel}": {{"sequence": {sequence}, "name": "earlier", "newest_created": "{newest_created}"}}}}}}"#
    )
}

/// Verify through the CLI and through an extracting library read; both must refuse.
#[track_caller]
fn assert_rejected(fix: &Fixture, c: Case<'_>, needle: &str) -> Run {
    let dir = host(fix, &[(c.name, &c.bytes)]);
    let before = dir.snapshot();
    let mut args = vec![
        "verify".to_string(),
        c.name.to_string(),
        "--trust".into(),
        "trusted".into(),
    ];
    args.extend(c.args.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = ferry_install(dir.path(), &argv).code(3).stderr_has(needle);
    assert_eq!(before, dir.snapshot(), "verify wrote something");

    // The same bundle, extracting: the staging directory is created and removed again.
    let trust = TrustStore::load(&dir.join("trusted")).unwrap();
    let source = BundleSource::open(&dir.join(c.name));
    if let Ok(source) = source {
        let policy = TrustPolicy::new(&trust, 1);
        let staging = dir.join("staging");
        let result = read_bundle(
            &source,
            Check::Verify(policy),
            Some(&staging),
            &NullReporter,
        );
        assert!(result.is_err(), "library accepted what the CLI refused");
        assert!(!staging.exists(), "staging left behind after a failed read");
        assert_eq!(
            before,
            dir.snapshot(),
            "an extracting read left files behind"
        );
    }
    run
}

fn reject(fix: &Fixture, forge: &Forge, needle: &str) {
    assert_rejected(fix, case(forge.tar()), needle);
    assert_rejected(
        fix,
        Case {
            bytes: forge.tar_gz(),
            name: "bundle.ferry.tar.gz",
            args: vec![],
        },
        needle,
    );
}

#[test]
fn the_untouched_fixture_verifies() {
    // Guards every other test here: they fail for the reason they name, not because
    // the fixture itself is broken.
    let fix = Fixture::new();
    let dir = host(
        &fix,
        &[
            ("b.ferry.tar", &fix.forge().tar()),
            ("b.ferry.tar.gz", &fix.forge().tar_gz()),
        ],
    );
    for b in ["b.ferry.tar", "b.ferry.tar.gz"] {
        verify(&dir, b, &[]).ok();
    }
}

#[test]
fn flipped_byte_in_each_payload_file() {
    let fix = Fixture::new();
    for (path, _) in &fix.files {
        let mut forge = fix.forge();
        let i = forge.index(path);
        let len = forge.entries[i].data.len();
        forge.entries[i].data[len / 2] ^= 0x40;
        reject(&fix, &forge, path);
        assert_rejected(&fix, case(forge.tar()), "sha256 mismatch");
    }
}

#[test]
fn changed_manifest_byte() {
    let fix = Fixture::new();
    let mut forge = fix.forge();
    let json = String::from_utf8(forge.entries[0].data.clone()).unwrap();
    forge.entries[0].data = json
        .replace("\"sequence\": 100", "\"sequence\": 900")
        .into_bytes();
    let run = assert_rejected(&fix, case(forge.tar()), "ferry/manifest.json");
    assert!(
        run.stderr.contains(&format!(
            "signature verification failed for key {}",
            fix.key.id()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn truncated_empty_and_missing_signature() {
    let fix = Fixture::new();
    let sig_entry = format!("ferry/signatures/{}.minisig", fix.key.id());
    let mut forge = fix.forge();
    let len = forge.entries[1].data.len();
    forge.entries[1].data.truncate(len / 2);
    reject(&fix, &forge, &sig_entry);

    let mut forge = fix.forge();
    forge.entries[1].data.clear();
    reject(&fix, &forge, &sig_entry);

    let mut forge = fix.forge();
    forge.entries.remove(1);
    reject(&fix, &forge, "no signature");
}

#[test]
fn signature_by_an_untrusted_key() {
    let fix = Fixture::new();
    let stranger = SecretKey::generate();
    let sig = fix.sign_with(&stranger);
    let mut forge = fix.forge();
    forge.entries[1] = RawEntry::file(
        &format!("ferry/signatures/{}.minisig", stranger.id()),
        sig.to_file_string().as_bytes(),
    );
    reject(&fix, &forge, &stranger.id().to_string());
}

#[test]
fn forged_signature_carrying_a_trusted_key_id() {
    use base64::Engine;
    let fix = Fixture::new();
    let forger = SecretKey::generate();
    let text = fix.sign_with(&forger).to_file_string();
    // Swap the key number inside the signature for the trusted key's.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(&lines[1]).unwrap();
    raw[2..10].copy_from_slice(&fix.key.id().0);
    lines[1] = b64.encode(raw);
    let forged = lines.join("\n") + "\n";
    let mut forge = fix.forge();
    forge.entries[1].data = forged.into_bytes();
    let run = assert_rejected(&fix, case(forge.tar()), "ferry/manifest.json");
    assert!(
        run.stderr.contains("signature verification failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_same_key_counts_once_toward_a_threshold() {
    let fix = Fixture::new();
    // A second, different signature by the same key, passed as a detached file.
    let again = fix
        .key
        .sign(
            &fix.manifest_json(),
            &fix.manifest.trusted_comment(),
            "again",
        )
        .unwrap();
    let dir = host(&fix, &[("b.ferry.tar", &fix.forge().tar())]);
    dir.write("again.minisig", again.to_file_string());
    // Threshold 1 passes with it...
    verify(&dir, "b.ferry.tar", &["--signature", "again.minisig"]).ok();
    // ...threshold 2 does not, even with a second trusted key in the store.
    let other = SecretKey::generate();
    dir.write("trusted/other.pub", other.public_key().to_file_string());
    verify(
        &dir,
        "b.ferry.tar",
        &["--threshold", "2", "--signature", "again.minisig"],
    )
    .code(3)
    .stderr_has("ferry/manifest.json");
}

#[test]
fn trusted_comment_that_disagrees_with_the_manifest() {
    let fix = Fixture::new();
    let sig = fix
        .key
        .sign(
            &fix.manifest_json(),
            "ferry/1 name=hostile-1 channel=test/bookworm-amd64 sequence=999",
            "x",
        )
        .unwrap();
    let mut forge = fix.forge();
    forge.entries[1].data = sig.to_file_string().into_bytes();
    reject(&fix, &forge, "trusted comment");
}

#[test]
fn extra_missing_duplicate_and_reordered_entries() {
    let fix = Fixture::new();
    let mut forge = fix.forge();
    forge
        .entries
        .push(RawEntry::file("files/extra.txt", b"surprise"));
    reject(&fix, &forge, "files/extra.txt");

    let mut forge = fix.forge();
    forge
        .entries
        .insert(3, RawEntry::file("files/between.txt", b"surprise"));
    reject(&fix, &forge, "files/between.txt");

    let mut forge = fix.forge();
    let last = forge.entries.pop().unwrap();
    reject(&fix, &forge, &last.path);

    let mut forge = fix.forge();
    let dup = forge.entries[2].clone();
    forge.entries.insert(3, dup.clone());
    reject(&fix, &forge, &dup.path);
    assert_rejected(&fix, case(forge.tar()), "duplicate");

    let mut forge = fix.forge();
    forge.entries.swap(2, 3);
    reject(&fix, &forge, "out of order");

    let mut forge = fix.forge();
    let dup_sig = forge.entries[1].clone();
    forge.entries.insert(2, dup_sig);
    reject(&fix, &forge, "duplicate");

    let mut forge = fix.forge();
    forge.entries.swap(0, 1);
    reject(&fix, &forge, "first entry must be ferry/manifest.json");

    let mut forge = fix.forge();
    let sig = forge.entries.remove(1);
    forge.entries.push(sig);
    reject(&fix, &forge, "no signature");
}

#[test]
fn payload_longer_and_shorter_than_declared() {
    let fix = Fixture::new();
    let path = fix.files[0].0.clone();
    let mut forge = fix.forge();
    forge.entries[2].data.push(0);
    reject(&fix, &forge, &path);
    let mut forge = fix.forge();
    forge.entries[2].data.pop();
    reject(&fix, &forge, &path);
    assert_rejected(&fix, case(forge.tar()), "size mismatch");
}

#[test]
fn oversized_manifest() {
    let fix = Fixture::new();
    let mut forge = fix.forge();
    forge.entries[0].data.resize(16 * 1024 * 1024 + 1, b' ');
    reject(&fix, &forge, "ferry/manifest.json");
}

#[test]
fn paths_that_escape() {
    let fix = Fixture::new();
    for bad in ["../x", "/etc/x", "a/../../x", "files/./x", "files//x"] {
        let mut forge = fix.forge();
        forge.entries.insert(2, RawEntry::file(bad, b"owned"));
        let run = assert_rejected(&fix, case(forge.tar()), bad);
        assert!(!std::path::Path::new("/etc/x").exists());
        drop(run);
    }
}

#[test]
fn links_devices_and_fifos() {
    let fix = Fixture::new();
    let target = fix.files[1].0.clone();
    for (kind, word, link) in [
        (b'2', "symlink", Some("/etc/shadow")),
        (b'1', "hardlink", Some("/etc/shadow")),
        (b'3', "character device", None),
        (b'4', "block device", None),
        (b'6', "FIFO", None),
    ] {
        let mut forge = fix.forge();
        let i = forge.index(&target);
        forge.entries[i].kind = kind;
        forge.entries[i].data.clear();
        forge.entries[i].link = link.map(String::from);
        let run = assert_rejected(&fix, case(forge.tar()), &target);
        assert!(run.stderr.contains(word), "{}", run.stderr);
    }
}

#[test]
fn setuid_setgid_and_foreign_owner() {
    let fix = Fixture::new();
    let path = fix.files[2].0.clone();
    for mode in [0o4755, 0o2755] {
        let mut forge = fix.forge();
        forge.entries[4].mode = mode;
        let run = assert_rejected(&fix, case(forge.tar()), &path);
        assert!(run.stderr.contains("setuid"), "{}", run.stderr);
    }
    let mut forge = fix.forge();
    forge.entries[4].uid = 1000;
    assert_rejected(&fix, case(forge.tar()), &path);
    let mut forge = fix.forge();
    forge.entries[4].mode = 0o755;
    assert_rejected(&fix, case(forge.tar()), "mode");
}

#[test]
fn pax_size_that_disagrees_with_the_ustar_size() {
    let fix = Fixture::new();
    let path = fix.files[1].0.clone();
    let mut forge = fix.forge();
    let i = forge.index(&path);
    forge.entries[i].pax = vec![("size".into(), "5".into())];
    let run = assert_rejected(&fix, case(forge.tar()), &path);
    assert!(run.stderr.contains("PAX"), "{}", run.stderr);
    // An agreeing PAX size is fine.
    let mut forge = fix.forge();
    let len = forge.entries[i].data.len();
    forge.entries[i].pax = vec![("size".into(), len.to_string())];
    let dir = host(&fix, &[("b.ferry.tar", &forge.tar())]);
    verify(&dir, "b.ferry.tar", &[]).ok();
}

#[test]
fn trailing_garbage_after_the_archive() {
    let fix = Fixture::new();
    let mut forge = fix.forge();
    forge.trailer = b"GARBAGE".to_vec();
    reject(&fix, &forge, "trailing");
    // After the gzip stream, too.
    let mut gz = fix.forge().tar_gz();
    gz.extend_from_slice(b"GARBAGE");
    assert_rejected(
        &fix,
        Case {
            bytes: gz,
            name: "bundle.ferry.tar.gz",
            args: vec![],
        },
        "trailing garbage",
    );
    // A second gzip member is garbage as well.
    let mut gz = fix.forge().tar_gz();
    gz.extend_from_slice(&gzip(b"more"));
    assert_rejected(
        &fix,
        Case {
            bytes: gz,
            name: "bundle.ferry.tar.gz",
            args: vec![],
        },
        "trailing garbage",
    );
}

#[test]
fn gzip_that_inflates_beyond_the_declared_total() {
    let fix = Fixture::new();
    let mut forge = fix.forge();
    forge.trailer = vec![0u8; 64 * 1024 * 1024];
    let gz = forge.tar_gz();
    assert!(gz.len() < 1024 * 1024);
    assert_rejected(
        &fix,
        Case {
            bytes: gz,
            name: "bundle.ferry.tar.gz",
            args: vec![],
        },
        "more bytes than the manifest accounts for",
    );
    // An entry whose header claims far more than the manifest: the budget stops it.
    let mut forge = fix.forge();
    let last = forge.entries.len() - 1;
    forge.entries[last].data = vec![0u8; 8 * 1024 * 1024];
    assert_rejected(
        &fix,
        Case {
            bytes: forge.tar_gz(),
            name: "bundle.ferry.tar.gz",
            args: vec![],
        },
        &fix.files[2].0,
    );
}

#[test]
fn truncated_bundles() {
    let fix = Fixture::new();
    let tar = fix.forge().tar();
    let gz = fix.forge().tar_gz();
    for cut in [tar.len() / 2, tar.len() - 1024, tar.len() - 600, 100, 0] {
        assert_rejected(&fix, case(tar[..cut].to_vec()), "error:");
    }
    assert_rejected(&fix, case(tar[..tar.len() / 2].to_vec()), "truncated");
    for cut in [gz.len() / 2, gz.len() - 4] {
        assert_rejected(
            &fix,
            Case {
                bytes: gz[..cut].to_vec(),
                name: "bundle.ferry.tar.gz",
                args: vec![],
            },
            "error:",
        );
    }
}

#[test]
fn missing_or_reordered_split_parts() {
    let fix = Fixture::new();
    let tar = fix.forge().tar();
    let part = tar.len() / 4 + 1;
    let write_parts = |dir: &TestDir, order: &[usize]| {
        let chunks: Vec<&[u8]> = tar.chunks(part).collect();
        for (slot, &src) in order.iter().enumerate() {
            dir.write(format!("b.ferry.tar.{slot:03}"), chunks[src]);
        }
    };
    let parts_host = |order: &[usize], drop: Option<&str>| {
        let dir = host(&fix, &[]);
        write_parts(&dir, order);
        if let Some(name) = drop {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        dir
    };
    // Missing middle part: named, and nothing written.
    let dir = parts_host(&[0, 1, 2, 3], Some("b.ferry.tar.001"));
    let before = dir.snapshot();
    verify(&dir, "b.ferry.tar.000", &[])
        .code(3)
        .stderr_has("b.ferry.tar.001");
    assert_eq!(before, dir.snapshot());
    // Missing last part.
    let dir = parts_host(&[0, 1, 2, 3], Some("b.ferry.tar.003"));
    verify(&dir, "b.ferry.tar.000", &[]).code(3);
    // Reordered parts of equal size.
    let dir = parts_host(&[0, 2, 1, 3], None);
    verify(&dir, "b.ferry.tar.000", &[])
        .code(3)
        .stderr_has("error:");
    // In order, it verifies.
    let dir = parts_host(&[0, 1, 2, 3], None);
    verify(&dir, "b.ferry.tar.000", &[]).ok();
}

#[test]
fn expired_bundle_and_a_clock_set_back() {
    let mut fix = Fixture::new();
    let now = Timestamp::now().unix();
    fix.manifest.created = Timestamp(now - 100 * 86_400);
    fix.manifest.expires = Timestamp(now - 10 * 86_400);
    reject(&fix, &fix.forge(), "expired");

    // Valid by the wall clock, but the host has seen a bundle created after its expiry:
    // the clock was set back.
    let fix = Fixture::new();
    let dir = host(&fix, &[("b.ferry.tar", &fix.forge().tar())]);
    let future = Timestamp(fix.manifest.expires.unix() + 86_400);
    dir.write(STATE, state_json("other/channel", 1, future));
    verify_root(&dir, "b.ferry.tar", &[])
        .code(3)
        .stderr_has("expired");
}

#[test]
fn replayed_lower_sequence_for_the_same_channel() {
    let fix = Fixture::new();
    let dir = host(&fix, &[("b.ferry.tar", &fix.forge().tar())]);
    let created = fix.manifest.created;
    dir.write(STATE, state_json("test/bookworm-amd64", 200, created));
    let before = dir.snapshot();
    verify_root(&dir, "b.ferry.tar", &[])
        .code(3)
        .stderr_has("sequence 100")
        .stderr_has("200");
    assert_eq!(before, dir.snapshot(), "verify must not touch state.json");
    // The override works, loudly.
    verify_root(&dir, "b.ferry.tar", &["--allow-replay"])
        .ok()
        .stderr_has("REPLAY ALLOWED");
    // Same sequence (a retry of the same bundle) and another channel are fine.
    dir.write(STATE, state_json("test/bookworm-amd64", 100, created));
    verify_root(&dir, "b.ferry.tar", &[]).ok();
    dir.write(STATE, state_json("elsewhere", 200, created));
    verify_root(&dir, "b.ferry.tar", &[]).ok();
}

#[test]
fn staging_extraction_writes_only_into_a_fresh_0700_directory() {
    use std::os::unix::fs::PermissionsExt;
    let fix = Fixture::new();
    let dir = host(&fix, &[("b.ferry.tar.gz", &fix.forge().tar_gz())]);
    let trust = TrustStore::load(&dir.join("trusted")).unwrap();
    let policy = TrustPolicy::new(&trust, 1);
    let source = BundleSource::open(&dir.join("b.ferry.tar.gz")).unwrap();
    let staging = dir.join("staging");
    let report = read_bundle(
        &source,
        Check::Verify(policy),
        Some(&staging),
        &NullReporter,
    )
    .unwrap();
    assert!(report.verified.is_some());
    let mode = std::fs::metadata(&staging).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for (path, data) in &fix.files {
        assert_eq!(&std::fs::read(staging.join(path)).unwrap(), data, "{path}");
    }
    // An existing directory is never reused.
    let policy = TrustPolicy::new(&trust, 1);
    assert!(read_bundle(
        &source,
        Check::Verify(policy),
        Some(&staging),
        &NullReporter
    )
    .is_err());
}
