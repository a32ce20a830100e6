//! Turning a checked spec into a signed bundle on disk.

use crate::fetch::{download_all, file_sha256, resolve, FetchOptions, Lock};
use crate::http::{Cache, Http};
use crate::spec::Spec;
use crate::{Error, Result};
use ferry_bundle::{
    write_bundle, BundleContents, Compression, FileEntry, Image, Manifest, Package, Reporter, Role,
    Step, Target, Timestamp, FORMAT,
};
use ferry_keys::SecretKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Options of `ferry-build build`.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// gzip or none.
    pub compression: Compression,
    /// Split size in bytes.
    pub split: Option<u64>,
    /// Build time; `SOURCE_DATE_EPOCH` or now.
    pub created: Timestamp,
    /// How packages are fetched.
    pub fetch: FetchOptions,
}

/// The wall clock for Release date checks (never `SOURCE_DATE_EPOCH`).
fn created_now() -> i64 {
    Timestamp::now().unix() as i64
}

/// Manifest `packages` from the lock, and the spec's steps with each dependency attached
/// to the first step that needs it, before that step's own packages.
pub fn manifest_packages(spec: &Spec, lock: &Lock) -> (Vec<Package>, Vec<Step>) {
    let repo_line = |id: &str| {
        lock.repositories
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| id.to_string(), |r| r.source.clone())
    };
    let packages = lock
        .packages
        .iter()
        .map(|p| Package {
            name: p.name.clone(),
            version: p.version.clone(),
            arch: p.arch.clone(),
            file: p.bundle_path(),
            repository: repo_line(&p.repository),
            role: p.role,
        })
        .collect();
    let mut attached = std::collections::BTreeSet::new();
    let mut steps = spec.steps.clone();
    for step in &mut steps {
        let mut deps: Vec<String> = lock
            .packages
            .iter()
            .filter(|p| {
                p.role == Role::Dependency
                    && step.packages.contains(&p.root)
                    && !attached.contains(&p.name)
            })
            .map(|p| p.name.clone())
            .collect();
        deps.sort();
        deps.dedup();
        attached.extend(deps.iter().cloned());
        deps.extend(step.packages.iter().cloned());
        step.packages = deps;
    }
    (packages, steps)
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildOutput {
    /// The bundle file, or its parts.
    pub files: Vec<PathBuf>,
    /// The manifest inside.
    pub manifest: Manifest,
    /// SHA-256 of the whole bundle byte stream (all parts concatenated).
    pub sha256: String,
    /// Total size on disk.
    pub size: u64,
    /// The lockfile that was followed, if any.
    pub lock: Option<PathBuf>,
}

/// The build time: `SOURCE_DATE_EPOCH` if set (reproducible builds), else now.
pub fn build_time() -> Result<Timestamp> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<u64>().map(Timestamp).map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
            ))
        }),
        Err(_) => Ok(Timestamp::now()),
    }
}

/// Build the spec into `out_dir`, signed by `key`.
pub fn build(
    spec: &Spec,
    key: &SecretKey,
    out_dir: &Path,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildOutput> {
    let mut packages_lock: Option<Lock> = None;
    // 1. Packages and images: from the lockfile if there is one, else resolved now;
    //    then fetched into the cache, every byte checked against what was signed.
    let mut debs: Vec<(FileEntry, PathBuf)> = Vec::new();
    let mut image_entries: Vec<Image> = Vec::new();
    let mut lock_used = None;
    if !spec.packages.is_empty() || !spec.images.is_empty() {
        let http = Http::new()?;
        let cache = Cache::open(&options.fetch.cache)?;
        let lock_path = Lock::path_for(&spec.path);
        let lock = if lock_path.exists() {
            let lock = Lock::load(&lock_path)?;
            let spec_sha = file_sha256(&spec.path)?;
            let inv_sha = options
                .fetch
                .inventory
                .as_deref()
                .map(file_sha256)
                .transpose()?;
            if lock.spec_sha256 != spec_sha
                || (inv_sha.is_some() && inv_sha != lock.inventory_sha256)
            {
                return Err(Error::Usage(format!(
                    "{} is stale: the spec or inventory changed since it was written\nhelp: run `ferry-build resolve --spec {}` again and review the changes",
                    lock_path.display(),
                    spec.path.display()
                )));
            }
            reporter.step(&format!(
                "using {} ({} packages)",
                lock_path.display(),
                lock.packages.len()
            ));
            lock_used = Some(lock_path);
            lock
        } else {
            resolve(spec, &options.fetch, &http, &cache, created_now(), reporter)?
        };
        let paths = download_all(&lock, options.fetch.jobs, &http, &cache, reporter)?;
        for (p, path) in lock.packages.iter().zip(paths) {
            debs.push((
                FileEntry {
                    path: p.bundle_path(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                    mode: "0644".into(),
                },
                path,
            ));
        }
        if !lock.images.is_empty() {
            for (image, entry) in fetch_images(
                &lock.images,
                &options.fetch,
                &cache,
                options.created.unix(),
                reporter,
            )? {
                image_entries.push(image);
                debs.push(entry);
            }
        }
        packages_lock = Some(lock);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;

    // 2. Hash every local file.
    if !spec.files.is_empty() {
        reporter.step(&format!("hashing {} file(s)", spec.files.len()));
    }
    let mut files: Vec<(FileEntry, PathBuf)> = Vec::new();
    for request in &spec.files {
        let source = spec.resolve_path(&request.source);
        let (size, sha256, executable) = hash_file(&source)?;
        let mode = request
            .mode
            .clone()
            .unwrap_or_else(|| if executable { "0755" } else { "0644" }.to_string());
        files.push((
            FileEntry {
                path: request.path.clone(),
                size,
                sha256,
                mode,
            },
            source,
        ));
    }
    files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    debs.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    debs.dedup_by(|a, b| a.0.path == b.0.path);
    files.splice(0..0, debs);
    let (packages, steps) = match &packages_lock {
        Some(lock) => manifest_packages(spec, lock),
        None => (vec![], spec.steps.clone()),
    };

    // 3. The manifest.
    let created = options.created;
    let days = spec
        .expires_in_days
        .unwrap_or(crate::spec::DEFAULT_EXPIRES_IN_DAYS);
    let manifest = Manifest {
        format: FORMAT.into(),
        name: spec.name.clone(),
        channel: spec.channel().to_string(),
        sequence: spec.sequence.unwrap_or(created.unix()),
        created,
        expires: Timestamp(created.unix() + days * 86_400),
        builder: format!("ferry-build {}", env!("CARGO_PKG_VERSION")),
        target: Target {
            distro: spec.target.distro.clone(),
            codename: spec.target.codename.clone(),
            arch: spec.target.arch.clone(),
        },
        files: files.iter().map(|(f, _)| f.clone()).collect(),
        packages,
        images: image_entries,
        steps,
        backups: spec.backups.clone(),
        notes: spec.notes.clone(),
    };
    let json = manifest.to_json();
    // The manifest must pass the same rules every reader applies.
    Manifest::parse(&json)?;

    // 4. Sign, then write.
    let signature = key.sign(
        &json,
        &manifest.trusted_comment(),
        &format!("signature from ferry-build secret key {}", key.id()),
    )?;
    reporter.step(&format!("writing {}", manifest.name));
    let sources: Vec<PathBuf> = files.into_iter().map(|(_, s)| s).collect();
    let written = write_bundle(
        out_dir,
        &BundleContents {
            manifest_json: &json,
            signatures: std::slice::from_ref(&signature),
            sources: &sources,
        },
        ferry_bundle::WriteOptions {
            compression: options.compression,
            split: options.split,
        },
        reporter,
    )?;
    let (sha256, size) = crate::http::hash_files(&written)?;
    Ok(BuildOutput {
        files: written,
        manifest,
        sha256,
        size,
        lock: lock_used,
    })
}

/// The package `--with-installer` ships beside a bundle.
pub const INSTALLER_PACKAGE: &str = "ferry-install";

/// A `ferry-install` Debian package, checked against a bundle's target architecture
/// (`ferry-build build --with-installer`).
#[derive(Clone, Debug)]
pub struct InstallerDeb {
    /// The `.deb` file.
    pub path: PathBuf,
    /// Its `Version` field.
    pub version: String,
    /// Its `Architecture` field: the target's, or `all`.
    pub arch: String,
}

/// What [`InstallerDeb::write_media`] wrote beside the bundle.
#[derive(Clone, Debug)]
pub struct InstallerMedia {
    /// The copied package.
    pub deb: PathBuf,
    /// `SHA256SUMS` over the bundle file(s) and the package.
    pub sums: PathBuf,
    /// `SHA256SUMS.minisig`.
    pub signature: PathBuf,
    /// `README-airgap.txt`.
    pub readme: PathBuf,
}

impl InstallerDeb {
    /// The installer package for `target_arch` (a Debian architecture such as `amd64`):
    /// `path` is the `.deb` itself, or a directory (a release's `dist/`) holding exactly
    /// one `ferry-install_*_<arch>.deb`. Reads only the package's control file.
    pub fn find(path: &Path, target_arch: &str) -> Result<InstallerDeb> {
        let file = if path.is_dir() {
            let suffix = format!("_{target_arch}.deb");
            let prefix = format!("{INSTALLER_PACKAGE}_");
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
                })
                .collect();
            found.sort();
            match found.len() {
                1 => found.remove(0),
                0 => {
                    return Err(Error::Usage(format!(
                        "{}: no {prefix}*{suffix} in this directory\nhelp: pass the ferry-install .deb built for {target_arch} (release.sh writes it to dist/)",
                        path.display()
                    )))
                }
                _ => {
                    let names: Vec<String> =
                        found.iter().map(|p| p.display().to_string()).collect();
                    return Err(Error::Usage(format!(
                        "{}: several installer packages for {target_arch}: {}\nhelp: pass the one to ship",
                        path.display(),
                        names.join(", ")
                    )));
                }
            }
        } else {
            path.to_path_buf()
        };
        let f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        let not_deb = |e: &dyn std::fmt::Display| {
            Error::Usage(format!(
                "{}: not a readable Debian package: {e}\nhelp: --with-installer takes the ferry-install .deb (release.sh writes it to dist/)",
                file.display()
            ))
        };
        let control =
            debian_packaging::deb::reader::resolve_control_file(std::io::BufReader::new(f))
                .map_err(|e| not_deb(&e))?;
        let package = control.package().map_err(|e| not_deb(&e))?;
        let version = control.version_str().map_err(|e| not_deb(&e))?;
        let arch = control.architecture().map_err(|e| not_deb(&e))?;
        if package != INSTALLER_PACKAGE {
            return Err(Error::Usage(format!(
                "{}: is the package {package}, not {INSTALLER_PACKAGE}\nhelp: --with-installer takes the ferry-install .deb",
                file.display()
            )));
        }
        if arch != target_arch && arch != "all" {
            return Err(Error::Usage(format!(
                "{}: is {INSTALLER_PACKAGE} for {arch}, but the bundle targets {target_arch}\nhelp: pass the {INSTALLER_PACKAGE} package built for {target_arch}",
                file.display()
            )));
        }
        Ok(InstallerDeb {
            path: file,
            version: version.to_string(),
            arch: arch.to_string(),
        })
    }

    /// Debian's file name for it: `ferry-install_<version without epoch>_<arch>.deb`.
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{INSTALLER_PACKAGE}_{version}_{}.deb", self.arch)
    }

    /// Copy the package into `out_dir` beside `bundle`, and write `SHA256SUMS` (the
    /// bundle file(s) and the package, `sha256sum -c` format), its minisign signature by
    /// `key` (`SHA256SUMS.minisig`) and `README-airgap.txt`. All three are replaced if
    /// present: they describe this bundle only.
    pub fn write_media(
        &self,
        out_dir: &Path,
        bundle: &BuildOutput,
        key: &SecretKey,
        reporter: &dyn Reporter,
    ) -> Result<InstallerMedia> {
        let deb_name = self.file_name();
        reporter.step(&format!(
            "adding {INSTALLER_PACKAGE} {} ({}) and SHA256SUMS",
            self.version, self.arch
        ));
        let deb = out_dir.join(&deb_name);
        // Through a temporary file, so that passing a package already in `out_dir` works.
        let tmp = out_dir.join(format!(".{deb_name}.tmp"));
        std::fs::copy(&self.path, &tmp).map_err(|e| Error::io(&self.path, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &deb).map_err(|e| Error::io(&deb, e))?;

        let mut sums = String::new();
        let mut bundle_names = Vec::new();
        for path in bundle.files.iter().chain(std::iter::once(&deb)) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Usage(format!("{}: not a UTF-8 name", path.display())))?;
            let (_, sha256, _) = hash_file(path)?;
            sums.push_str(&format!("{sha256}  {name}\n"));
            if path != &deb {
                bundle_names.push(name.to_string());
            }
        }
        let manifest = &bundle.manifest;
        let signature = key.sign(
            sums.as_bytes(),
            &format!(
                "ferry media {} sequence {}: SHA256SUMS of the bundle and {INSTALLER_PACKAGE} {} ({})",
                manifest.name, manifest.sequence, self.version, self.arch
            ),
            &format!("signature from ferry-build secret key {}", key.id()),
        )?;
        let sums_path = out_dir.join("SHA256SUMS");
        let sig_path = out_dir.join("SHA256SUMS.minisig");
        let readme_path = out_dir.join("README-airgap.txt");
        crate::keyfile::write_file(&sums_path, sums.as_bytes(), 0o644)?;
        crate::keyfile::write_file(&sig_path, signature.to_file_string().as_bytes(), 0o644)?;
        let readme = airgap_readme(
            &manifest.name,
            &bundle_names,
            &deb_name,
            &key.id().to_string(),
        );
        crate::keyfile::write_file(&readme_path, readme.as_bytes(), 0o644)?;
        Ok(InstallerMedia {
            deb,
            sums: sums_path,
            signature: sig_path,
            readme: readme_path,
        })
    }
}

/// `README-airgap.txt`: how to check and install the installer before first use.
fn airgap_readme(name: &str, bundle_files: &[String], deb: &str, key_id: &str) -> String {
    let first = bundle_files.first().map_or(name, String::as_str);
    let mut files = String::new();
    for f in bundle_files {
        files.push_str(&format!("  {f:<40} the bundle\n"));
    }
    files.push_str(&format!("  {deb:<40} the installer (Debian package)\n"));
    files.push_str(&format!(
        "  {:<40} SHA-256 of the files above\n",
        "SHA256SUMS"
    ));
    files.push_str(&format!(
        "  {:<40} minisign signature of SHA256SUMS\n",
        "SHA256SUMS.minisig"
    ));
    format!(
        "ferry media: {name}
{underline}

This medium carries a signed ferry bundle and ferry-install, the program that
verifies and applies it on an air-gapped host:

{files}
The bundle and SHA256SUMS are signed by the ferry-build key {key_id}.
Check the installer before you install it for the first time; from then on
ferry-install checks every bundle itself.

1. Take the public key (release.pub in the commands below) from your own
   trusted copy, never from this medium. Its first line must end in
   {key_id}.

2. Check the signature of SHA256SUMS, on any machine that has minisign:

       minisign -Vm SHA256SUMS -p release.pub

   It must say \"Signature and comment signature verified\" and print a trusted
   comment naming {name}.

3. Check the files against SHA256SUMS, in this directory:

       sha256sum -c SHA256SUMS

   Every line must end in \"OK\".

4. Install the installer and trust the key (as root):

       dpkg -i {deb}
       cp release.pub /etc/ferry/trusted/

5. Verify, then apply the bundle:

       ferry-install verify {first}
       ferry-install plan {first}
       ferry-install apply {first}
",
        underline = "=".repeat("ferry media: ".len() + name.len()),
    )
}

/// Fetch the blobs of every locked image and write one archive per image into the cache;
/// returns the manifest entry and the bundle file of each.
fn fetch_images(
    images: &[crate::oci::LockedImage],
    fetch: &FetchOptions,
    cache: &Cache,
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<Vec<(Image, (FileEntry, PathBuf))>> {
    use crate::oci::archive::{write_archive, ArchiveBlob, ImageArchive};
    let registry = crate::oci::Registry::new(fetch.registries.clone())?;
    let total: u64 = images.iter().map(|i| i.blob_bytes()).sum();
    let done = std::sync::atomic::AtomicU64::new(0);
    let fetched = registry.fetch_blobs(images, cache, &|n| {
        let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        reporter.progress("pulling", d, total);
    })?;
    reporter.step(&format!(
        "{} image(s): {fetched} blob(s) downloaded, the rest from the cache",
        images.len()
    ));
    let mut out = Vec::new();
    for image in images {
        let mhex = image.digest.trim_start_matches("sha256:");
        // The raw manifest was cached under its digest at resolve time.
        let manifest = match std::fs::read(cache.path(mhex)) {
            Ok(bytes) if crate::http::sha256_hex(&bytes) == mhex => bytes,
            _ => {
                let bytes = registry.manifest_by_digest(image)?;
                cache.store(mhex, &bytes)?;
                bytes
            }
        };
        let blob = |b: &crate::oci::LockedBlob| ArchiveBlob {
            digest: b.digest.clone(),
            path: cache.path(b.digest.trim_start_matches("sha256:")),
            size: b.size,
        };
        let r = crate::oci::parse_reference(&image.canonical)?;
        let short = if r.registry() == "docker.io" {
            r.repository().trim_start_matches("library/").to_string()
        } else {
            format!("{}/{}", r.registry(), r.repository())
        };
        let tag = r.tag().map(String::from);
        let archive = ImageArchive {
            reference: &image.canonical,
            repo_tag: tag.as_ref().map(|t| format!("{short}:{t}")),
            tag: tag.clone(),
            manifest: &manifest,
            manifest_media_type: &image.media_type,
            manifest_digest: &image.digest,
            config: blob(&image.config),
            layers: image.layers.iter().map(blob).collect(),
        };
        let partial = cache.partial(&format!("image-{mhex}.tar"));
        write_archive(&archive, &partial, mtime)?;
        let (size, sha256, _) = hash_file(&partial)?;
        let stored = cache.path(&sha256);
        std::fs::rename(&partial, &stored).map_err(|e| Error::io(&stored, e))?;
        let path = image.bundle_path();
        out.push((
            Image {
                reference: image.canonical.clone(),
                digest: image.digest.clone(),
                platform: image.platform.clone(),
                file: path.clone(),
                format: "docker-archive+oci".into(),
            },
            (
                FileEntry {
                    path,
                    size,
                    sha256,
                    mode: "0644".into(),
                },
                stored,
            ),
        ));
    }
    Ok(out)
}

/// Size, SHA-256 and executable bit of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String, bool)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let (sha256, size) = crate::http::hash_files(&[path.to_path_buf()])?;
    Ok((size, sha256, meta.permissions().mode() & 0o111 != 0))
}

/// Parse a size like `700M`, `4G`, `1.5G`, `650MiB` or `1000000`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad_size(text)),
    };
    let value: f64 = num.parse().map_err(|_| bad_size(text))?;
    let bytes = (value * mult as f64).round();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(bad_size(text));
    }
    Ok(bytes as u64)
}

fn bad_size(text: &str) -> Error {
    Error::Usage(format!(
        "invalid size {text:?}\nhelp: use bytes or a suffix: 700M, 4G, 650MiB, 4GB"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("700M").unwrap(), 700 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4GB").unwrap(), 4_000_000_000);
        for bad in ["", "0", "x", "12Q", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
