//! The `files` kind of backup item: host files, directories and symlinks copied into a
//! set's `files/` tree with their content, mode, owner, group and mtime, and put back.
//!
//! Symlinks are copied and restored as links; their targets are never followed, so a
//! link pointing outside the backed-up tree is recorded, not chased. Restoring writes
//! each file to a temporary name in its own directory and renames it into place.

use super::FILES_DIR;
use crate::host::Host;
use crate::tools::hex;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// One file, directory or symlink of a set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileItem {
    /// The absolute host path it was taken from (and is restored to).
    pub source: String,
    /// Where the copy lives in the set: `files` followed by `source`.
    pub path_in_set: String,
    /// What it is.
    #[serde(rename = "type")]
    pub file_type: EntryType,
    /// Bytes of content (of the link target for a symlink, 0 for a directory).
    pub size: u64,
    /// sha256 of the content (of the link target for a symlink; none for a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Permission bits including setuid/setgid/sticky, as four octal digits.
    #[serde(with = "octal")]
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// For a symlink: what it points to, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// The kinds of filesystem entry a set holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory (its entries are separate items).
    Dir,
    /// A symbolic link.
    Symlink,
}

mod octal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        u32::from_str_radix(&s, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid mode {s:?}")))
    }
}

pub(super) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// An absolute host path with `.` and repeated `/` removed; `..` and `/` itself refused.
pub(super) fn normalize(path: &str) -> Result<String> {
    let bad = |message: &str| {
        Error::Backup {
        path: PathBuf::from(path),
        message: message.into(),
        help: "give absolute host paths such as /opt/tyk-gateway/tyk.conf (globs: * and ? within a segment)".into(),
    }
    };
    if !path.starts_with('/') {
        return Err(bad("not an absolute path"));
    }
    let mut out = String::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => {
                out.push('/');
                out.push_str(s.to_str().ok_or_else(|| bad("not UTF-8"))?);
            }
            Component::ParentDir => return Err(bad("`..` is not allowed in a backup path")),
            Component::Prefix(_) => return Err(bad("not a Unix path")),
        }
    }
    if out.is_empty() {
        return Err(bad("refusing to back up the whole root"));
    }
    Ok(out)
}

/// Host paths matching `pattern`, sorted; `*` and `?` match within one segment and not
/// a leading dot. Nothing is followed except directories named by the pattern itself.
pub(super) fn expand_glob(host: &Host, pattern: &str) -> Result<Vec<String>> {
    let norm = normalize(pattern)?;
    let mut current = vec![String::new()];
    for seg in norm[1..].split('/') {
        let mut next = Vec::new();
        for base in &current {
            if !is_glob(seg) {
                let candidate = format!("{base}/{seg}");
                if host.path(&candidate).symlink_metadata().is_ok() {
                    next.push(candidate);
                }
                continue;
            }
            let dir = host.path(if base.is_empty() { "/" } else { base });
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    continue
                }
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if let Some(name) = entry.file_name().to_str() {
                    if wildcard(seg.as_bytes(), name.as_bytes()) {
                        next.push(format!("{base}/{name}"));
                    }
                }
            }
        }
        next.sort();
        current = next;
    }
    Ok(current)
}

fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Copy `source` (and, for a directory, everything under it) into the set.
pub(super) fn copy_tree(
    host: &Host,
    set_dir: &Path,
    source: &str,
    seen: &mut BTreeSet<String>,
    created_dirs: &mut Vec<PathBuf>,
    out: &mut Vec<FileItem>,
) -> Result<()> {
    let real = host.path(source);
    let meta = match real.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Backup {
                path: PathBuf::from(source),
                message: format!("not found (looked for {})", real.display()),
                help: "fix the path, or use a glob pattern if the file is optional".into(),
            })
        }
        Err(e) => return Err(Error::io(&real, e)),
    };
    if !seen.insert(source.to_string()) {
        return Ok(());
    }
    let path_in_set = format!("{FILES_DIR}{source}");
    let copy = set_dir.join(&path_in_set);
    make_parents(set_dir, &copy, created_dirs)?;
    let mut item = FileItem {
        source: source.to_string(),
        path_in_set,
        file_type: EntryType::File,
        size: 0,
        sha256: None,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        link_target: None,
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        item.file_type = EntryType::Dir;
        private_dir(&copy).map_err(|e| Error::io(&copy, e))?;
        created_dirs.push(copy);
        out.push(item);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&real).map_err(|e| Error::io(&real, e))? {
            let entry = entry.map_err(|e| Error::io(&real, e))?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| Error::Backup {
                path: entry.path(),
                message: "file name is not UTF-8; backup.json cannot record it".into(),
                help: "rename the file, or back up its directory another way".into(),
            })?;
            names.push(name.to_string());
        }
        names.sort();
        for name in names {
            copy_tree(
                host,
                set_dir,
                &format!("{source}/{name}"),
                seen,
                created_dirs,
                out,
            )?;
        }
        return Ok(());
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(&real).map_err(|e| Error::io(&real, e))?;
        let target = target.to_str().ok_or_else(|| Error::Backup {
            path: PathBuf::from(source),
            message: "symlink target is not UTF-8; backup.json cannot record it".into(),
            help: "back up the link another way".into(),
        })?;
        std::os::unix::fs::symlink(target, &copy).map_err(|e| Error::io(&copy, e))?;
        item.file_type = EntryType::Symlink;
        item.size = target.len() as u64;
        item.sha256 = Some(sha256_hex(target.as_bytes()));
        item.link_target = Some(target.to_string());
    } else if ft.is_file() {
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
            .map_err(|e| Error::io(&real, e))?;
        // Record what was actually read: the open file, not the earlier lstat.
        let meta = input.metadata().map_err(|e| Error::io(&real, e))?;
        item.mode = meta.mode() & 0o7777;
        item.uid = meta.uid();
        item.gid = meta.gid();
        item.mtime = meta.mtime();
        item.mtime_nsec = meta.mtime_nsec() as u32;
        let (size, sha256) = copy_hashing(&mut input, &copy).map_err(|e| Error::io(&copy, e))?;
        item.size = size;
        item.sha256 = Some(sha256);
    } else {
        return Err(Error::Backup {
            path: PathBuf::from(source),
            message: "not a regular file, directory or symlink (device, FIFO or socket)".into(),
            help: "leave it out of the backup paths".into(),
        });
    }
    // The set keeps owners too where it can; backup.json is what restore trusts.
    apply_meta(&copy, &item, false).map_err(|e| Error::io(&copy, e))?;
    out.push(item);
    Ok(())
}

/// Create the set directories between `set_dir` and `path`'s parent, 0700 each.
fn make_parents(set_dir: &Path, path: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let parent = path.parent().expect("a path inside the set has a parent");
    let mut missing = Vec::new();
    for dir in parent.ancestors() {
        if dir == set_dir || dir.is_dir() {
            break;
        }
        missing.push(dir);
    }
    for dir in missing.into_iter().rev() {
        private_dir(dir).map_err(|e| Error::io(dir, e))?;
        created.push(dir.to_path_buf());
    }
    Ok(())
}

fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Copy `input` into a new file at `dst`, synced; returns its size and sha256.
fn copy_hashing(input: &mut File, dst: &Path) -> io::Result<(u64, String)> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    out.sync_all()?;
    Ok((size, hex(&hasher.finalize())))
}

pub(super) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    crate::tools::sha256_of(&mut f)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

pub(super) fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Owner, then mode (chown clears setuid/setgid), then mtime; never follows a symlink.
/// With `strict_owner` false, an EPERM from chown (not running as root) is tolerated.
fn apply_meta(path: &Path, item: &FileItem, strict_owner: bool) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::lchown(c.as_ptr(), item.uid, item.gid) } != 0 {
        let e = io::Error::last_os_error();
        if strict_owner || e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
    }
    if item.file_type != EntryType::Symlink {
        chmod(path, item.mode)?;
    }
    crate::tools::set_times_nofollow(path, None, (item.mtime, i64::from(item.mtime_nsec)))?;
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes of regular files at or under `path`, not following links; 0 if missing.
pub(super) fn tree_size(path: &Path) -> u64 {
    match path.symlink_metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => count_tree(path).map_or(0, |(_, size)| size),
        _ => 0,
    }
}

/// Entries (not following links) and bytes of regular files under `dir`; none if missing.
pub(super) fn count_tree(dir: &Path) -> io::Result<(usize, u64)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut count, mut size) = (0, 0);
    for entry in entries {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        count += 1;
        if meta.is_dir() {
            let (c, s) = count_tree(&entry.path())?;
            count += c;
            size += s;
        } else if meta.is_file() {
            size += meta.len();
        }
    }
    Ok((count, size))
}

/// Check every item, then restore them all (see [`super::restore_files`]).
pub(super) fn restore(host: &Host, set_dir: &Path, items: &[&FileItem]) -> Result<Vec<PathBuf>> {
    // 1. Check the set against backup.json and the host for conflicts; write nothing.
    for item in items {
        check_item(host, set_dir, item)?;
    }
    let mut items = items.to_vec();
    items.sort_by(|a, b| a.source.cmp(&b.source));

    // 2. Directories, parents first, so files have somewhere to go.
    for item in items.iter().filter(|i| i.file_type == EntryType::Dir) {
        let dest = host.path(&item.source);
        if !dest.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    // 3. Files and symlinks: a temporary name beside the destination, then rename.
    let mut restored = Vec::new();
    for (n, item) in items.iter().enumerate() {
        if item.file_type == EntryType::Dir {
            continue;
        }
        let dest = host.path(&item.source);
        let parent = dest.parent().expect("a restored path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = parent.join(format!(".ferry-restore.{}.{n}", std::process::id()));
        let result = put_in_place(set_dir, item, &tmp, &dest);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| Error::io(&dest, e))?;
        restored.push(PathBuf::from(&item.source));
    }
    // 4. Directory metadata last, deepest first: writing their entries changed mtimes.
    for item in items.iter().rev().filter(|i| i.file_type == EntryType::Dir) {
        let dest = host.path(&item.source);
        apply_meta(&dest, item, true).map_err(|e| Error::io(&dest, e))?;
        restored.push(PathBuf::from(&item.source));
    }
    restored.sort();
    Ok(restored)
}

fn put_in_place(set_dir: &Path, item: &FileItem, tmp: &Path, dest: &Path) -> io::Result<()> {
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if item.file_type == EntryType::Symlink {
        let target = item.link_target.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(target, tmp)?;
    } else {
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(set_dir.join(&item.path_in_set))?;
        copy_hashing(&mut input, tmp)?;
    }
    apply_meta(tmp, item, true)?;
    std::fs::rename(tmp, dest)?;
    sync_dir(dest.parent().expect("a restored path has a parent"))
}

fn check_item(host: &Host, set_dir: &Path, item: &FileItem) -> Result<()> {
    let fail = |message: String| {
        Error::Backup {
        path: PathBuf::from(&item.source),
        message,
        help: format!(
            "nothing was restored; the backup set {} was changed or damaged after it was made, restore from another set",
            set_dir.display()
        ),
    }
    };
    // The destination and the copy both derive from `source`; refuse anything else so a
    // doctored backup.json cannot point outside the set or the root.
    if normalize(&item.source).ok().as_deref() != Some(item.source.as_str())
        || item.path_in_set != format!("{FILES_DIR}{}", item.source)
    {
        return Err(fail(format!(
            "backup.json item has an unsafe path (source {:?}, path_in_set {:?})",
            item.source, item.path_in_set
        )));
    }
    let copy = set_dir.join(&item.path_in_set);
    let meta = copy
        .symlink_metadata()
        .map_err(|e| fail(format!("the copy {} is unreadable: {e}", copy.display())))?;
    let expected = item.sha256.as_deref().unwrap_or_default();
    match item.file_type {
        EntryType::Dir if !meta.is_dir() => {
            return Err(fail(format!("{} is not a directory", copy.display())))
        }
        EntryType::Dir => {}
        EntryType::File => {
            if !meta.is_file() {
                return Err(fail(format!("{} is not a regular file", copy.display())));
            }
            let (size, sha256) = hash_file(&copy).map_err(|e| Error::io(&copy, e))?;
            if sha256 != expected || size != item.size {
                return Err(fail(format!(
                    "checksum mismatch for {}: expected sha256 {expected} ({} bytes), got {sha256} ({size} bytes)",
                    item.path_in_set, item.size
                )));
            }
        }
        EntryType::Symlink => {
            let target = std::fs::read_link(&copy)
                .map_err(|e| fail(format!("{} is not a symlink: {e}", copy.display())))?;
            let target = target.as_os_str().as_bytes();
            let got = sha256_hex(target);
            if got != expected || item.link_target.as_deref().map(str::as_bytes) != Some(target) {
                return Err(fail(format!(
                    "checksum mismatch for symlink {}: expected sha256 {expected}, got {got}",
                    item.path_in_set
                )));
            }
        }
    }
    let dest = host.path(&item.source);
    if let Ok(now) = dest.symlink_metadata() {
        let conflict = match item.file_type {
            EntryType::Dir => !now.is_dir(),
            _ => now.is_dir(),
        };
        if conflict {
            return Err(Error::Backup {
                path: dest,
                message: format!(
                    "is now a {}, the backup holds a {:?}",
                    if now.is_dir() {
                        "directory"
                    } else {
                        "non-directory"
                    },
                    item.file_type
                )
                .to_lowercase(),
                help: "move it aside and restore again; nothing was restored".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_within_a_segment() {
        assert!(wildcard(b"*.json", b"api.json"));
        assert!(wildcard(b"a?c*", b"abcdef"));
        assert!(wildcard(b"*", b"x"));
        assert!(!wildcard(b"*.json", b"api.json.bak"));
        assert!(!wildcard(b"*", b".hidden"));
        assert!(wildcard(b".*", b".hidden"));
    }

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("/opt//tyk/./a.conf").unwrap(), "/opt/tyk/a.conf");
        for bad in ["opt/a", "/opt/../etc/shadow", "/", ""] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_four_octal_digits() {
        #[derive(Serialize, Deserialize)]
        struct M(#[serde(with = "octal")] u32);
        assert_eq!(serde_json::to_string(&M(0o4755)).unwrap(), "\"4755\"");
        assert_eq!(serde_json::to_string(&M(0o600)).unwrap(), "\"0600\"");
        assert_eq!(serde_json::from_str::<M>("\"0640\"").unwrap().0, 0o640);
        assert!(serde_json::from_str::<M>("\"17777\"").is_err());
    }
}
