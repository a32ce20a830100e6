//! `ferry-install inventory`: what this host runs, as a `ferry-inventory/1` document
//! ([`ferry_bundle::Inventory`]) for the connected side to resolve dependencies against —
//! the OS (os-release), dpkg's native and foreign architectures, and every package
//! record in the dpkg status database.
//!
//! This module only reads. It never writes to the host, never takes dpkg's lock and
//! never runs anything but `dpkg --print-architecture`, which only prints a constant.
//! Every host path goes through [`Host::path`], so it works on a `--root` image.
//!
//! How the pieces are read, following dpkg's own behaviour:
//! - **Packages**: `/var/lib/dpkg/status`, then the journal entries in
//!   `/var/lib/dpkg/updates/` that an interrupted dpkg left unmerged, applied in order
//!   as dpkg does when it opens its database. Records in state `not-installed` are bare
//!   selections (no files, no version) and are left out.
//! - **Native architecture**: dpkg compiles it in (`arch.c`: `arch_item_native =
//!   ARCHITECTURE`); `/var/lib/dpkg/arch` lists native *and* foreign architectures with
//!   nothing marking which is which (and may not exist at all), so its first line is not
//!   used. On `/` the answer is `dpkg --print-architecture`, the very dpkg that owns the
//!   database. Under `--root DIR`, the running dpkg is this machine's, not the image's,
//!   so the `Architecture` of the `dpkg` package installed in DIR comes first and
//!   `dpkg --root=DIR --print-architecture` second (when they disagree, a warning names
//!   both). Last resort: the most common architecture among installed packages.
//! - **Foreign architectures**: what `dpkg --print-foreign-architectures` prints — the
//!   entries of `/var/lib/dpkg/arch` other than the native one — read directly so the
//!   answer agrees with the native architecture chosen above.

use crate::host::Host;
use crate::{Error, Result};
use ferry_bundle::inventory::FORMAT;
use ferry_bundle::{InstalledPackage, Inventory, OsRelease, Reporter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// dpkg's status database.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// dpkg's journal of status changes not yet merged into [`DPKG_STATUS`].
pub const DPKG_UPDATES: &str = "/var/lib/dpkg/updates";
/// dpkg's list of configured architectures.
pub const DPKG_ARCH: &str = "/var/lib/dpkg/arch";
/// os-release, in the order os-release(5) says to look.
pub const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
/// The host's static name.
pub const HOSTNAME: &str = "/etc/hostname";

/// Read the host's OS, architectures and dpkg database into an inventory.
pub fn take_inventory(host: &Host, reporter: &dyn Reporter) -> Result<Inventory> {
    let (packages, pending) = read_dpkg_database(host)?;
    if pending > 0 {
        reporter.warn(&format!(
            "{}: {pending} journal entr{} not yet merged: dpkg was interrupted (the inventory includes them, as dpkg would)\nhelp: run `{}` to let dpkg finish its work",
            host.path(DPKG_UPDATES).display(),
            if pending == 1 { "y" } else { "ies" },
            dpkg_configure_command(host)
        ));
    }
    let arch = native_arch(host, &packages, reporter)?;
    let foreign_archs = foreign_archs(host, &arch)?;
    let os = read_os_release(host)?;
    let hostname = read_hostname(host)?;
    let mut inventory = Inventory {
        format: FORMAT.to_string(),
        created: host.now(),
        hostname,
        os,
        arch,
        foreign_archs,
        packages,
    };
    inventory.sort();
    Ok(inventory)
}

/// The command that finishes an interrupted dpkg run on this host.
pub fn dpkg_configure_command(host: &Host) -> String {
    if host.root() == Path::new("/") {
        "dpkg --configure -a".to_string()
    } else {
        format!("dpkg --root={} --configure -a", host.root().display())
    }
}

// ---------------------------------------------------------------------------------
// The dpkg database.

/// Every package record of the status file with the pending journal entries applied,
/// `not-installed` selections left out; and how many journal entries there were.
pub(crate) fn read_dpkg_database(host: &Host) -> Result<(Vec<InstalledPackage>, usize)> {
    let status_path = host.path(DPKG_STATUS);
    let bytes = match std::fs::read(&status_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoDpkgDatabase { path: status_path })
        }
        Err(e) => return Err(Error::io(&status_path, e)),
    };
    let mut db: Vec<InstalledPackage> = Vec::new();
    for stanza in parse_deb822(&status_path, &bytes)? {
        let pkg = package_from_stanza(&status_path, &stanza)?;
        // dpkg keeps one slot per (name, arch); a later duplicate replaces the earlier.
        db.retain(|p| !(p.name == pkg.name && p.arch == pkg.arch));
        db.push(pkg);
    }

    let updates = journal_entries(host)?;
    for path in &updates {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        for stanza in parse_deb822(path, &bytes)? {
            let pkg = package_from_stanza(path, &stanza)?;
            apply_update(&mut db, pkg);
        }
    }

    db.retain(|p| p.state() != "not-installed");
    Ok((db, updates.len()))
}

/// The files of dpkg's journal directory, in the order dpkg applies them: names made
/// only of digits, by number (other names, like dpkg's `tmp.i`, are not entries).
fn journal_entries(host: &Host) -> Result<Vec<PathBuf>> {
    let dir = host.path(DPKG_UPDATES);
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(n) = name.parse::<u64>() else { continue };
        entries.push((n, entry.path()));
    }
    entries.sort();
    Ok(entries.into_iter().map(|(_, p)| p).collect())
}

/// Apply one journal entry the way dpkg picks the slot for it: the same (name, arch),
/// or — a cross-grade — the single existing instance unless both are `Multi-Arch: same`.
fn apply_update(db: &mut Vec<InstalledPackage>, pkg: InstalledPackage) {
    let present: Vec<usize> = db
        .iter()
        .enumerate()
        .filter(|(_, p)| p.name == pkg.name && p.state() != "not-installed")
        .map(|(i, _)| i)
        .collect();
    let same = |p: &InstalledPackage| p.multi_arch.as_deref() == Some("same");
    let slot = match present.as_slice() {
        [only] if !(same(&db[*only]) && same(&pkg)) => Some(*only),
        _ => db
            .iter()
            .position(|p| p.name == pkg.name && p.arch == pkg.arch),
    };
    match slot {
        Some(i) => db[i] = pkg,
        None => db.push(pkg),
    }
}

/// One paragraph of a deb822 file: its first line and its fields (names lower-cased).
#[derive(Debug)]
struct Stanza {
    line: usize,
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Field {
    name: String,
    line: usize,
    value: String,
}

impl Stanza {
    fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Split a deb822 file into paragraphs: blank (or whitespace-only) lines separate them,
/// lines starting with a space or tab continue the previous field, field names are
/// case-insensitive and may appear once per paragraph. A missing final newline is fine.
fn parse_deb822(path: &Path, bytes: &[u8]) -> Result<Vec<Stanza>> {
    // Descriptions of old packages may be Latin-1; nothing ferry reads is affected.
    let text = String::from_utf8_lossy(bytes);
    let bad = |line: usize, message: String| Error::DpkgDatabase {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut stanzas = Vec::new();
    let mut current: Option<Stanza> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let n = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            stanzas.extend(current.take());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(field) = current.as_mut().and_then(|s| s.fields.last_mut()) else {
                return Err(bad(
                    n,
                    "continuation line outside any field (a line starting with a space must follow a field)".into(),
                ));
            };
            field.value.push('\n');
            field.value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(
                n,
                format!("expected \"Field: value\", found {:?}", truncate(line)),
            ));
        };
        let name = name.trim_end();
        if name.is_empty()
            || name.starts_with(['-', '#'])
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(n, format!("invalid field name {:?}", truncate(name))));
        }
        let stanza = current.get_or_insert_with(|| Stanza {
            line: n,
            fields: Vec::new(),
        });
        let lower = name.to_ascii_lowercase();
        if let Some(first) = stanza.get(&lower) {
            return Err(bad(
                n,
                format!(
                    "duplicate field {name:?} in one paragraph (first on line {})",
                    first.line
                ),
            ));
        }
        stanza.fields.push(Field {
            name: lower,
            line: n,
            value: value.trim().to_string(),
        });
    }
    stanzas.extend(current);
    Ok(stanzas)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A single-line view of a field: continuation lines folded, runs of spaces collapsed.
fn folded(field: &Field) -> String {
    field.value.split_whitespace().collect::<Vec<_>>().join(" ")
}

const WANTS: [&str; 5] = ["unknown", "install", "hold", "deinstall", "purge"];
const EFLAGS: [&str; 2] = ["ok", "reinstreq"];
const STATES: [&str; 8] = [
    "not-installed",
    "config-files",
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
    "installed",
];

/// One status record, checked as dpkg checks it when it loads the database.
fn package_from_stanza(path: &Path, stanza: &Stanza) -> Result<InstalledPackage> {
    let bad = |line: usize, message: String| Error::DpkgDatabase {
        path: path.to_path_buf(),
        line,
        message,
    };
    let name = match stanza.get("package").map(folded) {
        Some(n) if !n.is_empty() && !n.contains(' ') => n,
        Some(n) => {
            return Err(bad(
                stanza.line,
                format!("invalid package name {:?}", truncate(&n)),
            ))
        }
        None => {
            return Err(bad(
                stanza.line,
                "paragraph has no \"Package\" field".into(),
            ))
        }
    };
    // dpkg reads a record without Status as `unknown ok not-installed`.
    let status = match stanza.get("status") {
        None => "unknown ok not-installed".to_string(),
        Some(field) => {
            let status = folded(field);
            let words: Vec<&str> = status.split(' ').collect();
            let valid = matches!(words.as_slice(), [w, e, s]
                if WANTS.contains(w) && EFLAGS.contains(e) && STATES.contains(s));
            if !valid {
                return Err(bad(
                    field.line,
                    format!("package {name}: invalid Status {status:?} (expected \"<want> <ok|reinstreq> <state>\", e.g. \"install ok installed\")"),
                ));
            }
            status
        }
    };
    let state = status.rsplit(' ').next().unwrap_or("");
    let version = stanza.get("version").map(folded).unwrap_or_default();
    // As dpkg: a record with files on disk must say which version they are, except a
    // first unpack interrupted before the version was recorded.
    if version.is_empty() && !matches!(state, "not-installed" | "half-installed") {
        return Err(bad(
            stanza.line,
            format!("package {name} is {state} but has no Version"),
        ));
    }
    let essential = match stanza.get("essential") {
        None => false,
        Some(field) => match folded(field).to_ascii_lowercase().as_str() {
            "yes" => true,
            "no" => false,
            other => {
                return Err(bad(
                    field.line,
                    format!("package {name}: Essential must be yes or no, found {other:?}"),
                ))
            }
        },
    };
    let opt = |field: &str| stanza.get(field).map(folded).filter(|v| !v.is_empty());
    Ok(InstalledPackage {
        name,
        version,
        arch: opt("architecture").unwrap_or_default(),
        status,
        multi_arch: opt("multi-arch"),
        provides: opt("provides"),
        depends: opt("depends"),
        pre_depends: opt("pre-depends"),
        essential,
    })
}

// ---------------------------------------------------------------------------------
// Architectures.

/// True for a name dpkg accepts as an architecture (`arch.c`:
/// `dpkg_arch_name_is_illegal`): an alphanumeric, then alphanumerics and hyphens.
fn is_arch_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A concrete architecture, not `all`/`any` or empty.
fn is_concrete_arch(arch: &str) -> bool {
    is_arch_name(arch) && arch != "all" && arch != "any"
}

/// The native architecture, by the order the module documentation explains.
fn native_arch(
    host: &Host,
    packages: &[InstalledPackage],
    reporter: &dyn Reporter,
) -> Result<String> {
    let (arch, warning) = choose_native_arch(host, packages, dpkg_print_architecture(host));
    if let Some(warning) = warning {
        reporter.warn(&warning);
    }
    arch.ok_or_else(|| Error::NativeArch {
        root: host.root().to_path_buf(),
        message: format!(
            "dpkg is not available here, {} has no installed dpkg package and no installed package names an architecture",
            host.path(DPKG_STATUS).display()
        ),
    })
}

/// The decision behind [`native_arch`], given what this machine's dpkg said (if it
/// could be run): the architecture, and a warning when the sources disagree or it had
/// to be guessed.
fn choose_native_arch(
    host: &Host,
    packages: &[InstalledPackage],
    from_dpkg: Option<String>,
) -> (Option<String>, Option<String>) {
    // The dpkg package whose files are on disk: it is the dpkg that runs on that system.
    let from_db = packages
        .iter()
        .find(|p| {
            p.name == "dpkg" && (p.is_installed() || p.is_broken()) && is_concrete_arch(&p.arch)
        })
        .map(|p| p.arch.clone());
    let (first, second, first_what, second_what) = if host.root() == Path::new("/") {
        (
            from_dpkg,
            from_db,
            "dpkg --print-architecture",
            "the installed dpkg package",
        )
    } else {
        (
            from_db,
            from_dpkg,
            "the dpkg package installed in the root",
            "this machine's dpkg --print-architecture",
        )
    };
    match (first, second) {
        (Some(a), Some(b)) if a != b => {
            let warning = format!(
                "native architecture: {first_what} says {a} but {second_what} says {b}; using {a}"
            );
            return (Some(a), Some(warning));
        }
        (Some(a), _) | (None, Some(a)) => return (Some(a), None),
        (None, None) => {}
    }
    // Last resort: what most installed packages are built for (ties: first by name).
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in packages.iter().filter(|p| p.is_installed()) {
        if is_concrete_arch(&p.arch) {
            *counts.entry(p.arch.as_str()).or_default() += 1;
        }
    }
    let best = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(arch, _)| arch.to_string());
    let warning = best.as_ref().map(|arch| {
        format!(
            "native architecture: no dpkg to ask and no dpkg package in {}; guessed {arch} from the installed packages",
            host.path(DPKG_STATUS).display()
        )
    });
    (best, warning)
}

/// What this machine's dpkg reports as native; `None` if dpkg cannot be run.
fn dpkg_print_architecture(host: &Host) -> Option<String> {
    let mut cmd = Command::new("dpkg");
    if host.root() != Path::new("/") {
        cmd.arg(format!("--root={}", host.root().display()));
    }
    cmd.arg("--print-architecture");
    match cmd.output() {
        Ok(out) if out.status.success() => {
            let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if is_concrete_arch(&arch) {
                Some(arch)
            } else {
                tracing::debug!("dpkg --print-architecture printed {arch:?}; ignored");
                None
            }
        }
        Ok(out) => {
            tracing::debug!(
                "dpkg --print-architecture failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            tracing::debug!("cannot run dpkg: {e}");
            None
        }
    }
}

/// `/var/lib/dpkg/arch` minus the native architecture, in file order, as
/// `dpkg --print-foreign-architectures` prints it. A missing file means none.
fn foreign_archs(host: &Host, native: &str) -> Result<Vec<String>> {
    let path = host.path(DPKG_ARCH);
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        // dpkg marks illegal names and all/any as non-foreign and never prints them.
        if line != native && is_concrete_arch(line) && !out.iter().any(|a| a == line) {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// os-release and hostname.

/// Read a small host file; `None` if it does not exist.
fn read_optional(host: &Host, absolute: &str) -> Result<Option<(PathBuf, String)>> {
    // An image's absolute link (`/etc/os-release -> /usr/lib/os-release`) must not
    // lead to this machine's file.
    let path = host.path_follow(absolute);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some((path, String::from_utf8_lossy(&b).into_owned()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The OS from `/etc/os-release`, else `/usr/lib/os-release` (os-release(5)).
fn read_os_release(host: &Host) -> Result<OsRelease> {
    for candidate in OS_RELEASE {
        if let Some((_, text)) = read_optional(host, candidate)? {
            return Ok(parse_os_release(&text));
        }
    }
    Err(Error::OsRelease {
        path: host.path(OS_RELEASE[0]),
        message: format!(
            "not found, and neither is {}",
            host.path(OS_RELEASE[1]).display()
        ),
    })
}

/// Parse os-release's shell-style `KEY=value` lines (values optionally quoted).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        vars.insert(key.trim(), shell_unquote(value));
    }
    let mut take = |key: &str| vars.remove(key).filter(|v| !v.is_empty());
    OsRelease {
        id: take("ID").unwrap_or_else(|| "linux".to_string()),
        version_id: take("VERSION_ID"),
        version_codename: take("VERSION_CODENAME").or_else(|| take("UBUNTU_CODENAME")),
        pretty_name: take("PRETTY_NAME"),
    }
}

/// One shell word: `"..."` (with `\"`, `\\`, `\$`, `` \` `` escapes), `'...'` or bare
/// (with `\x` escapes), ending at unquoted whitespace.
fn shell_unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '$' | '`')) => {
                                out.push(n);
                                chars.next();
                            }
                            _ => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '\\' => out.extend(chars.next()),
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    out
}

/// The first name in `/etc/hostname` (comments and blank lines skipped), if any.
fn read_hostname(host: &Host) -> Result<Option<String>> {
    let Some((_, text)) = read_optional(host, HOSTNAME)? else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bundle::Timestamp;

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);
    impl Reporter for Recorder {
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    fn root_with(status: &str) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path()).with_now(Timestamp(1_700_000_000));
        std::fs::create_dir_all(host.path("/var/lib/dpkg/updates")).unwrap();
        std::fs::create_dir_all(host.path("/etc")).unwrap();
        std::fs::write(host.path(DPKG_STATUS), status).unwrap();
        std::fs::write(
            host.path("/etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .unwrap();
        (dir, host)
    }

    const STATUS: &str = "\
Package: dpkg
Essential: yes
Status: install ok installed
Priority: required
Architecture: arm64
Multi-Arch: foreign
Version: 1.21.22
Pre-Depends: libc6 (>= 2.34),
 zlib1g (>= 1:1.1.4)
Description: Debian package management system
 This package provides the low-level infrastructure.
 .
 More text.

package: libfoo1
STATUS: deinstall ok config-files
architecture: arm64
version: 2:1.0-1
Conffiles:
 /etc/foo.conf 0123456789abcdef0123456789abcdef

Package: selected-only
Status: install ok not-installed

Package: halfway
Status: install ok half-configured
Architecture: all
Version: 3
Provides: half (= 3), other";

    #[test]
    fn status_file_is_parsed_like_dpkg_does() {
        let (_dir, host) = root_with(STATUS);
        let recorder = Recorder::default();
        let inv = take_inventory(&host, &recorder).unwrap();
        let names: Vec<_> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dpkg", "halfway", "libfoo1"]);
        let dpkg = &inv.packages[0];
        assert!(dpkg.essential);
        assert_eq!(
            dpkg.pre_depends.as_deref(),
            Some("libc6 (>= 2.34), zlib1g (>= 1:1.1.4)")
        );
        assert_eq!(dpkg.multi_arch.as_deref(), Some("foreign"));
        assert_eq!(inv.packages[1].status, "install ok half-configured");
        assert_eq!(
            inv.packages[1].provides.as_deref(),
            Some("half (= 3), other")
        );
        assert_eq!(inv.packages[2].version, "2:1.0-1");
        assert_eq!(inv.packages[2].status, "deinstall ok config-files");
        assert_eq!(inv.installed().count(), 1);
        assert_eq!(inv.broken().count(), 1);
        // The root's own dpkg package decides, even if this machine's dpkg is amd64.
        assert_eq!(inv.arch, "arm64");
        assert_eq!(inv.os.id, "debian");
        assert_eq!(inv.os.version_id.as_deref(), Some("12"));
        assert_eq!(inv.created, Timestamp(1_700_000_000));
        assert_eq!(inv.hostname, None);
    }

    #[test]
    fn malformed_paragraphs_name_file_and_line() {
        let cases = [
            (
                "Package: a\nStatus: install ok installed\nVersion: 1\nno colon here\n",
                4,
                "expected \"Field: value\"",
            ),
            (" starts with a continuation\n", 1, "continuation line"),
            (
                "Package: a\nVersion: 1\nStatus: install ok installed\nversion: 2\n",
                4,
                "duplicate field",
            ),
            (
                "Status: install ok installed\nVersion: 1\n\n",
                1,
                "no \"Package\" field",
            ),
            (
                "Package: a\nVersion: 1\nStatus: install ok sideways\n",
                3,
                "invalid Status",
            ),
            (
                "Package: a\nStatus: install ok installed\n",
                1,
                "has no Version",
            ),
            (
                "Package: a\nVersion: 1\nStatus: install ok installed\nEssential: maybe\n",
                4,
                "Essential",
            ),
        ];
        for (text, line, needle) in cases {
            let (_dir, host) = root_with(text);
            let err = take_inventory(&host, &Recorder::default())
                .unwrap_err()
                .to_string();
            let path = host.path(DPKG_STATUS);
            assert!(
                err.starts_with(&format!("{}:{line}: ", path.display())),
                "{text:?}: {err}"
            );
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(err.contains("help:"), "{err}");
        }
    }

    #[test]
    fn missing_status_names_the_path() {
        let (_dir, host) = root_with("");
        std::fs::remove_file(host.path(DPKG_STATUS)).unwrap();
        let err = take_inventory(&host, &Recorder::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&host.path(DPKG_STATUS).display().to_string()),
            "{text}"
        );
        assert!(
            text.contains("help: is this a Debian/Ubuntu system?"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn crlf_blank_lines_with_spaces_and_no_final_newline_are_tolerated() {
        let text = "\n\nPackage: a\r\nStatus: install ok installed\r\nVersion: 1\r\nArchitecture: arm64\r\n \t \nPackage: b\nStatus: install ok installed\nVersion: 2\nArchitecture: arm64";
        let (_dir, host) = root_with(text);
        let inv = take_inventory(&host, &Recorder::default()).unwrap();
        let got: Vec<_> = inv
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(got, [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn journal_entries_are_applied_in_order_and_warned_about() {
        let (_dir, host) = root_with(STATUS);
        let updates = host.path(DPKG_UPDATES);
        // 0002 after 0001, however the directory lists them; tmp.i is not an entry.
        std::fs::write(
            updates.join("0002"),
            "Package: halfway\nStatus: install ok installed\nArchitecture: all\nVersion: 3\n",
        )
        .unwrap();
        std::fs::write(
            updates.join("0001"),
            "Package: halfway\nStatus: install ok unpacked\nArchitecture: all\nVersion: 3\n",
        )
        .unwrap();
        std::fs::write(
            updates.join("0003"),
            "Package: libfoo1\nStatus: purge ok not-installed\nArchitecture: arm64\n",
        )
        .unwrap();
        std::fs::write(updates.join("tmp.i"), "garbage without colon").unwrap();
        let recorder = Recorder::default();
        let inv = take_inventory(&host, &recorder).unwrap();
        let got: Vec<_> = inv
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("dpkg", "install ok installed"),
                ("halfway", "install ok installed")
            ]
        );
        let warnings = recorder.0.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("3 journal entries") && w.contains("--configure -a")),
            "{warnings:?}"
        );
    }

    #[test]
    fn foreign_archs_exclude_native_whatever_the_order() {
        let (_dir, host) = root_with(STATUS);
        std::fs::write(host.path(DPKG_ARCH), "amd64\narm64\ni386\n\nall\ni386\n").unwrap();
        let inv = take_inventory(&host, &Recorder::default()).unwrap();
        assert_eq!(inv.arch, "arm64");
        assert_eq!(inv.foreign_archs, ["amd64", "i386"]);
    }

    #[test]
    fn os_release_quoting_and_fallbacks() {
        let os = parse_os_release(
            "# comment\nNAME=\"Ubuntu\"\nVERSION_ID='20.04'\nID=ubuntu\nPRETTY_NAME=\"Ubuntu \\\"Focal\\\" 20.04\"\nUBUNTU_CODENAME=focal\nBAD LINE\n",
        );
        assert_eq!(os.id, "ubuntu");
        assert_eq!(os.version_id.as_deref(), Some("20.04"));
        assert_eq!(os.version_codename.as_deref(), Some("focal"));
        assert_eq!(os.pretty_name.as_deref(), Some("Ubuntu \"Focal\" 20.04"));
        let os = parse_os_release("PRETTY_NAME=Debian\\ sid\nVERSION_CODENAME=\n");
        assert_eq!(os.id, "linux");
        assert_eq!(os.version_codename, None);
        assert_eq!(os.pretty_name.as_deref(), Some("Debian sid"));
    }

    #[test]
    fn os_release_symlinks_stay_inside_the_root() {
        let (_dir, host) = root_with(STATUS);
        std::fs::remove_file(host.path("/etc/os-release")).unwrap();
        std::fs::create_dir_all(host.path("/usr/lib")).unwrap();
        std::fs::write(host.path("/usr/lib/os-release"), "ID=imagedistro\n").unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", host.path("/etc/os-release")).unwrap();
        std::fs::write(host.path(HOSTNAME), "# set by installer\n\n  gw-01  \n").unwrap();
        let inv = take_inventory(&host, &Recorder::default()).unwrap();
        assert_eq!(inv.os.id, "imagedistro");
        assert_eq!(inv.hostname.as_deref(), Some("gw-01"));

        std::fs::remove_file(host.path("/etc/os-release")).unwrap();
        std::fs::remove_file(host.path("/usr/lib/os-release")).unwrap();
        let err = take_inventory(&host, &Recorder::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("os-release"), "{err}");
        assert!(err.contains("help:"), "{err}");
    }

    fn installed(name: &str, arch: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: "1".into(),
            arch: arch.into(),
            status: "install ok installed".into(),
            multi_arch: None,
            provides: None,
            depends: None,
            pre_depends: None,
            essential: false,
        }
    }

    #[test]
    fn native_arch_sources_in_order() {
        let image = Host::new("/srv/image");
        let slash = Host::new("/");
        let with_dpkg = vec![installed("dpkg", "arm64"), installed("libc6", "arm64")];

        // Under --root the image's own dpkg package wins, loudly if this machine differs.
        let (arch, warning) = choose_native_arch(&image, &with_dpkg, Some("amd64".into()));
        assert_eq!(arch.as_deref(), Some("arm64"));
        assert!(warning.unwrap().contains("says arm64 but"));
        // On / the running dpkg is the authority.
        let (arch, warning) = choose_native_arch(&slash, &with_dpkg, Some("amd64".into()));
        assert_eq!(arch.as_deref(), Some("amd64"));
        assert!(warning.is_some());
        // Agreement is silent.
        let (arch, warning) = choose_native_arch(&image, &with_dpkg, Some("arm64".into()));
        assert_eq!((arch.as_deref(), warning), (Some("arm64"), None));
        // No dpkg package in the root: this machine's dpkg.
        let bare = vec![installed("a", "riscv64")];
        let (arch, warning) = choose_native_arch(&image, &bare, Some("amd64".into()));
        assert_eq!((arch.as_deref(), warning), (Some("amd64"), None));
        // A removed dpkg (config files only) says nothing about the binaries on disk.
        let mut removed = installed("dpkg", "s390x");
        removed.status = "deinstall ok config-files".into();
        let (arch, _) = choose_native_arch(&image, &[removed], Some("amd64".into()));
        assert_eq!(arch.as_deref(), Some("amd64"));
    }

    #[test]
    fn native_arch_guessed_from_packages_as_a_last_resort_only() {
        let image = Host::new("/srv/image");
        let pkgs = vec![
            installed("a", "riscv64"),
            installed("b", "riscv64"),
            installed("c", "all"),
            installed("d", "i386"),
            installed("e", "all"),
            installed("f", "all"),
        ];
        let (arch, warning) = choose_native_arch(&image, &pkgs, None);
        assert_eq!(arch.as_deref(), Some("riscv64"));
        assert!(warning.unwrap().contains("guessed riscv64"));
        let (arch, _) = choose_native_arch(&image, &[installed("c", "all")], None);
        assert_eq!(arch, None);
    }
}
