//! `ferry-install repo export`: a verified bundle's `.deb`s as a flat APT repository
//! that real apt reads, and a tampered bundle that leaves nothing behind.

use ferry_bundle::manifest::{Package, Role};
use ferry_tests::apt_repo::AptGet;
use ferry_tests::bundle::{manifest, sign_bundle};
use ferry_tests::dpkg_root::FixturePackage;
use ferry_tests::{ferry_install, sha256_file, TestDir};

#[test]
fn repo_export_serves_the_bundles_debs_to_apt() {
    let work = TestDir::new();
    let lib = FixturePackage::new("libtykhelper", "1:2.0~rc1")
        .arch("amd64")
        .file("/usr/lib/tykhelper.so", b"helper".to_vec(), 0o644)
        .build(&work.join("debs"));
    let gw = FixturePackage::new("tyk-gateway", "5.2.5")
        .arch("amd64")
        .depends("libtykhelper (>= 1:2.0~rc1)")
        .file("/opt/tyk-gateway/tyk", b"gateway".to_vec(), 0o755)
        .build(&work.join("debs"));
    let mut m = manifest("repo-export");
    let mut payload = Vec::new();
    for (name, version, deb, role) in [
        ("libtykhelper", "1:2.0~rc1", &lib, Role::Dependency),
        ("tyk-gateway", "5.2.5", &gw, Role::Target),
    ] {
        let file = format!("debs/{}", deb.file_name().unwrap().to_str().unwrap());
        payload.push((file.clone(), deb.clone()));
        m.packages.push(Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            file,
            repository: "test".into(),
            role,
        });
    }
    let bundle = sign_bundle(&work.join("media"), m, &payload);
    let repo = work.join("repo");
    let out = ferry_install(
        work.path(),
        &[
            "repo",
            "export",
            bundle.path.to_str().unwrap(),
            repo.to_str().unwrap(),
            "--trust",
            bundle.trust.to_str().unwrap(),
        ],
    )
    .ok();
    let stdout = out.stdout.clone();
    let line = stdout
        .lines()
        .find(|l| l.contains("[trusted=yes] file:"))
        .unwrap_or_else(|| panic!("no sources line in {stdout}"))
        .trim()
        .to_string();
    assert!(!repo.join(".ferry-staging").exists());
    for f in ["Packages", "Packages.gz", "Release"] {
        assert!(repo.join(f).is_file(), "{f}");
    }

    // Real apt reads it and downloads byte-identical packages.
    let apt = AptGet::with_sources(&format!("{line}\n"), "amd64");
    apt.update().ok();
    let dl = work.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    apt.download(&dl, &["tyk-gateway", "libtykhelper"]).ok();
    assert_eq!(
        sha256_file(&dl.join("tyk-gateway_5.2.5_amd64.deb")),
        sha256_file(&gw)
    );
    assert_eq!(
        sha256_file(&dl.join("libtykhelper_1%3a2.0~rc1_amd64.deb")),
        sha256_file(&lib)
    );

    // A tampered bundle: exit 3, and the directory is not left behind.
    let mut bytes = std::fs::read(&bundle.path).unwrap();
    let n = bytes.len();
    bytes[n - 2000] ^= 1;
    let bad = work.write("bad.ferry.tar", &bytes);
    let bad_repo = work.join("bad-repo");
    ferry_install(
        work.path(),
        &[
            "repo",
            "export",
            bad.to_str().unwrap(),
            bad_repo.to_str().unwrap(),
            "--trust",
            bundle.trust.to_str().unwrap(),
        ],
    )
    .code(3);
    assert!(!bad_repo.exists());
}
