//! OpenPGP keyrings that sign APT repositories, and verification of `InRelease` /
//! `Release.gpg` signatures against them.
//!
//! A signature counts only if it was made by a key of the keyring: the primary key or a
//! subkey whose binding signature verifies. Nothing here trusts the network.

use crate::{Error, Result};
use pgp::types::PublicKeyTrait;
use pgp::{Deserializable, SignedPublicKey, StandaloneSignature};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The keys allowed to sign one repository.
#[derive(Debug, Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Load an armored (`.asc`) or binary (`.gpg`) keyring holding one or more keys.
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Keyring::parse(&bytes, path)
    }

    /// Parse keyring bytes; `path` names it in messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Keyring> {
        let bad = |why: String| {
            Error::Repository {
            repo: path.display().to_string(),
            message: format!("unreadable OpenPGP keyring: {why}\nhelp: give the repository's public key, armored (.asc) or binary (.gpg)"),
        }
        };
        let armored = bytes
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take(5)
            .eq(b"-----".iter());
        let parsed: Vec<_> = if armored {
            let (iter, _) = SignedPublicKey::from_armor_many(Cursor::new(bytes.to_vec()))
                .map_err(|e| bad(e.to_string()))?;
            iter.collect()
        } else {
            SignedPublicKey::from_bytes_many(Cursor::new(bytes.to_vec())).collect()
        };
        let mut keys = Vec::new();
        for key in parsed {
            let key = key.map_err(|e| bad(e.to_string()))?;
            // The keyring is the operator's trust anchor (as apt's Signed-By is): primary
            // keys are taken as given; subkeys count only with a valid binding signature.
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(bad("no public key in it".into()));
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// Where the keyring came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fingerprints of the primary keys, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.fingerprint().as_bytes()))
            .collect()
    }

    /// Every key that may sign: primaries and properly bound subkeys, with the
    /// fingerprint of the primary they belong to.
    fn signers(&self) -> Vec<(String, Signer<'_>)> {
        let mut out = Vec::new();
        for key in &self.keys {
            let fpr = hex::encode_upper(key.fingerprint().as_bytes());
            out.push((fpr.clone(), Signer::Primary(&key.primary_key)));
            for sub in &key.public_subkeys {
                if sub.verify(&key.primary_key).is_ok() {
                    out.push((fpr.clone(), Signer::Subkey(sub)));
                }
            }
        }
        out
    }

    /// Verify the signatures of a clear-signed `InRelease`; returns the fingerprint of
    /// the (primary) key that signed.
    pub fn verify_cleartext(&self, sigs: &pgp_cleartext::CleartextSignatures) -> Option<String> {
        self.signers().into_iter().find_map(|(fpr, key)| {
            let n = match key {
                Signer::Primary(k) => sigs.verify(k),
                Signer::Subkey(k) => sigs.verify(k),
            };
            matches!(n, Ok(n) if n > 0).then_some(fpr)
        })
    }

    /// Verify a detached armored signature (`Release.gpg`) over `data`.
    pub fn verify_detached(&self, signature: &[u8], data: &[u8]) -> Option<String> {
        let (sigs, _) =
            StandaloneSignature::from_armor_many(Cursor::new(signature.to_vec())).ok()?;
        let sigs: Vec<StandaloneSignature> = sigs.filter_map(|s| s.ok()).collect();
        self.signers().into_iter().find_map(|(fpr, key)| {
            sigs.iter()
                .any(|s| match key {
                    Signer::Primary(k) => s.verify(k, data).is_ok(),
                    Signer::Subkey(k) => s.verify(k, data).is_ok(),
                })
                .then_some(fpr)
        })
    }
}

/// A key that may have made a signature.
#[derive(Clone, Copy)]
enum Signer<'a> {
    Primary(&'a pgp::packet::PublicKey),
    Subkey(&'a pgp::SignedPublicSubKey),
}
