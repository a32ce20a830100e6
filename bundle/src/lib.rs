//! `ferry-bundle`: the `ferry/1` bundle format.
//!
//! Owns the manifest types and their rules, the deterministic tar writer and the
//! streaming reader that enforces every safety rule and verifies signatures against a
//! trust store. It has no network code and never runs dpkg; it writes only the bundle
//! files it is asked to write and, when extracting, into its own staging directory.

mod error;
pub mod inventory;
pub mod manifest;
pub mod paths;
mod reader;
mod source;
mod time;
mod writer;

pub use error::{Error, Result};
pub use inventory::{InstalledPackage, Inventory, OsRelease};
pub use manifest::{
    Backup, BackupKind, FileEntry, Health, HealthSource, Image, Manifest, Package, Place, Role,
    Step, Target, FORMAT,
};
pub use reader::{
    read_bundle, read_manifest, Check, EmbeddedSignature, Freshness, ReadReport, TrustPolicy,
    UnverifiedBundle, VerifiedManifest,
};
pub use source::BundleSource;
pub use time::Timestamp;
pub use writer::{write_bundle, BundleContents, Compression, WriteOptions};

/// How library code tells the user what is going on; binaries implement it (progress
/// bars on a terminal, nothing otherwise), tests record it. Libraries never print.
pub trait Reporter: Sync {
    /// A named phase begins.
    fn step(&self, _message: &str) {}
    /// Something the operator should know but that does not stop the operation.
    fn warn(&self, _message: &str) {}
    /// Progress of a long operation in bytes.
    fn progress(&self, _label: &str, _done: u64, _total: u64) {}
}

/// A reporter that says nothing.
pub struct NullReporter;

impl Reporter for NullReporter {}

#[cfg(feature = "term")]
mod term;
#[cfg(feature = "term")]
pub use term::TermReporter;
