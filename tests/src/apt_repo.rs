//! Real, signed APT repositories built at test time: `.deb`s made by `dpkg-deb` from
//! [`DebSpec`]s (with maintainer scripts and conffiles), a pool and `dists/` tree laid out
//! as apt expects, `Packages`/`Packages.gz` and `Release` generated here, and `InRelease`
//! and `Release.gpg` signed by `gpg` with throwaway OpenPGP keys. Options break the
//! repository on purpose (wrong key, tampered or corrupted signature, expired
//! `Valid-Until`, `Date` in the future, no SHA256, a wrong index checksum) for the
//! negative tests. [`AptGet`] drives the real `apt-get` against such a repository with a
//! private configuration, which is how the tests prove the fixture is faithful.
//!
//! Everything is written under one temp directory per repository; the keys are generated
//! once per test process (in a temp `GNUPGHOME` that is deleted again) and imported into
//! each repository's own `GNUPGHOME` to sign. This module never touches the machine's
//! apt state, keyrings or dpkg database, and never skips: a missing tool is a failure
//! naming its Debian package.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;

use crate::http::Server;
use crate::{require_tool, run_in, Run, TestDir};

/// The maintainer written into packages that do not set one.
pub const DEFAULT_MAINTAINER: &str = "Ferry Tests <ferry-tests@example.invalid>";

// ---------------------------------------------------------------------------------------
// Package specs
// ---------------------------------------------------------------------------------------

/// One file inside a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebFile {
    /// Absolute path on the installed system, e.g. `/usr/bin/hello`.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// What a `.deb` should contain: control fields, files, maintainer scripts, conffiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebSpec {
    /// Package name.
    pub name: String,
    /// Version, epoch and `~` allowed (`1:2.0-1`, `1.0~rc1`).
    pub version: String,
    /// Architecture: `amd64`, `arm64`, `all`, ...
    pub arch: String,
    /// Source package name (default: the package name); decides the pool directory.
    pub source: Option<String>,
    /// Maintainer (default [`DEFAULT_MAINTAINER`]).
    pub maintainer: Option<String>,
    /// Relationship and other control fields by name (`Depends`, `Provides`, ...).
    pub fields: BTreeMap<String, String>,
    /// `Essential: yes`.
    pub essential: bool,
    /// Description: the first line is the synopsis, later lines the extended text.
    pub description: Option<String>,
    /// Files installed by the package.
    pub files: Vec<DebFile>,
    /// Maintainer scripts by name (`preinst`, `postinst`, `prerm`, `postrm`).
    pub scripts: BTreeMap<String, String>,
    /// Absolute paths of the files that are conffiles.
    pub conffiles: Vec<String>,
}

impl DebSpec {
    /// A package with no files, architecture `amd64`, priority `optional`, section `misc`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> DebSpec {
        let mut fields = BTreeMap::new();
        fields.insert("Priority".to_owned(), "optional".to_owned());
        fields.insert("Section".to_owned(), "misc".to_owned());
        DebSpec {
            name: name.into(),
            version: version.into(),
            arch: "amd64".to_owned(),
            source: None,
            maintainer: None,
            fields,
            essential: false,
            description: None,
            files: Vec::new(),
            scripts: BTreeMap::new(),
            conffiles: Vec::new(),
        }
    }

    /// Set the architecture (`amd64`, `arm64`, `all`, ...).
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    /// Set any control field (replacing an earlier value).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// `Depends:`, e.g. `libfoo (>= 1.2), bar | baz`.
    pub fn depends(self, value: impl Into<String>) -> Self {
        self.field("Depends", value)
    }

    /// `Pre-Depends:`.
    pub fn pre_depends(self, value: impl Into<String>) -> Self {
        self.field("Pre-Depends", value)
    }

    /// `Recommends:`.
    pub fn recommends(self, value: impl Into<String>) -> Self {
        self.field("Recommends", value)
    }

    /// `Suggests:`.
    pub fn suggests(self, value: impl Into<String>) -> Self {
        self.field("Suggests", value)
    }

    /// `Provides:` (virtual packages, optionally versioned).
    pub fn provides(self, value: impl Into<String>) -> Self {
        self.field("Provides", value)
    }

    /// `Conflicts:`.
    pub fn conflicts(self, value: impl Into<String>) -> Self {
        self.field("Conflicts", value)
    }

    /// `Breaks:`.
    pub fn breaks(self, value: impl Into<String>) -> Self {
        self.field("Breaks", value)
    }

    /// `Replaces:`.
    pub fn replaces(self, value: impl Into<String>) -> Self {
        self.field("Replaces", value)
    }

    /// `Multi-Arch:` (`same`, `foreign`, `allowed`).
    pub fn multi_arch(self, value: impl Into<String>) -> Self {
        self.field("Multi-Arch", value)
    }

    /// `Priority:` (`required`, `important`, `standard`, `optional`, `extra`).
    pub fn priority(self, value: impl Into<String>) -> Self {
        self.field("Priority", value)
    }

    /// `Section:`.
    pub fn section(self, value: impl Into<String>) -> Self {
        self.field("Section", value)
    }

    /// `Essential: yes` (or no field).
    pub fn essential(mut self, essential: bool) -> Self {
        self.essential = essential;
        self
    }

    /// Source package name (pool directory `pool/<component>/<prefix>/<source>/`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// `Maintainer:`.
    pub fn maintainer(mut self, value: impl Into<String>) -> Self {
        self.maintainer = Some(value.into());
        self
    }

    /// Description: first line synopsis, further lines extended description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Add a file (mode 0644) at an absolute path such as `/usr/share/doc/x/README`.
    pub fn file(self, path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, data, 0o644)
    }

    /// Add a file with the given permission bits (e.g. `0o755` for a program).
    pub fn file_mode(
        mut self,
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        let path = path.into();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self.files.retain(|f| f.path != path);
        self.files.push(DebFile {
            path,
            data: data.into(),
            mode,
        });
        self
    }

    /// Add a file and list it in `conffiles`.
    pub fn conffile(self, path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        let path = path.into();
        let mut spec = self.file(path.clone(), data);
        let abs = spec.files.last().map(|f| f.path.clone()).unwrap_or(path);
        if !spec.conffiles.contains(&abs) {
            spec.conffiles.push(abs);
        }
        spec
    }

    /// Set a maintainer script (`preinst`, `postinst`, `prerm`, `postrm`, `config`);
    /// text without a `#!` line gets `#!/bin/sh` and `set -e` put in front. Mode 0755.
    pub fn script(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.scripts
            .insert(name.into(), maintainer_script(text.into()));
        self
    }

    /// The `preinst` script (see [`DebSpec::script`]).
    pub fn preinst(self, text: impl Into<String>) -> Self {
        self.script("preinst", text)
    }

    /// The `postinst` script (see [`DebSpec::script`]).
    pub fn postinst(self, text: impl Into<String>) -> Self {
        self.script("postinst", text)
    }

    /// The `prerm` script (see [`DebSpec::script`]).
    pub fn prerm(self, text: impl Into<String>) -> Self {
        self.script("prerm", text)
    }

    /// The `postrm` script (see [`DebSpec::script`]).
    pub fn postrm(self, text: impl Into<String>) -> Self {
        self.script("postrm", text)
    }

    /// The version without its epoch, as used in file names.
    pub fn version_without_epoch(&self) -> &str {
        strip_epoch(&self.version)
    }

    /// The `.deb` file name apt's pool uses: `<name>_<version-without-epoch>_<arch>.deb`.
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version_without_epoch(),
            self.arch
        )
    }

    /// The pool path relative to the repository root, for a component.
    pub fn pool_path(&self, component: &str) -> String {
        let source = self.source.as_deref().unwrap_or(&self.name);
        let prefix = if source.starts_with("lib") && source.len() > 3 {
            &source[..4]
        } else {
            &source[..1]
        };
        format!(
            "pool/{component}/{prefix}/{source}/{}",
            self.deb_file_name()
        )
    }

    /// `Installed-Size` in KiB, as dpkg-gencontrol counts it (each file rounded up).
    pub fn installed_size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| (f.data.len() as u64).div_ceil(1024))
            .sum::<u64>()
            .max(1)
    }

    /// The control fields in the order the `DEBIAN/control` file and `Packages` use.
    fn control_fields(&self) -> Vec<(String, String)> {
        let mut out = vec![("Package".to_owned(), self.name.clone())];
        if let Some(source) = self.source.as_ref().filter(|s| **s != self.name) {
            out.push(("Source".to_owned(), source.clone()));
        }
        out.push(("Version".to_owned(), self.version.clone()));
        out.push(("Architecture".to_owned(), self.arch.clone()));
        out.push((
            "Maintainer".to_owned(),
            self.maintainer
                .clone()
                .unwrap_or_else(|| DEFAULT_MAINTAINER.to_owned()),
        ));
        out.push((
            "Installed-Size".to_owned(),
            self.installed_size().to_string(),
        ));
        const ORDER: [&str; 12] = [
            "Pre-Depends",
            "Depends",
            "Recommends",
            "Suggests",
            "Enhances",
            "Conflicts",
            "Breaks",
            "Replaces",
            "Provides",
            "Multi-Arch",
            "Priority",
            "Section",
        ];
        for name in ORDER {
            if let Some(v) = self.fields.get(name) {
                out.push((name.to_owned(), v.clone()));
            }
        }
        if self.essential {
            out.push(("Essential".to_owned(), "yes".to_owned()));
        }
        for (k, v) in &self.fields {
            if !ORDER.contains(&k.as_str()) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// The `Description` field value (synopsis, then extended lines).
    fn description_field(&self) -> String {
        let text = self
            .description
            .clone()
            .unwrap_or_else(|| format!("{} (ferry test package)", self.name));
        let mut lines = text.lines();
        let mut out = lines.next().unwrap_or("").to_owned();
        for line in lines {
            out.push_str("\n ");
            out.push_str(if line.trim().is_empty() { "." } else { line });
        }
        out
    }
}

/// A maintainer script as packages ship it: text without a `#!` line gets `#!/bin/sh`
/// and `set -e` in front, and it ends with a newline.
pub fn maintainer_script(text: String) -> String {
    let mut text = if text.starts_with("#!") {
        text
    } else {
        format!("#!/bin/sh\nset -e\n{text}")
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `n` independent filler packages `filler-0000`, `filler-0001`, … (version `1.0-1`,
/// `amd64`), each with one 4 KiB file of noise: bulk for benchmarks.
pub fn filler(n: usize) -> Vec<DebSpec> {
    filler_sized(n, 4096)
}

/// Like [`filler`], each package carrying `bytes` bytes of incompressible data.
pub fn filler_sized(n: usize, bytes: usize) -> Vec<DebSpec> {
    (0..n)
        .map(|i| {
            let name = format!("filler-{i:04}");
            DebSpec::new(&name, "1.0-1")
                .file(
                    format!("/usr/share/filler/{name}.bin"),
                    crate::noise(bytes, i as u64 + 1),
                )
                .description(format!("filler package {i}\nBulk for benchmarks."))
        })
        .collect()
}

fn strip_epoch(version: &str) -> &str {
    match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    }
}

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

/// A throwaway OpenPGP key, generated once per test process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// RSA 3072 primary key that signs itself.
    Rsa,
    /// RSA 3072 certify-only primary key with an RSA 3072 signing subkey (verifiers must
    /// try subkeys).
    RsaSubkey,
    /// Ed25519 primary key that signs itself.
    Ed25519,
    /// Another RSA 3072 key, unrelated to the others: sign with it for "wrong key" tests.
    Other,
}

/// Public material of a generated key.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// Primary key fingerprint (40 upper-case hex digits).
    pub fingerprint: String,
    /// Fingerprint of the (sub)key that makes signatures.
    pub signing_fingerprint: String,
    /// Armored public key (`.asc`).
    pub public_asc: String,
    /// Binary public key (`.gpg`).
    pub public_gpg: Vec<u8>,
    secret_asc: String,
}

impl Key {
    /// Every key kind.
    pub const ALL: [Key; 4] = [Key::Rsa, Key::RsaSubkey, Key::Ed25519, Key::Other];

    /// The key's material, generating it with `gpg --batch` on first use.
    pub fn info(self) -> &'static KeyInfo {
        static KEYS: [OnceLock<KeyInfo>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let i = Key::ALL.iter().position(|k| *k == self).unwrap();
        KEYS[i].get_or_init(|| generate_key(self))
    }

    fn slug(self) -> &'static str {
        match self {
            Key::Rsa => "rsa",
            Key::RsaSubkey => "rsa-subkey",
            Key::Ed25519 => "ed25519",
            Key::Other => "other",
        }
    }
}

/// A private GNUPGHOME; kills its agent when dropped.
struct GpgHome {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl GpgHome {
    fn temp() -> GpgHome {
        let temp = tempfile::Builder::new()
            .prefix("ferry-gpg-")
            .tempdir()
            .expect("temp GNUPGHOME");
        let dir = temp.path().to_path_buf();
        GpgHome {
            dir,
            _temp: Some(temp),
        }
    }

    fn at(dir: PathBuf) -> GpgHome {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        GpgHome { dir, _temp: None }
    }

    /// Run gpg in this home; panics with its output on failure.
    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let gpg = require_tool("gpg", "gnupg");
        let out = Command::new(gpg)
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", &self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // The agent gpg started would otherwise outlive the test.
        let path = std::env::var("PATH").unwrap_or_default();
        let gpgconf = path
            .split(':')
            .map(|d| Path::new(d).join("gpgconf"))
            .find(|c| c.is_file());
        if let Some(gpgconf) = gpgconf {
            let _ = Command::new(gpgconf)
                .arg("--homedir")
                .arg(&self.dir)
                .args(["--kill", "all"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn generate_key(key: Key) -> KeyInfo {
    let home = GpgHome::temp();
    let uid = format!(
        "Ferry Test Repository ({}) <ferry-test-{}@example.invalid>",
        key.slug(),
        key.slug()
    );
    match key {
        Key::Rsa | Key::Other => {
            home.gpg(&["--quick-gen-key", &uid, "rsa3072", "sign", "never"]);
        }
        Key::Ed25519 => {
            home.gpg(&["--quick-gen-key", &uid, "ed25519", "sign", "never"]);
        }
        Key::RsaSubkey => {
            home.gpg(&["--quick-gen-key", &uid, "rsa3072", "cert", "never"]);
        }
    }
    let (fingerprint, _) = fingerprints(&home);
    if key == Key::RsaSubkey {
        home.gpg(&["--quick-add-key", &fingerprint, "rsa3072", "sign", "never"]);
    }
    let (fingerprint, signing) = fingerprints(&home);
    let signing_fingerprint = signing.unwrap_or_else(|| fingerprint.clone());
    let public_asc = String::from_utf8(home.gpg(&["--armor", "--export", &fingerprint])).unwrap();
    let public_gpg = home.gpg(&["--export", &fingerprint]);
    let secret_asc =
        String::from_utf8(home.gpg(&["--armor", "--export-secret-keys", &fingerprint])).unwrap();
    KeyInfo {
        fingerprint,
        signing_fingerprint,
        public_asc,
        public_gpg,
        secret_asc,
    }
}

/// The primary key's fingerprint and the signing subkey's, if there is one.
fn fingerprints(home: &GpgHome) -> (String, Option<String>) {
    let listing = String::from_utf8(home.gpg(&["--with-colons", "--list-secret-keys"])).unwrap();
    let mut primary = None;
    let mut signing_sub = None;
    let mut last: Option<(String, String)> = None; // record type, capabilities
    for line in listing.lines() {
        let f: Vec<&str> = line.split(':').collect();
        match f[0] {
            "sec" | "ssb" => last = Some((f[0].to_owned(), f.get(11).unwrap_or(&"").to_string())),
            "fpr" => match last.take() {
                Some((t, _)) if t == "sec" && primary.is_none() => {
                    primary = Some(f[9].to_owned());
                }
                Some((t, caps)) if t == "ssb" && caps.contains('s') => {
                    signing_sub = Some(f[9].to_owned());
                }
                _ => {}
            },
            _ => {}
        }
    }
    (primary.expect("gpg listed no secret key"), signing_sub)
}

// ---------------------------------------------------------------------------------------
// Repository configuration
// ---------------------------------------------------------------------------------------

/// A way to break the signatures after signing, for "bad signature" tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureFault {
    /// Change the `Origin` line of the signed text (InRelease and Release) after signing.
    TamperedText,
    /// Flip the last byte of the signature packet (InRelease and Release.gpg), re-armored
    /// with a correct checksum so only the cryptographic check fails.
    FlippedSignature,
}

/// Where a repository lists `Architecture: all` packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchAll {
    /// In every architecture's `Packages`; no `binary-all`, `all` not in `Architectures`.
    ArchIndicesOnly,
    /// Also in `binary-all/Packages`, `all` listed in `Architectures`; apt reads both.
    Both,
    /// As [`ArchAll::Both`] plus `No-Support-for-Architecture-all: Packages`, as Debian
    /// writes it: apt then ignores `binary-all`.
    DebianStyle,
    /// Only in `binary-all/Packages`, `all` listed in `Architectures`.
    BinaryAllOnly,
}

/// The configuration of a repository; [`RepoBuilder::build`] makes it.
#[derive(Clone, Debug)]
pub struct RepoBuilder {
    suite: String,
    codename: Option<String>,
    components: Vec<String>,
    archs: Option<Vec<String>>,
    binary_all: ArchAll,
    origin: String,
    label: String,
    date: i64,
    valid_until: Option<i64>,
    md5: bool,
    sha256: bool,
    wrong_checksum: Option<String>,
    key: Key,
    signer: Option<Key>,
    signature_fault: Option<SignatureFault>,
    inrelease: bool,
    release_gpg: bool,
    publish_key: bool,
    packages: Vec<(Option<String>, DebSpec)>,
}

impl Default for RepoBuilder {
    fn default() -> Self {
        RepoBuilder {
            suite: "stable".to_owned(),
            codename: None,
            components: vec!["main".to_owned()],
            archs: None,
            binary_all: ArchAll::ArchIndicesOnly,
            origin: "Ferry Tests".to_owned(),
            label: "Ferry Tests".to_owned(),
            date: now() - 3600,
            valid_until: None,
            md5: true,
            sha256: true,
            wrong_checksum: None,
            key: Key::Rsa,
            signer: None,
            signature_fault: None,
            inrelease: true,
            release_gpg: true,
            publish_key: false,
            packages: Vec::new(),
        }
    }
}

impl RepoBuilder {
    /// Suite: the `dists/<suite>` directory and the `Suite` field (default `stable`).
    pub fn suite(mut self, suite: impl Into<String>) -> Self {
        self.suite = suite.into();
        self
    }

    /// `Codename` (default: the suite).
    pub fn codename(mut self, codename: impl Into<String>) -> Self {
        self.codename = Some(codename.into());
        self
    }

    /// Components (default `main`); the first is where [`RepoBuilder::package`] puts
    /// packages.
    pub fn components(mut self, components: &[&str]) -> Self {
        self.components = components.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Index architectures (default: those of the packages other than `all`, or
    /// `amd64`). `all` here means [`ArchAll::Both`].
    pub fn archs(mut self, archs: &[&str]) -> Self {
        if archs.contains(&"all") {
            self.binary_all = ArchAll::Both;
        }
        self.archs = Some(
            archs
                .iter()
                .filter(|a| **a != "all")
                .map(|a| a.to_string())
                .collect(),
        );
        self
    }

    /// Where `Architecture: all` packages are listed (default
    /// [`ArchAll::ArchIndicesOnly`]).
    pub fn binary_all(mut self, how: ArchAll) -> Self {
        self.binary_all = how;
        self
    }

    /// `Origin` field.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// `Label` field.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// `Date`, as Unix seconds (default: an hour ago). A future date is an option too.
    pub fn date(mut self, unix: i64) -> Self {
        self.date = unix;
        self
    }

    /// `Valid-Until`, as Unix seconds (default: none). A past one makes apt refuse.
    pub fn valid_until(mut self, unix: Option<i64>) -> Self {
        self.valid_until = unix;
        self
    }

    /// Whether `Release` has an `MD5Sum` section (default yes).
    pub fn md5(mut self, yes: bool) -> Self {
        self.md5 = yes;
        self
    }

    /// Whether `Release` has a `SHA256` section (default yes).
    pub fn sha256(mut self, yes: bool) -> Self {
        self.sha256 = yes;
        self
    }

    /// List a wrong checksum (every hash) in `Release` for one index, named relative to
    /// `dists/<suite>/`, e.g. `main/binary-amd64/Packages`.
    pub fn wrong_checksum(mut self, index: impl Into<String>) -> Self {
        self.wrong_checksum = Some(index.into());
        self
    }

    /// The key that signs and is exported as the repository's keyring (default
    /// [`Key::Rsa`]).
    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self
    }

    /// Sign with this key instead, still exporting the one set by [`RepoBuilder::key`]:
    /// a "wrong key" repository.
    pub fn sign_with(mut self, key: Key) -> Self {
        self.signer = Some(key);
        self
    }

    /// Break the signatures after signing.
    pub fn signature_fault(mut self, fault: Option<SignatureFault>) -> Self {
        self.signature_fault = fault;
        self
    }

    /// Whether to write `InRelease` (default yes).
    pub fn inrelease(mut self, yes: bool) -> Self {
        self.inrelease = yes;
        self
    }

    /// Whether to write `Release.gpg` (default yes).
    pub fn release_gpg(mut self, yes: bool) -> Self {
        self.release_gpg = yes;
        self
    }

    /// Also put the public key under the served root as `key.asc` and `key.gpg`.
    pub fn publish_key(mut self, yes: bool) -> Self {
        self.publish_key = yes;
        self
    }

    /// Add a package to the first component.
    pub fn package(mut self, spec: DebSpec) -> Self {
        self.packages.push((None, spec));
        self
    }

    /// Add several packages to the first component.
    pub fn packages(mut self, specs: impl IntoIterator<Item = DebSpec>) -> Self {
        self.packages.extend(specs.into_iter().map(|s| (None, s)));
        self
    }

    /// Add a package to a given component.
    pub fn package_in(mut self, component: &str, spec: DebSpec) -> Self {
        if !self.components.iter().any(|c| c == component) {
            self.components.push(component.to_owned());
        }
        self.packages.push((Some(component.to_owned()), spec));
        self
    }

    /// Remove every package of this name and version.
    pub fn remove(mut self, name: &str, version: &str) -> Self {
        self.packages
            .retain(|(_, s)| !(s.name == name && s.version == version));
        self
    }

    /// Build the repository in a fresh temp directory.
    pub fn build(self) -> AptRepo {
        let dir = TestDir::new();
        let root = dir.join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let mut repo = AptRepo {
            root,
            suite: String::new(),
            codename: String::new(),
            components: Vec::new(),
            archs: Vec::new(),
            keyring_asc: dir.join("keys/repo.asc"),
            keyring_gpg: dir.join("keys/repo.gpg"),
            key: self.key,
            debs: Vec::new(),
            config: self,
            built: Vec::new(),
            dir,
        };
        repo.publish();
        repo
    }

    fn index_archs(&self) -> Vec<String> {
        if let Some(archs) = &self.archs {
            return archs.clone();
        }
        let mut archs: Vec<String> = self
            .packages
            .iter()
            .map(|(_, s)| s.arch.clone())
            .filter(|a| a != "all")
            .collect();
        archs.sort();
        archs.dedup();
        if archs.is_empty() {
            archs.push("amd64".to_owned());
        }
        archs
    }
}

// ---------------------------------------------------------------------------------------
// The repository
// ---------------------------------------------------------------------------------------

/// A built `.deb` as the repository lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltDeb {
    /// Package name.
    pub name: String,
    /// Version (with epoch, if any).
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Component it is listed in.
    pub component: String,
    /// `Filename` field: pool path relative to the repository root.
    pub filename: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// SHA-1, hex.
    pub sha1: String,
    /// MD5, hex.
    pub md5: String,
    /// Its stanza in `Packages`.
    pub stanza: String,
}

/// A signed APT repository on disk (removed at drop).
pub struct AptRepo {
    /// The directory to serve (holds `dists/` and `pool/`).
    pub root: PathBuf,
    /// Suite (`dists/<suite>`).
    pub suite: String,
    /// Codename.
    pub codename: String,
    /// Components.
    pub components: Vec<String>,
    /// Index architectures (without `all`).
    pub archs: Vec<String>,
    /// Armored public keyring of the repository key (outside the served root).
    pub keyring_asc: PathBuf,
    /// Binary public keyring of the repository key (outside the served root).
    pub keyring_gpg: PathBuf,
    /// The exported key.
    pub key: Key,
    /// Every package in the repository.
    pub debs: Vec<BuiltDeb>,
    config: RepoBuilder,
    built: Vec<(String, DebSpec, BuiltDeb)>,
    dir: TestDir,
}

impl AptRepo {
    /// A builder with the defaults (suite `stable`, component `main`, key [`Key::Rsa`]).
    pub fn builder() -> RepoBuilder {
        RepoBuilder::default()
    }

    /// The fixture directory (the served root, keyrings and build leftovers are in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/dists/<suite>`.
    pub fn dist_dir(&self) -> PathBuf {
        self.root.join("dists").join(&self.suite)
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &RepoBuilder {
        &self.config
    }

    /// The package of this name and version (any architecture); panics if absent.
    pub fn deb(&self, name: &str, version: &str) -> &BuiltDeb {
        self.debs
            .iter()
            .find(|d| d.name == name && d.version == version)
            .unwrap_or_else(|| {
                let all: Vec<_> = self
                    .debs
                    .iter()
                    .map(|d| format!("{}={}", d.name, d.version))
                    .collect();
                panic!("no package {name}={version} in the repository; it has {all:?}")
            })
    }

    /// Path of the `.deb` of this name and version; panics if absent.
    pub fn deb_path(&self, name: &str, version: &str) -> PathBuf {
        self.deb(name, version).path.clone()
    }

    /// A `sources.list` line for the repository served at `base_url`, trusting
    /// [`AptRepo::keyring_gpg`] only.
    pub fn sources_line(&self, base_url: &str) -> String {
        format!(
            "deb [signed-by={}] {}/ {} {}",
            self.keyring_gpg.display(),
            base_url.trim_end_matches('/'),
            self.suite,
            self.components.join(" ")
        )
    }

    /// Serve the repository root over HTTP.
    pub fn serve(&self) -> Server {
        Server::start(&self.root)
    }

    /// Change the configuration (add or remove packages, re-key, break something) and
    /// rebuild: new or changed packages are built, removed ones leave the pool, indices
    /// and `Release` are rewritten and signed again.
    pub fn rebuild_with(&mut self, change: impl FnOnce(RepoBuilder) -> RepoBuilder) {
        let config = std::mem::take(&mut self.config);
        self.config = change(config);
        self.key = self.config.key;
        self.publish();
    }

    /// Add one package and rebuild.
    pub fn add(&mut self, spec: DebSpec) {
        self.rebuild_with(|b| b.package(spec));
    }

    /// Rewrite indices and `Release` and sign them again.
    pub fn rebuild(&mut self) {
        self.rebuild_with(|b| b);
    }

    fn publish(&mut self) {
        let cfg = self.config.clone();
        self.suite = cfg.suite.clone();
        self.codename = cfg.codename.clone().unwrap_or_else(|| cfg.suite.clone());
        self.components = cfg.components.clone();
        self.archs = cfg.index_archs();

        // 1. Packages: reuse what was built from an identical spec, build the rest.
        let wanted: Vec<(String, DebSpec)> = cfg
            .packages
            .iter()
            .map(|(c, s)| {
                (
                    c.clone().unwrap_or_else(|| cfg.components[0].clone()),
                    s.clone(),
                )
            })
            .collect();
        let mut seen = BTreeMap::new();
        for (c, s) in &wanted {
            let p = s.pool_path(c);
            if let Some(prev) = seen.insert(p.clone(), s.name.clone()) {
                panic!(
                    "two packages map to the same pool file {p} ({prev} and {})",
                    s.name
                );
            }
        }
        let old = std::mem::take(&mut self.built);
        let mut to_build = Vec::new();
        let mut result: Vec<Option<BuiltDeb>> = vec![None; wanted.len()];
        for (i, (c, s)) in wanted.iter().enumerate() {
            match old.iter().find(|(oc, os, _)| oc == c && os == s) {
                Some((_, _, b)) => result[i] = Some(b.clone()),
                None => to_build.push(i),
            }
        }
        for (c, s, b) in &old {
            if !wanted.iter().any(|(wc, ws)| wc == c && ws == s) {
                let _ = std::fs::remove_file(&b.path);
            }
        }
        let jobs: Vec<(usize, &str, &DebSpec)> = to_build
            .iter()
            .map(|&i| (i, wanted[i].0.as_str(), &wanted[i].1))
            .collect();
        for (i, built) in build_debs(self.dir.path(), &self.root, &jobs, cfg.date) {
            result[i] = Some(built);
        }
        self.built = wanted
            .into_iter()
            .zip(result)
            .map(|((c, s), b)| (c, s, b.expect("built")))
            .collect();
        self.debs = self.built.iter().map(|(_, _, b)| b.clone()).collect();

        // 2. Indices, then Release, then signatures.
        let dist = self.dist_dir();
        let _ = std::fs::remove_dir_all(&dist);
        let mut index_files = Vec::new();
        for component in &cfg.components {
            let mut index_archs: Vec<&str> = self.archs.iter().map(String::as_str).collect();
            if cfg.binary_all != ArchAll::ArchIndicesOnly {
                index_archs.push("all");
            }
            let all_in_arch_indices = cfg.binary_all != ArchAll::BinaryAllOnly;
            for arch in index_archs {
                let mut debs: Vec<&BuiltDeb> = self
                    .debs
                    .iter()
                    .filter(|d| &d.component == component)
                    .filter(|d| d.arch == arch || (d.arch == "all" && all_in_arch_indices))
                    .collect();
                debs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
                let text: String = debs
                    .iter()
                    .map(|d| d.stanza.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = format!("{component}/binary-{arch}/Packages");
                let gz = gzip(text.as_bytes());
                index_files.push((rel.clone(), text.into_bytes()));
                index_files.push((format!("{rel}.gz"), gz));
            }
        }
        for (rel, data) in &index_files {
            let p = dist.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let release = release_text(&cfg, &self.codename, &self.archs, &index_files);
        std::fs::write(dist.join("Release"), &release).unwrap();

        let key = cfg.key.info();
        std::fs::create_dir_all(self.keyring_asc.parent().unwrap()).unwrap();
        std::fs::write(&self.keyring_asc, &key.public_asc).unwrap();
        std::fs::write(&self.keyring_gpg, &key.public_gpg).unwrap();
        for name in ["key.asc", "key.gpg"] {
            let _ = std::fs::remove_file(self.root.join(name));
        }
        if cfg.publish_key {
            std::fs::write(self.root.join("key.asc"), &key.public_asc).unwrap();
            std::fs::write(self.root.join("key.gpg"), &key.public_gpg).unwrap();
        }
        sign(
            &self.dir.join("gnupg"),
            &dist,
            cfg.signer.unwrap_or(cfg.key),
            &cfg,
        );
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The current time as Unix seconds (for [`RepoBuilder::date`] and `valid_until`).
pub fn unix_now() -> i64 {
    now()
}

/// An RFC 2822 date in UTC as `Release` files write it: `Sat, 21 Nov 2026 00:00:00 UTC`.
pub fn rfc2822(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

struct Hashes {
    md5: String,
    sha1: String,
    sha256: String,
}

fn hashes(data: &[u8]) -> Hashes {
    use md5::Digest as _;
    Hashes {
        md5: hex::encode(md5::Md5::digest(data)),
        sha1: hex::encode(sha1::Sha1::digest(data)),
        sha256: hex::encode(sha2::Sha256::digest(data)),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Build `.deb`s in parallel (dpkg-deb is mostly process start-up and gzip).
fn build_debs(
    work: &Path,
    root: &Path,
    jobs: &[(usize, &str, &DebSpec)],
    date: i64,
) -> Vec<(usize, BuiltDeb)> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let dpkg_deb = require_tool("dpkg-deb", "dpkg");
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(jobs.len()));
    let stage_base = work.join("stage");
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, component, spec)) = jobs.get(j) else {
                    break;
                };
                let stage = stage_base.join(format!("{}-{j}", spec.name));
                let built = build_deb(&dpkg_deb, &stage, root, component, spec, date);
                let _ = std::fs::remove_dir_all(&stage);
                out.lock().unwrap().push((i, built));
            });
        }
    });
    out.into_inner().unwrap()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn build_deb(
    dpkg_deb: &Path,
    stage: &Path,
    root: &Path,
    component: &str,
    spec: &DebSpec,
    date: i64,
) -> BuiltDeb {
    let _ = std::fs::remove_dir_all(stage);
    let control_dir = stage.join("DEBIAN");
    std::fs::create_dir_all(&control_dir).unwrap();
    set_mode(stage, 0o755);
    set_mode(&control_dir, 0o755);

    for f in &spec.files {
        let p = stage.join(f.path.trim_start_matches('/'));
        let parent = p.parent().unwrap();
        std::fs::create_dir_all(parent).unwrap();
        // Directories dpkg creates are 0755 whatever the umask.
        let mut d = parent;
        while d != stage {
            set_mode(d, 0o755);
            d = d.parent().unwrap();
        }
        std::fs::write(&p, &f.data).unwrap();
        set_mode(&p, f.mode);
    }

    let mut control = String::new();
    for (k, v) in spec.control_fields() {
        writeln!(control, "{k}: {v}").unwrap();
    }
    writeln!(control, "Description: {}", spec.description_field()).unwrap();
    std::fs::write(control_dir.join("control"), &control).unwrap();
    set_mode(&control_dir.join("control"), 0o644);
    for (name, text) in &spec.scripts {
        let p = control_dir.join(name);
        std::fs::write(&p, text).unwrap();
        set_mode(&p, 0o755);
    }
    if !spec.conffiles.is_empty() {
        let p = control_dir.join("conffiles");
        std::fs::write(&p, spec.conffiles.join("\n") + "\n").unwrap();
        set_mode(&p, 0o644);
    }

    let filename = spec.pool_path(component);
    let path = root.join(&filename);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new(dpkg_deb)
        .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
        .arg(stage)
        .arg(&path)
        .env("SOURCE_DATE_EPOCH", date.max(0).to_string())
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb --build failed for {} {}:\n{}{}",
        spec.name,
        spec.version,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let data = std::fs::read(&path).unwrap();
    let h = hashes(&data);
    let mut stanza = String::new();
    let mut fields = spec.control_fields();
    // dpkg-scanpackages puts the file fields before the descriptive ones.
    let at = fields
        .iter()
        .position(|(k, _)| k == "Priority" || k == "Section")
        .unwrap_or(fields.len());
    let file_fields = [
        ("Filename", filename.clone()),
        ("Size", data.len().to_string()),
        ("MD5sum", h.md5.clone()),
        ("SHA1", h.sha1.clone()),
        ("SHA256", h.sha256.clone()),
    ];
    for (offset, (k, v)) in file_fields.into_iter().enumerate() {
        fields.insert(at + offset, (k.to_owned(), v));
    }
    for (k, v) in fields {
        writeln!(stanza, "{k}: {v}").unwrap();
    }
    writeln!(stanza, "Description: {}", spec.description_field()).unwrap();

    BuiltDeb {
        name: spec.name.clone(),
        version: spec.version.clone(),
        arch: spec.arch.clone(),
        component: component.to_owned(),
        filename,
        path,
        size: data.len() as u64,
        sha256: h.sha256,
        sha1: h.sha1,
        md5: h.md5,
        stanza,
    }
}

fn release_text(
    cfg: &RepoBuilder,
    codename: &str,
    archs: &[String],
    index_files: &[(String, Vec<u8>)],
) -> String {
    let mut all_archs = archs.to_vec();
    if cfg.binary_all != ArchAll::ArchIndicesOnly {
        all_archs.push("all".to_owned());
    }
    let mut r = String::new();
    writeln!(r, "Origin: {}", cfg.origin).unwrap();
    writeln!(r, "Label: {}", cfg.label).unwrap();
    writeln!(r, "Suite: {}", cfg.suite).unwrap();
    writeln!(r, "Codename: {codename}").unwrap();
    writeln!(r, "Date: {}", rfc2822(cfg.date)).unwrap();
    if let Some(v) = cfg.valid_until {
        writeln!(r, "Valid-Until: {}", rfc2822(v)).unwrap();
    }
    writeln!(r, "Architectures: {}", all_archs.join(" ")).unwrap();
    writeln!(r, "Components: {}", cfg.components.join(" ")).unwrap();
    if cfg.binary_all == ArchAll::DebianStyle {
        writeln!(r, "No-Support-for-Architecture-all: Packages").unwrap();
    }
    writeln!(r, "Description: ferry test repository").unwrap();
    let listed: Vec<(&str, usize, Hashes)> = index_files
        .iter()
        .map(|(rel, data)| {
            let h = if cfg.wrong_checksum.as_deref() == Some(rel.as_str()) {
                let mut wrong = data.clone();
                wrong.extend_from_slice(b"wrong");
                hashes(&wrong)
            } else {
                hashes(data)
            };
            (rel.as_str(), data.len(), h)
        })
        .collect();
    if let Some(w) = &cfg.wrong_checksum {
        assert!(
            listed.iter().any(|(rel, _, _)| rel == w),
            "wrong_checksum({w:?}) names no index; indices: {:?}",
            listed.iter().map(|l| l.0).collect::<Vec<_>>()
        );
    }
    type Pick = fn(&Hashes) -> &str;
    let sections: [(&str, bool, Pick); 2] = [
        ("MD5Sum", cfg.md5, |h| &h.md5),
        ("SHA256", cfg.sha256, |h| &h.sha256),
    ];
    for (name, enabled, pick) in sections {
        if !enabled {
            continue;
        }
        writeln!(r, "{name}:").unwrap();
        for (rel, size, h) in &listed {
            writeln!(r, " {} {size:>16} {rel}", pick(h)).unwrap();
        }
    }
    r
}

/// Sign `dist/Release` into `InRelease` and `Release.gpg` with `key`, then apply the
/// configured signature fault.
fn sign(home_dir: &Path, dist: &Path, key: Key, cfg: &RepoBuilder) {
    let info = key.info();
    let _ = std::fs::remove_dir_all(home_dir);
    let home = GpgHome::at(home_dir.to_path_buf());
    let secret = home_dir.join("secret.asc");
    std::fs::write(&secret, &info.secret_asc).unwrap();
    home.gpg(&["--quiet", "--import", secret.to_str().unwrap()]);
    let user = format!("{}!", info.signing_fingerprint);
    let release = dist.join("Release");
    let release_s = release.to_str().unwrap();
    let common = ["--yes", "--digest-algo", "SHA256", "--local-user", &user];
    if cfg.inrelease {
        let out = dist.join("InRelease");
        let mut args = common.to_vec();
        args.extend(["--clearsign", "--output", out.to_str().unwrap(), release_s]);
        home.gpg(&args);
    }
    if cfg.release_gpg {
        let out = dist.join("Release.gpg");
        let mut args = common.to_vec();
        args.extend([
            "--armor",
            "--detach-sign",
            "--output",
            out.to_str().unwrap(),
            release_s,
        ]);
        home.gpg(&args);
    }
    drop(home);

    match cfg.signature_fault {
        None => {}
        Some(SignatureFault::TamperedText) => {
            for name in ["InRelease", "Release"] {
                let p = dist.join(name);
                if let Ok(text) = std::fs::read_to_string(&p) {
                    let origin = format!("Origin: {}\n", cfg.origin);
                    let tampered = format!("Origin: {} (tampered)\n", cfg.origin);
                    std::fs::write(&p, text.replacen(&origin, &tampered, 1)).unwrap();
                }
            }
        }
        Some(SignatureFault::FlippedSignature) => {
            for name in ["InRelease", "Release.gpg"] {
                let p = dist.join(name);
                if let Ok(text) = std::fs::read_to_string(&p) {
                    std::fs::write(&p, flip_signature(&text)).unwrap();
                }
            }
        }
    }
}

/// Flip the last byte of the armored `PGP SIGNATURE` block in `text` and re-armor it with
/// a matching CRC-24, so parsers accept it and only verification fails.
fn flip_signature(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
    const END: &str = "-----END PGP SIGNATURE-----";
    let start = text.find(BEGIN).expect("no signature block");
    let end = text.find(END).expect("no signature end");
    let block = &text[start + BEGIN.len()..end];
    let mut lines = block.lines().skip(1); // the rest of the BEGIN line
    let mut headers = Vec::new();
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        headers.push(line);
    }
    let b64: String = lines
        .take_while(|l| !l.starts_with('='))
        .map(str::trim)
        .collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(b64).expect("signature base64");
    *bytes.last_mut().unwrap() ^= 0x01;
    let encoded = engine.encode(&bytes);
    let mut armored = format!("{BEGIN}\n");
    for h in headers {
        armored.push_str(h);
        armored.push('\n');
    }
    armored.push('\n');
    for chunk in encoded.as_bytes().chunks(64) {
        armored.push_str(std::str::from_utf8(chunk).unwrap());
        armored.push('\n');
    }
    let crc = crc24(&bytes).to_be_bytes();
    armored.push('=');
    armored.push_str(&engine.encode(&crc[1..]));
    armored.push('\n');
    format!("{}{armored}{}", &text[..start], &text[end..])
}

/// The OpenPGP armor checksum (RFC 4880 §6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xB7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= 0x186_4CFB;
            }
        }
    }
    crc & 0xFF_FFFF
}

// ---------------------------------------------------------------------------------------
// Real apt, privately configured
// ---------------------------------------------------------------------------------------

/// The real `apt-get`, configured to use one repository and nothing of the machine's
/// (no system sources, keyrings, apt.conf.d, lists, cache or dpkg status).
pub struct AptGet {
    dir: TestDir,
    config: PathBuf,
    apt_get: PathBuf,
}

impl AptGet {
    /// apt for `amd64` trusting the repository's binary keyring, repository at `base_url`.
    pub fn new(repo: &AptRepo, base_url: &str) -> AptGet {
        AptGet::with(repo, base_url, &repo.keyring_gpg, "amd64")
    }

    /// apt for `arch` trusting only `keyring` (`.gpg` or `.asc`).
    pub fn with(repo: &AptRepo, base_url: &str, keyring: &Path, arch: &str) -> AptGet {
        let sources = format!(
            "deb [signed-by={}] {}/ {} {}\n",
            keyring.display(),
            base_url.trim_end_matches('/'),
            repo.suite,
            repo.components.join(" ")
        );
        AptGet::with_sources(&sources, arch)
    }

    /// apt for `arch` with `sources` as its whole sources.list.
    pub fn with_sources(sources: &str, arch: &str) -> AptGet {
        let apt_get = require_tool("apt-get", "apt");
        require_tool("gpgv", "gpgv");
        let dir = TestDir::new();
        for d in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/trusted.gpg.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        dir.write("etc/sources.list", sources);
        dir.write("state/status", "");
        let p = |rel: &str| dir.join(rel).display().to_string();
        let config = format!(
            r#"Dir::Etc::main "/dev/null";
Dir::Etc::Parts "{parts}";
Dir::Etc::SourceList "{sources}";
Dir::Etc::SourceParts "{source_parts}";
Dir::Etc::Trusted "{trusted}";
Dir::Etc::TrustedParts "{trusted_parts}";
Dir::Etc::Preferences "{prefs}";
Dir::Etc::PreferencesParts "{prefs_parts}";
Dir::State "{state}";
Dir::State::status "{status}";
Dir::Cache "{cache}";
Dir::Log "{log}";
APT::Architecture "{arch}";
APT::Architectures {{ "{arch}"; }};
Debug::NoLocking "1";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::http::Proxy "DIRECT";
Acquire::Retries "0";
Acquire::PDiffs "false";
"#,
            parts = p("etc/apt.conf.d"),
            sources = p("etc/sources.list"),
            source_parts = p("etc/sources.list.d"),
            trusted = p("etc/trusted.gpg"),
            trusted_parts = p("etc/trusted.gpg.d"),
            prefs = p("etc/preferences"),
            prefs_parts = p("etc/preferences.d"),
            state = p("state"),
            status = p("state/status"),
            cache = p("cache"),
            log = p("log"),
        );
        let config = dir.write("apt.conf", config);
        AptGet {
            dir,
            config,
            apt_get,
        }
    }

    /// The `APT_CONFIG` file it uses.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its private state directory (lists, cache, status).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run `apt-get ARGS` in `cwd` with the private configuration.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Run {
        let config = self.config.to_str().unwrap();
        run_in(
            cwd,
            &self.apt_get,
            args,
            &[("APT_CONFIG", config), ("LC_ALL", "C")],
        )
    }

    /// `apt-get update`.
    pub fn update(&self) -> Run {
        self.run(self.dir.path(), &["update"])
    }

    /// `apt-get download PKG...` into `cwd` (`PKG` may be `name=version`).
    pub fn download(&self, cwd: &Path, packages: &[&str]) -> Run {
        let mut args = vec!["download"];
        args.extend_from_slice(packages);
        self.run(cwd, &args)
    }

    /// `apt-get --simulate install PKG...` against an empty dpkg status: its `Inst`
    /// lines show how apt resolved the dependencies.
    pub fn simulate_install(&self, packages: &[&str]) -> Run {
        let mut args = vec!["--simulate", "--yes", "install"];
        args.extend_from_slice(packages);
        self.run(self.dir.path(), &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Fault;
    use std::time::Instant;

    /// Six packages covering Pre-Depends, alternatives, a virtual package, arch `all`,
    /// an epoch, a `~` version, scripts and a conffile.
    fn sample() -> RepoBuilder {
        AptRepo::builder()
            .package(
                DebSpec::new("app", "1.0-1")
                    .pre_depends("base-tool (>= 1:2.0)")
                    .depends("libfast | libslow, data-common, mail-transport-agent")
                    .section("net")
                    .description("the app\nIt does things.\n\nTwo paragraphs.")
                    .file_mode("/usr/bin/app", "#!/bin/sh\necho app\n", 0o755)
                    .conffile("/etc/app/app.conf", "port = 8080\n")
                    .postinst("echo configured > /dev/null\n")
                    .prerm("true\n"),
            )
            .package(
                DebSpec::new("base-tool", "1:2.0-3")
                    .priority("required")
                    .essential(true)
                    .multi_arch("foreign")
                    .file("/usr/share/base-tool/x", "x"),
            )
            .package(DebSpec::new("libfast", "2.0~rc1-1").multi_arch("same"))
            .package(
                DebSpec::new("libslow", "1.0-1")
                    .conflicts("libfast")
                    .breaks("app (<< 1.0)"),
            )
            .package(
                DebSpec::new("data-common", "0.5")
                    .arch("all")
                    .replaces("old-data"),
            )
            .package(
                DebSpec::new("postfix-lite", "3.1")
                    .provides("mail-transport-agent")
                    .preinst("exit 0")
                    .postrm("exit 0"),
            )
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn layout_indices_and_release() {
        let repo = sample().build();
        let epoch = repo.deb("base-tool", "1:2.0-3");
        assert_eq!(
            epoch.filename,
            "pool/main/b/base-tool/base-tool_2.0-3_amd64.deb"
        );
        assert!(repo.deb_path("libfast", "2.0~rc1-1").is_file());
        assert_eq!(
            repo.deb("libfast", "2.0~rc1-1").filename,
            "pool/main/libf/libfast/libfast_2.0~rc1-1_amd64.deb"
        );
        let all = repo.deb("data-common", "0.5");
        assert!(all.filename.ends_with("_all.deb"));
        assert_eq!(crate::sha256_file(&all.path), all.sha256);
        assert_eq!(std::fs::metadata(&all.path).unwrap().len(), all.size);

        let packages = read(&repo.dist_dir().join("main/binary-amd64/Packages"));
        assert!(packages.contains("Package: data-common\n"));
        assert!(packages.contains("Version: 1:2.0-3\n"));
        assert!(packages.contains("Essential: yes\n"));
        assert!(packages.contains("Pre-Depends: base-tool (>= 1:2.0)\n"));
        assert!(packages.contains(&format!("SHA256: {}\n", all.sha256)));
        assert!(packages.contains("Description: the app\n It does things.\n .\n Two paragraphs.\n"));
        assert_eq!(packages.matches("Package: ").count(), 6);
        let gz = std::fs::read(repo.dist_dir().join("main/binary-amd64/Packages.gz")).unwrap();
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, packages);

        // dpkg agrees with the control data we listed.
        let dpkg_deb = require_tool("dpkg-deb", "dpkg");
        let info = run_in(
            repo.dir(),
            &dpkg_deb,
            &["--field", repo.deb_path("app", "1.0-1").to_str().unwrap()],
            &[],
        )
        .ok();
        assert!(info.stdout.contains("Pre-Depends: base-tool (>= 1:2.0)"));
        let listing = run_in(
            repo.dir(),
            &dpkg_deb,
            &[
                "--contents",
                repo.deb_path("app", "1.0-1").to_str().unwrap(),
            ],
            &[],
        )
        .ok();
        assert!(
            listing.stdout.contains("-rwxr-xr-x root/root"),
            "{}",
            listing.stdout
        );
        assert!(listing.stdout.contains("./etc/app/app.conf"));
        let control = run_in(
            repo.dir(),
            &dpkg_deb,
            &[
                "--ctrl-tarfile",
                repo.deb_path("app", "1.0-1").to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(control.code, 0);

        let release = read(&repo.dist_dir().join("Release"));
        assert!(release.contains("Suite: stable\nCodename: stable\n"));
        assert!(release.contains("Architectures: amd64\n"));
        assert!(release.contains("MD5Sum:\n"));
        assert!(release.contains("SHA256:\n"));
        let size = std::fs::metadata(repo.dist_dir().join("main/binary-amd64/Packages"))
            .unwrap()
            .len();
        let sha = crate::sha256_file(&repo.dist_dir().join("main/binary-amd64/Packages"));
        assert!(release.contains(&format!(" {sha} {size:>16} main/binary-amd64/Packages\n")));
        let inrelease = read(&repo.dist_dir().join("InRelease"));
        assert!(inrelease.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n"));
        assert!(repo.dist_dir().join("Release.gpg").is_file());
        assert!(repo.keyring_asc.is_file() && repo.keyring_gpg.is_file());
        assert!(!repo.keyring_gpg.starts_with(&repo.root));
        assert!(!repo.root.join("key.asc").exists());
    }

    #[test]
    fn rfc2822_dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(rfc2822(1_795_219_200), "Sat, 21 Nov 2026 00:00:00 UTC");
        assert_eq!(rfc2822(951_827_696), "Tue, 29 Feb 2000 12:34:56 UTC");
    }

    #[test]
    fn multi_arch_binary_all_and_components() {
        let repo = AptRepo::builder()
            .archs(&["amd64", "arm64", "all"])
            .components(&["main", "contrib"])
            .package(DebSpec::new("tool", "1.0").arch("amd64"))
            .package(DebSpec::new("tool", "1.0").arch("arm64"))
            .package(DebSpec::new("docs", "1.0").arch("all"))
            .package_in("contrib", DebSpec::new("extra", "2.0"))
            .build();
        let idx = |rel: &str| read(&repo.dist_dir().join(rel));
        let amd = idx("main/binary-amd64/Packages");
        assert!(amd.contains("Package: docs\n") && amd.contains("Architecture: amd64\n"));
        assert!(!amd.contains("Architecture: arm64"));
        let arm = idx("main/binary-arm64/Packages");
        assert!(arm.contains("Package: docs\n") && arm.contains("Architecture: arm64\n"));
        let all = idx("main/binary-all/Packages");
        assert_eq!(all.matches("Package: ").count(), 1);
        assert!(idx("contrib/binary-amd64/Packages").contains("Package: extra\n"));
        assert_eq!(idx("contrib/binary-arm64/Packages"), "");
        let release = idx("Release");
        assert!(release.contains("Architectures: amd64 arm64 all\n"));
        assert!(!release.contains("No-Support-for-Architecture-all"));
        assert!(release.contains("Components: main contrib\n"));
        assert!(release.contains("contrib/binary-arm64/Packages.gz\n"));
        assert_eq!(
            repo.deb("extra", "2.0").filename,
            "pool/contrib/e/extra/extra_2.0_amd64.deb"
        );
    }

    #[test]
    fn release_options() {
        let repo = AptRepo::builder()
            .suite("focal")
            .codename("focal")
            .date(1_795_219_200)
            .valid_until(Some(1_795_219_200 + 86_400))
            .sha256(false)
            .wrong_checksum("main/binary-amd64/Packages.gz")
            .publish_key(true)
            .package(DebSpec::new("a", "1"))
            .build();
        let release = read(&repo.dist_dir().join("Release"));
        assert!(release.contains("Date: Sat, 21 Nov 2026 00:00:00 UTC\n"));
        assert!(release.contains("Valid-Until: Sun, 22 Nov 2026 00:00:00 UTC\n"));
        assert!(!release.contains("SHA256:"));
        let gz = std::fs::read(repo.dist_dir().join("main/binary-amd64/Packages.gz")).unwrap();
        let md5 = hashes(&gz).md5;
        assert!(
            !release.contains(&md5),
            "the wrong checksum is listed as right"
        );
        assert!(repo.root.join("key.asc").is_file());
        assert!(repo.root.join("dists/focal/InRelease").is_file());
    }

    #[test]
    fn rebuild_adds_removes_and_resigns() {
        let mut repo = AptRepo::builder().package(DebSpec::new("a", "1")).build();
        let a = repo.deb_path("a", "1");
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        repo.add(DebSpec::new("b", "2"));
        assert_eq!(
            std::fs::metadata(&a).unwrap().modified().unwrap(),
            mtime,
            "rebuilt an unchanged deb"
        );
        assert!(read(&repo.dist_dir().join("main/binary-amd64/Packages")).contains("Package: b\n"));
        repo.rebuild_with(|b| b.remove("a", "1").key(Key::RsaSubkey));
        assert!(!a.exists());
        assert_eq!(repo.debs.len(), 1);
        assert_eq!(read(&repo.keyring_asc), Key::RsaSubkey.info().public_asc);
        verify_with_pgp(&repo, Key::RsaSubkey);
    }

    /// Verify InRelease and Release.gpg the way ferry-build does (rpgp 0.14, primary key
    /// and every subkey); returns whether any key verified.
    fn pgp_verifies(repo: &AptRepo) -> (bool, bool) {
        use pgp::cleartext::CleartextSignedMessage;
        use pgp::{Deserializable, SignedPublicKey, StandaloneSignature};
        let (key, _) =
            SignedPublicKey::from_armor_single(std::fs::File::open(&repo.keyring_asc).unwrap())
                .unwrap();
        key.verify().unwrap();
        let (msg, _) =
            CleartextSignedMessage::from_string(&read(&repo.dist_dir().join("InRelease"))).unwrap();
        let inrelease =
            msg.verify(&key).is_ok() || key.public_subkeys.iter().any(|sk| msg.verify(sk).is_ok());
        let (sig, _) = StandaloneSignature::from_armor_single(
            std::fs::File::open(repo.dist_dir().join("Release.gpg")).unwrap(),
        )
        .unwrap();
        let release = std::fs::read(repo.dist_dir().join("Release")).unwrap();
        let detached = sig.verify(&key, &release).is_ok()
            || key
                .public_subkeys
                .iter()
                .any(|sk| sig.verify(sk, &release).is_ok());
        (inrelease, detached)
    }

    fn verify_with_pgp(repo: &AptRepo, key: Key) {
        assert_eq!(pgp_verifies(repo), (true, true), "rpgp rejects {key:?}");
    }

    #[test]
    fn rpgp_verifies_every_key_kind() {
        std::thread::scope(|s| {
            for key in [Key::Rsa, Key::RsaSubkey, Key::Ed25519] {
                s.spawn(move || {
                    let repo = AptRepo::builder()
                        .key(key)
                        .package(DebSpec::new("a", "1"))
                        .build();
                    verify_with_pgp(&repo, key);
                });
            }
        });
        assert!(Key::RsaSubkey.info().fingerprint != Key::RsaSubkey.info().signing_fingerprint);
        assert_eq!(
            Key::Rsa.info().fingerprint,
            Key::Rsa.info().signing_fingerprint
        );
    }

    #[test]
    fn rpgp_rejects_broken_signatures() {
        for (builder, what) in [
            (AptRepo::builder().sign_with(Key::Other), "wrong key"),
            (
                AptRepo::builder().signature_fault(Some(SignatureFault::TamperedText)),
                "tampered text",
            ),
            (
                AptRepo::builder().signature_fault(Some(SignatureFault::FlippedSignature)),
                "flipped signature",
            ),
        ] {
            let repo = builder.package(DebSpec::new("a", "1")).build();
            assert_eq!(pgp_verifies(&repo), (false, false), "{what} verified");
        }
    }

    /// The proof that the fixture is faithful: real apt updates from it over HTTP,
    /// resolves its dependencies and downloads its packages.
    #[test]
    fn real_apt_accepts_and_downloads() {
        let repo = sample().build();
        let server = repo.serve();
        let apt = AptGet::new(&repo, &server.url());
        let update = apt.update();
        assert_eq!(update.code, 0, "apt-get update failed: {update:?}");
        assert!(
            !update.stderr.contains("W:"),
            "apt warned: {}",
            update.stderr
        );
        assert!(server.count(|r| r.path == "/dists/stable/InRelease" && r.status == 200) == 1);

        // Dependencies as apt understands them: Pre-Depends, the first alternative, the
        // virtual package's only provider, the all package.
        let sim = apt.simulate_install(&["app"]).ok();
        for inst in [
            "base-tool (1:2.0-3",
            "libfast (2.0~rc1-1",
            "data-common (0.5",
            "postfix-lite (3.1",
            "app (1.0-1",
        ] {
            assert!(
                sim.stdout.contains(&format!("Inst {inst}")),
                "{inst} missing:\n{}",
                sim.stdout
            );
        }
        assert!(!sim.stdout.contains("Inst libslow"));

        let cwd = crate::TestDir::new();
        apt.download(
            cwd.path(),
            &[
                "app",
                "base-tool=1:2.0-3",
                "libfast",
                "data-common",
                "libslow",
                "postfix-lite",
            ],
        )
        .ok();
        for deb in &repo.debs {
            let name = format!(
                "{}_{}_{}.deb",
                deb.name,
                deb.version.replace(':', "%3a"),
                deb.arch
            );
            let got = cwd.join(&name);
            assert!(got.is_file(), "apt did not download {name}");
            assert_eq!(crate::sha256_file(&got), deb.sha256, "{name}");
        }
        assert_eq!(server.count(|r| r.path.ends_with(".deb")), 6);
    }

    #[test]
    fn real_apt_reads_binary_all_and_foreign_archs() {
        let repo = AptRepo::builder()
            .archs(&["amd64", "arm64", "all"])
            .package(DebSpec::new("tool", "1.0").arch("amd64"))
            .package(DebSpec::new("tool", "1.0").arch("arm64"))
            .package(DebSpec::new("docs", "1.0").arch("all"))
            .build();
        let server = repo.serve();
        let apt = AptGet::with(&repo, &server.url(), &repo.keyring_gpg, "arm64");
        let update = apt.update().ok();
        assert!(
            !update.stderr.contains("W:"),
            "apt warned: {}",
            update.stderr
        );
        assert_eq!(
            server.count(|r| r.path.ends_with("/binary-all/Packages.gz") && r.status == 200),
            1
        );
        let cwd = crate::TestDir::new();
        apt.download(cwd.path(), &["tool", "docs"]).ok();
        assert_eq!(
            crate::sha256_file(&cwd.join("tool_1.0_arm64.deb")),
            repo.debs[1].sha256
        );
        assert!(cwd.join("docs_1.0_all.deb").is_file());
    }

    #[test]
    fn real_apt_reads_arch_all_only_from_binary_all() {
        for (how, binary_all_fetched) in [(ArchAll::BinaryAllOnly, 1), (ArchAll::DebianStyle, 0)] {
            let repo = AptRepo::builder()
                .binary_all(how)
                .package(DebSpec::new("docs", "1.0").arch("all"))
                .build();
            let arch_index = read(&repo.dist_dir().join("main/binary-amd64/Packages"));
            assert_eq!(arch_index.is_empty(), how == ArchAll::BinaryAllOnly);
            let server = repo.serve();
            let apt = AptGet::new(&repo, &server.url());
            apt.update().ok();
            assert_eq!(
                server.count(|r| r.path.ends_with("/binary-all/Packages.gz")),
                binary_all_fetched,
                "{how:?}"
            );
            let cwd = crate::TestDir::new();
            apt.download(cwd.path(), &["docs"]).ok();
            assert!(cwd.join("docs_1.0_all.deb").is_file(), "{how:?}");
        }
    }

    #[test]
    fn real_apt_uses_the_subkey_and_armored_keyring() {
        let repo = AptRepo::builder()
            .key(Key::RsaSubkey)
            .package(DebSpec::new("a", "1"))
            .build();
        let server = repo.serve();
        let apt = AptGet::with(&repo, &server.url(), &repo.keyring_asc, "amd64");
        apt.update().ok();
        let cwd = crate::TestDir::new();
        apt.download(cwd.path(), &["a"]).ok();
        assert!(cwd.join("a_1_amd64.deb").is_file());
    }

    #[test]
    fn real_apt_refuses_the_wrong_key() {
        let repo = AptRepo::builder()
            .sign_with(Key::Other)
            .package(DebSpec::new("a", "1"))
            .build();
        let server = repo.serve();
        let apt = AptGet::new(&repo, &server.url());
        let update = apt.update();
        assert_ne!(update.code, 0, "apt accepted the wrong key: {update:?}");
        assert!(update.stderr.contains("NO_PUBKEY"), "{}", update.stderr);
        assert!(update.stderr.contains("is not signed"), "{}", update.stderr);
        let other = &Key::Other.info().signing_fingerprint;
        assert!(
            update.stderr.contains(&other[other.len() - 16..]),
            "{}",
            update.stderr
        );
    }

    #[test]
    fn real_apt_refuses_broken_repositories() {
        let past = unix_now() - 86_400;
        let cases: Vec<(RepoBuilder, &str)> = vec![
            (
                AptRepo::builder().signature_fault(Some(SignatureFault::TamperedText)),
                "BADSIG",
            ),
            (
                AptRepo::builder().signature_fault(Some(SignatureFault::FlippedSignature)),
                "BADSIG",
            ),
            (
                AptRepo::builder()
                    .date(past - 86_400)
                    .valid_until(Some(past)),
                "expired",
            ),
            (
                AptRepo::builder().date(unix_now() + 30 * 86_400),
                "not valid yet",
            ),
            (
                AptRepo::builder().wrong_checksum("main/binary-amd64/Packages.gz"),
                "Hash Sum mismatch",
            ),
            (
                AptRepo::builder().sha256(false),
                "weak security information",
            ),
        ];
        std::thread::scope(|s| {
            for (builder, expect) in cases {
                s.spawn(move || {
                    let repo = builder.package(DebSpec::new("a", "1")).build();
                    let server = repo.serve();
                    let update = AptGet::new(&repo, &server.url()).update();
                    let all = format!("{}{}", update.stdout, update.stderr);
                    assert!(all.contains(expect), "expected {expect:?}: {update:?}");
                    assert_ne!(update.code, 0, "apt accepted it ({expect}): {update:?}");
                });
            }
        });
    }

    #[test]
    fn real_apt_reports_injected_errors() {
        let repo = AptRepo::builder()
            .packages(filler_sized(1, 64 * 1024))
            .build();
        let server = repo.serve();
        let apt = AptGet::new(&repo, &server.url());
        apt.update().ok();
        server.set_fault("*.deb", Fault::Status(500, 1));
        let cwd = crate::TestDir::new();
        let failed = apt.download(cwd.path(), &["filler-0000"]);
        assert_ne!(failed.code, 0, "the injected 500 went unnoticed");
        apt.download(cwd.path(), &["filler-0000"]).ok();
        assert_eq!(
            crate::sha256_file(&cwd.join("filler-0000_1.0-1_amd64.deb")),
            repo.debs[0].sha256
        );
    }

    #[test]
    fn hundred_packages_build_quickly() {
        let t = Instant::now();
        let repo = AptRepo::builder().packages(filler(100)).build();
        let took = t.elapsed();
        assert_eq!(repo.debs.len(), 100);
        let packages = read(&repo.dist_dir().join("main/binary-amd64/Packages"));
        assert_eq!(packages.matches("Package: filler-").count(), 100);
        assert!(took.as_secs() < 30, "100 packages took {took:?}");
        eprintln!("100 packages built in {took:?}");
    }
}
