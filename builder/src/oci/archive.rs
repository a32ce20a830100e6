//! The image archive carried in a bundle: one tar per image, laid out as Docker 25+
//! writes `docker save` output — an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...` holding the registry's blobs unchanged, the raw manifest bytes
//! included so digests survive) plus the legacy `manifest.json` and `repositories`, so
//! `docker load` (old and new), `podman load` and `skopeo` (`docker-archive:` and
//! `oci-archive:`) all accept it. Only `oci-archive:` keeps the registry's manifest and
//! so its digest: skopeo's `docker-archive:` reader synthesises a new manifest from
//! `manifest.json`. Deterministic: sorted, fixed mtime, uid/gid 0.

use crate::{Error, Result};
use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A blob to put in the archive.
#[derive(Clone, Debug)]
pub struct ArchiveBlob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Where its verified bytes are.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// Everything one image archive holds.
pub struct ImageArchive<'a> {
    /// Full reference, e.g. `docker.io/tykio/tyk-plugin-compiler:v5.2.5`.
    pub reference: &'a str,
    /// The name `docker load` tags it with (`tykio/tyk-plugin-compiler:v5.2.5`), if tagged.
    pub repo_tag: Option<String>,
    /// The tag alone, if any.
    pub tag: Option<String>,
    /// Raw manifest bytes as the registry served them.
    pub manifest: &'a [u8],
    /// Its media type.
    pub manifest_media_type: &'a str,
    /// `sha256:<hex>` of `manifest`.
    pub manifest_digest: &'a str,
    /// The config blob.
    pub config: ArchiveBlob,
    /// Layer blobs, in manifest order.
    pub layers: Vec<ArchiveBlob>,
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Write the archive to `out` (a `.partial` path the caller renames).
pub fn write_archive(image: &ImageArchive<'_>, out: &Path, mtime: u64) -> Result<()> {
    let file = File::create(out).map_err(|e| Error::io(out, e))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let add_bytes =
        |tar: &mut tar::Builder<BufWriter<File>>, path: &str, data: &[u8]| -> Result<()> {
            let mut h = header(data.len() as u64, mtime);
            tar.append_data(&mut h, path, data)
                .map_err(|e| Error::io(out, e))
        };
    let mut annotations = serde_json::Map::new();
    annotations.insert("io.containerd.image.name".into(), json!(image.reference));
    if let Some(tag) = &image.tag {
        annotations.insert("org.opencontainers.image.ref.name".into(), json!(tag));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": annotations,
        }],
    });
    let layer_paths: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", hex_of(&l.digest)))
        .collect();
    let manifest_json = json!([{
        "Config": format!("blobs/sha256/{}", hex_of(&image.config.digest)),
        "RepoTags": image.repo_tag.iter().collect::<Vec<_>>(),
        "Layers": layer_paths,
    }]);
    // Directory entries first, as docker save writes them.
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        tar.append_data(&mut h, dir, std::io::empty())
            .map_err(|e| Error::io(out, e))?;
    }
    // Blobs: manifest, config, layers, each once, sorted by digest.
    let mut blobs: Vec<(String, BlobSource)> = vec![
        (
            hex_of(image.manifest_digest).to_string(),
            BlobSource::Bytes(image.manifest),
        ),
        (
            hex_of(&image.config.digest).to_string(),
            BlobSource::File(&image.config),
        ),
    ];
    for l in &image.layers {
        blobs.push((hex_of(&l.digest).to_string(), BlobSource::File(l)));
    }
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);
    for (hex, source) in &blobs {
        let path = format!("blobs/sha256/{hex}");
        match source {
            BlobSource::Bytes(b) => add_bytes(&mut tar, &path, b)?,
            BlobSource::File(blob) => {
                let f = File::open(&blob.path).map_err(|e| Error::io(&blob.path, e))?;
                let mut h = header(blob.size, mtime);
                tar.append_data(&mut h, &path, f)
                    .map_err(|e| Error::io(&blob.path, e))?;
            }
        }
    }
    add_bytes(
        &mut tar,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    add_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&manifest_json).expect("json"),
    )?;
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if let (Some(repo_tag), Some(last)) = (&image.repo_tag, image.layers.last()) {
        if let Some((repo, tag)) = repo_tag.rsplit_once(':') {
            let repositories = json!({ repo: { tag: hex_of(&last.digest) } });
            add_bytes(
                &mut tar,
                "repositories",
                &serde_json::to_vec(&repositories).expect("json"),
            )?;
        }
    }
    let mut w = tar.into_inner().map_err(|e| Error::io(out, e))?;
    w.flush().map_err(|e| Error::io(out, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(out, e))?;
    Ok(())
}

enum BlobSource<'a> {
    Bytes(&'a [u8]),
    File(&'a ArchiveBlob),
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}
