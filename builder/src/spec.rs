//! The build spec (TOML): what to fetch and how to install it.
//!
//! Parsing is strict — an unknown key is an error naming it, so a typo never silently
//! drops a package — and every reference is checked before anything is fetched.

use crate::{Error, Result};
use ferry_bundle::paths::check_path;
use ferry_bundle::{Backup, Step};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Default validity of a bundle.
pub const DEFAULT_EXPIRES_IN_DAYS: u64 = 90;

/// A parsed, checked spec.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Bundle name (file name stem, manifest `name`).
    pub name: String,
    /// Replay-protection channel; defaults to `name`.
    #[serde(default)]
    pub channel: Option<String>,
    /// Override of the sequence number (default: `created` in Unix seconds).
    #[serde(default)]
    pub sequence: Option<u64>,
    /// Validity in days (default 90).
    #[serde(default)]
    pub expires_in_days: Option<u64>,
    /// The system the bundle is for.
    pub target: SpecTarget,
    /// APT repositories to fetch from.
    #[serde(default, rename = "repository")]
    pub repositories: Vec<Repository>,
    /// Packages to fetch.
    #[serde(default, rename = "package")]
    pub packages: Vec<PackageRequest>,
    /// Container images to fetch.
    #[serde(default, rename = "image")]
    pub images: Vec<ImageRequest>,
    /// Local files to carry.
    #[serde(default, rename = "file")]
    pub files: Vec<FileRequest>,
    /// Install steps, copied into the manifest.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// Backups, copied into the manifest.
    #[serde(default, rename = "backup")]
    pub backups: Vec<Backup>,
    /// Notes for the operator, copied into the manifest.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Directory the spec was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Path of the spec file, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[target]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecTarget {
    /// `debian` or `ubuntu`.
    pub distro: String,
    /// Release codename.
    pub codename: String,
    /// dpkg architecture (default `amd64`).
    #[serde(default = "default_arch")]
    pub arch: String,
}

fn default_arch() -> String {
    "amd64".into()
}

/// `[[repository]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Name packages use to pin themselves to this repository.
    pub id: String,
    /// Base URL of the repository.
    pub url: String,
    /// Suite (usually the codename).
    pub suite: String,
    /// Components, e.g. `["main"]`.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// OpenPGP keyring that signs `InRelease`, relative to the spec.
    #[serde(default)]
    pub keyring: Option<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// `[[package]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// Package name.
    pub name: String,
    /// Exact version or a constraint (`>= 5.2`); default newest.
    #[serde(default)]
    pub version: Option<String>,
    /// Pin to one repository id.
    #[serde(default)]
    pub repository: Option<String>,
    /// Bring the Depends/Pre-Depends closure (default true).
    #[serde(default = "yes")]
    pub dependencies: bool,
    /// Also carry this older version for offline rollback.
    #[serde(default)]
    pub previous: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[[image]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    /// Image reference, by tag or digest.
    pub reference: String,
    /// `os/arch[/variant]`; default `linux/<target arch>`.
    #[serde(default)]
    pub platform: Option<String>,
}

/// `[[file]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    /// Local file, relative to the spec.
    pub source: String,
    /// Path inside the bundle.
    pub path: String,
    /// `0644` or `0755`; default from the source's executable bit.
    #[serde(default)]
    pub mode: Option<String>,
}

impl Spec {
    /// Read and check a spec file.
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Spec::parse(&text, path)
    }

    /// Parse and check spec text; `path` names it in messages and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Spec> {
        let mut spec: Spec = toml::from_str(text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        spec.path = path.to_path_buf();
        spec.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        spec.check()?;
        Ok(spec)
    }

    /// The channel, defaulting to the name.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or(&self.name)
    }

    /// Resolve a spec-relative path.
    pub fn resolve_path(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }

    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::SpecField {
            path: self.path.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn check(&self) -> Result<()> {
        check_label(self, "name", &self.name, false)?;
        check_label(self, "channel", self.channel(), true)?;
        check_label(self, "target.distro", &self.target.distro, false)?;
        check_label(self, "target.codename", &self.target.codename, false)?;
        check_label(self, "target.arch", &self.target.arch, false)?;
        if self.expires_in_days == Some(0) {
            return Err(self.err("expires_in_days", "must be at least 1"));
        }
        let mut ids = BTreeSet::new();
        for (i, repo) in self.repositories.iter().enumerate() {
            let field = format!("repository[{i}]");
            if !ids.insert(repo.id.as_str()) {
                return Err(self.err(
                    format!("{field}.id"),
                    format!("id {:?} is used twice", repo.id),
                ));
            }
            if !(repo.url.starts_with("http://") || repo.url.starts_with("https://")) {
                return Err(self.err(
                    format!("{field}.url"),
                    format!("{:?} is not an http:// or https:// URL", repo.url),
                ));
            }
            if repo.suite.is_empty() || repo.components.is_empty() {
                return Err(self.err(field, "suite and components must not be empty"));
            }
            if let Some(keyring) = &repo.keyring {
                let p = self.resolve_path(keyring);
                if !p.is_file() {
                    return Err(self.err(
                        format!("{field}.keyring"),
                        format!(
                            "{} does not exist (paths are relative to the spec)",
                            p.display()
                        ),
                    ));
                }
            }
        }
        let mut names = BTreeSet::new();
        for (i, pkg) in self.packages.iter().enumerate() {
            let field = format!("package[{i}]");
            if !is_package_name(&pkg.name) {
                return Err(self.err(
                    format!("{field}.name"),
                    format!("{:?} is not a valid Debian package name", pkg.name),
                ));
            }
            if !names.insert(pkg.name.as_str()) {
                return Err(self.err(
                    format!("{field}.name"),
                    format!("{:?} is listed twice", pkg.name),
                ));
            }
            if let Some(repo) = &pkg.repository {
                if !ids.contains(repo.as_str()) {
                    return Err(self.err(
                        format!("{field}.repository"),
                        format!("no [[repository]] has id {repo:?}"),
                    ));
                }
            }
            if let Some(v) = &pkg.version {
                if v.trim().is_empty() {
                    return Err(self.err(format!("{field}.version"), "empty version"));
                }
            }
        }
        if !self.packages.is_empty() && self.repositories.is_empty() {
            return Err(self.err(
                "package",
                "packages are listed but no [[repository]] to fetch them from",
            ));
        }
        for (i, img) in self.images.iter().enumerate() {
            if img.reference.trim().is_empty() || img.reference.contains(char::is_whitespace) {
                return Err(self.err(format!("image[{i}].reference"), "empty or contains spaces"));
            }
        }
        let mut paths = BTreeSet::new();
        for (i, file) in self.files.iter().enumerate() {
            let field = format!("file[{i}]");
            if let Err(why) = check_path(&file.path) {
                return Err(self.err(format!("{field}.path"), format!("{:?}: {why}", file.path)));
            }
            if file.path.starts_with("ferry/")
                || file.path.starts_with("debs/")
                || file.path.starts_with("images/")
            {
                return Err(self.err(
                    format!("{field}.path"),
                    format!(
                        "{:?}: ferry/, debs/ and images/ are reserved; use files/...",
                        file.path
                    ),
                ));
            }
            if !paths.insert(file.path.as_str()) {
                return Err(self.err(
                    format!("{field}.path"),
                    format!("{:?} is listed twice", file.path),
                ));
            }
            if let Some(mode) = &file.mode {
                if mode != "0644" && mode != "0755" {
                    return Err(self.err(
                        format!("{field}.mode"),
                        format!("{mode:?}: use \"0644\" or \"0755\""),
                    ));
                }
            }
            let source = self.resolve_path(&file.source);
            match std::fs::metadata(&source) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(self.err(
                        format!("{field}.source"),
                        format!("{} is not a regular file", source.display()),
                    ))
                }
                Err(e) => {
                    return Err(self.err(
                        format!("{field}.source"),
                        format!("{}: {e} (paths are relative to the spec)", source.display()),
                    ))
                }
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.component.is_empty() {
                return Err(self.err(format!("step[{i}].component"), "must not be empty"));
            }
            for p in &step.packages {
                if !names.contains(p.as_str()) {
                    return Err(self.err(
                        format!("step[{i}].packages"),
                        format!("{p:?} is not a [[package]] of this spec"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_label(spec: &Spec, field: &str, value: &str, allow_slash: bool) -> Result<()> {
    let ok = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '+' | '~' | '-')
            || (allow_slash && c == '/')
    };
    if value.is_empty() || value.len() > 128 || !value.chars().all(ok) {
        return Err(spec.err(
            field,
            format!(
                "{value:?} must be 1 to 128 of letters, digits and . _ + ~ -{}",
                if allow_slash { " /" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// Debian policy 5.6.1: lower case letters, digits, `+ - .`, at least two characters,
/// starting with an alphanumeric.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec> {
        Spec::parse(text, Path::new("/nonexistent/spec.toml"))
    }

    const MINIMAL: &str =
        "name = \"demo\"\n[target]\ndistro = \"debian\"\ncodename = \"bookworm\"\n";

    #[test]
    fn minimal_spec_has_defaults() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.channel(), "demo");
        assert_eq!(spec.target.arch, "amd64");
        assert!(spec.files.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!(
            "{MINIMAL}[[package]]\nname = \"tyk\"\nversoin = \"1\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("versoin"), "{err}");
        assert!(err.to_string().contains("spec.toml"), "{err}");
    }

    #[test]
    fn bad_references_name_the_field() {
        let cases = [
            ("[[package]]\nname = \"a-b\"\nrepository = \"nope\"\n[[repository]]\nid = \"r\"\nurl = \"http://x/\"\nsuite = \"s\"\n", "package[0].repository"),
            ("[[package]]\nname = \"Bad\"\n", "package[0].name"),
            ("[[file]]\nsource = \"x\"\npath = \"../x\"\n", "file[0].path"),
            ("[[file]]\nsource = \"missing\"\npath = \"files/x\"\n", "file[0].source"),
            ("[[repository]]\nid = \"r\"\nurl = \"ftp://x/\"\nsuite = \"s\"\n", "repository[0].url"),
            ("[[step]]\ncomponent = \"gw\"\npackages = [\"tyk\"]\n", "step[0].packages"),
            ("[[backup]]\nkind = \"oracle\"\n", "oracle"),
        ];
        for (extra, needle) in cases {
            let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn package_names_follow_policy() {
        assert!(is_package_name("tyk-gateway"));
        assert!(is_package_name("libc6"));
        assert!(is_package_name("g++"));
        assert!(!is_package_name("a"));
        assert!(!is_package_name("Tyk"));
        assert!(!is_package_name("-x"));
    }
}
