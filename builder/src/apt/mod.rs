//! APT repositories: fetching `InRelease`, checking its OpenPGP signature, dates and
//! checksums, then the `Packages` indices it lists, verified against it.
//!
//! Everything downloaded here is checked against something signed before it is used:
//! `InRelease` against the repository's keyring, each index against `InRelease`'s
//! SHA256 list, and (later) each `.deb` against its index entry.

pub mod keyring;
pub mod resolve;
pub mod version;

use crate::http::{Cache, Http};
use crate::spec::Repository;
use crate::{Error, Result};
use debian_packaging::control::ControlParagraphReader;
use debian_packaging::dependency::DependencyList;
use debian_packaging::package_version::PackageVersion;
use debian_packaging::repository::release::{ChecksumType, ReleaseFile};
use ferry_bundle::Reporter;
use keyring::Keyring;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read};

/// Largest `InRelease`/`Release` accepted.
const MAX_RELEASE: u64 = 64 << 20;
/// How far in the future a Release `Date` may lie (clock skew).
const DATE_SKEW_SECS: i64 = 600;

/// Options for reading repositories.
#[derive(Clone, Debug)]
pub struct RepoOptions {
    /// dpkg architecture of the target (`all` is always added).
    pub arch: String,
    /// Accept a Release whose Valid-Until has passed.
    pub allow_expired_release: bool,
    /// Repository ids that may be used without a valid signature.
    pub allow_unsigned: Vec<String>,
    /// The current time, Unix seconds.
    pub now: i64,
}

/// One package version available from a repository.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Index of the repository in the spec.
    pub repo: usize,
    /// Package name.
    pub name: String,
    /// Parsed version.
    pub version: PackageVersion,
    /// The version as written in the index.
    pub version_str: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// Path below the repository URL.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// `Pre-Depends` then `Depends`, in that order.
    pub depends: Vec<DependencyList>,
    /// Virtual packages it provides, with optional versions.
    pub provides: Vec<(String, Option<PackageVersion>)>,
    /// `Multi-Arch` (`same`, `foreign`, `allowed`).
    pub multi_arch: Option<String>,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority`.
    pub priority: Option<String>,
}

/// A verified repository and what it offers.
#[derive(Debug)]
pub struct RepoIndex {
    /// The spec's repository id.
    pub id: String,
    /// Base URL with a trailing slash.
    pub url: String,
    /// `URL suite component...` as a sources.list line would say it.
    pub source_line: String,
    /// Fingerprint of the key whose signature was accepted (None: unsigned, allowed).
    pub signed_by: Option<String>,
    /// Release `Date`.
    pub date: Option<String>,
    /// Every package version offered for the target arch and `all`.
    pub candidates: Vec<Candidate>,
}

/// Fetch and verify one repository's Release and Packages indices.
pub fn fetch_index(
    http: &Http,
    cache: &Cache,
    index: usize,
    repo: &Repository,
    keyring: Option<&Keyring>,
    options: &RepoOptions,
    reporter: &dyn Reporter,
) -> Result<RepoIndex> {
    let url = if repo.url.ends_with('/') {
        repo.url.clone()
    } else {
        format!("{}/", repo.url)
    };
    let dists = format!("{url}dists/{}/", repo.suite);
    let err = |message: String| Error::Repository {
        repo: repo.id.clone(),
        message,
    };
    let unsigned_ok = options.allow_unsigned.iter().any(|r| r == &repo.id);

    // 1. InRelease (or Release + Release.gpg), signature checked against the keyring.
    reporter.step(&format!("{}: fetching {dists}InRelease", repo.id));
    let (release, signed_by) = match http.get(&format!("{dists}InRelease"), MAX_RELEASE)? {
        Some(bytes) => {
            let release = ReleaseFile::from_armored_reader(BufReader::new(Cursor::new(bytes)))
                .map_err(|e| {
                    err(format!(
                        "{dists}InRelease is not a clear-signed Release file: {e}"
                    ))
                })?;
            let signer = match (keyring, release.signatures()) {
                (Some(k), Some(sigs)) => k.verify_cleartext(sigs),
                _ => None,
            };
            (release, signer)
        }
        None => {
            let body = http
                .get(&format!("{dists}Release"), MAX_RELEASE)?
                .ok_or_else(|| err(format!("neither {dists}InRelease nor {dists}Release exists\nhelp: check the repository URL and suite {:?}", repo.suite)))?;
            let signer = match (keyring, http.get(&format!("{dists}Release.gpg"), 1 << 20)?) {
                (Some(k), Some(sig)) => k.verify_detached(&sig, &body),
                _ => None,
            };
            let release = ReleaseFile::from_reader(BufReader::new(Cursor::new(body)))
                .map_err(|e| err(format!("{dists}Release is not a Release file: {e}")))?;
            (release, signer)
        }
    };
    if signed_by.is_none() {
        let why = match keyring {
            Some(k) => format!(
                "{dists}InRelease has no valid signature by the keyring {} (keys {})",
                k.path().display(),
                k.fingerprints().join(", ")
            ),
            None => format!("repository {} has no keyring in the spec", repo.id),
        };
        if !unsigned_ok {
            return Err(err(format!(
                "{why}\nhelp: get the repository's signing key and set `keyring` for it; only if you accept an unauthenticated source, pass --allow-unsigned-repository {}",
                repo.id
            )));
        }
        reporter.warn(&format!(
            "UNSIGNED REPOSITORY {} ALLOWED: {why}; its packages are only as trustworthy as the network path they came over",
            repo.id
        ));
    }

    // 2. Dates: not from the future, not past Valid-Until.
    if let Some(date) = release.date() {
        let date = date.map_err(|e| err(format!("Release Date is unreadable: {e}")))?;
        if date.timestamp() > options.now + DATE_SKEW_SECS {
            return Err(err(format!(
                "Release Date {} lies in the future\nhelp: check this machine's clock, or the mirror's",
                release.date_str().unwrap_or_default()
            )));
        }
    }
    if let Some(until) = release.valid_until() {
        let until = until.map_err(|e| err(format!("Release Valid-Until is unreadable: {e}")))?;
        if until.timestamp() < options.now {
            let msg = format!(
                "Release expired (Valid-Until {})",
                release.valid_until_str().unwrap_or_default()
            );
            if !options.allow_expired_release {
                return Err(err(format!(
                    "{msg}: the mirror may be stale or replaying old metadata\nhelp: use an up-to-date mirror; --allow-expired-release overrides this"
                )));
            }
            reporter.warn(&format!(
                "{}: {msg}, allowed by --allow-expired-release",
                repo.id
            ));
        }
    }

    // 3. The SHA256 list of index files.
    let mut listed: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let entries = release
        .iter_index_files(ChecksumType::Sha256)
        .ok_or_else(|| {
            err("the Release file lists no SHA256 checksums; MD5 and SHA1 are not accepted".into())
        })?;
    for entry in entries {
        let entry = entry.map_err(|e| err(format!("unreadable SHA256 line in Release: {e}")))?;
        listed.insert(
            entry.path.to_string(),
            (entry.size, entry.digest.digest_hex()),
        );
    }

    // 4. Packages indices for the target arch and `all`, in every component.
    let mut candidates = Vec::new();
    let mut found_arch = false;
    for component in &repo.components {
        for arch in [options.arch.as_str(), "all"] {
            let base = format!("{component}/binary-{arch}/Packages");
            // Compressed first: archives list the plain index but often do not serve it.
            let listed_variants: Vec<String> = [".xz", ".gz", ""]
                .iter()
                .map(|ext| format!("{base}{ext}"))
                .filter(|p| listed.contains_key(p))
                .collect();
            if listed_variants.is_empty() {
                continue;
            }
            if arch == options.arch {
                found_arch = true;
            }
            let mut text = None;
            let mut last_err = None;
            for path in &listed_variants {
                let (size, sha256) = listed[path].clone();
                match fetch_verified(http, cache, &format!("{dists}{path}"), size, &sha256) {
                    Ok(Some(bytes)) => {
                        text = Some(
                            decompress(path, &bytes)
                                .map_err(|e| err(format!("{dists}{path}: {e}")))?,
                        );
                        break;
                    }
                    Ok(None) => {
                        last_err = Some(format!(
                            "{dists}{path}: 404, listed in the signed Release but not served"
                        ))
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            let Some(text) = text else {
                return Err(err(last_err.unwrap_or_default()));
            };
            let path = &listed_variants[0];
            parse_packages(&text, index, &options.arch, &mut candidates)
                .map_err(|e| err(format!("{dists}{path}: {e}")))?;
        }
    }
    if !found_arch {
        let archs: Vec<&str> = release
            .architectures()
            .map(|a| a.collect())
            .unwrap_or_default();
        return Err(err(format!(
            "no Packages index for architecture {} in components {:?} (the Release lists architectures: {})",
            options.arch,
            repo.components,
            archs.join(" ")
        )));
    }
    // `all` packages appear in every arch's index and in binary-all: keep one copy.
    candidates.sort_by(|a, b| {
        (&a.name, &a.version_str, &a.arch, &a.sha256).cmp(&(
            &b.name,
            &b.version_str,
            &b.arch,
            &b.sha256,
        ))
    });
    candidates.dedup_by(|a, b| {
        a.name == b.name
            && a.version_str == b.version_str
            && a.arch == b.arch
            && a.sha256 == b.sha256
    });
    Ok(RepoIndex {
        id: repo.id.clone(),
        source_line: format!("{url} {} {}", repo.suite, repo.components.join(" ")),
        url,
        signed_by,
        date: release.date_str().map(String::from),
        candidates,
    })
}

/// Get a small file whose size and SHA-256 are known from a signed list, through the
/// cache.
fn fetch_verified(
    http: &Http,
    cache: &Cache,
    url: &str,
    size: u64,
    sha256: &str,
) -> Result<Option<Vec<u8>>> {
    if let Some(p) = cache.lookup(sha256, size)? {
        return std::fs::read(&p).map(Some).map_err(|e| Error::io(&p, e));
    }
    let Some(bytes) = http.get(url, size)? else {
        return Ok(None);
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != size || digest != sha256 {
        return Err(Error::Download {
            url: url.into(),
            message: format!(
                "checksum mismatch: the signed Release says {size} bytes with sha256 {sha256}, got {} bytes with sha256 {digest}\nhelp: the mirror is inconsistent or tampered with; nothing was cached",
                bytes.len()
            ),
        });
    }
    cache.store(sha256, &bytes)?;
    Ok(Some(bytes))
}

fn decompress(path: &str, bytes: &[u8]) -> std::result::Result<String, String> {
    let mut out = String::new();
    let res = if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes).read_to_string(&mut out)
    } else if path.ends_with(".xz") {
        xz2::read::XzDecoder::new_multi_decoder(bytes).read_to_string(&mut out)
    } else {
        Read::read_to_string(&mut &bytes[..], &mut out)
    };
    res.map(|_| out)
        .map_err(|e| format!("cannot decompress: {e}"))
}

/// Parse a Packages index, keeping entries for `arch` and `all`.
pub fn parse_packages(
    text: &str,
    repo: usize,
    arch: &str,
    out: &mut Vec<Candidate>,
) -> std::result::Result<(), String> {
    for (n, para) in ControlParagraphReader::new(BufReader::new(text.as_bytes())).enumerate() {
        let para = para.map_err(|e| format!("paragraph {}: {e}", n + 1))?;
        let field = |name: &str| para.field_str(name).map(str::trim);
        let Some(name) = field("Package") else {
            return Err(format!("paragraph {} has no Package field", n + 1));
        };
        let ctx = |what: &str| format!("package {name}: {what}");
        let pkg_arch = field("Architecture").ok_or_else(|| ctx("no Architecture"))?;
        if pkg_arch != arch && pkg_arch != "all" {
            continue;
        }
        let version_str = field("Version").ok_or_else(|| ctx("no Version"))?;
        let version =
            PackageVersion::parse(version_str).map_err(|e| ctx(&format!("bad Version: {e}")))?;
        let filename = field("Filename").ok_or_else(|| ctx("no Filename"))?;
        if filename.starts_with('/') || filename.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(ctx(&format!("unsafe Filename {filename:?}")));
        }
        let size = field("Size")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ctx("no valid Size"))?;
        let sha256 = field("SHA256")
            .filter(|s| s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| ctx("no SHA256 checksum (MD5 and SHA1 are not accepted)"))?
            .to_ascii_lowercase();
        let mut depends = Vec::new();
        for f in ["Pre-Depends", "Depends"] {
            if let Some(list) = para.field_dependency_list(f) {
                depends.push(list.map_err(|e| ctx(&format!("bad {f}: {e}")))?);
            }
        }
        let mut provides = Vec::new();
        if let Some(list) = para.field_dependency_list("Provides") {
            let list = list.map_err(|e| ctx(&format!("bad Provides: {e}")))?;
            for group in list.requirements() {
                for dep in group.iter() {
                    provides.push((
                        dep.package.clone(),
                        dep.version_constraint.as_ref().map(|c| c.version.clone()),
                    ));
                }
            }
        }
        out.push(Candidate {
            repo,
            name: name.to_string(),
            version,
            version_str: version_str.to_string(),
            arch: pkg_arch.to_string(),
            filename: filename.to_string(),
            size,
            sha256,
            depends,
            provides,
            multi_arch: field("Multi-Arch").map(String::from),
            essential: field("Essential") == Some("yes"),
            priority: field("Priority").map(String::from),
        });
    }
    Ok(())
}
