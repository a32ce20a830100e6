//! `HOST.json`, the `ferry-inventory/1` document: what a target host runs (OS, dpkg
//! architectures, every package dpkg knows) so the connected side can resolve
//! dependencies against it, as apt's offline procedure does with a copy of
//! `/var/lib/dpkg/status`.
//!
//! This module owns the types and their JSON form only. It never reads a host or runs
//! dpkg: `ferry-install inventory` produces the document, `ferry-build --inventory`
//! consumes it.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The format string of an inventory document.
pub const FORMAT: &str = "ferry-inventory/1";

/// dpkg package states (the last word of `Status`) in which a package is neither
/// properly installed nor cleanly absent: dpkg was interrupted or a maintainer script
/// failed, and `dpkg --configure -a` (or a reinstall) is needed.
const BROKEN_STATES: [&str; 5] = [
    "half-installed",
    "half-configured",
    "unpacked",
    "triggers-awaited",
    "triggers-pending",
];

/// Why an inventory document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid inventory: {0}")]
pub struct InventoryError(pub String);

/// A host's package state as `ferry-install inventory` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Always [`FORMAT`].
    pub format: String,
    /// When the inventory was taken.
    pub created: Timestamp,
    /// The host's name (`/etc/hostname`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The operating system, from os-release.
    pub os: OsRelease,
    /// dpkg's native architecture.
    pub arch: String,
    /// Foreign architectures added with `dpkg --add-architecture`.
    #[serde(default)]
    pub foreign_archs: Vec<String>,
    /// Every package dpkg has a record of (installed, half-done or config files only),
    /// sorted by (name, arch).
    #[serde(default)]
    pub packages: Vec<InstalledPackage>,
}

/// The os-release fields the builder needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID`, e.g. `debian` or `ubuntu` (`linux` when the file has none, as os-release(5) says).
    pub id: String,
    /// `VERSION_ID`, e.g. `12` or `20.04` (absent on Debian testing/unstable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (or Ubuntu's `UBUNTU_CODENAME`), e.g. `bookworm` or `focal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    /// `PRETTY_NAME`, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

/// One package instance from the dpkg status database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Full Debian version, epoch included (empty only for a half-installed first unpack).
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// The full dpkg `Status` field: want, error flag and state, e.g. `install ok installed`.
    pub status: String,
    /// `Multi-Arch` (`same`, `foreign`, `allowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_arch: Option<String>,
    /// `Provides`, as dpkg records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provides: Option<String>,
    /// `Depends`, as dpkg records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<String>,
    /// `Pre-Depends`, as dpkg records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_depends: Option<String>,
    /// `Essential: yes`.
    #[serde(default)]
    pub essential: bool,
}

impl Inventory {
    /// Parse and check an inventory document; unknown fields are ignored, packages are
    /// put in (name, arch) order.
    pub fn parse(bytes: &[u8]) -> Result<Inventory, InventoryError> {
        // Peek at the format first so another document (a manifest, a future major
        // version) gets a clear message rather than a complaint about a missing field.
        #[derive(Deserialize)]
        struct FormatOnly {
            format: Option<String>,
        }
        let peek: FormatOnly = serde_json::from_slice(bytes)
            .map_err(|e| InventoryError(format!("not valid JSON: {e}")))?;
        match peek.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(InventoryError(format!(
                    "format is {other:?}; this ferry reads {FORMAT:?}\nhelp: produce it on the target host with `ferry-install inventory --out HOST.json` from the same ferry release"
                )))
            }
            None => {
                return Err(InventoryError(format!(
                    "missing field \"format\" (expected {FORMAT:?})\nhelp: produce it on the target host with `ferry-install inventory --out HOST.json`"
                )))
            }
        }
        let mut inventory: Inventory =
            serde_json::from_slice(bytes).map_err(|e| InventoryError(format!("{e}")))?;
        if inventory.arch.is_empty() {
            return Err(InventoryError("\"arch\" is empty".into()));
        }
        if let Some(p) = inventory.packages.iter().find(|p| p.name.is_empty()) {
            return Err(InventoryError(format!(
                "a package has an empty name (status {:?})",
                p.status
            )));
        }
        inventory.sort();
        Ok(inventory)
    }

    /// Serialize as `ferry-install inventory` writes it (pretty JSON, trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("inventory serializes");
        out.push(b'\n');
        out
    }

    /// Put packages in (name, arch) order.
    pub fn sort(&mut self) {
        self.packages
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    }

    /// The packages dpkg reports as fully installed (`... installed`).
    pub fn installed(&self) -> impl Iterator<Item = &InstalledPackage> {
        self.packages.iter().filter(|p| p.is_installed())
    }

    /// The packages left in a state that needs `dpkg --configure -a` or a reinstall.
    pub fn broken(&self) -> impl Iterator<Item = &InstalledPackage> {
        self.packages.iter().filter(|p| p.is_broken())
    }
}

impl InstalledPackage {
    /// The dpkg state: the last word of `Status` (`installed`, `config-files`, ...).
    pub fn state(&self) -> &str {
        self.status.split_whitespace().last().unwrap_or("")
    }

    /// True when dpkg reports the package as fully installed.
    pub fn is_installed(&self) -> bool {
        self.state() == "installed"
    }

    /// True when the package is half-done (interrupted unpack or configure, failed
    /// maintainer script, triggers outstanding) or flagged `reinstreq`.
    pub fn is_broken(&self) -> bool {
        let mut words = self.status.split_whitespace();
        let _want = words.next();
        let eflag = words.next().unwrap_or("");
        eflag == "reinstreq" || BROKEN_STATES.contains(&self.state())
    }

    /// The name as dpkg prints it unambiguously: `name:arch` for `Multi-Arch: same`
    /// packages (the only ones that can be installed for several architectures), else
    /// `name`.
    pub fn spec(&self) -> String {
        if self.multi_arch.as_deref() == Some("same") && !self.arch.is_empty() {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, arch: &str, status: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: "1.0".into(),
            arch: arch.into(),
            status: status.into(),
            multi_arch: None,
            provides: None,
            depends: None,
            pre_depends: None,
            essential: false,
        }
    }

    fn sample() -> Inventory {
        Inventory {
            format: FORMAT.into(),
            created: Timestamp(1_763_683_200),
            hostname: Some("gw1".into()),
            os: OsRelease {
                id: "ubuntu".into(),
                version_id: Some("20.04".into()),
                version_codename: Some("focal".into()),
                pretty_name: Some("Ubuntu 20.04.6 LTS".into()),
            },
            arch: "amd64".into(),
            foreign_archs: vec!["i386".into()],
            packages: vec![
                InstalledPackage {
                    version: "2:1.0-3".into(),
                    multi_arch: Some("same".into()),
                    depends: Some("libc6 (>= 2.31)".into()),
                    ..pkg("libfoo", "amd64", "install ok installed")
                },
                InstalledPackage {
                    essential: true,
                    pre_depends: Some("libc6 (>= 2.31)".into()),
                    provides: Some("sh".into()),
                    ..pkg("dash", "amd64", "install ok installed")
                },
                pkg("old", "all", "deinstall ok config-files"),
            ],
        }
    }

    #[test]
    fn round_trip_sorts_and_keeps_every_field() {
        let mut inv = sample();
        let parsed = Inventory::parse(&inv.to_json()).unwrap();
        inv.sort();
        assert_eq!(parsed, inv);
        let names: Vec<_> = parsed.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dash", "libfoo", "old"]);
        let text = String::from_utf8(inv.to_json()).unwrap();
        assert!(
            text.contains("\"created\": \"2025-11-21T00:00:00Z\""),
            "{text}"
        );
        assert!(text.contains("\"format\": \"ferry-inventory/1\""), "{text}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn packages_sort_by_name_then_arch() {
        let mut inv = sample();
        inv.packages = vec![
            pkg("libz", "i386", "install ok installed"),
            pkg("libz", "amd64", "install ok installed"),
            pkg("liba", "i386", "install ok installed"),
        ];
        let parsed = Inventory::parse(&inv.to_json()).unwrap();
        let keys: Vec<_> = parsed
            .packages
            .iter()
            .map(|p| format!("{}:{}", p.name, p.arch))
            .collect();
        assert_eq!(keys, ["liba:i386", "libz:amd64", "libz:i386"]);
        let same = InstalledPackage {
            multi_arch: Some("same".into()),
            ..parsed.packages[1].clone()
        };
        assert_eq!(same.spec(), "libz:amd64");
        assert_eq!(parsed.packages[0].spec(), "liba");
    }

    #[test]
    fn unknown_fields_are_ignored_and_optional_ones_default() {
        let json = br#"{
            "format": "ferry-inventory/1", "created": "2026-01-02T03:04:05Z",
            "os": { "id": "debian", "future": 1 }, "arch": "arm64",
            "packages": [ { "name": "a", "version": "1", "arch": "arm64",
                            "status": "install ok installed", "extra": [1, 2] } ],
            "something_new": { "x": true }
        }"#;
        let inv = Inventory::parse(json).unwrap();
        assert_eq!(inv.hostname, None);
        assert_eq!(inv.os.id, "debian");
        assert_eq!(inv.os.version_codename, None);
        assert!(inv.foreign_archs.is_empty());
        assert!(!inv.packages[0].essential);
        assert_eq!(inv.packages[0].depends, None);
    }

    #[test]
    fn wrong_format_is_named() {
        let mut inv = sample();
        inv.format = "ferry/1".into();
        let err = Inventory::parse(&inv.to_json()).unwrap_err().to_string();
        assert!(err.contains("\"ferry/1\""), "{err}");
        assert!(err.contains("ferry-inventory/1"), "{err}");
        assert!(err.contains("help:"), "{err}");

        let err = Inventory::parse(br#"{"arch": "amd64"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field \"format\""), "{err}");
    }

    #[test]
    fn invalid_documents_are_errors() {
        let err = Inventory::parse(b"not json").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = Inventory::parse(br#"{"format": "ferry-inventory/1", "created": "yesterday"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid timestamp"), "{err}");
        let mut inv = sample();
        inv.arch.clear();
        assert!(Inventory::parse(&inv.to_json()).is_err());
    }

    #[test]
    fn installed_and_broken_follow_the_status_field() {
        let cases = [
            ("install ok installed", true, false),
            ("hold ok installed", true, false),
            ("deinstall ok config-files", false, false),
            ("install ok half-configured", false, true),
            ("install ok half-installed", false, true),
            ("install ok unpacked", false, true),
            ("install ok triggers-awaited", false, true),
            ("install ok triggers-pending", false, true),
            ("install reinstreq half-installed", false, true),
            ("install reinstreq installed", true, true),
            ("purge ok not-installed", false, false),
        ];
        for (status, installed, broken) in cases {
            let p = pkg("p", "amd64", status);
            assert_eq!(p.is_installed(), installed, "{status}");
            assert_eq!(p.is_broken(), broken, "{status}");
        }
        let mut inv = sample();
        inv.packages
            .push(pkg("half", "amd64", "install ok half-configured"));
        assert_eq!(inv.installed().count(), 2);
        let broken: Vec<_> = inv.broken().map(|p| p.name.as_str()).collect();
        assert_eq!(broken, ["half"]);
    }
}
