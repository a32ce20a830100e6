//! Shared by the installer's integration tests: sign a manifest with a fresh key and
//! write the bundle, returning the bundle and a trust file for that key.

use ferry_bundle::{
    write_bundle, BundleContents, Compression, Manifest, NullReporter, Target, Timestamp,
    WriteOptions, FORMAT,
};
use ferry_keys::SecretKey;
use std::path::{Path, PathBuf};

/// Write `manifest` with its payload `sources` as a signed, uncompressed bundle in
/// `dir/out`; returns (bundle path, trust file path).
pub fn sign_and_write(dir: &Path, manifest: &Manifest, sources: &[PathBuf]) -> (PathBuf, PathBuf) {
    let key = SecretKey::generate();
    let json = manifest.to_json();
    let sig = key
        .sign(&json, &manifest.trusted_comment(), "installer test")
        .unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let written = write_bundle(
        &out,
        &BundleContents {
            manifest_json: &json,
            signatures: &[sig],
            sources,
        },
        WriteOptions {
            compression: Compression::None,
            split: None,
        },
        &NullReporter,
    )
    .unwrap();
    let trust = dir.join("trusted.pub");
    std::fs::write(&trust, key.public_key().to_file_string()).unwrap();
    (written[0].clone(), trust)
}

/// A manifest for `debian bookworm amd64` named `name` on `channel`, sequence 1, created
/// a minute ago and valid 90 days, with nothing in it yet.
pub fn manifest(name: &str, channel: &str) -> Manifest {
    let now = Timestamp::now().unix();
    Manifest {
        format: FORMAT.into(),
        name: name.into(),
        channel: channel.into(),
        sequence: 1,
        created: Timestamp(now - 60),
        expires: Timestamp(now + 90 * 86_400),
        builder: "ferry-installer tests".into(),
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
