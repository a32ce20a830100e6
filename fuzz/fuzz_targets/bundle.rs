//! The bundle reader on arbitrary bytes (plain or gzip, detected by magic): an
//! integrity-only read, which walks every structural rule and hashes the payload. It
//! must never panic, and whatever it accepts must list exactly the files it hashed.
#![no_main]

use ferry_bundle::{read_bundle, read_manifest, BundleSource, Check, NullReporter};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("ferry-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("b.ferry.tar");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(data).unwrap();
    drop(f);
    let source = BundleSource::open(&path).unwrap();
    let _ = read_manifest(&source);
    if let Ok(report) = read_bundle(&source, Check::IntegrityOnly, None, &NullReporter) {
        assert_eq!(report.files, report.unverified.manifest.files.len());
        assert_eq!(report.payload_bytes, report.unverified.manifest.payload_size());
    }
});
