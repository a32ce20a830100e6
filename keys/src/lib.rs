//! `ferry-keys`: all of ferry's cryptography, in minisign's exact file formats.
//!
//! This crate owns Ed25519 key pairs ([`SecretKey`], [`PublicKey`]) and their key ids
//! ([`KeyId`]), prehashed minisign signatures ([`Signature`]), trust stores and
//! threshold counting ([`TrustStore`]). Files it writes are read by the stock
//! `minisign` tool and vice versa, so operators can check a ferry signature without
//! ferry (`minisign -V -p key.pub -m manifest.json -x KEYID.minisig`) and sign with a
//! key made by `minisign -G`.
//!
//! It must never print, never touch the network, and never put secret material (key
//! bytes, passphrases, secret-key file text) into an error or `Debug` output.
//! Verification is strict Ed25519 (`verify_strict`) and its failures are opaque.
//!
//! ```
//! use ferry_keys::{SecretKey, Signature, TrustStore};
//!
//! let key = SecretKey::generate();
//! let manifest = br#"{"format":"ferry/1"}"#;
//! let sig = key.sign(manifest, "ferry/1 name=demo channel=demo sequence=1", "ferry")?;
//! let sig = Signature::parse(&sig.to_file_string())?;
//! let trust = TrustStore::from_keys(vec![key.public_key()]);
//! let report = trust.check_threshold(&[sig], manifest, 1)?;
//! assert_eq!(report.valid, [key.id()]);
//! # Ok::<(), ferry_keys::Error>(())
//! ```

mod error;
mod keyid;
mod public;
mod secret;
mod signature;
mod text;
mod trust;

pub use error::Error;
pub use keyid::KeyId;
pub use public::PublicKey;
pub use secret::{KdfLimits, SecretKey};
pub use signature::{Signature, MAX_TRUSTED_COMMENT, MAX_UNTRUSTED_COMMENT};
pub use trust::{ThresholdReport, TrustStore};
pub use zeroize::Zeroizing;
