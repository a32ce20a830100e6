//! Backup sets: `/var/backups/ferry/<YYYYMMDDTHHMMSSZ>-<name>/` (or `--dest DIR`), one
//! directory per backup, mode 0700, holding the copies under `files/` and `backup.json`.
//!
//! `backup.json` is written last, atomically, and only by [`BackupSet::finish`]; a set
//! without it is incomplete and is never restored from. Restoring checks every item's
//! sha256 against `backup.json` before it writes anything to the host.
//!
//! Databases are dumped into the set beside `files/`: `redis.rdb`, `postgres.dump`,
//! `mongodb.archive` (a second source of the same kind gets `-2`, and so on).
//!
//! This module never deletes a complete backup set and never writes outside the set
//! while backing up; every host path goes through [`Host::path`]. A set that fails
//! part-way is removed by [`create`], which made it.

mod create;
mod files;
pub mod mongodb;
pub mod postgres;
pub mod redis;
mod restore;
pub mod sources;

pub use create::{create, estimate, measure_database, CreateRequest, Estimate};
pub use files::FileItem;
pub use restore::{restore_set, RestoreOptions, RestoreReport, Restored};

use crate::host::Host;
use crate::state::write_atomic;
use crate::{Error, Result};
use ferry_bundle::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Where backup sets live on the host unless `--dest` says otherwise.
pub const BACKUP_DIR: &str = "/var/backups/ferry";
/// The `format` of `backup.json`.
pub const BACKUP_FORMAT: &str = "ferry-backup/1";
/// The manifest file of a set; its presence marks the set complete.
pub const MANIFEST_NAME: &str = "backup.json";
/// The directory of a set that holds file copies, laid out as under `/`.
pub const FILES_DIR: &str = "files";

/// `backup.json`: what a complete set holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupManifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// The name given to [`BackupSet::begin`].
    pub name: String,
    /// The set's directory name, `<YYYYMMDDTHHMMSSZ>-<name>`.
    pub id: String,
    /// When the set was begun.
    pub started: Timestamp,
    /// When `backup.json` was written.
    pub finished: Timestamp,
    /// The host root the items were taken from (`/` on a real host).
    pub root: PathBuf,
    /// Every item, in the order it was added.
    pub items: Vec<Item>,
    /// Glob patterns that matched nothing, recorded rather than failed.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Always true in a written manifest (an incomplete set has none).
    pub complete: bool,
}

/// One item of a set, tagged by `kind`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Item {
    /// A file, directory or symlink copied under `files/`.
    Files(FileItem),
    /// A Redis snapshot (RDB).
    Redis(DatabaseItem),
    /// A `pg_dump --format=custom` archive.
    Postgres(DatabaseItem),
    /// A `mongodump --archive --gzip` archive.
    Mongodb(DatabaseItem),
}

impl Item {
    /// Bytes this item holds in the set.
    pub fn size(&self) -> u64 {
        match self {
            Item::Files(f) => f.size,
            Item::Redis(d) | Item::Postgres(d) | Item::Mongodb(d) => d.size,
        }
    }

    /// `files`, `redis`, `postgres` or `mongodb`.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Files(_) => "files",
            Item::Redis(_) => "redis",
            Item::Postgres(_) => "postgres",
            Item::Mongodb(_) => "mongodb",
        }
    }
}

/// A database dump in a set. Never holds a password: `source` is the connection as
/// `display()` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatabaseItem {
    /// The dump's file name inside the set (`redis.rdb`, `postgres.dump`, ...).
    pub path_in_set: String,
    /// The component configuration the connection was read from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Where it was taken from, without secrets.
    pub source: String,
    /// Bytes.
    pub size: u64,
    /// sha256 of the dump.
    pub sha256: String,
    /// The program that took it, with its version.
    pub tool: String,
    /// The server's version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// How it was taken (`config-dir-copy`, `replication`, `pg_dump`, ...).
    pub method: String,
    /// Checks the dump passed.
    #[serde(default)]
    pub checks: Vec<String>,
    /// When the dump began.
    pub started: Timestamp,
    /// When the dump was checked and complete.
    pub finished: Timestamp,
}

/// A requested path that produced no item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    /// The pattern as given.
    pub pattern: String,
    /// Why: `matched nothing`.
    pub reason: String,
}

/// A backup set being written. Dropping it without [`BackupSet::finish`] leaves the
/// directory without `backup.json`: listed as INCOMPLETE, never restored from.
#[derive(Debug)]
pub struct BackupSet {
    host: Host,
    dir: PathBuf,
    name: String,
    id: String,
    started: Timestamp,
    items: Vec<Item>,
    skipped: Vec<Skipped>,
    sources: BTreeSet<String>,
    /// Directories created inside the set, fsynced before `backup.json` is written.
    created_dirs: Vec<PathBuf>,
}

impl BackupSet {
    /// Create `<dest or /var/backups/ferry>/<YYYYMMDDTHHMMSSZ>-<name>/` (mode 0700).
    /// Fails if it already exists.
    pub fn begin(host: &Host, dest: Option<&Path>, name: &str, now: Timestamp) -> Result<Self> {
        let base = backups_dir(host, dest);
        check_name(name, &base)?;
        let id = format!("{}-{name}", compact_stamp(now));
        let dir = base.join(&id);
        create_private_dir_all(&base)?;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Backup {
                    path: dir,
                    message: "a backup set with this id already exists".into(),
                    help: "wait a second and try again, or choose another name; existing sets are never overwritten".into(),
                })
            }
            Err(e) => return Err(Error::io(&dir, e)),
        }
        // The umask cannot widen 0700, but an inherited default ACL or odd umask could
        // narrow it oddly; set it explicitly.
        files::chmod(&dir, 0o700).map_err(|e| Error::io(&dir, e))?;
        Ok(BackupSet {
            host: host.clone(),
            dir: dir.clone(),
            name: name.to_string(),
            id,
            started: now,
            items: Vec::new(),
            skipped: Vec::new(),
            sources: BTreeSet::new(),
            created_dirs: vec![dir],
        })
    }

    /// The set's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set's id (its directory name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Copy host files, directories (recursively) and symlinks (as links) into
    /// `files/`, keeping content, mode, owner, group and mtime. `paths` are absolute
    /// host paths or glob patterns (`*`, `?` within one path segment); a missing path
    /// is an error, a pattern that matches nothing is recorded in `skipped`.
    pub fn add_files(&mut self, paths: &[String]) -> Result<()> {
        for requested in paths {
            let sources = if files::is_glob(requested) {
                let found = files::expand_glob(&self.host, requested)?;
                if found.is_empty() {
                    self.skipped.push(Skipped {
                        pattern: requested.clone(),
                        reason: "matched nothing".into(),
                    });
                }
                found
            } else {
                vec![files::normalize(requested)?]
            };
            for source in sources {
                let mut out = Vec::new();
                files::copy_tree(
                    &self.host,
                    &self.dir,
                    &source,
                    &mut self.sources,
                    &mut self.created_dirs,
                    &mut out,
                )?;
                self.items.extend(out.into_iter().map(Item::Files));
            }
        }
        Ok(())
    }

    /// Record something requested that this set does not hold, with why.
    pub fn skip(&mut self, skipped: Skipped) {
        self.skipped.push(skipped);
    }

    /// Copy each of `paths` that exists on the host (as [`BackupSet::add_files`]);
    /// absent ones are recorded in `skipped` as not present (a component being
    /// installed fresh has no configuration yet).
    pub fn add_present_files(&mut self, paths: &[String]) -> Result<()> {
        for p in paths {
            let normalized = files::normalize(p)?;
            if self.host.path(&normalized).symlink_metadata().is_ok() {
                self.add_files(std::slice::from_ref(p))?;
            } else {
                self.skipped.push(Skipped {
                    pattern: p.clone(),
                    reason: "not present on this host".into(),
                });
            }
        }
        Ok(())
    }

    /// Dump a database into the set (`redis.rdb`, `postgres.dump`, `mongodb.archive`)
    /// and record it. The same source twice (two components sharing one Redis) is
    /// dumped once.
    pub fn add_database(
        &mut self,
        db: &sources::Database,
        config: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let source = db.display();
        if !self.sources.insert(format!("{}:{source}", db.kind())) {
            return Ok(());
        }
        let (stem, ext) = match db {
            sources::Database::Redis(..) => ("redis", "rdb"),
            sources::Database::Postgres(_) => ("postgres", "dump"),
            sources::Database::Mongodb(_) => ("mongodb", "archive"),
        };
        let taken = self.items.iter().filter(|i| i.kind() == stem).count();
        let file = match taken {
            0 => format!("{stem}.{ext}"),
            n => format!("{stem}-{}.{ext}", n + 1),
        };
        let out = self.dir.join(&file);
        let started = self.host.now();
        let mut item = DatabaseItem {
            path_in_set: file,
            config: config.map(String::from),
            source,
            size: 0,
            sha256: String::new(),
            tool: String::new(),
            server_version: None,
            method: String::new(),
            checks: Vec::new(),
            started,
            finished: started,
        };
        let mut item = match db {
            sources::Database::Redis(conn, mode) => {
                let r = redis::backup(&self.host, conn, *mode, &out, timeout)?;
                item.size = r.size;
                item.sha256 = r.sha256;
                item.tool = format!("ferry-install {}", env!("CARGO_PKG_VERSION"));
                item.server_version = Some(r.server_version);
                item.method = serde_json::to_value(r.method)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                item.checks = r.checks;
                item.checks
                    .insert(0, format!("RDB version {}", r.rdb_version));
                Item::Redis(item)
            }
            sources::Database::Postgres(conn) => {
                let r = postgres::backup(conn, &out)?;
                item.size = r.size;
                item.sha256 = r.sha256;
                item.tool = r.tool_version;
                item.server_version = r.server_version;
                item.method = "pg_dump --format=custom".into();
                item.checks = vec![format!("pg_restore --list: {} entries", r.toc_entries)];
                Item::Postgres(item)
            }
            sources::Database::Mongodb(conn) => {
                let r = mongodb::backup(conn, &out)?;
                item.size = r.size;
                item.sha256 = r.sha256;
                item.tool = r.tool_version;
                item.method = "mongodump --archive --gzip".into();
                item.checks = vec!["non-empty gzip archive".into()];
                Item::Mongodb(item)
            }
        };
        if let Item::Redis(d) | Item::Postgres(d) | Item::Mongodb(d) = &mut item {
            d.finished = self.host.now();
        }
        self.items.push(item);
        Ok(())
    }

    /// Bytes written into the set so far.
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(Item::size).sum()
    }

    /// Write `backup.json` last (temp, fsync, rename, fsync the directory) after
    /// syncing every directory of the set; from then on the set is complete.
    pub fn finish(self) -> Result<BackupManifest> {
        for dir in self.created_dirs.iter().rev() {
            files::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        let manifest = BackupManifest {
            format: BACKUP_FORMAT.into(),
            name: self.name,
            id: self.id,
            started: self.started,
            finished: self.host.now(),
            root: self.host.root().to_path_buf(),
            items: self.items,
            skipped: self.skipped,
            complete: true,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("backup manifest serializes");
        write_atomic(&self.dir.join(MANIFEST_NAME), &json)?;
        Ok(manifest)
    }
}

/// One set as `backup list` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SetSummary {
    /// Directory name.
    pub id: String,
    /// From `backup.json`, or the id without its time stamp for an incomplete set.
    pub name: String,
    /// The set's directory.
    pub path: PathBuf,
    /// `backup.json` is present, parses and says complete.
    pub complete: bool,
    /// Items in `backup.json`, or entries found under `files/` for an incomplete set.
    pub items: usize,
    /// Bytes of file content.
    pub size: u64,
    /// From `backup.json`.
    pub started: Option<Timestamp>,
    /// From `backup.json`.
    pub finished: Option<Timestamp>,
    /// Why an incomplete set is incomplete.
    pub problem: Option<String>,
}

/// Every set under the backups directory, sorted by id; a missing directory is none.
pub fn list_sets(host: &Host, dest: Option<&Path>) -> Result<Vec<SetSummary>> {
    let base = backups_dir(host, dest);
    let entries = match std::fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&base, e)),
    };
    let mut sets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&base, e))?;
        let file_type = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let id = entry.file_name().to_string_lossy().into_owned();
        if !file_type.is_dir() || id.starts_with('.') {
            continue;
        }
        sets.push(summarize(&entry.path(), id)?);
    }
    sets.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(sets)
}

fn summarize(dir: &Path, id: String) -> Result<SetSummary> {
    let problem = match read_manifest(dir) {
        Ok(m) => {
            let size = m.items.iter().map(Item::size).sum::<u64>();
            return Ok(SetSummary {
                id,
                name: m.name,
                path: dir.to_path_buf(),
                complete: true,
                items: m.items.len(),
                size,
                started: Some(m.started),
                finished: Some(m.finished),
                problem: None,
            });
        }
        Err(Error::Backup { message, .. }) => message,
        Err(e) => e.to_string(),
    };
    let (items, size) = files::count_tree(&dir.join(FILES_DIR)).map_err(|e| Error::io(dir, e))?;
    let name = id
        .split_once('-')
        .map_or(id.as_str(), |(_, n)| n)
        .to_string();
    Ok(SetSummary {
        id,
        name,
        path: dir.to_path_buf(),
        complete: false,
        items,
        size,
        started: None,
        finished: None,
        problem: Some(problem),
    })
}

/// Read and check a set's `backup.json`; a missing one means the set is incomplete.
pub fn read_manifest(set_dir: &Path) -> Result<BackupManifest> {
    let path = set_dir.join(MANIFEST_NAME);
    let bad = |message: String| {
        Error::Backup {
        path: path.clone(),
        message,
        help: "this set is incomplete or damaged; restore from another set (`ferry-install backup list`)".into(),
    }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                "no backup.json: the backup was interrupted before it finished".into(),
            ))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let m: BackupManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid backup.json: {e}")))?;
    if m.format != BACKUP_FORMAT {
        return Err(bad(format!(
            "format {:?}, expected {BACKUP_FORMAT:?}",
            m.format
        )));
    }
    if !m.complete {
        return Err(bad("backup.json says the set is not complete".into()));
    }
    Ok(m)
}

/// Put the files of a complete set back under the host root. Every selected item is
/// checked against `backup.json` (sha256, size, link target) and every destination for
/// conflicts first; on any failure nothing is written. `only` selects items by host
/// path (an item or anything under a directory named). Returns the restored host paths.
pub fn restore_files(host: &Host, set_dir: &Path, only: Option<&[String]>) -> Result<Vec<PathBuf>> {
    let manifest = read_manifest(set_dir)?;
    let all: Vec<&FileItem> = manifest
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Files(f) => Some(f),
            _ => None,
        })
        .collect();
    let selected: Vec<&FileItem> =
        match only {
            None => all,
            Some(only) => {
                let mut picked = Vec::new();
                for wanted in only {
                    let wanted = files::normalize(wanted)?;
                    let before = picked.len();
                    picked.extend(all.iter().copied().filter(|f| {
                        f.source == wanted || f.source.starts_with(&format!("{wanted}/"))
                    }));
                    if picked.len() == before {
                        return Err(Error::Backup {
                            path: set_dir.to_path_buf(),
                            message: format!("{wanted} is not in backup set {}", manifest.id),
                            help: "see the set's backup.json for the paths it holds".into(),
                        });
                    }
                }
                picked.sort_by(|a, b| a.source.cmp(&b.source));
                picked.dedup_by(|a, b| a.source == b.source);
                picked
            }
        };
    files::restore(host, set_dir, &selected)
}

fn backups_dir(host: &Host, dest: Option<&Path>) -> PathBuf {
    dest.map_or_else(|| host.path(BACKUP_DIR), Path::to_path_buf)
}

/// `2026-11-21T00:00:00Z` → `20261121T000000Z`: the stamp that starts the ids of backup
/// sets and runs.
pub(crate) fn compact_stamp(t: Timestamp) -> String {
    t.to_string().replace(['-', ':'], "")
}

fn check_name(name: &str, base: &Path) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._+~-".contains(&c));
    if ok {
        return Ok(());
    }
    Err(Error::Backup {
        path: base.to_path_buf(),
        message: format!("invalid backup name {name:?}"),
        help: "use 1 to 100 characters from A-Z a-z 0-9 . _ + ~ - (not starting with a dot)".into(),
    })
}

/// `create_dir_all` where every directory it creates is 0700.
pub(crate) fn create_private_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_compact_utc() {
        let t = Timestamp::parse("2026-11-21T03:04:05Z").unwrap();
        assert_eq!(compact_stamp(t), "20261121T030405Z");
    }

    #[test]
    fn names_are_single_safe_segments() {
        for good in ["pre-apply", "tyk_5.2.5", "a+b~c"] {
            assert!(check_name(good, Path::new("/b")).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(101)] {
            assert!(check_name(bad, Path::new("/b")).is_err(), "{bad}");
        }
    }
}
