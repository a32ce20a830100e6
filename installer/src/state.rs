//! `/var/lib/ferry/state.json`: what this host remembers about bundles — per channel the
//! highest sequence applied and the newest `created` seen — for replay and expiry checks.
//!
//! Reading never changes it; writers replace it atomically (temp, fsync, rename, fsync
//! the directory) so a crash leaves either the old or the new state.

use crate::host::{Host, STATE_PATH};
use crate::{Error, Result};
use ferry_bundle::{Freshness, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The whole state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Per channel.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelState>,
    /// Past operations, newest last.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// What is known about one channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChannelState {
    /// Highest sequence applied.
    pub sequence: u64,
    /// Name of the bundle that set it.
    pub name: String,
    /// Newest `created` of any bundle seen on this channel.
    pub newest_created: Timestamp,
}

/// One recorded operation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    /// When it finished.
    pub at: Timestamp,
    /// `apply`, `rollback`, ...
    pub operation: String,
    /// Bundle name.
    pub name: String,
    /// Channel.
    pub channel: String,
    /// Sequence.
    pub sequence: u64,
    /// `ok`, `rolled-back`, `failed`.
    pub outcome: String,
    /// The run (its journal is `/var/lib/ferry/runs/<run_id>.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The backup set taken before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Packages changed: name, version before (none: not installed), version after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<(String, Option<String>, Option<String>)>,
}

impl State {
    /// Load the host's state; a missing file is an empty state.
    pub fn load(host: &Host) -> Result<State> {
        let path = host.path(STATE_PATH);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
                path,
                message: format!("invalid JSON: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::State {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Replace the host's state atomically.
    pub fn save(&self, host: &Host) -> Result<()> {
        let path = host.path(STATE_PATH);
        let json = serde_json::to_vec_pretty(self).expect("state serializes");
        write_atomic(&path, &json)
    }

    /// The freshness facts verification needs.
    pub fn freshness(&self, now: Timestamp, allow_replay: bool) -> Freshness {
        Freshness {
            now,
            newest_created_seen: self.channels.values().map(|c| c.newest_created).max(),
            applied: self
                .channels
                .iter()
                .map(|(k, v)| (k.clone(), v.sequence))
                .collect(),
            allow_replay,
        }
    }
}

/// Write `bytes` to `path` durably: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}
