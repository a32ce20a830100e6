//! The one error type of `ferry-installer`.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong on the host side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `installer.toml` is unreadable or invalid.
    #[error("{path}: {message}\nhelp: fix the file or pass --config with another one")]
    Config { path: PathBuf, message: String },

    /// `state.json` is unreadable or invalid.
    #[error("{path}: {message}\nhelp: the host state is damaged; restore it from backup or move it aside (replay protection restarts from empty)")]
    State { path: PathBuf, message: String },

    /// The trust store could not be loaded (counts as a verification failure: no key is
    /// trusted, so nothing can be verified).
    #[error("trust store {path}: {source}")]
    Trust {
        path: PathBuf,
        #[source]
        source: ferry_keys::Error,
    },

    /// A detached signature file could not be read.
    #[error("{path}: {message}")]
    Signature { path: PathBuf, message: String },

    /// Reading or verifying the bundle failed.
    #[error(transparent)]
    Bundle(#[from] ferry_bundle::Error),

    /// The host has no dpkg status database.
    #[error("{path}: not found: no dpkg status database here\nhelp: is this a Debian/Ubuntu system? with --root, point at the root of one")]
    NoDpkgDatabase { path: PathBuf },

    /// A file of the dpkg database is malformed (dpkg itself would refuse it).
    #[error("{path}:{line}: {message}\nhelp: the dpkg database is damaged; `dpkg --audit` reports the same, and dpkg keeps older copies of the status file in /var/backups/dpkg.status.*")]
    DpkgDatabase {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// Neither os-release file exists.
    #[error("{path}: {message}\nhelp: every current Debian/Ubuntu ships /usr/lib/os-release (package base-files); with --root, point at the root of such a system")]
    OsRelease { path: PathBuf, message: String },

    /// dpkg's native architecture could not be found by any means.
    #[error("cannot determine the native dpkg architecture of {root}: {message}\nhelp: install dpkg on this machine (Debian package dpkg), or take the inventory on the target host itself")]
    NativeArch { root: PathBuf, message: String },

    /// A program a command needs is not on `PATH`.
    #[error("{program} not found on PATH; it is needed {purpose}\nhelp: install the Debian package {package}")]
    ToolMissing {
        program: String,
        package: String,
        purpose: String,
    },

    /// `images load` found neither docker nor podman.
    #[error("no container runtime found: neither docker nor podman is on PATH\nhelp: install the Debian package docker.io or podman, or push the images to a registry with `ferry-install images push`")]
    NoRuntime,

    /// An external program (docker, podman, skopeo) failed.
    #[error("{what} failed: `{command}` ended with {status}\n{detail}\nhelp: {help}")]
    Command {
        what: String,
        command: String,
        status: String,
        detail: String,
        help: String,
    },

    /// The registry holds another manifest than the one the bundle records.
    #[error("{reference}: the registry reports digest {found} for {destination}, but the bundle records {expected}\nhelp: the registry now holds that other manifest under {destination}; the image changed on its way there. Check that nothing else pushes to {destination}, and that the bundle's image archive carries its original manifest (format docker-archive+oci)")]
    DigestMismatch {
        reference: String,
        destination: String,
        expected: String,
        found: String,
    },

    /// An image entry of a verified manifest cannot be handled.
    #[error("{file}: {message}")]
    Image { file: String, message: String },

    /// `plan` found the host unfit; the failures were reported with the plan (exit code 4).
    #[error("preflight failed: {failures} check(s) failed; nothing was touched")]
    Preflight { failures: usize },

    /// A backup set could not be made, read or restored from.
    #[error("{path}: {message}\nhelp: {help}")]
    Backup {
        path: PathBuf,
        message: String,
        help: String,
    },

    /// Not enough free space for what is about to be written (exit code 4: nothing was
    /// written).
    #[error("{path}: not enough free space: {what} need {:.1} MiB ({needed} bytes), {:.1} MiB ({available} bytes) available\nhelp: free at least {:.1} MiB there, or write elsewhere (--dest, or backup_dir in installer.toml)", *needed as f64 / 1048576.0, *available as f64 / 1048576.0, needed.saturating_sub(*available) as f64 / 1048576.0)]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
        what: String,
    },

    /// A lock another process holds (exit code 4: nothing was touched).
    #[error("{path} is locked by {holder}\nhelp: {help}")]
    Locked {
        path: PathBuf,
        holder: String,
        help: String,
    },

    /// The operator did not confirm the plan.
    #[error("not confirmed; nothing was changed")]
    NotConfirmed,

    /// A run is interrupted: its journal exists (exit code 4: nothing was touched).
    #[error("run {run_id} did not finish (journal /var/lib/ferry/journal.json, phase {phase})\nhelp: `ferry-install status` shows where it stopped; `ferry-install resume` continues it, `ferry-install rollback` puts the host back")]
    Interrupted { run_id: String, phase: String },

    /// `resume` or `rollback` found nothing to act on.
    #[error("nothing to {what}: no interrupted run, and no applied run to go back from\nhelp: `ferry-install status` shows the last runs")]
    NothingToRecover { what: String },

    /// A health check did not pass.
    #[error("health check failed: {message}")]
    Health { message: String },

    /// No rollback package could be captured for an installed package, or one is missing.
    #[error("rollback package for {package}: {message}\nhelp: {help}")]
    Capture {
        package: String,
        message: String,
        help: String,
    },

    /// A bad command-line value the argument parser could not check (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit code DESIGN.md assigns to this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Bundle(e) if e.is_verification_failure() => 3,
            Error::Trust { .. } | Error::Signature { .. } => 3,
            Error::Usage(_) => 2,
            Error::Preflight { .. }
            | Error::NoSpace { .. }
            | Error::Locked { .. }
            | Error::Interrupted { .. } => 4,
            _ => 1,
        }
    }
}
