//! `ferry-install repo export BUNDLE DIR`: the bundle's `.deb`s as a local flat APT
//! repository, for hosts that prefer `apt-get install` from a `file:` source.
//!
//! The bundle is verified first (every byte, into a staging directory inside `DIR`), so
//! the repository is as trustworthy as the bundle; it is not signed itself, which is why
//! the sources line it prints carries `[trusted=yes]` and should point only at `DIR`.
//! `DIR` gets the `.deb`s, `Packages`, `Packages.gz` and a `Release` with their SHA256.

use crate::config::Config;
use crate::host::Host;
use crate::tools::{describe, find_program, hex, sha256_file, tail};
use crate::verify::{verify_bundle, VerifyRequest};
use crate::{Error, Result};
use ferry_bundle::Reporter;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `repo export` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Exported {
    /// The repository directory.
    pub dir: PathBuf,
    /// The packages, as `name version arch`.
    pub packages: Vec<String>,
    /// The line for `/etc/apt/sources.list.d/`.
    pub sources_line: String,
}

/// Verify `bundle` and write its `.deb`s into `dir` (which must be empty or absent) as a
/// flat repository. Nothing is left in `dir` when verification fails.
pub fn export(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    dir: &Path,
    reporter: &dyn Reporter,
) -> Result<Exported> {
    let fresh = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Usage(format!(
                    "{} is not empty; export into a new or empty directory",
                    dir.display()
                )));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            true
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let dpkg_deb = find_program("dpkg-deb", None).ok_or_else(|| Error::ToolMissing {
        program: "dpkg-deb".into(),
        package: "dpkg".into(),
        purpose: "to read the packages' control fields".into(),
    })?;
    let staging = dir.join(".ferry-staging");
    let result = write_repo(
        host, config, bundle, request, dir, &staging, &dpkg_deb, reporter,
    );
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_err() {
        // Leave the directory as it was found.
        if fresh {
            let _ = std::fs::remove_dir_all(dir);
        } else if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn write_repo(
    host: &Host,
    config: &Config,
    bundle: &Path,
    request: &VerifyRequest,
    dir: &Path,
    staging: &Path,
    dpkg_deb: &Path,
    reporter: &dyn Reporter,
) -> Result<Exported> {
    let report = verify_bundle(host, config, bundle, request, Some(staging), reporter)?;
    let manifest = report
        .verified
        .as_deref()
        .expect("a verifying read returns the verified manifest");
    let mut index = String::new();
    let mut packages = Vec::new();
    for p in &manifest.packages {
        let name = Path::new(&p.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = dir.join(&name);
        std::fs::rename(staging.join(&p.file), &dest).map_err(|e| Error::io(&dest, e))?;
        let out = Command::new(dpkg_deb)
            .arg("--field")
            .arg(&dest)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| Error::io(dpkg_deb, e))?;
        if !out.status.success() {
            return Err(Error::Command {
                what: format!("reading the control fields of {name}"),
                command: format!("dpkg-deb --field {}", dest.display()),
                status: describe(out.status),
                detail: tail(&String::from_utf8_lossy(&out.stderr), 10),
                help: "the bundle verified, so the file is what was signed; it is not a valid .deb"
                    .into(),
            });
        }
        let control = String::from_utf8_lossy(&out.stdout);
        let (size, sha256) = sha256_file(&dest).map_err(|e| Error::io(&dest, e))?;
        index.push_str(control.trim_end());
        index.push_str(&format!(
            "\nFilename: ./{name}\nSize: {size}\nSHA256: {sha256}\n\n"
        ));
        packages.push(format!("{} {} {}", p.name, p.version, p.arch));
    }
    let write = |name: &str, bytes: &[u8]| -> Result<(usize, String)> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok((bytes.len(), hex(&Sha256::digest(bytes))))
    };
    let plain = write("Packages", index.as_bytes())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(index.as_bytes())
        .and_then(|()| gz.flush())
        .map_err(|e| Error::io(dir.join("Packages.gz"), e))?;
    let gz = gz
        .finish()
        .map_err(|e| Error::io(dir.join("Packages.gz"), e))?;
    let gzipped = write("Packages.gz", &gz)?;
    let release = format!(
        "Origin: ferry\nLabel: {name}\nSuite: {name}\nDate: {date}\nArchitectures: {arch} all\nDescription: the packages of ferry bundle {name}, verified by ferry-install (the repository itself is not signed)\nSHA256:\n {} {} Packages\n {} {} Packages.gz\n",
        plain.1,
        plain.0,
        gzipped.1,
        gzipped.0,
        name = manifest.name,
        date = host.now().rfc2822(),
        arch = manifest.target.arch,
    );
    write("Release", release.as_bytes())?;
    let abs = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    Ok(Exported {
        sources_line: format!("deb [trusted=yes] file:{} ./", abs.display()),
        dir: abs,
        packages,
    })
}
