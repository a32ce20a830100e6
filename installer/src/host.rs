//! The host the installer acts on: a filesystem root (`/` or `--root DIR`) and the
//! clock. Every host path goes through [`Host::path`], so the installer's logic runs
//! unchanged against a throwaway root in tests.

use ferry_bundle::Timestamp;
use std::path::{Path, PathBuf};

/// Default configuration file.
pub const CONFIG_PATH: &str = "/etc/ferry/installer.toml";
/// Default trust store.
pub const TRUST_DIR: &str = "/etc/ferry/trusted";
/// Per-channel replay and freshness state.
pub const STATE_PATH: &str = "/var/lib/ferry/state.json";

/// A host rooted at `root`.
#[derive(Clone, Debug)]
pub struct Host {
    root: PathBuf,
    now: Option<Timestamp>,
}

impl Host {
    /// The host rooted at `root` (`/` for the real system).
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host {
            root: root.into(),
            now: None,
        }
    }

    /// Pin the clock (tests).
    pub fn with_now(mut self, now: Timestamp) -> Host {
        self.now = Some(now);
        self
    }

    /// The filesystem root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Map an absolute host path to the real path under the root.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let p = absolute.as_ref();
        let relative = p.strip_prefix("/").unwrap_or(p);
        self.root.join(relative)
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}
