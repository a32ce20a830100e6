//! `backup restore ID`: put a complete set back. Every selected item's sha256 is
//! checked against `backup.json`, and every database target resolved, before anything
//! is written; then files, then databases.

use super::mongodb::{self, MongoConn};
use super::postgres::{self, PgConn};
use super::redis::{self, RedisConn};
use super::sources::{self, Database};
use super::{files, read_manifest, restore_files, DatabaseItem, Item};
use crate::config::Config;
use crate::host::Host;
use crate::secret::Secret;
use crate::{Error, Result};
use ferry_bundle::manifest::{Backup, BackupKind};
use ferry_bundle::Reporter;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to restore and where databases go.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Only items of this kind (`files`, `redis`, `postgres`, `mongodb`).
    pub only: Option<&'static str>,
    /// Only these host paths among the files.
    pub paths: Vec<String>,
    /// Load the Redis snapshot into this running server (`HOST:PORT` or
    /// `unix:/path`); without it the manual procedure is reported.
    pub redis_target: Option<String>,
    /// Its password (else installer.toml `[redis]`).
    pub redis_password: Option<Secret>,
    /// PostgreSQL connection to restore into (else the dump's source, re-read from its
    /// configuration and installer.toml).
    pub postgres_target: Option<Secret>,
    /// MongoDB URI to restore into (else the dump's source).
    pub mongodb_target: Option<Secret>,
}

/// One restored item.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    /// `files`, `redis`, `postgres` or `mongodb`.
    pub kind: &'static str,
    /// What was restored where.
    pub what: String,
}

/// The outcome of a restore.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// The set's id.
    pub id: String,
    /// The set's directory.
    pub set: PathBuf,
    /// Each restored item.
    pub restored: Vec<Restored>,
    /// Manual procedures still to do (Redis without a target).
    pub procedures: Vec<String>,
}

impl RestoreReport {
    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "restored from backup set {} ({}), every sha256 checked first:",
            self.id,
            self.set.display()
        )];
        for r in &self.restored {
            lines.push(format!("  {:<9} {}", r.kind, r.what));
        }
        for p in &self.procedures {
            lines.push(String::new());
            lines.extend(p.lines().map(String::from));
        }
        lines
    }
}

const REDIS_TIMEOUT: Duration = Duration::from_secs(30 * 60);

enum Target {
    Redis(RedisConn),
    RedisManual,
    Postgres(PgConn),
    Mongodb(MongoConn),
}

/// Restore set `id` from `base` (default the host's backup directory).
pub fn restore_set(
    host: &Host,
    config: &Config,
    base: Option<&Path>,
    id: &str,
    options: &RestoreOptions,
    reporter: &dyn Reporter,
) -> Result<RestoreReport> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::Usage(format!(
            "{id:?} is not a backup set id; `ferry-install backup list` shows them"
        )));
    }
    let set_dir = super::backups_dir(host, base).join(id);
    if !set_dir.is_dir() {
        return Err(Error::Backup {
            path: set_dir,
            message: "no such backup set".into(),
            help: "`ferry-install backup list` shows the sets (use --dest if they were written elsewhere)".into(),
        });
    }
    let manifest = read_manifest(&set_dir)?;
    if !options.paths.is_empty() && options.only.is_some_and(|k| k != "files") {
        return Err(Error::Usage(
            "--path selects files; it cannot be combined with --only redis|postgres|mongodb".into(),
        ));
    }
    let wanted = |kind: &str| match options.only {
        Some(only) => only == kind,
        None => options.paths.is_empty() || kind == "files",
    };
    let has_files = manifest.items.iter().any(|i| matches!(i, Item::Files(_)));
    let databases: Vec<&Item> = manifest
        .items
        .iter()
        .filter(|i| !matches!(i, Item::Files(_)) && wanted(i.kind()))
        .collect();
    let restore_files_too = wanted("files") && has_files;
    if !restore_files_too && databases.is_empty() {
        return Err(Error::Backup {
            path: set_dir,
            message: format!(
                "the set holds nothing of kind {}",
                options.only.unwrap_or("files")
            ),
            help: "see the set's backup.json for what it holds".into(),
        });
    }

    // 1. Check every dump and resolve every target; nothing is written yet.
    let mut plan = Vec::new();
    for item in &databases {
        let (Item::Redis(d) | Item::Postgres(d) | Item::Mongodb(d)) = item else {
            continue;
        };
        check_dump(&set_dir, d)?;
        // The connection comes from the component's config as it was backed up (the
        // set's copy), which is also what the files restore puts back.
        let copy = d.config.as_ref().and_then(|c| {
            manifest.items.iter().find_map(|i| match i {
                Item::Files(f) if &f.source == c => Some(set_dir.join(&f.path_in_set)),
                _ => None,
            })
        });
        let target = target_for(host, config, item, d, copy.as_deref(), options)?;
        plan.push((*item, d, target));
    }

    // 2. Files (restore_files checks all of them before writing any).
    let mut report = RestoreReport {
        id: manifest.id.clone(),
        set: set_dir.clone(),
        restored: Vec::new(),
        procedures: Vec::new(),
    };
    if restore_files_too {
        let only = (!options.paths.is_empty()).then_some(options.paths.as_slice());
        let restored = restore_files(host, &set_dir, only)?;
        reporter.step(&format!("restored {} file(s)", restored.len()));
        report.restored.push(Restored {
            kind: "files",
            what: format!(
                "{} entries with their mode, owner and mtime under {}",
                restored.len(),
                host.root().display()
            ),
        });
    }

    // 3. Databases.
    for (item, d, target) in plan {
        let dump = set_dir.join(&d.path_in_set);
        match target {
            Target::Redis(conn) => {
                reporter.step(&format!("loading {} into {}", d.path_in_set, conn.display()));
                let r = redis::restore(&dump, &conn, REDIS_TIMEOUT)?;
                report.restored.push(Restored {
                    kind: item.kind(),
                    what: format!(
                        "{} keys into {} (databases {:?}) from {}",
                        r.keys,
                        conn.display(),
                        r.databases,
                        d.path_in_set
                    ),
                });
            }
            Target::RedisManual => report.procedures.push(format!(
                "Redis snapshot {} (from {}) was checked but not loaded: name a server with --redis-target HOST:PORT to load it live, or:\n{}",
                dump.display(),
                d.source,
                redis::restore_procedure(&dump)
            )),
            Target::Postgres(conn) => {
                reporter.step(&format!("pg_restore --clean into {}", conn.display()));
                let r = postgres::restore(&dump, &conn)?;
                report.restored.push(Restored {
                    kind: item.kind(),
                    what: format!(
                        "{} entries into {} (pg_restore --clean, one transaction)",
                        r.toc_entries,
                        conn.display()
                    ),
                });
            }
            Target::Mongodb(conn) => {
                reporter.step(&format!("mongorestore --drop into {}", conn.display()));
                mongodb::restore(&dump, &conn)?;
                report.restored.push(Restored {
                    kind: item.kind(),
                    what: format!("{} into {} (mongorestore --drop)", d.path_in_set, conn.display()),
                });
            }
        }
    }
    Ok(report)
}

fn check_dump(set_dir: &Path, d: &DatabaseItem) -> Result<()> {
    let path = set_dir.join(&d.path_in_set);
    let (size, sha256) = files::hash_file(&path).map_err(|e| Error::Backup {
        path: path.clone(),
        message: format!("cannot read the dump: {e}"),
        help: "the set is damaged; restore from another set (`ferry-install backup list`)".into(),
    })?;
    if size != d.size || sha256 != d.sha256 {
        return Err(Error::Backup {
            path,
            message: format!(
                "does not match backup.json: {size} bytes, sha256 {sha256}; expected {} bytes, sha256 {}",
                d.size, d.sha256
            ),
            help: "the dump was changed or damaged after the backup; restore from another set".into(),
        });
    }
    Ok(())
}

fn target_for(
    host: &Host,
    config: &Config,
    item: &Item,
    d: &DatabaseItem,
    copy: Option<&Path>,
    options: &RestoreOptions,
) -> Result<Target> {
    let from_source = |kind: BackupKind| -> Result<Database> {
        let backup = Backup {
            kind,
            config: d.config.clone(),
            paths: Vec::new(),
            optional: false,
        };
        sources::resolve_from(host, config, &backup, copy).map_err(|e| Error::Backup {
            path: PathBuf::from(d.config.clone().unwrap_or_default()),
            message: format!("cannot work out where to restore {} ({e})", d.path_in_set),
            help: "name the target explicitly (--postgres-target / --mongodb-target)".into(),
        })
    };
    Ok(match item {
        Item::Redis(_) => match &options.redis_target {
            None => Target::RedisManual,
            Some(t) => {
                let password = match &options.redis_password {
                    Some(p) => Some(p.clone()),
                    None => sources::redis_password(host, config)?,
                };
                Target::Redis(parse_redis_target(t, password)?)
            }
        },
        Item::Postgres(_) => match &options.postgres_target {
            Some(c) => Target::Postgres(PgConn::parse(c.expose())?),
            None => match from_source(BackupKind::Postgres)? {
                Database::Postgres(c) => Target::Postgres(c),
                _ => unreachable!(),
            },
        },
        Item::Mongodb(_) => match &options.mongodb_target {
            Some(uri) => Target::Mongodb(MongoConn {
                uri: uri.clone(),
                database: config.mongodb.as_ref().and_then(|m| m.database.clone()),
            }),
            None => match from_source(BackupKind::Mongodb)? {
                Database::Mongodb(c) => Target::Mongodb(c),
                _ => unreachable!(),
            },
        },
        Item::Files(_) => unreachable!("files have no database target"),
    })
}

/// `HOST:PORT`, `[v6]:PORT` or `unix:/path`.
fn parse_redis_target(t: &str, password: Option<Secret>) -> Result<RedisConn> {
    let mut conn = RedisConn {
        host: String::new(),
        password,
        ..RedisConn::default()
    };
    if let Some(path) = t.strip_prefix("unix:") {
        conn.socket = Some(PathBuf::from(path));
        return Ok(conn);
    }
    let bad = || {
        Error::Usage(format!(
            "--redis-target {t:?}: expected HOST:PORT, [IPv6]:PORT or unix:/path/to/socket"
        ))
    };
    let (h, p) = t.rsplit_once(':').ok_or_else(bad)?;
    conn.host = h.trim_start_matches('[').trim_end_matches(']').to_string();
    conn.port = p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if conn.host.is_empty() {
        return Err(bad());
    }
    Ok(conn)
}
