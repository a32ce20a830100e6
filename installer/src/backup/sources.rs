//! Where a database backup connects: read from the component's own configuration file
//! (Tyk's JSON configs) and overridden key by key by `installer.toml`.
//!
//! Tyk keeps its connections in these places (environment overrides such as
//! `TYK_GW_STORAGE_HOST` are not read; set `installer.toml` instead when a host uses them):
//! - Redis: `storage` (Gateway `tyk.conf`), `analytics_storage_config` (Pump `pump.conf`),
//!   or the top-level `redis_*` keys (Dashboard `tyk_analytics.conf`).
//! - PostgreSQL: `storage.main.connection_string` (Dashboard 5.x, `storage.main.type =
//!   "postgres"`).
//! - MongoDB: top-level `mongo_url` (Dashboard), or `pumps.<name>.meta.mongo_url` (Pump).

use super::mongodb::MongoConn;
use super::postgres::PgConn;
use super::redis::{RedisConn, SaveMode};
use crate::config::{Config, SaveModeSetting};
use crate::host::Host;
use crate::secret::Secret;
use crate::{Error, Result};
use ferry_bundle::manifest::{Backup, BackupKind};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A database backup, resolved to a connection.
#[derive(Clone, Debug)]
pub enum Database {
    /// A Redis server and how to make it save.
    Redis(RedisConn, SaveMode),
    /// A PostgreSQL database.
    Postgres(PgConn),
    /// A MongoDB deployment (optionally one database).
    Mongodb(MongoConn),
}

impl Database {
    /// `redis`, `postgres` or `mongodb`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Redis(..) => "redis",
            Database::Postgres(_) => "postgres",
            Database::Mongodb(_) => "mongodb",
        }
    }

    /// Where it connects, without any secret.
    pub fn display(&self) -> String {
        match self {
            Database::Redis(c, _) => c.display(),
            Database::Postgres(c) => c.display(),
            Database::Mongodb(c) => c.display(),
        }
    }

    /// The program the backup runs, with the Debian package that has it (`None` when
    /// ferry speaks the protocol itself).
    pub fn tool(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Database::Redis(c, _) if c.tls => Some(("redis-cli", "redis-tools")),
            Database::Redis(..) => None,
            Database::Postgres(_) => Some(("pg_dump", "postgresql-client")),
            Database::Mongodb(_) => Some(("mongodump", "mongodb-database-tools")),
        }
    }
}

/// Resolve a manifest (or `installer.toml`) database backup to its connection.
/// `backup.kind` must not be `files`.
pub fn resolve(host: &Host, config: &Config, backup: &Backup) -> Result<Database> {
    resolve_from(host, config, backup, None)
}

/// [`resolve`], reading the component's configuration from `copy` (a real path, such as
/// the copy a backup set holds) instead of the host's current file.
pub fn resolve_from(
    host: &Host,
    config: &Config,
    backup: &Backup,
    copy: Option<&Path>,
) -> Result<Database> {
    let doc = match &backup.config {
        Some(path) => Some(ConfigDoc::read(host, path, copy)?),
        None => None,
    };
    match backup.kind {
        BackupKind::Redis => redis(host, config, doc.as_ref()),
        BackupKind::Postgres => postgres(host, config, doc.as_ref()),
        BackupKind::Mongodb => mongodb(host, config, doc.as_ref()),
        BackupKind::Files => unreachable!("files backups have no connection"),
    }
}

/// A component's JSON configuration file.
struct ConfigDoc {
    path: String,
    json: Value,
}

impl ConfigDoc {
    fn read(host: &Host, path: &str, copy: Option<&Path>) -> Result<ConfigDoc> {
        let real = copy.map_or_else(|| host.path(path), Path::to_path_buf);
        let bytes = std::fs::read(&real).map_err(|e| Error::Backup {
            path: real.clone(),
            message: format!("cannot read the configuration the backup takes its connection from: {e}"),
            help: "is the component installed here? If its configuration lives elsewhere, set the connection in installer.toml ([redis], [postgres] or [mongodb])".into(),
        })?;
        let json = serde_json::from_slice(&bytes).map_err(|e| Error::Backup {
            path: real,
            message: format!("not valid JSON: {e}"),
            help: "fix the file (the component would not start with it either), or set the connection in installer.toml".into(),
        })?;
        Ok(ConfigDoc {
            path: path.to_string(),
            json,
        })
    }

    fn missing(&self, what: &str, section: &str) -> Error {
        Error::Backup {
            path: PathBuf::from(&self.path),
            message: format!("no {what} connection found in it"),
            help: format!("set [{section}] in installer.toml"),
        }
    }

    fn bad(&self, field: &str, expected: &str) -> Error {
        Error::Backup {
            path: PathBuf::from(&self.path),
            message: format!("{field}: expected {expected}"),
            help: "fix the field, or override it in installer.toml".into(),
        }
    }
}

fn str_field<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn redis(host: &Host, config: &Config, doc: Option<&ConfigDoc>) -> Result<Database> {
    let mut conn = RedisConn {
        host: String::new(),
        ..RedisConn::default()
    };
    if let Some(doc) = doc {
        read_tyk_redis(doc, &mut conn)?;
    }
    let settings = config.redis.clone().unwrap_or_default();
    if let Some(h) = settings.host {
        conn.host = h;
    }
    if let Some(p) = settings.port {
        conn.port = p;
    }
    if let Some(s) = settings.socket {
        conn.socket = Some(host.path(s));
    }
    if let Some(u) = settings.username {
        conn.username = Some(u);
    }
    if let Some(p) = settings.password {
        conn.password = Some(p);
    }
    if let Some(file) = &settings.password_file {
        conn.password = Some(read_secret_file(host, config, file)?);
    }
    if let Some(d) = settings.database {
        conn.database = d;
    }
    if let Some(t) = settings.tls {
        conn.tls = t;
    }
    if let Some(ca) = settings.ca_cert {
        conn.ca_cert = Some(host.path(ca));
    }
    if conn.password.as_ref().is_some_and(Secret::is_empty) {
        conn.password = None;
    }
    if conn.host.is_empty() && conn.socket.is_none() {
        return Err(match doc {
            Some(doc) => doc.missing("Redis", "redis"),
            None => Error::Config {
                path: PathBuf::from(config.describe()),
                message: "a redis backup has no `config` to read the connection from and [redis] sets no host or socket".into(),
            },
        });
    }
    let mode = match settings.save_mode {
        Some(SaveModeSetting::Save) => SaveMode::Save,
        _ => SaveMode::Bgsave,
    };
    Ok(Database::Redis(conn, mode))
}

/// Tyk's three shapes of Redis settings.
fn read_tyk_redis(doc: &ConfigDoc, conn: &mut RedisConn) -> Result<()> {
    let json = &doc.json;
    // Gateway `storage` and Pump `analytics_storage_config` share one shape.
    for section in ["storage", "analytics_storage_config"] {
        let Some(obj) = json.get(section).filter(|v| v.is_object()) else {
            continue;
        };
        let addr = obj
            .get("addrs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        if str_field(obj, "host").is_none() && addr.is_none() {
            continue;
        }
        if obj.get("enable_cluster").and_then(Value::as_bool) == Some(true) {
            return Err(Error::Backup {
                path: PathBuf::from(&doc.path),
                message: format!("{section}.enable_cluster is true: a Redis Cluster has one RDB per primary, which one backup cannot hold"),
                help: "back up each primary with its own `[[backup]] kind = \"redis\"` in installer.toml, or use the cluster's own backup tooling".into(),
            });
        }
        match (str_field(obj, "host"), addr) {
            (Some(h), _) => conn.host = h.to_string(),
            (None, Some(a)) => {
                let (h, p) = a
                    .rsplit_once(':')
                    .ok_or_else(|| doc.bad(&format!("{section}.addrs[0]"), "HOST:PORT"))?;
                conn.host = h.to_string();
                conn.port = p
                    .parse()
                    .map_err(|_| doc.bad(&format!("{section}.addrs[0]"), "HOST:PORT"))?;
            }
            (None, None) => unreachable!(),
        }
        if let Some(p) = obj.get("port").filter(|p| !p.is_null()) {
            conn.port = p
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| doc.bad(&format!("{section}.port"), "a port number"))?;
        }
        conn.username = str_field(obj, "username").map(String::from);
        conn.password = str_field(obj, "password").map(Secret::new);
        if let Some(d) = obj.get("database").filter(|d| !d.is_null()) {
            conn.database = d
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| doc.bad(&format!("{section}.database"), "a database number"))?;
        }
        conn.tls = obj.get("use_ssl").and_then(Value::as_bool).unwrap_or(false);
        return Ok(());
    }
    // Dashboard: top-level redis_* keys.
    if let Some(h) = str_field(json, "redis_host") {
        conn.host = h.to_string();
        if let Some(p) = json.get("redis_port").filter(|p| !p.is_null()) {
            conn.port = p
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| doc.bad("redis_port", "a port number"))?;
        }
        conn.username = str_field(json, "redis_username").map(String::from);
        conn.password = str_field(json, "redis_password").map(Secret::new);
        if let Some(d) = json.get("redis_database").filter(|d| !d.is_null()) {
            conn.database = d
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| doc.bad("redis_database", "a database number"))?;
        }
        conn.tls = json
            .get("redis_use_ssl")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    Ok(())
}

fn postgres(host: &Host, config: &Config, doc: Option<&ConfigDoc>) -> Result<Database> {
    let settings = config.postgres.clone().unwrap_or_default();
    let conninfo: Secret = match (&settings.connection, doc) {
        (Some(c), _) => c.clone(),
        (None, Some(doc)) => {
            let main = doc.json.pointer("/storage/main");
            let kind = main.and_then(|m| str_field(m, "type"));
            match main.and_then(|m| str_field(m, "connection_string")) {
                Some(c) if kind.is_none_or(|k| k == "postgres") => Secret::new(c),
                _ => return Err(doc.missing("PostgreSQL (storage.main.connection_string)", "postgres")),
            }
        }
        (None, None) => {
            return Err(Error::Config {
                path: PathBuf::from(config.describe()),
                message: "a postgres backup has no `config` to read the connection from and [postgres] sets no connection".into(),
            })
        }
    };
    let origin = match (&settings.connection, doc) {
        (Some(_), _) | (None, None) => format!("{} [postgres] connection", config.describe()),
        (None, Some(doc)) => format!("{} storage.main.connection_string", doc.path),
    };
    let mut conn = PgConn::parse(conninfo.expose()).map_err(|e| Error::Backup {
        path: PathBuf::from(&origin),
        message: format!("the PostgreSQL connection string is not valid: {e}"),
        help: "fix it there, or set [postgres] connection in installer.toml".into(),
    })?;
    if let Some(file) = &settings.password_file {
        conn.password = Some(read_secret_file(host, config, file)?);
    }
    Ok(Database::Postgres(conn))
}

fn mongodb(host: &Host, config: &Config, doc: Option<&ConfigDoc>) -> Result<Database> {
    let settings = config.mongodb.clone().unwrap_or_default();
    let uri = match (&settings.uri_file, &settings.uri, doc) {
        (Some(file), _, _) => read_secret_file(host, config, file)?,
        (None, Some(uri), _) => uri.clone(),
        (None, None, Some(doc)) => {
            let from_pump = doc.json.get("pumps").and_then(Value::as_object).and_then(|p| {
                p.values()
                    .find_map(|v| v.pointer("/meta/mongo_url").and_then(Value::as_str))
            });
            match str_field(&doc.json, "mongo_url").or(from_pump) {
                Some(u) if !u.is_empty() => Secret::new(u),
                _ => return Err(doc.missing("MongoDB (mongo_url)", "mongodb")),
            }
        }
        (None, None, None) => {
            return Err(Error::Config {
                path: PathBuf::from(config.describe()),
                message: "a mongodb backup has no `config` to read the connection from and [mongodb] sets no uri".into(),
            })
        }
    };
    if !uri.expose().starts_with("mongodb://") && !uri.expose().starts_with("mongodb+srv://") {
        return Err(Error::Backup {
            path: PathBuf::from(config.describe()),
            message: "the MongoDB connection is not a mongodb:// or mongodb+srv:// URI".into(),
            help: "fix mongo_url in the component's configuration, or set [mongodb] uri in installer.toml".into(),
        });
    }
    let database = settings
        .database
        .clone()
        .or_else(|| uri_database(uri.expose()));
    Ok(Database::Mongodb(MongoConn { uri, database }))
}

/// The Redis password `installer.toml` sets (`password_file` before `password`).
pub fn redis_password(host: &Host, config: &Config) -> Result<Option<Secret>> {
    let Some(settings) = &config.redis else {
        return Ok(None);
    };
    if let Some(file) = &settings.password_file {
        return read_secret_file(host, config, file).map(Some);
    }
    Ok(settings.password.clone())
}

/// The database named in the path of a MongoDB URI, if any.
fn uri_database(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next().unwrap_or("");
    (!db.is_empty()).then(|| db.to_string())
}

/// Read a secret from a host file, trimmed of its trailing newline. A file others can
/// read is refused: the secret would not be secret.
fn read_secret_file(host: &Host, config: &Config, file: &Path) -> Result<Secret> {
    let real = host.path(file);
    let meta = std::fs::metadata(&real).map_err(|e| Error::Config {
        path: PathBuf::from(config.describe()),
        message: format!("{}: {e}", real.display()),
    })?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(Error::Config {
            path: real.clone(),
            message: format!(
                "mode {:04o} lets every user read this secret",
                meta.permissions().mode() & 0o7777
            ),
        });
    }
    let text = std::fs::read_to_string(&real).map_err(|e| Error::io(&real, e))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_database_from_uri() {
        assert_eq!(
            uri_database("mongodb://u:p@h:27017/tyk_analytics?authSource=admin").as_deref(),
            Some("tyk_analytics")
        );
        assert_eq!(uri_database("mongodb://h:27017/"), None);
        assert_eq!(uri_database("mongodb://h"), None);
    }
}
