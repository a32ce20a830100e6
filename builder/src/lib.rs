//! `ferry-builder`: everything `ferry-build` does on the connected side — parse a spec,
//! fetch what it names, and write one signed bundle.
//!
//! This is the only ferry crate that talks to the outside world; it never touches the
//! host it runs on beyond its output directory and cache.

pub mod apt;
pub mod build;
mod error;
pub mod fetch;
pub mod http;
pub mod keyfile;
pub mod oci;
pub mod profile;
pub mod spec;

pub use error::{Error, Result};
