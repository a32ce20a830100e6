//! Property tests: the manifest parser and the bundle reader never panic on arbitrary
//! input, and a mutated bundle either fails verification or yields exactly the payload
//! that was signed. `PROPTEST_CASES` raises the case count for longer fuzzing runs.

use ferry_bundle::{read_bundle, BundleSource, Check, Manifest, NullReporter, TrustPolicy};
use ferry_keys::TrustStore;
use ferry_tests::forge::Fixture;
use ferry_tests::TestDir;
use proptest::prelude::*;
use std::sync::OnceLock;

struct Shared {
    fix: Fixture,
    tar: Vec<u8>,
    gz: Vec<u8>,
    json: Vec<u8>,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let fix = Fixture::new();
        let forge = fix.forge();
        Shared {
            tar: forge.tar(),
            gz: forge.tar_gz(),
            json: fix.manifest_json(),
            fix,
        }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Overwrite(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..600)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Mutation::Overwrite(i, v)),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match m {
        Mutation::Flip(i, b) => {
            let i = i % out.len();
            out[i] ^= b;
        }
        Mutation::Truncate(i) => out.truncate(i % out.len()),
        Mutation::Insert(i, v) => {
            let i = i % (out.len() + 1);
            out.splice(i..i, v.iter().copied());
        }
        Mutation::Overwrite(i, v) => {
            let i = i % out.len();
            for (k, b) in v.iter().enumerate() {
                if let Some(slot) = out.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
    }
    out
}

/// Verify `bytes`; if accepted, the payload must be exactly the signed one.
fn check(bytes: &[u8], name: &str) {
    let s = shared();
    let dir = TestDir::new();
    dir.write(name, bytes);
    let trust = TrustStore::from_keys(vec![s.fix.key.public_key()]);
    let policy = TrustPolicy::new(&trust, 1);
    let Ok(source) = BundleSource::open(&dir.join(name)) else {
        return;
    };
    let staging = dir.join("staging");
    match read_bundle(
        &source,
        Check::Verify(policy),
        Some(&staging),
        &NullReporter,
    ) {
        Err(_) => assert!(!staging.exists()),
        Ok(report) => {
            let verified = report.verified.expect("verified manifest");
            assert_eq!(verified.bytes(), s.json.as_slice());
            for (path, data) in &s.fix.files {
                assert_eq!(&std::fs::read(staging.join(path)).unwrap(), data);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn manifest_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Manifest::parse(&bytes);
    }

    #[test]
    fn manifest_parser_never_panics_on_mutated_json(m in mutation()) {
        let mutated = apply(&shared().json, &m);
        if let Ok(parsed) = Manifest::parse(&mutated) {
            // Whatever parses must satisfy every rule.
            prop_assert!(parsed.check().is_ok());
        }
    }

    #[test]
    fn mutated_plain_bundles_fail_or_yield_the_signed_payload(m in mutation()) {
        check(&apply(&shared().tar, &m), "b.ferry.tar");
    }

    #[test]
    fn mutated_gzip_bundles_fail_or_yield_the_signed_payload(m in mutation()) {
        check(&apply(&shared().gz, &m), "b.ferry.tar.gz");
    }
}
