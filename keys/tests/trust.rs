//! Trust store loading and threshold counting.

use ferry_keys::{Error, KeyId, PublicKey, SecretKey, Signature, TrustStore};

use crate::util::{payload, with_key_id, TestDir};

const MESSAGE: &[u8] = b"{\"format\":\"ferry/1\"}\n";
const TRUSTED: &str = "ferry/1 name=n channel=c sequence=1";

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n).map(|_| SecretKey::generate()).collect()
}

fn sign(key: &SecretKey) -> Signature {
    key.sign(MESSAGE, TRUSTED, "ferry").unwrap()
}

fn store(keys: &[&SecretKey]) -> TrustStore {
    TrustStore::from_keys(keys.iter().map(|k| k.public_key()).collect())
}

/// A public key file with `id` but the key bytes of `other`.
fn impostor_pub(id: KeyId, other: &PublicKey) -> String {
    let mut bytes = payload(&other.to_file_string());
    bytes[2..10].copy_from_slice(&id.0);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    format!("untrusted comment: impostor\n{b64}\n")
}

#[test]
fn loads_pub_files_from_directory_sorted_and_ignores_the_rest() {
    let dir = TestDir::new();
    let [a, b] = <[SecretKey; 2]>::try_from(keys(2)).unwrap();
    dir.write("b.pub", b.public_key().to_file_string());
    dir.write("a.pub", a.public_key().to_file_string());
    dir.write("README", "not a key");
    dir.write("a.pub.bak", "not a key either");
    std::fs::create_dir(dir.path("nested.pub")).unwrap();
    std::fs::create_dir(dir.path("sub")).unwrap();
    dir.write(
        "sub/c.pub",
        SecretKey::generate().public_key().to_file_string(),
    );

    let store = TrustStore::load(dir.root()).unwrap();
    assert_eq!(store.len(), 2);
    assert!(!store.is_empty());
    assert_eq!(store.get(&a.id()), Some(&a.public_key()));
    assert_eq!(store.source(&b.id()), Some(dir.path("b.pub").as_path()));
    let mut expected = vec![a.id(), b.id()];
    expected.sort();
    assert_eq!(
        store.keys().map(PublicKey::id).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn loads_a_single_file() {
    let dir = TestDir::new();
    let key = SecretKey::generate();
    let path = dir.write("ferry.pub", key.public_key().to_file_string());
    let store = TrustStore::load(&path).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&key.id()), Some(&key.public_key()));
}

#[test]
fn empty_directory_is_an_error_with_help() {
    let dir = TestDir::new();
    dir.write("notes.txt", "no keys here");
    let err = TrustStore::load(dir.root()).unwrap_err();
    assert!(matches!(err, Error::NoTrustedKeys { .. }));
    let root = dir.root().display().to_string();
    assert_eq!(
        err.to_string(),
        format!(
            "no trusted keys in {root}\nhelp: copy the signer's .pub file into {root}, or pass --trust FILE"
        )
    );
}

#[test]
fn malformed_or_missing_pub_is_an_error_naming_the_file() {
    let dir = TestDir::new();
    dir.write("a.pub", SecretKey::generate().public_key().to_file_string());
    let bad = dir.write("b.pub", "untrusted comment: x\nnot base64!\n");
    let err = TrustStore::load(dir.root()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "malformed public key in {}: line 2",
            bad.display()
        )),
        "{err}"
    );

    let missing = dir.path("missing");
    let err = TrustStore::load(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read {}", missing.display())
    );
}

#[test]
fn same_key_in_two_files_counts_once_but_conflicting_keys_are_an_error() {
    let dir = TestDir::new();
    let key = SecretKey::generate();
    dir.write("a.pub", key.public_key().to_file_string());
    dir.write("copy.pub", key.public_key().to_file_string());
    let store = TrustStore::load(dir.root()).unwrap();
    assert_eq!(store.len(), 1);

    let other = SecretKey::generate().public_key();
    dir.write("evil.pub", impostor_pub(key.id(), &other));
    let err = TrustStore::load(dir.root()).unwrap_err();
    assert!(matches!(err, Error::ConflictingKeys { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&key.id().to_string()), "{msg}");
    assert!(
        msg.contains(&dir.path("a.pub").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&dir.path("evil.pub").display().to_string()),
        "{msg}"
    );
}

#[test]
fn one_of_one() {
    let key = SecretKey::generate();
    let report = store(&[&key])
        .check_threshold(&[sign(&key)], MESSAGE, 1)
        .unwrap();
    assert_eq!(report.valid, [key.id()]);
    assert!(report.untrusted.is_empty() && report.duplicates.is_empty());
    assert_eq!(report.threshold, 1);

    let err = store(&[&key]).check_threshold(&[], MESSAGE, 1).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { .. }), "{err}");
}

#[test]
fn two_of_three_met() {
    let k = keys(3);
    let trust = store(&[&k[0], &k[1], &k[2]]);
    let report = trust
        .check_threshold(&[sign(&k[2]), sign(&k[0])], MESSAGE, 2)
        .unwrap();
    assert_eq!(report.valid, [k[2].id(), k[0].id()]);
}

#[test]
fn two_of_three_unmet_lists_valid_and_untrusted_signers() {
    let k = keys(4);
    let trust = store(&[&k[0], &k[1], &k[2]]);
    let err = trust
        .check_threshold(&[sign(&k[1]), sign(&k[3])], MESSAGE, 2)
        .unwrap_err();
    match &err {
        Error::ThresholdNotMet {
            required,
            valid,
            untrusted,
            duplicates,
        } => {
            assert_eq!(*required, 2);
            assert_eq!(valid, &[k[1].id()]);
            assert_eq!(untrusted, &[k[3].id()]);
            assert!(duplicates.is_empty());
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("signature threshold not met: 1 of 2 required"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "help: if you trust {}, add the signer's .pub to /etc/ferry/trusted/ or pass --trust",
            k[3].id()
        )),
        "{msg}"
    );
    assert!(err.is_verification_failure());
}

#[test]
fn same_key_twice_counts_once() {
    let k = keys(3);
    let trust = store(&[&k[0], &k[1], &k[2]]);
    let twice = [sign(&k[0]), sign(&k[0])];
    let err = trust.check_threshold(&twice, MESSAGE, 2).unwrap_err();
    match err {
        Error::ThresholdNotMet {
            valid, duplicates, ..
        } => {
            assert_eq!(valid, [k[0].id()]);
            assert_eq!(duplicates, [k[0].id()]);
        }
        other => panic!("unexpected {other}"),
    }
    let report = trust.check_threshold(&twice, MESSAGE, 1).unwrap();
    assert_eq!(report.valid, [k[0].id()]);
    assert_eq!(report.duplicates, [k[0].id()]);
}

#[test]
fn untrusted_signer_is_listed_not_counted() {
    let k = keys(2);
    let outsider = SecretKey::generate();
    let report = store(&[&k[0], &k[1]])
        .check_threshold(&[sign(&outsider), sign(&k[1]), sign(&outsider)], MESSAGE, 1)
        .unwrap();
    assert_eq!(report.valid, [k[1].id()]);
    assert_eq!(report.untrusted, [outsider.id()]);
}

#[test]
fn forged_signature_with_trusted_key_id_is_an_error_even_when_threshold_is_met() {
    let k = keys(2);
    let trust = store(&[&k[0], &k[1]]);
    let attacker = SecretKey::generate();
    let forged = with_key_id(&sign(&attacker).to_file_string(), k[1].id());
    let forged = Signature::parse(&forged).unwrap();
    assert_eq!(forged.key_id(), k[1].id());
    let err = trust
        .check_threshold(&[sign(&k[0]), forged], MESSAGE, 1)
        .unwrap_err();
    assert!(matches!(err, Error::VerificationFailed { key_id } if key_id == k[1].id()));
    assert_eq!(
        err.to_string(),
        format!("signature verification failed for key {}", k[1].id())
    );

    // A genuine signature over a different message is just as fatal.
    let stale = k[1].sign(b"old manifest", TRUSTED, "ferry").unwrap();
    let err = trust
        .check_threshold(&[sign(&k[0]), stale], MESSAGE, 1)
        .unwrap_err();
    assert!(matches!(err, Error::VerificationFailed { .. }), "{err}");
}

#[test]
fn threshold_zero_or_above_key_count_is_refused() {
    let k = keys(2);
    let trust = store(&[&k[0], &k[1]]);
    let sigs = [sign(&k[0]), sign(&k[1])];
    assert!(matches!(
        trust.check_threshold(&sigs, MESSAGE, 0),
        Err(Error::ZeroThreshold)
    ));
    let err = trust.check_threshold(&sigs, MESSAGE, 3).unwrap_err();
    assert!(matches!(
        err,
        Error::ThresholdTooHigh {
            threshold: 3,
            trusted: 2
        }
    ));
    assert!(err
        .to_string()
        .starts_with("signature threshold 3 exceeds the 2 trusted key(s)"));
}
