//! Restarting a step's service: `systemctl restart`, `service X restart`, or nothing.

use super::log::RunLog;
use crate::host::Host;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};

/// How services are restarted on this host.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceManager {
    /// `systemctl restart NAME`.
    Systemd,
    /// `service NAME restart`.
    Sysv,
    /// Restart nothing (the packages' own maintainer scripts may restart them).
    None,
}

impl ServiceManager {
    /// The host's: systemd when it is running, else SysV `service` when present;
    /// nothing under `--root` (the image's services are not this machine's).
    pub fn detect(host: &Host) -> ServiceManager {
        if host.root() != Path::new("/") {
            return ServiceManager::None;
        }
        if Path::new("/run/systemd/system").is_dir() {
            return ServiceManager::Systemd;
        }
        let has_service = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("service").is_file()));
        if has_service {
            ServiceManager::Sysv
        } else {
            ServiceManager::None
        }
    }

    /// The restart command, or `None` when nothing is run.
    pub fn restart_command(self, service: &str) -> Option<Vec<String>> {
        match self {
            ServiceManager::Systemd => {
                Some(vec!["systemctl".into(), "restart".into(), service.into()])
            }
            ServiceManager::Sysv => Some(vec!["service".into(), service.into(), "restart".into()]),
            ServiceManager::None => None,
        }
    }

    /// Restart `service`, logging the command and its output.
    pub fn restart(self, service: &str, log: &mut RunLog) -> Result<()> {
        let Some(cmd) = self.restart_command(service) else {
            log.line(&format!("service manager none: not restarting {service}"));
            return Ok(());
        };
        log.line(&format!("running: {}", cmd.join(" ")));
        let (out, err) = log.child_stdio()?;
        let status = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| Error::io(&cmd[0], e))?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Command {
            what: format!("restarting {service}"),
            command: cmd.join(" "),
            status: status.to_string(),
            detail: log.tail(10),
            help: match self {
                ServiceManager::Systemd => format!(
                    "see `journalctl -u {service}` and the run log {}",
                    log.path().display()
                ),
                _ => format!(
                    "see the service's own log and the run log {}",
                    log.path().display()
                ),
            },
        })
    }
}
