//! Locks: dpkg's own (`fcntl` write locks on `lock-frontend` and `lock`, as dpkg and apt
//! take them) and ferry's (`flock` on `/var/lib/ferry/lock`, one installer at a time).

use crate::host::Host;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// ferry's own lock file.
pub const FERRY_LOCK: &str = "/var/lib/ferry/lock";

/// dpkg's frontend lock, held while ferry drives dpkg (dpkg is then run with
/// `DPKG_FRONTEND_LOCKED=1`, as apt does).
#[derive(Debug)]
pub struct DpkgFrontendLock {
    _file: File,
}

impl DpkgFrontendLock {
    /// Take `lock-frontend` under the host root without waiting. Fails with a preflight
    /// error naming the holder when another package manager has it.
    pub fn acquire(host: &Host) -> Result<DpkgFrontendLock> {
        let path = host.path(crate::plan::DPKG_LOCK_FRONTEND);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut fl = flock(libc::F_WRLCK);
        // SAFETY: the fd is open for the lifetime of `file`; `fl` is a valid flock struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut fl) } != 0 {
            let holder = get_lock(file.as_raw_fd())
                .ok()
                .flatten()
                .and_then(describe_pid);
            return Err(Error::Locked {
                path,
                holder: holder.unwrap_or_else(|| "another process".into()),
                help: "wait for the other package manager (apt, dpkg, unattended-upgrades) to finish, then run again".into(),
            });
        }
        Ok(DpkgFrontendLock { _file: file })
    }
}

/// Whether some process holds the `flock` on `path` (tested without blocking).
pub fn flock_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // SAFETY: the fd is open for the lifetime of `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return false;
    }
    true
}

/// ferry's lock: one installer operation at a time on a host. Released when dropped
/// (or when the process dies).
#[derive(Debug)]
pub struct FerryLock {
    _file: File,
    path: PathBuf,
}

impl FerryLock {
    /// Take `/var/lib/ferry/lock` without waiting.
    pub fn acquire(host: &Host) -> Result<FerryLock> {
        let path = host.path(FERRY_LOCK);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: the fd is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .and_then(describe_pid)
                .unwrap_or_else(|| "another ferry-install".into());
            return Err(Error::Locked {
                path,
                holder,
                help: "another ferry-install is running on this host; wait for it to finish (`ferry-install status` shows what it is doing)".into(),
            });
        }
        // Record who holds it, for the message above.
        let _ = file.set_len(0);
        let _ =
            std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes());
        Ok(FerryLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `Ok(None)` when free; `Ok(Some(who))` when held, `who` as `process N (comm)` if known.
pub fn lock_holder(path: &Path) -> std::io::Result<Option<Option<String>>> {
    use std::os::fd::AsRawFd;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // Without write access, F_GETLK still tells whether someone holds it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let file = std::fs::File::open(path)?;
            return Ok(get_lock(file.as_raw_fd())?.map(describe_pid));
        }
        Err(e) => return Err(e),
    };
    let fd = file.as_raw_fd();
    let mut fl = flock(libc::F_WRLCK);
    // SAFETY: fd is open for the lifetime of `file`; `fl` is a valid flock struct.
    if unsafe { libc::fcntl(fd, libc::F_SETLK, &mut fl) } == 0 {
        let mut un = flock(libc::F_UNLCK);
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLK, &mut un) };
        return Ok(None);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => {
            Ok(Some(get_lock(fd).ok().flatten().and_then(describe_pid)))
        }
        _ => Err(err),
    }
}

fn flock(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value (whole file from 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

/// The pid holding a conflicting lock on `fd`, if any (0 when unknown).
fn get_lock(fd: libc::c_int) -> std::io::Result<Option<libc::pid_t>> {
    let mut fl = flock(libc::F_WRLCK);
    // SAFETY: fd is open; `fl` is a valid flock struct.
    if unsafe { libc::fcntl(fd, libc::F_GETLK, &mut fl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

fn describe_pid(pid: libc::pid_t) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    // Processes live in this machine's /proc, not under --root.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    Some(match comm {
        Some(c) => format!("process {pid} ({})", c.trim()),
        None => format!("process {pid}"),
    })
}
