//! From spec to verified `.deb` files: read every repository, choose versions, close
//! over dependencies, write or honour the lockfile, and download in parallel into the
//! content-addressed cache.

use crate::apt::keyring::Keyring;
use crate::apt::resolve::{Baseline, Resolver, Universe};
use crate::apt::version::VersionReq;
use crate::apt::{fetch_index, RepoIndex, RepoOptions};
use crate::http::{Cache, Http};
use crate::spec::Spec;
use crate::{Error, Result};
use debian_packaging::dependency::DependencyList;
use debian_packaging::package_version::PackageVersion;
use ferry_bundle::inventory::Inventory;
use ferry_bundle::{Reporter, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Options shared by `resolve` and `build`.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Parallel downloads.
    pub jobs: usize,
    /// Cache directory.
    pub cache: PathBuf,
    /// `--inventory HOST.json`.
    pub inventory: Option<PathBuf>,
    /// Repository ids allowed without a valid signature.
    pub allow_unsigned: Vec<String>,
    /// Accept expired Release files.
    pub allow_expired_release: bool,
    /// How to reach container registries.
    pub registries: crate::oci::RegistryOptions,
}

/// Docker's name for a dpkg architecture.
pub fn oci_arch(dpkg_arch: &str) -> String {
    match dpkg_arch {
        "armhf" => "arm/v7".into(),
        "armel" => "arm/v5".into(),
        "i386" => "386".into(),
        "ppc64el" => "ppc64le".into(),
        other => other.into(),
    }
}

/// Resolve the spec's images (manifests only; raw manifests go into the cache).
pub fn resolve_images(
    spec: &Spec,
    options: &FetchOptions,
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<Vec<crate::oci::LockedImage>> {
    if spec.images.is_empty() {
        return Ok(vec![]);
    }
    let registry = crate::oci::Registry::new(options.registries.clone())?;
    let mut out = Vec::new();
    for req in &spec.images {
        let platform = req
            .platform
            .clone()
            .unwrap_or_else(|| format!("linux/{}", oci_arch(&spec.target.arch)));
        reporter.step(&format!(
            "image {}: resolving for {platform}",
            req.reference
        ));
        let (locked, manifest) = registry.resolve(&req.reference, &platform)?;
        cache.store(locked.digest.trim_start_matches("sha256:"), &manifest)?;
        out.push(locked);
    }
    Ok(out)
}

/// The lockfile: exactly what a build fetches.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Lockfile format version.
    pub version: u32,
    /// SHA-256 of the spec file it was resolved from.
    pub spec_sha256: String,
    /// SHA-256 of the inventory used as baseline, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_sha256: Option<String>,
    /// What was assumed present on the target.
    pub baseline: String,
    /// Repositories as they were read.
    #[serde(default, rename = "repository")]
    pub repositories: Vec<LockedRepository>,
    /// Every package to fetch.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
    /// Every container image, resolved to one platform's manifest.
    #[serde(default, rename = "image")]
    pub images: Vec<crate::oci::LockedImage>,
}

/// A repository in the lockfile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedRepository {
    /// Spec id.
    pub id: String,
    /// `URL suite components`.
    pub source: String,
    /// Fingerprint of the key that signed its Release (absent: allowed unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Release `Date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Primary fingerprints of the keyring the spec gave for it (the keys it trusted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyring: Vec<String>,
}

/// A package in the lockfile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
    /// Repository id.
    pub repository: String,
    /// Full download URL.
    pub url: String,
    /// `target`, `dependency` or `previous`.
    pub role: Role,
    /// Why it is here.
    pub reason: String,
    /// The requested package whose closure pulled it in.
    pub root: String,
}

impl LockedPackage {
    /// Path inside the bundle, apt's naming with the epoch colon escaped.
    pub fn bundle_path(&self) -> String {
        ferry_bundle::paths::escape_deb_name(&format!(
            "debs/{}_{}_{}.deb",
            self.name, self.version, self.arch
        ))
    }
}

impl Lock {
    /// `SPEC.lock` beside the spec.
    pub fn path_for(spec: &Path) -> PathBuf {
        let mut s = spec.as_os_str().to_owned();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Read a lockfile.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: format!(
                "{}\nhelp: regenerate it with `ferry-build resolve`",
                e.to_string().trim_end()
            ),
        })
    }

    /// The lockfile text.
    pub fn to_toml(&self) -> String {
        format!(
            "# Written by ferry-build resolve. `ferry-build build` fetches exactly this.\n{}",
            toml::to_string_pretty(self).expect("lock serializes")
        )
    }
}

/// SHA-256 of a file's bytes (spec, inventory).
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Read every repository and resolve the spec's packages into a lock.
pub fn resolve(
    spec: &Spec,
    options: &FetchOptions,
    http: &Http,
    cache: &Cache,
    now: i64,
    reporter: &dyn Reporter,
) -> Result<Lock> {
    let repo_options = RepoOptions {
        arch: spec.target.arch.clone(),
        allow_expired_release: options.allow_expired_release,
        allow_unsigned: options.allow_unsigned.clone(),
        now,
    };
    for id in &options.allow_unsigned {
        if !spec.repositories.iter().any(|r| &r.id == id) {
            return Err(Error::Usage(format!(
                "--allow-unsigned-repository {id}: the spec has no repository with that id"
            )));
        }
    }
    // 1. Every repository, verified.
    let mut indices: Vec<RepoIndex> = Vec::new();
    let mut keyrings: Vec<Vec<String>> = Vec::new();
    for (i, repo) in spec.repositories.iter().enumerate() {
        let keyring = repo
            .keyring
            .as_ref()
            .map(|k| Keyring::load(&spec.resolve_path(k)))
            .transpose()?;
        keyrings.push(
            keyring
                .as_ref()
                .map(Keyring::fingerprints)
                .unwrap_or_default(),
        );
        indices.push(fetch_index(
            http,
            cache,
            i,
            repo,
            keyring.as_ref(),
            &repo_options,
            reporter,
        )?);
    }
    let candidates = indices
        .iter()
        .flat_map(|i| i.candidates.iter().cloned())
        .collect();
    let universe = Universe::new(candidates, &spec.target.arch);

    // 2. The baseline: the target's inventory, or the essential set.
    let (baseline, inventory_sha256) = match &options.inventory {
        Some(path) => (
            inventory_baseline(path, &spec.target.arch)?,
            Some(file_sha256(path)?),
        ),
        None => (Baseline::essential(&universe), None),
    };
    if !spec.packages.is_empty() {
        reporter.step(&format!("baseline: {}", baseline.source));
    }

    // 3. Requested packages, then their closure.
    let mut resolver = Resolver::new(&universe, baseline);
    for request in &spec.packages {
        let req = VersionReq::parse(request.version.as_deref()).map_err(|e| {
            Error::Resolve(format!(
                "{}: package {}: {e}",
                spec.path.display(),
                request.name
            ))
        })?;
        let repo = request.repository.as_ref().map(|id| {
            spec.repositories
                .iter()
                .position(|r| &r.id == id)
                .expect("checked by the spec")
        });
        let idx = universe.newest(&request.name, &req, repo).ok_or_else(|| {
            not_found(
                &universe,
                &request.name,
                &req,
                repo.map(|r| spec.repositories[r].id.as_str()),
            )
        })?;
        resolver
            .add_root(idx, Role::Target, "named in the spec", request.dependencies)
            .map_err(|e| Error::Resolve(e.0))?;
        if let Some(prev) = &request.previous {
            let preq = VersionReq::parse(Some(prev))
                .map_err(|e| Error::Resolve(format!("package {} previous: {e}", request.name)))?;
            let pidx = universe
                .newest(&request.name, &preq, repo)
                .ok_or_else(|| not_found(&universe, &request.name, &preq, None))?;
            if universe.candidates[pidx].version == universe.candidates[idx].version {
                return Err(Error::Resolve(format!(
                    "package {}: previous = {prev:?} is the version being installed; name the version the hosts run now",
                    request.name
                )));
            }
            resolver
                .add_root(
                    pidx,
                    Role::Previous,
                    &format!("previous version of {}, for offline rollback", request.name),
                    false,
                )
                .map_err(|e| Error::Resolve(e.0))?;
        }
    }

    let baseline_desc = resolver.baseline().source.clone();
    let mut packages: Vec<LockedPackage> = resolver
        .chosen
        .values()
        .map(|c| {
            let cand = &universe.candidates[c.candidate];
            let repo = &indices[cand.repo];
            LockedPackage {
                name: cand.name.clone(),
                version: cand.version_str.clone(),
                arch: cand.arch.clone(),
                size: cand.size,
                sha256: cand.sha256.clone(),
                repository: repo.id.clone(),
                url: format!("{}{}", repo.url, cand.filename),
                role: c.role,
                reason: c.reason.clone(),
                root: c.root.clone(),
            }
        })
        .collect();
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let images = resolve_images(spec, options, cache, reporter)?;
    Ok(Lock {
        images,
        version: 1,
        spec_sha256: file_sha256(&spec.path)?,
        inventory_sha256,
        baseline: baseline_desc,
        repositories: indices
            .iter()
            .zip(keyrings)
            .map(|(i, keyring)| LockedRepository {
                id: i.id.clone(),
                source: i.source_line.clone(),
                signed_by: i.signed_by.clone(),
                date: i.date.clone(),
                keyring,
            })
            .collect(),
        packages,
    })
}

fn not_found(universe: &Universe, name: &str, req: &VersionReq, repo: Option<&str>) -> Error {
    let versions: Vec<String> = universe
        .versions(name, None)
        .iter()
        .map(|c| c.version_str.clone())
        .collect();
    let place = repo.map_or_else(String::new, |r| format!(" in repository {r}"));
    if versions.is_empty() {
        Error::Resolve(format!(
            "package {name} does not exist{place} for this architecture\nhelp: check the name and the [[repository]] entries"
        ))
    } else {
        Error::Resolve(format!(
            "package {name}: no version matches {req}{place}; available: {}\nhelp: pick one of those versions",
            versions.join(", ")
        ))
    }
}

/// Build a baseline from `ferry-install inventory` output.
pub fn inventory_baseline(path: &Path, arch: &str) -> Result<Baseline> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let inv = Inventory::parse(&bytes)
        .map_err(|e| Error::Usage(format!("{}: {}", path.display(), e.0)))?;
    if inv.arch != arch {
        return Err(Error::Usage(format!(
            "{}: the host is {} but the spec targets {arch}\nhelp: use the inventory of a host of the target architecture",
            path.display(),
            inv.arch
        )));
    }
    let mut base = Baseline::new(String::new());
    for p in inv.installed() {
        let version = PackageVersion::parse(&p.version).map_err(|e| {
            Error::Usage(format!(
                "{}: package {} has version {:?}: {e}",
                path.display(),
                p.name,
                p.version
            ))
        })?;
        let mut provides = Vec::new();
        if let Some(text) = &p.provides {
            if let Ok(list) = DependencyList::parse(text) {
                for group in list.requirements() {
                    for d in group.iter() {
                        provides.push((
                            d.package.clone(),
                            d.version_constraint.as_ref().map(|c| c.version.clone()),
                        ));
                    }
                }
            }
        }
        base.add(
            &p.name,
            version,
            &p.arch,
            p.multi_arch.as_deref(),
            &provides,
        );
    }
    base.source = format!(
        "the inventory {} of {} ({} installed packages)",
        path.display(),
        inv.hostname.as_deref().unwrap_or("the target"),
        base.len()
    );
    Ok(base)
}

/// Download every package of the lock into the cache (in parallel, resuming, verified);
/// returns the cache path of each, in lock order.
pub fn download_all(
    lock: &Lock,
    jobs: usize,
    http: &Http,
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<Vec<PathBuf>> {
    let total: u64 = lock.packages.iter().map(|p| p.size).sum();
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PathBuf>>>> =
        Mutex::new(lock.packages.iter().map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let fetched = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64).min(lock.packages.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(p) = lock.packages.get(i) else { break };
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let result = (|| -> Result<PathBuf> {
                    if let Some(path) = cache.lookup(&p.sha256, p.size)? {
                        let d = done.fetch_add(p.size, Ordering::Relaxed) + p.size;
                        reporter.progress("downloading", d, total);
                        return Ok(path);
                    }
                    let progress = |n: u64| {
                        let d = done.fetch_add(n, Ordering::Relaxed) + n;
                        reporter.progress("downloading", d, total);
                    };
                    http.download(
                        &p.url,
                        &cache.partial(&p.sha256),
                        p.size,
                        &p.sha256,
                        &progress,
                    )
                    .map_err(|e| match e {
                        Error::Download { url, message } => Error::Download {
                            url,
                            message: format!("{} {}: {message}", p.name, p.version),
                        },
                        other => other,
                    })?;
                    fetched.fetch_add(1, Ordering::Relaxed);
                    let path = cache.commit(&p.sha256)?;
                    reporter.step(&format!(
                        "fetched {} {} {} ({} bytes)",
                        p.name, p.version, p.arch, p.size
                    ));
                    Ok(path)
                })();
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().expect("results lock")[i] = Some(result);
            });
        }
    });
    // Report the failure that stopped the downloads, not a package it kept from starting.
    let results = results.into_inner().expect("results lock");
    let mut out = Vec::new();
    let mut first_error = None;
    let mut skipped = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(p)) => out.push(p),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {
                skipped.get_or_insert(i);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(i) = skipped {
        return Err(Error::Usage(format!(
            "download of {} was not attempted",
            lock.packages[i].name
        )));
    }
    reporter.step(&format!(
        "{} package(s): {} downloaded, {} from the cache",
        lock.packages.len(),
        fetched.load(Ordering::Relaxed),
        lock.packages.len() - fetched.load(Ordering::Relaxed)
    ));
    Ok(out)
}
