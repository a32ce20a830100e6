//! `ferry-installer`: everything `ferry-install` does on the air-gapped host.
//!
//! It verifies bundles against the host's trust store and state before anything else,
//! and acts on the host only through [`host::Host`], so every path honours `--root`.
//! It has no outbound network code and links no TLS stack.

pub mod apply;
pub mod backup;
pub mod capture;
pub mod config;
mod error;
pub mod host;
pub mod images;
pub mod inventory;
pub mod lock;
pub mod plan;
pub mod repo;
pub mod secret;
pub mod state;
mod tools;
pub mod tyk;
pub mod verify;

pub use error::{Error, Result};
