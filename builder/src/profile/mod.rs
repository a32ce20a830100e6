//! Built-in profiles: product knowledge that turns a few flags into an ordinary spec.
//!
//! A profile never builds anything itself. It writes a spec (TOML) that
//! [`Spec::parse`](crate::spec::Spec::parse) reads like a hand-written one, so what it
//! decided can be reviewed, edited and rebuilt with `ferry-build build`.

pub mod plugin_bundle;
pub mod tyk;
