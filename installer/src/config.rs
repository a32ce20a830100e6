//! `/etc/ferry/installer.toml`: host overrides. Strict — an unknown key is an error, so a
//! misspelt setting is never silently ignored. A missing file means all defaults.

use crate::host::{Host, CONFIG_PATH, TRUST_DIR};
use crate::{Error, Result};
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
        let config: Config = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if config.threshold == Some(0) {
            return Err(Error::Config {
                path,
                message: "threshold must be at least 1".into(),
            });
        }
        Ok(config)
    }

    /// The trust store path on this host.
    pub fn trust_path(&self, host: &Host) -> PathBuf {
        host.path(self.trust.as_deref().unwrap_or(Path::new(TRUST_DIR)))
    }
}
