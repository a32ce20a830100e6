//! Container images built at test time, in Rust, as OCI image layouts (no docker): layers
//! are deterministic gzip-compressed tars, configs and manifests are written the way
//! registries and skopeo expect, multi-platform images are OCI image indexes. Also
//! [`push`] (skopeo into a [`Registry`]), a big incompressible image for benchmarks
//! ([`big_image`]) and a standard set of small images ([`TestImages`]) whose digests the
//! tests compare against.
//!
//! It owns only the layout directories it is given and writes nothing else. Blobs are
//! streamed to disk (hashed on the way, renamed into `blobs/sha256/` when complete), so
//! big images never sit in memory. The same spec always yields the same digests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::registry::Registry;
use crate::Run;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (multi-platform image).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed layer tar.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming an image in a layout's `index.json` (`oci:DIR:NAME`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Modification time of every tar entry (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;
/// The `created` time of every config and history entry; the same instant as [`MTIME`].
pub const CREATED: &str = "2023-11-14T22:13:20Z";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What an OCI descriptor says about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
}

impl Descriptor {
    fn json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("mediaType".into(), json!(self.media_type));
        m.insert("digest".into(), json!(self.digest));
        m.insert("size".into(), json!(self.size));
        m
    }
}

/// The platform an image is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: String,
    /// `architecture` in Go's spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// `variant`, e.g. `v8` for arm64, if any.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform without variant.
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// `linux/amd64`.
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64")
    }

    /// `linux/arm64`.
    pub fn linux_arm64() -> Platform {
        Platform::new("linux", "arm64")
    }

    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("architecture".into(), json!(self.architecture));
        m.insert("os".into(), json!(self.os));
        if let Some(variant) = &self.variant {
            m.insert("variant".into(), json!(variant));
        }
        Value::Object(m)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Content {
    Bytes(Vec<u8>),
    /// `crate::noise(len, seed)`, generated while the tar is written.
    Noise {
        len: u64,
        seed: u64,
    },
}

/// A layer: regular files by path (relative to the image root), written as a tar with
/// sorted entries, the parent directories (0755) added, uid/gid 0 and mtime [`MTIME`].
/// The tar crate refuses `..` in paths; build hostile layers with [`crate::forge`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    files: BTreeMap<String, (Content, u32)>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// Add a file with mode 0644.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, data, 0o644)
    }

    /// Add a file with the given mode (e.g. 0o755).
    pub fn file_mode(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files
            .insert(clean(path), (Content::Bytes(data.into()), mode));
        self
    }

    /// Add a 0644 file of `len` incompressible bytes, `crate::noise(len, seed)`,
    /// generated while writing so that big layers never sit in memory.
    pub fn noise_file(mut self, path: &str, len: u64, seed: u64) -> Self {
        self.files
            .insert(clean(path), (Content::Noise { len, seed }, 0o644));
        self
    }

    /// The uncompressed tar (its sha256 is the layer's diff_id).
    pub fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_tar(&mut out).unwrap();
        out
    }

    fn write_tar<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut entries: BTreeMap<String, Option<(&Content, u32)>> = BTreeMap::new();
        for (path, (content, mode)) in &self.files {
            let mut parent = Path::new(path).parent();
            while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
                entries.insert(format!("{}/", dir.display()), None);
                parent = dir.parent();
            }
            entries.insert(path.clone(), Some((content, *mode)));
        }
        let mut tar = tar::Builder::new(out);
        for (path, entry) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(MTIME);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    tar.append_data(&mut header, &path, std::io::empty())?;
                }
                Some((Content::Bytes(bytes), mode)) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, &path, bytes.as_slice())?;
                }
                Some((Content::Noise { len, seed }, mode)) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(mode);
                    header.set_size(*len);
                    tar.append_data(&mut header, &path, NoiseReader::new(*len, *seed))?;
                }
            }
        }
        tar.into_inner()
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// Streams the same bytes as [`crate::noise`] without holding them.
struct NoiseReader {
    x: u64,
    left: u64,
}

impl NoiseReader {
    fn new(len: u64, seed: u64) -> NoiseReader {
        NoiseReader {
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
        }
    }
}

impl Read for NoiseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = (self.x >> 24) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What to build: layers (bottom first), platform and the config's `config` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The platform (config `os`/`architecture`/`variant`, index `platform`).
    pub platform: Platform,
    /// The config's `config` object: `Cmd`, `Env`, `Labels`, `WorkingDir`, ….
    pub config: Map<String, Value>,
}

impl ImageSpec {
    /// An image for `platform` with no layers and an empty `config` section.
    pub fn new(platform: Platform) -> ImageSpec {
        ImageSpec {
            layers: Vec::new(),
            platform,
            config: Map::new(),
        }
    }

    /// Add a layer on top.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Set `config.Cmd`.
    pub fn cmd(self, cmd: &[&str]) -> Self {
        self.config_field("Cmd", json!(cmd))
    }

    /// Append `KEY=value` to `config.Env`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        let env = self.config.entry("Env").or_insert_with(|| json!([]));
        env.as_array_mut()
            .expect("config.Env is an array")
            .push(json!(format!("{key}={value}")));
        self
    }

    /// Set `config.Labels[key]`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self.config.entry("Labels").or_insert_with(|| json!({}));
        labels
            .as_object_mut()
            .expect("config.Labels is an object")
            .insert(key.to_owned(), json!(value));
        self
    }

    /// Set any field of the `config` section.
    pub fn config_field(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.to_owned(), value);
        self
    }
}

/// A layer as written: its blob's digest and size, and the diff_id of its tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltLayer {
    /// `sha256:` of the compressed blob (what manifests and registries name).
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// `sha256:` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// A single-platform image as written into a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// Its platform.
    pub platform: Platform,
    /// The manifest; its digest is the image's digest.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<BuiltLayer>,
}

impl BuiltImage {
    /// The manifest digest, `sha256:…`.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The layer blob digests, bottom first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// The digests of every blob the manifest references (config first, then layers).
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(self.config.digest.clone())
            .chain(self.layer_digests())
            .collect()
    }

    /// Total bytes of manifest, config and layer blobs.
    pub fn total_size(&self) -> u64 {
        self.manifest.size + self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// A multi-platform image (OCI image index) as written into a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltIndex {
    /// The index; its digest is the image's digest.
    pub index: Descriptor,
    /// The per-platform images, in index order.
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// The index digest, `sha256:…`.
    pub fn digest(&self) -> &str {
        &self.index.digest
    }

    /// The image for `os`/`architecture`; fails the test if there is none.
    pub fn image(&self, os: &str, architecture: &str) -> &BuiltImage {
        self.images
            .iter()
            .find(|i| i.platform.os == os && i.platform.architecture == architecture)
            .unwrap_or_else(|| panic!("no {os}/{architecture} image in the index"))
    }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`) that
/// images are added to under names (`oci:DIR:NAME` for skopeo).
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl OciLayout {
    /// Create an empty layout at `dir` (created if missing).
    pub fn create(dir: impl Into<PathBuf>) -> OciLayout {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let layout = OciLayout {
            dir,
            refs: Vec::new(),
        };
        layout.write_index_json();
        layout
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` (`sha256:…`) is stored.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256: digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    /// skopeo's name for an image in it: `oci:DIR:NAME`, or `oci:DIR` for the only one.
    pub fn source(&self, name: Option<&str>) -> String {
        match name {
            Some(name) => format!("oci:{}:{name}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    /// Write an image's blobs and list it in `index.json` as `name`.
    pub fn add_image(&mut self, name: &str, spec: &ImageSpec) -> BuiltImage {
        let image = self.write_image(spec);
        self.add_ref(name, &image.manifest);
        image
    }

    /// Write a multi-platform image (an image index over one manifest per spec, with
    /// `platform` fields) and list it in `index.json` as `name`.
    pub fn add_index(&mut self, name: &str, specs: &[ImageSpec]) -> BuiltIndex {
        let images: Vec<BuiltImage> = specs.iter().map(|s| self.write_image(s)).collect();
        let manifests: Vec<Value> = images
            .iter()
            .map(|i| {
                let mut d = i.manifest.json();
                d.insert("platform".into(), i.platform.json());
                Value::Object(d)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": manifests,
        });
        let index = self.write_json_blob(INDEX_MEDIA_TYPE, &index);
        self.add_ref(name, &index);
        BuiltIndex { index, images }
    }

    fn write_image(&self, spec: &ImageSpec) -> BuiltImage {
        let layers: Vec<BuiltLayer> = spec.layers.iter().map(|l| self.write_layer(l)).collect();
        let mut config = Map::new();
        config.insert("created".into(), json!(CREATED));
        config.insert("architecture".into(), json!(spec.platform.architecture));
        config.insert("os".into(), json!(spec.platform.os));
        if let Some(variant) = &spec.platform.variant {
            config.insert("variant".into(), json!(variant));
        }
        config.insert("config".into(), Value::Object(spec.config.clone()));
        config.insert(
            "rootfs".into(),
            json!({
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            }),
        );
        config.insert(
            "history".into(),
            Value::Array(
                (0..layers.len())
                    .map(|i| json!({"created": CREATED, "created_by": format!("ferry-tests layer {i}")}))
                    .collect(),
            ),
        );
        let config = self.write_json_blob(CONFIG_MEDIA_TYPE, &Value::Object(config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.json(),
            "layers": layers
                .iter()
                .map(|l| {
                    json!({"mediaType": LAYER_MEDIA_TYPE, "digest": l.digest, "size": l.size})
                })
                .collect::<Vec<_>>(),
        });
        let manifest = self.write_json_blob(MANIFEST_MEDIA_TYPE, &manifest);
        BuiltImage {
            platform: spec.platform.clone(),
            manifest,
            config,
            layers,
        }
    }

    /// Stream the layer's tar through gzip to a temp file, hashing both, then rename it
    /// to its digest.
    fn write_layer(&self, layer: &Layer) -> BuiltLayer {
        let tmp = tempfile::NamedTempFile::new_in(self.dir.join("blobs/sha256")).unwrap();
        let file = std::io::BufWriter::new(tmp.as_file());
        // Noise gains nothing from compression: store it (gzip's stored blocks) so big
        // benchmark layers are written fast and stay the size they claim.
        let level = if layer
            .files
            .values()
            .any(|(c, _)| matches!(c, Content::Noise { .. }))
        {
            flate2::Compression::none()
        } else {
            flate2::Compression::default()
        };
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Hashing::new(file), level);
        let tar = layer.write_tar(Hashing::new(gz)).unwrap();
        let (gz, diff_id, _) = tar.finish();
        let (file, digest, size) = gz.finish().unwrap().finish();
        file.into_inner().unwrap().sync_all().unwrap();
        tmp.persist(self.blob_path(&digest)).unwrap();
        BuiltLayer {
            digest,
            size,
            diff_id,
        }
    }

    fn write_json_blob(&self, media_type: &str, value: &Value) -> Descriptor {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = sha256_digest(&bytes);
        std::fs::write(self.blob_path(&digest), &bytes).unwrap();
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size: bytes.len() as u64,
        }
    }

    fn add_ref(&mut self, name: &str, target: &Descriptor) {
        self.refs
            .retain(|r| r["annotations"][REF_NAME_ANNOTATION] != name);
        let mut d = target.json();
        d.insert("annotations".into(), json!({ REF_NAME_ANNOTATION: name }));
        self.refs.push(Value::Object(d));
        self.write_index_json();
    }

    fn write_index_json(&self) {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": self.refs,
        });
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Push an image of a layout into `registry` as `dest` (`repo/name:tag`) with the
/// registry's credentials, all platforms and digests preserved; returns the manifest
/// (or index) digest the registry then serves. `name` picks the image in the layout
/// (`None`: the layout's only image). Fails the test if skopeo does.
pub fn push(registry: &Registry, layout: &Path, name: Option<&str>, dest: &str) -> String {
    push_via(
        registry,
        &registry.host(),
        layout,
        name,
        dest,
        registry.credentials(),
    )
    .unwrap_or_else(|run| {
        panic!(
            "skopeo copy to {} failed:\n{}\nregistry log:\n{}",
            registry.reference(dest),
            run.stderr,
            registry.log()
        )
    })
}

/// Like [`push`], but to `host` (the registry's, or a proxy in front of it) with the
/// given credentials (`None`: anonymous); returns skopeo's run if the copy fails.
pub fn push_via(
    registry: &Registry,
    host: &str,
    layout: &Path,
    name: Option<&str>,
    dest: &str,
    creds: Option<(&str, &str)>,
) -> Result<String, Run> {
    let source = match name {
        Some(name) => format!("oci:{}:{name}", layout.display()),
        None => format!("oci:{}", layout.display()),
    };
    let target = format!("docker://{host}/{dest}");
    let creds = creds.map(|(u, p)| format!("{u}:{p}"));
    let mut args = vec![
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ];
    if let Some(creds) = &creds {
        args.extend(["--dest-creds", creds]);
    }
    args.extend([source.as_str(), target.as_str()]);
    let run = registry.skopeo(&args);
    if run.code != 0 {
        return Err(run);
    }
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = &creds {
        args.extend(["--creds", creds]);
    }
    args.push(&target);
    let raw = registry.skopeo(&args);
    if raw.code != 0 {
        return Err(raw);
    }
    Ok(sha256_digest(raw.stdout.as_bytes()))
}

/// An image of about `total_mib` MiB of incompressible data split over `layers` layers
/// (one noise file each) for benchmarks; its blobs are generated while written.
pub fn big_image(total_mib: u64, layers: usize) -> ImageSpec {
    assert!(layers > 0, "an image needs at least one layer");
    let total = total_mib * 1024 * 1024;
    let per_layer = total / layers as u64;
    let mut spec = ImageSpec::new(Platform::linux_amd64()).cmd(&["/bin/true"]);
    for i in 0..layers {
        let len = if i + 1 == layers {
            total - per_layer * (layers as u64 - 1)
        } else {
            per_layer
        };
        spec =
            spec.layer(Layer::new().noise_file(&format!("data/layer-{i}.bin"), len, i as u64 + 1));
    }
    spec
}

/// The standard small test images, written into one layout:
/// - `a`: two layers, the shared base and one of its own;
/// - `b`: the same base layer as `a` plus one of its own;
/// - `c`: a linux/amd64 + linux/arm64 index, each image the base plus an arch layer.
#[derive(Debug)]
pub struct TestImages {
    /// The layout holding all three, as `a`, `b` and `c`.
    pub layout: OciLayout,
    /// Image A.
    pub a: BuiltImage,
    /// Image B.
    pub b: BuiltImage,
    /// Index C.
    pub c: BuiltIndex,
    /// The base layer that A, B and both images of C share.
    pub shared_layer: BuiltLayer,
}

impl TestImages {
    /// Where [`TestImages::push_all`] puts A.
    pub const A: &'static str = "ferry-test/a:1";
    /// Where [`TestImages::push_all`] puts B.
    pub const B: &'static str = "ferry-test/b:1";
    /// Where [`TestImages::push_all`] puts C.
    pub const C: &'static str = "ferry-test/c:1";

    /// The base layer they share.
    pub fn base_layer() -> Layer {
        Layer::new()
            .file("etc/os-release", "ID=ferry-test\nVERSION_ID=1\n")
            .file_mode("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755)
    }

    /// Build the three images into a new layout at `dir`.
    pub fn build(dir: impl Into<PathBuf>) -> TestImages {
        let mut layout = OciLayout::create(dir);
        let a = layout.add_image(
            "a",
            &ImageSpec::new(Platform::linux_amd64())
                .layer(TestImages::base_layer())
                .layer(Layer::new().file("srv/a/config.toml", "name = \"a\"\n"))
                .cmd(&["/usr/bin/hello"])
                .env("PATH", "/usr/bin:/bin")
                .label("org.example.image", "a"),
        );
        let b = layout.add_image(
            "b",
            &ImageSpec::new(Platform::linux_amd64())
                .layer(TestImages::base_layer())
                .layer(
                    Layer::new()
                        .file("srv/b/config.toml", "name = \"b\"\n")
                        .file("srv/b/data.bin", crate::noise(4096, 7)),
                )
                .cmd(&["/usr/bin/hello", "b"]),
        );
        let per_arch = |platform: Platform| {
            let arch = platform.architecture.clone();
            ImageSpec::new(platform)
                .layer(TestImages::base_layer())
                .layer(Layer::new().file("etc/ferry-arch", format!("{arch}\n")))
                .cmd(&["/usr/bin/hello", &arch])
        };
        let c = layout.add_index(
            "c",
            &[
                per_arch(Platform::linux_amd64()),
                per_arch(Platform::linux_arm64()),
            ],
        );
        let shared_layer = a.layers[0].clone();
        TestImages {
            layout,
            a,
            b,
            c,
            shared_layer,
        }
    }

    /// Push A, B and C to [`TestImages::A`], [`TestImages::B`] and [`TestImages::C`];
    /// returns the three digests the registry serves.
    pub fn push_all(&self, registry: &Registry) -> [String; 3] {
        let layout = self.layout.path();
        [
            push(registry, layout, Some("a"), TestImages::A),
            push(registry, layout, Some("b"), TestImages::B),
            push(registry, layout, Some("c"), TestImages::C),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDir;
    use std::io::Read;

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn layouts_are_deterministic_and_self_consistent() {
        let dir = TestDir::new();
        let one = TestImages::build(dir.join("one"));
        let two = TestImages::build(dir.join("two"));
        assert_eq!(one.a, two.a);
        assert_eq!(one.b, two.b);
        assert_eq!(one.c, two.c);

        let layout = &one.layout;
        assert_eq!(
            read_json(&layout.path().join("oci-layout"))["imageLayoutVersion"],
            "1.0.0"
        );
        let index = read_json(&layout.path().join("index.json"));
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"][REF_NAME_ANNOTATION].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(index["manifests"][2]["mediaType"], INDEX_MEDIA_TYPE);
        assert_eq!(index["manifests"][2]["digest"], one.c.digest());

        // Every blob is stored under its digest with its size.
        for image in [&one.a, &one.b, &one.c.images[0], &one.c.images[1]] {
            for d in [&image.manifest, &image.config] {
                let bytes = std::fs::read(layout.blob_path(&d.digest)).unwrap();
                assert_eq!(sha256_digest(&bytes), d.digest);
                assert_eq!(bytes.len() as u64, d.size);
            }
            let config = read_json(&layout.blob_path(&image.config.digest));
            assert_eq!(config["architecture"], image.platform.architecture.as_str());
            assert_eq!(config["os"], "linux");
            assert_eq!(
                config["history"].as_array().unwrap().len(),
                image.layers.len()
            );
            let manifest = read_json(&layout.blob_path(image.digest()));
            assert_eq!(manifest["schemaVersion"], 2);
            assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
            assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
            for (i, layer) in image.layers.iter().enumerate() {
                let blob = std::fs::read(layout.blob_path(&layer.digest)).unwrap();
                assert_eq!(sha256_digest(&blob), layer.digest);
                assert_eq!(blob.len() as u64, layer.size);
                assert_eq!(manifest["layers"][i]["mediaType"], LAYER_MEDIA_TYPE);
                assert_eq!(manifest["layers"][i]["digest"], layer.digest.as_str());
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(blob.as_slice())
                    .read_to_end(&mut tar)
                    .unwrap();
                assert_eq!(sha256_digest(&tar), layer.diff_id);
                assert_eq!(config["rootfs"]["diff_ids"][i], layer.diff_id.as_str());
            }
        }
        let index_blob = read_json(&layout.blob_path(one.c.digest()));
        assert_eq!(index_blob["mediaType"], INDEX_MEDIA_TYPE);
        assert_eq!(
            index_blob["manifests"][1]["platform"]["architecture"],
            "arm64"
        );

        // Sharing as documented, and distinct images otherwise.
        assert_eq!(one.a.layers[0], one.shared_layer);
        assert_eq!(one.b.layers[0], one.shared_layer);
        assert_eq!(one.c.image("linux", "arm64").layers[0], one.shared_layer);
        assert_ne!(one.a.layers[1], one.b.layers[1]);
        assert_ne!(
            one.c.image("linux", "amd64").digest(),
            one.c.image("linux", "arm64").digest()
        );
    }

    #[test]
    fn layer_tars_are_sorted_with_parents_and_fixed_metadata() {
        let layer = Layer::new()
            .file("/b/z", "z")
            .file_mode("a/x/run", "#!", 0o755)
            .noise_file("b/noise", 1000, 3);
        let tar = layer.tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), MTIME);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let path = entry.path().unwrap().display().to_string();
            let mode = h.mode().unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            if path == "b/noise" {
                assert_eq!(data, crate::noise(1000, 3));
            }
            seen.push((path, mode));
        }
        assert_eq!(
            seen,
            [
                ("a/".to_owned(), 0o755),
                ("a/x/".to_owned(), 0o755),
                ("a/x/run".to_owned(), 0o755),
                ("b/".to_owned(), 0o755),
                ("b/noise".to_owned(), 0o644),
                ("b/z".to_owned(), 0o644),
            ]
        );
        assert_eq!(layer.tar(), tar);
    }

    #[test]
    fn big_image_is_incompressible_and_split_over_layers() {
        let dir = TestDir::new();
        let mut layout = OciLayout::create(dir.path());
        let image = layout.add_image("big", &big_image(3, 2));
        assert_eq!(image.layers.len(), 2);
        let payload: u64 = image.layers.iter().map(|l| l.size).sum();
        assert!(payload >= 3 * 1024 * 1024, "compressed to {payload} bytes");
        assert!(payload < 3 * 1024 * 1024 + 64 * 1024, "{payload}");
    }

    #[test]
    fn pushed_images_keep_their_digests_and_platforms() {
        let dir = TestDir::new();
        let images = TestImages::build(dir.join("layout"));
        let registry = Registry::start();
        let [a, b, c] = images.push_all(&registry);
        assert_eq!(a, images.a.digest());
        assert_eq!(b, images.b.digest());
        assert_eq!(c, images.c.digest());

        let inspect_a = registry.inspect(TestImages::A);
        assert_eq!(inspect_a["Digest"], images.a.digest());
        assert_eq!(inspect_a["Architecture"], "amd64");
        assert_eq!(inspect_a["Layers"], json!(images.a.layer_digests()));
        let inspect_b = registry.inspect(TestImages::B);
        assert_eq!(inspect_b["Digest"], images.b.digest());
        assert_eq!(inspect_b["Layers"], json!(images.b.layer_digests()));
        assert_eq!(inspect_b["Layers"][0], inspect_a["Layers"][0]);
        assert_eq!(registry.inspect(TestImages::C)["Digest"], images.c.digest());

        let raw: Value = serde_json::from_slice(&registry.inspect_raw(TestImages::C)).unwrap();
        assert_eq!(raw["mediaType"], INDEX_MEDIA_TYPE);
        let platforms: Vec<(String, String, String)> = raw["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["os"].as_str().unwrap().to_owned(),
                    m["platform"]["architecture"].as_str().unwrap().to_owned(),
                    m["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = images
            .c
            .images
            .iter()
            .map(|i| {
                (
                    i.platform.os.clone(),
                    i.platform.architecture.clone(),
                    i.digest().to_owned(),
                )
            })
            .collect();
        assert_eq!(platforms, expected);
        // Each platform's manifest was pushed too (`--all`), by digest.
        let arm = images.c.image("linux", "arm64");
        let by_digest = format!("ferry-test/c@{}", arm.digest());
        assert_eq!(registry.manifest_digest(&by_digest), arm.digest());
    }
}
