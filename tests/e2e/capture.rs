//! Rollback package capture (`ferry_installer::capture`) against real dpkg roots: the
//! dpkg root fixture itself (maintainer scripts run inside it, health endpoints), each
//! capture source, a rebuilt package reinstalled over an upgrade, and the preflight.

use ferry_installer::capture::{can_rebuild, capture, CaptureSource, Installed};
use ferry_tests::dpkg_root::{tyk_like, DpkgRoot, HealthServer, Variant, ORDER_LOG, TYK_UID};
use ferry_tests::{require_tool, sha256_file, TestDir};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn gateway(version: &str) -> Installed {
    Installed {
        name: "tyk-gateway".into(),
        version: version.into(),
        arch: "all".into(),
    }
}

/// The names in `dir`: proves no temporary or partial file was left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Run `dpkg-deb args...`, which must succeed; its stdout.
#[track_caller]
fn dpkg_deb(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(require_tool("dpkg-deb", "dpkg"))
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The control fields of a `.deb`, by name.
fn control_fields(deb: &Path) -> BTreeMap<String, String> {
    let text = dpkg_deb(&["--field".as_ref(), deb.as_os_str()]);
    let mut fields = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            let v: &mut String = fields.get_mut(&last).unwrap();
            v.push('\n');
            v.push_str(rest);
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_string();
            fields.insert(last.clone(), v.trim().to_string());
        }
    }
    fields
}

/// Extract the data of `deb` into a new directory under `dir`.
fn extract(deb: &Path, dir: &TestDir, name: &str) -> PathBuf {
    let out = dir.join(name);
    dpkg_deb(&["--extract".as_ref(), deb.as_os_str(), out.as_os_str()]);
    out
}

#[test]
fn capture_fixture_root_runs_scripts_inside_and_health_follows_them() {
    let started = Instant::now();
    let root = DpkgRoot::new();
    let made = started.elapsed();
    assert!(made < Duration::from_secs(1), "DpkgRoot::new took {made:?}");

    let debs = TestDir::new();
    let built: Vec<PathBuf> = ["dashboard", "gateway", "pump"]
        .iter()
        .map(|c| tyk_like(c, "1.0", Variant::Good).build(debs.path()))
        .collect();
    let refs: Vec<&Path> = built.iter().map(PathBuf::as_path).collect();
    root.install(&refs);
    // The postinst scripts wrote their log at /var/log/... of the chroot: inside the root.
    assert!(root.join(ORDER_LOG).is_file());
    assert_eq!(
        root.order_log(),
        [
            "tyk-dashboard 1.0 configure",
            "tyk-gateway 1.0 configure",
            "tyk-pump 1.0 configure"
        ]
    );
    for c in ["dashboard", "gateway", "pump"] {
        assert_eq!(
            root.status(&format!("tyk-{c}")),
            Some(("1.0".to_string(), "install ok installed".to_string()))
        );
    }
    assert_eq!(root.status("tyk-unknown"), None);
    assert_eq!(root.audit(), "");

    // The files the packages were built with, metadata included.
    let tree = root.tree_digest("/opt/tyk-gateway");
    let setup = &tree["/opt/tyk-gateway/install/setup.sh"];
    assert_eq!(
        (setup.kind, setup.mode, setup.uid, setup.gid),
        ("file", 0o750, TYK_UID, TYK_UID)
    );
    let data = &tree["/opt/tyk-gateway/data"];
    assert_eq!((data.kind, data.mode, data.uid), ("dir", 0o750, TYK_UID));
    let link = &tree["/opt/tyk-gateway/bin/tyk"];
    assert_eq!((link.kind, link.content.as_str()), ("symlink", "../tyk"));
    assert_eq!(tree["/opt/tyk-gateway/health"].kind, "file");

    let health = HealthServer::start(root.path(), "gateway");
    assert!(health.url().starts_with("http://127.0.0.1:"));
    assert!(health.url().ends_with("/hello"));
    let (code, body) = health.get();
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"status": "pass", "version": "1.0"})
    );

    // An unhealthy upgrade: the endpoint reports what its postinst wrote.
    let unhealthy = tyk_like("gateway", "1.1", Variant::Unhealthy).build(debs.path());
    root.install(&[&unhealthy]);
    let json: serde_json::Value = serde_json::from_str(&health.get().1).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"status": "fail", "version": "1.1"})
    );
    std::fs::remove_file(root.join("/opt/tyk-gateway/health")).unwrap();
    let (code, body) = health.get();
    assert_eq!(code, 503);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "fail"})
    );
    drop(health);

    // A failing postinst leaves the package half-configured, and dpkg --audit says so.
    let failing = tyk_like("pump", "1.1", Variant::PostinstFails).build(debs.path());
    let out = root.dpkg(["--install".as_ref(), failing.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration failed on purpose"));
    assert_eq!(
        root.status("tyk-pump"),
        Some(("1.1".to_string(), "install ok half-configured".to_string()))
    );
    assert!(root.audit().contains("tyk-pump"), "{}", root.audit());
    assert_eq!(
        root.order_log().last().map(String::as_str),
        Some("tyk-pump 1.1 configure")
    );
}

#[test]
fn capture_takes_the_bundle_previous_package_only_if_it_is_the_installed_one() {
    let root = DpkgRoot::new();
    let debs = TestDir::new();
    let v1 = tyk_like("gateway", "1.0", Variant::Good).build(&debs.join("v1"));
    root.install(&[&v1]);
    let host = root.host();

    let dest = root.join("/var/lib/ferry/rollback/run-1");
    let got = capture(&host, &gateway("1.0"), Some(&v1), &dest).unwrap();
    assert_eq!(got.source, CaptureSource::BundlePrevious);
    assert_eq!(got.path, dest.join("tyk-gateway_1.0_all.deb"));
    assert_eq!(
        std::fs::read(&got.path).unwrap(),
        std::fs::read(&v1).unwrap()
    );
    assert_eq!(got.sha256, sha256_file(&v1));
    assert_eq!(got.size, std::fs::metadata(&v1).unwrap().len());
    assert_eq!(
        (got.name.as_str(), got.version.as_str(), got.arch.as_str()),
        ("tyk-gateway", "1.0", "all")
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(names(&dest), ["tyk-gateway_1.0_all.deb"]);
    let json = serde_json::to_value(&got).unwrap();
    assert_eq!(json["source"], "bundle-previous");

    // Another version, or another package, is turned down: the package is rebuilt.
    let v2 = tyk_like("gateway", "2.0", Variant::Good).build(&debs.join("v2"));
    let pump = tyk_like("pump", "1.0", Variant::Good).build(&debs.join("v1"));
    for (i, wrong) in [&v2, &pump].into_iter().enumerate() {
        let dest = root.join(format!("/var/lib/ferry/rollback/wrong-{i}"));
        let got = capture(&host, &gateway("1.0"), Some(wrong), &dest).unwrap();
        assert_eq!(got.source, CaptureSource::Rebuilt);
        assert_eq!(names(&dest), ["tyk-gateway_1.0_all.deb"]);
    }
    // With the rebuild impossible too, the error says why the package was turned down.
    std::fs::remove_file(root.join("/opt/tyk-gateway/tyk")).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/none");
    let err = capture(&host, &gateway("1.0"), Some(&v2), &dest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("it is tyk-gateway 2.0 (all), not the installed tyk-gateway 1.0 (all)"),
        "{err}"
    );
    assert_eq!(names(&dest), Vec::<String>::new());
}

#[test]
fn capture_takes_apt_cache_only_if_it_matches_dpkg_records() {
    let root = DpkgRoot::new();
    let debs = TestDir::new();
    let v1 = tyk_like("gateway", "1.0", Variant::Good).build(&debs.join("v1"));
    root.install(&[&v1]);
    let host = root.host();
    let cache = root.join("/var/cache/apt/archives/tyk-gateway_1.0_all.deb");

    std::fs::copy(&v1, &cache).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/cached");
    let got = capture(&host, &gateway("1.0"), None, &dest).unwrap();
    assert_eq!(got.source, CaptureSource::AptCache);
    assert_eq!(got.sha256, sha256_file(&v1));
    assert_eq!(names(&dest), ["tyk-gateway_1.0_all.deb"]);

    // Same name and version, other content (and so other md5sums): rebuilt instead.
    let other = tyk_like("gateway", "1.0", Variant::Good)
        .file("/opt/tyk-gateway/tyk", b"patched binary".to_vec(), 0o755)
        .build(&debs.join("other"));
    std::fs::copy(&other, &cache).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/other");
    let got = capture(&host, &gateway("1.0"), None, &dest).unwrap();
    assert_eq!(got.source, CaptureSource::Rebuilt);
    assert_ne!(got.sha256, sha256_file(&other));
    assert_eq!(names(&dest), ["tyk-gateway_1.0_all.deb"]);

    // From here on the rebuild fails (a file is gone), so the error lists why apt's
    // copy was turned down.
    std::fs::remove_file(root.join("/opt/tyk-gateway/install/setup.sh")).unwrap();
    let mut cases = vec![(other, "md5sums differ from dpkg's record")];
    // The md5sums member intact but the data changed: caught by checking the data.
    // Likewise a conffile changed in the package, which md5sums does not cover.
    let edits: [(&str, &[u8]); 2] = [
        ("opt/tyk-gateway/version", b"1.0-evil\n"),
        ("opt/tyk-gateway/tyk.conf", b"{\"listen_port\": 1}\n"),
    ];
    for (i, (file, bytes)) in edits.into_iter().enumerate() {
        let raw = debs.join(format!("raw-{i}"));
        dpkg_deb(&["--raw-extract".as_ref(), v1.as_os_str(), raw.as_os_str()]);
        std::fs::write(raw.join(file), bytes).unwrap();
        let tampered = debs.join(format!("tampered-{i}.deb"));
        dpkg_deb(&[
            "-Zgzip".as_ref(),
            "--build".as_ref(),
            raw.as_os_str(),
            tampered.as_os_str(),
        ]);
        cases.push((tampered, "content does not match dpkg's record"));
    }
    // A cached package without md5sums cannot be compared.
    let bare = tyk_like("gateway", "1.0", Variant::Good)
        .without_md5sums()
        .build(&debs.join("bare"));
    cases.push((bare, "no md5sums control member"));
    for (i, (deb, reason)) in cases.iter().enumerate() {
        std::fs::copy(deb, &cache).unwrap();
        let dest = root.join(format!("/var/lib/ferry/rollback/rejected-{i}"));
        let err = capture(&host, &gateway("1.0"), None, &dest)
            .unwrap_err()
            .to_string();
        assert!(err.contains(reason), "{reason}: {err}");
        assert!(err.contains("setup.sh is missing on disk"), "{err}");
        assert_eq!(names(&dest), Vec::<String>::new());
    }

    // apt's own copy needs nothing from the disk.
    std::fs::copy(&v1, &cache).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/cached-again");
    let got = capture(&host, &gateway("1.0"), None, &dest).unwrap();
    assert_eq!(got.source, CaptureSource::AptCache);
}

#[test]
fn capture_rebuilt_package_reinstalls_the_files_as_they_were() {
    let root = DpkgRoot::new();
    let debs = TestDir::new();
    let v1 = tyk_like("gateway", "1.0", Variant::Good).build(&debs.join("v1"));
    let v2 = tyk_like("gateway", "2.0", Variant::Good).build(&debs.join("v2"));
    root.install(&[&v1]);
    let host = root.host();

    // The administrator changed the configuration.
    let conf = root.join("/opt/tyk-gateway/tyk.conf");
    let edited = "{\"listen_port\": 9090, \"edited\": \"by the administrator\"}\n";
    std::fs::write(&conf, edited).unwrap();
    let before = root.tree_digest("/opt/tyk-gateway");
    let info = |kind: &str| {
        std::fs::read(root.join(format!("/var/lib/dpkg/info/tyk-gateway.{kind}"))).unwrap()
    };
    let (postinst, md5sums) = (info("postinst"), info("md5sums"));

    can_rebuild(&host, &gateway("1.0")).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/run");
    let got = capture(&host, &gateway("1.0"), None, &dest).unwrap();
    assert_eq!(got.source, CaptureSource::Rebuilt);
    assert_eq!(got.path, dest.join("tyk-gateway_1.0_all.deb"));
    assert_eq!(got.sha256, sha256_file(&got.path));
    assert_eq!(got.size, std::fs::metadata(&got.path).unwrap().len());
    assert_eq!(names(&dest), ["tyk-gateway_1.0_all.deb"]);

    // The control file is the original one (dpkg records it in another field order).
    let mut original = control_fields(&v1);
    let mut rebuilt = control_fields(&got.path);
    original.remove("Installed-Size");
    rebuilt.remove("Installed-Size");
    assert_eq!(rebuilt, original);
    // Owners are kept; the conffile is the edited one.
    let contents = dpkg_deb(&["--contents".as_ref(), got.path.as_os_str()]);
    let line = |needle: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("{needle} not in:\n{contents}"))
            .to_string()
    };
    assert!(line("./opt/tyk-gateway/install/setup.sh")
        .starts_with(&format!("-rwxr-x--- {TYK_UID}/{TYK_UID}")));
    assert!(line("./opt/tyk-gateway/bin/tyk -> ../tyk").starts_with("lrwxrwxrwx root/root"));
    let scratch = TestDir::new();
    let unpacked = extract(&got.path, &scratch, "rebuilt");
    assert_eq!(
        std::fs::read_to_string(unpacked.join("opt/tyk-gateway/tyk.conf")).unwrap(),
        edited
    );

    // Upgrade (the edited conffile is kept), then roll back with the rebuilt package.
    root.install(&[&v2]);
    assert_eq!(root.status("tyk-gateway").unwrap().0, "2.0");
    assert_ne!(root.tree_digest("/opt/tyk-gateway"), before);
    root.install(&[&got.path]);
    assert_eq!(
        root.status("tyk-gateway"),
        Some(("1.0".to_string(), "install ok installed".to_string()))
    );
    assert_eq!(root.tree_digest("/opt/tyk-gateway"), before);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert_eq!(root.audit(), "");
    assert_eq!(info("postinst"), postinst);
    assert_eq!(info("md5sums"), md5sums);
    assert_eq!(
        root.order_log(),
        [
            "tyk-gateway 1.0 configure",
            "tyk-gateway 2.0 configure",
            "tyk-gateway 1.0 configure"
        ]
    );
}

#[test]
fn capture_preflight_reports_deleted_files_and_rebuild_follows_diversions() {
    let root = DpkgRoot::new();
    let debs = TestDir::new();
    let package = tyk_like("gateway", "1.0", Variant::Good);
    let binary = match &package
        .entries
        .iter()
        .find(|e| e.path == "/opt/tyk-gateway/tyk")
        .unwrap()
        .content
    {
        ferry_tests::dpkg_root::FixtureContent::File(bytes) => bytes.clone(),
        other => panic!("{other:?}"),
    };
    root.install(&[&package.build(debs.path())]);
    let host = root.host();
    can_rebuild(&host, &gateway("1.0")).unwrap();
    assert!(can_rebuild(&host, &gateway("0.9"))
        .unwrap_err()
        .contains("dpkg has version 1.0 installed"));

    // The administrator moved the binary aside with a local diversion and put a wrapper
    // in its place: the package's copy is the diverted one.
    let out = Command::new(require_tool("dpkg-divert", "dpkg"))
        .arg(format!("--root={}", root.path().display()))
        .args([
            "--local",
            "--rename",
            "--divert",
            "/opt/tyk-gateway/tyk.distrib",
            "--add",
            "/opt/tyk-gateway/tyk",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        root.join("/opt/tyk-gateway/tyk"),
        "#!/bin/sh\nexec tyk.distrib \"$@\"\n",
    )
    .unwrap();

    // A deleted conffile is left out, as dpkg-repack does.
    std::fs::remove_file(root.join("/opt/tyk-gateway/tyk.conf")).unwrap();
    can_rebuild(&host, &gateway("1.0")).unwrap();
    let dest = root.join("/var/lib/ferry/rollback/diverted");
    let got = capture(&host, &gateway("1.0"), None, &dest).unwrap();
    assert_eq!(got.source, CaptureSource::Rebuilt);
    let scratch = TestDir::new();
    let unpacked = extract(&got.path, &scratch, "data");
    assert_eq!(
        std::fs::read(unpacked.join("opt/tyk-gateway/tyk")).unwrap(),
        binary
    );
    assert!(!unpacked.join("opt/tyk-gateway/tyk.distrib").exists());
    assert!(!unpacked.join("opt/tyk-gateway/tyk.conf").exists());
    let control = scratch.join("control");
    dpkg_deb(&[
        "--control".as_ref(),
        got.path.as_os_str(),
        control.as_os_str(),
    ]);
    assert!(!control.join("conffiles").exists());
    assert!(control.join("postinst").is_file());

    // A deleted program file: the preflight names it, and capture fails without
    // leaving anything behind.
    std::fs::remove_file(root.join("/opt/tyk-gateway/version")).unwrap();
    let why = can_rebuild(&host, &gateway("1.0")).unwrap_err();
    assert!(
        why.contains("/opt/tyk-gateway/version is missing on disk"),
        "{why}"
    );
    let dest = root.join("/var/lib/ferry/rollback/broken");
    let err = capture(&host, &gateway("1.0"), None, &dest).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/opt/tyk-gateway/version is missing on disk"),
        "{text}"
    );
    assert!(text.contains("apt cache"), "{text}");
    assert!(text.contains("help:"), "{text}");
    assert_eq!(names(&dest), Vec::<String>::new());
}
