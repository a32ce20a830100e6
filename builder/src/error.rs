//! The one error type of `ferry-builder`.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while building.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is not valid TOML or has an unknown key.
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },

    /// One field of the spec is wrong.
    #[error("{path}: {field}: {message}")]
    SpecField {
        path: PathBuf,
        field: String,
        message: String,
    },

    /// A repository could not be trusted or read.
    #[error("repository {repo}: {message}")]
    Repository { repo: String, message: String },

    /// A download failed.
    #[error("{url}: {message}")]
    Download { url: String, message: String },

    /// A container image could not be resolved or fetched.
    #[error("image {reference}: {message}")]
    Image { reference: String, message: String },

    /// Package selection or dependency resolution failed.
    #[error("{0}")]
    Resolve(String),

    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Key handling failed.
    #[error(transparent)]
    Keys(#[from] ferry_keys::Error),

    /// Writing or reading a bundle failed.
    #[error(transparent)]
    Bundle(#[from] ferry_bundle::Error),

    /// A bad option value.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
