//! `ferry-install plan`: what applying a bundle would change on this host, and whether
//! the host is fit for it (preflight).
//!
//! The bundle is verified exactly as `ferry-install verify` does, without staging; the
//! host is read with the inventory code (dpkg status and journal, os-release, native
//! architecture). This module only reads: it never writes under the root, never creates
//! a directory, and takes dpkg's locks only for the instant it needs to test them (the
//! way dpkg itself tests them), releasing them at once.

use crate::backup::{estimate, measure_database, CreateRequest, Estimate};
use crate::config::Config;
use crate::host::Host;
use crate::inventory::{dpkg_configure_command, take_inventory, DPKG_UPDATES};
use crate::tools::is_executable;
use crate::verify::{verify_bundle, VerifyRequest};
use crate::{Error, Result};
use ferry_bundle::{Inventory, Manifest, Reporter, Role, Target};
use serde::Serialize;
use std::cmp::Ordering;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// dpkg's frontend lock (apt and dpkg take it first).
pub const DPKG_LOCK_FRONTEND: &str = "/var/lib/dpkg/lock-frontend";
/// dpkg's database lock.
pub const DPKG_LOCK: &str = "/var/lib/dpkg/lock";
/// Where the installer keeps staging, rollback captures and state.
pub const FERRY_VAR: &str = "/var/lib/ferry";

/// The host's identity as the target check sees it.
#[derive(Clone, Debug, Serialize)]
pub struct HostTarget {
    /// os-release `ID`.
    pub distro: String,
    /// os-release `VERSION_CODENAME` (empty when absent).
    pub codename: String,
    /// dpkg's native architecture.
    pub arch: String,
}

/// One package of a step: what the host has and what the bundle brings.
#[derive(Clone, Debug, Serialize)]
pub struct PackageChange {
    /// Package name.
    pub name: String,
    /// Installed version, or `None` when not installed.
    pub from: Option<String>,
    /// The bundle's version.
    pub to: String,
    /// `install`, `upgrade`, `downgrade` or `reinstall`.
    pub change: &'static str,
    /// `target` or `dependency`.
    pub role: &'static str,
    /// Architecture of the bundle's `.deb`.
    pub arch: String,
    /// The `.deb` inside the bundle.
    pub file: String,
    /// Size of the bundle's `.deb`.
    #[serde(skip)]
    pub deb_size: u64,
}

/// One manifest step, as it would run here.
#[derive(Clone, Debug, Serialize)]
pub struct StepPlan {
    /// The step's component.
    pub component: String,
    /// `install` or `skipped`.
    pub action: &'static str,
    /// Why.
    pub reason: String,
    /// The packages it installs (empty when skipped).
    pub packages: Vec<PackageChange>,
}

/// An image the bundle carries.
#[derive(Clone, Debug, Serialize)]
pub struct ImagePlan {
    /// Full reference.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Archive size in bytes.
    pub size: u64,
}

/// A backup that will be taken before installing.
#[derive(Clone, Debug, Serialize)]
pub struct BackupPlan {
    /// `redis`, `postgres`, `mongodb` or `files`.
    pub kind: String,
    /// Where connection details come from.
    pub config: Option<String>,
    /// For `files`: what is copied.
    pub paths: Vec<String>,
    /// For a database: where it connects (no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Bytes it will take, when known before taking it (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_bytes: Option<u64>,
    /// Why an optional backup is left out on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Why a database's size is not known (its server could not be asked; the backup
    /// will meet the same problem, before anything is installed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One failed preflight check.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// `target`, `dpkg-lock`, `dpkg-interrupted`, `disk-space`, `backup-tool`, `service`.
    pub check: &'static str,
    /// What is wrong, with both values where there are two.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

/// The preflight result: every failure, not only the first.
#[derive(Clone, Debug, Serialize)]
pub struct Preflight {
    /// No failure.
    pub ok: bool,
    /// Each failed check.
    pub failures: Vec<Failure>,
}

/// The whole plan, as `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The bundle path given.
    pub bundle: PathBuf,
    /// The bundle's name.
    pub name: String,
    /// The bundle's target.
    pub target: Target,
    /// This host.
    pub host: HostTarget,
    /// Steps in manifest order (after `--components`).
    pub steps: Vec<StepPlan>,
    /// Images carried.
    pub images: Vec<ImagePlan>,
    /// Backups taken before installing.
    pub backups: Vec<BackupPlan>,
    /// The manifest's notes.
    pub notes: Vec<String>,
    /// Preflight result.
    pub preflight: Preflight,
    /// The verified manifest the plan was made from.
    #[serde(skip)]
    pub manifest: Manifest,
    /// Components of the steps that will run (not skipped), in order.
    #[serde(skip)]
    pub running: Vec<String>,
    /// The backup set applying would take, when its connections could be resolved.
    #[serde(skip)]
    pub backup_request: Option<CreateRequest>,
}

/// Verify `bundle`, read the host, and work out the plan and its preflight.
/// `components` filters the steps; `path` is the `PATH` searched for backup tools.
pub fn plan_bundle(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    components: Option<&[String]>,
    path: Option<OsString>,
    reporter: &dyn Reporter,
) -> Result<Plan> {
    // 1. Verify, writing nothing (no staging).
    let report = verify_bundle(host, config, bundle, request, None, reporter)?;
    let manifest: &Manifest = report
        .verified
        .as_deref()
        .unwrap_or(&report.unverified.manifest);
    plan_verified(
        host, config, bundle, manifest, components, path, false, reporter,
    )
}

/// The plan and preflight for a manifest that has already been verified. With
/// `staged`, the payload is already extracted, so the space check leaves it out.
#[allow(clippy::too_many_arguments)]
pub fn plan_verified(
    host: &Host,
    config: &Config,
    bundle: &Path,
    manifest: &Manifest,
    components: Option<&[String]>,
    path: Option<OsString>,
    staged: bool,
    reporter: &dyn Reporter,
) -> Result<Plan> {
    // 2. The steps asked for; an unknown component is a usage error.
    if let Some(wanted) = components {
        let known: Vec<&str> = manifest
            .steps
            .iter()
            .map(|s| s.component.as_str())
            .collect();
        if let Some(bad) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
            return Err(Error::Usage(format!(
                "--components: the bundle has no component {bad:?}; its components are: {}",
                known.join(", ")
            )));
        }
    }

    // 3. The host.
    let inventory = take_inventory(host, reporter)?;
    let host_target = HostTarget {
        distro: inventory.os.id.clone(),
        codename: inventory.os.version_codename.clone().unwrap_or_default(),
        arch: inventory.arch.clone(),
    };

    // 4. What each step would do.
    let mut steps = Vec::new();
    let mut running = Vec::new();
    for step in &manifest.steps {
        if components.is_some_and(|c| !c.contains(&step.component)) {
            continue;
        }
        let packages: Vec<PackageChange> = step
            .packages
            .iter()
            .filter_map(|name| {
                manifest
                    .packages
                    .iter()
                    .find(|p| &p.name == name && p.role != Role::Previous)
            })
            .map(|p| {
                let from = current_version(&inventory, &p.name);
                let change = match from.as_deref().map(|f| compare_versions(f, &p.version)) {
                    None => "install",
                    Some(Ordering::Less) => "upgrade",
                    Some(Ordering::Greater) => "downgrade",
                    Some(Ordering::Equal) => "reinstall",
                };
                PackageChange {
                    name: p.name.clone(),
                    from,
                    to: p.version.clone(),
                    change,
                    role: if p.role == Role::Target {
                        "target"
                    } else {
                        "dependency"
                    },
                    arch: p.arch.clone(),
                    file: p.file.clone(),
                    deb_size: manifest.file(&p.file).map_or(0, |f| f.size),
                }
            })
            .collect();
        let targets: Vec<&PackageChange> = match packages.iter().any(|p| p.role == "target") {
            true => packages.iter().filter(|p| p.role == "target").collect(),
            false => packages.iter().collect(),
        };
        let installed: Vec<&str> = targets
            .iter()
            .filter(|p| p.from.is_some())
            .map(|p| p.name.as_str())
            .collect();
        let plan = if step.only_if_installed && installed.is_empty() {
            StepPlan {
                component: step.component.clone(),
                action: "skipped",
                reason: "skipped: not installed on this host".into(),
                packages: vec![],
            }
        } else {
            running.push(step);
            StepPlan {
                component: step.component.clone(),
                action: "install",
                reason: if installed.is_empty() {
                    "not installed on this host: fresh install".into()
                } else {
                    format!("installed on this host: {}", installed.join(", "))
                },
                packages,
            }
        };
        steps.push(plan);
    }

    // 5. Preflight: every check runs, every failure is kept.
    let mut failures = Vec::new();
    check_target(&manifest.target, &host_target, &mut failures);
    for lock in [DPKG_LOCK_FRONTEND, DPKG_LOCK] {
        check_lock(host, lock, &mut failures);
    }
    check_interrupted(host, &inventory, &mut failures)?;
    let replaced: u64 = steps
        .iter()
        .flat_map(|s| &s.packages)
        .filter(|p| p.from.is_some())
        .map(|p| p.deb_size)
        .sum();
    // The backups: resolving the database connections reads the components' configs.
    let (backup_request, backups) = match CreateRequest::for_bundle(
        host, config, manifest, &running,
    ) {
        Ok(request) => {
            let estimate = estimate(host, &request)?;
            let backups = backup_plans(&request, &estimate, path.as_deref());
            check_backup_tools(&request, path, &mut failures);
            (Some(request), backups)
        }
        Err(e) => {
            failures.push(Failure {
                    check: "backup-source",
                    message: format!("cannot work out what to back up: {e}"),
                    help: "fix the component's configuration or installer.toml so every backup has a connection".into(),
                });
            (None, Vec::new())
        }
    };
    let backup_bytes: u64 = backups.iter().filter_map(|b| b.estimated_bytes).sum();
    check_space(
        host,
        if staged { 0 } else { manifest.payload_size() } + replaced + backup_bytes,
        &mut failures,
    );
    for step in &running {
        if let Some(service) = &step.service {
            check_service(host, &step.component, service, &mut failures);
        }
    }

    Ok(Plan {
        bundle: bundle.to_path_buf(),
        name: manifest.name.clone(),
        target: manifest.target.clone(),
        host: host_target,
        steps,
        images: manifest
            .images
            .iter()
            .map(|i| ImagePlan {
                reference: i.reference.clone(),
                digest: i.digest.clone(),
                size: manifest.file(&i.file).map_or(0, |f| f.size),
            })
            .collect(),
        backups,
        notes: manifest.notes.clone(),
        preflight: Preflight {
            ok: failures.is_empty(),
            failures,
        },
        running: running.iter().map(|s| s.component.clone()).collect(),
        manifest: manifest.clone(),
        backup_request,
    })
}

/// The version of `name` whose files are on the host (installed or half-done; a
/// package reduced to its config files counts as not installed).
/// The version of `name` the host's dpkg database has now (installed or half-done),
/// `None` when it has none or cannot be read.
pub fn installed_version(host: &Host, name: &str) -> Option<String> {
    let (packages, _) = crate::inventory::read_dpkg_database(host).ok()?;
    packages
        .iter()
        .find(|p| p.name == name && !matches!(p.state(), "config-files" | "not-installed"))
        .map(|p| p.version.clone())
}

fn current_version(inventory: &Inventory, name: &str) -> Option<String> {
    inventory
        .packages
        .iter()
        .find(|p| p.name == name && !matches!(p.state(), "config-files" | "not-installed"))
        .map(|p| p.version.clone())
}

fn check_target(target: &Target, host: &HostTarget, failures: &mut Vec<Failure>) {
    for (what, want, have, source) in [
        ("distro", &target.distro, &host.distro, "os-release ID"),
        (
            "codename",
            &target.codename,
            &host.codename,
            "os-release VERSION_CODENAME",
        ),
        ("arch", &target.arch, &host.arch, "dpkg native architecture"),
    ] {
        if want != have {
            let have = if have.is_empty() { "(none)" } else { have };
            failures.push(Failure {
                check: "target",
                message: format!("the bundle targets {what} {want}, but this host is {have} ({source})"),
                help: format!("use a bundle built for this host ({what} {have}): `ferry-build` with the matching target"),
            });
        }
    }
}

/// Test `lock` the way dpkg does: an fcntl write lock on the whole file, taken without
/// waiting and released at once. A missing file is not locked (and is not created).
fn check_lock(host: &Host, lock: &str, failures: &mut Vec<Failure>) {
    let path = host.path(lock);
    match crate::lock::lock_holder(&path) {
        Ok(None) => {}
        Ok(Some(holder)) => failures.push(Failure {
            check: "dpkg-lock",
            message: format!(
                "{} is locked{}: another package manager is running",
                path.display(),
                holder.map_or_else(String::new, |h| format!(" by {h}"))
            ),
            help: "wait for it to finish (apt, dpkg, unattended-upgrades), then run plan again"
                .into(),
        }),
        Err(e) => failures.push(Failure {
            check: "dpkg-lock",
            message: format!("{}: cannot test the lock: {e}", path.display()),
            help: "run as root so the dpkg locks can be tested".into(),
        }),
    }
}

fn check_interrupted(
    host: &Host,
    inventory: &Inventory,
    failures: &mut Vec<Failure>,
) -> Result<()> {
    let fix = format!("run `{}`, then plan again", dpkg_configure_command(host));
    let dir = host.path(DPKG_UPDATES);
    let pending = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                !name.is_empty() && name.as_bytes().iter().all(u8::is_ascii_digit)
            })
            .count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io(&dir, e)),
    };
    if pending > 0 {
        failures.push(Failure {
            check: "dpkg-interrupted",
            message: format!(
                "{}: {pending} journal entr{} not merged: dpkg was interrupted",
                dir.display(),
                if pending == 1 { "y" } else { "ies" }
            ),
            help: fix.clone(),
        });
    }
    let broken: Vec<String> = inventory
        .broken()
        .map(|p| format!("{} {} ({})", p.spec(), p.version, p.state()))
        .collect();
    if !broken.is_empty() {
        failures.push(Failure {
            check: "dpkg-interrupted",
            message: format!(
                "{} package(s) left half-done by dpkg: {}",
                broken.len(),
                broken.join(", ")
            ),
            help: fix,
        });
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// `base` bytes (staging + rollback + backups) plus a 10% margin must fit where
/// `/var/lib/ferry` lives (its nearest existing ancestor under the root).
fn check_space(host: &Host, base: u64, failures: &mut Vec<Failure>) {
    let needed = base + base.div_ceil(10);
    let mut dir = host.path(FERRY_VAR);
    while !dir.exists() && dir != host.root() {
        match dir.parent() {
            Some(p) => dir = p.to_path_buf(),
            None => break,
        }
    }
    match crate::host::available_bytes(&dir) {
        Ok(avail) if avail >= needed => {}
        Ok(avail) => failures.push(Failure {
            check: "disk-space",
            message: format!(
                "{} needs {:.1} MiB (staging, rollback captures and backups, plus 10%), but only {:.1} MiB is available on the filesystem holding {}",
                FERRY_VAR,
                needed as f64 / MIB,
                avail as f64 / MIB,
                dir.display()
            ),
            help: format!("free at least {:.1} MiB there, then plan again", (needed - avail) as f64 / MIB),
        }),
        Err(e) => failures.push(Failure {
            check: "disk-space",
            message: format!("{}: cannot read free space: {e}", dir.display()),
            help: "check that the filesystem is mounted and readable".into(),
        }),
    }
}

fn backup_plans(
    request: &CreateRequest,
    estimate: &Estimate,
    path: Option<&std::ffi::OsStr>,
) -> Vec<BackupPlan> {
    let mut plans = Vec::new();
    if !request.configs.is_empty() || !request.files.is_empty() {
        plans.push(BackupPlan {
            kind: "files".into(),
            config: None,
            paths: request
                .configs
                .iter()
                .chain(&request.files)
                .cloned()
                .collect(),
            source: None,
            estimated_bytes: Some(estimate.files),
            skipped: None,
            note: None,
        });
    }
    for (db, config) in &request.databases {
        let (estimated_bytes, note) = match measure_database(db, path) {
            Ok(size) => (size, None),
            Err(e) => (
                None,
                Some(format!(
                    "could not ask the server for its size: {}",
                    e.to_string().lines().next().unwrap_or_default()
                )),
            ),
        };
        plans.push(BackupPlan {
            kind: db.kind().into(),
            config: config.clone(),
            paths: Vec::new(),
            source: Some(db.display()),
            estimated_bytes,
            skipped: None,
            note,
        });
    }
    for s in &request.skipped {
        plans.push(BackupPlan {
            kind: "skipped".into(),
            config: None,
            paths: vec![s.pattern.clone()],
            source: None,
            estimated_bytes: None,
            skipped: Some(s.reason.clone()),
            note: None,
        });
    }
    plans
}

fn check_backup_tools(
    request: &CreateRequest,
    path: Option<OsString>,
    failures: &mut Vec<Failure>,
) {
    let path = path.unwrap_or_default();
    for (program, package) in request.tools() {
        if !std::env::split_paths(&path).any(|d| is_executable(&d.join(program))) {
            failures.push(Failure {
                check: "backup-tool",
                message: format!(
                    "{program} not found on PATH; a backup before installing needs it"
                ),
                help: format!("install the Debian package {package}"),
            });
        }
    }
}

fn check_service(host: &Host, component: &str, service: &str, failures: &mut Vec<Failure>) {
    let candidates = [
        format!("/etc/systemd/system/{service}.service"),
        format!("/lib/systemd/system/{service}.service"),
        format!("/usr/lib/systemd/system/{service}.service"),
        format!("/etc/init.d/{service}"),
    ];
    if candidates.iter().any(|c| host.path(c).exists()) {
        return;
    }
    failures.push(Failure {
        check: "service",
        message: format!(
            "step {component} restarts service {service}, but no unit file or init script for it exists (looked for {})",
            candidates.join(", ")
        ),
        help: format!("install {service} first, or choose other steps with --components"),
    });
}

/// Compare two Debian versions as dpkg does (`[epoch:]upstream[-revision]`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_version(a);
    let (eb, ub, rb) = split_version(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

fn split_version(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// dpkg's character order: `~` before everything (even the end), then the end, then
/// letters, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (compared by [`order`]) and digit runs
/// (compared numerically).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first == Ordering::Equal {
                first = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first != Ordering::Equal {
            return first;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn versions_compare_like_dpkg() {
        let cases = [
            ("4.0.8", "5.2.5", Less),
            ("5.2.5", "5.2.5", Equal),
            ("5.10", "5.9", Greater),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1.0", "1.0-0", Equal),
            ("1.001", "1.1", Equal),
            ("2.30-1ubuntu1", "2.30-1", Greater),
            ("1.2-3-4", "1.2-3-5", Less),
            ("a", "b", Less),
            ("1.0.", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
