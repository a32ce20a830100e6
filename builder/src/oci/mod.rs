//! Container images from registries, without a Docker daemon: manifests (and image
//! indices, resolved to the target platform) pulled raw so digests survive, blobs
//! streamed into the content-addressed cache and checked against their digests and
//! sizes, then written as one docker-archive + OCI-layout tar per image.
//!
//! Uses `oci-client`'s `pull_manifest_raw` and `pull_blob_stream` only, never `pull()`,
//! which buffers whole layers in memory.

pub mod archive;

use crate::http::Cache;
use crate::{Error, Result};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Largest manifest or index accepted.
const MAX_MANIFEST: usize = 4 << 20;
/// Attempts without progress before a blob download gives up.
const MAX_ATTEMPTS: u32 = 5;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that speak plain HTTP.
    pub insecure: Vec<String>,
    /// `HOST=USER:PASS` credentials from the command line (they win over the config).
    pub auth: BTreeMap<String, (String, String)>,
    /// Docker's `config.json` to read `auths` from (default `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Parallel blob downloads.
    pub jobs: usize,
}

/// A blob of an image as the lock records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedBlob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// A resolved image, as the lockfile records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The reference as the spec wrote it.
    pub reference: String,
    /// Fully qualified (`docker.io/library/alpine:3.20`).
    pub canonical: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Digest of the platform's image manifest.
    pub digest: String,
    /// The index or list it was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// Media type of the manifest.
    pub media_type: String,
    /// The config blob.
    pub config: LockedBlob,
    /// The layers, in order.
    pub layers: Vec<LockedBlob>,
}

impl LockedImage {
    /// Path of the image tar in the bundle.
    pub fn bundle_path(&self) -> String {
        let r = parse_reference(&self.canonical).ok();
        let name = r
            .as_ref()
            .map(|r| {
                r.repository()
                    .rsplit('/')
                    .next()
                    .unwrap_or("image")
                    .to_string()
            })
            .unwrap_or_else(|| "image".into());
        let tag = r
            .as_ref()
            .and_then(|r| r.tag().map(String::from))
            .unwrap_or_else(|| hex(&self.digest)[..12].to_string());
        let raw = format!("images/{name}_{tag}.tar");
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._+~%-/".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Total bytes of config and layers.
    pub fn blob_bytes(&self) -> u64 {
        self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Parse a reference the way Docker does (`alpine` → `docker.io/library/alpine:latest`).
pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>().map_err(|e| Error::Image {
        reference: text.to_string(),
        message: format!("not a valid image reference: {e}"),
    })
}

/// A registry client on its own small runtime.
pub struct Registry {
    client: Client,
    runtime: tokio::runtime::Runtime,
    options: RegistryOptions,
    docker_auths: BTreeMap<String, (String, String)>,
}

impl Registry {
    /// A client for `options`.
    pub fn new(options: RegistryOptions) -> Result<Registry> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if options.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(options.insecure.clone())
        };
        let client = Client::new(ClientConfig {
            protocol,
            max_concurrent_download: options.jobs.max(1),
            ..ClientConfig::default()
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
        let docker_auths = read_docker_config(options.docker_config.clone())?;
        Ok(Registry {
            client,
            runtime,
            options,
            docker_auths,
        })
    }

    fn auth_for(&self, registry: &str) -> RegistryAuth {
        let key = registry.to_string();
        let lookup = |m: &BTreeMap<String, (String, String)>| {
            m.get(&key)
                .or_else(|| {
                    (registry == "docker.io"
                        || registry == "index.docker.io"
                        || registry == "registry-1.docker.io")
                        .then(|| {
                            m.get("https://index.docker.io/v1/")
                                .or_else(|| m.get("docker.io"))
                        })
                        .flatten()
                })
                .cloned()
        };
        match lookup(&self.options.auth).or_else(|| lookup(&self.docker_auths)) {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Resolve `reference` for `platform` to a manifest and its blobs (no blob bytes are
    /// downloaded). With a digest in the reference, the registry must serve exactly it.
    pub fn resolve(&self, reference: &str, platform: &str) -> Result<(LockedImage, Vec<u8>)> {
        let r = parse_reference(reference)?;
        let err = |message: String| Error::Image {
            reference: reference.to_string(),
            message,
        };
        let auth = self.auth_for(r.resolve_registry());
        let accepted: Vec<&str> = INDEX_TYPES
            .iter()
            .chain(MANIFEST_TYPES.iter())
            .copied()
            .collect();
        let (bytes, media_type, digest) = self.runtime.block_on(async {
            let (bytes, _) = self
                .client
                .pull_manifest_raw(&r, &auth, &accepted)
                .await
                .map_err(|e| err(describe(&e)))?;
            Ok::<_, Error>((bytes.to_vec(), media_type_of(&bytes), sha256_digest(&bytes)))
        })?;
        if bytes.len() > MAX_MANIFEST {
            return Err(err(format!(
                "manifest of {} bytes is larger than the {MAX_MANIFEST}-byte limit",
                bytes.len()
            )));
        }
        if let Some(want) = r.digest() {
            if want != digest {
                return Err(err(format!(
                    "the registry served manifest {digest}, not the requested {want}"
                )));
            }
        }
        let media =
            media_type.ok_or_else(|| err("the registry's manifest has no mediaType".into()))?;
        let (bytes, media, digest, index_digest) = if INDEX_TYPES.contains(&media.as_str()) {
            let index: IndexDoc = serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("unreadable image index: {e}")))?;
            let wanted = Platform::parse(platform).map_err(err)?;
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(PlatformDoc::label))
                .collect();
            let chosen = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| wanted.matches(p)))
                .ok_or_else(|| {
                    err(format!(
                        "no image for platform {platform}; the index offers: {}\nhelp: set `platform` in the [[image]] entry to one of those",
                        available.join(", ")
                    ))
                })?;
            let by_digest = r.clone_with_digest(chosen.digest.clone());
            let (mbytes, _) = self
                .runtime
                .block_on(
                    self.client
                        .pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES),
                )
                .map_err(|e| err(describe(&e)))?;
            let mbytes = mbytes.to_vec();
            let mdigest = sha256_digest(&mbytes);
            if mdigest != chosen.digest {
                return Err(err(format!(
                    "the registry served manifest {mdigest} for {}",
                    chosen.digest
                )));
            }
            let mmedia = media_type_of(&mbytes).unwrap_or_else(|| chosen.media_type.clone());
            (mbytes, mmedia, mdigest, Some(digest))
        } else {
            (bytes, media, digest, None)
        };
        if !MANIFEST_TYPES.contains(&media.as_str()) {
            return Err(err(format!("unsupported manifest type {media}")));
        }
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| err(format!("unreadable image manifest: {e}")))?;
        let blob = |d: &Descriptor| -> Result<LockedBlob> {
            if !d.digest.starts_with("sha256:")
                || hex(&d.digest).len() != 64
                || !hex(&d.digest).bytes().all(|c| c.is_ascii_hexdigit())
            {
                return Err(err(format!("unsupported blob digest {}", d.digest)));
            }
            Ok(LockedBlob {
                digest: d.digest.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            })
        };
        let locked = LockedImage {
            reference: reference.to_string(),
            canonical: r.whole(),
            platform: platform.to_string(),
            digest,
            index_digest,
            media_type: media,
            config: blob(&doc.config)?,
            layers: doc.layers.iter().map(blob).collect::<Result<_>>()?,
        };
        Ok((locked, bytes))
    }

    /// Fetch the manifest of a locked image by digest (for builds from a lock).
    pub fn manifest_by_digest(&self, image: &LockedImage) -> Result<Vec<u8>> {
        let r = parse_reference(&image.canonical)?.clone_with_digest(image.digest.clone());
        let auth = self.auth_for(r.resolve_registry());
        let (bytes, _) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(&r, &auth, &MANIFEST_TYPES))
            .map_err(|e| Error::Image {
                reference: image.reference.clone(),
                message: describe(&e),
            })?;
        let bytes = bytes.to_vec();
        if sha256_digest(&bytes) != image.digest {
            return Err(Error::Image {
                reference: image.reference.clone(),
                message: format!("the registry no longer serves manifest {}", image.digest),
            });
        }
        Ok(bytes)
    }

    /// Download every blob of `images` not already in the cache, in parallel, each
    /// verified against its digest and size; shared blobs are fetched once.
    pub fn fetch_blobs(
        &self,
        images: &[LockedImage],
        cache: &Cache,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<usize> {
        let mut wanted: BTreeMap<String, (LockedBlob, Reference)> = BTreeMap::new();
        for image in images {
            let r = parse_reference(&image.canonical)?;
            for b in std::iter::once(&image.config).chain(&image.layers) {
                wanted
                    .entry(b.digest.clone())
                    .or_insert_with(|| (b.clone(), r.clone()));
            }
        }
        let mut todo = Vec::new();
        for (blob, r) in wanted.into_values() {
            if cache.lookup(hex(&blob.digest), blob.size)?.is_some() {
                progress(blob.size);
            } else {
                todo.push((blob, r));
            }
        }
        let count = todo.len();
        let jobs = self.options.jobs.max(1);
        self.runtime.block_on(async {
            let results: Vec<Result<()>> =
                futures_util::stream::iter(todo.into_iter().map(|(blob, r)| async move {
                    self.fetch_blob(&r, &blob, cache, progress).await
                }))
                .buffer_unordered(jobs)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()
        })?;
        Ok(count)
    }

    async fn fetch_blob(
        &self,
        r: &Reference,
        blob: &LockedBlob,
        cache: &Cache,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let hexd = hex(&blob.digest).to_string();
        let partial = cache.partial(&hexd);
        let err = |message: String| Error::Image {
            reference: r.whole(),
            message: format!("blob {}: {message}", blob.digest),
        };
        let mut failures = 0;
        loop {
            let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            let attempt = self.blob_attempt(r, blob, &partial, have, progress).await;
            let now = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            match attempt {
                Ok(()) => {
                    let got = crate::http::hash_file(&partial)?;
                    if now != blob.size || got != hexd {
                        let _ = std::fs::remove_file(&partial);
                        return Err(err(format!(
                            "content does not match its digest (got {now} bytes with sha256:{got})\nhelp: the registry or a proxy on the way corrupted it; nothing was cached"
                        )));
                    }
                    cache.commit(&hexd)?;
                    return Ok(());
                }
                Err(why) => {
                    failures = if now > have { 0 } else { failures + 1 };
                    if failures >= MAX_ATTEMPTS {
                        return Err(err(format!(
                            "gave up after {MAX_ATTEMPTS} attempts without progress: {why}"
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 << failures)).await;
                }
            }
        }
    }

    async fn blob_attempt(
        &self,
        r: &Reference,
        blob: &LockedBlob,
        partial: &Path,
        have: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> std::result::Result<(), String> {
        if have >= blob.size && blob.size > 0 {
            return Ok(());
        }
        let auth = self.auth_for(r.resolve_registry());
        self.client
            .store_auth_if_needed(r.resolve_registry(), &auth)
            .await;
        let (mut stream, append) = if have > 0 {
            match self
                .client
                .pull_blob_stream_partial(r, blob.digest.as_str(), have, None)
                .await
                .map_err(|e| describe(&e))?
            {
                oci_client::client::BlobResponse::Partial(s) => (s, true),
                oci_client::client::BlobResponse::Full(s) => (s, false),
            }
        } else {
            (
                self.client
                    .pull_blob_stream(r, blob.digest.as_str())
                    .await
                    .map_err(|e| describe(&e))?,
                false,
            )
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut got = if append { have } else { 0 };
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| format!("connection broke after {got} bytes: {e}"))?;
            if got + chunk.len() as u64 > blob.size {
                drop(file);
                let _ = std::fs::remove_file(partial);
                return Err(format!(
                    "the registry sent more than the {} bytes the manifest lists",
                    blob.size
                ));
            }
            file.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            got += chunk.len() as u64;
            progress(chunk.len() as u64);
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        if got < blob.size {
            return Err(format!("body ended after {got} of {} bytes", blob.size));
        }
        Ok(())
    }
}

fn describe(e: &oci_client::errors::OciDistributionError) -> String {
    let text = e.to_string();
    let mut s = text.clone();
    let lower = text.to_ascii_lowercase();
    if lower.contains("401") || lower.contains("unauthorized") || lower.contains("authentication") {
        s.push_str("\nhelp: check the credentials (--registry-auth HOST=USER:PASS or ~/.docker/config.json)");
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("https") {
        s.push_str("\nhelp: a registry that speaks plain HTTP must be listed with --insecure-registry HOST");
    } else if lower.contains("not found") || lower.contains("404") || lower.contains("unknown") {
        s.push_str("\nhelp: check the image name and tag");
    }
    s
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn media_type_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let m: M = serde_json::from_slice(bytes).ok()?;
    m.media_type.or_else(|| {
        // OCI allows omitting mediaType: an index has `manifests`.
        Some(
            if m.manifests.is_some() {
                INDEX_TYPES[0]
            } else {
                MANIFEST_TYPES[0]
            }
            .to_string(),
        )
    })
}

#[derive(Deserialize)]
struct IndexDoc {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl PlatformDoc {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

struct Platform {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl Platform {
    fn parse(text: &str) -> std::result::Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!("platform {text:?} is not os/arch[/variant]")),
        }
    }

    fn matches(&self, p: &PlatformDoc) -> bool {
        p.os == self.os
            && p.architecture == self.arch
            && (self.variant.is_none() || self.variant == p.variant)
    }
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
}

/// `auths` of a Docker `config.json` (base64 `user:pass` in `auth`).
fn read_docker_config(path: Option<PathBuf>) -> Result<BTreeMap<String, (String, String)>> {
    use base64::Engine;
    let path = match path {
        Some(p) => p,
        None => match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d).join("config.json"),
            None => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".docker/config.json"),
                None => return Ok(BTreeMap::new()),
            },
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(BTreeMap::new());
    };
    #[derive(Deserialize)]
    struct Conf {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    let conf: Conf = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (host, entry) in conf.auths {
        let Some(auth) = entry.auth else { continue };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: auths.{host}.auth is not base64 of user:password",
                    path.display()
                ))
            })?;
        if let Some((u, p)) = decoded.split_once(':') {
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            out.insert(host, (u.to_string(), p.to_string()));
        }
    }
    Ok(out)
}

/// Parse `--registry-auth HOST=USER:PASS`.
pub fn parse_registry_auth(text: &str) -> Result<(String, (String, String))> {
    let (host, creds) = text
        .split_once('=')
        .ok_or_else(|| Error::Usage("--registry-auth takes HOST=USER:PASS".into()))?;
    let (u, p) = creds
        .split_once(':')
        .ok_or_else(|| Error::Usage("--registry-auth takes HOST=USER:PASS".into()))?;
    Ok((host.to_string(), (u.to_string(), p.to_string())))
}
