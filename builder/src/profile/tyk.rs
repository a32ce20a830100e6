//! The built-in Tyk profile: Tyk Dashboard, Gateway and Pump from Tyk's APT repositories,
//! in the order Tyk's upgrade guide prescribes, with health checks, backups and the Go
//! plugin upgrade path, written out as an ordinary spec.
//!
//! Everything Tyk-specific the builder knows lives here. The spec it emits is plain TOML
//! that [`Spec::parse`] reads like any hand-written one, so an operator can review it,
//! edit it and build it with `ferry-build build`.

use super::plugin_bundle;
use crate::apt::keyring::Keyring;
use crate::http::Http;
use crate::spec::Spec;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where Tyk publishes its packages.
pub const DEFAULT_REPO_BASE: &str = "https://packagecloud.io/tyk";
/// Where `--plugin` files are placed on the gateway host.
pub const DEFAULT_PLUGIN_DIR: &str = "/opt/tyk-gateway/middleware";
/// How long each component's health check keeps trying.
pub const HEALTH_TIMEOUT_SECS: u64 = 60;
/// Largest repository signing key fetched.
const MAX_KEY_SIZE: u64 = 1 << 20;

/// The module path Go plugins build against.
const TYK_MODULE: &str = "github.com/TykTechnologies/tyk";
/// Gateways before 4.2 need this replacement (upgrade path 1).
const GRAPHQL_REPLACE: &str = "github.com/jensneuse/graphql-go-tools=github.com/TykTechnologies/graphql-go-tools@v1.6.2-0.20220426094453-0cc35471c1ca";

/// A Tyk component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// Tyk Dashboard (`tyk-dashboard`).
    Dashboard,
    /// Tyk Gateway (`tyk-gateway`).
    Gateway,
    /// Tyk Pump (`tyk-pump`).
    Pump,
}

impl Component {
    /// Every component, in upgrade order (Tyk's guide: Dashboard, Gateway, Pump).
    pub const ALL: [Component; 3] = [Component::Dashboard, Component::Gateway, Component::Pump];

    /// `dashboard`, `gateway` or `pump`.
    pub fn name(self) -> &'static str {
        match self {
            Component::Dashboard => "dashboard",
            Component::Gateway => "gateway",
            Component::Pump => "pump",
        }
    }

    /// Package, APT repository and systemd unit name: `tyk-<component>`.
    pub fn package(self) -> &'static str {
        match self {
            Component::Dashboard => "tyk-dashboard",
            Component::Gateway => "tyk-gateway",
            Component::Pump => "tyk-pump",
        }
    }

    /// The component's configuration file.
    pub fn config(self) -> &'static str {
        match self {
            Component::Dashboard => "/opt/tyk-dashboard/tyk_analytics.conf",
            Component::Gateway => "/opt/tyk-gateway/tyk.conf",
            Component::Pump => "/opt/tyk-pump/pump.conf",
        }
    }

    /// Default health URL and the JSON `status` values that pass (and pass with a
    /// warning); the installer derives the real URL from the installed configuration.
    pub fn health(
        self,
    ) -> (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    ) {
        match self {
            Component::Dashboard => ("http://127.0.0.1:3000/hello", &["ok", "pass"], &[]),
            Component::Gateway => ("http://127.0.0.1:8080/hello", &["pass"], &["warn"]),
            Component::Pump => ("http://127.0.0.1:8083/health", &["ok"], &[]),
        }
    }

    /// Parse `dashboard`, `gateway` or `pump`.
    pub fn parse(text: &str) -> Result<Component> {
        Component::ALL
            .into_iter()
            .find(|c| c.name() == text.trim())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown Tyk component {text:?}; use dashboard, gateway or pump"
                ))
            })
    }
}

/// A system the profile supports without `--allow-unsupported-os`.
#[derive(Clone, Copy, Debug)]
pub struct System {
    /// `debian` or `ubuntu`.
    pub distro: &'static str,
    /// Release number.
    pub release: &'static str,
    /// Release codename.
    pub codename: &'static str,
}

/// Debian 11 and 12, Ubuntu 16.04 to 24.04: what Tyk's guide supports plus the newer
/// releases Tyk publishes packages for.
pub const SUPPORTED_SYSTEMS: &[System] = &[
    System {
        distro: "debian",
        release: "11",
        codename: "bullseye",
    },
    System {
        distro: "debian",
        release: "12",
        codename: "bookworm",
    },
    System {
        distro: "ubuntu",
        release: "16.04",
        codename: "xenial",
    },
    System {
        distro: "ubuntu",
        release: "18.04",
        codename: "bionic",
    },
    System {
        distro: "ubuntu",
        release: "20.04",
        codename: "focal",
    },
    System {
        distro: "ubuntu",
        release: "22.04",
        codename: "jammy",
    },
    System {
        distro: "ubuntu",
        release: "24.04",
        codename: "noble",
    },
];

fn pretty_distro(distro: &str) -> &str {
    match distro {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        other => other,
    }
}

/// The supported systems as one line: `Debian 11 (bullseye), ...`.
pub fn supported_systems_text() -> String {
    SUPPORTED_SYSTEMS
        .iter()
        .map(|s| format!("{} {} ({})", pretty_distro(s.distro), s.release, s.codename))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Tyk version: `major.minor.patch` with an optional suffix (`5.2.1~rc6`), compared by
/// its numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TykVersion {
    /// The version as given (and as the package's `Version:` says it).
    pub text: String,
    /// Major, minor and patch numbers.
    pub numbers: (u64, u64, u64),
}

impl TykVersion {
    /// Parse a version like `5.2.5` or `5.2.1~rc6`; `flag` names it in messages.
    pub fn parse(text: &str, flag: &str) -> Result<TykVersion> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "{flag} {text:?}: {why}\nhelp: give the package version, e.g. 5.2.5 (see `apt list -a 'tyk*'`)"
            ))
        };
        let text = text.trim();
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-'))
        {
            return Err(bad(
                "only letters, digits and . + ~ - may appear in a version",
            ));
        }
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let numbers: Vec<&str> = text[..end].trim_end_matches('.').split('.').collect();
        if numbers.len() != 3 || numbers.iter().any(|n| n.is_empty()) {
            return Err(bad("not a major.minor.patch version"));
        }
        let n = |s: &str| s.parse::<u64>().map_err(|_| bad("number out of range"));
        Ok(TykVersion {
            text: text.to_string(),
            numbers: (n(numbers[0])?, n(numbers[1])?, n(numbers[2])?),
        })
    }

    /// Whether this version is `major.minor.patch` or later (suffixes ignored).
    pub fn at_least(&self, major: u64, minor: u64, patch: u64) -> bool {
        self.numbers >= (major, minor, patch)
    }
}

/// How to rebuild Go plugins for a target gateway version (Tyk's upgrade guide, "Upgrading
/// Go plugins", with the commits of TYK-FACTS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoPluginPath {
    /// 1 (target before 4.2), 2 (4.2 up to 5.1) or 3 (5.1 and later).
    pub path: u8,
    /// The commit `go get` pins the gateway module to.
    pub commit: &'static str,
    /// The release tag that commit is.
    pub commit_tag: &'static str,
    /// `go mod edit -replace` needed (path 1: graphql-go-tools).
    pub replace: Option<&'static str>,
    /// Whether `go mod vendor` is needed (before 5.1).
    pub vendor: bool,
}

/// The Go plugin upgrade path for a target gateway version: path 1 for targets before 4.2
/// (the guide: "all versions before 4.2.0"), path 2 from 4.2 up to 5.1, path 3 from 5.1.
pub fn go_plugin_path(target: &TykVersion) -> GoPluginPath {
    if !target.at_least(4, 2, 0) {
        GoPluginPath {
            path: 1,
            commit: "6c76e802a29838d058588ff924358706a078d0c5",
            commit_tag: "v4.0.3",
            replace: Some(GRAPHQL_REPLACE),
            vendor: true,
        }
    } else if !target.at_least(5, 1, 0) {
        GoPluginPath {
            path: 2,
            commit: "54e1072a6a9918e29606edf6b60def437b273d0a",
            commit_tag: "v5.0.3",
            replace: None,
            vendor: true,
        }
    } else {
        GoPluginPath {
            path: 3,
            commit: "ffa83a27d3bf793aa27e5f6e4c7106106286699d",
            commit_tag: "v5.2.1",
            replace: None,
            vendor: false,
        }
    }
}

impl GoPluginPath {
    /// The commands to run in the plugin's Go module directory, in order.
    pub fn commands(&self) -> Vec<String> {
        let mut out = vec![format!("go get {TYK_MODULE}@{}", self.commit)];
        if let Some(r) = self.replace {
            out.push(format!("go mod edit -replace {r}"));
        }
        out.push("go mod tidy".into());
        if self.vendor {
            out.push("go mod vendor".into());
        }
        out
    }
}

/// What the profile is asked to produce (the flags of `ferry-build spec tyk`).
#[derive(Clone, Debug)]
pub struct TykProfile {
    /// Dashboard and Gateway version (`--version`).
    pub version: String,
    /// Pump version; `None` takes the newest (`--pump-version`).
    pub pump_version: Option<String>,
    /// `debian` or `ubuntu`.
    pub distro: String,
    /// Release codename.
    pub codename: String,
    /// `amd64`, `arm64` or `s390x` (from 5.3).
    pub arch: String,
    /// The version the hosts run now (`--from`).
    pub from: Option<String>,
    /// Carry the `--from` Dashboard and Gateway packages for offline rollback.
    pub carry_previous: bool,
    /// Components to include; empty means all three.
    pub components: Vec<Component>,
    /// Carry the `tykio/tyk-plugin-compiler` image of the target version.
    pub plugin_compiler: bool,
    /// Carry this plugin compiler image instead of Tyk's (a mirror in a local registry,
    /// say); implies [`TykProfile::plugin_compiler`] (`--plugin-compiler-image`).
    pub plugin_compiler_image: Option<String>,
    /// Go plugins compiled for the target (`--plugin`).
    pub plugins: Vec<PathBuf>,
    /// Where `--plugin` files are placed on the gateway host.
    pub plugin_dir: String,
    /// A Tyk plugin bundle `manifest.json` to rebuild (`--plugin-bundle`).
    pub plugin_bundle: Option<PathBuf>,
    /// Base URL of Tyk's repositories.
    pub repo_base: String,
    /// Directory holding `<repo>.asc` signing keys (`--keyring-dir`).
    pub keyring_dir: Option<PathBuf>,
    /// Expected primary key fingerprints, `REPO=FPR` (`--keyring-fingerprint`).
    pub keyring_fingerprints: Vec<String>,
    /// Build for a distro/codename outside [`SUPPORTED_SYSTEMS`].
    pub allow_unsupported_os: bool,
    /// Bundle name; default `tyk-<version>-<distro>-<codename>-<arch>`.
    pub name: Option<String>,
    /// Bundle validity in days.
    pub expires_in_days: Option<u64>,
}

impl TykProfile {
    /// A profile for `version` on `distro`/`codename` (amd64, all components, Tyk's
    /// repositories, nothing else).
    pub fn new(version: &str, distro: &str, codename: &str) -> TykProfile {
        TykProfile {
            version: version.into(),
            pump_version: None,
            distro: distro.into(),
            codename: codename.into(),
            arch: "amd64".into(),
            from: None,
            carry_previous: false,
            components: vec![],
            plugin_compiler: false,
            plugin_compiler_image: None,
            plugins: vec![],
            plugin_dir: DEFAULT_PLUGIN_DIR.into(),
            plugin_bundle: None,
            repo_base: DEFAULT_REPO_BASE.into(),
            keyring_dir: None,
            keyring_fingerprints: vec![],
            allow_unsupported_os: false,
            name: None,
            expires_in_days: None,
        }
    }

    /// The plugin compiler image the bundle carries, if any: `--plugin-compiler-image`,
    /// else `docker.io/tykio/tyk-plugin-compiler:v<version>` with `--plugin-compiler`.
    pub fn plugin_compiler_reference(&self) -> Option<String> {
        match &self.plugin_compiler_image {
            Some(image) => Some(image.trim().to_string()),
            None if self.plugin_compiler => Some(format!(
                "docker.io/tykio/tyk-plugin-compiler:v{}",
                self.version.trim()
            )),
            None => None,
        }
    }

    /// The bundle name this profile produces.
    pub fn bundle_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "tyk-{}-{}-{}-{}",
                self.version.trim(),
                self.distro,
                self.codename,
                self.arch
            )
        })
    }
}

/// Where the profile writes what the spec refers to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outputs<'a> {
    /// Directory for generated files: fetched signing keys go to `keys/<repo>.asc`,
    /// rebuilt plugin bundles to `plugins/`. Without it keys must come from
    /// `keyring_dir` and `--plugin-bundle` is refused.
    pub assets_dir: Option<&'a Path>,
    /// Directory the spec will be written to: paths below it are written relative to it,
    /// every other path absolute. Without it (a spec printed to stdout) all are absolute.
    pub spec_dir: Option<&'a Path>,
}

/// A repository signing key the spec uses.
#[derive(Clone, Debug)]
pub struct RepoKey {
    /// Repository id (`tyk-gateway`, ...).
    pub repo: String,
    /// The keyring file.
    pub path: PathBuf,
    /// Primary key fingerprints in it, upper-case hex.
    pub fingerprints: Vec<String>,
    /// The URL it was downloaded from just now, if it was.
    pub fetched_from: Option<String>,
    /// Whether it matched a `--keyring-fingerprint`.
    pub pinned: bool,
}

/// The profile's result.
#[derive(Clone, Debug)]
pub struct GeneratedSpec {
    /// Bundle name; the spec's conventional file name is `<name>.spec.toml`.
    pub name: String,
    /// The spec, TOML.
    pub text: String,
    /// The signing key of every repository.
    pub keys: Vec<RepoKey>,
    /// Files written (keys fetched, plugin bundles built).
    pub written: Vec<PathBuf>,
}

/// A rebuilt plugin bundle and where it came from and went.
struct PluginBundleOut {
    /// File name of the zip (`<dir>-v<version>.zip`).
    zip_name: String,
    /// Where the zip was written.
    path: PathBuf,
    /// What is in it.
    rebuilt: plugin_bundle::RebuiltBundle,
    /// The manifest it was rebuilt from.
    manifest: PathBuf,
}

/// Everything checked and derived from the flags before anything is fetched or written.
struct Plan {
    version: TykVersion,
    pump_version: Option<String>,
    from: Option<TykVersion>,
    components: Vec<Component>,
    repo_base: String,
    name: String,
    channel: String,
    system: Option<System>,
    pins: BTreeMap<String, String>,
    /// (bundle file name, absolute source)
    plugins: Vec<(String, PathBuf)>,
}

fn canonical(path: &Path, flag: &str) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "{}: the spec is UTF-8, and this path is not",
            path.display()
        ))
    })
}

/// Normalize an OpenPGP fingerprint: no spaces, no `0x`, upper case; 40 or 64 hex digits.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(&t);
    let ok = (t.len() == 40 || t.len() == 64) && t.chars().all(|c| c.is_ascii_hexdigit());
    ok.then(|| t.to_ascii_uppercase())
}

impl TykProfile {
    fn plan(&self) -> Result<Plan> {
        let version = TykVersion::parse(&self.version, "--version")?;
        let pump_version = self
            .pump_version
            .as_deref()
            .map(|v| TykVersion::parse(v, "--pump-version").map(|v| v.text))
            .transpose()?;
        if !matches!(self.distro.as_str(), "debian" | "ubuntu") {
            return Err(Error::Usage(format!(
                "--distro {:?}: Tyk's profile builds for debian or ubuntu",
                self.distro
            )));
        }
        match self.arch.as_str() {
            "amd64" | "arm64" => {}
            "s390x" if version.at_least(5, 3, 0) => {}
            "s390x" => {
                return Err(Error::Usage(format!(
                    "--arch s390x: Tyk publishes s390x packages from 5.3 on; {} exists for amd64 and arm64 only",
                    version.text
                )))
            }
            other => {
                return Err(Error::Usage(format!(
                    "--arch {other:?}: Tyk publishes amd64 and arm64 packages (and s390x from 5.3)"
                )))
            }
        }
        let system = SUPPORTED_SYSTEMS
            .iter()
            .find(|s| s.distro == self.distro && s.codename == self.codename)
            .copied();
        if system.is_none() && !self.allow_unsupported_os {
            return Err(Error::Usage(format!(
                "{} {} is not a system this profile supports; supported: {}\nhelp: pass --allow-unsupported-os to build for it anyway (Tyk may not publish packages for it)",
                self.distro,
                self.codename,
                supported_systems_text()
            )));
        }
        let from = self
            .from
            .as_deref()
            .map(|v| TykVersion::parse(v, "--from"))
            .transpose()?;
        if let Some(f) = &from {
            if f.numbers > version.numbers || f.text == version.text {
                return Err(Error::Usage(format!(
                    "--from {} is not older than --version {}: this profile upgrades\nhelp: --from is the version the hosts run now",
                    f.text, version.text
                )));
            }
        }
        if self.carry_previous && from.is_none() {
            return Err(Error::Usage(
                "--carry-previous needs --from: the version to carry for rollback".into(),
            ));
        }
        let mut components = if self.components.is_empty() {
            Component::ALL.to_vec()
        } else {
            self.components.clone()
        };
        components.sort();
        components.dedup();
        let gateway = components.contains(&Component::Gateway);
        if !gateway && (!self.plugins.is_empty() || self.plugin_bundle.is_some()) {
            return Err(Error::Usage(
                "--plugin and --plugin-bundle are for the gateway: add gateway to --components"
                    .into(),
            ));
        }
        let repo_base = self.repo_base.trim().trim_end_matches('/').to_string();
        if !(repo_base.starts_with("https://") || repo_base.starts_with("http://")) {
            return Err(Error::Usage(format!(
                "--repo-base {:?} is not an http:// or https:// URL",
                self.repo_base
            )));
        }
        if self.expires_in_days == Some(0) {
            return Err(Error::Usage("--expires-in-days must be at least 1".into()));
        }
        if !self.plugin_dir.starts_with('/') {
            return Err(Error::Usage(format!(
                "--plugin-dir {:?} must be an absolute path on the gateway host",
                self.plugin_dir
            )));
        }
        if let Some(image) = &self.plugin_compiler_image {
            let image = image.trim();
            if image.is_empty() || image.contains(char::is_whitespace) || image.contains("://") {
                return Err(Error::Usage(format!(
                    "--plugin-compiler-image {image:?} is not an image reference\nhelp: give REGISTRY/REPOSITORY:TAG or @sha256:DIGEST, e.g. registry.example:5000/tykio/tyk-plugin-compiler:v{}",
                    version.text
                )));
            }
        }
        let mut pins = BTreeMap::new();
        for pin in &self.keyring_fingerprints {
            let (repo, fpr) = pin.split_once('=').ok_or_else(|| {
                Error::Usage(format!(
                    "--keyring-fingerprint {pin:?}: use REPO=FINGERPRINT, e.g. tyk-gateway=0123...CDEF"
                ))
            })?;
            let repo = repo.trim();
            if !Component::ALL.iter().any(|c| c.package() == repo) {
                return Err(Error::Usage(format!(
                    "--keyring-fingerprint {pin:?}: {repo:?} is not one of tyk-dashboard, tyk-gateway, tyk-pump"
                )));
            }
            let fpr = normalize_fingerprint(fpr).ok_or_else(|| {
                Error::Usage(format!(
                    "--keyring-fingerprint {pin:?}: {fpr:?} is not a 40 (or 64) hex digit OpenPGP fingerprint"
                ))
            })?;
            if let Some(old) = pins.insert(repo.to_string(), fpr.clone()) {
                if old != fpr {
                    return Err(Error::Usage(format!(
                        "--keyring-fingerprint names two fingerprints for {repo}"
                    )));
                }
            }
        }
        let mut plugins: Vec<(String, PathBuf)> = Vec::new();
        for p in &self.plugins {
            let source = canonical(p, "--plugin")?;
            let file_name = source
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = plugin_bundle::versioned_name(file_name, &version.text, &self.arch)?;
            let bytes = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
            plugin_bundle::check_shared_object(
                &bytes,
                &self.arch,
                &format!("--plugin {}", p.display()),
            )?;
            if plugins.iter().any(|(n, _)| n == &name) {
                return Err(Error::Usage(format!(
                    "--plugin {}: another --plugin is also named {name} in the bundle",
                    p.display()
                )));
            }
            plugins.push((name, source));
        }
        let name = self.bundle_name();
        Ok(Plan {
            pump_version,
            from,
            components,
            repo_base,
            channel: format!("tyk/{}-{}-{}", self.distro, self.codename, self.arch),
            name,
            system,
            pins,
            plugins,
            version,
        })
    }

    /// Produce the spec: check the flags, get each repository's signing key (from
    /// `keyring_dir`, from `assets_dir/keys/` if fetched before, else downloaded from
    /// `<repo-base>/<repo>/gpgkey`, checked against `--keyring-fingerprint`), rebuild the
    /// plugin bundle, and render and check the TOML.
    pub fn generate(&self, outputs: Outputs<'_>) -> Result<GeneratedSpec> {
        let plan = self.plan()?;
        let assets_dir = outputs
            .assets_dir
            .map(|d| {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                canonical(d, "output directory")
            })
            .transpose()?;
        let spec_dir = outputs
            .spec_dir
            .map(|d| {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                canonical(d, "output directory")
            })
            .transpose()?;
        let keyring_dir = self
            .keyring_dir
            .as_deref()
            .map(|d| canonical(d, "--keyring-dir"))
            .transpose()?;
        if keyring_dir.is_none() && assets_dir.is_none() {
            return Err(Error::Usage(
                "the spec needs each repository's signing key\nhelp: pass --keyring-dir DIR holding tyk-dashboard.asc, tyk-gateway.asc and tyk-pump.asc, or --assets-dir DIR to download them from the repositories (pin them with --keyring-fingerprint REPO=FPR)"
                    .into(),
            ));
        }
        let rel = |p: &Path| -> Result<String> {
            if let Some(d) = &spec_dir {
                if let Ok(r) = p.strip_prefix(d) {
                    return utf8(r).map(String::from);
                }
            }
            utf8(p).map(String::from)
        };
        let mut written = Vec::new();

        // Plugin bundle: rebuilt before anything is fetched, so its errors come first.
        let mut bundle = None;
        if let Some(manifest) = &self.plugin_bundle {
            let Some(assets) = &assets_dir else {
                return Err(Error::Usage(
                    "--plugin-bundle writes a new bundle zip: pass --assets-dir DIR for it".into(),
                ));
            };
            let manifest = canonical(manifest, "--plugin-bundle")?;
            let new_plugins: BTreeMap<String, PathBuf> = plan.plugins.iter().cloned().collect();
            let rebuilt =
                plugin_bundle::rebuild(&manifest, &plan.version.text, &self.arch, &new_plugins)?;
            let stem: String = manifest
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("plugin-bundle")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let zip_name = format!("{stem}-v{}.zip", plan.version.text);
            let dir = assets.join("plugins");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let path = dir.join(&zip_name);
            crate::keyfile::write_file(&path, &rebuilt.zip, 0o644)?;
            written.push(path.clone());
            bundle = Some(PluginBundleOut {
                zip_name,
                path,
                rebuilt,
                manifest,
            });
        }

        // Signing keys.
        let mut keys = Vec::new();
        let mut http = None;
        for c in &plan.components {
            let repo = c.package();
            let pin = plan.pins.get(repo);
            let (path, fetched_from) = if let Some(dir) = &keyring_dir {
                let asc = dir.join(format!("{repo}.asc"));
                let gpg = dir.join(format!("{repo}.gpg"));
                let path = if asc.is_file() || !gpg.is_file() {
                    asc
                } else {
                    gpg
                };
                if !path.is_file() {
                    return Err(Error::Usage(format!(
                        "--keyring-dir: {} does not exist\nhelp: save the key from {}/{repo}/gpgkey there, after checking its fingerprint",
                        path.display(),
                        plan.repo_base
                    )));
                }
                (path, None)
            } else {
                let dir = assets_dir.as_ref().expect("checked above").join("keys");
                let path = dir.join(format!("{repo}.asc"));
                if path.is_file() {
                    (path, None)
                } else {
                    let url = format!("{}/{repo}/gpgkey", plan.repo_base);
                    if http.is_none() {
                        http = Some(Http::new()?);
                    }
                    let bytes = http
                        .as_ref()
                        .expect("just set")
                        .get(&url, MAX_KEY_SIZE)?
                        .ok_or_else(|| Error::Download {
                            url: url.clone(),
                            message: "not found (404)\nhelp: check --repo-base, or give the key with --keyring-dir"
                                .to_string(),
                        })?;
                    // Checked before it is stored, so a refused key is never kept.
                    let keyring = Keyring::parse(&bytes, Path::new(&url))?;
                    check_pin(repo, pin, &keyring.fingerprints(), &url)?;
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    crate::keyfile::write_file(&path, &bytes, 0o644)?;
                    written.push(path.clone());
                    (path, Some(url))
                }
            };
            let keyring = Keyring::load(&path)?;
            let fingerprints = keyring.fingerprints();
            check_pin(repo, pin, &fingerprints, &path.display().to_string())?;
            keys.push(RepoKey {
                repo: repo.to_string(),
                path,
                fingerprints,
                fetched_from,
                pinned: pin.is_some(),
            });
        }

        let text = self.render(&plan, &keys, bundle.as_ref(), &rel)?;
        // The emitted spec must load like any other.
        let check_path = spec_dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default()
            .join(format!("{}.spec.toml", plan.name));
        Spec::parse(&text, &check_path)?;
        Ok(GeneratedSpec {
            name: plan.name,
            text,
            keys,
            written,
        })
    }

    fn render(
        &self,
        plan: &Plan,
        keys: &[RepoKey],
        bundle: Option<&PluginBundleOut>,
        rel: &dyn Fn(&Path) -> Result<String>,
    ) -> Result<String> {
        let v = &plan.version.text;
        let has = |c: Component| plan.components.contains(&c);
        let mut s = String::new();
        let system = match &plan.system {
            Some(sys) => format!(
                "{} {} ({})",
                pretty_distro(sys.distro),
                sys.release,
                sys.codename
            ),
            None => format!("{} {} (unsupported)", self.distro, self.codename),
        };
        let _ = writeln!(
            s,
            "# Tyk {v} for {system} {}: written by ferry-build {} (built-in Tyk profile).",
            self.arch,
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            s,
            "# Components: {}. Build it with: ferry-build build --spec THIS_FILE --key KEY --out DIR",
            plan.components
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(s, "name = {}", q(&plan.name));
        let _ = writeln!(s, "channel = {}", q(&plan.channel));
        if let Some(d) = self.expires_in_days {
            let _ = writeln!(s, "expires_in_days = {d}");
        }
        let notes = self.notes(plan, bundle);
        let _ = writeln!(s, "notes = [");
        for n in &notes {
            let _ = writeln!(s, "  {},", q(n));
        }
        let _ = writeln!(s, "]");

        let _ = writeln!(s, "\n[target]");
        let _ = writeln!(s, "distro = {}", q(&self.distro));
        let _ = writeln!(s, "codename = {}", q(&self.codename));
        let _ = writeln!(s, "arch = {}", q(&self.arch));

        for key in keys {
            let _ = writeln!(s, "\n[[repository]]");
            let _ = writeln!(s, "id = {}", q(&key.repo));
            let _ = writeln!(
                s,
                "url = {}",
                q(&format!("{}/{}/{}/", plan.repo_base, key.repo, self.distro))
            );
            let _ = writeln!(s, "suite = {}", q(&self.codename));
            let _ = writeln!(s, "components = [\"main\"]");
            let _ = writeln!(
                s,
                "keyring = {}  # primary key {}",
                q(&rel(&key.path)?),
                key.fingerprints.join(", ")
            );
        }

        for c in &plan.components {
            let _ = writeln!(s, "\n[[package]]");
            let _ = writeln!(s, "name = {}", q(c.package()));
            let version = match c {
                Component::Pump => plan.pump_version.clone(),
                _ => Some(v.clone()),
            };
            if let Some(version) = version {
                let _ = writeln!(s, "version = {}", q(&version));
            }
            let _ = writeln!(s, "repository = {}", q(c.package()));
            if let (true, Some(from), false) =
                (self.carry_previous, &plan.from, *c == Component::Pump)
            {
                let _ = writeln!(s, "previous = {}", q(&from.text));
            }
        }

        if let Some(image) = self.plugin_compiler_reference() {
            let _ = writeln!(s, "\n[[image]]");
            let _ = writeln!(s, "reference = {}", q(&image));
            let _ = writeln!(s, "platform = \"linux/amd64\"");
        }

        for (name, source) in &plan.plugins {
            let _ = writeln!(s, "\n[[file]]");
            let _ = writeln!(s, "source = {}", q(&rel(source)?));
            let _ = writeln!(s, "path = {}", q(&format!("files/plugins/{name}")));
            let _ = writeln!(s, "mode = \"0644\"");
        }
        if let Some(b) = bundle {
            let _ = writeln!(s, "\n[[file]]");
            let _ = writeln!(s, "source = {}", q(&rel(&b.path)?));
            let _ = writeln!(s, "path = {}", q(&format!("files/plugins/{}", b.zip_name)));
            let _ = writeln!(s, "mode = \"0644\"");
        }

        for c in &plan.components {
            let (url, pass, warn) = c.health();
            let _ = writeln!(s, "\n[[step]]");
            let _ = writeln!(s, "component = {}", q(c.name()));
            let _ = writeln!(s, "packages = [{}]", q(c.package()));
            let _ = writeln!(s, "service = {}", q(c.package()));
            let _ = writeln!(s, "configs = [{}]", q(c.config()));
            let _ = writeln!(s, "only_if_installed = true");
            let mut health = format!("url = {}, json_status = {}", q(url), list(pass));
            if !warn.is_empty() {
                let _ = write!(health, ", warn_status = {}", list(warn));
            }
            let _ = write!(
                health,
                ", timeout_secs = {HEALTH_TIMEOUT_SECS}, derive = {{ profile = {}, config = {} }}",
                q(c.package()),
                q(c.config())
            );
            let _ = writeln!(s, "health = {{ {health} }}");
            if *c == Component::Gateway && !plan.plugins.is_empty() {
                let dir = self.plugin_dir.trim_end_matches('/');
                let _ = writeln!(s, "place = [");
                for (name, _) in &plan.plugins {
                    let _ = writeln!(
                        s,
                        "  {{ file = {}, dest = {}, mode = \"0644\" }},",
                        q(&format!("files/plugins/{name}")),
                        q(&format!("{dir}/{name}"))
                    );
                }
                let _ = writeln!(s, "]");
            }
        }

        let gw = Component::Gateway.config();
        let dash = Component::Dashboard.config();
        if has(Component::Gateway) {
            for dir in ["apps", "policies", "middleware"] {
                backup(
                    &mut s,
                    "files",
                    None,
                    Some(&[&format!("/opt/tyk-gateway/{dir}")]),
                    "",
                );
            }
            backup(
                &mut s,
                "files",
                Some(gw),
                Some(&[]),
                "# no paths: the files the config names (certificates)",
            );
            backup(&mut s, "redis", Some(gw), None, "");
        }
        if has(Component::Dashboard) {
            backup(&mut s, "mongodb", Some(dash), None, "");
            backup(&mut s, "postgres", Some(dash), None, "");
        }
        Ok(s)
    }

    fn notes(&self, plan: &Plan, bundle: Option<&PluginBundleOut>) -> Vec<String> {
        let v = &plan.version.text;
        let arch = &self.arch;
        let mut notes = Vec::new();
        let order: Vec<&str> = plan.components.iter().map(|c| c.package()).collect();
        notes.push(format!(
            "Tyk {v}{}: {} are upgraded in this order (Tyk's guide: Dashboard, Gateway, Pump), each only on hosts where it is installed, and health-checked on the port its installed configuration names.",
            plan.from
                .as_ref()
                .map_or_else(String::new, |f| format!(" (from {})", f.text)),
            order.join(", then ")
        ));
        if plan.system.is_none() {
            notes.push(format!(
                "{} {} is not a system this profile supports ({}); built with --allow-unsupported-os.",
                self.distro,
                self.codename,
                supported_systems_text()
            ));
        }
        if plan.components.contains(&Component::Pump) && plan.pump_version.is_none() {
            notes.push(
                "tyk-pump: the newest version in the repository when this was built (Pump has its own 1.x versions; pin one with --pump-version)."
                    .into(),
            );
        }
        if self.carry_previous {
            if let Some(f) = &plan.from {
                notes.push(format!(
                    "The {} packages of {} are carried so a rollback needs no network.",
                    plan.components
                        .iter()
                        .filter(|c| **c != Component::Pump)
                        .map(|c| c.package())
                        .collect::<Vec<_>>()
                        .join(" and "),
                    f.text
                ));
            }
        }
        if !plan.components.contains(&Component::Gateway) {
            return notes;
        }

        // Go plugins.
        let gp = go_plugin_path(&plan.version);
        let which = match gp.path {
            1 => "targets before 4.2",
            2 => "targets from 4.2 up to 5.1",
            _ => "targets 5.1 and later",
        };
        let mut go = format!(
            "Go plugins (upgrade path {} of Tyk's guide, {which}): custom Go plugins must be rebuilt for Tyk {v} before the gateway is upgraded. In each plugin's Go module directory run:\n",
            gp.path
        );
        for cmd in gp.commands() {
            let _ = writeln!(go, "    {cmd}");
        }
        if !gp.vendor {
            go.push_str("(no `go mod vendor`: from 5.1 plugins build with Go modules.)\n");
        }
        if gp.commit_tag.trim_start_matches('v') == v {
            let _ = writeln!(
                go,
                "The commit is the {} tag itself, the target.",
                gp.commit_tag
            );
        } else {
            let _ = writeln!(
                go,
                "The commit is the {} tag the guide names; pinning the commit of tag v{v} matches the target exactly (git ls-remote https://{TYK_MODULE} 'refs/tags/v{v}^{{}}').",
                gp.commit_tag
            );
        }
        let _ = write!(
            go,
            "Then compile with the plugin compiler of the target version:\n    docker run --rm -v \"$PWD\":/plugin-source --platform=linux/amd64{} {} plugin.so\nwhich writes plugin_v{v}_linux_{arch}.so.",
            if arch == "amd64" {
                String::new()
            } else {
                format!(" -e GOARCH={arch}")
            },
            self.plugin_compiler_image
                .as_deref()
                .map_or_else(|| format!("tykio/tyk-plugin-compiler:v{v}"), |i| i.trim().to_string())
        );
        match arch.as_str() {
            "amd64" => {}
            "arm64" => go.push_str(" The image runs on linux/amd64 only; GOARCH=arm64 makes it cross-compile for arm64."),
            _ => {
                let _ = write!(go, " The image runs on linux/amd64 only; cross-compiling for {arch} with GOARCH is documented by Tyk for arm64 and unconfirmed for {arch}.");
            }
        }
        go.push_str(" A gateway from 4.1 on, configured with plugin.so, first loads plugin_v<version>_linux_<arch>.so, so the new file can sit beside the old one before the upgrade.");
        if let Some(f) = &plan.from {
            if !f.at_least(4, 1, 0) {
                let _ = write!(
                    go,
                    " The current gateway ({}) predates 4.1 and ignores versioned names: it keeps loading plugin.so until it is upgraded.",
                    f.text
                );
            }
        }
        go.push_str(" A plugin that fails to load does not stop the gateway (the API serves without it): after the upgrade check the gateway log for \"Could not load Go-plugin\".");
        notes.push(go);

        if let Some(image) = self.plugin_compiler_reference() {
            notes.push(format!(
                "The bundle carries the plugin compiler image {image} (linux/amd64): load it on a build host with `ferry-install images load BUNDLE`."
            ));
        }
        if !plan.plugins.is_empty() {
            let dir = self.plugin_dir.trim_end_matches('/');
            notes.push(format!(
                "Go plugins for {v} are placed in {dir}/ before tyk-gateway is installed: {}. The current gateway keeps its own files; API definitions that load plugins from another directory need the file there too.",
                plan.plugins
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(PluginBundleOut {
            zip_name,
            rebuilt,
            manifest,
            ..
        }) = bundle
        {
            let mut n = format!(
                "Plugin bundle files/plugins/{zip_name}, rebuilt from {}: file_list {} (added {}), checksum {} (MD5 of those files in order). Upload it to the bundle server and set it as the APIs' custom_middleware_bundle before the gateway is upgraded: the current gateway keeps using its plugin, the new one loads the {v} build.",
                manifest.display(),
                rebuilt.manifest.file_list.join(", "),
                if rebuilt.added.is_empty() {
                    "nothing; already listed".to_string()
                } else {
                    rebuilt.added.join(", ")
                },
                rebuilt.manifest.checksum
            );
            if rebuilt.had_signature {
                n.push_str(" Its signature was dropped because the file list changed: if the gateway requires signed bundles (public_key_path), re-sign it with `tyk bundle build -k <private key>`.");
            } else {
                n.push_str(" It is unsigned: if the gateway requires signed bundles (public_key_path), sign it with `tyk bundle build -k <private key>`.");
            }
            notes.push(n);
        }
        notes
    }
}

/// A refused key names both fingerprints.
fn check_pin(repo: &str, pin: Option<&String>, found: &[String], source: &str) -> Result<()> {
    let Some(pin) = pin else { return Ok(()) };
    if found.len() == 1 && &found[0] == pin {
        return Ok(());
    }
    Err(Error::Repository {
        repo: repo.to_string(),
        message: format!(
            "the signing key from {source} has primary fingerprint {}, but --keyring-fingerprint {repo}={pin} expects {pin}; refusing it\nhelp: check where the key came from; if the repository really changed its key, verify the new one out of band and pin that",
            if found.is_empty() {
                "(none)".to_string()
            } else {
                found.join(", ")
            }
        ),
    })
}

fn backup(s: &mut String, kind: &str, config: Option<&str>, paths: Option<&[&str]>, comment: &str) {
    let _ = writeln!(s, "\n[[backup]]");
    let _ = writeln!(s, "kind = {}", q(kind));
    if let Some(c) = config {
        let _ = writeln!(s, "config = {}", q(c));
    }
    if let Some(p) = paths {
        let sep = if comment.is_empty() { "" } else { "  " };
        let _ = writeln!(s, "paths = {}{sep}{comment}", list(p));
    }
    let _ = writeln!(s, "optional = true");
}

/// A TOML string.
fn q(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A TOML array of strings.
fn list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> TykVersion {
        TykVersion::parse(text, "--version").unwrap()
    }

    #[test]
    fn versions_parse() {
        assert_eq!(v("5.2.5").numbers, (5, 2, 5));
        assert_eq!(v("5.2.1~rc6").numbers, (5, 2, 1));
        assert_eq!(v(" 5.2.5 ").text, "5.2.5");
        for bad in [
            "5.2", "5", "", "v5.2.5", "5.2.x", "5.2.5.1", "5..2", "5.2.5 rc",
        ] {
            assert!(TykVersion::parse(bad, "--version").is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_paths_follow_the_guide() {
        assert_eq!(go_plugin_path(&v("4.0.8")).path, 1);
        assert_eq!(go_plugin_path(&v("4.1.0")).path, 1);
        assert_eq!(go_plugin_path(&v("4.2.0")).path, 2);
        assert_eq!(go_plugin_path(&v("5.0.9")).path, 2);
        assert_eq!(go_plugin_path(&v("5.1.0~rc1")).path, 3);
        assert_eq!(go_plugin_path(&v("5.3.0")).path, 3);
    }

    #[test]
    fn fingerprints_normalize() {
        let f = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(
            normalize_fingerprint(&format!("0x{f}")).unwrap(),
            f.to_uppercase()
        );
        assert_eq!(
            normalize_fingerprint("0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567").unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert!(normalize_fingerprint("0123").is_none());
    }
}
