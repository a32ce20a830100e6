//! Verifying a bundle on this host: the trust store and threshold from the command line
//! or `installer.toml`, detached co-signatures, and the host's replay/expiry state.
//! Verification only reads: it never writes to the host.

use crate::config::Config;
use crate::host::Host;
use crate::state::State;
use crate::{Error, Result};
use ferry_bundle::{read_bundle, BundleSource, Check, ReadReport, Reporter, TrustPolicy};
use ferry_keys::{Signature, TrustStore};
use std::path::{Path, PathBuf};

/// What the operator asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct VerifyRequest {
    /// `--trust PATH` (a real path, not under `--root`).
    pub trust: Option<PathBuf>,
    /// `--signature FILE`, repeatable.
    pub signatures: Vec<PathBuf>,
    /// `--threshold N`.
    pub threshold: Option<usize>,
    /// `--allow-replay`.
    pub allow_replay: bool,
}

/// Verify `bundle` against the host's trust and state, extracting into `staging` if set.
pub fn verify_bundle(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    staging: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<ReadReport> {
    let trust_path = request
        .trust
        .clone()
        .unwrap_or_else(|| config.trust_path(host));
    let trust = TrustStore::load(&trust_path).map_err(|source| Error::Trust {
        path: trust_path.clone(),
        source,
    })?;
    let threshold = request.threshold.or(config.threshold).unwrap_or(1);
    let mut detached = Vec::new();
    for path in &request.signatures {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Signature {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let sig = Signature::parse(&text).map_err(|e| Error::Signature {
            path: path.clone(),
            message: e.to_string(),
        })?;
        detached.push(sig);
    }
    let state = State::load(host)?;
    let source = BundleSource::open(bundle)?;
    let policy = TrustPolicy {
        trust: &trust,
        threshold,
        detached,
        freshness: state.freshness(host.now(), request.allow_replay),
    };
    let report = read_bundle(&source, Check::Verify(policy), staging, reporter)?;
    for w in &report.warnings {
        reporter.warn(w);
    }
    Ok(report)
}
