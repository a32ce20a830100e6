//! The host the installer acts on: a filesystem root (`/` or `--root DIR`) and the
//! clock. Every host path goes through [`Host::path`], so the installer's logic runs
//! unchanged against a throwaway root in tests.

use ferry_bundle::Timestamp;
use std::path::{Path, PathBuf};

/// Default configuration file.
pub const CONFIG_PATH: &str = "/etc/ferry/installer.toml";
/// Default trust store.
pub const TRUST_DIR: &str = "/etc/ferry/trusted";
/// Per-channel replay and freshness state.
pub const STATE_PATH: &str = "/var/lib/ferry/state.json";

/// A host rooted at `root`.
#[derive(Clone, Debug)]
pub struct Host {
    root: PathBuf,
    now: Option<Timestamp>,
}

impl Host {
    /// The host rooted at `root` (`/` for the real system).
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host {
            root: root.into(),
            now: None,
        }
    }

    /// Pin the clock (tests).
    pub fn with_now(mut self, now: Timestamp) -> Host {
        self.now = Some(now);
        self
    }

    /// The filesystem root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Map an absolute host path to the real path under the root.
    ///
    /// Under a `--root` other than `/`, symlinks among the path's *directories* are
    /// resolved inside the root, as a chroot would see them: an absolute link target
    /// starts again at the root and `..` stops there, so an image whose
    /// `/opt/tyk-gateway` links to `/srv/tyk` maps to `ROOT/srv/tyk`, never to this
    /// machine's `/srv/tyk`. The last component is not followed (callers that copy or
    /// replace an entry look at it with `lstat`); [`Host::path_follow`] follows it too.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        self.resolve(absolute.as_ref(), false)
    }

    /// [`Host::path`], also following a symlink in the last component inside the root
    /// (for files that are read, such as `/etc/os-release`).
    pub fn path_follow(&self, absolute: impl AsRef<Path>) -> PathBuf {
        self.resolve(absolute.as_ref(), true)
    }

    fn resolve(&self, p: &Path, follow_last: bool) -> PathBuf {
        let relative = p.strip_prefix("/").unwrap_or(p);
        if self.root == Path::new("/") {
            return self.root.join(relative);
        }
        // Components still to walk, in reverse so the next one is popped off the end.
        let mut todo: Vec<std::ffi::OsString> = relative
            .components()
            .rev()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut done: Vec<std::ffi::OsString> = Vec::new();
        let mut hops = 0;
        while let Some(name) = todo.pop() {
            match name.to_str() {
                Some(".") => continue,
                Some("..") => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let is_last = todo.is_empty();
            let mut candidate = self.root.clone();
            candidate.extend(&done);
            candidate.push(&name);
            if is_last && !follow_last {
                done.push(name);
                break;
            }
            match std::fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                    hops += 1;
                    let Ok(target) = std::fs::read_link(&candidate) else {
                        done.push(name);
                        continue;
                    };
                    if target.is_absolute() {
                        done.clear();
                    }
                    todo.extend(
                        target
                            .components()
                            .filter(|c| !matches!(c, std::path::Component::RootDir))
                            .rev()
                            .map(|c| c.as_os_str().to_os_string()),
                    );
                }
                Ok(_) => done.push(name),
                Err(_) => {
                    // Missing: the rest is taken verbatim (nothing there to follow).
                    done.push(name);
                    while let Some(rest) = todo.pop() {
                        done.push(rest);
                    }
                }
            }
        }
        let mut out = self.root.clone();
        out.extend(&done);
        out
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `dir` (statvfs).
pub fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain old data, filled in by the call below.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path; `st` is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_the_image_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("srv/tyk")).unwrap();
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::os::unix::fs::symlink("/srv/tyk", root.join("opt/tyk-gateway")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("srv/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("srv/tyk/last")).unwrap();
        let host = Host::new(root);
        assert_eq!(
            host.path("/opt/tyk-gateway/tyk.conf"),
            root.join("srv/tyk/tyk.conf")
        );
        // `..` stops at the root.
        assert_eq!(host.path("/srv/up/etc/x"), root.join("etc/x"));
        // The last component is only followed on request, and then inside the root.
        assert_eq!(host.path("/srv/tyk/last"), root.join("srv/tyk/last"));
        assert_eq!(host.path_follow("/srv/tyk/last"), root.join("etc/passwd"));
        // Missing parts are kept as they are.
        assert_eq!(host.path("/no/such/file"), root.join("no/such/file"));
        // On `/` nothing changes.
        assert_eq!(Host::new("/").path("/a/b"), PathBuf::from("/a/b"));
    }
}
