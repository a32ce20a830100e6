//! Interoperability with the real `minisign` binary (Debian package `minisign`): ferry
//! signatures verify with `minisign -V`, keys made by `minisign -G` work in ferry, keys
//! made by ferry sign with `minisign -S`, and both print the same key ids.
//!
//! Tests using minisign's default scrypt limits cost about 1 GiB and a few seconds per
//! key operation; they are kept to the two that must exercise them.

use ferry_keys::{Error, KdfLimits, PublicKey, SecretKey, Signature};

use crate::util::{payload, TestDir};

const MESSAGE: &[u8] = b"{\"format\":\"ferry/1\",\"name\":\"tyk-5.2.5\"}\n";
const TRUSTED: &str = "ferry/1 name=tyk-5.2.5 channel=tyk/ubuntu-focal-amd64 sequence=1763683200";

/// Signs MESSAGE with `key` through ferry and checks `minisign -V` accepts it, both
/// with the `.pub` file and with the bare key (`-P`).
fn assert_minisign_verifies_ferry_signature(dir: &TestDir, key: &SecretKey, pub_file: &str) {
    let sig = key
        .sign(MESSAGE, TRUSTED, "signature from ferry")
        .expect("sign");
    dir.write("manifest.json", MESSAGE);
    dir.write("ferry.minisig", sig.to_file_string());
    let out = dir.minisign_ok(
        &[
            "-V",
            "-p",
            pub_file,
            "-m",
            "manifest.json",
            "-x",
            "ferry.minisig",
        ],
        "",
    );
    assert!(
        out.contains(&format!("Trusted comment: {TRUSTED}\n")),
        "minisign output: {out}"
    );
    let b64 = key.public_key().to_base64();
    let out = dir.minisign_ok(
        &[
            "-V",
            "-P",
            &b64,
            "-m",
            "manifest.json",
            "-x",
            "ferry.minisig",
            "-Q",
        ],
        "",
    );
    assert_eq!(out, format!("{TRUSTED}\n"));
}

/// Has `minisign -S` sign MESSAGE with the key file, then verifies with ferry.
fn assert_ferry_verifies_minisign_signature(
    dir: &TestDir,
    key_file: &str,
    password: &str,
    key: &PublicKey,
) {
    dir.write("signed.txt", MESSAGE);
    dir.minisign_ok(
        &[
            "-S",
            "-s",
            key_file,
            "-m",
            "signed.txt",
            "-t",
            TRUSTED,
            "-c",
            "from minisign",
        ],
        &format!("{password}\n"),
    );
    let text = dir.read("signed.txt.minisig");
    let sig = Signature::parse(&text).expect("parse minisign signature");
    assert_eq!(sig.key_id(), key.id());
    assert_eq!(sig.trusted_comment(), TRUSTED);
    assert_eq!(sig.untrusted_comment(), "from minisign");
    sig.verify(key, MESSAGE)
        .expect("ferry verifies minisign's signature");
    assert_eq!(
        sig.to_file_string(),
        text,
        "ferry writes minisign's text back exactly"
    );
    let err = sig.verify(key, b"another manifest").unwrap_err();
    assert!(matches!(err, Error::VerificationFailed { .. }), "{err}");
}

#[test]
fn minisign_verifies_ferry_signature_and_rejects_tampering() {
    let dir = TestDir::new();
    let key = SecretKey::generate();
    dir.write("ferry.pub", key.public_key().to_file_string());
    assert_minisign_verifies_ferry_signature(&dir, &key, "ferry.pub");

    // Negative controls: minisign must reject a changed trusted comment and message.
    let text = dir.read("ferry.minisig");
    dir.write(
        "forged.minisig",
        text.replace("sequence=1763683200", "sequence=1763683201"),
    );
    let out = dir.minisign(
        &[
            "-V",
            "-p",
            "ferry.pub",
            "-m",
            "manifest.json",
            "-x",
            "forged.minisig",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Comment signature verification failed"));
    dir.write("manifest.json", b"{}\n");
    let out = dir.minisign(
        &[
            "-V",
            "-p",
            "ferry.pub",
            "-m",
            "manifest.json",
            "-x",
            "ferry.minisig",
        ],
        "",
    );
    assert!(!out.status.success());
}

#[test]
fn key_ids_printed_by_minisign_match_ferry_display() {
    let dir = TestDir::new();
    // minisign writes the key id into the .pub comment...
    dir.minisign_ok(&["-G", "-W", "-p", "m.pub", "-s", "m.key"], "");
    let minisign_pub = dir.read("m.pub");
    let key = PublicKey::parse(&minisign_pub).expect("parse minisign .pub");
    // minisign prints the id with `%PRIX64`, so without leading zeros; ferry always
    // writes 16 digits. The numbers are the same.
    let printed = minisign_pub
        .lines()
        .next()
        .unwrap()
        .strip_prefix("untrusted comment: minisign public key ")
        .unwrap();
    assert_eq!(u64::from_str_radix(printed, 16).unwrap(), key.id().as_u64());
    assert_eq!(key.id().to_string(), format!("{:016X}", key.id().as_u64()));
    assert_eq!(
        key.to_file_string().lines().nth(1),
        minisign_pub.lines().nth(1)
    );

    // ...and prints both ids when a signature's key id does not match the key.
    let ferry = SecretKey::generate();
    dir.write("ferry.pub", ferry.public_key().to_file_string());
    dir.write("m.txt", MESSAGE);
    dir.write(
        "m.txt.minisig",
        ferry.sign(MESSAGE, TRUSTED, "x").unwrap().to_file_string(),
    );
    let out = dir.minisign(&["-V", "-p", "m.pub", "-m", "m.txt"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("m.txt.minisig is {:X}\n", ferry.id().as_u64()))
            && stderr.contains(&format!("public key is {:X}\n", key.id().as_u64())),
        "minisign stderr: {stderr}"
    );
    // ferry's own id check agrees.
    let sig = Signature::parse(&dir.read("m.txt.minisig")).unwrap();
    assert!(matches!(
        sig.verify(&key, MESSAGE),
        Err(Error::KeyMismatch { .. })
    ));
}

#[test]
fn unencrypted_minisign_key_signs_in_ferry() {
    let dir = TestDir::new();
    dir.minisign_ok(&["-G", "-W", "-p", "m.pub", "-s", "m.key"], "");
    let key_text = dir.read("m.key");
    assert!(!SecretKey::is_encrypted(&key_text).unwrap());
    let key = SecretKey::load(&dir.path("m.key"), None).expect("load minisign -W key");
    let public = PublicKey::load(&dir.path("m.pub")).unwrap();
    assert_eq!(key.id(), public.id());
    assert_eq!(key.public_key(), public);
    assert_minisign_verifies_ferry_signature(&dir, &key, "m.pub");
}

#[test]
fn unencrypted_ferry_key_signs_in_minisign() {
    let dir = TestDir::new();
    let key = SecretKey::generate();
    key.save(&dir.path("ferry.key"), None).unwrap();
    // No password prompt: stdin stays empty.
    assert_ferry_verifies_minisign_signature(&dir, "ferry.key", "", &key.public_key());
}

#[test]
fn encrypted_ferry_key_with_custom_limits_works_in_minisign() {
    // minisign must derive the same scrypt parameters from the stored limits.
    let dir = TestDir::new();
    let key = SecretKey::generate();
    let limits = KdfLimits {
        opslimit: 1 << 20,
        memlimit: 1 << 24,
    };
    dir.write(
        "ferry.key",
        key.to_file_string_with_limits("s3cret pass", limits)
            .unwrap(),
    );
    assert_ferry_verifies_minisign_signature(&dir, "ferry.key", "s3cret pass", &key.public_key());

    let out = dir.minisign(
        &["-S", "-s", "ferry.key", "-m", "signed.txt"],
        "wrong pass\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Wrong password"));
}

#[test]
fn encrypted_ferry_key_with_default_limits_works_in_minisign() {
    let dir = TestDir::new();
    let key = SecretKey::generate();
    let text = key.to_file_string(Some("correct horse battery")).unwrap();
    let bytes = payload(&text);
    assert_eq!(&bytes[..6], b"EdScB2");
    assert_eq!(
        bytes[38..46],
        33_554_432u64.to_le_bytes(),
        "minisign's default opslimit"
    );
    assert_eq!(
        bytes[46..54],
        1_073_741_824u64.to_le_bytes(),
        "minisign's default memlimit"
    );
    dir.write("ferry.key", text.as_bytes());
    assert_ferry_verifies_minisign_signature(
        &dir,
        "ferry.key",
        "correct horse battery",
        &key.public_key(),
    );
}

#[test]
fn encrypted_minisign_key_signs_in_ferry() {
    let dir = TestDir::new();
    dir.minisign_ok(
        &["-G", "-p", "m.pub", "-s", "m.key"],
        "pass phrase\npass phrase\n",
    );
    let key_text = dir.read("m.key");
    assert!(SecretKey::is_encrypted(&key_text).unwrap());
    let path = dir.path("m.key");
    let err = SecretKey::load(&path, None).unwrap_err();
    assert!(matches!(err, Error::PassphraseRequired { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));

    let key = SecretKey::load(&path, Some("pass phrase")).expect("load minisign key");
    assert_eq!(
        key.public_key(),
        PublicKey::load(&dir.path("m.pub")).unwrap()
    );
    assert_minisign_verifies_ferry_signature(&dir, &key, "m.pub");
}
