//! Small helpers for running the host's programs: finding them on `PATH`, describing how
//! they ended, and keeping the end of their output for an error message.

use crate::secret::Secret;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// `PATH` when the process has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first executable regular file called `name` on `search_path` (or `PATH`).
pub(crate) fn find_program(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let path = match search_path {
        Some(p) => p.to_os_string(),
        None => std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    };
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an executable bit (following links).
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `exit status N`, or the signal that ended it.
pub(crate) fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }
}

/// The last `lines` non-empty lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A command line as an operator would read it (arguments joined by spaces).
pub(crate) fn display_command(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with every occurrence of the secret replaced by `***`.
pub(crate) fn redact(text: &str, secret: Option<&Secret>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s.expose(), "***"),
        _ => text.to_string(),
    }
}

/// Set `path`'s access time (`None`: leave it) and modification time, as (seconds,
/// nanoseconds), without following a symlink.
pub(crate) fn set_times_nofollow(
    path: &Path,
    atime: Option<(i64, i64)>,
    mtime: (i64, i64),
) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
    })?;
    let spec = |(sec, nsec): (i64, i64)| libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [
        atime.map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            spec,
        ),
        spec(mtime),
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two valid timespecs, as
    // utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes read from `reader` and their sha256 (hex), streamed.
pub(crate) fn sha256_of(mut reader: impl std::io::Read) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut reader, &mut hasher)?;
    Ok((size, hex(&hasher.finalize())))
}

/// Size and sha256 (hex) of the file at `path`, streamed.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    sha256_of(std::fs::File::open(path)?)
}
