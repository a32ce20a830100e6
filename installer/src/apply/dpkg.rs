//! Running dpkg for a step: one `dpkg -i` call with the step's `.deb`s, dependencies
//! first, under the frontend lock ferry holds (`DPKG_FRONTEND_LOCKED=1`), without
//! prompts (`--force-confold --force-confdef`, `DEBIAN_FRONTEND=noninteractive`), its
//! output appended to the run log.

use super::log::RunLog;
use crate::host::Host;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A dpkg invocation, printable exactly as it runs.
#[derive(Clone, Debug)]
pub struct DpkgCall {
    /// Arguments after `dpkg`.
    pub args: Vec<String>,
}

impl DpkgCall {
    fn base(host: &Host) -> Vec<String> {
        let mut args = Vec::new();
        if host.root() != Path::new("/") {
            args.push(format!("--root={}", host.root().display()));
            args.push(format!(
                "--log={}",
                host.path("/var/log/dpkg.log").display()
            ));
        }
        args
    }

    /// `dpkg -i` of `debs` (real paths), keeping changed configuration files.
    pub fn install(host: &Host, debs: &[PathBuf]) -> DpkgCall {
        let mut args = Self::base(host);
        args.extend(["--force-confold", "--force-confdef", "--install"].map(String::from));
        args.extend(debs.iter().map(|d| d.display().to_string()));
        DpkgCall { args }
    }

    /// `dpkg --purge` of `packages` (packages a rolled-back step had added).
    pub fn purge(host: &Host, packages: &[String]) -> DpkgCall {
        let mut args = Self::base(host);
        args.push("--purge".into());
        args.extend(packages.iter().cloned());
        DpkgCall { args }
    }

    /// The command line as an operator would type it.
    pub fn display(&self) -> String {
        let mut s = String::from("DEBIAN_FRONTEND=noninteractive dpkg");
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    /// Run it, appending its output to the log. The caller holds the frontend lock.
    pub fn run(&self, log: &mut RunLog, what: &str) -> Result<()> {
        log.line(&format!("running: {}", self.display()));
        let (out, err) = log.child_stdio()?;
        let status = Command::new("dpkg")
            .args(&self.args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DPKG_FRONTEND_LOCKED", "1")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::ToolMissing {
                    program: "dpkg".into(),
                    package: "dpkg".into(),
                    purpose: "to install packages".into(),
                },
                _ => Error::io("dpkg", e),
            })?;
        log.line(&format!("dpkg ended with {status}"));
        if status.success() {
            return Ok(());
        }
        Err(Error::Command {
            what: what.to_string(),
            command: self.display(),
            status: status.to_string(),
            detail: log.tail(25),
            help: format!("the full dpkg output is in {}", log.path().display()),
        })
    }
}

/// Quote `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}
