//! `ferry-install images load|push`: hands a bundle's container images to a local
//! container runtime (`docker load`, `podman load`) or copies them with skopeo into a
//! registry on the air-gapped network, keeping their digests.
//!
//! Both commands verify the bundle exactly as `ferry-install verify` does and extract its
//! payload into a fresh directory under `/var/lib/ferry/staging` (0700), which is removed
//! again when the command ends, whatever happened. Images are only ever read from that
//! verified copy, never from the bundle file. This module talks to no registry itself
//! (skopeo does, on the operator's LAN) and never puts a password on a command line or
//! into a message: registry credentials go to skopeo through a 0600 auth file inside the
//! staging directory.

use crate::config::Config;
use crate::host::Host;
use crate::tools::{describe, display_command, find_program, tail};
use crate::verify::{verify_bundle, VerifyRequest};
use crate::{Error, Result};
use ferry_bundle::{read_manifest, BundleSource, Image, Reporter, VerifiedManifest};
use serde::Serialize;
use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where verified payloads are extracted (a host path, under `--root`).
pub const STAGING_DIR: &str = "/var/lib/ferry/staging";

/// Format of an image archive that is both a docker-archive and an OCI layout.
pub const FORMAT_DOCKER_ARCHIVE_OCI: &str = "docker-archive+oci";
/// Format of a plain docker-archive (`docker save` before Docker 25).
pub const FORMAT_DOCKER_ARCHIVE: &str = "docker-archive";

/// A container runtime `images load` can feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `docker load`.
    Docker,
    /// `podman load`.
    Podman,
}

impl Runtime {
    /// The program run.
    pub fn program(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }

    /// The Debian package that provides the program.
    pub fn package(self) -> &'static str {
        match self {
            Runtime::Docker => "docker.io",
            Runtime::Podman => "podman",
        }
    }
}

/// Registry credentials (`--dest-creds USER:PASS`). `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// Parse `USER:PASS` (split at the first colon). The error never repeats the input.
    pub fn parse(text: &str) -> Result<Credentials> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err(Error::Usage(
                "--dest-creds must be USER:PASS with a non-empty user name".into(),
            )),
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The value of an auth file's `auth` field: base64 of `USER:PASS`.
    fn basic_auth(&self) -> String {
        base64(format!("{}:{}", self.user, self.password).as_bytes())
    }

    /// `text` with every form of the password blanked out.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in [self.basic_auth(), self.password.clone()] {
            if !secret.is_empty() {
                out = out.replace(&secret, "<redacted>");
            }
        }
        out
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where and how `images push` copies images.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// `HOST:PORT` of the destination registry.
    pub registry: String,
    /// Talk plain HTTP / accept any certificate (`--insecure`).
    pub insecure: bool,
    /// `--dest-creds`.
    pub credentials: Option<Credentials>,
}

/// Check a `--registry` value: `HOST:PORT`, no scheme, no path.
pub fn parse_registry(text: &str) -> std::result::Result<String, String> {
    let bad = |why: &str| Err(format!("{why}; expected HOST:PORT, e.g. 127.0.0.1:5000"));
    if text.contains("://") {
        return bad("no scheme (http://, https://) is allowed");
    }
    if text
        .chars()
        .any(|c| c == '/' || c == '@' || c.is_whitespace() || c.is_control())
    {
        return bad("no path, user or whitespace is allowed");
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return bad("the port is missing");
    };
    if host.is_empty() || host == "[]" {
        return bad("the host is missing");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(text.to_string()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

/// What happened to one image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageOutcome {
    /// `manifest.images[].reference`.
    pub reference: String,
    /// `manifest.images[].digest`.
    pub digest: String,
    /// The archive among the bundle's files.
    pub file: String,
    /// `loaded` or `pushed`.
    pub result: String,
    /// Push: the destination reference. Load: the name(s) the runtime reported.
    pub destination: String,
}

/// The result of `images load` or `images push`.
#[derive(Clone, Debug)]
pub struct ImagesReport {
    /// The verified bundle's name.
    pub name: String,
    /// The program that did the work (`docker`, `podman`, `skopeo`), if any image was handled.
    pub tool: Option<PathBuf>,
    /// One entry per image, in manifest order; empty when the bundle carries none.
    pub images: Vec<ImageOutcome>,
}

/// Verify `bundle`, then stream each of its images into `docker load` or `podman load`.
/// `runtime: None` means docker if it is on `PATH`, else podman.
pub fn load_images(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    runtime: Option<Runtime>,
    reporter: &dyn Reporter,
) -> Result<ImagesReport> {
    // 1. Peek at the (unverified) head: only to fail fast on a missing runtime before a
    //    long verification, and to name the staging directory. Nothing is acted on yet.
    let head = read_manifest(&BundleSource::open(bundle)?)?;
    let mut tool = match head.manifest.images.is_empty() {
        true => None,
        false => Some(choose_runtime(runtime)?),
    };

    // 2. Verify and extract; from here on only the verified manifest and staging copy count.
    let staged = Staged::verify(host, config, bundle, request, &head.manifest.name, reporter)?;
    let manifest = &staged.manifest;
    let mut report = ImagesReport {
        name: manifest.name.clone(),
        tool: None,
        images: vec![],
    };
    if manifest.images.is_empty() {
        return Ok(report);
    }
    for image in &manifest.images {
        check_format(image)?;
    }
    let (runtime, program) = match tool.take() {
        Some(t) => t,
        None => choose_runtime(runtime)?,
    };
    report.tool = Some(program.clone());

    // 3. One `load` per image, fed from the staged file.
    for (n, image) in manifest.images.iter().enumerate() {
        reporter.step(&format!(
            "loading image {}/{}: {} with {}",
            n + 1,
            manifest.images.len(),
            image.reference,
            runtime.program()
        ));
        let path = staged.file(&image.file);
        let names = run_load(&program, runtime, &path, &image.file, reporter)?;
        if names.is_empty() {
            reporter.warn(&format!(
                "{} load of {} succeeded but named no image",
                runtime.program(),
                image.file
            ));
        }
        report.images.push(ImageOutcome {
            reference: image.reference.clone(),
            digest: image.digest.clone(),
            file: image.file.clone(),
            result: "loaded".into(),
            destination: names.join(", "),
        });
    }
    Ok(report)
}

/// Verify `bundle`, then copy each of its images into `options.registry` with skopeo,
/// digests preserved, and check the digest the registry reports against the manifest.
pub fn push_images(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<ImagesReport> {
    parse_registry(&options.registry)
        .map_err(|why| Error::Usage(format!("--registry {:?}: {why}", options.registry)))?;
    // 1. Peek at the unverified head, as `load_images` does.
    let head = read_manifest(&BundleSource::open(bundle)?)?;
    let mut skopeo = match head.manifest.images.is_empty() {
        true => None,
        false => Some(find_skopeo()?),
    };

    // 2. Verify and extract.
    let mut staged = Staged::verify(host, config, bundle, request, &head.manifest.name, reporter)?;
    let manifest = staged.manifest.clone();
    let mut report = ImagesReport {
        name: manifest.name.clone(),
        tool: None,
        images: vec![],
    };
    if manifest.images.is_empty() {
        return Ok(report);
    }
    // 3. Everything that can be checked before the first copy: formats, references.
    let mut plan = Vec::new();
    for image in &manifest.images {
        let transport = check_format(image)?;
        let destination = destination(&options.registry, image)?;
        let source = staged.file(&image.file);
        if source.as_os_str().as_encoded_bytes().contains(&b':') {
            return Err(Error::Image {
                file: image.file.clone(),
                message: format!(
                    "the staging path {} contains ':', which skopeo cannot take in a transport name\nhelp: use a --root without ':'",
                    source.display()
                ),
            });
        }
        let mut src = OsString::from(format!("{transport}:"));
        src.push(&source);
        plan.push((image, src, destination));
    }
    let skopeo = match skopeo.take() {
        Some(p) => p,
        None => find_skopeo()?,
    };
    report.tool = Some(skopeo.clone());
    let authfile = match &options.credentials {
        Some(creds) => Some(staged.write_authfile(&options.registry, creds)?),
        None => None,
    };
    let redact = |text: &str| match &options.credentials {
        Some(c) => c.redact(text),
        None => text.to_string(),
    };

    // 4. Copy, then ask the registry what it now holds under that name.
    for (n, (image, src, destination)) in plan.into_iter().enumerate() {
        reporter.step(&format!(
            "pushing image {}/{}: {} -> {destination}",
            n + 1,
            manifest.images.len(),
            image.reference
        ));
        let mut copy: Vec<OsString> = vec!["copy".into(), "--preserve-digests".into()];
        if options.insecure {
            copy.push("--dest-tls-verify=false".into());
        }
        if let Some(file) = &authfile {
            copy.push("--dest-authfile".into());
            copy.push(file.clone().into());
        }
        copy.push(src);
        copy.push(format!("docker://{destination}").into());
        let help = format!(
            "check that the registry {} is reachable from this host{}",
            options.registry,
            if options.insecure {
                ""
            } else {
                "; for a registry without TLS pass --insecure"
            }
        );
        run_checked(
            &skopeo,
            &copy,
            &format!("copying {} to {destination}", image.file),
            &help,
            &redact,
        )?;

        let mut inspect: Vec<OsString> = vec!["inspect".into()];
        if options.insecure {
            inspect.push("--tls-verify=false".into());
        }
        if let Some(file) = &authfile {
            inspect.push("--authfile".into());
            inspect.push(file.clone().into());
        }
        inspect.push(format!("docker://{destination}").into());
        let out = run_checked(
            &skopeo,
            &inspect,
            &format!("inspecting {destination} after the copy"),
            &help,
            &redact,
        )?;
        let found = serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.get("Digest")?.as_str().map(str::to_string))
            .ok_or_else(|| Error::Command {
                what: format!("inspecting {destination} after the copy"),
                command: display_command(&skopeo, &inspect),
                status: "success".into(),
                detail: format!("output has no \"Digest\" field: {}", redact(&tail(&out, 5))),
                help: "check the skopeo version (Debian package skopeo)".into(),
            })?;
        if found != image.digest {
            return Err(Error::DigestMismatch {
                reference: image.reference.clone(),
                destination: destination.clone(),
                expected: image.digest.clone(),
                found,
            });
        }
        report.images.push(ImageOutcome {
            reference: image.reference.clone(),
            digest: image.digest.clone(),
            file: image.file.clone(),
            result: "pushed".into(),
            destination,
        });
    }
    Ok(report)
}

/// The verified manifest and its payload in a staging directory of its own; dropping it
/// removes the directory (and the auth file, if one was written).
struct Staged {
    // Declared first so `Drop for Staged` (the auth file) runs before the directory goes.
    dir: StagingGuard,
    manifest: VerifiedManifest,
    extra: Vec<PathBuf>,
}

/// Removes a staging directory when dropped, whether or not verification got that far.
struct StagingGuard(PathBuf);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not remove {}: {e}", self.0.display()),
        }
    }
}

impl Staged {
    fn verify(
        host: &Host,
        config: &Config,
        bundle: &Path,
        request: &VerifyRequest,
        name: &str,
        reporter: &dyn Reporter,
    ) -> Result<Staged> {
        let root = staging_root(host)?;
        let dir = unique_child(&root, name);
        let guard = StagingGuard(dir.clone());
        reporter.step(&format!("verifying {}", bundle.display()));
        let report = verify_bundle(host, config, bundle, request, Some(&dir), reporter)?;
        let manifest = report.verified.ok_or_else(|| {
            Error::Bundle(ferry_bundle::Error::Usage(
                "verification returned no verified manifest".into(),
            ))
        })?;
        Ok(Staged {
            dir: guard,
            manifest,
            extra: vec![],
        })
    }

    /// The staged copy of a payload file (the path was checked by the manifest rules).
    fn file(&self, path: &str) -> PathBuf {
        self.dir.0.join(path)
    }

    /// A containers-auth.json for `registry` beside the staging directory, mode 0600.
    fn write_authfile(&mut self, registry: &str, creds: &Credentials) -> Result<PathBuf> {
        let path = authfile_path(&self.dir.0);
        let json = serde_json::json!({ "auths": { registry: { "auth": creds.basic_auth() } } });
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        self.extra.push(path.clone());
        file.write_all(json.to_string().as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for path in &self.extra {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("could not remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// `O_NOFOLLOW` on Linux.
const O_NOFOLLOW: i32 = 0o400000;

/// `/var/lib/ferry/staging` under the root: created 0700 if absent, tightened to 0700 if
/// looser, refused if it is anything but a directory (a symlink, for instance).
fn staging_root(host: &Host) -> Result<PathBuf> {
    let root = host.path(STAGING_DIR);
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match DirBuilder::new().mode(0o700).create(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(&root, e)),
    }
    let meta = std::fs::symlink_metadata(&root).map_err(|e| Error::io(&root, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            &root,
            io::Error::other("exists and is not a directory (a symlink?); move it aside"),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&root, e))?;
    }
    Ok(root)
}

/// `<name>-<pid>`, or `<name>-<pid>-<n>` if a stale directory of that name is in the way.
fn unique_child(root: &Path, name: &str) -> PathBuf {
    let pid = std::process::id();
    let base = format!("{name}-{pid}");
    let mut candidate = root.join(&base);
    let mut n = 2u32;
    while std::fs::symlink_metadata(&candidate).is_ok()
        || std::fs::symlink_metadata(authfile_path(&candidate)).is_ok()
    {
        candidate = root.join(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// Where registry credentials for the run staged in `dir` are written: beside it, not in it,
/// so the verified copy holds nothing but the payload.
fn authfile_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".registry-auth.json");
    PathBuf::from(name)
}

/// The transport skopeo reads an archive of this format with. A `docker-archive+oci` file
/// is read as the OCI layout it also is, so the registry receives the image's original
/// manifest and its digest stays the one recorded; from the docker-archive side skopeo
/// would write a manifest of its own, with another digest.
fn check_format(image: &Image) -> Result<&'static str> {
    match image.format.as_str() {
        FORMAT_DOCKER_ARCHIVE_OCI => Ok("oci-archive"),
        FORMAT_DOCKER_ARCHIVE => Ok("docker-archive"),
        other => Err(Error::Image {
            file: image.file.clone(),
            message: format!(
                "image {} has format {other:?}; this ferry-install handles {FORMAT_DOCKER_ARCHIVE_OCI:?} and {FORMAT_DOCKER_ARCHIVE:?}\nhelp: use a ferry-install as new as the ferry-build that made the bundle",
                image.reference
            ),
        }),
    }
}

/// `docker` if it is on PATH, else `podman`; or the one asked for.
fn choose_runtime(wanted: Option<Runtime>) -> Result<(Runtime, PathBuf)> {
    let candidates = match wanted {
        Some(r) => vec![r],
        None => vec![Runtime::Docker, Runtime::Podman],
    };
    for runtime in &candidates {
        if let Some(path) = find_program(runtime.program(), None) {
            return Ok((*runtime, path));
        }
    }
    Err(match wanted {
        Some(r) => Error::ToolMissing {
            program: r.program().into(),
            package: r.package().into(),
            purpose: "to load container images".into(),
        },
        None => Error::NoRuntime,
    })
}

fn find_skopeo() -> Result<PathBuf> {
    find_program("skopeo", None).ok_or_else(|| Error::ToolMissing {
        program: "skopeo".into(),
        package: "skopeo".into(),
        purpose: "to copy container images into a registry".into(),
    })
}

/// Stream `path` into `<runtime> load` on stdin; returns the image names it reported.
fn run_load(
    program: &Path,
    runtime: Runtime,
    path: &Path,
    file: &str,
    reporter: &dyn Reporter,
) -> Result<Vec<String>> {
    let mut input = File::open(path).map_err(|e| Error::io(path, e))?;
    let total = input.metadata().map_err(|e| Error::io(path, e))?.len();
    let args = [OsString::from("load")];
    let command = display_command(program, &args);
    tracing::debug!("running {command} < {}", path.display());
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(program, e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            let mut buf = vec![0u8; 256 * 1024];
            let mut done = 0u64;
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                stdin.write_all(&buf[..n])?;
                done += n as u64;
                reporter.progress("loading", done, total);
            }
            stdin.flush()
            // `stdin` is dropped here, so the runtime sees end of file.
        });
        let output = child.wait_with_output();
        (writer.join().expect("writer thread panicked"), output)
    });
    let output = output.map_err(|e| Error::io(program, e))?;
    let what = format!("loading {file} into {}", runtime.program());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(Error::Command {
            what,
            command,
            status: describe(output.status),
            detail: tail(&format!("{stderr}{stdout}"), 20),
            help: format!(
                "check that the {} daemon/service is running and that this user may use it",
                runtime.program()
            ),
        });
    }
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Err(Error::Command {
                what,
                command,
                status: describe(output.status),
                detail: format!(
                    "it exited before reading all {total} bytes of the archive\n{}",
                    tail(&stderr, 20)
                ),
                help: format!(
                    "run `{} load -i` on the file by hand to see why",
                    runtime.program()
                ),
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    }
    tracing::debug!("{command}: {stdout}");
    Ok(loaded_names(&stdout))
}

/// Names from `Loaded image: a` / `Loaded image ID: sha256:…` / `Loaded image(s): a,b`.
fn loaded_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Loaded image"))
        .filter_map(|rest| rest.split_once(": ").map(|(_, names)| names))
        .flat_map(|names| names.split(','))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Run a command to completion; its stdout on success, an error naming it otherwise.
/// Everything taken from its output passes through `redact` first.
fn run_checked(
    program: &Path,
    args: &[OsString],
    what: &str,
    help: &str,
    redact: &dyn Fn(&str) -> String,
) -> Result<String> {
    let command = display_command(program, args);
    tracing::debug!("running {}", redact(&command));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(program, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Command {
            what: what.to_string(),
            command: redact(&command),
            status: describe(output.status),
            detail: redact(&tail(&stderr, 20)),
            help: help.to_string(),
        });
    }
    Ok(stdout)
}

/// The repository path and tag (or digest) of `reference` under `registry`:
/// `docker.io/tykio/tyk-plugin-compiler:v5.2.5` -> `HOST:PORT/tykio/tyk-plugin-compiler:v5.2.5`.
fn destination(registry: &str, image: &Image) -> Result<String> {
    let (repository, suffix) = split_reference(&image.reference).map_err(|why| Error::Image {
        file: image.file.clone(),
        message: format!("reference {:?} {why}", image.reference),
    })?;
    Ok(format!("{registry}/{repository}{suffix}"))
}

/// Split a reference into its repository path without the registry host (docker.io
/// names get `library/` as Docker does) and `:tag`, `@digest` or `:latest`.
fn split_reference(reference: &str) -> std::result::Result<(String, String), String> {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    let docker_hub = matches!(domain, None | Some("docker.io") | Some("index.docker.io"));
    let path = if docker_hub && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    let path_ok = path.split('/').all(|seg| {
        !seg.is_empty()
            && seg.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
            && seg
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
    });
    if !path_ok {
        return Err(
            "has no valid repository path (lower-case letters, digits, . _ - and /)".into(),
        );
    }
    let suffix = match (tag, digest) {
        (Some(tag), _) => {
            let tag_ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
                && !tag.starts_with(['.', '-']);
            if !tag_ok {
                return Err(format!("has an invalid tag {tag:?}"));
            }
            format!(":{tag}")
        }
        (None, Some(digest)) => {
            let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && algo.bytes().all(|c| c.is_ascii_alphanumeric())
                    && hex.len() >= 32
                    && hex.bytes().all(|c| c.is_ascii_hexdigit())
            });
            if !ok {
                return Err(format!("has an invalid digest {digest:?}"));
            }
            format!("@{digest}")
        }
        (None, None) => ":latest".into(),
    };
    Ok((path, suffix))
}

/// Standard base64 with padding (what auth files hold); too small a need for a crate.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_lose_their_registry_host() {
        let cases = [
            (
                "docker.io/tykio/tyk-plugin-compiler:v5.2.5",
                "tykio/tyk-plugin-compiler",
                ":v5.2.5",
            ),
            ("docker.io/library/redis:7", "library/redis", ":7"),
            ("docker.io/redis:7", "library/redis", ":7"),
            ("redis", "library/redis", ":latest"),
            ("tykio/tyk-gateway:v5", "tykio/tyk-gateway", ":v5"),
            ("localhost:5000/a/b:c", "a/b", ":c"),
            ("localhost/a", "a", ":latest"),
            ("quay.io/x/y", "x/y", ":latest"),
            ("registry.example.com:8443/team/app:1.0", "team/app", ":1.0"),
            (
                "ghcr.io/o/i@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "o/i",
                "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            (
                "ghcr.io/o/i:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "o/i",
                ":t",
            ),
        ];
        for (reference, path, suffix) in cases {
            assert_eq!(
                split_reference(reference),
                Ok((path.to_string(), suffix.to_string())),
                "{reference}"
            );
        }
        for bad in ["docker.io/Upper/x:1", "docker.io//x", "x:bad tag", "x@nope"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_must_be_host_and_port() {
        assert!(parse_registry("127.0.0.1:5000").is_ok());
        assert!(parse_registry("registry.lan:443").is_ok());
        assert!(parse_registry("[::1]:5000").is_ok());
        for bad in [
            "127.0.0.1",
            "http://127.0.0.1:5000",
            "host:5000/path",
            ":5000",
            "host:0",
            "host:99999",
            "u@host:1",
        ] {
            assert!(parse_registry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn credentials_never_show_the_password() {
        let creds = Credentials::parse("ops:s3cr:et").unwrap();
        assert_eq!(creds.user(), "ops");
        assert!(!format!("{creds:?}").contains("s3cr"));
        let auth = creds.basic_auth();
        let text = format!("denied for s3cr:et ({auth})");
        let red = creds.redact(&text);
        assert!(!red.contains("s3cr:et") && !red.contains(&auth), "{red}");
        let err = Credentials::parse("no-colon-secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("no-colon-secret"), "{err}");
    }

    #[test]
    fn loaded_names_from_docker_and_podman() {
        assert_eq!(
            loaded_names("Loaded image: example.com/a:1\nLoaded image ID: sha256:ab\n"),
            vec!["example.com/a:1", "sha256:ab"]
        );
        assert_eq!(
            loaded_names("Getting image source signatures\nLoaded image(s): a:1,b:2\n"),
            vec!["a:1", "b:2"]
        );
    }
}
