//! The run log, `/var/log/ferry/<run-id>.log`: every step ferry takes, each health
//! attempt, and dpkg's own output, with UTC times.

use crate::host::Host;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// An open run log.
#[derive(Debug)]
pub struct RunLog {
    file: File,
    path: PathBuf,
    host: Host,
}

impl RunLog {
    /// Open (append) the log of run `run_id` under `/var/log/ferry/`.
    pub fn open(host: &Host, run_id: &str) -> Result<RunLog> {
        let dir = host.path(super::journal::LOG_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{run_id}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(RunLog {
            file,
            path,
            host: host.clone(),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line with the time. A log that cannot be written does not stop the
    /// run (the journal is what recovery relies on).
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{} {text}", self.host.now());
        let _ = self.file.sync_data();
    }

    /// Handles for a child's stdout and stderr, both appending to the log.
    pub fn child_stdio(&mut self) -> Result<(Stdio, Stdio)> {
        let _ = self.file.flush();
        let out = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        let err = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok((Stdio::from(out), Stdio::from(err)))
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
