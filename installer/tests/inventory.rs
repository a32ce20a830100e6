//! `ferry-install --root ROOT inventory` against throwaway roots populated by the real
//! dpkg (never this machine's own dpkg database): tiny `.deb`s built with `dpkg-deb`,
//! installed, removed, left half-configured or unpacked by `dpkg --root`.
//!
//! dpkg and dpkg-deb are required: without them these tests fail and name the Debian
//! package to install; they never skip.

use ferry_bundle::inventory::{InstalledPackage, Inventory};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-install");

/// Run a dpkg tool, failing the test with the Debian package to install if it is missing.
fn tool(name: &str) -> Command {
    let ok = Command::new(name)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{name}` is required by the inventory tests: install the Debian package dpkg (apt-get install dpkg)"
    );
    Command::new(name)
}

fn native_arch() -> String {
    let out = tool("dpkg").arg("--print-architecture").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A throwaway system root with an empty dpkg database, plus a work dir for `.deb`s.
struct TestRoot {
    dir: tempfile::TempDir,
}

impl TestRoot {
    fn new() -> TestRoot {
        let dir = tempfile::tempdir().unwrap();
        let t = TestRoot { dir };
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc", "debs"] {
            std::fs::create_dir_all(t.root().join(d)).unwrap();
        }
        std::fs::write(t.root().join("var/lib/dpkg/status"), "").unwrap();
        std::fs::write(
            t.root().join("etc/os-release"),
            "PRETTY_NAME=\"Ferry Test GNU/Linux 12 (bookworm)\"\nNAME=\"Ferry Test\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        )
        .unwrap();
        std::fs::write(t.root().join("etc/hostname"), "gw-test-01\n").unwrap();
        t
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("host.json")
    }

    /// Build `NAME_VERSION.deb` from a control paragraph, an optional conffile and an
    /// optional postinst script.
    fn deb(&self, control: &str, conffile: Option<&str>, postinst: Option<&str>) -> PathBuf {
        let name = control
            .lines()
            .find_map(|l| l.strip_prefix("Package: "))
            .unwrap();
        let tree = self.dir.path().join("debs").join(name);
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(tree.join("usr/share/doc").join(name)).unwrap();
        std::fs::write(tree.join("usr/share/doc").join(name).join("README"), name).unwrap();
        std::fs::write(
            tree.join("DEBIAN/control"),
            format!("{control}Maintainer: ferry tests <tests@example.invalid>\nDescription: ferry inventory test package\n"),
        )
        .unwrap();
        if let Some(path) = conffile {
            let file = tree.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "setting = 1\n").unwrap();
            std::fs::write(tree.join("DEBIAN/conffiles"), format!("{path}\n")).unwrap();
        }
        if let Some(script) = postinst {
            use std::os::unix::fs::PermissionsExt;
            let p = tree.join("DEBIAN/postinst");
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let deb = self.dir.path().join(format!("{name}.deb"));
        let out = tool("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&tree)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg-deb: {}", text(&out.stderr));
        deb
    }

    /// Real dpkg on the throwaway root: no chroot for maintainer scripts, no root-only
    /// checks, and its log kept inside the test dir rather than /var/log/dpkg.log.
    fn dpkg(&self, args: &[&str]) -> Output {
        tool("dpkg")
            .arg(format!("--root={}", self.root().display()))
            .arg(format!(
                "--log={}",
                self.dir.path().join("dpkg.log").display()
            ))
            .args([
                "--force-script-chrootless",
                "--force-not-root",
                "--force-bad-path",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn dpkg_ok(&self, args: &[&str]) {
        let out = self.dpkg(args);
        assert!(
            out.status.success(),
            "dpkg failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// `ferry-install --root ROOT inventory EXTRA...`.
    fn inventory(&self, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .arg("inventory")
            .args(extra)
            .output()
            .unwrap()
    }

    /// Take an inventory with `--out` and read it back.
    fn take(&self) -> (Inventory, Output) {
        let out = self.inventory(&["--out", path(&self.out())]);
        assert!(
            out.status.success(),
            "inventory failed: {}",
            text(&out.stderr)
        );
        let inv = Inventory::parse(&std::fs::read(self.out()).unwrap()).unwrap();
        (inv, out)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn find<'a>(inv: &'a Inventory, name: &str) -> Option<&'a InstalledPackage> {
    inv.packages.iter().find(|p| p.name == name)
}

/// Every file under `dir` with its content, to prove a command changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn installed_packages_are_listed_exactly_and_removal_is_tracked() {
    let t = TestRoot::new();
    let arch = native_arch();
    let lib = t.deb(
        &format!(
            "Package: ferry-test-libcore\nVersion: 2:1.4.0-3\nArchitecture: {arch}\nMulti-Arch: same\n"
        ),
        Some("/etc/ferry-test/core.conf"),
        None,
    );
    let app = t.deb(
        "Package: ferry-test-app\nVersion: 0.9.1+deb12u1\nArchitecture: all\nDepends: ferry-test-libcore (>= 2:1.4)\nProvides: ferry-test-service\n",
        None,
        None,
    );
    t.dpkg_ok(&["--add-architecture", "i386"]);
    t.dpkg_ok(&["-i", path(&lib), path(&app)]);

    // Inventory only reads: the root is byte-for-byte the same afterwards.
    let before = snapshot(&t.root());
    let (inv, out) = t.take();
    assert_eq!(snapshot(&t.root()), before, "inventory changed the root");

    assert_eq!(inv.format, "ferry-inventory/1");
    assert_eq!(inv.hostname.as_deref(), Some("gw-test-01"));
    assert_eq!(inv.os.id, "debian");
    assert_eq!(inv.os.version_id.as_deref(), Some("12"));
    assert_eq!(inv.os.version_codename.as_deref(), Some("bookworm"));
    assert_eq!(
        inv.os.pretty_name.as_deref(),
        Some("Ferry Test GNU/Linux 12 (bookworm)")
    );
    assert_eq!(inv.arch, arch);
    let foreign = t.dpkg(&["--print-foreign-architectures"]);
    let foreign: Vec<String> = text(&foreign.stdout).lines().map(String::from).collect();
    assert_eq!(foreign, ["i386"]);
    assert_eq!(inv.foreign_archs, foreign, "must agree with dpkg");

    let names: Vec<_> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ferry-test-app", "ferry-test-libcore"]);
    let lib = find(&inv, "ferry-test-libcore").unwrap();
    assert_eq!(lib.version, "2:1.4.0-3");
    assert_eq!(lib.arch, arch);
    assert_eq!(lib.status, "install ok installed");
    assert_eq!(lib.multi_arch.as_deref(), Some("same"));
    assert!(!lib.essential);
    let app = find(&inv, "ferry-test-app").unwrap();
    assert_eq!(app.version, "0.9.1+deb12u1");
    assert_eq!(app.arch, "all");
    assert_eq!(app.status, "install ok installed");
    assert_eq!(
        app.depends.as_deref(),
        Some("ferry-test-libcore (>= 2:1.4)")
    );
    assert_eq!(app.provides.as_deref(), Some("ferry-test-service"));
    assert_eq!(app.pre_depends, None);

    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!(
            "inventory of gw-test-01 (Ferry Test GNU/Linux 12 (bookworm), {arch}): 2 packages installed, 0 with problems -> {}",
            t.out().display()
        )
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    // Without --out the document goes to stdout, and is the same inventory.
    let out = t.inventory(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let streamed = Inventory::parse(&out.stdout).unwrap();
    assert_eq!(streamed.packages, inv.packages);

    // A package without conffiles disappears when removed...
    t.dpkg_ok(&["-r", "ferry-test-app"]);
    let (inv, out) = t.take();
    assert!(find(&inv, "ferry-test-app").is_none(), "{inv:?}");
    assert_eq!(
        find(&inv, "ferry-test-libcore").unwrap().status,
        "install ok installed"
    );
    assert!(text(&out.stdout).contains(": 1 packages installed, 0 with problems"));

    // ...one with a conffile stays as config-files, which is not "installed".
    t.dpkg_ok(&["-r", "ferry-test-libcore"]);
    let (inv, out) = t.take();
    let lib = find(&inv, "ferry-test-libcore").unwrap();
    assert_eq!(lib.status, "deinstall ok config-files");
    assert_eq!(lib.version, "2:1.4.0-3");
    assert!(!lib.is_installed() && !lib.is_broken());
    assert_eq!(inv.installed().count(), 0);
    assert!(text(&out.stdout).contains(": 0 packages installed, 0 with problems"));
}

#[test]
fn half_configured_and_unpacked_packages_trigger_the_warning() {
    let t = TestRoot::new();
    let ok = t.deb(
        "Package: ferry-test-fine\nVersion: 1.0\nArchitecture: all\n",
        None,
        None,
    );
    let failing = t.deb(
        "Package: ferry-test-broken\nVersion: 5.2.5\nArchitecture: all\n",
        None,
        Some("#!/bin/sh\necho 'ferry test: postinst fails on purpose' >&2\nexit 1\n"),
    );
    let unpack_only = t.deb(
        "Package: ferry-test-unpacked\nVersion: 3.1-1\nArchitecture: all\n",
        None,
        None,
    );
    t.dpkg_ok(&["-i", path(&ok)]);
    let out = t.dpkg(&["-i", path(&failing)]);
    assert!(!out.status.success(), "the postinst was meant to fail");
    t.dpkg_ok(&["--unpack", path(&unpack_only)]);

    let (inv, out) = t.take();
    assert_eq!(
        find(&inv, "ferry-test-broken").unwrap().status,
        "install ok half-configured"
    );
    assert_eq!(
        find(&inv, "ferry-test-unpacked").unwrap().status,
        "install ok unpacked"
    );
    let broken: Vec<_> = inv.broken().map(|p| p.name.as_str()).collect();
    assert_eq!(broken, ["ferry-test-broken", "ferry-test-unpacked"]);
    assert!(text(&out.stdout).contains(": 1 packages installed, 2 with problems -> "));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: 2 package(s) left half-done by dpkg"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ferry-test-broken 5.2.5 (install ok half-configured)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ferry-test-unpacked 3.1-1 (install ok unpacked)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "dpkg --root={} --configure -a",
            t.root().display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("ferry-test-fine"), "{stderr}");

    // The JSON summary carries the same problems for scripts.
    let out = t.inventory(&["--out", path(&t.out()), "--json"]);
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["installed"], 1);
    assert_eq!(summary["packages"], 3);
    assert_eq!(summary["problems"][0]["package"], "ferry-test-broken");
    assert_eq!(
        summary["problems"][0]["status"],
        "install ok half-configured"
    );
}

#[test]
fn missing_status_file_exits_1_and_names_the_path() {
    let t = TestRoot::new();
    let status = t.root().join("var/lib/dpkg/status");
    std::fs::remove_file(&status).unwrap();
    let out = t.inventory(&["--out", path(&t.out())]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&status.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(
            "help: is this a Debian/Ubuntu system? with --root, point at the root of one"
        ),
        "{stderr}"
    );
    assert!(!t.out().exists(), "nothing may be written on failure");
    assert!(out.stdout.is_empty());
}

#[test]
fn malformed_status_file_exits_1_naming_file_and_line() {
    let t = TestRoot::new();
    let status = t.root().join("var/lib/dpkg/status");
    std::fs::write(
        &status,
        "Package: fine\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\nPackage: bad\nStatus: install ok installed\nthis line has no colon\n",
    )
    .unwrap();
    let out = t.inventory(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:8: ", status.display())),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
    assert!(out.stdout.is_empty());
}
