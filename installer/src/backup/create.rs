//! `backup create` and the backup phase of `apply`: what to back up (from a bundle's
//! steps and backups, and `installer.toml`), whether it fits, and taking it.

use super::sources::{self, Database};
use super::{files, BackupManifest, BackupSet};
use crate::config::Config;
use crate::host::Host;
use crate::{Error, Result};
use ferry_bundle::manifest::{BackupKind, Manifest, Step};
use ferry_bundle::Reporter;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a database may take to write its dump before the backup gives up.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Everything one backup set will hold.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    /// The set's name (its id is `<stamp>-<name>`).
    pub name: String,
    /// Configuration files of the steps that will run: copied when present, recorded
    /// as skipped when the host has none (a component being installed fresh).
    pub configs: Vec<String>,
    /// `files` backups: paths (which must exist) and glob patterns (which may match
    /// nothing).
    pub files: Vec<String>,
    /// Database backups with the configuration file their connection came from.
    pub databases: Vec<(Database, Option<String>)>,
    /// Optional backups left out on this host, with why.
    pub skipped: Vec<super::Skipped>,
}

impl CreateRequest {
    /// The backups applying `manifest` takes: every config of the steps in `running`,
    /// the manifest's `[[backup]]`s, then the host's own from `installer.toml`.
    pub fn for_bundle(
        host: &Host,
        config: &Config,
        manifest: &Manifest,
        running: &[&Step],
    ) -> Result<CreateRequest> {
        let mut request = CreateRequest {
            name: manifest.name.clone(),
            ..CreateRequest::default()
        };
        for step in running {
            for c in &step.configs {
                push_unique(&mut request.configs, c);
            }
        }
        request.add_backups(host, config, manifest.backups.iter())?;
        request.add_backups(host, config, config.backup.iter())?;
        Ok(request)
    }

    /// The backups `installer.toml` lists, for `backup create` without a bundle.
    pub fn for_host(host: &Host, config: &Config) -> Result<CreateRequest> {
        if config.backup.is_empty() {
            return Err(Error::Usage(format!(
                "nothing to back up: give a bundle (its steps and backups say what), or list [[backup]] entries in {}",
                config.describe()
            )));
        }
        let mut request = CreateRequest {
            name: "manual".into(),
            ..CreateRequest::default()
        };
        request.add_backups(host, config, config.backup.iter())?;
        Ok(request)
    }

    fn add_backups<'a>(
        &mut self,
        host: &Host,
        config: &Config,
        backups: impl Iterator<Item = &'a ferry_bundle::manifest::Backup>,
    ) -> Result<()> {
        for b in backups {
            if b.kind == BackupKind::Files {
                let mut paths = b.paths.clone();
                if let Some(conf) = &b.config {
                    match std::fs::read(host.path(conf)) {
                        Ok(bytes) => {
                            let json: serde_json::Value =
                                serde_json::from_slice(&bytes).map_err(|e| Error::Backup {
                                    path: PathBuf::from(conf),
                                    message: format!("not valid JSON: {e}"),
                                    help: "fix the file: the files it names are backed up from it"
                                        .into(),
                                })?;
                            // What the config names is taken when it exists.
                            for p in crate::tyk::referenced_paths(&json) {
                                if host.path(&p).symlink_metadata().is_ok() {
                                    paths.push(p);
                                } else {
                                    self.skipped.push(super::Skipped {
                                        pattern: p,
                                        reason: format!(
                                            "named in {conf}, not present on this host"
                                        ),
                                    });
                                }
                            }
                        }
                        Err(_) if b.optional => {
                            self.skipped.push(super::Skipped {
                                pattern: format!("files named in {conf}"),
                                reason: "optional, the configuration is not on this host".into(),
                            });
                        }
                        Err(e) => {
                            return Err(Error::Backup {
                                path: host.path(conf),
                                message: format!(
                                    "cannot read the configuration whose files are backed up: {e}"
                                ),
                                help: "is the component installed here?".into(),
                            })
                        }
                    }
                }
                for p in &paths {
                    let absent = b.optional
                        && !files::is_glob(p)
                        && host.path(p).symlink_metadata().is_err();
                    if absent {
                        self.skipped.push(super::Skipped {
                            pattern: p.clone(),
                            reason: "optional, not present on this host".into(),
                        });
                    } else {
                        push_unique(&mut self.files, p);
                    }
                }
                continue;
            }
            let kind = serde_json::to_value(b.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let config_absent = b
                .config
                .as_ref()
                .is_some_and(|c| host.path(c).symlink_metadata().is_err());
            if b.optional && config_absent {
                self.skipped.push(super::Skipped {
                    pattern: format!("{kind} from {}", b.config.as_deref().unwrap_or("")),
                    reason: "optional, its configuration is not on this host".into(),
                });
                continue;
            }
            let db = match sources::resolve(host, config, b) {
                Ok(db) => db,
                Err(Error::Backup { message, .. })
                    if b.optional && message.contains("connection found") =>
                {
                    self.skipped.push(super::Skipped {
                        pattern: format!("{kind} from {}", b.config.as_deref().unwrap_or("")),
                        reason: format!("optional, {message}"),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let key = (db.kind(), db.display());
            if !self
                .databases
                .iter()
                .any(|(d, _)| (d.kind(), d.display()) == key)
            {
                self.databases.push((db, b.config.clone()));
            }
        }
        Ok(())
    }

    /// Every program the databases' dumps run, with its Debian package.
    pub fn tools(&self) -> Vec<(&'static str, &'static str)> {
        let mut tools: Vec<_> = self
            .databases
            .iter()
            .filter_map(|(d, _)| d.tool())
            .collect();
        tools.sort();
        tools.dedup();
        tools
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// How much room a backup needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Estimate {
    /// Bytes of the files to copy (exact, as they are now).
    pub files: u64,
    /// Per database (`kind source`): its dump size is only known once taken.
    pub databases: Vec<String>,
}

impl Estimate {
    /// Bytes known to be needed.
    pub fn known(&self) -> u64 {
        self.files
    }
}

/// About how large a database's dump will be, asking the server (read-only): Redis's
/// dataset size, PostgreSQL's `pg_database_size`. MongoDB is not measured (`Ok(None)`).
/// An error says why the server could not be asked; the backup itself will meet it too.
pub fn measure_database(db: &Database, path: Option<&std::ffi::OsStr>) -> Result<Option<u64>> {
    match db {
        Database::Redis(conn, _) => {
            super::redis::dataset_size(conn, Duration::from_secs(10)).map(Some)
        }
        Database::Postgres(conn) => super::postgres::database_size(conn, path).map(Some),
        Database::Mongodb(_) => Ok(None),
    }
}

/// Measure what `request` will copy; reads only.
pub fn estimate(host: &Host, request: &CreateRequest) -> Result<Estimate> {
    let mut bytes = 0;
    let mut seen = std::collections::BTreeSet::new();
    for path in request.configs.iter().chain(&request.files) {
        let paths = if files::is_glob(path) {
            files::expand_glob(host, path)?
        } else {
            vec![files::normalize(path)?]
        };
        for p in paths {
            if seen.insert(p.clone()) {
                bytes += files::tree_size(&host.path(&p));
            }
        }
    }
    Ok(Estimate {
        files: bytes,
        databases: request
            .databases
            .iter()
            .map(|(d, _)| format!("{} {}", d.kind(), d.display()))
            .collect(),
    })
}

/// Take the backup set `request` describes, under `dest` (default the host's backup
/// directory). Checks the free space first (exit code 4 when the files alone do not
/// fit). On any failure the half-written set is removed and the error says what was
/// needed; on success `backup.json` is written last.
pub fn create(
    host: &Host,
    config: &Config,
    dest: Option<&Path>,
    request: &CreateRequest,
    reporter: &dyn Reporter,
) -> Result<BackupManifest> {
    let configured = config.backup_dir.as_ref().map(|d| host.path(d));
    let dest = dest.map(Path::to_path_buf).or(configured);
    let base = super::backups_dir(host, dest.as_deref());
    let estimate = estimate(host, request)?;
    let available = available_at(&base)?;
    let needed = estimate.known() + estimate.known().div_ceil(10);
    if available < needed {
        return Err(Error::NoSpace {
            path: base,
            needed,
            available,
            what: "the files to back up, plus 10%".into(),
        });
    }
    let mut set = BackupSet::begin(host, dest.as_deref(), &request.name, host.now())?;
    reporter.step(&format!("backup set {}", set.dir().display()));
    match fill(&mut set, request, reporter) {
        Ok(()) => set.finish(),
        Err(e) => {
            let dir = set.dir().to_path_buf();
            drop(set);
            // Measured before the half-written set is removed, which frees the space.
            let left = available_at(&base).unwrap_or(u64::MAX);
            let full = is_no_space(&e) || left < 1024 * 1024;
            let removed = std::fs::remove_dir_all(&dir);
            let removed_note = match removed {
                Ok(()) => format!("the incomplete set {} was removed", dir.display()),
                Err(re) => format!(
                    "the incomplete set {} could not be removed ({re}); it has no backup.json and is listed as INCOMPLETE",
                    dir.display()
                ),
            };
            if full {
                return Err(Error::Backup {
                    path: dir,
                    message: format!(
                        "the backup destination filled up: the set needs more than the {:.1} MiB ({available} bytes) that was free there when it started: {} bytes of files{} ({e})",
                        available as f64 / MIB,
                        estimate.files,
                        if estimate.databases.is_empty() { String::new() } else { format!(" plus the dumps of {}", estimate.databases.join(", ")) },
                    ),
                    help: format!("{removed_note}. Make more room there (a database dump is roughly the size of its data: for Redis, INFO memory used_memory_dataset; for PostgreSQL, pg_database_size), or choose another place with --dest or backup_dir in installer.toml"),
                });
            }
            reporter.warn(&removed_note);
            Err(e)
        }
    }
}

fn fill(set: &mut BackupSet, request: &CreateRequest, reporter: &dyn Reporter) -> Result<()> {
    for s in &request.skipped {
        set.skip(s.clone());
    }
    set.add_present_files(&request.configs)?;
    set.add_files(&request.files)?;
    for (db, config) in &request.databases {
        reporter.step(&format!("dumping {} {}", db.kind(), db.display()));
        set.add_database(db, config.as_deref(), DATABASE_TIMEOUT)?;
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// A write of ferry's own that failed with ENOSPC, or a dump program (pg_dump,
/// mongodump, redis-cli) that said so in its own words.
fn is_no_space(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
        Error::Command { detail, .. } => detail.contains("No space left on device"),
        _ => false,
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `dir` (or its nearest
/// existing ancestor).
pub fn available_at(dir: &Path) -> Result<u64> {
    let mut probe: PathBuf = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    crate::host::available_bytes(&probe).map_err(|e| Error::io(&probe, e))
}
