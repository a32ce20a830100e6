//! `/etc/ferry/installer.toml`: host overrides. Strict — an unknown key is an error, so a
//! misspelt setting is never silently ignored. A missing file means all defaults.
//!
//! ```toml
//! trust = "/etc/ferry/trusted"          # directory of *.pub, or one file
//! threshold = 1
//! backup_dir = "/var/backups/ferry"     # where backup sets go
//! service_manager = "systemd"           # or "sysv", "none" (default: detected)
//!
//! [redis]                               # overrides what the component's config says
//! host = "10.0.0.5"
//! port = 6379
//! password_file = "/etc/ferry/redis.pass"   # 0600; or `password = "..."`
//! save_mode = "bgsave"                  # or "save" (blocking SAVE, as the Tyk guide does)
//!
//! [postgres]
//! connection = "host=db1 dbname=tyk_analytics user=tyk"
//! password_file = "/etc/ferry/pg.pass"
//!
//! [mongodb]
//! uri_file = "/etc/ferry/mongo.uri"     # or `uri = "mongodb://..."`
//! database = "tyk_analytics"
//!
//! [health.gateway]                      # this host's gateway listens elsewhere
//! url = "http://127.0.0.1:8181/hello"
//! timeout_secs = 120
//!
//! [[backup]]                            # extra backups, same shape as a bundle's
//! kind = "files"
//! paths = ["/etc/default/tyk-*"]
//! ```

use crate::host::{Host, CONFIG_PATH, TRUST_DIR};
use crate::secret::Secret;
use crate::{Error, Result};
use ferry_bundle::manifest::Backup;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The installer's host configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Trust store: a directory of `*.pub` files or one file (host path, under `--root`).
    #[serde(default)]
    pub trust: Option<PathBuf>,
    /// Distinct trusted signatures required (default 1).
    #[serde(default)]
    pub threshold: Option<usize>,
    /// Where backup sets are written (host path, under `--root`); default
    /// `/var/backups/ferry`.
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
    /// Redis connection overrides.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// PostgreSQL connection overrides.
    #[serde(default)]
    pub postgres: Option<PostgresSettings>,
    /// MongoDB connection overrides.
    #[serde(default)]
    pub mongodb: Option<MongoSettings>,
    /// Backups this host always takes, in addition to a bundle's.
    #[serde(default)]
    pub backup: Vec<Backup>,
    /// How services are restarted (default: detected).
    #[serde(default)]
    pub service_manager: Option<crate::apply::service::ServiceManager>,
    /// Per component: health check overrides (this host's ports differ from the
    /// bundle's defaults, say).
    #[serde(default)]
    pub health: std::collections::BTreeMap<String, HealthSettings>,
    /// Where this file was read from (for messages); `None` when there was none.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[health.<component>]`: replaces parts of a step's health check.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// URL to poll (plain http).
    pub url: Option<String>,
    /// Accepted values of the JSON `status` field.
    pub json_status: Option<Vec<String>>,
    /// How long to keep trying.
    pub timeout_secs: Option<u64>,
}

/// `[redis]`: each key set here replaces what the component's config file says.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Host name or address.
    pub host: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// Unix socket (host path); used instead of host and port.
    pub socket: Option<PathBuf>,
    /// ACL user name (Redis 6+).
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    pub password: Option<Secret>,
    /// A file holding the password (host path; should be mode 0600).
    pub password_file: Option<PathBuf>,
    /// Database number the component uses.
    pub database: Option<u32>,
    /// Connect with TLS (through `redis-cli --tls`).
    pub tls: Option<bool>,
    /// CA certificate for TLS.
    pub ca_cert: Option<PathBuf>,
    /// `bgsave` (default) or `save`.
    pub save_mode: Option<SaveModeSetting>,
}

/// How Redis is asked to write its snapshot.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SaveModeSetting {
    /// `BGSAVE`, then wait for `LASTSAVE` to advance.
    Bgsave,
    /// Blocking `SAVE`, as the Tyk upgrade guide does.
    Save,
}

/// `[postgres]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// libpq connection string (keyword/value or URL); replaces the component's.
    pub connection: Option<Secret>,
    /// A file holding the password (host path; should be mode 0600).
    pub password_file: Option<PathBuf>,
}

/// `[mongodb]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// Connection URI; replaces the component's `mongo_url`.
    pub uri: Option<Secret>,
    /// A file holding the URI (host path; should be mode 0600).
    pub uri_file: Option<PathBuf>,
    /// Database to dump (default: the one in the URI).
    pub database: Option<String>,
}

impl Config {
    /// Load `--config FILE` (must exist) or the default file (may be absent).
    pub fn load(host: &Host, explicit: Option<&Path>) -> Result<Config> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (host.path(CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(Error::Config {
                    path,
                    message: e.to_string(),
                })
            }
        };
        let mut config: Config = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.source = Some(path.clone());
        if config.threshold == Some(0) {
            return Err(Error::Config {
                path,
                message: "threshold must be at least 1".into(),
            });
        }
        Ok(config)
    }

    /// The file this configuration came from, for messages.
    pub fn describe(&self) -> String {
        self.source.as_ref().map_or_else(
            || format!("{CONFIG_PATH} (absent)"),
            |p| p.display().to_string(),
        )
    }

    /// The trust store path on this host.
    pub fn trust_path(&self, host: &Host) -> PathBuf {
        host.path(self.trust.as_deref().unwrap_or(Path::new(TRUST_DIR)))
    }
}
