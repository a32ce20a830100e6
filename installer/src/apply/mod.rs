//! `apply`, `resume`, `rollback` and `status`: take a host from what it runs to what a
//! bundle carries, step by step, or put it back exactly as it was.
//!
//! Order of operations for `apply`: ferry's lock → verify the bundle into a fresh 0700
//! staging directory (only that copy is used afterwards) → plan and preflight, including
//! whether every package being replaced can be captured for rollback → confirmation →
//! dpkg's frontend lock → journal → backup set → rollback packages → steps in manifest
//! order (dpkg, restart, health) → `state.json` → journal archived, staging removed.
//!
//! Every transition is written to the journal before and after it happens, so `resume`
//! (forward) and `rollback` (back) can continue from any instant. A failure in a step
//! undoes the failed and the completed steps in reverse: captured packages reinstalled,
//! packages the step added purged, its configuration files restored from the backup set,
//! its service restarted and health-checked.
//!
//! `FERRY_TEST_CHECKPOINT=<name>` makes the process kill itself with SIGKILL at the named
//! point (`after-verify`, `after-backup`, `after-capture`, `after-dpkg-<component>`,
//! `after-restart-<component>`, `mid-rollback`), so tests can prove recovery from each.

pub mod dpkg;
pub mod health;
pub mod journal;
pub mod log;
pub mod service;

use crate::backup::{
    self, compact_stamp, create_private_dir_all, read_manifest as read_backup_manifest,
    restore_files, Item,
};
use crate::capture::{self, Installed};
use crate::config::Config;
use crate::host::Host;
use crate::lock::{DpkgFrontendLock, FerryLock};
use crate::plan::{plan_verified, Failure, Plan};
use crate::state::{ChannelState, HistoryEntry, State};
use crate::tools::sha256_file;
use crate::verify::{verify_bundle, VerifyRequest};
use crate::{Error, Result};
use dpkg::DpkgCall;
use ferry_bundle::manifest::{Manifest, Place, Role};
use ferry_bundle::{Reporter, Timestamp};
use journal::{
    Journal, PackageRecord, Phase, StepRecord, StepState, JOURNAL_FORMAT, ROLLBACK_DIR, STAGING_DIR,
};
use log::RunLog;
use serde::Serialize;
use service::ServiceManager;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Runs whose captured rollback packages are kept in `/var/lib/ferry/rollback/`.
pub const KEEP_ROLLBACK_RUNS: usize = 3;

/// What the operator asked `apply` to do.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// The bundle.
    pub bundle: PathBuf,
    /// Trust, signatures, threshold, replay.
    pub verify: VerifyRequest,
    /// Only these steps.
    pub components: Option<Vec<String>>,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Show everything, change nothing.
    pub dry_run: bool,
    /// Go ahead even where a package cannot be captured for rollback.
    pub no_rollback: bool,
    /// Override the service manager.
    pub service_manager: Option<ServiceManager>,
    /// `PATH` searched for backup tools.
    pub path: Option<OsString>,
}

/// The operator's side of `apply`: seeing the plan and confirming it.
pub trait Operator {
    /// Show the plan (and its preflight result).
    fn show_plan(&self, plan: &Plan, extra_failures: &[Failure]);
    /// Ask whether to go ahead. Only called without `--yes`.
    fn confirm(&self) -> Result<bool>;
}

/// One row of the summary table.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentRow {
    /// Component.
    pub component: String,
    /// Versions before (`-` when not installed).
    pub before: String,
    /// Versions now.
    pub after: String,
    /// Health result.
    pub health: String,
    /// Where the step ended.
    pub state: StepState,
    /// Seconds the step took.
    pub duration_secs: u64,
}

/// The end of a run, as printed and as `--json` gives it.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `apply`, `resume` or `rollback`.
    pub operation: String,
    /// The run.
    pub run_id: String,
    /// Bundle name.
    pub bundle: String,
    /// `applied`, `nothing-to-do`, `dry-run`, `rolled-back` or `rollback-failed`.
    pub outcome: String,
    /// Per component.
    pub components: Vec<ComponentRow>,
    /// Backup set taken before installing.
    pub backup_id: Option<String>,
    /// Its directory.
    pub backup_dir: Option<PathBuf>,
    /// The run log.
    pub log: Option<PathBuf>,
    /// What failed.
    pub failure: Option<String>,
    /// What could not be undone.
    pub rollback_problems: Vec<String>,
    /// What to do next.
    pub next: Option<String>,
    /// For `--dry-run`: every command that would run, in order.
    pub commands: Vec<String>,
}

impl Summary {
    /// The summary of an `apply` that ended before a run began (`nothing-to-do`,
    /// `dry-run`).
    fn without_run(
        manifest: &Manifest,
        outcome: &str,
        steps: &[StepRecord],
        commands: Vec<String>,
    ) -> Summary {
        Summary {
            operation: "apply".into(),
            run_id: String::new(),
            bundle: manifest.name.clone(),
            outcome: outcome.into(),
            components: rows(steps),
            backup_id: None,
            backup_dir: None,
            log: None,
            failure: None,
            rollback_problems: Vec::new(),
            next: None,
            commands,
        }
    }

    /// The exit code DESIGN.md assigns: 0, 5 (rolled back) or 6 (rollback incomplete).
    pub fn exit_code(&self) -> u8 {
        match self.outcome.as_str() {
            // Asked for: `rollback` did what it was told.
            "rolled-back" if self.operation == "rollback" => 0,
            "rolled-back" => 5,
            "rollback-failed" => 6,
            _ => 0,
        }
    }

    /// The human-readable report.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.commands.is_empty() {
            out.push("would run, in order:".into());
            out.extend(self.commands.iter().map(|c| format!("  {c}")));
            out.push("dry run: nothing was changed".into());
            return out;
        }
        out.push(format!(
            "{} {}: {} (run {})",
            self.operation, self.bundle, self.outcome, self.run_id
        ));
        if !self.components.is_empty() {
            let width = |f: &dyn Fn(&ComponentRow) -> usize, title: &str| {
                self.components
                    .iter()
                    .map(f)
                    .max()
                    .unwrap_or(0)
                    .max(title.len())
            };
            let (wc, wb, wa) = (
                width(&|c| c.component.len(), "COMPONENT"),
                width(&|c| c.before.len(), "BEFORE"),
                width(&|c| c.after.len(), "AFTER"),
            );
            out.push(format!(
                "  {:<wc$}  {:<wb$}  {:<wa$}  {:>5}  HEALTH",
                "COMPONENT", "BEFORE", "AFTER", "SECS"
            ));
            for c in &self.components {
                out.push(format!(
                    "  {:<wc$}  {:<wb$}  {:<wa$}  {:>5}  {}",
                    c.component, c.before, c.after, c.duration_secs, c.health
                ));
            }
        }
        if let Some(f) = &self.failure {
            out.push(format!("failed: {f}"));
        }
        for p in &self.rollback_problems {
            out.push(format!("NOT undone: {p}"));
        }
        if let (Some(id), Some(dir)) = (&self.backup_id, &self.backup_dir) {
            out.push(format!("backup set: {id} ({})", dir.display()));
        }
        if let Some(log) = &self.log {
            out.push(format!("log: {}", log.display()));
        }
        if let Some(next) = &self.next {
            out.push(format!("next: {next}"));
        }
        out
    }
}

/// Kill this process with SIGKILL when `FERRY_TEST_CHECKPOINT` names this point.
fn checkpoint(name: &str) {
    if std::env::var("FERRY_TEST_CHECKPOINT").is_ok_and(|c| c == name) {
        // SAFETY: kill(2) on our own pid with a valid signal.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// `ferry-install apply`.
pub fn apply(
    host: &Host,
    config: &Config,
    opts: &ApplyOptions,
    operator: &dyn Operator,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    if opts.dry_run {
        return dry_run(host, config, opts, operator, reporter);
    }
    let _lock = FerryLock::acquire(host)?;
    if let Some(j) = Journal::load(host)? {
        return Err(interrupted(&j));
    }
    let stamp = compact_stamp(host.now());
    let staging_parent = host.path(STAGING_DIR);
    create_private_dir_all(&staging_parent)?;
    let staging_rel = format!("{STAGING_DIR}/{stamp}");
    let staging = host.path(&staging_rel);
    if staging.exists() {
        return Err(Error::Usage(format!(
            "{} already exists: another run started this second; try again",
            staging.display()
        )));
    }
    reporter.step(&format!("verifying {}", opts.bundle.display()));
    let cleanup = StagingGuard(Some(staging.clone()));
    let (manifest, plan, mut steps) =
        verify_and_preflight(host, config, opts, Some(&staging), operator, reporter)?;
    if steps.iter().all(|s| s.state == StepState::Skipped) {
        drop(cleanup);
        return Ok(Summary::without_run(
            &manifest,
            "nothing-to-do",
            &steps,
            Vec::new(),
        ));
    }
    if !opts.yes && !operator.confirm()? {
        return Err(Error::NotConfirmed);
    }
    let dpkg_lock = DpkgFrontendLock::acquire(host)?;

    let run_id = format!("{stamp}-{}", manifest.name);
    let log = RunLog::open(host, &run_id)?;
    for s in &mut steps {
        if s.state == StepState::Skipped {
            s.finished = Some(host.now());
        }
    }
    let journal = Journal {
        format: JOURNAL_FORMAT.into(),
        run_id: run_id.clone(),
        bundle: opts.bundle.clone(),
        manifest,
        staging: staging_rel,
        phase: Phase::Verified,
        steps,
        backup_id: None,
        backup_dir: None,
        captured: Vec::new(),
        no_rollback: opts.no_rollback,
        failure: None,
        rollback_problems: Vec::new(),
        log: log.path().to_path_buf(),
        started: host.now(),
        updated: host.now(),
    };
    let mut run = Run {
        host,
        config,
        journal,
        log,
        manager: opts
            .service_manager
            .or(config.service_manager)
            .unwrap_or_else(|| ServiceManager::detect(host)),
        reporter,
        plan: Some(plan),
        _dpkg_lock: dpkg_lock,
    };
    run.save()?;
    // The journal owns the staging directory from here on.
    std::mem::forget(cleanup);
    run.log.line(&format!(
        "apply {} (run {run_id}) verified into {}",
        opts.bundle.display(),
        staging.display()
    ));
    checkpoint("after-verify");
    run.forward("apply")
}

/// `ferry-install resume`: continue the interrupted run forward.
pub fn resume(
    host: &Host,
    config: &Config,
    service_manager: Option<ServiceManager>,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let _lock = FerryLock::acquire(host)?;
    let Some(journal) = Journal::load(host)? else {
        return Err(Error::NothingToRecover {
            what: "resume".into(),
        });
    };
    let mut run = Run::reopen(host, config, journal, service_manager, reporter)?;
    run.log.line(&format!(
        "resume of run {} at phase {:?}",
        run.journal.run_id, run.journal.phase
    ));
    if matches!(run.journal.phase, Phase::Done) {
        return run.finish_applied("resume");
    }
    if matches!(run.journal.phase, Phase::RolledBack) {
        return run.finish_rolled_back("resume");
    }
    run.check_staging()?;
    run.forward("resume")
}

/// `ferry-install rollback [--to BACKUP_ID]`: revert the interrupted run, or a
/// completed one (the newest, or the one that took backup set `to`).
pub fn rollback(
    host: &Host,
    config: &Config,
    to: Option<&str>,
    service_manager: Option<ServiceManager>,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let _lock = FerryLock::acquire(host)?;
    let journal = match Journal::load(host)? {
        Some(j) => {
            if let Some(to) = to {
                if j.backup_id.as_deref() != Some(to) {
                    return Err(Error::Usage(format!(
                        "run {} is interrupted and took backup set {}; roll it back first (`ferry-install rollback` without --to), then {to}",
                        j.run_id,
                        j.backup_id.as_deref().unwrap_or("(none yet)")
                    )));
                }
            }
            j
        }
        None => {
            let runs = Journal::finished_runs(host)?;
            let chosen = match to {
                Some(id) => runs
                    .into_iter()
                    .rev()
                    .find(|r| r.backup_id.as_deref() == Some(id))
                    .ok_or_else(|| Error::Usage(format!(
                        "no applied run took backup set {id}; `ferry-install status` lists runs and `ferry-install backup list` the sets"
                    )))?,
                None => runs.into_iter().rev().find(|r| r.phase == Phase::Done).ok_or(
                    Error::NothingToRecover {
                        what: "rollback".into(),
                    },
                )?,
            };
            if chosen.phase != Phase::Done {
                return Err(Error::Usage(format!(
                    "run {} ended {:?}: there is nothing of it to roll back",
                    chosen.run_id, chosen.phase
                )));
            }
            check_still_installed(host, &chosen)?;
            chosen
        }
    };
    let mut run = Run::reopen(host, config, journal, service_manager, reporter)?;
    run.log
        .line(&format!("rollback of run {} requested", run.journal.run_id));
    run.undo("rollback")
}

/// What `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The interrupted (or running) run, if any.
    pub in_progress: Option<RunStatus>,
    /// Whether another ferry-install holds the lock right now.
    pub running: bool,
    /// The newest finished run.
    pub last_run: Option<RunStatus>,
    /// Per channel, from `state.json`.
    pub channels: std::collections::BTreeMap<String, ChannelState>,
}

/// One run as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    /// Run id.
    pub run_id: String,
    /// Bundle name.
    pub bundle: String,
    /// Phase.
    pub phase: Phase,
    /// Backup set.
    pub backup_id: Option<String>,
    /// Steps.
    pub components: Vec<ComponentRow>,
    /// What failed.
    pub failure: Option<String>,
    /// Log.
    pub log: PathBuf,
    /// Started / last written.
    pub started: Timestamp,
    /// Last written.
    pub updated: Timestamp,
}

impl RunStatus {
    fn of(j: &Journal) -> RunStatus {
        RunStatus {
            run_id: j.run_id.clone(),
            bundle: j.manifest.name.clone(),
            phase: j.phase,
            backup_id: j.backup_id.clone(),
            components: rows(&j.steps),
            failure: j.failure.clone(),
            log: j.log.clone(),
            started: j.started,
            updated: j.updated,
        }
    }
}

/// `ferry-install status`; reads only.
pub fn status(host: &Host) -> Result<Status> {
    let in_progress = Journal::load(host)?.as_ref().map(RunStatus::of);
    let running = crate::lock::flock_held(&host.path(crate::lock::FERRY_LOCK));
    let last_run = Journal::finished_runs(host)?.last().map(RunStatus::of);
    let state = State::load(host)?;
    Ok(Status {
        in_progress,
        running,
        last_run,
        channels: state.channels,
    })
}

/// The error a second `apply` meets while a journal exists.
fn interrupted(j: &Journal) -> Error {
    Error::Interrupted {
        run_id: j.run_id.clone(),
        phase: format!("{:?}", j.phase),
    }
}

/// Removes an early staging directory unless forgotten.
struct StagingGuard(Option<PathBuf>);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Journal steps from the plan: dependencies first, packages already at the bundle's
/// version left out, steps with nothing to install skipped.
fn step_records(plan: &Plan) -> Vec<StepRecord> {
    let mut records = Vec::new();
    for step in &plan.manifest.steps {
        let planned = plan.steps.iter().find(|p| p.component == step.component);
        let health = step.health.clone();
        let mut record = StepRecord {
            component: step.component.clone(),
            packages: Vec::new(),
            service: step.service.clone(),
            configs: step.configs.clone(),
            health,
            place: step.place.clone(),
            placed: Vec::new(),
            was_installed: false,
            state: StepState::Pending,
            detail: None,
            health_result: None,
            started: None,
            finished: None,
        };
        match planned {
            None => {
                record.state = StepState::Skipped;
                record.detail = Some("not selected with --components".into());
            }
            Some(p) if p.action == "skipped" => {
                record.state = StepState::Skipped;
                record.detail = Some(p.reason.clone());
            }
            Some(p) => {
                let mut packages: Vec<PackageRecord> = p
                    .packages
                    .iter()
                    .map(|c| PackageRecord {
                        name: c.name.clone(),
                        arch: c.arch.clone(),
                        before: c.from.clone(),
                        after: c.to.clone(),
                        file: c.file.clone(),
                        role: c.role.to_string(),
                    })
                    .collect();
                // Dependencies first, each group in manifest order.
                packages.sort_by_key(|p| p.role != "dependency");
                record.was_installed = packages
                    .iter()
                    .any(|p| p.role == "target" && p.before.is_some());
                if packages
                    .iter()
                    .all(|p| p.before.as_deref() == Some(&p.after))
                {
                    record.state = StepState::Skipped;
                    record.detail = Some("already at the bundle's versions".into());
                }
                record.packages = packages;
            }
        }
        records.push(record);
    }
    records
}

/// Packages a step replaces (installed, at another version than the bundle's).
fn replaced(step: &StepRecord) -> impl Iterator<Item = &PackageRecord> {
    step.packages
        .iter()
        .filter(|p| p.before.as_ref().is_some_and(|b| *b != p.after))
}

/// Every package that will be replaced must be capturable, or `--no-rollback` given.
fn rollback_preflight(
    host: &Host,
    manifest: &Manifest,
    steps: &[StepRecord],
    staging: &Path,
    no_rollback: bool,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for step in steps.iter().filter(|s| s.state != StepState::Skipped) {
        for p in replaced(step) {
            let before = p.before.clone().unwrap_or_default();
            if previous_deb(manifest, staging, &p.name, &before).is_some() {
                continue;
            }
            let installed = Installed {
                name: p.name.clone(),
                version: before.clone(),
                arch: p.arch.clone(),
            };
            if apt_cache_has(host, &installed) {
                continue;
            }
            if let Err(why) = capture::can_rebuild(host, &installed) {
                if no_rollback {
                    continue;
                }
                failures.push(Failure {
                    check: "rollback",
                    message: format!(
                        "{} {before} cannot be captured for rollback: the bundle carries no previous version, the apt cache has none, and it cannot be rebuilt from the dpkg database ({why})",
                        p.name
                    ),
                    help: format!(
                        "build the bundle with `previous = \"{before}\"` for {}, put {}_{}_{}.deb in /var/cache/apt/archives, or pass --no-rollback to go ahead without a way back",
                        p.name,
                        p.name,
                        before.replace(':', "%3a"),
                        p.arch
                    ),
                });
            }
        }
    }
    failures
}

/// A step's health check as this host runs it: the bundle's, with the URL derived from
/// the installed configuration where the bundle says so, then `installer.toml`'s
/// `[health.<component>]` on top. Read afresh each time, so a fixed `installer.toml`
/// takes effect on `resume`.
pub fn effective_health(
    host: &Host,
    config: &Config,
    step: &StepRecord,
) -> Option<ferry_bundle::manifest::Health> {
    let mut h = step.health.clone()?;
    if let Some(source) = &h.derive {
        match crate::tyk::derive_health_url(host, &source.profile, &source.config) {
            Ok(url) => h.url = url,
            Err(why) => tracing::info!(
                "step {}: health URL not derived ({why}); using {}",
                step.component,
                h.url
            ),
        }
    }
    if let Some(o) = config.health.get(&step.component) {
        if let Some(url) = &o.url {
            h.url = url.clone();
        }
        if let Some(j) = &o.json_status {
            h.json_status = j.clone();
        }
        if let Some(t) = o.timeout_secs {
            h.timeout_secs = t;
        }
    }
    Some(h)
}

fn health_preflight(host: &Host, config: &Config, steps: &[StepRecord]) -> Vec<Failure> {
    steps
        .iter()
        .filter(|s| s.state != StepState::Skipped)
        .filter_map(|s| {
            let h = effective_health(host, config, s)?;
            let h = &h;
            health::check_url(&h.url).err().map(|message| Failure {
                check: "health",
                message: format!("step {}: {message}", s.component),
                help: format!(
                    "set [health.{}] url in installer.toml to a plain-HTTP endpoint",
                    s.component
                ),
            })
        })
        .collect()
}

fn apt_cache_has(host: &Host, p: &Installed) -> bool {
    host.path(format!(
        "/var/cache/apt/archives/{}_{}_{}.deb",
        p.name,
        p.version.replace(':', "%3a"),
        p.arch
    ))
    .is_file()
}

/// The staged `.deb` of the bundle's `previous` copy of `name` at `version`.
fn previous_deb(manifest: &Manifest, staging: &Path, name: &str, version: &str) -> Option<PathBuf> {
    manifest
        .packages
        .iter()
        .find(|p| p.role == Role::Previous && p.name == name && p.version == version)
        .map(|p| staging.join(&p.file))
}

fn rows(steps: &[StepRecord]) -> Vec<ComponentRow> {
    steps
        .iter()
        .map(|s| {
            let list = |f: &dyn Fn(&PackageRecord) -> Option<String>| {
                let v: Vec<String> = s
                    .packages
                    .iter()
                    .filter(|p| p.role == "target")
                    .map(|p| f(p).unwrap_or_else(|| "-".into()))
                    .collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(",")
                }
            };
            let before = list(&|p| p.before.clone());
            let after = match s.state {
                StepState::Healthy | StepState::Restarted | StepState::Installed => {
                    list(&|p| Some(p.after.clone()))
                }
                StepState::Skipped => "(skipped)".into(),
                StepState::RolledBack | StepState::Pending => before.clone(),
                _ => "?".into(),
            };
            let duration = match (s.started, s.finished) {
                (Some(a), Some(b)) => b.unix().saturating_sub(a.unix()),
                _ => 0,
            };
            ComponentRow {
                component: s.component.clone(),
                before,
                after,
                health: s.health_result.clone().unwrap_or_else(|| {
                    if s.state == StepState::Skipped {
                        "-".into()
                    } else {
                        format!("{:?}", s.state).to_lowercase()
                    }
                }),
                state: s.state,
                duration_secs: duration,
            }
        })
        .collect()
}

/// A run in progress: the journal plus what acting on the host needs.
struct Run<'a> {
    host: &'a Host,
    config: &'a Config,
    journal: Journal,
    log: RunLog,
    manager: ServiceManager,
    reporter: &'a dyn Reporter,
    /// Present for a fresh `apply` (resume rebuilds what it needs from the journal).
    plan: Option<Plan>,
    _dpkg_lock: DpkgFrontendLock,
}

impl<'a> Run<'a> {
    fn reopen(
        host: &'a Host,
        config: &'a Config,
        journal: Journal,
        service_manager: Option<ServiceManager>,
        reporter: &'a dyn Reporter,
    ) -> Result<Run<'a>> {
        let dpkg_lock = DpkgFrontendLock::acquire(host)?;
        let log = RunLog::open(host, &journal.run_id)?;
        Ok(Run {
            host,
            config,
            journal,
            log,
            manager: service_manager
                .or(config.service_manager)
                .unwrap_or_else(|| ServiceManager::detect(host)),
            reporter,
            plan: None,
            _dpkg_lock: dpkg_lock,
        })
    }

    fn save(&mut self) -> Result<()> {
        self.journal.save(self.host)
    }

    fn say(&mut self, text: &str) {
        self.log.line(text);
        self.reporter.step(text);
    }

    /// Every staged file the remaining steps use still matches the manifest.
    fn check_staging(&mut self) -> Result<()> {
        let staging = self.journal.staging_dir(self.host);
        for step in &self.journal.steps {
            for p in &step.packages {
                let Some(entry) = self.journal.manifest.file(&p.file) else {
                    continue;
                };
                let path = staging.join(&p.file);
                let ok = sha256_file(&path)
                    .is_ok_and(|(size, sum)| size == entry.size && sum == entry.sha256);
                if !ok {
                    return Err(Error::Backup {
                        path,
                        message: "the staged copy of the bundle is missing or no longer matches its manifest".into(),
                        help: "run `ferry-install rollback` to put the host back, then apply the bundle again".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Phases forward from wherever the journal is; a failed step triggers the undo.
    fn forward(mut self, operation: &str) -> Result<Summary> {
        if self.journal.phase == Phase::Verified {
            if let Err(e) = self.take_backup() {
                return self.abort_before_install(operation, e);
            }
            checkpoint("after-backup");
        }
        if self.journal.phase == Phase::BackedUp {
            if let Err(e) = self.capture_all() {
                return self.abort_before_install(operation, e);
            }
            checkpoint("after-capture");
        }
        if matches!(
            self.journal.phase,
            Phase::Captured | Phase::RollingBack | Phase::RollbackFailed
        ) {
            self.journal.phase = Phase::Installing;
            self.journal.failure = None;
            self.journal.rollback_problems.clear();
            self.save()?;
        }
        for i in 0..self.journal.steps.len() {
            if matches!(
                self.journal.steps[i].state,
                StepState::Skipped | StepState::Healthy
            ) {
                continue;
            }
            if let Err(e) = self.run_step(i) {
                let component = self.journal.steps[i].component.clone();
                let step = &mut self.journal.steps[i];
                step.state = StepState::Failed;
                step.finished = Some(self.host.now());
                self.journal.failure = Some(format!("step {component}: {e}"));
                self.save()?;
                self.say(&format!("step {component} FAILED: {e}"));
                if self.journal.no_rollback {
                    return self.leave_failed(operation);
                }
                return self.undo(operation);
            }
        }
        self.journal.phase = Phase::Done;
        self.save()?;
        self.finish_applied(operation)
    }

    fn take_backup(&mut self) -> Result<()> {
        let request = match self.plan.as_ref().and_then(|p| p.backup_request.clone()) {
            Some(r) => r,
            None => {
                let running: Vec<_> =
                    self.journal
                        .manifest
                        .steps
                        .iter()
                        .filter(|s| {
                            self.journal.steps.iter().any(|r| {
                                r.component == s.component && r.state != StepState::Skipped
                            })
                        })
                        .collect();
                backup::CreateRequest::for_bundle(
                    self.host,
                    self.config,
                    &self.journal.manifest,
                    &running,
                )?
            }
        };
        self.say("taking the backup set");
        let manifest = backup::create(self.host, self.config, None, &request, self.reporter)?;
        let base = self
            .config
            .backup_dir
            .as_ref()
            .map_or_else(|| self.host.path(backup::BACKUP_DIR), |d| self.host.path(d));
        self.journal.backup_dir = Some(base.join(&manifest.id));
        self.journal.backup_id = Some(manifest.id.clone());
        self.journal.phase = Phase::BackedUp;
        self.save()?;
        self.say(&format!(
            "backup set {} complete ({} items)",
            manifest.id,
            manifest.items.len()
        ));
        Ok(())
    }

    fn capture_all(&mut self) -> Result<()> {
        let dest = self.host.path(ROLLBACK_DIR).join(&self.journal.run_id);
        create_private_dir_all(&dest)?;
        let staging = self.journal.staging_dir(self.host);
        let wanted: Vec<PackageRecord> = self
            .journal
            .steps
            .iter()
            .filter(|s| s.state != StepState::Skipped)
            .flat_map(|s| replaced(s).cloned().collect::<Vec<_>>())
            .collect();
        for p in wanted {
            if self.journal.captured_for(&p.name).is_some() {
                continue;
            }
            let before = p.before.clone().unwrap_or_default();
            let installed = Installed {
                name: p.name.clone(),
                version: before.clone(),
                arch: p.arch.clone(),
            };
            let previous = previous_deb(&self.journal.manifest, &staging, &p.name, &before);
            match capture::capture(self.host, &installed, previous.as_deref(), &dest) {
                Ok(c) => {
                    self.say(&format!(
                        "captured {} {} for rollback ({:?}): {}",
                        c.name,
                        c.version,
                        c.source,
                        c.path.display()
                    ));
                    self.journal.captured.push(c);
                }
                Err(e) if self.journal.no_rollback => {
                    self.say(&format!(
                        "WARNING: no rollback package for {} {before} (--no-rollback): {e}",
                        p.name
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        self.journal.phase = Phase::Captured;
        self.save()
    }

    fn run_step(&mut self, i: usize) -> Result<()> {
        let staging = self.journal.staging_dir(self.host);
        let component = self.journal.steps[i].component.clone();
        {
            let step = &mut self.journal.steps[i];
            step.state = StepState::Installing;
            step.started.get_or_insert(self.host.now());
            step.detail = None;
            step.health_result = None;
        }
        self.save()?;
        for place in self.journal.steps[i].place.clone() {
            self.place_file(i, &staging, &place)?;
        }
        let debs: Vec<PathBuf> = self.journal.steps[i]
            .packages
            .iter()
            .filter(|p| p.before.as_deref() != Some(&p.after))
            .map(|p| staging.join(&p.file))
            .collect();
        self.say(&format!(
            "step {component}: installing {} package(s)",
            debs.len()
        ));
        if !debs.is_empty() {
            DpkgCall::install(self.host, &debs)
                .run(&mut self.log, &format!("installing step {component}"))?;
        }
        self.journal.steps[i].state = StepState::Installed;
        self.save()?;
        checkpoint(&format!("after-dpkg-{component}"));
        if let Some(service) = self.journal.steps[i].service.clone() {
            self.manager.restart(&service, &mut self.log)?;
        }
        self.journal.steps[i].state = StepState::Restarted;
        self.save()?;
        checkpoint(&format!("after-restart-{component}"));
        if let Some(h) = effective_health(self.host, self.config, &self.journal.steps[i]) {
            self.say(&format!(
                "step {component}: waiting for {} (up to {} s)",
                h.url, h.timeout_secs
            ));
            match health::wait_healthy(&h, &mut self.log) {
                Ok(result) => self.journal.steps[i].health_result = Some(result),
                Err(why) => {
                    self.journal.steps[i].health_result = Some("unhealthy".into());
                    return Err(Error::Health { message: why });
                }
            }
        } else {
            self.journal.steps[i].health_result = Some("no check".into());
        }
        let step = &mut self.journal.steps[i];
        step.state = StepState::Healthy;
        step.finished = Some(self.host.now());
        self.save()?;
        self.say(&format!("step {component}: healthy"));
        Ok(())
    }

    /// Copy a staged bundle file to its place on the host (temp file, fsync, rename).
    fn place_file(&mut self, i: usize, staging: &Path, place: &Place) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dest = self.host.path(&place.dest);
        if !self.journal.steps[i]
            .placed
            .iter()
            .any(|p| p.dest == place.dest)
        {
            let existed = dest.symlink_metadata().is_ok();
            self.journal.steps[i].placed.push(journal::Placed {
                dest: place.dest.clone(),
                existed,
            });
            self.save()?;
        }
        let mode = u32::from_str_radix(&place.mode, 8).unwrap_or(0o644) & 0o777;
        let dir = dest
            .parent()
            .ok_or_else(|| Error::Usage(format!("{}: no directory", place.dest)))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = dir.join(format!(
            ".{}.ferry-tmp",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let source = staging.join(&place.file);
        let mut input = std::fs::File::open(&source).map_err(|e| Error::io(&source, e))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        std::io::copy(&mut input, &mut f)
            .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        self.say(&format!("placed {} at {}", place.file, place.dest));
        Ok(())
    }

    /// Take back what a step placed: restore what was there from the backup set, or
    /// remove the file.
    fn unplace(&mut self, i: usize, problems: &mut Vec<String>) -> Result<()> {
        for placed in self.journal.steps[i].placed.clone() {
            let dest = self.host.path(&placed.dest);
            if !placed.existed {
                match std::fs::remove_file(&dest) {
                    Ok(()) => self.log.line(&format!("removed {}", placed.dest)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&dest, e)),
                }
                continue;
            }
            let held = self.journal.backup_dir.clone().filter(|dir| {
                read_backup_manifest(dir).is_ok_and(|set| {
                    set.items
                        .iter()
                        .any(|item| matches!(item, Item::Files(f) if f.source == placed.dest))
                })
            });
            match held {
                Some(dir) => {
                    restore_files(self.host, &dir, Some(std::slice::from_ref(&placed.dest)))?;
                }
                None => problems.push(format!(
                    "{} was replaced and the backup set does not hold the old one",
                    placed.dest
                )),
            }
        }
        Ok(())
    }

    /// A failure before any package changed: nothing to undo; the run ends.
    fn abort_before_install(mut self, operation: &str, e: Error) -> Result<Summary> {
        self.log
            .line(&format!("stopped before installing anything: {e}"));
        self.journal.failure = Some(e.to_string());
        self.journal.phase = Phase::RolledBack;
        let _ = self.end_run();
        let _ = operation;
        Err(e)
    }

    /// `--no-rollback` and a step failed: stop where it is, journal kept.
    fn leave_failed(mut self, operation: &str) -> Result<Summary> {
        self.journal.phase = Phase::RollbackFailed;
        self.journal
            .rollback_problems
            .push("--no-rollback was given: nothing was undone".into());
        self.save()?;
        Ok(self.summary(
            operation,
            "rollback-failed",
            Some(self.next_after_failure()),
        ))
    }

    fn next_after_failure(&self) -> String {
        format!(
            "fix the cause (see {}), then `ferry-install resume` to go on, or `ferry-install rollback` to go back",
            self.journal.log.display()
        )
    }

    /// Undo every step that started, in reverse.
    fn undo(mut self, operation: &str) -> Result<Summary> {
        self.journal.phase = Phase::RollingBack;
        self.save()?;
        let mut problems = Vec::new();
        for i in (0..self.journal.steps.len()).rev() {
            if matches!(
                self.journal.steps[i].state,
                StepState::Pending | StepState::Skipped | StepState::RolledBack
            ) {
                continue;
            }
            if let Err(e) = self.undo_step(i, &mut problems) {
                problems.push(format!("step {}: {e}", self.journal.steps[i].component));
                self.journal.rollback_problems = problems;
                self.journal.phase = Phase::RollbackFailed;
                self.save()?;
                self.say("ROLLBACK DID NOT COMPLETE");
                let next = format!(
                    "fix the cause (see {}), then run `ferry-install rollback` again to finish going back, or `ferry-install resume` to go forward",
                    self.journal.log.display()
                );
                return Ok(self.summary(operation, "rollback-failed", Some(next)));
            }
        }
        self.journal.rollback_problems = problems;
        self.journal.phase = Phase::RolledBack;
        self.save()?;
        self.finish_rolled_back(operation)
    }

    fn undo_step(&mut self, i: usize, problems: &mut Vec<String>) -> Result<()> {
        let component = self.journal.steps[i].component.clone();
        self.journal.steps[i].state = StepState::RollingBack;
        self.save()?;
        self.say(&format!("rolling back step {component}"));
        // 1. The replaced packages, from their captures (downgrades).
        let mut debs = Vec::new();
        for p in replaced(&self.journal.steps[i]) {
            match self.journal.captured_for(&p.name) {
                Some(c) => debs.push(c.path.clone()),
                None => {
                    return Err(Error::Capture {
                        package: p.name.clone(),
                        message: "no rollback package was captured for it".into(),
                        help: "install the previous version by hand (dpkg -i), then `ferry-install rollback` again".into(),
                    })
                }
            }
        }
        if !debs.is_empty() {
            DpkgCall::install(self.host, &debs).run(
                &mut self.log,
                &format!("reinstalling the previous packages of {component}"),
            )?;
        }
        checkpoint("mid-rollback");
        // 2. Packages the step added.
        let added: Vec<String> = self.journal.steps[i]
            .packages
            .iter()
            .filter(|p| {
                p.before.is_none() && crate::plan::installed_version(self.host, &p.name).is_some()
            })
            .map(|p| p.name.clone())
            .collect();
        if !added.is_empty() {
            if let Err(e) = DpkgCall::purge(self.host, &added).run(
                &mut self.log,
                &format!("removing what step {component} added"),
            ) {
                problems.push(format!(
                    "step {component}: {} left installed: {e}",
                    added.join(", ")
                ));
            }
        }
        // 3. Its configuration files, exactly as backed up, and what it placed.
        self.restore_configs(i)?;
        self.unplace(i, problems)?;
        // 4. Its service, if it ran before.
        if self.journal.steps[i].was_installed {
            if let Some(service) = self.journal.steps[i].service.clone() {
                self.manager.restart(&service, &mut self.log)?;
            }
            if let Some(h) = effective_health(self.host, self.config, &self.journal.steps[i]) {
                match health::wait_healthy(&h, &mut self.log) {
                    Ok(r) => {
                        self.journal.steps[i].health_result = Some(format!("{r} (rolled back)"))
                    }
                    Err(why) => {
                        return Err(Error::Health {
                            message: format!("after rollback: {why}"),
                        })
                    }
                }
            }
        }
        let step = &mut self.journal.steps[i];
        step.state = StepState::RolledBack;
        step.finished = Some(self.host.now());
        self.save()?;
        self.say(&format!("step {component}: rolled back"));
        Ok(())
    }

    fn restore_configs(&mut self, i: usize) -> Result<()> {
        let (Some(dir), configs) = (
            self.journal.backup_dir.clone(),
            self.journal.steps[i].configs.clone(),
        ) else {
            return Ok(());
        };
        if configs.is_empty() {
            return Ok(());
        }
        let set = read_backup_manifest(&dir)?;
        let held: Vec<String> = configs
            .into_iter()
            .filter(|c| {
                set.items
                    .iter()
                    .any(|item| matches!(item, Item::Files(f) if &f.source == c))
            })
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let restored = restore_files(self.host, &dir, Some(&held))?;
        self.log.line(&format!(
            "restored {} from backup set {}",
            restored
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            set.id
        ));
        Ok(())
    }

    fn finish_applied(mut self, operation: &str) -> Result<Summary> {
        let mut state = State::load(self.host)?;
        let m = &self.journal.manifest;
        let entry = state
            .channels
            .entry(m.channel.clone())
            .or_insert(ChannelState {
                sequence: m.sequence,
                name: m.name.clone(),
                newest_created: m.created,
            });
        if m.sequence >= entry.sequence {
            entry.sequence = m.sequence;
            entry.name = m.name.clone();
        }
        if m.created > entry.newest_created {
            entry.newest_created = m.created;
        }
        state.history.push(self.history_entry(operation, true));
        state.save(self.host)?;
        self.journal.phase = Phase::Done;
        self.end_run()?;
        self.say("all steps healthy");
        Ok(self.summary(operation, "applied", None))
    }

    fn finish_rolled_back(mut self, operation: &str) -> Result<Summary> {
        let mut state = State::load(self.host)?;
        state.history.push(self.history_entry(operation, false));
        state.save(self.host)?;
        self.end_run()?;
        self.say("rolled back: the host runs what it ran before");
        let next = match operation {
            "rollback" => None,
            _ => Some(format!(
                "the host is back as it was; fix the cause (see {}) before applying again",
                self.journal.log.display()
            )),
        };
        Ok(self.summary(operation, "rolled-back", next))
    }

    /// The `state.json` history entry of this run, applied or rolled back.
    fn history_entry(&self, operation: &str, applied: bool) -> HistoryEntry {
        let m = &self.journal.manifest;
        HistoryEntry {
            at: self.host.now(),
            operation: operation.to_string(),
            name: m.name.clone(),
            channel: m.channel.clone(),
            sequence: m.sequence,
            outcome: if applied { "ok" } else { "rolled-back" }.into(),
            run_id: Some(self.journal.run_id.clone()),
            backup_id: self.journal.backup_id.clone(),
            changes: self.changes(applied),
        }
    }

    /// The run is over: its journal goes to `runs/`, its staging directory away, and
    /// rollback packages older than the last [`KEEP_ROLLBACK_RUNS`] runs are removed
    /// (only the newest run can be rolled back without a newer one in the way).
    fn end_run(&mut self) -> Result<()> {
        self.journal.archive(self.host)?;
        let _ = std::fs::remove_dir_all(self.journal.staging_dir(self.host));
        let dir = self.host.path(ROLLBACK_DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut runs: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            runs.sort();
            let old = runs.len().saturating_sub(KEEP_ROLLBACK_RUNS);
            for run in &runs[..old] {
                if std::fs::remove_dir_all(dir.join(run)).is_ok() {
                    self.log
                        .line(&format!("removed the rollback packages of run {run}"));
                }
            }
        }
        Ok(())
    }

    fn changes(&self, applied: bool) -> Vec<(String, Option<String>, Option<String>)> {
        self.journal
            .steps
            .iter()
            .filter(|s| s.state != StepState::Skipped)
            .flat_map(|s| &s.packages)
            .filter(|p| p.before.as_deref() != Some(&p.after))
            .map(|p| {
                let after = if applied {
                    Some(p.after.clone())
                } else {
                    p.before.clone()
                };
                (p.name.clone(), p.before.clone(), after)
            })
            .collect()
    }

    fn summary(&self, operation: &str, outcome: &str, next: Option<String>) -> Summary {
        Summary {
            operation: operation.to_string(),
            run_id: self.journal.run_id.clone(),
            bundle: self.journal.manifest.name.clone(),
            outcome: outcome.to_string(),
            components: rows(&self.journal.steps),
            backup_id: self.journal.backup_id.clone(),
            backup_dir: self.journal.backup_dir.clone(),
            log: Some(self.journal.log.clone()),
            failure: self.journal.failure.clone(),
            rollback_problems: self.journal.rollback_problems.clone(),
            next,
            commands: Vec::new(),
        }
    }
}

/// A completed run can be rolled back only while the host still runs what it installed.
fn check_still_installed(host: &Host, run: &Journal) -> Result<()> {
    for step in run.steps.iter().filter(|s| s.state == StepState::Healthy) {
        for p in replaced(step) {
            let now = crate::plan::installed_version(host, &p.name);
            if now.as_deref() != Some(&p.after) {
                return Err(Error::Usage(format!(
                    "run {} installed {} {}, but the host now has {}: it changed since; roll back by hand from backup set {}",
                    run.run_id,
                    p.name,
                    p.after,
                    now.as_deref().unwrap_or("none"),
                    run.backup_id.as_deref().unwrap_or("-")
                )));
            }
        }
    }
    Ok(())
}

/// Verify the bundle (into `staging` when given, else writing nothing), plan, run every
/// preflight check (the plan's, rollback sources, health URLs) and show the result.
/// Any failure is exit code 4.
fn verify_and_preflight(
    host: &Host,
    config: &Config,
    opts: &ApplyOptions,
    staging: Option<&Path>,
    operator: &dyn Operator,
    reporter: &dyn Reporter,
) -> Result<(Manifest, Plan, Vec<StepRecord>)> {
    let report = verify_bundle(host, config, &opts.bundle, &opts.verify, staging, reporter)?;
    let manifest: Manifest = report
        .verified
        .as_deref()
        .cloned()
        .expect("a verifying read returns the verified manifest");
    let plan = plan_verified(
        host,
        config,
        &opts.bundle,
        &manifest,
        opts.components.as_deref(),
        opts.path.clone(),
        staging.is_some(),
        reporter,
    )?;
    let steps = step_records(&plan);
    // Previous-role packages are looked up where they will be staged.
    let staged_at = staging.map_or_else(
        || host.path(format!("{STAGING_DIR}/{}", compact_stamp(host.now()))),
        Path::to_path_buf,
    );
    let mut failures = rollback_preflight(host, &manifest, &steps, &staged_at, opts.no_rollback);
    failures.extend(health_preflight(host, config, &steps));
    operator.show_plan(&plan, &failures);
    let total = plan.preflight.failures.len() + failures.len();
    if total > 0 {
        return Err(Error::Preflight { failures: total });
    }
    Ok((manifest, plan, steps))
}

/// `apply --dry-run`: verify (writing nothing), plan, and list every command.
fn dry_run(
    host: &Host,
    config: &Config,
    opts: &ApplyOptions,
    operator: &dyn Operator,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    if let Some(j) = Journal::load(host)? {
        return Err(interrupted(&j));
    }
    let stamp = compact_stamp(host.now());
    let staging = host.path(format!("{STAGING_DIR}/{stamp}"));
    let (manifest, plan, steps) =
        verify_and_preflight(host, config, opts, None, operator, reporter)?;
    let manager = opts
        .service_manager
        .or(config.service_manager)
        .unwrap_or_else(|| ServiceManager::detect(host));
    let mut commands = vec![format!(
        "verify {} into {} (0700)",
        opts.bundle.display(),
        staging.display()
    )];
    if let Some(req) = &plan.backup_request {
        commands.push(format!(
            "back up {} file path(s){} into {}",
            req.configs.len() + req.files.len(),
            req.databases
                .iter()
                .map(|(d, _)| format!(", {} {}", d.kind(), d.display()))
                .collect::<String>(),
            host.path(backup::BACKUP_DIR).display()
        ));
    }
    for step in steps.iter().filter(|s| s.state != StepState::Skipped) {
        for p in replaced(step) {
            let before = p.before.clone().unwrap_or_default();
            let installed = Installed {
                name: p.name.clone(),
                version: before.clone(),
                arch: p.arch.clone(),
            };
            let source = if previous_deb(&manifest, &staging, &p.name, &before).is_some() {
                "the bundle's previous copy"
            } else if apt_cache_has(host, &installed) {
                "the apt cache"
            } else {
                "rebuilt from the dpkg database"
            };
            commands.push(format!(
                "capture {} {before} for rollback from {source}",
                p.name
            ));
        }
    }
    for step in &steps {
        if step.state == StepState::Skipped {
            commands.push(format!(
                "skip step {}: {}",
                step.component,
                step.detail.as_deref().unwrap_or("")
            ));
            continue;
        }
        let debs: Vec<PathBuf> = step
            .packages
            .iter()
            .filter(|p| p.before.as_deref() != Some(&p.after))
            .map(|p| staging.join(&p.file))
            .collect();
        for place in &step.place {
            commands.push(format!(
                "place {} at {} (mode {})",
                staging.join(&place.file).display(),
                place.dest,
                place.mode
            ));
        }
        commands.push(format!(
            "DPKG_FRONTEND_LOCKED=1 {}",
            DpkgCall::install(host, &debs).display()
        ));
        if let Some(service) = &step.service {
            commands.push(match manager.restart_command(service) {
                Some(cmd) => cmd.join(" "),
                None => format!("(service manager none: {service} not restarted)"),
            });
        }
        if let Some(h) = effective_health(host, config, step) {
            commands.push(format!(
                "GET {} until JSON status is one of [{}] (up to {} s)",
                h.url,
                h.json_status.join(", "),
                h.timeout_secs
            ));
        }
    }
    commands.push(format!(
        "record sequence {} of channel {} in {}",
        manifest.sequence,
        manifest.channel,
        host.path(crate::host::STATE_PATH).display()
    ));
    Ok(Summary::without_run(&manifest, "dry-run", &steps, commands))
}
