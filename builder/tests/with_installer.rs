//! `ferry-build build --with-installer`: the ferry-install package for the target
//! architecture is copied beside the bundle with a signed SHA256SUMS and
//! README-airgap.txt. The packages here are small fakes made with `dpkg-deb`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: apt-get install -y {package} (.ci/run does this)")
        })
}

fn ferry_build(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-build"))
        .current_dir(dir)
        .args(args)
        .env_remove("FERRY_PASSPHRASE")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// A package with nothing but a control file, at `dir/name`.
fn fake_deb(dir: &Path, name: &str, package: &str, version: &str, arch: &str) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc").join(package)).unwrap();
    std::fs::write(
        root.join("usr/share/doc").join(package).join("fake"),
        format!("{package} {version} {arch}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: {arch}\n\
             Maintainer: ferry tests <ferry@example.invalid>\nDescription: fake {package}\n"
        ),
    )
    .unwrap();
    let deb = dir.join(name);
    let out = Command::new(tool("dpkg-deb", "dpkg"))
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    deb
}

/// A key, a spec with one file targeting amd64, and the fake packages.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(ferry_build(
        d,
        &["key", "generate", "--out", "release", "--no-passphrase"],
    ));
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("payload.bin"), payload).unwrap();
    std::fs::write(
        d.join("spec.toml"),
        r#"name = "media-test"
[target]
distro = "debian"
codename = "bullseye"
arch = "amd64"

[[file]]
source = "payload.bin"
path = "files/payload.bin"
"#,
    )
    .unwrap();
    std::fs::create_dir(d.join("dist")).unwrap();
    fake_deb(
        &d.join("dist"),
        "ferry-install_9.8.7_amd64.deb",
        "ferry-install",
        "1:9.8.7",
        "amd64",
    );
    fake_deb(
        &d.join("dist"),
        "ferry-install_9.8.7_arm64.deb",
        "ferry-install",
        "1:9.8.7",
        "arm64",
    );
    fake_deb(
        &d.join("dist"),
        "ferry-build_9.8.7_amd64.deb",
        "ferry-build",
        "9.8.7",
        "amd64",
    );
    dir
}

fn build_args<'a>(out: &'a str, installer: &'a str) -> Vec<&'a str> {
    vec![
        "build",
        "--spec",
        "spec.toml",
        "--key",
        "release.key",
        "--out",
        out,
        "--split",
        "100K",
        "--compression",
        "none",
        "--with-installer",
        installer,
    ]
}

#[test]
fn installer_package_is_shipped_with_signed_sums() {
    let dir = project();
    let d = dir.path();
    // A directory: the package for the spec's architecture (amd64) is picked.
    let stdout = ok(ferry_build(d, &build_args("media", "dist")));
    assert!(stdout.contains("ferry-install_9.8.7_amd64.deb"), "{stdout}");

    let media = d.join("media");
    let shipped = media.join("ferry-install_9.8.7_amd64.deb");
    assert_eq!(
        std::fs::read(&shipped).unwrap(),
        std::fs::read(d.join("dist/ferry-install_9.8.7_amd64.deb")).unwrap()
    );
    let mut names: Vec<String> = std::fs::read_dir(&media)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let parts: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("media-test.ferry.tar."))
        .collect();
    assert!(parts.len() > 1, "split into parts: {names:?}");
    for n in [
        "README-airgap.txt",
        "SHA256SUMS",
        "SHA256SUMS.minisig",
        "ferry-install_9.8.7_amd64.deb",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    assert_eq!(names.len(), parts.len() + 4, "nothing else: {names:?}");

    // SHA256SUMS names every part and the package, and sha256sum accepts it.
    let sums = std::fs::read_to_string(media.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    let mut expected: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
    expected.push("ferry-install_9.8.7_amd64.deb");
    assert_eq!(listed, expected, "{sums}");
    assert!(sums.lines().all(|l| l.len() > 66 && &l[64..66] == "  "));
    ok(Command::new(tool("sha256sum", "coreutils"))
        .current_dir(&media)
        .args(["-c", "--strict", "SHA256SUMS"])
        .output()
        .unwrap());

    // Signed by the bundle's key, in minisign format: ferry-keys and minisign agree.
    let public = ferry_keys::PublicKey::load(&d.join("release.pub")).unwrap();
    let sig = ferry_keys::Signature::load(&media.join("SHA256SUMS.minisig")).unwrap();
    sig.verify(&public, sums.as_bytes()).unwrap();
    assert!(
        sig.trusted_comment().contains("media-test") && sig.trusted_comment().contains("1:9.8.7"),
        "{}",
        sig.trusted_comment()
    );
    let verified = ok(Command::new(tool("minisign", "minisign"))
        .current_dir(&media)
        .args(["-V", "-m", "SHA256SUMS", "-p"])
        .arg(d.join("release.pub"))
        .output()
        .unwrap());
    assert!(verified.contains("media-test"), "{verified}");
    let mut tampered = sums.clone().into_bytes();
    tampered[0] ^= 1;
    assert!(sig.verify(&public, &tampered).is_err());

    // The README names the files and the commands.
    let readme = std::fs::read_to_string(media.join("README-airgap.txt")).unwrap();
    for needle in [
        "sha256sum -c SHA256SUMS",
        "minisign -Vm SHA256SUMS -p release.pub",
        "dpkg -i ferry-install_9.8.7_amd64.deb",
        &format!("ferry-install verify {}", parts[0]),
        &public.id().to_string(),
    ] {
        assert!(readme.contains(needle), "{needle} in\n{readme}");
    }

    // The .deb itself, into a directory that already has one: replaced; JSON reports it.
    let json = ok(ferry_build(d, &{
        let mut a = build_args("media", "dist/ferry-install_9.8.7_amd64.deb");
        a.push("--json");
        a
    }));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["installer"]["deb"]
        .as_str()
        .unwrap()
        .ends_with("media/ferry-install_9.8.7_amd64.deb"));
    assert!(v["installer"]["sha256sums"]
        .as_str()
        .unwrap()
        .ends_with("SHA256SUMS"));
}

#[test]
fn wrong_installer_is_refused_before_building() {
    let dir = project();
    let d = dir.path();
    let cases = [
        (
            "dist/ferry-install_9.8.7_arm64.deb",
            "ferry-install for arm64, but the bundle targets amd64",
        ),
        (
            "dist/ferry-build_9.8.7_amd64.deb",
            "is the package ferry-build, not ferry-install",
        ),
        ("spec.toml", "not a readable Debian package"),
        ("missing.deb", "missing.deb"),
        ("release", "release"),
    ];
    std::fs::create_dir(d.join("release")).unwrap();
    for (installer, message) in cases {
        let stderr = failed(ferry_build(d, &build_args("out", installer)));
        assert!(stderr.contains(message), "{installer}: {stderr}");
        assert!(!d.join("out").exists(), "{installer}: nothing written");
    }
    // Two candidates for amd64 in one directory.
    std::fs::copy(
        d.join("dist/ferry-install_9.8.7_amd64.deb"),
        d.join("dist/ferry-install_9.8.8_amd64.deb"),
    )
    .unwrap();
    let stderr = failed(ferry_build(d, &build_args("out", "dist")));
    assert!(stderr.contains("several installer packages"), "{stderr}");
}
