//! `ferry-install plan` end to end: signed bundles built here (as `tests/images.rs`
//! builds them; the `.deb` files are opaque bytes, which is all verification looks at),
//! a throwaway root with a hand-written dpkg status file and os-release, and a
//! directory of stand-in backup tools on `PATH` (empty scripts, never run: preflight
//! only looks for them). Every run checks that nothing under the root changed.

mod support;

use ferry_bundle::{Backup, BackupKind, FileEntry, Manifest, Package, Role, Step};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-install");

const STATUS: &str = "\
Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.21.22

Package: tyk-gateway
Status: install ok installed
Architecture: amd64
Version: 4.0.8
";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn deb(name: &str, version: &str, role: Role) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        file: format!("debs/{name}_{}_amd64.deb", version.replace(':', "%3a")),
        repository: "https://packagecloud.io/tyk/x/debian bookworm main".into(),
        role,
    }
}

fn step(component: &str, packages: &[&str], only_if_installed: bool) -> Step {
    Step {
        component: component.into(),
        packages: packages.iter().map(|p| p.to_string()).collect(),
        service: Some(format!("tyk-{component}")),
        configs: vec![format!("/opt/tyk-{component}/tyk.conf")],
        only_if_installed,
        health: None,
        place: vec![],
    }
}

/// The default manifest: gateway 5.2.5 (installed here at 4.0.8) with a dependency,
/// dashboard 5.2.5 only if installed (it is not), a redis backup and a note.
fn manifest() -> Manifest {
    Manifest {
        packages: vec![
            deb("tyk-gateway", "5.2.5", Role::Target),
            deb("libtyk", "1:2.0~rc1", Role::Dependency),
            deb("tyk-dashboard", "5.2.5", Role::Target),
            deb("tyk-gateway", "4.0.8", Role::Previous),
        ],
        steps: vec![
            step("gateway", &["libtyk", "tyk-gateway"], true),
            step("dashboard", &["tyk-dashboard"], true),
        ],
        backups: vec![Backup {
            kind: BackupKind::Redis,
            config: Some("/opt/tyk-gateway/tyk.conf".into()),
            paths: vec![],
            optional: false,
        }],
        notes: vec!["Go plugins must be recompiled for 5.2.5".into()],
        ..support::manifest("tyk-5.2.5-debian-bookworm-amd64", "test/plan")
    }
}

struct TestHost {
    dir: tempfile::TempDir,
    bundle: PathBuf,
    trust: PathBuf,
    /// Stand-in backup tools (empty scripts: preflight only checks they exist).
    tools: PathBuf,
}

impl TestHost {
    fn new(mut manifest: Manifest) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        let mut sources = vec![];
        let mut files = vec![];
        for p in &manifest.packages {
            let bytes = format!("not really a deb: {} {}\n", p.name, p.version).into_bytes();
            let path = payload.join(&p.file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            sources.push(path);
            files.push(FileEntry {
                path: p.file.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                mode: "0644".into(),
            });
        }
        manifest.files = files;
        let (bundle, trust) = support::sign_and_write(dir.path(), &manifest, &sources);

        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        for t in ["redis-cli", "pg_dump", "mongodump"] {
            let p = tools.join(t);
            std::fs::write(&p, "#!/bin/sh\nexit 99\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let host = TestHost {
            bundle,
            trust,
            tools,
            dir,
        };
        host.write("/var/lib/dpkg/status", STATUS);
        host.write("/var/lib/dpkg/lock-frontend", "");
        host.write("/var/lib/dpkg/lock", "");
        std::fs::create_dir_all(host.path("/var/lib/dpkg/updates")).unwrap();
        host.write(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        );
        host.write("/lib/systemd/system/tyk-gateway.service", "[Unit]\n");
        host.write("/etc/init.d/tyk-dashboard", "#!/bin/sh\n");
        host.write(
            "/opt/tyk-gateway/tyk.conf",
            r#"{"storage": {"type": "redis", "host": "127.0.0.1", "port": 6379}}"#,
        );
        host
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root().join(absolute.trim_start_matches('/'))
    }

    fn write(&self, absolute: &str, text: &str) {
        let p = self.path(absolute);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `ferry-install --root ROOT plan BUNDLE --trust PUB ARGS...` with `PATH=path`;
    /// asserts that nothing under the root changed.
    fn plan_with_path(&self, args: &[&str], path: &Path) -> Output {
        let before = snapshot(&self.root());
        let out = Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .arg("plan")
            .arg(&self.bundle)
            .arg("--trust")
            .arg(&self.trust)
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap();
        assert_eq!(
            snapshot(&self.root()),
            before,
            "plan changed the root\n{}",
            text(&out)
        );
        out
    }

    fn plan(&self, args: &[&str]) -> Output {
        self.plan_with_path(args, &self.tools)
    }
}

/// Every path under `root` with its type, mode and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            // Opening a lock file here and closing it would release the fcntl lock a
            // test holds on it (POSIX drops all of a process's locks on a file at any
            // close): lock files are compared by size only.
            let is_lock = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lock"));
            let content = if meta.is_file() && is_lock {
                meta.len().to_le_bytes().to_vec()
            } else if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                vec![]
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.permissions().mode(), content));
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The preflight failures of a `--json` run that exited 4, as (check, message, help).
fn failures(out: &Output) -> Vec<(String, String, String)> {
    assert_eq!(out.status.code(), Some(4), "{}", text(out));
    let v = json(out);
    assert_eq!(v["preflight"]["ok"], false);
    v["preflight"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
                f["help"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn upgrade_plan_shows_versions_and_skips_what_is_not_installed() {
    let host = TestHost::new(manifest());
    let out = host.plan(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["name"], "tyk-5.2.5-debian-bookworm-amd64");
    assert_eq!(
        v["host"],
        serde_json::json!({"distro": "debian", "codename": "bookworm", "arch": "amd64"})
    );
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["component"], "gateway");
    assert_eq!(steps[0]["action"], "install");
    let pkgs = steps[0]["packages"].as_array().unwrap();
    assert_eq!(pkgs[0]["name"], "libtyk");
    assert_eq!(pkgs[0]["from"], serde_json::Value::Null);
    assert_eq!(pkgs[0]["change"], "install");
    assert_eq!(pkgs[1]["name"], "tyk-gateway");
    assert_eq!(pkgs[1]["from"], "4.0.8");
    assert_eq!(pkgs[1]["to"], "5.2.5");
    assert_eq!(pkgs[1]["change"], "upgrade");
    assert_eq!(steps[1]["component"], "dashboard");
    assert_eq!(steps[1]["action"], "skipped");
    assert_eq!(steps[1]["reason"], "skipped: not installed on this host");
    // The running step's configs are copied; the Redis connection is read from one.
    assert_eq!(v["backups"][0]["kind"], "files");
    assert_eq!(v["backups"][0]["estimated_bytes"], 65);
    assert_eq!(v["backups"][1]["kind"], "redis");
    assert_eq!(v["backups"][1]["config"], "/opt/tyk-gateway/tyk.conf");
    assert_eq!(v["backups"][1]["source"], "redis://127.0.0.1:6379/0");
    assert_eq!(v["notes"][0], "Go plugins must be recompiled for 5.2.5");
    assert_eq!(v["preflight"]["ok"], true);

    let out = host.plan(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("upgrade   tyk-gateway 4.0.8 -> 5.2.5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("install   libtyk not installed -> 1:2.0~rc1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped: not installed on this host"),
        "{stdout}"
    );
    assert!(stdout.contains("preflight: OK"), "{stdout}");
}

#[test]
fn same_and_older_versions_are_reinstall_and_downgrade() {
    let mut m = manifest();
    m.packages[0].version = "4.0.8".into();
    m.packages[0].file = "debs/tyk-gateway_4.0.8-same_amd64.deb".into();
    let host = TestHost::new(m.clone());
    let v = json(&host.plan(&["--json"]));
    assert_eq!(v["steps"][0]["packages"][1]["change"], "reinstall");

    m.packages[0].version = "4.0.8~beta1".into();
    m.packages[0].file = "debs/tyk-gateway_4.0.8~beta1_amd64.deb".into();
    let host = TestHost::new(m);
    let v = json(&host.plan(&["--json"]));
    assert_eq!(v["steps"][0]["packages"][1]["change"], "downgrade");
}

#[test]
fn components_filter_the_steps_and_unknown_ones_are_a_usage_error() {
    let host = TestHost::new(manifest());
    let out = host.plan(&["--json", "--components", "dashboard"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    let names: Vec<_> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["component"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["dashboard"]);

    let out = host.plan(&["--components", "gateway,pump"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"pump\"") && stderr.contains("gateway, dashboard"),
        "{stderr}"
    );
}

#[test]
fn wrong_distro_fails_preflight_naming_both_values() {
    let host = TestHost::new(manifest());
    host.write(
        "/etc/os-release",
        "ID=ubuntu\nVERSION_ID=\"20.04\"\nVERSION_CODENAME=focal\n",
    );
    let f = failures(&host.plan(&["--json"]));
    let target: Vec<_> = f.iter().filter(|f| f.0 == "target").collect();
    assert_eq!(target.len(), 2, "{f:?}");
    assert!(
        target[0].1.contains("debian") && target[0].1.contains("ubuntu"),
        "{f:?}"
    );
    assert!(
        target[1].1.contains("bookworm") && target[1].1.contains("focal"),
        "{f:?}"
    );
    // Human output lists the failures too, and the exit code is the same.
    let out = host.plan(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[target]"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("preflight failed"));
}

#[test]
fn pending_dpkg_journal_fails_preflight_with_configure_a() {
    let host = TestHost::new(manifest());
    host.write(
        "/var/lib/dpkg/updates/0001",
        "Package: tyk-gateway\nStatus: install ok half-configured\nArchitecture: amd64\nVersion: 4.0.8\n",
    );
    let f = failures(&host.plan(&["--json"]));
    let interrupted: Vec<_> = f.iter().filter(|f| f.0 == "dpkg-interrupted").collect();
    assert_eq!(interrupted.len(), 2, "{f:?}");
    assert!(
        interrupted.iter().all(|f| f.2.contains("--configure -a")),
        "{f:?}"
    );
    assert!(interrupted[1].1.contains("tyk-gateway"), "{f:?}");
}

#[test]
fn held_lock_frontend_fails_preflight_naming_the_file_and_holder() {
    let host = TestHost::new(manifest());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(host.path("/var/lib/dpkg/lock-frontend"))
        .unwrap();
    // The same kind of lock dpkg takes: an fcntl write lock on the whole file.
    // SAFETY: all-zero is a valid flock; the fd stays open for the whole test.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    assert_eq!(
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut fl) },
        0
    );
    let f = failures(&host.plan(&["--json"]));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "dpkg-lock");
    assert!(f[0].1.contains("lock-frontend"), "{f:?}");
    assert!(
        f[0].1.contains(&format!("process {}", std::process::id())),
        "{f:?}"
    );
    drop(file);
    assert_eq!(host.plan(&[]).status.code(), Some(0));
}

#[test]
fn missing_pg_dump_fails_preflight_naming_postgresql_client() {
    let mut m = manifest();
    m.backups.push(Backup {
        kind: BackupKind::Postgres,
        config: Some("/opt/tyk-dashboard/tyk_analytics.conf".into()),
        paths: vec![],
        optional: false,
    });
    let host = TestHost::new(m);
    host.write(
        "/opt/tyk-dashboard/tyk_analytics.conf",
        r#"{"storage": {"main": {"type": "postgres", "connection_string": "host=127.0.0.1 dbname=tyk_analytics user=tyk password=s3cret"}}}"#,
    );
    let tools = host.dir.path().join("tools-without-pg_dump");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::copy(host.tools.join("redis-cli"), tools.join("redis-cli")).unwrap();
    let f = failures(&host.plan_with_path(&["--json"], &tools));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "backup-tool");
    assert!(f[0].1.contains("pg_dump"), "{f:?}");
    assert!(f[0].2.contains("postgresql-client"), "{f:?}");
}

#[test]
fn missing_service_of_a_running_step_fails_preflight() {
    let host = TestHost::new(manifest());
    std::fs::remove_file(host.path("/lib/systemd/system/tyk-gateway.service")).unwrap();
    let f = failures(&host.plan(&["--json"]));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "service");
    assert!(f[0].1.contains("tyk-gateway"), "{f:?}");
    // The dashboard step is skipped here, so its service is not asked for.
    std::fs::remove_file(host.path("/etc/init.d/tyk-dashboard")).unwrap();
    assert_eq!(failures(&host.plan(&["--json"])).len(), 1);
}

#[test]
fn tampered_bundle_is_refused_with_exit_3() {
    let host = TestHost::new(manifest());
    let mut bytes = std::fs::read(&host.bundle).unwrap();
    let needle = b"not really a deb: libtyk";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&host.bundle, bytes).unwrap();
    let out = host.plan(&["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
}
