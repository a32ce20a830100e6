//! Tyk Go plugins as files: Tyk's versioned file names, a check that a `.so` is built
//! for the target architecture, and plugin bundles (`manifest.json` + files in a zip)
//! rebuilt to carry the plugin compiled for the new gateway beside the current one.
//!
//! The zip is written here (stored entries, CRC-32, no compression) so the builder needs
//! no zip library; it is deterministic: fixed timestamps, entries in manifest order.

use crate::{Error, Result};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest plugin bundle manifest read.
const MAX_MANIFEST: u64 = 1 << 20;

/// A Tyk plugin bundle `manifest.json`. Fields ferry does not know are kept as they are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Files of the bundle, relative to the manifest; the checksum covers them in order.
    #[serde(default)]
    pub file_list: Vec<String>,
    /// Middleware definitions (`pre`, `post`, `driver`, ...), kept as given.
    #[serde(default)]
    pub custom_middleware: serde_json::Value,
    /// Hex MD5 of the bytes of every `file_list` file, concatenated in order.
    #[serde(default)]
    pub checksum: String,
    /// Base64 RSA signature over the same bytes; empty when unsigned.
    #[serde(default)]
    pub signature: String,
    /// Anything else in the manifest.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A plugin bundle rebuilt for a new gateway version.
#[derive(Clone, Debug)]
pub struct RebuiltBundle {
    /// The new `manifest.json`, as stored in the zip.
    pub manifest: BundleManifest,
    /// The zip file's bytes.
    pub zip: Vec<u8>,
    /// `file_list` entries added for the new version.
    pub added: Vec<String>,
    /// Whether the original manifest carried a signature (now dropped).
    pub had_signature: bool,
}

/// The file name Tyk's plugin compiler gives a plugin built for `version` and `arch`:
/// `<name>_v<version>_linux_<arch>.so`. A name that already carries a version suffix
/// (`plugin_v5.2.5_linux_amd64.so`, or the older `plugin_5.2.5_linux_amd64.so`) keeps its
/// base name; a suffix naming another version or architecture is refused, since that
/// plugin was compiled for a different gateway.
pub fn versioned_name(file_name: &str, version: &str, arch: &str) -> Result<String> {
    let stem = file_name.strip_suffix(".so").ok_or_else(|| {
        Error::Usage(format!(
            "{file_name}: a Go plugin is a shared object whose name ends in .so"
        ))
    })?;
    let base = match split_versioned(stem) {
        Some((base, v, a)) => {
            if v != version || a != arch {
                return Err(Error::Usage(format!(
                    "{file_name} is named as a plugin for Tyk {v} on {a}, but the target is {version} on {arch}\nhelp: recompile it with tykio/tyk-plugin-compiler:v{version}{}",
                    if arch == "amd64" { String::new() } else { format!(" and GOARCH={arch}") }
                )));
            }
            base
        }
        None => stem,
    };
    if base.is_empty() {
        return Err(Error::Usage(format!("{file_name}: empty plugin name")));
    }
    let name = format!("{base}_v{version}_linux_{arch}.so");
    if let Err(why) = ferry_bundle::paths::check_path(&format!("files/plugins/{name}")) {
        return Err(Error::Usage(format!(
            "{file_name}: {why}\nhelp: rename the plugin to letters, digits and . _ + ~ -"
        )));
    }
    Ok(name)
}

/// `base_v1.2.3_linux_arch` or `base_1.2.3_linux_arch` → (base, version, arch).
fn split_versioned(stem: &str) -> Option<(&str, &str, &str)> {
    let (rest, arch) = stem.rsplit_once('_')?;
    let rest = rest.strip_suffix("_linux")?;
    let (base, version) = rest.rsplit_once('_')?;
    let version = version.strip_prefix('v').unwrap_or(version);
    if !version.starts_with(|c: char| c.is_ascii_digit()) || !version.contains('.') {
        return None;
    }
    Some((base, version, arch))
}

/// ELF machine number of a dpkg architecture, and whether it is big-endian.
fn elf_machine(arch: &str) -> Option<(u16, bool)> {
    match arch {
        "amd64" => Some((62, false)),
        "arm64" => Some((183, false)),
        "s390x" => Some((22, true)),
        _ => None,
    }
}

/// Check that `bytes` are an ELF shared object for `arch` (Go plugins are built with
/// `-buildmode=plugin`, which makes one); `what` names it in messages.
pub fn check_shared_object(bytes: &[u8], arch: &str, what: &str) -> Result<()> {
    let bad = |why: String| Error::Usage(format!("{what}: {why}"));
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(bad(
            "not an ELF shared object (a compiled Go plugin is one)".into(),
        ));
    }
    let big_endian = bytes[5] == 2;
    let read16 = |at: usize| {
        let b = [bytes[at], bytes[at + 1]];
        if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    if read16(16) != 3 {
        return Err(bad(
            "an ELF file but not a shared object (build it with -buildmode=plugin)".into(),
        ));
    }
    let machine = read16(18);
    if let Some((want, _)) = elf_machine(arch) {
        if machine != want {
            let found = match machine {
                62 => "amd64 (x86-64)".to_string(),
                183 => "arm64 (aarch64)".to_string(),
                22 => "s390x".to_string(),
                m => format!("ELF machine {m}"),
            };
            return Err(bad(format!(
                "built for {found}, but the target is {arch}\nhelp: compile it for {arch}{}",
                if arch == "amd64" {
                    String::new()
                } else {
                    format!(" (with the plugin compiler image, pass -e GOARCH={arch})")
                }
            )));
        }
    }
    Ok(())
}

/// A `file_list` entry must be a plain relative path inside the manifest's directory.
fn check_list_entry(entry: &str, manifest: &Path) -> Result<()> {
    let ok = !entry.is_empty()
        && !entry.starts_with('/')
        && entry
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{}: file_list entry {entry:?} is not a relative path inside the bundle directory",
            manifest.display()
        )))
    }
}

/// Read a plugin bundle's `manifest.json` and build a new bundle for Tyk `version` on
/// `arch`: for every unversioned `.so` in `file_list` (the plugin the current gateway
/// loads), the plugin compiled for the new version is added after it — taken from
/// `new_plugins` (bundle file name → local file) or else from the manifest's directory —
/// so the current gateway keeps loading the old file and the new one finds its own. The
/// checksum is recomputed over the new `file_list`; the signature is dropped (it no
/// longer matches; re-sign with `tyk bundle build -k` if the gateway requires it).
pub fn rebuild(
    manifest_path: &Path,
    version: &str,
    arch: &str,
    new_plugins: &BTreeMap<String, PathBuf>,
) -> Result<RebuiltBundle> {
    let meta = std::fs::metadata(manifest_path).map_err(|e| Error::io(manifest_path, e))?;
    if meta.len() > MAX_MANIFEST {
        return Err(Error::Usage(format!(
            "{}: {} bytes is more than a plugin bundle manifest should be",
            manifest_path.display(),
            meta.len()
        )));
    }
    let text = std::fs::read(manifest_path).map_err(|e| Error::io(manifest_path, e))?;
    let mut manifest: BundleManifest = serde_json::from_slice(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a Tyk plugin bundle manifest: {e}",
            manifest_path.display()
        ))
    })?;
    let dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for entry in &manifest.file_list {
        check_list_entry(entry, manifest_path)?;
    }
    let plugins: Vec<String> = manifest
        .file_list
        .iter()
        .filter(|f| f.ends_with(".so"))
        .cloned()
        .collect();
    if plugins.is_empty() {
        return Err(Error::Usage(format!(
            "{}: file_list names no .so file, so there is no Go plugin to rebuild for Tyk {version}",
            manifest_path.display()
        )));
    }

    // The new file list: each current plugin followed by its build for the new version.
    let mut file_list: Vec<String> = Vec::new();
    let mut added = Vec::new();
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in &manifest.file_list {
        push_unique(&mut file_list, entry);
        sources.insert(entry.clone(), dir.join(entry));
        let name = entry.rsplit('/').next().unwrap_or(entry);
        if !name.ends_with(".so") {
            continue;
        }
        let stem = &name[..name.len() - 3];
        if split_versioned(stem).is_some() {
            continue; // a build for some version: kept as it is
        }
        let new_name = versioned_name(name, version, arch)?;
        let prefix = &entry[..entry.len() - name.len()];
        let new_entry = format!("{prefix}{new_name}");
        let source = match new_plugins.get(&new_name) {
            Some(p) => p.clone(),
            None => {
                let p = dir.join(&new_entry);
                if !p.is_file() {
                    return Err(Error::Usage(format!(
                        "{}: {entry} has no build for Tyk {version} on {arch}: {} does not exist\nhelp: compile it with tykio/tyk-plugin-compiler:v{version} and pass it with --plugin, or put it beside manifest.json as {new_entry}",
                        manifest_path.display(),
                        p.display()
                    )));
                }
                p
            }
        };
        if !manifest.file_list.contains(&new_entry) {
            added.push(new_entry.clone());
        }
        push_unique(&mut file_list, &new_entry);
        sources.insert(new_entry, source);
    }

    // Contents, checked and hashed in file_list order.
    let mut md5 = Md5::new();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in &file_list {
        let path = &sources[entry];
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Usage(format!(
                "{}: file_list entry {entry}: {}: {e}",
                manifest_path.display(),
                path.display()
            ))
        })?;
        let name = entry.rsplit('/').next().unwrap_or(entry);
        if let Some((_, v, _)) = name.strip_suffix(".so").and_then(split_versioned) {
            if v == version {
                check_shared_object(&bytes, arch, &format!("{entry} ({})", path.display()))?;
            }
        }
        md5.update(&bytes);
        entries.push((entry.clone(), bytes));
    }
    let had_signature = !manifest.signature.trim().is_empty();
    manifest.file_list = file_list;
    manifest.checksum = hex::encode(md5.finalize());
    manifest.signature = String::new();
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    json.push(b'\n');
    entries.insert(0, ("manifest.json".into(), json));
    let zip = write_zip(&entries)?;
    Ok(RebuiltBundle {
        manifest,
        zip,
        added,
        had_signature,
    })
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}

/// DOS date of 1980-01-01 (the earliest a zip can say), time 00:00: fixed, so the same
/// inputs give the same zip.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;

/// A zip archive of `entries` (name, bytes), stored without compression, in order.
pub fn write_zip(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    if entries.len() >= 0xFFFF {
        return Err(Error::Usage(format!(
            "{} files are too many for a zip without ZIP64",
            entries.len()
        )));
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        if data.len() >= 0xFFFF_FFFF || name.len() >= 0xFFFF {
            return Err(Error::Usage(format!(
                "{name}: too large for a zip without ZIP64"
            )));
        }
        let crc = crc32fast::hash(data);
        let offset = u32::try_from(out.len()).map_err(|_| {
            Error::Usage("plugin bundle larger than 4 GiB; ZIP64 is not supported".into())
        })?;
        let size = data.len() as u32;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // names are UTF-8
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // no extra field
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory record.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_TIME.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&((0o100644u32) << 16).to_le_bytes()); // regular, 0644
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len())
        .map_err(|_| Error::Usage("plugin bundle larger than 4 GiB".into()))?;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // this disk
    out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_names_follow_the_compiler() {
        let n = |f: &str| versioned_name(f, "5.2.5", "amd64");
        assert_eq!(n("plugin.so").unwrap(), "plugin_v5.2.5_linux_amd64.so");
        assert_eq!(
            n("plugin_v5.2.5_linux_amd64.so").unwrap(),
            "plugin_v5.2.5_linux_amd64.so"
        );
        assert_eq!(
            n("plugin_5.2.5_linux_amd64.so").unwrap(),
            "plugin_v5.2.5_linux_amd64.so"
        );
        assert_eq!(n("my_auth.so").unwrap(), "my_auth_v5.2.5_linux_amd64.so");
        let err = n("plugin_v5.2.4_linux_amd64.so").unwrap_err().to_string();
        assert!(err.contains("5.2.4") && err.contains("recompile"), "{err}");
        assert!(versioned_name("p.so", "5.2.5", "arm64")
            .unwrap()
            .ends_with("_linux_arm64.so"));
        assert!(n("plugin_v5.2.5_linux_arm64.so").is_err());
        assert!(n("plugin.dll").is_err());
        assert!(n("bad name.so").is_err());
    }

    #[test]
    fn elf_machine_is_checked() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16] = 3;
        elf[18] = 62;
        check_shared_object(&elf, "amd64", "p.so").unwrap();
        let err = check_shared_object(&elf, "arm64", "p.so")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amd64") && err.contains("GOARCH=arm64"),
            "{err}"
        );
        elf[16] = 2;
        assert!(check_shared_object(&elf, "amd64", "p.so").is_err());
        assert!(check_shared_object(b"#!/bin/sh\n", "amd64", "p.so").is_err());
    }

    #[test]
    fn zip_layout_is_minimal_and_deterministic() {
        let entries = vec![("a.txt".to_string(), b"hello".to_vec())];
        let zip = write_zip(&entries).unwrap();
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(zip, write_zip(&entries).unwrap());
        // CRC-32 of "hello".
        assert_eq!(&zip[14..18], &0x3610_a686u32.to_le_bytes());
        assert_eq!(&zip[zip.len() - 22..zip.len() - 18], b"PK\x05\x06");
    }
}
