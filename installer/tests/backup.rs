//! Backup sets end to end against a throwaway root: files with unusual modes, owners and
//! mtimes, a symlink pointing outside, a directory tree and a glob are backed up, the
//! originals damaged, and everything restored and compared exactly. Ownership checks
//! need root (the test environment runs as root); without it they are skipped.

use ferry_bundle::Timestamp;
use ferry_installer::backup::{list_sets, restore_files, BackupSet, Item, MANIFEST_NAME};
use ferry_installer::host::Host;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferry-install");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-21T03:04:05Z").unwrap()
}

/// Everything observable about one entry (not following links).
#[derive(Debug, PartialEq, Clone)]
struct Snap {
    kind: &'static str,
    content: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    link: Option<PathBuf>,
}

fn snap_tree(root: &Path, host_path: &str, out: &mut BTreeMap<String, Snap>) {
    let real = root.join(host_path.trim_start_matches('/'));
    let m = real.symlink_metadata().unwrap();
    let mut s = Snap {
        kind: "file",
        content: Vec::new(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        link: None,
    };
    if m.file_type().is_symlink() {
        s.kind = "symlink";
        s.mode = 0;
        s.link = Some(std::fs::read_link(&real).unwrap());
    } else if m.is_dir() {
        s.kind = "dir";
        let mut names: Vec<_> = std::fs::read_dir(&real)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            snap_tree(root, &format!("{host_path}/{n}"), out);
        }
    } else {
        s.content = std::fs::read(&real).unwrap();
    }
    out.insert(host_path.to_string(), s);
}

fn write(root: &Path, host_path: &str, content: &str, mode: u32, mtime: i64) -> PathBuf {
    let p = root.join(host_path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(&p, mtime, 123_456_789);
    p
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let t = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

/// The scenario's host: configs with 0600/0640/0755 modes, a foreign owner, a symlink
/// pointing outside the tree, a directory tree and a glob-matched directory.
fn populate(root: &Path) {
    write(
        root,
        "/opt/tyk-gateway/tyk.conf",
        "{\"secret\":1}",
        0o600,
        1_700_000_000,
    );
    let owned = write(
        root,
        "/opt/tyk-gateway/owned.conf",
        "owned",
        0o640,
        1_600_000_000,
    );
    write(
        root,
        "/opt/tyk-gateway/run.sh",
        "#!/bin/sh\n",
        0o755,
        1_500_000_000,
    );
    if is_root() {
        std::os::unix::fs::lchown(&owned, Some(1234), Some(5678)).unwrap();
    }
    write(
        root,
        "/opt/tyk-gateway/apps/a.json",
        "{\"a\":1}",
        0o644,
        1_650_000_000,
    );
    write(
        root,
        "/opt/tyk-gateway/apps/b.json",
        "{\"b\":2}",
        0o600,
        1_650_000_001,
    );
    write(
        root,
        "/opt/tyk-gateway/apps/notes.txt",
        "not matched",
        0o644,
        1,
    );
    write(
        root,
        "/opt/tyk-dashboard/conf.d/x.conf",
        "x",
        0o640,
        1_400_000_000,
    );
    write(
        root,
        "/opt/tyk-dashboard/conf.d/sub/y.conf",
        "y",
        0o600,
        1_400_000_001,
    );
    let link = root.join("opt/tyk-dashboard/conf.d/outside");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&link, Some(1234), Some(5678)).unwrap();
    }
    let dir = root.join("opt/tyk-dashboard/conf.d/sub");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&dir, 1_300_000_000, 5);
    let dir = root.join("opt/tyk-dashboard/conf.d");
    set_mtime(&dir, 1_300_000_001, 6);
}

fn paths() -> Vec<String> {
    [
        "/opt/tyk-gateway/tyk.conf",
        "/opt/tyk-gateway/owned.conf",
        "/opt/tyk-gateway/run.sh",
        "/opt/tyk-gateway/apps/*.json",
        "/opt/tyk-dashboard/conf.d",
        "/opt/tyk-pump/*.conf",
    ]
    .map(String::from)
    .to_vec()
}

fn snapshot(root: &Path) -> BTreeMap<String, Snap> {
    let mut s = BTreeMap::new();
    snap_tree(root, "/opt", &mut s);
    s
}

#[test]
fn back_up_damage_restore_compares_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    populate(root);
    let host = Host::new(root).with_now(now());
    let before = snapshot(root);

    let mut set = BackupSet::begin(&host, None, "pre-apply", now()).unwrap();
    assert_eq!(set.id(), "20261121T030405Z-pre-apply");
    let set_dir = set.dir().to_path_buf();
    assert_eq!(
        set_dir,
        root.join("var/backups/ferry/20261121T030405Z-pre-apply")
    );
    assert_eq!(set_dir.metadata().unwrap().mode() & 0o7777, 0o700);
    set.add_files(&paths()).unwrap();
    assert!(
        !set_dir.join(MANIFEST_NAME).exists(),
        "backup.json only at finish"
    );
    let manifest = set.finish().unwrap();

    assert_eq!(manifest.format, "ferry-backup/1");
    assert!(manifest.complete);
    assert_eq!(manifest.skipped.len(), 1);
    assert_eq!(manifest.skipped[0].pattern, "/opt/tyk-pump/*.conf");
    assert_eq!(manifest.skipped[0].reason, "matched nothing");
    let sources: Vec<&str> = manifest
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Files(f) => Some(f.source.as_str()),
            _ => None,
        })
        .collect();
    assert!(sources.contains(&"/opt/tyk-gateway/apps/a.json"));
    assert!(!sources.contains(&"/opt/tyk-gateway/apps/notes.txt"));
    let link = manifest
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Files(f) => Some(f),
            _ => None,
        })
        .find(|f| f.source.ends_with("/outside"))
        .unwrap();
    assert_eq!(link.link_target.as_deref(), Some("/etc/shadow"));
    // The copy in the set is the link itself, not /etc/shadow's content.
    assert!(set_dir
        .join(&link.path_in_set)
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set_dir.join(MANIFEST_NAME)).unwrap()).unwrap();
    let tyk = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == "/opt/tyk-gateway/tyk.conf")
        .unwrap();
    assert_eq!(tyk["kind"], "files");
    assert_eq!(tyk["mode"], "0600");
    assert_eq!(tyk["size"], 12);
    assert_eq!(tyk["path_in_set"], "files/opt/tyk-gateway/tyk.conf");

    // Damage the originals: delete, rewrite, chmod, chown, retarget the link, drop a tree.
    std::fs::remove_file(root.join("opt/tyk-gateway/tyk.conf")).unwrap();
    write(root, "/opt/tyk-gateway/owned.conf", "tampered", 0o666, 42);
    std::fs::set_permissions(
        root.join("opt/tyk-gateway/run.sh"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(root.join("opt/tyk-gateway/apps/b.json")).unwrap();
    std::fs::remove_file(root.join("opt/tyk-dashboard/conf.d/outside")).unwrap();
    std::os::unix::fs::symlink(
        "/tmp/elsewhere",
        root.join("opt/tyk-dashboard/conf.d/outside"),
    )
    .unwrap();
    std::fs::remove_dir_all(root.join("opt/tyk-dashboard/conf.d/sub")).unwrap();
    assert_ne!(snapshot(root), before);

    let restored = restore_files(&host, &set_dir, None).unwrap();
    assert!(restored.contains(&PathBuf::from("/opt/tyk-dashboard/conf.d/sub/y.conf")));
    let after = snapshot(root);
    for (path, want) in &before {
        // Directories whose entries restore rewrote without being backed up themselves
        // keep their new mtime; everything backed up must match exactly.
        if !sources.contains(&path.as_str()) {
            continue;
        }
        assert_eq!(after.get(path), Some(want), "{path}");
    }
    if is_root() {
        let owned = &after["/opt/tyk-gateway/owned.conf"];
        assert_eq!((owned.uid, owned.gid, owned.mode), (1234, 5678, 0o640));
        let link = &after["/opt/tyk-dashboard/conf.d/outside"];
        assert_eq!((link.uid, link.gid), (1234, 5678));
    }
    assert_eq!(
        after["/opt/tyk-dashboard/conf.d/sub"].mtime,
        (1_300_000_000, 5)
    );
    // No temporary files left behind.
    assert!(
        after.keys().all(|k| !k.contains(".ferry-restore")),
        "{after:?}"
    );
}

#[test]
fn tampered_copy_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    populate(root);
    let host = Host::new(root).with_now(now());
    let mut set = BackupSet::begin(&host, None, "t", now()).unwrap();
    set.add_files(&paths()).unwrap();
    let set_dir = set.dir().to_path_buf();
    set.finish().unwrap();

    std::fs::remove_file(root.join("opt/tyk-gateway/tyk.conf")).unwrap();
    write(root, "/opt/tyk-gateway/run.sh", "changed", 0o700, 7);
    let damaged = snapshot(root);
    // tyk.conf sorts last: a restore that checked as it went would have rewritten
    // run.sh before noticing.
    std::fs::write(
        set_dir.join("files/opt/tyk-gateway/tyk.conf"),
        "{\"secret\":2}",
    )
    .unwrap();

    let err = restore_files(&host, &set_dir, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/opt/tyk-gateway/tyk.conf"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(snapshot(root), damaged, "restore changed the host: {err}");
}

#[test]
fn restore_only_selected_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    populate(root);
    let host = Host::new(root).with_now(now());
    let mut set = BackupSet::begin(&host, None, "only", now()).unwrap();
    set.add_files(&paths()).unwrap();
    let set_dir = set.dir().to_path_buf();
    set.finish().unwrap();
    std::fs::remove_file(root.join("opt/tyk-gateway/tyk.conf")).unwrap();
    std::fs::remove_file(root.join("opt/tyk-gateway/run.sh")).unwrap();

    let only = ["/opt/tyk-gateway/tyk.conf".to_string()];
    let restored = restore_files(&host, &set_dir, Some(&only)).unwrap();
    assert_eq!(restored, [PathBuf::from("/opt/tyk-gateway/tyk.conf")]);
    assert!(root.join("opt/tyk-gateway/tyk.conf").exists());
    assert!(!root.join("opt/tyk-gateway/run.sh").exists());
    let missing = ["/opt/nope".to_string()];
    let err = restore_files(&host, &set_dir, Some(&missing)).unwrap_err();
    assert!(err.to_string().contains("/opt/nope"), "{err}");
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(tmp.path());
    let mut set = BackupSet::begin(&host, None, "m", now()).unwrap();
    let err = set
        .add_files(&["/opt/tyk-gateway/absent.conf".to_string()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("/opt/tyk-gateway/absent.conf"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn begin_refuses_an_existing_set() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(tmp.path());
    let dest = tmp.path().join("elsewhere");
    BackupSet::begin(&host, Some(&dest), "x", now()).unwrap();
    let err = BackupSet::begin(&host, Some(&dest), "x", now()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(dest.join("20261121T030405Z-x").is_dir());
    assert!(!tmp.path().join("var").exists(), "--dest was not honoured");
}

#[test]
fn unfinished_set_is_listed_incomplete_and_never_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    populate(root);
    let host = Host::new(root).with_now(now());
    let mut done = BackupSet::begin(&host, None, "done", now()).unwrap();
    done.add_files(&paths()).unwrap();
    done.finish().unwrap();
    let later = Timestamp(now().unix() + 60);
    let mut broken = BackupSet::begin(&host, None, "broken", later).unwrap();
    broken
        .add_files(&["/opt/tyk-gateway/tyk.conf".to_string()])
        .unwrap();
    let broken_dir = broken.dir().to_path_buf();
    drop(broken);

    let sets = list_sets(&host, None).unwrap();
    assert_eq!(sets.len(), 2);
    assert!(sets[0].complete && !sets[1].complete);
    assert!(restore_files(&host, &broken_dir, None)
        .unwrap_err()
        .to_string()
        .contains("no backup.json"));

    let out = Command::new(BIN)
        .args(["--root"])
        .arg(root)
        .args(["backup", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["id"], "20261121T030405Z-done");
    assert_eq!(v[0]["complete"], true);
    assert!(v[0]["items"].as_u64().unwrap() >= 9);
    assert_eq!(v[1]["id"], "20261121T030505Z-broken");
    assert_eq!(v[1]["name"], "broken");
    assert_eq!(v[1]["complete"], false);
    assert_eq!(
        v[1]["items"], 3,
        "files/opt, files/opt/tyk-gateway, tyk.conf"
    );

    let out = Command::new(BIN)
        .args(["--root"])
        .arg(root)
        .args(["backup", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(
        text.contains("20261121T030505Z-broken") && text.contains("INCOMPLETE"),
        "{text}"
    );
    assert!(text.contains("20261121T030405Z-done  "), "{text}");
}

#[test]
fn backup_list_with_no_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--root"])
        .arg(tmp.path())
        .args(["backup", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[]");
}

/// `ferry-install --root ROOT ARGS...`.
fn cli(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn installer_toml(root: &Path, text: &str) {
    let p = root.join("etc/ferry/installer.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn cli_create_from_installer_toml_then_restore_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    populate(root);
    let quoted: Vec<String> = paths().iter().map(|p| format!("{p:?}")).collect();
    installer_toml(
        root,
        &format!(
            "[[backup]]\nkind = \"files\"\npaths = [{}]\n",
            quoted.join(", ")
        ),
    );
    let before = snapshot(root);

    let out = cli(root, &["backup", "create", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["complete"], true);
    let id = manifest["id"].as_str().unwrap().to_string();
    assert!(id.ends_with("-manual"), "{id}");
    assert_eq!(manifest["skipped"][0]["pattern"], "/opt/tyk-pump/*.conf");

    // Damage the originals, then restore through the CLI.
    std::fs::write(root.join("opt/tyk-gateway/tyk.conf"), "damaged").unwrap();
    std::fs::remove_dir_all(root.join("opt/tyk-dashboard/conf.d")).unwrap();
    std::fs::set_permissions(
        root.join("opt/tyk-gateway/run.sh"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = cli(root, &["backup", "restore", &id]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("every sha256 checked first"), "{text}");
    let after = snapshot(root);
    for (path, snap) in &before {
        // Directory mtimes of parents change when children are written; compare them
        // only for what the set holds.
        if path.starts_with("/opt/tyk-gateway/apps") && snap.kind == "dir" {
            continue;
        }
        if snap.kind == "dir" && !path.starts_with("/opt/tyk-dashboard/conf.d") {
            continue;
        }
        assert_eq!(after.get(path), Some(snap), "{path}");
    }

    // List shows it complete; --only redis on a files-only set is a clear error.
    let out = cli(root, &["backup", "list", "--json"]);
    let sets: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sets[0]["id"], id.as_str());
    assert_eq!(sets[0]["complete"], true);
    let out = cli(root, &["backup", "restore", &id, "--only", "redis"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing of kind redis"));
}

#[test]
fn cli_create_without_bundle_or_config_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cli(tmp.path(), &["backup", "create"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to back up"), "{err}");
    assert!(!tmp.path().join("var").exists());
}

#[test]
fn cli_restore_of_unknown_set_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cli(tmp.path(), &["backup", "restore", "20260101T000000Z-nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such backup set"), "{err}");
    assert!(err.contains("backup list"), "{err}");
    let out = cli(tmp.path(), &["backup", "restore", "../etc"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A small tmpfs as the backup destination: files larger than it are refused before
/// anything is written (exit 4, with the numbers).
#[test]
fn cli_destination_too_small_is_refused_before_writing() {
    assert!(
        is_root(),
        "this test mounts a tmpfs and needs root (CI runs as root)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let big = vec![b'x'; 3 * 1024 * 1024];
    let p = root.join("opt/tyk-gateway/big.bin");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &big).unwrap();
    installer_toml(
        &root,
        "[[backup]]\nkind = \"files\"\npaths = [\"/opt/tyk-gateway/big.bin\"]\n",
    );
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let _mount = Tmpfs::mount(&mnt, "1m");
    let out = cli(
        &root,
        &["backup", "create", "--dest", mnt.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not enough free space"), "{err}");
    assert!(err.contains("3.3 MiB"), "needed size with margin: {err}");
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("mount (Debian package mount)");
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
