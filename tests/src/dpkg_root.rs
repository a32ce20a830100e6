//! Throwaway dpkg roots for the tests of ferry-install's package work: a root directory
//! with an empty dpkg database that this machine's real `dpkg --root` installs into,
//! fixture packages built with the real `dpkg-deb`, packages that imitate the Tyk ones
//! (dashboard, gateway, pump), and a health endpoint per component that reports what
//! the installed package's maintainer script wrote.
//!
//! What dpkg 1.21 (Debian 12) needs for `--root=DIR`, found by running it under strace:
//! - On this machine, not in the root: `sh`, `rm`, `tar`, `diff`, `dpkg-deb`, `ldconfig`
//!   and `start-stop-daemon` on `PATH` (dpkg's `checkpath()` looks them up in the
//!   caller's `PATH` and refuses to run without them), plus `dpkg-split`, `dpkg-deb`,
//!   `tar` and `rm`, which it runs outside the chroot to unpack.
//! - In the root: `var/lib/dpkg/` with `status`, `info/`, `updates/`, `triggers/` (it
//!   creates its lock files, `status-old` and `info/format`), and, because it runs every
//!   maintainer script chrooted into DIR (`chroot(DIR)`, `chdir("/")`, `execve` of
//!   `/var/lib/dpkg/info/<pkg>.<script>` with the caller's environment), the
//!   interpreter of the scripts' `#!` line (`/bin/sh`) and every program they run,
//!   found through the caller's `PATH` inside the root. Scripts also expect `/tmp` and
//!   `/dev/null`.
//!
//! [`DpkgRoot::new`] provides exactly that: a copy of the static busybox of Debian's
//! `busybox-static` in `/bin` with its applets linked (`/bin/sh` among them, and
//! `start-stop-daemon` in `/sbin`), `/tmp`, `/dev/null`, a minimal `/etc/passwd` and
//! `/etc/group` (root and the `tyk` user the fixtures use), and runs dpkg with a
//! standard `PATH`. No `--force-*` option is needed.

use crate::{noise, require_tool, TestDir};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `PATH` for dpkg and for the maintainer scripts it runs inside the root.
pub const DPKG_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The busybox applets linked into the root's `/bin`: what maintainer scripts use.
pub const APPLETS: &[&str] = &[
    "[",
    "[[",
    "ash",
    "awk",
    "basename",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "diff",
    "dirname",
    "echo",
    "egrep",
    "env",
    "expr",
    "false",
    "fgrep",
    "find",
    "getopt",
    "grep",
    "gzip",
    "head",
    "hostname",
    "id",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "sync",
    "tail",
    "tar",
    "tee",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "which",
    "xargs",
];

/// uid and gid of the `tyk` user the Tyk-like packages give some files to.
pub const TYK_UID: u32 = 4242;

/// The order log the Tyk-like packages' postinst appends to, inside the root.
pub const ORDER_LOG: &str = "/var/log/ferry-fixture/order.log";

/// A dpkg root in a temporary directory, removed at drop.
pub struct DpkgRoot {
    dir: TestDir,
    dpkg: PathBuf,
}

impl Default for DpkgRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl DpkgRoot {
    /// A fresh root with an empty dpkg database (see the module documentation).
    pub fn new() -> DpkgRoot {
        let dpkg = require_tool("dpkg", "dpkg");
        require_tool("dpkg-deb", "dpkg");
        let busybox = require_tool("busybox", "busybox-static");
        let dir = TestDir::new();
        let root = dir.path();
        set_mode(root, 0o755);
        for d in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/lib/dpkg/alternatives",
            "var/cache/apt/archives",
            "var/log",
            "etc",
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "dev",
            "tmp",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        set_mode(&root.join("tmp"), 0o1777);
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\ntyk:x:{TYK_UID}:{TYK_UID}:Tyk:/opt:/bin/false\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            format!("root:x:0:\ntyk:x:{TYK_UID}:\n"),
        )
        .unwrap();

        // The static busybox: it needs no libraries inside the root.
        std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
        set_mode(&root.join("bin/busybox"), 0o755);
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::os::unix::fs::symlink("/bin/busybox", root.join("sbin/start-stop-daemon")).unwrap();

        // /dev/null as the real device; a regular file where mknod is not allowed.
        let null = root.join("dev/null");
        let made = Command::new("mknod")
            .args(["-m", "666"])
            .arg(&null)
            .args(["c", "1", "3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            std::fs::write(&null, "").unwrap();
            set_mode(&null, 0o666);
        }
        DpkgRoot { dir, dpkg }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The real path of an absolute path inside the root (`/opt/x` -> `<root>/opt/x`).
    pub fn join(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let p = absolute.as_ref();
        self.path().join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The root as ferry-installer's [`Host`](ferry_installer::host::Host).
    pub fn host(&self) -> ferry_installer::host::Host {
        ferry_installer::host::Host::new(self.path())
    }

    /// Run `dpkg --root=<root> --log=<root>/var/log/dpkg.log args...` (stdin closed,
    /// C locale, [`DPKG_PATH`]).
    pub fn dpkg<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut root_arg = std::ffi::OsString::from("--root=");
        root_arg.push(self.path());
        let mut log_arg = std::ffi::OsString::from("--log=");
        log_arg.push(self.join("/var/log/dpkg.log"));
        Command::new(&self.dpkg)
            .arg(root_arg)
            .arg(log_arg)
            .args(args)
            .env("PATH", DPKG_PATH)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .output()
            .expect("run dpkg")
    }

    /// `dpkg -i debs...`, which must succeed.
    #[track_caller]
    pub fn install(&self, debs: &[&Path]) -> Output {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--install")];
        args.extend(debs.iter().map(|d| d.as_os_str()));
        let out = self.dpkg(&args);
        assert!(
            out.status.success(),
            "dpkg --install {debs:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The installed version and dpkg status (`install ok installed`) of `package`;
    /// `None` if dpkg does not know it or it is `not-installed`.
    pub fn status(&self, package: &str) -> Option<(String, String)> {
        let mut root_arg = std::ffi::OsString::from("--root=");
        root_arg.push(self.path());
        let out = Command::new(require_tool("dpkg-query", "dpkg"))
            .arg(root_arg)
            .args(["--show", "--showformat=${Version}\\t${Status}", package])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run dpkg-query");
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (version, status) = text.split_once('\t')?;
        (!status.ends_with("not-installed")).then(|| (version.to_string(), status.to_string()))
    }

    /// What `dpkg --audit` reports (stdout and stderr): empty when the database is
    /// consistent.
    pub fn audit(&self) -> String {
        let out = self.dpkg(["--audit"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The lines of [`ORDER_LOG`] (none if it does not exist).
    pub fn order_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.join(ORDER_LOG))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Every path at and below `subpath` (an absolute path inside the root), not
    /// following symlinks, with what makes two trees identical: type, permission bits,
    /// owner, group and content (sha256 of a file, target of a symlink).
    pub fn tree_digest(&self, subpath: &str) -> BTreeMap<String, TreeEntry> {
        let mut out = BTreeMap::new();
        let start = self.join(subpath);
        let mut stack = vec![start];
        while let Some(path) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            let (kind, content) = if ft.is_dir() {
                let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                children.sort();
                stack.extend(children);
                ("dir", String::new())
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("symlink", target.to_string_lossy().into_owned())
            } else if ft.is_file() {
                ("file", crate::sha256_file(&path))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("device", format!("rdev {}", meta.rdev()))
            };
            let rel = path.strip_prefix(self.path()).unwrap();
            out.insert(
                format!("/{}", rel.display()),
                TreeEntry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content,
                },
            );
        }
        out
    }
}

/// One path of a [`DpkgRoot::tree_digest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// `file`, `dir`, `symlink`, `fifo` or `device`.
    pub kind: &'static str,
    /// Permission bits, set-id and sticky bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// sha256 of a file (hex), target of a symlink, empty for a directory.
    pub content: String,
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// Fixture packages
// ---------------------------------------------------------------------------------------

/// What a path of a fixture package is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixtureContent {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink to this target.
    Symlink(String),
}

/// One path of a fixture package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureEntry {
    /// Absolute path on the installed system.
    pub path: String,
    /// File, directory or symlink.
    pub content: FixtureContent,
    /// Permission bits (ignored for symlinks).
    pub mode: u32,
    /// Owner and group.
    pub owner: (u32, u32),
}

/// A `.deb` to build with `dpkg-deb --build`: control fields, paths with modes and
/// owners, conffiles, maintainer scripts. An `md5sums` member is generated as
/// `dh_md5sums` does (every regular file but the conffiles) unless turned off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixturePackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture (default `all`).
    pub arch: String,
    /// Extra control fields, in order (`Depends`, `Multi-Arch`, ...).
    pub fields: Vec<(String, String)>,
    /// Paths in the package; parents not listed are made 0755 root.
    pub entries: Vec<FixtureEntry>,
    /// Absolute paths of the conffiles.
    pub conffiles: Vec<String>,
    /// Maintainer scripts by name (`preinst`, `postinst`, `prerm`, `postrm`).
    pub scripts: BTreeMap<String, String>,
    /// Whether to generate an `md5sums` member.
    pub md5sums: bool,
}

impl FixturePackage {
    /// An empty package, architecture `all`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> FixturePackage {
        FixturePackage {
            name: name.into(),
            version: version.into(),
            arch: "all".into(),
            fields: Vec::new(),
            entries: Vec::new(),
            conffiles: Vec::new(),
            scripts: BTreeMap::new(),
            md5sums: true,
        }
    }

    /// Set the architecture.
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    /// Set a control field (replacing an earlier value).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.fields.push((name, value.into()));
        self
    }

    /// `Depends:`.
    pub fn depends(self, value: impl Into<String>) -> Self {
        self.field("Depends", value)
    }

    fn entry(
        mut self,
        path: impl Into<String>,
        content: FixtureContent,
        mode: u32,
        owner: (u32, u32),
    ) -> Self {
        let path = path.into();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self.entries.retain(|e| e.path != path);
        self.entries.push(FixtureEntry {
            path,
            content,
            mode,
            owner,
        });
        self
    }

    /// A file owned by root with the given permission bits.
    pub fn file(self, path: impl Into<String>, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entry(path, FixtureContent::File(data.into()), mode, (0, 0))
    }

    /// A file with the given permission bits, owner and group.
    pub fn file_owned(
        self,
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Self {
        self.entry(path, FixtureContent::File(data.into()), mode, (uid, gid))
    }

    /// A directory with the given permission bits, owner and group.
    pub fn dir(self, path: impl Into<String>, mode: u32, uid: u32, gid: u32) -> Self {
        self.entry(path, FixtureContent::Dir, mode, (uid, gid))
    }

    /// A symlink (owned by root).
    pub fn symlink(self, path: impl Into<String>, target: impl Into<String>) -> Self {
        self.entry(path, FixtureContent::Symlink(target.into()), 0o777, (0, 0))
    }

    /// A conffile: a root-owned 0644 file listed in `conffiles`.
    pub fn conffile(self, path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        let mut pkg = self.file(path, data, 0o644);
        let path = pkg.entries.last().unwrap().path.clone();
        if !pkg.conffiles.contains(&path) {
            pkg.conffiles.push(path);
        }
        pkg
    }

    /// A maintainer script; text without a `#!` line gets `#!/bin/sh` and `set -e`.
    pub fn script(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.scripts
            .insert(name.into(), crate::apt_repo::maintainer_script(text.into()));
        self
    }

    /// The `preinst` (see [`FixturePackage::script`]).
    pub fn preinst(self, text: impl Into<String>) -> Self {
        self.script("preinst", text)
    }

    /// The `postinst` (see [`FixturePackage::script`]).
    pub fn postinst(self, text: impl Into<String>) -> Self {
        self.script("postinst", text)
    }

    /// The `prerm` (see [`FixturePackage::script`]).
    pub fn prerm(self, text: impl Into<String>) -> Self {
        self.script("prerm", text)
    }

    /// The `postrm` (see [`FixturePackage::script`]).
    pub fn postrm(self, text: impl Into<String>) -> Self {
        self.script("postrm", text)
    }

    /// Leave the `md5sums` member out.
    pub fn without_md5sums(mut self) -> Self {
        self.md5sums = false;
        self
    }

    /// The file name apt would give it: `<name>_<version, ':' as %3a>_<arch>.deb`.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    /// The control file.
    pub fn control(&self) -> String {
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Ferry Tests <ferry-tests@example.invalid>\n",
            self.name, self.version, self.arch
        );
        for (name, value) in &self.fields {
            writeln!(control, "{name}: {value}").unwrap();
        }
        writeln!(
            control,
            "Description: {} fixture for ferry's tests\n Built by ferry-tests with dpkg-deb.",
            self.name
        )
        .unwrap();
        control
    }

    /// Build the `.deb` into `dir` (named [`FixturePackage::file_name`]) and return its
    /// path. Owners are kept as given (`--root-owner-group` when all are root).
    pub fn build(&self, dir: &Path) -> PathBuf {
        let dpkg_deb = require_tool("dpkg-deb", "dpkg");
        std::fs::create_dir_all(dir).unwrap();
        let stage = tempfile::Builder::new()
            .prefix(".fixture-stage-")
            .tempdir_in(dir)
            .unwrap();
        let tree = stage.path().join("tree");
        let control_dir = tree.join("DEBIAN");
        std::fs::create_dir_all(&control_dir).unwrap();
        set_mode(&tree, 0o755);
        set_mode(&control_dir, 0o755);

        let mut entries = self.entries.clone();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut md5sums = String::new();
        for e in &entries {
            let p = tree.join(e.path.trim_start_matches('/'));
            let parent = p.parent().unwrap();
            if !parent.exists() {
                std::fs::create_dir_all(parent).unwrap();
                let mut d = parent;
                while d != tree {
                    set_mode(d, 0o755);
                    d = d.parent().unwrap();
                }
            }
            match &e.content {
                FixtureContent::File(data) => {
                    std::fs::write(&p, data).unwrap();
                    std::os::unix::fs::chown(&p, Some(e.owner.0), Some(e.owner.1)).unwrap();
                    set_mode(&p, e.mode);
                    if self.md5sums && !self.conffiles.contains(&e.path) {
                        use md5::{Digest, Md5};
                        writeln!(
                            md5sums,
                            "{}  {}",
                            hex::encode(Md5::digest(data)),
                            e.path.trim_start_matches('/')
                        )
                        .unwrap();
                    }
                }
                FixtureContent::Dir => {
                    std::fs::create_dir_all(&p).unwrap();
                    std::os::unix::fs::chown(&p, Some(e.owner.0), Some(e.owner.1)).unwrap();
                    set_mode(&p, e.mode);
                }
                FixtureContent::Symlink(target) => {
                    std::os::unix::fs::symlink(target, &p).unwrap();
                    std::os::unix::fs::lchown(&p, Some(e.owner.0), Some(e.owner.1)).unwrap();
                }
            }
        }

        std::fs::write(control_dir.join("control"), self.control()).unwrap();
        set_mode(&control_dir.join("control"), 0o644);
        if self.md5sums && !md5sums.is_empty() {
            std::fs::write(control_dir.join("md5sums"), &md5sums).unwrap();
            set_mode(&control_dir.join("md5sums"), 0o644);
        }
        if !self.conffiles.is_empty() {
            std::fs::write(
                control_dir.join("conffiles"),
                self.conffiles.join("\n") + "\n",
            )
            .unwrap();
            set_mode(&control_dir.join("conffiles"), 0o644);
        }
        for (name, text) in &self.scripts {
            let p = control_dir.join(name);
            std::fs::write(&p, text).unwrap();
            set_mode(&p, 0o755);
        }

        let out_path = dir.join(self.file_name());
        let mut cmd = Command::new(dpkg_deb);
        if entries.iter().all(|e| e.owner == (0, 0)) {
            cmd.arg("--root-owner-group");
        }
        let out = cmd
            .args(["-Zgzip", "-z1", "--build"])
            .arg(&tree)
            .arg(&out_path)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run dpkg-deb");
        assert!(
            out.status.success(),
            "dpkg-deb --build failed for {} {}:\n{}{}",
            self.name,
            self.version,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out_path
    }
}

/// How a Tyk-like package behaves when dpkg configures it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The postinst logs and writes `pass` into the health file.
    Good,
    /// The postinst logs, then exits 1 on `configure` (no health file written).
    PostinstFails,
    /// The postinst logs and writes `fail` into the health file.
    Unhealthy,
}

/// The binary and config file names of a Tyk component (`dashboard`, `gateway`, `pump`).
pub fn tyk_names(component: &str) -> (&'static str, &'static str) {
    match component {
        "dashboard" => ("tyk-analytics", "tyk_analytics.conf"),
        "gateway" => ("tyk", "tyk.conf"),
        "pump" => ("tyk-pump", "pump.conf"),
        other => panic!("unknown Tyk component {other:?} (dashboard, gateway or pump)"),
    }
}

/// A package imitating Tyk's `tyk-<component>`: under `/opt/tyk-<component>/`
/// - the binary (`tyk`, `tyk-analytics`, `tyk-pump`; 0755, bytes that name the version),
/// - `version` (the version and a newline),
/// - the conffile `tyk.conf` / `tyk_analytics.conf` / `pump.conf` (JSON, the same in
///   every version, so an upgrade keeps an administrator's change without a prompt),
/// - `bin/<binary>`, a symlink to `../<binary>`,
/// - `install/setup.sh`, 0750 and owned by the `tyk` user ([`TYK_UID`]),
/// - `data/`, a 0750 directory owned by `tyk`;
///
/// and a postinst that appends `tyk-<component> <version> <action>` to [`ORDER_LOG`]
/// and, on `configure`, writes `pass` (or `fail`, or exits 1: see [`Variant`]) into
/// `/opt/tyk-<component>/health`.
pub fn tyk_like(component: &str, version: &str, variant: Variant) -> FixturePackage {
    let (binary, conf) = tyk_names(component);
    let name = format!("tyk-{component}");
    let base = format!("/opt/{name}");
    let port = match component {
        "dashboard" => 3000,
        "gateway" => 8080,
        _ => 8083,
    };
    let mut bin = format!("\x7fELF fixture {name} {version}\n").into_bytes();
    let seed = name
        .bytes()
        .chain(version.bytes())
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    bin.extend(noise(8192, seed));
    let config = serde_json::to_string_pretty(&serde_json::json!({
        "component": component,
        "listen_port": port,
        "storage": { "type": "redis", "host": "localhost", "port": 6379 },
    }))
    .unwrap()
        + "\n";
    let on_configure = match variant {
        Variant::Good => format!("echo pass > {base}/health"),
        Variant::Unhealthy => format!("echo fail > {base}/health"),
        Variant::PostinstFails => {
            format!("echo \"{name}: configuration failed on purpose\" >&2\n    exit 1")
        }
    };
    let postinst = format!(
        "mkdir -p /var/log/ferry-fixture\necho \"{name} {version} $1\" >> {ORDER_LOG}\nif [ \"$1\" = configure ]; then\n    {on_configure}\nfi\n"
    );
    FixturePackage::new(name.clone(), version)
        .field("Section", "net")
        .field("Priority", "optional")
        .file(format!("{base}/{binary}"), bin, 0o755)
        .file(format!("{base}/version"), format!("{version}\n"), 0o644)
        .conffile(format!("{base}/{conf}"), config)
        .symlink(format!("{base}/bin/{binary}"), format!("../{binary}"))
        .file_owned(
            format!("{base}/install/setup.sh"),
            format!("#!/bin/sh\n# set up {name} {version}\n"),
            0o750,
            TYK_UID,
            TYK_UID,
        )
        .dir(format!("{base}/data"), 0o750, TYK_UID, TYK_UID)
        .postinst(postinst)
}

// ---------------------------------------------------------------------------------------
// Health endpoint
// ---------------------------------------------------------------------------------------

/// An HTTP server on `127.0.0.1` answering `GET /hello` (Gateway and Dashboard) and
/// `GET /health` (Pump) for one Tyk-like component of a root, as Tyk's health endpoints
/// do: 200 and `{"status":"<health file>","version":"<version file>"}` while
/// `/opt/tyk-<component>/health` exists, 503 and `{"status":"fail"}` when it does not.
/// The files are read at every request. Dropping it stops it.
pub struct HealthServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// Start serving the component `component` (`gateway`, ...) of the root at `root`.
    pub fn start(root: &Path, component: &str) -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let dir = root.join(format!("opt/tyk-{component}"));
        let flag = Arc::clone(&stopping);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &dir);
                }
            }
        });
        HealthServer {
            addr,
            stopping,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/hello`.
    pub fn url(&self) -> String {
        format!("http://{}/hello", self.addr)
    }

    /// Its port on 127.0.0.1 (for a component's configuration file).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT<path>`, e.g. `/health`.
    pub fn url_at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET [`HealthServer::url`]: status code and body.
    pub fn get(&self) -> (u16, String) {
        http_get(&self.url())
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = if method != "GET" {
        (405, serde_json::json!({"error": "method not allowed"}))
    } else if path != "/hello" && path != "/health" {
        (404, serde_json::json!({"error": "not found"}))
    } else {
        match std::fs::read_to_string(dir.join("health")) {
            Ok(health) => {
                let version = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
                (
                    200,
                    serde_json::json!({"status": health.trim(), "version": version.trim()}),
                )
            }
            Err(_) => (503, serde_json::json!({"status": "fail"})),
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A minimal HTTP/1.1 GET of an `http://host:port/path` URL: status code and body.
pub fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream =
        TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {head:?}"));
    (code, body.to_string())
}
