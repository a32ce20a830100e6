//! The manifest of a `ferry/1` bundle: its types, its parser and the rules every
//! manifest must satisfy before anything else looks at it.
//!
//! Parsing never trusts the bytes: [`Manifest::parse`] checks sizes, the format string,
//! every path and every cross-reference. A parsed manifest is still *unverified*; only
//! the reader's verification produces a [`crate::VerifiedManifest`].

use crate::paths::check_path;
use crate::time::Timestamp;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The format string this crate reads and writes.
pub const FORMAT: &str = "ferry/1";
/// Path of the manifest entry inside the bundle.
pub const MANIFEST_PATH: &str = "ferry/manifest.json";
/// Directory of embedded signature entries inside the bundle.
pub const SIGNATURES_DIR: &str = "ferry/signatures/";
/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_SIZE: u64 = 16 * 1024 * 1024;
/// Largest number of payload files one bundle may list.
pub const MAX_FILES: usize = 100_000;

/// The whole `ferry/manifest.json` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Human name of the bundle, also its file name stem.
    pub name: String,
    /// Replay-protection channel: a host refuses a lower `sequence` on the same channel.
    pub channel: String,
    /// Monotonic number within the channel; defaults to `created` in Unix seconds.
    pub sequence: u64,
    /// When the bundle was built; also every entry's mtime.
    pub created: Timestamp,
    /// After this instant hosts refuse the bundle.
    pub expires: Timestamp,
    /// Name and version of the tool that wrote the bundle.
    pub builder: String,
    /// The system the bundle is meant for.
    pub target: Target,
    /// Every payload file, in archive order.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// `.deb` packages among the files.
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Container images among the files.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Install steps, run in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Backups to take before installing.
    #[serde(default)]
    pub backups: Vec<Backup>,
    /// Free-form notes for the operator (shown by `inspect` and `plan`).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The operating system a bundle targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `debian` or `ubuntu` (the `ID` of os-release).
    pub distro: String,
    /// Release codename, e.g. `bookworm` or `focal`.
    pub codename: String,
    /// dpkg architecture, e.g. `amd64`.
    pub arch: String,
}

/// One payload file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the bundle.
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// `0644` or `0755`.
    pub mode: String,
}

impl FileEntry {
    /// The numeric mode (`0o644` or `0o755`).
    pub fn mode_bits(&self) -> u32 {
        if self.mode == "0755" {
            0o755
        } else {
            0o644
        }
    }
}

/// Why a package is in the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Named in the spec.
    Target,
    /// Pulled in by dependency resolution.
    Dependency,
    /// An older version carried so rollback works offline.
    Previous,
}

/// A `.deb` package carried by the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Full Debian version, epoch included.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// Path of the `.deb` among `files`.
    pub file: String,
    /// The APT source it came from (`URL suite component`).
    #[serde(default)]
    pub repository: String,
    /// Why it is here.
    pub role: Role,
}

/// A container image carried as an archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Full reference, registry included.
    pub reference: String,
    /// Manifest digest `sha256:<hex>`.
    pub digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Path of the image archive among `files`.
    pub file: String,
    /// Archive layout, e.g. `docker-archive+oci`.
    pub format: String,
}

/// One install step: the packages of one component and how to check it afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Component name (`dashboard`, `gateway`, ...).
    pub component: String,
    /// Packages installed by this step, by name.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Service restarted after installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Configuration files backed up before the step.
    #[serde(default)]
    pub configs: Vec<String>,
    /// Skip the step on hosts where none of its packages is installed.
    #[serde(default)]
    pub only_if_installed: bool,
    /// Health check after the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Bundle files put in place on the host before the step's dpkg call (Go plugins
    /// compiled for the new version, placed beside the old ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub place: Vec<Place>,
}

/// A bundle file copied onto the host before a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// The file in the bundle (`files/...`).
    pub file: String,
    /// Absolute host path it is copied to (an existing file there is replaced; the
    /// backup set holds the old one when its directory is backed up).
    pub dest: String,
    /// Permission bits, four octal digits.
    #[serde(default = "default_place_mode")]
    pub mode: String,
}

fn default_place_mode() -> String {
    "0644".into()
}

/// An HTTP health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// URL to GET (loopback or LAN).
    pub url: String,
    /// Accepted values of the JSON `status` field; empty means any 2xx.
    #[serde(default)]
    pub json_status: Vec<String>,
    /// How long to keep trying.
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
    /// Values of `status` that pass with a warning in the summary (Tyk's `warn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warn_status: Vec<String>,
    /// Work the URL out on the host from the component's installed configuration
    /// (ports and endpoint names differ between hosts); `url` is the fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<HealthSource>,
}

/// Where a health URL is derived from on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSource {
    /// The rules to apply: `tyk-gateway`, `tyk-dashboard` or `tyk-pump`.
    pub profile: String,
    /// The configuration file to read (host path).
    pub config: String,
}

fn default_health_timeout() -> u64 {
    60
}

/// What a backup item copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Redis `SAVE` and a copy of `dump.rdb`.
    Redis,
    /// `pg_dump` in custom format.
    Postgres,
    /// `mongodump --archive`.
    Mongodb,
    /// Plain files and directories.
    Files,
}

/// One backup to take before installing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// What to back up.
    pub kind: BackupKind,
    /// Where to read connection details from, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// For `files`: paths or globs to copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Skip (and record) this backup on a host where its `config` is absent or names no
    /// such connection, instead of failing: components often live on separate hosts,
    /// and a Dashboard uses MongoDB or PostgreSQL, not both.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl Manifest {
    /// Parse and check manifest bytes taken from a bundle. Nothing here is trusted yet.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::Manifest(format!(
                "{} bytes is larger than the {MAX_MANIFEST_SIZE}-byte limit",
                bytes.len()
            )));
        }
        // Peek at the format first so a future major version gets a clear message
        // rather than a complaint about a missing field.
        #[derive(Deserialize)]
        struct FormatOnly {
            format: Option<String>,
        }
        let peek: FormatOnly = serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("not valid JSON: {e}")))?;
        match peek.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::Manifest(format!(
                    "format is {other:?}; this ferry reads {FORMAT:?}\nhelp: use a ferry-install that supports {other}"
                )))
            }
            None => return Err(Error::Manifest("missing field \"format\"".into())),
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("invalid manifest: {e}")))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Serialize as the bundle stores it (pretty JSON, fields in declaration order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    /// The trusted comment every signature over this manifest must carry.
    pub fn trusted_comment(&self) -> String {
        format!(
            "{FORMAT} name={} channel={} sequence={}",
            self.name, self.channel, self.sequence
        )
    }

    /// Total bytes of payload.
    pub fn payload_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Find a payload file by path.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Every rule a manifest must satisfy, independent of the archive around it.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Manifest(what));
        if self.format != FORMAT {
            return bad(format!("format is {:?}; expected {FORMAT:?}", self.format));
        }
        check_label("name", &self.name, false)?;
        check_label("channel", &self.channel, true)?;
        for (field, value) in [
            ("target.distro", &self.target.distro),
            ("target.codename", &self.target.codename),
            ("target.arch", &self.target.arch),
        ] {
            check_label(field, value, false)?;
        }
        if self.expires <= self.created {
            return bad(format!(
                "expires ({}) is not after created ({})",
                self.expires, self.created
            ));
        }
        if self.files.len() > MAX_FILES {
            return bad(format!(
                "{} files listed; at most {MAX_FILES} are allowed",
                self.files.len()
            ));
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for (i, f) in self.files.iter().enumerate() {
            if let Err(why) = check_path(&f.path) {
                return bad(format!("files[{i}].path {:?}: {why}", f.path));
            }
            if f.path.starts_with("ferry/") {
                return bad(format!(
                    "files[{i}].path {:?}: the ferry/ directory is reserved for the manifest and signatures",
                    f.path
                ));
            }
            if !seen.insert(f.path.as_str()) {
                return bad(format!("files[{i}].path {:?} is listed twice", f.path));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            {
                return bad(format!(
                    "files[{i}].sha256 for {:?} is not 64 lower-case hex digits",
                    f.path
                ));
            }
            if f.mode != "0644" && f.mode != "0755" {
                return bad(format!(
                    "files[{i}].mode for {:?} is {:?}; only \"0644\" and \"0755\" are allowed",
                    f.path, f.mode
                ));
            }
            total = total.checked_add(f.size).ok_or_else(|| {
                Error::Manifest("file sizes add up to more than 2^64 bytes".into())
            })?;
        }
        for (i, p) in self.packages.iter().enumerate() {
            if !seen.contains(p.file.as_str()) {
                return bad(format!(
                    "packages[{i}] ({} {}) refers to {:?}, which is not in files",
                    p.name, p.version, p.file
                ));
            }
        }
        for (i, img) in self.images.iter().enumerate() {
            if !seen.contains(img.file.as_str()) {
                return bad(format!(
                    "images[{i}] ({}) refers to {:?}, which is not in files",
                    img.reference, img.file
                ));
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.component.is_empty() {
                return bad(format!("steps[{i}].component is empty"));
            }
            for name in &step.packages {
                if !self.packages.iter().any(|p| &p.name == name) {
                    return bad(format!(
                        "steps[{i}] ({}) installs package {name:?}, which is not in packages",
                        step.component
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Names and channels end up in the signed trusted comment, space-separated: keep them
/// to characters that cannot be confused with its syntax.
fn check_label(field: &str, value: &str, allow_slash: bool) -> Result<()> {
    if value.is_empty() || value.len() > 128 {
        return Err(Error::Manifest(format!(
            "{field} must be 1 to 128 characters, got {} ",
            value.len()
        )));
    }
    let ok = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '+' | '~' | '-')
            || (allow_slash && c == '/')
    };
    if let Some(c) = value.chars().find(|c| !ok(*c)) {
        return Err(Error::Manifest(format!(
            "{field} {value:?} contains {c:?}; use letters, digits and . _ + ~ -{}",
            if allow_slash { " /" } else { "" }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            name: "demo-1".into(),
            channel: "demo/bookworm-amd64".into(),
            sequence: 7,
            created: Timestamp(1_763_683_200),
            expires: Timestamp(1_763_683_200 + 90 * 86_400),
            builder: "ferry-build 0.1.0".into(),
            target: Target {
                distro: "debian".into(),
                codename: "bookworm".into(),
                arch: "amd64".into(),
            },
            files: vec![FileEntry {
                path: "files/a.txt".into(),
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                mode: "0644".into(),
            }],
            packages: vec![],
            images: vec![],
            steps: vec![],
            backups: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn round_trips_and_ignores_unknown_fields() {
        let m = sample();
        let bytes = m.to_json();
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["future_field"] = serde_json::json!({"x": 1});
        assert_eq!(
            Manifest::parse(&serde_json::to_vec(&v).unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn trusted_comment_has_the_documented_form() {
        assert_eq!(
            sample().trusted_comment(),
            "ferry/1 name=demo-1 channel=demo/bookworm-amd64 sequence=7"
        );
    }

    #[test]
    fn rejects_rule_breakers_naming_the_field() {
        type Mutate = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Mutate, &str)> = vec![
            (Box::new(|m| m.format = "ferry/2".into()), "ferry/2"),
            (
                Box::new(|m| m.files[0].path = "../x".into()),
                "files[0].path",
            ),
            (Box::new(|m| m.files[0].path = "/etc/x".into()), "absolute"),
            (Box::new(|m| m.files[0].path = "ferry/x".into()), "reserved"),
            (Box::new(|m| m.files[0].mode = "4755".into()), "mode"),
            (Box::new(|m| m.files[0].sha256 = "AB".into()), "sha256"),
            (Box::new(|m| m.files.push(m.files[0].clone())), "twice"),
            (Box::new(|m| m.name = "a b".into()), "name"),
            (Box::new(|m| m.channel = "x\ny".into()), "channel"),
            (Box::new(|m| m.expires = m.created), "expires"),
        ];
        for (mutate, needle) in cases {
            let mut m = sample();
            mutate(&mut m);
            let err = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
            assert!(err.is_verification_failure());
        }
    }

    #[test]
    fn rejects_oversized_manifest_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        let err = Manifest::parse(&big).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
