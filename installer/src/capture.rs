//! Rollback packages, captured before dpkg runs: for every installed package an upgrade
//! will replace, a `.deb` of exactly the installed version, so that a rollback can put
//! the old version back with `dpkg -i` on a host that has no network.
//!
//! [`capture`] takes the first source that works, and logs (tracing) which one it used
//! and why it turned down the others:
//!
//! 1. **The bundle's `previous` package** ([`CaptureSource::BundlePrevious`]): a `.deb`
//!    the caller has already verified with the bundle. It is used only if its control
//!    `Package`, `Version` (compared as dpkg compares versions) and `Architecture` are
//!    those of the installed package (`dpkg-deb --field`).
//! 2. **apt's cache** ([`CaptureSource::AptCache`]):
//!    `/var/cache/apt/archives/<name>_<version, ':' as %3a>_<arch>.deb` under the host
//!    root. apt checked it against a signed index when it downloaded it, but anything
//!    may have happened to it since, so it is used only if its control fields match, its
//!    `md5sums` control member holds the same (md5, path) pairs as dpkg's record
//!    `/var/lib/dpkg/info/<pkg>.md5sums`, and its data, unpacked, matches that record
//!    and the conffile hashes of the status database (`md5sum -c`).
//! 3. **Rebuilt from the dpkg database** ([`CaptureSource::Rebuilt`]), as `dpkg-repack`
//!    does: the control file is the package's status record without the fields only the
//!    status database has (`Status`, `Config-Version`, `Conffiles`, `Triggers-*`); the
//!    other control members are dpkg's copies in `/var/lib/dpkg/info/<pkg>.*` (every
//!    one but `list` and `conffiles`); `conffiles` is made from the `Conffiles` field
//!    without the `obsolete` and `remove-on-upgrade` entries; and every directory, file
//!    and symlink of `<pkg>.list` is copied as it is on disk now (content, mode, owner,
//!    group, times; conffiles as the administrator changed them), then
//!    `dpkg-deb --build` packs it keeping those owners. Unlike `dpkg-repack`, the
//!    description is not tagged (the package must be the installed version, byte for
//!    byte where possible), a listed file missing on disk is an error rather than a
//!    warning (a conffile the administrator deleted is left out, as `dpkg-repack` does),
//!    and a diverted file is taken from where the diversion put it only when another
//!    package (or the administrator) diverted it, not when the package diverts its own
//!    file. Hard links between listed files stay hard links. [`can_rebuild`] is the
//!    cheap preflight of this source.
//!
//! Paths in the dpkg database are resolved inside the host root, symlinks included, so
//! an image mounted under `--root` is read as that system sees itself. Every `.deb` is
//! written under a temporary name in the destination directory and renamed into place
//! once complete and synced: a failure leaves no partial package behind.

use crate::host::Host;
use crate::inventory::{DPKG_STATUS, DPKG_UPDATES};
use crate::plan::compare_versions;
use crate::tools::{find_program, hex, tail};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// apt's cache of downloaded packages.
pub const APT_ARCHIVES: &str = "/var/cache/apt/archives";
/// dpkg's per-package control files and file lists.
pub const DPKG_INFO: &str = "/var/lib/dpkg/info";
/// dpkg's diversions database.
pub const DPKG_DIVERSIONS: &str = "/var/lib/dpkg/diversions";

/// Compression of rebuilt packages: gzip at level 1 packs a Tyk binary of 100 MB in
/// about a second (xz, dpkg-deb's default, takes tens of seconds) and every dpkg reads it.
const REBUILD_COMPRESSION: [&str; 2] = ["-Zgzip", "-z1"];

/// Fields of a status record that only the status database has, never a `.deb`.
const STATUS_ONLY_FIELDS: [&str; 5] = [
    "status",
    "config-version",
    "conffiles",
    "triggers-pending",
    "triggers-awaited",
];

/// Package states whose files are all on disk as the package installed them.
const COMPLETE_STATES: [&str; 3] = ["installed", "triggers-awaited", "triggers-pending"];

/// Where a rollback package came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureSource {
    /// The bundle's `.deb` with role `previous`.
    BundlePrevious,
    /// apt's cache, `/var/cache/apt/archives`.
    AptCache,
    /// Rebuilt from the dpkg database and the files on disk, as `dpkg-repack` does.
    Rebuilt,
}

impl CaptureSource {
    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureSource::BundlePrevious => "bundle-previous",
            CaptureSource::AptCache => "apt-cache",
            CaptureSource::Rebuilt => "rebuilt",
        }
    }
}

impl std::fmt::Display for CaptureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An installed package, as the dpkg database names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Package name.
    pub name: String,
    /// Installed version, epoch included if it has one.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
}

impl Installed {
    fn label(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.arch)
    }
}

/// A rollback package written to the destination directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Package name.
    pub name: String,
    /// Version (the installed one).
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Where the package came from.
    pub source: CaptureSource,
    /// The `.deb` (`<dest_dir>/<name>_<version, ':' as %3a>_<arch>.deb`).
    pub path: PathBuf,
    /// sha256 of the `.deb`, hex.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
}

/// The file name apt gives a package in its cache: `<name>_<version>_<arch>.deb`, with
/// the epoch's `:` written `%3a`. Captured packages are named the same way.
pub fn deb_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Capture a `.deb` of the installed version of `pkg` into `dest_dir` (a real path,
/// e.g. `host.path("/var/lib/ferry/rollback/<run-id>")`, created with mode 0700 if
/// missing), from the first source that works (see the module documentation).
/// `previous` is the bundle's verified `previous`-role `.deb` for the package, if any.
///
/// Fails if the package is not installed in that version, if `dpkg-deb` is missing, or
/// if no source works; the error then says why each source was turned down.
pub fn capture(
    host: &Host,
    pkg: &Installed,
    previous: Option<&Path>,
    dest_dir: &Path,
) -> Result<Captured> {
    let dpkg_deb = find_program("dpkg-deb", None).ok_or_else(|| Error::ToolMissing {
        program: "dpkg-deb".into(),
        package: "dpkg".into(),
        purpose: "to read and build rollback packages".into(),
    })?;
    let record = find_record(host, pkg)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest_dir)
        .map_err(|e| Error::io(dest_dir, e))?;
    let tools = Tools {
        dpkg_deb,
        md5sum: find_program("md5sum", None),
    };
    let name = deb_file_name(&pkg.name, &pkg.version, &pkg.arch);
    let dest = dest_dir.join(&name);
    let mut rejected: Vec<String> = Vec::new();

    match previous {
        Some(deb) => {
            match check_fields(&tools, deb, pkg).and_then(|()| store_copy(deb, dest_dir, &dest)) {
                Ok((sha256, size)) => {
                    return Ok(done(pkg, CaptureSource::BundlePrevious, dest, sha256, size))
                }
                Err(why) => {
                    tracing::warn!(
                        "{}: the bundle's previous package {} is not used: {why}",
                        pkg.label(),
                        deb.display()
                    );
                    rejected.push(format!(
                        "bundle's previous package {}: {why}",
                        deb.display()
                    ));
                }
            }
        }
        None => {
            tracing::debug!("{}: the bundle has no previous package", pkg.label());
            rejected.push("bundle's previous package: the bundle has none".into());
        }
    }

    let cached = host.path(APT_ARCHIVES).join(&name);
    match fs::symlink_metadata(&cached) {
        Ok(_) => match check_apt_cache(&tools, host, &record, pkg, &cached, dest_dir)
            .and_then(|()| store_copy(&cached, dest_dir, &dest))
        {
            Ok((sha256, size)) => {
                return Ok(done(pkg, CaptureSource::AptCache, dest, sha256, size))
            }
            Err(why) => {
                tracing::warn!(
                    "{}: apt's cached {} is not used: {why}",
                    pkg.label(),
                    cached.display()
                );
                rejected.push(format!("apt cache {}: {why}", cached.display()));
            }
        },
        Err(e) => {
            tracing::debug!("{}: {}: {e}", pkg.label(), cached.display());
            rejected.push(format!("apt cache {}: {e}", cached.display()));
        }
    }

    match rebuild(&tools, host, &record, pkg, dest_dir, &dest) {
        Ok((sha256, size)) => {
            tracing::info!(
                "{}: rebuilt from the dpkg database; not used: {}",
                pkg.label(),
                rejected.join("; ")
            );
            Ok(done(pkg, CaptureSource::Rebuilt, dest, sha256, size))
        }
        Err(why) => {
            rejected.push(format!("rebuild from the dpkg database: {why}"));
            Err(Error::Capture {
                package: pkg.label(),
                message: format!(
                    "no source could provide it:\n  - {}",
                    rejected.join("\n  - ")
                ),
                help: format!(
                    "put {} (the package of exactly the installed version) into {}, or fix what the rebuild reports; ferry upgrades nothing it could not roll back",
                    name,
                    host.path(APT_ARCHIVES).display()
                ),
            })
        }
    }
}

/// Whether [`capture`] could rebuild `pkg` from the dpkg database if no other source
/// works: cheap checks only (status record, file list, every listed file but deleted
/// conffiles present on disk); the error lists every reason it could not.
pub fn can_rebuild(host: &Host, pkg: &Installed) -> std::result::Result<(), String> {
    let record = find_record(host, pkg).map_err(|e| match e {
        Error::Capture { message, .. } => message,
        other => other.to_string(),
    })?;
    plan_rebuild(host, &record, pkg)
        .map(|_| ())
        .map_err(|reasons| reasons.join("; "))
}

fn done(
    pkg: &Installed,
    source: CaptureSource,
    path: PathBuf,
    sha256: String,
    size: u64,
) -> Captured {
    tracing::info!(
        "{}: rollback package captured from {source}: {} ({size} bytes, sha256 {sha256})",
        pkg.label(),
        path.display()
    );
    Captured {
        name: pkg.name.clone(),
        version: pkg.version.clone(),
        arch: pkg.arch.clone(),
        source,
        path,
        sha256,
        size,
    }
}

struct Tools {
    dpkg_deb: PathBuf,
    md5sum: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------
// Checking a .deb.

/// The control `Package`, `Version` and `Architecture` of `deb` must be those of `pkg`.
fn check_fields(tools: &Tools, deb: &Path, pkg: &Installed) -> std::result::Result<(), String> {
    let out = run(
        &tools.dpkg_deb,
        &[
            OsStr::new("--field"),
            deb.as_os_str(),
            OsStr::new("Package"),
            OsStr::new("Version"),
            OsStr::new("Architecture"),
        ],
    )?;
    let records = parse_records(&out.stdout).map_err(|(line, why)| {
        format!("dpkg-deb --field printed something unreadable (line {line}: {why})")
    })?;
    let record = records.into_iter().next().unwrap_or_default();
    let name = record.value("package").unwrap_or_default();
    let version = record.value("version").unwrap_or_default();
    let arch = record.value("architecture").unwrap_or_default();
    if name != pkg.name
        || arch != pkg.arch
        || compare_versions(&version, &pkg.version) != Ordering::Equal
    {
        return Err(format!(
            "it is {name} {version} ({arch}), not the installed {}",
            pkg.label()
        ));
    }
    Ok(())
}

/// apt's cached `deb` must be the package dpkg installed: same control fields, same
/// md5sums as dpkg recorded, and data that matches those sums and the conffile hashes.
fn check_apt_cache(
    tools: &Tools,
    host: &Host,
    record: &Record,
    pkg: &Installed,
    deb: &Path,
    dest_dir: &Path,
) -> std::result::Result<(), String> {
    check_fields(tools, deb, pkg)?;
    let Some(md5sum) = &tools.md5sum else {
        return Err("md5sum is not on PATH to check it (Debian package coreutils)".into());
    };
    let prefix = info_prefix(host, record, pkg);
    let recorded_path = host.path(DPKG_INFO).join(format!("{prefix}.md5sums"));
    let recorded_text = fs::read(&recorded_path).map_err(|e| {
        format!(
            "dpkg's record {} cannot be read to compare: {e}",
            recorded_path.display()
        )
    })?;
    let recorded = parse_md5sums(&recorded_text);

    let work = Scratch::dir(dest_dir, &pkg.name, "aptcheck").map_err(|e| e.to_string())?;
    let control = work.path.join("control");
    run(
        &tools.dpkg_deb,
        &[
            OsStr::new("--control"),
            deb.as_os_str(),
            control.as_os_str(),
        ],
    )?;
    let shipped_text = match fs::read(control.join("md5sums")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("it has no md5sums control member to compare with dpkg's record".into())
        }
        Err(e) => return Err(format!("reading its md5sums member: {e}")),
    };
    let shipped = parse_md5sums(&shipped_text);
    if shipped != recorded {
        let extra: Vec<_> = shipped.difference(&recorded).collect();
        let missing: Vec<_> = recorded.difference(&shipped).collect();
        let show = |v: &[&(String, String)]| {
            v.iter()
                .take(3)
                .map(|(sum, path)| format!("{sum} {path}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "its md5sums differ from dpkg's record {}: {} entr{} only in the .deb ({}), {} only in dpkg's record ({})",
            recorded_path.display(),
            extra.len(),
            if extra.len() == 1 { "y" } else { "ies" },
            show(&extra),
            missing.len(),
            show(&missing)
        ));
    }

    // The md5sums member may be intact while the data was changed: unpack and check.
    let data = work.path.join("data");
    run(
        &tools.dpkg_deb,
        &[OsStr::new("--extract"), deb.as_os_str(), data.as_os_str()],
    )?;
    let mut sums = recorded_text;
    if !sums.ends_with(b"\n") && !sums.is_empty() {
        sums.push(b'\n');
    }
    for conffile in conffiles(record) {
        if !conffile.obsolete && is_md5(&conffile.hash) {
            let rel = conffile.path.trim_start_matches('/');
            writeln!(sums, "{}  {rel}", conffile.hash).expect("write to a Vec");
        }
    }
    let list = work.path.join("check.md5sums");
    fs::write(&list, &sums).map_err(|e| format!("{}: {e}", list.display()))?;
    let out = Command::new(md5sum)
        .args([
            OsStr::new("--check"),
            OsStr::new("--quiet"),
            list.as_os_str(),
        ])
        .current_dir(&data)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", md5sum.display()))?;
    if !out.status.success() {
        return Err(format!(
            "its content does not match dpkg's record and conffile hashes: {}",
            tail(
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                5
            )
            .replace('\n', "; ")
        ));
    }
    Ok(())
}

/// An md5sums file as a set of (lower-case md5, path without a leading `/` or `./`).
fn parse_md5sums(text: &[u8]) -> BTreeSet<(String, String)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let (sum, path) = line.split_once(char::is_whitespace)?;
            let path = path.trim_start();
            let path = path.strip_prefix('*').unwrap_or(path);
            let path = path
                .strip_prefix("./")
                .unwrap_or(path)
                .trim_start_matches('/');
            (!sum.is_empty() && !path.is_empty())
                .then(|| (sum.to_ascii_lowercase(), path.to_string()))
        })
        .collect()
}

fn is_md5(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------
// Writing into the destination directory.

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file or directory in the destination directory, removed on drop unless
/// kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn name(dest_dir: &Path, stem: &str, what: &str) -> PathBuf {
        let n = SCRATCH_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
        dest_dir.join(format!(".{stem}.{what}.{}.{n}.tmp", std::process::id()))
    }

    fn file(dest_dir: &Path, stem: &str) -> Scratch {
        Scratch {
            path: Scratch::name(dest_dir, stem, "deb"),
            keep: false,
        }
    }

    fn dir(dest_dir: &Path, stem: &str, what: &str) -> io::Result<Scratch> {
        let path = Scratch::name(dest_dir, stem, what);
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Scratch { path, keep: false })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// Copy `src` to `dest` through a temporary file in `dest_dir`; its sha256 and size.
fn store_copy(
    src: &Path,
    dest_dir: &Path,
    dest: &Path,
) -> std::result::Result<(String, u64), String> {
    let mut input = File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut tmp = Scratch::file(dest_dir, &file_stem(dest));
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp.path)
        .map_err(|e| format!("{}: {e}", tmp.path.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading {}: {e}", src.display())),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("writing {}: {e}", tmp.path.display()))?;
        size += n as u64;
    }
    out.sync_all()
        .map_err(|e| format!("syncing {}: {e}", tmp.path.display()))?;
    drop(out);
    commit(&mut tmp, dest_dir, dest)?;
    Ok((hex(&hasher.finalize()), size))
}

/// Rename the finished temporary file into place and sync the directory.
fn commit(tmp: &mut Scratch, dest_dir: &Path, dest: &Path) -> std::result::Result<(), String> {
    fs::rename(&tmp.path, dest)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.path.display(), dest.display()))?;
    tmp.keep = true;
    File::open(dest_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dest_dir.display()))
}

fn file_stem(dest: &Path) -> String {
    dest.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// The dpkg status database.

/// One paragraph of a deb822 file, fields in file order with their raw bytes.
#[derive(Clone, Debug, Default)]
struct Record {
    fields: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The raw value: the first line without the blanks after the colon, continuation
    /// lines as written (leading blank included), joined by newlines.
    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value folded onto one line.
    fn value(&self, name: &str) -> Option<String> {
        self.raw(name).map(|v| {
            String::from_utf8_lossy(v)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    fn state(&self) -> String {
        self.value("status")
            .and_then(|s| s.rsplit(' ').next().map(str::to_string))
            .unwrap_or_else(|| "not-installed".into())
    }

    /// The record as a `DEBIAN/control` file: every field but the status-only ones.
    fn control_file(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.fields {
            if STATUS_ONLY_FIELDS.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            if !value.is_empty() && value[0] != b'\n' {
                out.push(b' ');
            }
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out
    }
}

/// Split a deb822 file into paragraphs, keeping each field's bytes; a bad line is
/// reported as (line number, message).
fn parse_records(bytes: &[u8]) -> std::result::Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut current: Option<Record> = None;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            records.extend(current.take());
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let Some((_, value)) = current.as_mut().and_then(|r| r.fields.last_mut()) else {
                return Err((index + 1, "continuation line outside any field".into()));
            };
            value.push(b'\n');
            value.extend_from_slice(line);
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err((index + 1, "expected \"Field: value\"".into()));
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim_end()
            .to_string();
        if name.is_empty() {
            return Err((index + 1, "empty field name".into()));
        }
        let mut value = &line[colon + 1..];
        while let [b' ' | b'\t', rest @ ..] = value {
            value = rest;
        }
        let mut value = value.to_vec();
        while value.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value.pop();
        }
        current
            .get_or_insert_with(Record::default)
            .fields
            .push((name, value));
    }
    records.extend(current);
    Ok(records)
}

fn read_records(path: &Path) -> Result<Vec<Record>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound && path.ends_with("status") => {
            return Err(Error::NoDpkgDatabase {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_records(&bytes).map_err(|(line, message)| Error::DpkgDatabase {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// The status record of `pkg` (the status file with dpkg's pending journal entries
/// applied), which must be installed in exactly that version.
fn find_record(host: &Host, pkg: &Installed) -> Result<Record> {
    let status = host.path(DPKG_STATUS);
    let matches = |r: &Record| {
        r.value("package").as_deref() == Some(pkg.name.as_str())
            && r.value("architecture").as_deref() == Some(pkg.arch.as_str())
    };
    let mut found = read_records(&status)?.into_iter().rfind(matches);
    let updates = host.path(DPKG_UPDATES);
    let mut journal: Vec<(u64, PathBuf)> = match fs::read_dir(&updates) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| name.parse().ok())??;
                Some((n, e.path()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    journal.sort();
    for (_, path) in journal {
        if let Some(r) = read_records(&path)?.into_iter().rfind(matches) {
            found = Some(r);
        }
    }
    let not_ok = |message: String| Error::Capture {
        package: pkg.label(),
        message,
        help: "the dpkg database changed since the plan was made; plan again".into(),
    };
    let Some(record) = found else {
        return Err(not_ok(format!(
            "no such package in the dpkg database {}",
            status.display()
        )));
    };
    let state = record.state();
    if matches!(state.as_str(), "not-installed" | "config-files") {
        return Err(not_ok(format!("it is not installed (dpkg state {state})")));
    }
    let version = record.value("version").unwrap_or_default();
    if version != pkg.version {
        return Err(not_ok(format!("dpkg has version {version} installed")));
    }
    Ok(record)
}

/// One entry of a status record's `Conffiles` field.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Conffile {
    path: String,
    hash: String,
    /// Marked `obsolete` or `remove-on-upgrade`: not part of the package any more.
    obsolete: bool,
}

fn conffiles(record: &Record) -> Vec<Conffile> {
    let Some(raw) = record.raw("conffiles") else {
        return Vec::new();
    };
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let path = words.next()?.to_string();
            let hash = words.next()?.to_string();
            let obsolete = words.any(|w| w == "obsolete" || w == "remove-on-upgrade");
            Some(Conffile {
                path,
                hash,
                obsolete,
            })
        })
        .collect()
}

/// The name of the package's files in dpkg's info directory: `<name>:<arch>` for a
/// `Multi-Arch: same` package in a multiarch database, else `<name>`.
fn info_prefix(host: &Host, record: &Record, pkg: &Installed) -> String {
    let qualified = format!("{}:{}", pkg.name, pkg.arch);
    let same = record.value("multi-arch").as_deref() == Some("same");
    if same && fs::symlink_metadata(host.path(DPKG_INFO).join(format!("{qualified}.list"))).is_ok()
    {
        qualified
    } else {
        pkg.name.clone()
    }
}

/// The package's control files in dpkg's info directory (as `dpkg-query
/// --control-path` lists them): `<prefix>.<type>` for every type but `list` and
/// `conffiles`, sorted by type.
fn control_files(host: &Host, prefix: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(host.path(DPKG_INFO))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((owner, kind)) = name.rsplit_once('.') else {
            continue;
        };
        if owner == prefix && !kind.is_empty() && kind != "list" && kind != "conffiles" {
            out.push((kind.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `/var/lib/dpkg/diversions`: groups of three lines (diverted path, where it was
/// diverted to, the diverting package or `:` for the administrator), by diverted path.
fn read_diversions(
    host: &Host,
) -> std::result::Result<HashMap<PathBuf, (PathBuf, String)>, String> {
    let path = host.path(DPKG_DIVERSIONS);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    parse_diversions(&bytes).map_err(|why| format!("{}: {why}", path.display()))
}

fn parse_diversions(
    bytes: &[u8],
) -> std::result::Result<HashMap<PathBuf, (PathBuf, String)>, String> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.len() % 3 != 0 {
        return Err(format!(
            "{} lines, not groups of three (path, diverted to, package)",
            lines.len()
        ));
    }
    Ok(lines
        .chunks(3)
        .map(|group| {
            (
                PathBuf::from(OsStr::from_bytes(group[0])),
                (
                    PathBuf::from(OsStr::from_bytes(group[1])),
                    String::from_utf8_lossy(group[2]).into_owned(),
                ),
            )
        })
        .collect())
}

// ---------------------------------------------------------------------------------
// Paths inside the host root.

/// The real path of the absolute host path `path`, every symlink on the way resolved
/// inside the host root (an absolute link target means the root's `/`); the last
/// component is followed only if `follow_last`. `..` never leaves the root.
fn resolve_in_root(host: &Host, path: &Path, follow_last: bool) -> PathBuf {
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        resolved.push(c);
        if pending.is_empty() && !follow_last {
            break;
        }
        let real = host.path(join_components(&resolved));
        let Ok(target) = fs::read_link(&real) else {
            continue;
        };
        hops += 1;
        if hops > 40 {
            // A loop: give up resolving; reading the path fails later with ELOOP.
            break;
        }
        resolved.pop();
        if target.is_absolute() {
            resolved.clear();
        }
        push_components(&mut pending, &target);
    }
    host.path(join_components(&resolved))
}

/// Push the components of `path` onto the stack `pending` (first component on top).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(s) => pending.push(s.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

fn join_components(components: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(components);
    p
}

/// Resolves parents once per directory.
struct RootResolver<'a> {
    host: &'a Host,
    parents: HashMap<PathBuf, PathBuf>,
}

impl RootResolver<'_> {
    /// The real path of `path`, its last component not followed.
    fn entry(&mut self, path: &Path) -> PathBuf {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return self.host.path(path);
        };
        let host = self.host;
        self.parents
            .entry(parent.to_path_buf())
            .or_insert_with(|| resolve_in_root(host, parent, true))
            .join(name)
    }
}

// ---------------------------------------------------------------------------------
// Rebuilding from the dpkg database.

/// One listed path to put into the package.
struct Entry {
    /// The path in the package, e.g. `/opt/tyk-gateway/tyk`.
    listed: PathBuf,
    /// The real path to copy it from.
    source: PathBuf,
    /// Its metadata (not following a symlink, unless `as_dir`).
    meta: fs::Metadata,
    /// A symlink to a directory that listed paths go through: packed as a directory.
    as_dir: bool,
}

struct RebuildPlan {
    prefix: String,
    entries: Vec<Entry>,
    /// The `conffiles` control file's lines.
    conffiles: Vec<String>,
}

/// What a rebuild would pack, or every reason it cannot be done.
fn plan_rebuild(
    host: &Host,
    record: &Record,
    pkg: &Installed,
) -> std::result::Result<RebuildPlan, Vec<String>> {
    let state = record.state();
    if !COMPLETE_STATES.contains(&state.as_str()) {
        return Err(vec![format!(
            "dpkg state is {state}, so its files may be incomplete (finish dpkg's work first: dpkg --configure -a)"
        )]);
    }
    let prefix = info_prefix(host, record, pkg);
    let list_path = host.path(DPKG_INFO).join(format!("{prefix}.list"));
    let list = match fs::read(&list_path) {
        Ok(l) => l,
        Err(e) => return Err(vec![format!("no file list: {}: {e}", list_path.display())]),
    };
    let mut reasons = Vec::new();
    let diversions = read_diversions(host).unwrap_or_else(|why| {
        reasons.push(why);
        HashMap::new()
    });
    let conffiles = conffiles(record);
    let conffile = |p: &Path| {
        let text = p.to_string_lossy();
        conffiles.iter().find(|c| c.path == text).cloned()
    };

    let mut listed: Vec<PathBuf> = Vec::new();
    for line in list.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"/." || line == b"/" {
            continue;
        }
        let path = PathBuf::from(OsStr::from_bytes(line));
        let clean = path.is_absolute()
            && path
                .components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            reasons.push(format!(
                "{} lists {:?}, not a clean absolute path",
                list_path.display(),
                path
            ));
            continue;
        }
        listed.push(path);
    }
    let all: BTreeSet<&[u8]> = listed.iter().map(|p| p.as_os_str().as_bytes()).collect();
    let has_children = |p: &Path| {
        let mut prefix = p.as_os_str().as_bytes().to_vec();
        prefix.push(b'/');
        all.range(prefix.as_slice()..)
            .next()
            .is_some_and(|q| q.starts_with(&prefix))
    };

    let mut resolver = RootResolver {
        host,
        parents: HashMap::new(),
    };
    let mut entries = Vec::new();
    let mut present_conffiles = BTreeSet::new();
    for path in &listed {
        let cf = conffile(path);
        if cf.as_ref().is_some_and(|c| c.obsolete) {
            tracing::debug!(
                "{}: obsolete conffile {} left out",
                pkg.label(),
                path.display()
            );
            continue;
        }
        let logical = match diversions.get(path) {
            Some((to, by)) if by != &pkg.name => to.clone(),
            _ => path.clone(),
        };
        let source = resolver.entry(&logical);
        let meta = match fs::symlink_metadata(&source) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if cf.is_some() {
                    tracing::info!(
                        "{}: conffile {} was deleted on this host; the rebuilt package leaves it out, as dpkg-repack does",
                        pkg.label(),
                        path.display()
                    );
                } else {
                    reasons.push(format!(
                        "{} is missing on disk ({})",
                        path.display(),
                        source.display()
                    ));
                }
                continue;
            }
            Err(e) => {
                reasons.push(format!("{}: {e}", source.display()));
                continue;
            }
        };
        let mut entry = Entry {
            listed: path.clone(),
            source,
            meta,
            as_dir: false,
        };
        if entry.meta.file_type().is_symlink() && has_children(path) {
            // A symlink to a directory the package's files go through (a merged /usr,
            // a directory moved aside): packed as the directory, as dpkg-repack does.
            let target = resolve_in_root(host, &logical, true);
            match fs::metadata(&target) {
                Ok(m) if m.is_dir() => {
                    entry.meta = m;
                    entry.as_dir = true;
                }
                _ => {
                    reasons.push(format!(
                        "{} is a symlink to something other than a directory, yet the package has files below it",
                        path.display()
                    ));
                    continue;
                }
            }
        }
        let ft = entry.meta.file_type();
        if ft.is_socket() {
            reasons.push(format!(
                "{} is a socket, which a package cannot hold",
                path.display()
            ));
            continue;
        }
        if let Some(c) = cf {
            if ft.is_file() || ft.is_symlink() {
                present_conffiles.insert(c.path);
            }
        }
        entries.push(entry);
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    Ok(RebuildPlan {
        prefix,
        entries,
        conffiles: conffiles
            .iter()
            .filter(|c| present_conffiles.contains(&c.path))
            .map(|c| c.path.clone())
            .collect(),
    })
}

/// Rebuild the package into `dest`; its sha256 and size.
fn rebuild(
    tools: &Tools,
    host: &Host,
    record: &Record,
    pkg: &Installed,
    dest_dir: &Path,
    dest: &Path,
) -> std::result::Result<(String, u64), String> {
    let plan = plan_rebuild(host, record, pkg).map_err(|reasons| reasons.join("; "))?;
    let staging = Scratch::dir(dest_dir, &pkg.name, "stage")
        .map_err(|e| format!("staging directory in {}: {e}", dest_dir.display()))?;
    let tree = staging.path.join("tree");
    stage_files(&plan, &tree).map_err(|e| e.to_string())?;
    stage_control(host, record, &plan, &tree).map_err(|e| e.to_string())?;

    let mut tmp = Scratch::file(dest_dir, &file_stem(dest));
    let mut args: Vec<&OsStr> = REBUILD_COMPRESSION.iter().map(OsStr::new).collect();
    args.extend([
        OsStr::new("--build"),
        tree.as_os_str(),
        tmp.path.as_os_str(),
    ]);
    run(&tools.dpkg_deb, &args)?;
    drop(staging);
    check_fields(tools, &tmp.path, pkg)
        .map_err(|why| format!("dpkg-deb built a package that does not match: {why}"))?;
    File::open(&tmp.path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("syncing {}: {e}", tmp.path.display()))?;
    let (sha256, size) = crate::tools::sha256_file(&tmp.path)
        .map(|(size, sha)| (sha, size))
        .map_err(|e| format!("{}: {e}", tmp.path.display()))?;
    commit(&mut tmp, dest_dir, dest)?;
    Ok((sha256, size))
}

/// Copy the planned entries into `tree` with their metadata.
fn stage_files(plan: &RebuildPlan, tree: &Path) -> std::result::Result<(), PathError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(tree)
        .map_err(PathError::at(tree))?;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755)).map_err(PathError::at(tree))?;
    std::os::unix::fs::lchown(tree, Some(0), Some(0)).map_err(PathError::at(tree))?;
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, &fs::Metadata)> = Vec::new();
    let mut made: HashSet<PathBuf> = HashSet::new();
    for entry in &plan.entries {
        let rel = entry.listed.strip_prefix("/").unwrap_or(&entry.listed);
        ensure_parents(tree, rel, &mut made)?;
        let dst = tree.join(rel);
        let meta = &entry.meta;
        let ft = meta.file_type();
        if entry.as_dir || ft.is_dir() {
            match fs::symlink_metadata(&dst) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(PathError::new(
                        &dst,
                        io::Error::other("listed both as a directory and as something else"),
                    ))
                }
                Err(_) => fs::create_dir(&dst).map_err(PathError::at(&dst))?,
            }
            apply_owner_mode(&dst, meta)?;
            dirs.push((dst, meta));
            continue;
        }
        if fs::symlink_metadata(&dst).is_ok() {
            // Listed twice: the first copy stands.
            continue;
        }
        if ft.is_symlink() {
            let target = fs::read_link(&entry.source).map_err(PathError::at(&entry.source))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(PathError::at(&dst))?;
            std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))
                .map_err(PathError::at(&dst))?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = linked.get(&key).filter(|_| meta.nlink() > 1) {
                fs::hard_link(first, &dst).map_err(PathError::at(&dst))?;
                continue;
            }
            copy_file(&entry.source, &dst)?;
            apply_owner_mode(&dst, meta)?;
            if meta.nlink() > 1 {
                linked.insert(key, dst.clone());
            }
        } else {
            // A FIFO or a device node.
            let c = cstring(&dst)?;
            // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
            let rc = unsafe {
                libc::mknod(
                    c.as_ptr(),
                    meta.mode() as libc::mode_t,
                    meta.rdev() as libc::dev_t,
                )
            };
            if rc != 0 {
                return Err(PathError::new(&dst, io::Error::last_os_error()));
            }
            apply_owner_mode(&dst, meta)?;
        }
        set_times(&dst, meta)?;
    }
    // Directory times last, once nothing more is put into them.
    for (dst, meta) in dirs.iter().rev() {
        set_times(dst, meta)?;
    }
    Ok(())
}

/// Make sure every parent of `rel` in `tree` is a real directory (created 0755 root if
/// not listed), so that nothing is ever written through a symlink of the package.
fn ensure_parents(
    tree: &Path,
    rel: &Path,
    made: &mut HashSet<PathBuf>,
) -> std::result::Result<(), PathError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || made.contains(parent) {
        return Ok(());
    }
    let mut partial = PathBuf::new();
    for component in parent.components() {
        partial.push(component);
        if made.contains(&partial) {
            continue;
        }
        let real = tree.join(&partial);
        match fs::symlink_metadata(&real) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(PathError::new(
                    &real,
                    io::Error::other(
                        "the package lists files below this, which is not a directory",
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&real)
                    .map_err(PathError::at(&real))?;
                fs::set_permissions(&real, fs::Permissions::from_mode(0o755))
                    .map_err(PathError::at(&real))?;
            }
            Err(e) => return Err(PathError::new(&real, e)),
        }
        made.insert(partial.clone());
    }
    Ok(())
}

/// Write `DEBIAN/` into `tree`: the control file, dpkg's copies of the other control
/// members, and `conffiles`.
fn stage_control(
    host: &Host,
    record: &Record,
    plan: &RebuildPlan,
    tree: &Path,
) -> std::result::Result<(), PathError> {
    let control_dir = tree.join("DEBIAN");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&control_dir)
        .map_err(PathError::at(&control_dir))?;
    fs::set_permissions(&control_dir, fs::Permissions::from_mode(0o755))
        .map_err(PathError::at(&control_dir))?;
    let info_dir = host.path(DPKG_INFO);
    for (kind, path) in control_files(host, &plan.prefix).map_err(PathError::at(&info_dir))? {
        let dst = control_dir.join(&kind);
        copy_file(&path, &dst)?;
        let meta = fs::metadata(&path).map_err(PathError::at(&path))?;
        std::os::unix::fs::lchown(&dst, Some(0), Some(0)).map_err(PathError::at(&dst))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(PathError::at(&dst))?;
    }
    let control = control_dir.join("control");
    write_file(&control, &record.control_file())?;
    if !plan.conffiles.is_empty() {
        let mut text = plan.conffiles.join("\n");
        text.push('\n');
        write_file(&control_dir.join("conffiles"), text.as_bytes())?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> std::result::Result<(), PathError> {
    fs::write(path, bytes).map_err(PathError::at(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(PathError::at(path))
}

fn copy_file(src: &Path, dst: &Path) -> std::result::Result<(), PathError> {
    let mut input = File::open(src).map_err(PathError::at(src))?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(PathError::at(dst))?;
    io::copy(&mut input, &mut output).map_err(|e| {
        PathError::new(
            dst,
            io::Error::new(e.kind(), format!("copying {}: {e}", src.display())),
        )
    })?;
    Ok(())
}

/// Owner, group and permission bits of `meta` on `path` (chmod after chown: chown
/// clears set-id bits).
fn apply_owner_mode(path: &Path, meta: &fs::Metadata) -> std::result::Result<(), PathError> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(PathError::at(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(PathError::at(path))
}

/// Access and modification times of `meta` on `path`, not following a symlink.
fn set_times(path: &Path, meta: &fs::Metadata) -> std::result::Result<(), PathError> {
    crate::tools::set_times_nofollow(
        path,
        Some((meta.atime(), meta.atime_nsec())),
        (meta.mtime(), meta.mtime_nsec()),
    )
    .map_err(|e| PathError::new(path, e))
}

fn cstring(path: &Path) -> std::result::Result<CString, PathError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        PathError::new(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"),
        )
    })
}

/// An I/O error and the path it happened on.
#[derive(Debug)]
struct PathError {
    path: PathBuf,
    error: io::Error,
}

impl PathError {
    fn new(path: &Path, error: io::Error) -> PathError {
        PathError {
            path: path.to_path_buf(),
            error,
        }
    }

    fn at(path: &Path) -> impl Fn(io::Error) -> PathError + '_ {
        move |error| PathError::new(path, error)
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

// ---------------------------------------------------------------------------------
// External programs.

/// Run `program args...` (C locale, no `SOURCE_DATE_EPOCH`, which would make dpkg-deb
/// clamp file times); a failure is described with the end of its output.
fn run(program: &Path, args: &[&OsStr]) -> std::result::Result<Output, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LC_ALL", "C")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    let shown = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!("running {shown}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        let status = match out.status.code() {
            Some(code) => format!("exit status {code}"),
            None => out.status.to_string(),
        };
        return Err(format!(
            "`{shown}` failed ({status}): {}",
            tail(
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout)
                ),
                10
            )
            .replace('\n', "; ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        fs::create_dir_all(host.path(DPKG_INFO)).unwrap();
        fs::create_dir_all(host.path(DPKG_UPDATES)).unwrap();
        (dir, host)
    }

    fn pkg(name: &str, version: &str, arch: &str) -> Installed {
        Installed {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
        }
    }

    const STATUS: &str = "\
Package: tyk-gateway
Status: install ok installed
Priority: optional
Maintainer: Tyk <ops@example.invalid>
Architecture: amd64
Version: 1:5.3.0
Config-Version: 1:5.3.0
Conffiles:
 /opt/tyk-gateway/tyk.conf 0123456789abcdef0123456789abcdef
 /opt/tyk-gateway/old.conf 0123456789abcdef0123456789abcdef obsolete
 /opt/tyk-gateway/gone.conf 0123456789abcdef0123456789abcdef
Description: Tyk API gateway
 Long text.
 .
 More text.
X-Custom: kept

Package: libdot2.0
Status: install ok installed
Architecture: all
Version: 2
";

    #[test]
    fn control_file_is_the_status_record_without_status_only_fields() {
        let records = parse_records(STATUS.as_bytes()).unwrap();
        assert_eq!(records.len(), 2);
        let control = String::from_utf8(records[0].control_file()).unwrap();
        assert_eq!(
            control,
            "Package: tyk-gateway\nPriority: optional\nMaintainer: Tyk <ops@example.invalid>\nArchitecture: amd64\nVersion: 1:5.3.0\nDescription: Tyk API gateway\n Long text.\n .\n More text.\nX-Custom: kept\n"
        );
        let cf = conffiles(&records[0]);
        assert_eq!(cf.len(), 3);
        assert_eq!(cf[0].path, "/opt/tyk-gateway/tyk.conf");
        assert!(!cf[0].obsolete && cf[1].obsolete && !cf[2].obsolete);
        assert_eq!(records[1].value("package").as_deref(), Some("libdot2.0"));
        assert!(parse_records(b"Package: a\nno colon\n").is_err());
        assert!(parse_records(b" continuation first\n").is_err());
    }

    #[test]
    fn records_come_from_status_then_journal_and_must_match_the_version() {
        let (_dir, host) = root();
        fs::write(host.path(DPKG_STATUS), STATUS).unwrap();
        let gw = pkg("tyk-gateway", "1:5.3.0", "amd64");
        assert!(find_record(&host, &gw).is_ok());
        let err = find_record(&host, &pkg("tyk-gateway", "5.3.0", "amd64"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dpkg has version 1:5.3.0 installed"), "{err}");
        assert!(find_record(&host, &pkg("tyk-gateway", "1:5.3.0", "arm64")).is_err());
        // A pending journal entry wins over the status file.
        fs::write(
            host.path(DPKG_UPDATES).join("0001"),
            "Package: tyk-gateway\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:5.4.0\n",
        )
        .unwrap();
        assert!(find_record(&host, &gw).is_err());
        assert!(find_record(&host, &pkg("tyk-gateway", "1:5.4.0", "amd64")).is_ok());
        fs::remove_file(host.path(DPKG_STATUS)).unwrap();
        assert!(matches!(
            find_record(&host, &gw),
            Err(Error::NoDpkgDatabase { .. })
        ));
    }

    #[test]
    fn md5sums_compare_as_sets_of_sum_and_path() {
        let a = parse_md5sums(b"0123456789ABCDEF0123456789abcdef  opt/x/a\nfedcba9876543210fedcba9876543210  opt/x/b c\n");
        let b = parse_md5sums(b"fedcba9876543210fedcba9876543210 */opt/x/b c\n0123456789abcdef0123456789abcdef  ./opt/x/a");
        assert_eq!(a, b);
        assert!(a.contains(&(
            "fedcba9876543210fedcba9876543210".into(),
            "opt/x/b c".into()
        )));
        assert_ne!(
            a,
            parse_md5sums(b"0123456789abcdef0123456789abcdef  opt/x/a\n")
        );
    }

    #[test]
    fn diversions_are_groups_of_three_lines() {
        let d = parse_diversions(
            b"/usr/bin/tyk\n/usr/bin/tyk.distrib\nlocal-tools\n/etc/x\n/etc/x.orig\n:\n",
        )
        .unwrap();
        assert_eq!(
            d[Path::new("/usr/bin/tyk")],
            (
                PathBuf::from("/usr/bin/tyk.distrib"),
                "local-tools".to_string()
            )
        );
        assert_eq!(d[Path::new("/etc/x")].1, ":");
        assert!(parse_diversions(b"/a\n/b\n").is_err());
        assert!(parse_diversions(b"").unwrap().is_empty());
    }

    #[test]
    fn file_names_follow_apt() {
        assert_eq!(
            deb_file_name("tyk-gateway", "1:5.3.0-1", "amd64"),
            "tyk-gateway_1%3a5.3.0-1_amd64.deb"
        );
        assert_eq!(
            serde_json::to_string(&CaptureSource::BundlePrevious).unwrap(),
            "\"bundle-previous\""
        );
        assert_eq!(
            serde_json::from_str::<CaptureSource>("\"apt-cache\"").unwrap(),
            CaptureSource::AptCache
        );
        assert_eq!(CaptureSource::Rebuilt.to_string(), "rebuilt");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (_dir, host) = root();
        fs::create_dir_all(host.path("/usr/lib/tyk")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", host.path("/lib")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", host.path("/usr/lib/tyk/up"))
            .unwrap();
        assert_eq!(
            resolve_in_root(&host, Path::new("/lib/tyk/x"), false),
            host.path("/usr/lib/tyk/x")
        );
        // `..` and absolute targets stay inside the root.
        assert_eq!(
            resolve_in_root(&host, Path::new("/lib/tyk/up"), true),
            host.path("/etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&host, Path::new("/lib/tyk/up"), false),
            host.path("/usr/lib/tyk/up")
        );
        std::os::unix::fs::symlink("loop", host.path("/loop")).unwrap();
        let _ = resolve_in_root(&host, Path::new("/loop/x"), true);
    }

    #[test]
    fn control_files_are_those_of_the_package_only() {
        let (_dir, host) = root();
        for name in [
            "tyk.postinst",
            "tyk.list",
            "tyk.conffiles",
            "tyk.md5sums",
            "tyk.postinst.dpkg-new",
            "tyk.extra.postinst",
            "tyk-pump.prerm",
            "format",
        ] {
            fs::write(host.path(DPKG_INFO).join(name), "x").unwrap();
        }
        let kinds: Vec<String> = control_files(&host, "tyk")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kinds, ["md5sums", "postinst"]);
    }

    #[test]
    fn rebuild_plan_reports_missing_files_skips_deleted_conffiles_and_follows_diversions() {
        let (_dir, host) = root();
        fs::write(host.path(DPKG_STATUS), STATUS).unwrap();
        let gw = pkg("tyk-gateway", "1:5.3.0", "amd64");
        fs::create_dir_all(host.path("/opt/tyk-gateway")).unwrap();
        fs::write(host.path("/opt/tyk-gateway/tyk.conf"), "{}").unwrap();
        fs::write(host.path("/opt/tyk-gateway/tyk.distrib"), "real binary").unwrap();
        fs::write(
            host.path(DPKG_INFO).join("tyk-gateway.list"),
            "/.\n/opt\n/opt/tyk-gateway\n/opt/tyk-gateway/tyk\n/opt/tyk-gateway/tyk.conf\n/opt/tyk-gateway/old.conf\n/opt/tyk-gateway/gone.conf\n/opt/tyk-gateway/README\n",
        )
        .unwrap();
        // Another package diverted the binary: its copy is the diverted-to file.
        fs::write(
            host.path(DPKG_DIVERSIONS),
            "/opt/tyk-gateway/tyk\n/opt/tyk-gateway/tyk.distrib\ntyk-wrapper\n",
        )
        .unwrap();
        let reasons = can_rebuild(&host, &gw).unwrap_err();
        assert!(
            reasons.contains("/opt/tyk-gateway/README is missing on disk"),
            "{reasons}"
        );
        assert!(!reasons.contains("gone.conf"), "{reasons}");
        assert!(!reasons.contains("/opt/tyk-gateway/tyk "), "{reasons}");

        fs::write(host.path("/opt/tyk-gateway/README"), "read me").unwrap();
        can_rebuild(&host, &gw).unwrap();
        let record = find_record(&host, &gw).unwrap();
        let plan = plan_rebuild(&host, &record, &gw).unwrap_or_else(|r| panic!("{r:?}"));
        let tyk = plan
            .entries
            .iter()
            .find(|e| e.listed == Path::new("/opt/tyk-gateway/tyk"))
            .unwrap();
        assert_eq!(tyk.source, host.path("/opt/tyk-gateway/tyk.distrib"));
        assert!(!plan.entries.iter().any(|e| e.listed.ends_with("old.conf")));
        assert_eq!(plan.conffiles, ["/opt/tyk-gateway/tyk.conf"]);

        // A diversion by the package itself does not move the package's own file.
        fs::write(
            host.path(DPKG_DIVERSIONS),
            "/opt/tyk-gateway/tyk\n/opt/tyk-gateway/tyk.distrib\ntyk-gateway\n",
        )
        .unwrap();
        assert!(can_rebuild(&host, &gw)
            .unwrap_err()
            .contains("/opt/tyk-gateway/tyk is missing on disk"));

        // Not installed in that version, no list: reported, not panicking.
        assert!(can_rebuild(&host, &pkg("tyk-gateway", "2", "amd64")).is_err());
        fs::remove_file(host.path(DPKG_INFO).join("tyk-gateway.list")).unwrap();
        assert!(can_rebuild(&host, &gw)
            .unwrap_err()
            .contains("no file list"));
    }

    #[test]
    fn half_configured_packages_are_not_rebuilt() {
        let (_dir, host) = root();
        fs::write(
            host.path(DPKG_STATUS),
            "Package: a\nStatus: install ok half-configured\nArchitecture: all\nVersion: 1\n",
        )
        .unwrap();
        fs::write(host.path(DPKG_INFO).join("a.list"), "/.\n").unwrap();
        let why = can_rebuild(&host, &pkg("a", "1", "all")).unwrap_err();
        assert!(why.contains("half-configured"), "{why}");
    }
}
