//! The one error type of `ferry-bundle`.
//!
//! Every message names the bundle entry, path or key it is about, says what was expected
//! and what was found, and where there is a next step, ends with a `help:` line.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while writing, reading or verifying a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle breaks a rule of the `ferry/1` format or does not match its manifest.
    /// Always a verification failure (exit code 3).
    #[error("{entry}: {reason}")]
    Format { entry: String, reason: String },

    /// The manifest could not be parsed or breaks a manifest rule (exit code 3).
    #[error("ferry/manifest.json: {0}")]
    Manifest(String),

    /// Signatures, trust or freshness checks failed (exit code 3).
    #[error(transparent)]
    Keys(#[from] ferry_keys::Error),

    /// A signature's trusted comment does not describe this manifest (exit code 3).
    #[error(
        "signature by key {key_id}: trusted comment is \"{found}\" but the manifest says \"{expected}\"\nhelp: the signature was made for another bundle; rebuild or re-sign this one"
    )]
    TrustedComment {
        key_id: String,
        expected: String,
        found: String,
    },

    /// The bundle's `expires` lies in the past (exit code 3).
    #[error(
        "bundle {name} expired at {expires} (checked against {now})\nhelp: build a fresh bundle; expiry protects hosts from stale, possibly vulnerable payloads"
    )]
    Expired {
        name: String,
        expires: String,
        now: String,
    },

    /// The bundle's sequence is lower than one already applied for its channel (exit code 3).
    #[error(
        "bundle {name} has sequence {sequence} but this host already applied sequence {applied} for channel {channel}\nhelp: this is an older bundle being replayed; use the newest bundle for this channel, or pass --allow-replay if a downgrade is really intended"
    )]
    Replayed {
        name: String,
        channel: String,
        sequence: u64,
        applied: u64,
    },

    /// Reading the bundle file itself failed (exit code 1 unless it is a truncation, which
    /// is reported as [`Error::Format`]).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A bad argument or option (exit code 2 in the binaries' terms is reserved for clap,
    /// so this is exit code 1 with a help line).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Shorthand for a format violation tied to one entry.
    pub(crate) fn format(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an I/O error tied to a path.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when this error means "the bundle failed verification" (exit code 3): the
    /// bundle, its signatures or its freshness are at fault, not the machine.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Error::Format { .. }
            | Error::Manifest(_)
            | Error::TrustedComment { .. }
            | Error::Expired { .. }
            | Error::Replayed { .. } => true,
            Error::Keys(e) => e.is_verification_failure(),
            Error::Io { .. } | Error::Usage(_) => false,
        }
    }
}
