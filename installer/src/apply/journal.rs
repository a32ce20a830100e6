//! `/var/lib/ferry/journal.json`: the operation in progress, rewritten atomically (temp,
//! fsync, rename, fsync the directory) before and after every phase and step, so a
//! crash at any instant leaves a journal that says exactly where the run was.
//!
//! When a run ends (applied, or rolled back) its journal moves to
//! `/var/lib/ferry/runs/<run-id>.json`, which `rollback` of a completed run and
//! `status` read.

use crate::capture::Captured;
use crate::host::Host;
use crate::state::write_atomic;
use crate::{Error, Result};
use ferry_bundle::manifest::{Health, Manifest, Place};
use ferry_bundle::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The journal of the run in progress.
pub const JOURNAL_PATH: &str = "/var/lib/ferry/journal.json";
/// Journals of finished runs.
pub const RUNS_DIR: &str = "/var/lib/ferry/runs";
/// Verified bundle payloads, one directory per run.
pub const STAGING_DIR: &str = "/var/lib/ferry/staging";
/// Rollback packages, one directory per run.
pub const ROLLBACK_DIR: &str = "/var/lib/ferry/rollback";
/// Run logs.
pub const LOG_DIR: &str = "/var/log/ferry";
/// The `format` of a journal.
pub const JOURNAL_FORMAT: &str = "ferry-journal/1";

/// Where a run is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The bundle is verified into staging; nothing on the host changed yet.
    Verified,
    /// The backup set is complete.
    BackedUp,
    /// Rollback packages are captured.
    Captured,
    /// Steps are running.
    Installing,
    /// Every step is healthy.
    Done,
    /// Undoing the steps.
    RollingBack,
    /// Every step was undone.
    RolledBack,
    /// Undoing failed part-way.
    RollbackFailed,
}

/// Where one step is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Not run on this host (`only_if_installed` and absent, or not in `--components`).
    Skipped,
    /// dpkg is (or was, if the run died) installing its packages.
    Installing,
    /// dpkg finished.
    Installed,
    /// Its service was restarted.
    Restarted,
    /// Its health check passed.
    Healthy,
    /// dpkg, the restart or the health check failed.
    Failed,
    /// Being undone.
    RollingBack,
    /// Undone: the packages, configs and service are as before.
    RolledBack,
}

/// One package of a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PackageRecord {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version installed before the run (`None`: not installed).
    pub before: Option<String>,
    /// The bundle's version.
    pub after: String,
    /// The `.deb` in the bundle (relative to the staging directory).
    pub file: String,
    /// `target` or `dependency`.
    pub role: String,
}

/// One step of the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// Component name.
    pub component: String,
    /// Its packages, dependencies first.
    pub packages: Vec<PackageRecord>,
    /// Service restarted after dpkg.
    pub service: Option<String>,
    /// Config files restored on rollback.
    pub configs: Vec<String>,
    /// Health check (as the bundle has it; `installer.toml` and derivation apply at use).
    pub health: Option<Health>,
    /// Bundle files put in place before the step's dpkg call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub place: Vec<Place>,
    /// Files this run put in place, and whether something was there before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<Placed>,
    /// Whether a package of the step was installed before the run (then its service
    /// is restarted and checked after a rollback too).
    pub was_installed: bool,
    /// Where it is.
    pub state: StepState,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last health result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_result: Option<String>,
    /// When the step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    /// When it became healthy (or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
}

/// A file put in place by a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Placed {
    /// Host path.
    pub dest: String,
    /// Something was at `dest` before (it is restored from the backup set on rollback;
    /// otherwise the file is removed).
    pub existed: bool,
}

/// The whole journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    /// Always [`JOURNAL_FORMAT`].
    pub format: String,
    /// `<UTC stamp>-<bundle name>`.
    pub run_id: String,
    /// The bundle path given.
    pub bundle: PathBuf,
    /// The verified manifest.
    pub manifest: Manifest,
    /// Staging directory (host path).
    pub staging: String,
    /// Where the run is.
    pub phase: Phase,
    /// The steps, in manifest order.
    pub steps: Vec<StepRecord>,
    /// The backup set taken before installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The directory holding that set (a real path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
    /// Rollback packages.
    #[serde(default)]
    pub captured: Vec<Captured>,
    /// The run was started with `--no-rollback`.
    #[serde(default)]
    pub no_rollback: bool,
    /// What failed, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Problems met while undoing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_problems: Vec<String>,
    /// The run's log (a real path).
    pub log: PathBuf,
    /// When the run began.
    pub started: Timestamp,
    /// When the journal was last written.
    pub updated: Timestamp,
}

impl Journal {
    /// Write it atomically to [`JOURNAL_PATH`].
    pub fn save(&mut self, host: &Host) -> Result<()> {
        self.updated = host.now();
        let json = serde_json::to_vec_pretty(self).expect("journal serializes");
        write_atomic(&host.path(JOURNAL_PATH), &json)
    }

    /// The journal of the run in progress, if any.
    pub fn load(host: &Host) -> Result<Option<Journal>> {
        read(&host.path(JOURNAL_PATH))
    }

    /// Move the journal to `runs/<run-id>.json`: the run is over.
    pub fn archive(&mut self, host: &Host) -> Result<PathBuf> {
        let dest = host.path(RUNS_DIR).join(format!("{}.json", self.run_id));
        self.updated = host.now();
        let json = serde_json::to_vec_pretty(self).expect("journal serializes");
        write_atomic(&dest, &json)?;
        let journal = host.path(JOURNAL_PATH);
        match std::fs::remove_file(&journal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&journal, e)),
        }
        if let Some(dir) = journal.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(dest)
    }

    /// Finished runs, oldest first.
    pub fn finished_runs(host: &Host) -> Result<Vec<Journal>> {
        let dir = host.path(RUNS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(j) = read(&path)? {
                    runs.push(j);
                }
            }
        }
        runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(runs)
    }

    /// The staging directory as a real path.
    pub fn staging_dir(&self, host: &Host) -> PathBuf {
        host.path(&self.staging)
    }

    /// The rollback package captured for `name`, if any.
    pub fn captured_for(&self, name: &str) -> Option<&Captured> {
        self.captured.iter().find(|c| c.name == name)
    }
}

fn read(path: &Path) -> Result<Option<Journal>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::State {
        path: path.to_path_buf(),
        message: format!("invalid journal: {e}"),
    })?;
    if journal.format != JOURNAL_FORMAT {
        return Err(Error::State {
            path: path.to_path_buf(),
            message: format!(
                "journal format {:?}, expected {JOURNAL_FORMAT:?}",
                journal.format
            ),
        });
    }
    Ok(Some(journal))
}
