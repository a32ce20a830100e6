//! Signed bundles made directly from a manifest, for tests of what the installer does
//! with a bundle (backups, apply, rollback) rather than of how bundles are built.

use ferry_bundle::manifest::{FileEntry, Manifest, Target, FORMAT};
use ferry_bundle::{
    write_bundle, BundleContents, Compression, NullReporter, Timestamp, WriteOptions,
};
use ferry_keys::SecretKey;
use std::path::{Path, PathBuf};

/// A written bundle and the trust file that verifies it.
pub struct TestBundle {
    /// The bundle file.
    pub path: PathBuf,
    /// A `.pub` file trusting its signer.
    pub trust: PathBuf,
}

/// A manifest with no files, steps or backups, created a minute ago, valid 90 days,
/// for `debian bookworm amd64` (override the fields as needed).
pub fn manifest(name: &str) -> Manifest {
    let now = Timestamp::now().unix();
    Manifest {
        format: FORMAT.into(),
        name: name.into(),
        channel: format!("test/{name}"),
        sequence: now - 60,
        created: Timestamp(now - 60),
        expires: Timestamp(now + 90 * 86_400),
        builder: "ferry tests".into(),
        target: Target {
            distro: "debian".into(),
            codename: "bookworm".into(),
            arch: "amd64".into(),
        },
        files: vec![],
        packages: vec![],
        images: vec![],
        steps: vec![],
        backups: vec![],
        notes: vec![],
    }
}

/// Sign `manifest` with a fresh key and write it with `payload` (path in the bundle,
/// file on disk) as an uncompressed bundle in `dir`. `manifest.files` is filled in from
/// the payload.
pub fn sign_bundle(
    dir: &Path,
    mut manifest: Manifest,
    payload: &[(String, PathBuf)],
) -> TestBundle {
    manifest.files = payload
        .iter()
        .map(|(path, src)| {
            let bytes = std::fs::read(src).expect("payload file");
            FileEntry {
                path: path.clone(),
                size: bytes.len() as u64,
                sha256: crate::sha256_file(src),
                mode: "0644".into(),
            }
        })
        .collect();
    let sources: Vec<PathBuf> = payload.iter().map(|(_, p)| p.clone()).collect();
    let key = SecretKey::generate();
    let json = manifest.to_json();
    let sig = key
        .sign(&json, &manifest.trusted_comment(), "ferry test bundle")
        .expect("sign");
    std::fs::create_dir_all(dir).expect("bundle dir");
    let written = write_bundle(
        dir,
        &BundleContents {
            manifest_json: &json,
            signatures: &[sig],
            sources: &sources,
        },
        WriteOptions {
            compression: Compression::None,
            split: None,
        },
        &NullReporter,
    )
    .expect("write bundle");
    let trust = dir.join("trusted.pub");
    std::fs::write(&trust, key.public_key().to_file_string()).expect("trust file");
    TestBundle {
        path: written[0].clone(),
        trust,
    }
}
