//! Trust stores (the set of public keys a host trusts) and threshold counting.
//!
//! A trust store is loaded from a directory of `*.pub` files (non-recursive, sorted by
//! name, other files ignored) or from a single `.pub` file. Counting signatures toward
//! a threshold is the only way this crate turns signatures into a trust decision: each
//! trusted key counts once, unknown signers are reported but never counted, and a
//! signature that names a trusted key but does not verify aborts the whole check,
//! because a forged or corrupted signature is evidence of tampering.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, KeyId, PublicKey, Signature};

/// The public keys a host trusts, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, Trusted>,
}

#[derive(Clone, Debug)]
struct Trusted {
    key: PublicKey,
    source: Option<PathBuf>,
}

/// The outcome of a met threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThresholdReport {
    /// Trusted keys whose signatures verified, each once, in signature order.
    pub valid: Vec<KeyId>,
    /// Signers not in the trust store, each once (not counted, not an error).
    pub untrusted: Vec<KeyId>,
    /// Trusted keys that signed more than once (counted once).
    pub duplicates: Vec<KeyId>,
    /// The threshold that was met.
    pub threshold: usize,
}

impl TrustStore {
    /// Loads every `*.pub` file of a directory (sorted, non-recursive), or one `.pub`
    /// file. Errors name the offending file.
    pub fn load(path: &Path) -> Result<TrustStore, Error> {
        let meta = fs::metadata(path).map_err(|source| Error::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let mut store = TrustStore::default();
        if !meta.is_dir() {
            store.insert(PublicKey::load(path)?, Some(path.to_owned()))?;
            return Ok(store);
        }
        let list_err = |source| Error::Io {
            action: "list",
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(list_err)? {
            let file = entry.map_err(list_err)?.path();
            // A directory that happens to be called `*.pub` is not a key.
            if file.extension() == Some(OsStr::new("pub")) && !file.is_dir() {
                files.push(file);
            }
        }
        files.sort();
        for file in files {
            let key = PublicKey::load(&file)?;
            store.insert(key, Some(file))?;
        }
        if store.is_empty() {
            return Err(Error::NoTrustedKeys {
                path: path.to_owned(),
            });
        }
        Ok(store)
    }

    /// A trust store holding `keys`. A key whose id is already present is skipped (the
    /// first one wins).
    pub fn from_keys(keys: Vec<PublicKey>) -> TrustStore {
        let mut store = TrustStore::default();
        for key in keys {
            store
                .keys
                .entry(key.id())
                .or_insert(Trusted { key, source: None });
        }
        store
    }

    fn insert(&mut self, key: PublicKey, source: Option<PathBuf>) -> Result<(), Error> {
        let id = key.id();
        match self.keys.get(&id) {
            None => {
                self.keys.insert(id, Trusted { key, source });
            }
            Some(existing) if existing.key == key => {}
            Some(existing) => {
                return Err(Error::ConflictingKeys {
                    key_id: id,
                    first: existing.source.clone().unwrap_or_default(),
                    second: source.unwrap_or_default(),
                })
            }
        }
        Ok(())
    }

    /// The trusted key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id).map(|t| &t.key)
    }

    /// The file a trusted key was loaded from (`None` for [`TrustStore::from_keys`]).
    pub fn source(&self, id: &KeyId) -> Option<&Path> {
        self.keys.get(id).and_then(|t| t.source.as_deref())
    }

    /// All trusted keys, ordered by key id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values().map(|t| &t.key)
    }

    /// How many distinct keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Counts valid signatures over `message` toward `threshold` distinct trusted keys.
    ///
    /// Each trusted key counts at most once (repeats are listed in `duplicates`);
    /// signatures by keys not in the store are listed as untrusted and otherwise
    /// ignored. A signature naming a trusted key that fails verification is an error
    /// ([`Error::VerificationFailed`]) even if the threshold is otherwise met.
    /// Threshold 0 is [`Error::ZeroThreshold`]; more than [`TrustStore::len`] is
    /// [`Error::ThresholdTooHigh`]; too few valid signatures is
    /// [`Error::ThresholdNotMet`].
    pub fn check_threshold(
        &self,
        signatures: &[Signature],
        message: &[u8],
        threshold: usize,
    ) -> Result<ThresholdReport, Error> {
        // 1. The threshold must be satisfiable at all.
        if threshold == 0 {
            return Err(Error::ZeroThreshold);
        }
        if threshold > self.len() {
            return Err(Error::ThresholdTooHigh {
                threshold,
                trusted: self.len(),
            });
        }
        // 2. Verify every signature by a trusted key, before counting anything.
        let mut valid = Vec::new();
        let mut untrusted = Vec::new();
        let mut duplicates = Vec::new();
        for signature in signatures {
            let id = signature.key_id();
            let Some(key) = self.get(&id) else {
                push_once(&mut untrusted, id);
                continue;
            };
            signature.verify(key, message)?;
            if valid.contains(&id) {
                push_once(&mut duplicates, id);
            } else {
                valid.push(id);
            }
        }
        // 3. Count distinct trusted signers.
        if valid.len() < threshold {
            return Err(Error::ThresholdNotMet {
                required: threshold,
                valid,
                untrusted,
                duplicates,
            });
        }
        Ok(ThresholdReport {
            valid,
            untrusted,
            duplicates,
            threshold,
        })
    }
}

fn push_once(ids: &mut Vec<KeyId>, id: KeyId) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}
