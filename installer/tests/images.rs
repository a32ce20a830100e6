//! `ferry-install images load|push` end to end, on signed bundles built here whose image
//! is a real `docker-archive+oci` archive: a tiny OCI layout written by the test, turned
//! into a docker-archive by `skopeo copy`, with the OCI layout added beside it (as
//! Docker 25's `docker save` does).
//!
//! Push goes into a real registry: Debian's `docker-registry` on a random 127.0.0.1 port
//! with its storage in a temp dir, checked afterwards with `skopeo inspect`. No Docker
//! engine runs here, so `load` is tested against a fake `docker` (and a fake `podman`)
//! script that records what it is given; those are named as fakes wherever they appear.
//!
//! skopeo, docker-registry and htpasswd are required: without them these tests fail and
//! name the Debian package to install; they never skip.

mod support;

use ferry_bundle::{FileEntry, Image, Manifest};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-install");
const REFERENCE: &str = "docker.io/ferrytest/hello:v1";
const IMAGE_FILE: &str = "images/hello_v1.tar";
const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// The path of `program` on PATH; fails the test naming the Debian package if absent.
fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is required by the images tests: install the Debian package {package} (apt-get install {package})")
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The test image, built once per test binary: archive bytes and its manifest digest.
struct TestImage {
    /// The `docker-archive+oci` archive.
    archive: Vec<u8>,
    /// The same image as a plain docker-archive, straight from `skopeo copy`.
    plain_archive: Vec<u8>,
    /// `sha256:<hex>` of the OCI image manifest.
    digest: String,
    _dir: tempfile::TempDir,
}

fn test_image() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(build_test_image)
}

fn tar_header(path: &str, size: usize, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn build_test_image() -> TestImage {
    let skopeo = require("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut blobs: Vec<(String, Vec<u8>)> = vec![];
    let mut blob = |bytes: Vec<u8>| -> (String, usize) {
        let hex = sha256_hex(&bytes);
        std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
        let size = bytes.len();
        blobs.push((hex.clone(), bytes));
        (format!("sha256:{hex}"), size)
    };

    // One layer: a tar with one file, gzip-compressed.
    let mut layer = tar::Builder::new(Vec::new());
    let content = b"hello from a ferry test image\n";
    layer
        .append(
            &tar_header("hello.txt", content.len(), tar::EntryType::Regular),
            &content[..],
        )
        .unwrap();
    let layer_tar = layer.into_inner().unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&layer_tar));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer_tar).unwrap();
    let (layer_digest, layer_size) = blob(gz.finish().unwrap());

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/hello.txt"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let (config_digest, config_size) = blob(serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest, "size": config_size },
        "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": layer_digest, "size": layer_size } ],
    });
    let (digest, manifest_size) = blob(serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [ { "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "digest": digest, "size": manifest_size,
                         "annotations": { "org.opencontainers.image.ref.name": "v1" } } ],
    }))
    .unwrap();
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    std::fs::write(layout.join("index.json"), &index).unwrap();
    std::fs::write(layout.join("oci-layout"), &oci_layout).unwrap();

    // The docker-archive side, made by skopeo.
    let plain = dir.path().join("plain.tar");
    let out = Command::new(&skopeo)
        .arg("copy")
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!(
            "docker-archive:{}:ferrytest/hello:v1",
            plain.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let plain_archive = std::fs::read(&plain).unwrap();

    // The OCI layout added to it: one file that is both.
    let mut both = tar::Builder::new(Vec::new());
    let mut source = tar::Archive::new(&plain_archive[..]);
    let mut names = vec![];
    for entry in source.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(entry.path().unwrap().display().to_string());
        let header = entry.header().clone();
        both.append(&header, &mut entry).unwrap();
    }
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    for (path, bytes) in [("oci-layout", &oci_layout), ("index.json", &index)] {
        both.append(
            &tar_header(path, bytes.len(), tar::EntryType::Regular),
            &bytes[..],
        )
        .unwrap();
    }
    for d in ["blobs/", "blobs/sha256/"] {
        both.append(&tar_header(d, 0, tar::EntryType::Directory), &[][..])
            .unwrap();
    }
    for (hex, bytes) in &blobs {
        both.append(
            &tar_header(
                &format!("blobs/sha256/{hex}"),
                bytes.len(),
                tar::EntryType::Regular,
            ),
            &bytes[..],
        )
        .unwrap();
    }
    let archive = both.into_inner().unwrap();
    TestImage {
        archive,
        plain_archive,
        digest,
        _dir: dir,
    }
}

/// A throwaway host root, a trust store and a signed, uncompressed bundle.
struct TestBundle {
    dir: tempfile::TempDir,
    bundle: PathBuf,
    trust: PathBuf,
}

impl TestBundle {
    /// A bundle carrying `images` (each with the archive bytes it points to) and a note file.
    fn new(images: &[(Image, &[u8])]) -> TestBundle {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        std::fs::create_dir_all(payload.join("images")).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let mut files: Vec<(String, Vec<u8>)> =
            vec![("files/readme.txt".into(), b"images test bundle\n".to_vec())];
        for (image, bytes) in images {
            files.push((image.file.clone(), bytes.to_vec()));
        }
        let mut sources = vec![];
        for (path, bytes) in &files {
            let p = payload.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            sources.push(p);
        }
        let manifest = Manifest {
            files: files
                .iter()
                .map(|(path, bytes)| FileEntry {
                    path: path.clone(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                    mode: "0644".into(),
                })
                .collect(),
            images: images.iter().map(|(i, _)| i.clone()).collect(),
            ..support::manifest("images-test-1", "test/images")
        };
        let (bundle, trust) = support::sign_and_write(dir.path(), &manifest, &sources);
        TestBundle { bundle, trust, dir }
    }

    /// The test image under `format`, recorded with `digest`.
    fn with_image(format: &str, bytes: &[u8], digest: &str) -> TestBundle {
        TestBundle::new(&[(image(format, digest), bytes)])
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Change one byte inside the image archive's content in the bundle.
    fn tamper_with_image(&self, archive: &[u8]) {
        let mut bytes = std::fs::read(&self.bundle).unwrap();
        let needle = &archive[..512];
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("image archive inside the bundle");
        bytes[at + 700] ^= 0x01;
        std::fs::write(&self.bundle, bytes).unwrap();
    }

    /// `ferry-install --root ROOT images ARGS... BUNDLE --trust PUB` with `PATH` set to `path`.
    fn run(&self, args: &[&str], path: &std::ffi::OsStr, env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root")
            .arg(self.root())
            .arg("images")
            .args(args)
            .arg(&self.bundle)
            .arg("--trust")
            .arg(&self.trust)
            .env("PATH", path)
            .env_remove("FERRY_DEST_CREDS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// The staging parent exists, is 0700 and holds nothing: every run cleaned up.
    fn assert_staging_clean(&self) {
        let staging = self.root().join("var/lib/ferry/staging");
        let meta = std::fs::symlink_metadata(&staging).expect("staging directory created");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "staging mode");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "staging not cleaned up: {left:?}");
    }
}

fn image(format: &str, digest: &str) -> Image {
    Image {
        reference: REFERENCE.into(),
        digest: digest.into(),
        platform: "linux/amd64".into(),
        file: IMAGE_FILE.into(),
        format: format.into(),
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory holding a FAKE container runtime called `name` (docker or podman): a shell
/// script that records its arguments, the bytes it receives on stdin and a listing of
/// the staging directory as it runs, then answers as `<name> load` does. No Docker engine
/// runs on this machine; this only stands in for the CLI.
fn fake_runtime_dir(parent: &Path, name: &str, exit: i32) -> PathBuf {
    let dir = parent.join(format!("fake-{name}-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"#!/bin/sh
# FAKE {name} for ferry's tests: records what `{name} load` would have been given.
printf '%s\n' "$*" > "$FAKE_RUNTIME_OUT/args"
/bin/ls "$FAKE_STAGING" > "$FAKE_RUNTIME_OUT/staging-listing"
/bin/cat > "$FAKE_RUNTIME_OUT/stdin"
if [ {exit} -ne 0 ]; then
    echo "fake {name}: Cannot connect to the daemon" >&2
    exit {exit}
fi
echo "Loaded image: ferrytest/hello:v1"
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn load_with_fake(
    bundle: &TestBundle,
    runtime: &str,
    args: &[&str],
    exit: i32,
) -> (Output, PathBuf) {
    let fake = fake_runtime_dir(bundle.dir.path(), runtime, exit);
    let out_dir = bundle.dir.path().join(format!("fake-{runtime}-out"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let staging = bundle.root().join("var/lib/ferry/staging");
    let out = bundle.run(
        args,
        fake.as_os_str(),
        &[("FAKE_RUNTIME_OUT", &out_dir), ("FAKE_STAGING", &staging)],
    );
    (out, out_dir)
}

#[test]
fn load_streams_the_verified_image_archive_into_docker_load() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let (out, seen) = load_with_fake(&bundle, "docker", &["load", "--json"], 0);
    assert!(out.status.success(), "{}", text(&out));

    assert_eq!(
        std::fs::read_to_string(seen.join("args")).unwrap(),
        "load\n"
    );
    let received = std::fs::read(seen.join("stdin")).unwrap();
    assert_eq!(received.len(), img.archive.len());
    assert!(
        received == img.archive,
        "docker load got other bytes than the image archive"
    );
    // The runtime ran while the verified copy sat in its own staging directory.
    let listing = std::fs::read_to_string(seen.join("staging-listing")).unwrap();
    assert!(
        listing.trim().starts_with("images-test-1-"),
        "staging during the load: {listing:?}"
    );

    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "reference": REFERENCE,
            "digest": img.digest,
            "file": IMAGE_FILE,
            "result": "loaded",
            "destination": "ferrytest/hello:v1",
        }])
    );
    bundle.assert_staging_clean();
}

#[test]
fn load_defaults_to_podman_when_docker_is_absent() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let (out, seen) = load_with_fake(&bundle, "podman", &["load"], 0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read(seen.join("stdin")).unwrap() == img.archive);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fake-podman-bin/podman"), "{stdout}");
    assert!(stdout.contains("-> ferrytest/hello:v1"), "{stdout}");
    bundle.assert_staging_clean();
}

#[test]
fn load_failure_of_the_runtime_is_reported_with_its_message() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let (out, _) = load_with_fake(&bundle, "docker", &["load"], 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exit status 1"), "{stderr}");
    assert!(stderr.contains("Cannot connect to the daemon"), "{stderr}");
    assert!(stderr.contains(IMAGE_FILE), "{stderr}");
    bundle.assert_staging_clean();
}

#[test]
fn load_without_a_runtime_names_the_debian_packages() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let empty = bundle.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();

    let out = bundle.run(&["load"], empty.as_os_str(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Debian package docker.io or podman"),
        "{stderr}"
    );

    for (runtime, package) in [("docker", "docker.io"), ("podman", "podman")] {
        let out = bundle.run(&["load", "--runtime", runtime], empty.as_os_str(), &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{runtime} not found on PATH"))
                && stderr.contains(&format!("install the Debian package {package}")),
            "{stderr}"
        );
    }
    // It failed before extracting anything.
    assert!(!bundle.root().join("var/lib/ferry/staging").exists());
}

#[test]
fn bundle_without_images_says_so_and_succeeds() {
    let bundle = TestBundle::new(&[]);
    let empty = bundle.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = bundle.run(&["load"], empty.as_os_str(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("carries no container images"),
        "{}",
        text(&out)
    );
    let out = bundle.run(
        &["push", "--registry", "127.0.0.1:1", "--json"],
        empty.as_os_str(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    bundle.assert_staging_clean();
}

/// Debian's docker-registry on a free 127.0.0.1 port, storage in a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start one; with `htpasswd`, it requires these basic-auth users.
    fn start(htpasswd: Option<&str>) -> Registry {
        assert!(
            Path::new(DOCKER_REGISTRY).is_file(),
            "{DOCKER_REGISTRY} is required by the images tests: install the Debian package docker-registry (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let auth = match htpasswd {
            Some(content) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, content).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited with {status}: {}",
                    std::fs::read_to_string(registry.dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Repositories the registry has stored anything for.
    fn repositories(&self) -> bool {
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .exists()
    }

    /// `skopeo inspect` of `name` in this registry; its `Digest`.
    fn digest_of(&self, name: &str, authfile: Option<&Path>) -> String {
        let mut cmd = Command::new(require("skopeo", "skopeo"));
        cmd.arg("inspect").arg("--tls-verify=false");
        if let Some(f) = authfile {
            cmd.arg("--authfile").arg(f);
        }
        let out = cmd
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {name}: {}",
            text(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Digest"].as_str().unwrap().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn inherited_path() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

#[test]
fn push_copies_the_image_into_a_registry_with_its_recorded_digest() {
    let img = test_image();
    let registry = Registry::start(None);
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let out = bundle.run(
        &[
            "push",
            "--registry",
            &registry.host(),
            "--insecure",
            "--json",
        ],
        &inherited_path(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let destination = format!("{}/ferrytest/hello:v1", registry.host());
    assert_eq!(
        json,
        serde_json::json!([{
            "reference": REFERENCE,
            "digest": img.digest,
            "file": IMAGE_FILE,
            "result": "pushed",
            "destination": destination,
        }])
    );
    // The registry itself, asked independently, holds exactly the recorded manifest.
    assert_eq!(registry.digest_of("ferrytest/hello:v1", None), img.digest);
    bundle.assert_staging_clean();
}

#[test]
fn push_of_a_plain_docker_archive_uses_the_docker_archive_transport() {
    // From a plain docker-archive skopeo writes a manifest of its own; a bundle of that
    // format records that manifest's digest. Learn it by a first copy into the registry.
    let img = test_image();
    let registry = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.tar");
    std::fs::write(&plain, &img.plain_archive).unwrap();
    let out = Command::new(require("skopeo", "skopeo"))
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", plain.display()))
        .arg(format!("docker://{}/scratch/probe:v1", registry.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let generated = registry.digest_of("scratch/probe:v1", None);
    assert_ne!(generated, img.digest, "skopeo rewrote the manifest");

    let bundle = TestBundle::with_image("docker-archive", &img.plain_archive, &generated);
    let out = bundle.run(
        &["push", "--registry", &registry.host(), "--insecure"],
        &inherited_path(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(registry.digest_of("ferrytest/hello:v1", None), generated);
    bundle.assert_staging_clean();
}

#[test]
fn push_refuses_a_registry_digest_other_than_the_recorded_one() {
    let img = test_image();
    let registry = Registry::start(None);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &wrong);
    let out = bundle.run(
        &["push", "--registry", &registry.host(), "--insecure"],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("reports digest {}", img.digest))
            && stderr.contains(&format!("bundle records {wrong}")),
        "{stderr}"
    );
    bundle.assert_staging_clean();
}

#[test]
fn push_with_credentials_never_shows_the_password() {
    let password = "pa55-w0rd:with-colon";
    let out = Command::new(require("htpasswd", "apache2-utils"))
        .args(["-Bbn", "ferry", password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let registry = Registry::start(Some(&String::from_utf8(out.stdout).unwrap()));
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let no_secret = |out: &Output| {
        let all = text(out);
        assert!(
            !all.contains(password) && !all.contains("pa55-w0rd"),
            "{all}"
        );
    };

    // Without credentials the registry refuses: a clear failure, staging cleaned.
    let out = bundle.run(
        &["push", "--registry", &registry.host(), "--insecure"],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("skopeo"),
        "{}",
        text(&out)
    );

    // Wrong password: refused, and neither password appears anywhere.
    let out = bundle.run(
        &[
            "push",
            "--registry",
            &registry.host(),
            "--insecure",
            "--dest-creds",
            "ferry:pa55-w0rd-wrong",
        ],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    no_secret(&out);

    // Right password on the command line, then through the environment.
    let creds = format!("ferry:{password}");
    let out = bundle.run(
        &[
            "push",
            "--registry",
            &registry.host(),
            "--insecure",
            "--dest-creds",
            &creds,
            "-v",
        ],
        &inherited_path(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    no_secret(&out);
    let mut cmd = Command::new(BIN);
    let env_out = cmd
        .arg("--root")
        .arg(bundle.root())
        .args([
            "images",
            "push",
            "--registry",
            &registry.host(),
            "--insecure",
        ])
        .arg(&bundle.bundle)
        .arg("--trust")
        .arg(&bundle.trust)
        .env("FERRY_DEST_CREDS", &creds)
        .output()
        .unwrap();
    assert!(env_out.status.success(), "{}", text(&env_out));
    no_secret(&env_out);

    // A malformed value is a usage error that does not echo it.
    let out = bundle.run(
        &[
            "push",
            "--registry",
            &registry.host(),
            "--dest-creds",
            "pa55-w0rd-alone",
        ],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    no_secret(&out);

    let authfile = bundle.dir.path().join("auth.json");
    std::fs::write(
        &authfile,
        serde_json::json!({"auths": {registry.host(): {"auth": base64_std(creds.as_bytes())}}})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        registry.digest_of("ferrytest/hello:v1", Some(&authfile)),
        img.digest
    );
    // The auth file ferry-install wrote is gone with the staging directory.
    bundle.assert_staging_clean();
}

#[test]
fn push_without_skopeo_names_the_debian_package() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    let empty = bundle.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = bundle.run(
        &["push", "--registry", "127.0.0.1:5000", "--insecure"],
        empty.as_os_str(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("install the Debian package skopeo"),
        "{stderr}"
    );
}

#[test]
fn tampered_bundle_is_refused_before_anything_is_loaded_or_pushed() {
    let img = test_image();
    let bundle = TestBundle::with_image("docker-archive+oci", &img.archive, &img.digest);
    bundle.tamper_with_image(&img.archive);

    let (out, seen) = load_with_fake(&bundle, "docker", &["load"], 0);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(IMAGE_FILE) && stderr.contains("sha256 mismatch"),
        "{stderr}"
    );
    assert!(!seen.join("args").exists(), "the fake docker was run");
    bundle.assert_staging_clean();

    let registry = Registry::start(None);
    let out = bundle.run(
        &["push", "--registry", &registry.host(), "--insecure"],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!registry.repositories(), "something reached the registry");
    bundle.assert_staging_clean();
}

#[test]
fn registry_must_be_host_and_port() {
    let bundle = TestBundle::new(&[]);
    let out = bundle.run(
        &["push", "--registry", "https://registry.lan:5000"],
        &inherited_path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"),
        "{}",
        text(&out)
    );
}

/// Standard base64, for the auth file the test itself hands to skopeo.
fn base64_std(bytes: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
