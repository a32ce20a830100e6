//! The deterministic bundle writer.
//!
//! Entries are written in manifest order with GNU headers, uid/gid 0, fixed modes and
//! mtime = `created`, so the same inputs give byte-identical bundles. Payload files are
//! streamed (never read whole) and re-hashed while they are written: a file that changed
//! since the manifest was made aborts the write. Output goes to `*.partial` files that
//! are renamed into place only when everything is on disk.

use crate::manifest::{Manifest, MANIFEST_PATH, SIGNATURES_DIR};
use crate::{Error, Reporter, Result};
use ferry_keys::Signature;
use flate2::write::GzEncoder;
use flate2::Compression as Level;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// How the tar stream is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip at a fast level: payloads (`.deb`s, image layers) are already compressed.
    Gzip,
    /// A plain tar.
    None,
}

impl Compression {
    /// File name suffix for this compression.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".ferry.tar.gz",
            Compression::None => ".ferry.tar",
        }
    }
}

/// Options for [`write_bundle`].
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// gzip or none.
    pub compression: Compression,
    /// Cut the output into parts of this many bytes (`.000`, `.001`, ...).
    pub split: Option<u64>,
}

/// Everything that goes into a bundle.
pub struct BundleContents<'a> {
    /// The exact manifest bytes the signatures cover.
    pub manifest_json: &'a [u8],
    /// Signatures over `manifest_json`, one per key.
    pub signatures: &'a [Signature],
    /// Where to read each `manifest.files[i]` from, in the same order.
    pub sources: &'a [PathBuf],
}

/// Write a bundle into `out_dir`; returns the files written (one, or the parts).
pub fn write_bundle(
    out_dir: &Path,
    contents: &BundleContents<'_>,
    options: WriteOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<PathBuf>> {
    let manifest = Manifest::parse(contents.manifest_json)?;
    if contents.sources.len() != manifest.files.len() {
        return Err(Error::Usage(format!(
            "{} payload sources for {} manifest files",
            contents.sources.len(),
            manifest.files.len()
        )));
    }
    if options.split == Some(0) {
        return Err(Error::Usage("--split must be larger than 0".into()));
    }
    let mut signatures: Vec<&Signature> = contents.signatures.iter().collect();
    signatures.sort_by_key(|s| s.key_id());
    for pair in signatures.windows(2) {
        if pair[0].key_id() == pair[1].key_id() {
            return Err(Error::Usage(format!(
                "two signatures by key {}; a bundle carries one per key",
                pair[0].key_id()
            )));
        }
    }
    let final_path = out_dir.join(format!("{}{}", manifest.name, options.compression.suffix()));
    let mut out = SplitWriter::new(final_path.clone(), options.split);
    let result = (|| -> Result<()> {
        let sink: Box<dyn Write> = match options.compression {
            Compression::Gzip => Box::new(GzEncoder::new(&mut out, Level::new(1))),
            Compression::None => Box::new(&mut out),
        };
        let mut tar = tar::Builder::new(sink);
        let mtime = manifest.created.unix();
        append(
            &mut tar,
            MANIFEST_PATH,
            0o644,
            mtime,
            contents.manifest_json,
        )?;
        for sig in &signatures {
            let text = sig.to_file_string();
            let path = format!("{SIGNATURES_DIR}{}.minisig", sig.key_id());
            append(&mut tar, &path, 0o644, mtime, text.as_bytes())?;
        }
        let total = manifest.payload_size();
        let mut done = 0u64;
        for (file, source) in manifest.files.iter().zip(contents.sources) {
            let handle = File::open(source).map_err(|e| Error::io(source, e))?;
            let len = handle.metadata().map_err(|e| Error::io(source, e))?.len();
            if len != file.size {
                return Err(changed(source, &file.path));
            }
            let mut reader = HashingReader {
                inner: handle.take(file.size),
                hasher: Sha256::new(),
                read: 0,
                progress: &mut |n| {
                    done += n;
                    reporter.progress("writing", done, total);
                },
            };
            let mut header = header(file.size, file.mode_bits(), mtime);
            tar.append_data(&mut header, &file.path, &mut reader)
                .map_err(|e| Error::io(source, e))?;
            if reader.read != file.size || hex::encode(reader.hasher.finalize()) != file.sha256 {
                return Err(changed(source, &file.path));
            }
        }
        let sink = tar.into_inner().map_err(|e| Error::io(&final_path, e))?;
        drop(sink);
        Ok(())
    })();
    // The gzip encoder finished when it was dropped; flush errors surface here.
    let result = result.and_then(|()| out.finish());
    match result {
        Ok(paths) => Ok(paths),
        Err(e) => {
            out.abort();
            Err(e)
        }
    }
}

fn changed(source: &Path, entry: &str) -> Error {
    Error::Usage(format!(
        "{} changed while the bundle was being written (entry {entry})\nhelp: make sure nothing modifies the inputs during a build, then build again",
        source.display()
    ))
}

fn header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    mtime: u64,
    data: &[u8],
) -> Result<()> {
    let mut h = header(data.len() as u64, mode, mtime);
    tar.append_data(&mut h, path, data)
        .map_err(|e| Error::io(path, e))
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Writes one file, or consecutive parts of at most `split` bytes, each to a `.partial`
/// name first. `finish` syncs and renames them into place, removing stale parts of an
/// earlier build with the same name; `abort` removes what was written.
struct SplitWriter {
    final_path: PathBuf,
    split: Option<u64>,
    parts: Vec<PathBuf>,
    current: Option<BufWriter<File>>,
    in_part: u64,
    error: Option<Error>,
}

impl SplitWriter {
    fn new(final_path: PathBuf, split: Option<u64>) -> SplitWriter {
        SplitWriter {
            final_path,
            split,
            parts: vec![],
            current: None,
            in_part: 0,
            error: None,
        }
    }

    fn part_name(&self, index: usize) -> PathBuf {
        match self.split {
            None => self.final_path.clone(),
            Some(_) => {
                let mut s = self.final_path.as_os_str().to_owned();
                s.push(format!(".{index:03}"));
                PathBuf::from(s)
            }
        }
    }

    fn partial(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(".partial");
        PathBuf::from(s)
    }

    fn open_next(&mut self) -> io::Result<()> {
        self.close_current()?;
        let index = self.parts.len();
        if index >= 1000 {
            return Err(io::Error::other(
                "more than 1000 parts; choose a larger --split size",
            ));
        }
        let path = self.part_name(index);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(Self::partial(&path))?;
        self.parts.push(path);
        self.current = Some(BufWriter::with_capacity(1 << 20, file));
        self.in_part = 0;
        Ok(())
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some(w) = self.current.take() {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<PathBuf>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.parts.is_empty() {
            self.open_next()
                .map_err(|e| Error::io(&self.final_path, e))?;
        }
        self.close_current()
            .map_err(|e| Error::io(&self.final_path, e))?;
        // Remove whatever an earlier build of the same name left: the whole file and any
        // parts, so a reader never stitches old parts onto new ones.
        let stale = std::iter::once(self.final_path.clone()).chain((0..1000).map(|i| {
            let mut s = self.final_path.as_os_str().to_owned();
            s.push(format!(".{i:03}"));
            PathBuf::from(s)
        }));
        for path in stale {
            if !self.parts.contains(&path) && path.exists() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        for part in &self.parts {
            std::fs::rename(Self::partial(part), part).map_err(|e| Error::io(part, e))?;
        }
        if let Some(dir) = self.final_path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(std::mem::take(&mut self.parts))
    }

    fn abort(&mut self) {
        self.current = None;
        for part in &self.parts {
            let _ = std::fs::remove_file(Self::partial(part));
        }
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let need_new = match (self.split, &self.current) {
            (_, None) => true,
            (Some(limit), Some(_)) => self.in_part >= limit,
            (None, Some(_)) => false,
        };
        if need_new {
            self.open_next()?;
        }
        let room = match self.split {
            Some(limit) => usize::try_from(limit - self.in_part).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let n = buf.len().min(room);
        let w = self.current.as_mut().expect("a part is open");
        let n = w.write(&buf[..n])?;
        self.in_part += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileEntry, Target, FORMAT};
    use crate::{read_bundle, BundleSource, Check, NullReporter, Timestamp, TrustPolicy};
    use ferry_keys::{SecretKey, TrustStore};

    fn entry(path: &str, data: &[u8], mode: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            mode: mode.into(),
        }
    }

    /// Long paths (GNU long-name entries), empty files, executables and a split across
    /// many tiny parts all survive a write and a verifying, extracting read.
    #[test]
    fn long_paths_empty_files_and_tiny_parts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("files/{}/{}.so", "d".repeat(120), "p".repeat(100));
        assert!(long.len() > 200 && long.len() <= 240);
        let payload: Vec<(String, Vec<u8>, &str)> = vec![
            (long, vec![7u8; 5000], "0755"),
            ("files/empty".into(), vec![], "0644"),
        ];
        let mut sources = vec![];
        for (i, (_, data, _)) in payload.iter().enumerate() {
            let p = dir.path().join(format!("src{i}"));
            std::fs::write(&p, data).unwrap();
            sources.push(p);
        }
        let now = Timestamp::now().unix();
        let manifest = Manifest {
            format: FORMAT.into(),
            name: "rt".into(),
            channel: "rt".into(),
            sequence: 1,
            created: Timestamp(now),
            expires: Timestamp(now + 3600),
            builder: "test".into(),
            target: Target {
                distro: "debian".into(),
                codename: "bookworm".into(),
                arch: "amd64".into(),
            },
            files: payload.iter().map(|(p, d, m)| entry(p, d, m)).collect(),
            packages: vec![],
            images: vec![],
            steps: vec![],
            backups: vec![],
            notes: vec![],
        };
        let json = manifest.to_json();
        let key = SecretKey::generate();
        let sig = key.sign(&json, &manifest.trusted_comment(), "t").unwrap();
        for compression in [Compression::Gzip, Compression::None] {
            let out = dir.path().join(format!("{compression:?}"));
            std::fs::create_dir(&out).unwrap();
            let parts = write_bundle(
                &out,
                &BundleContents {
                    manifest_json: &json,
                    signatures: std::slice::from_ref(&sig),
                    sources: &sources,
                },
                WriteOptions {
                    compression,
                    split: Some(1000),
                },
                &NullReporter,
            )
            .unwrap();
            assert!(parts.len() > 1, "{parts:?}");
            let trust = TrustStore::from_keys(vec![key.public_key()]);
            let staging = out.join("staging");
            let report = read_bundle(
                &BundleSource::open(&parts[0]).unwrap(),
                Check::Verify(TrustPolicy::new(&trust, 1)),
                Some(&staging),
                &NullReporter,
            )
            .unwrap();
            assert_eq!(report.files, 2);
            for (path, data, mode) in &payload {
                let p = staging.join(path);
                assert_eq!(&std::fs::read(&p).unwrap(), data);
                let bits = std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata(&p).unwrap().permissions(),
                ) & 0o777;
                assert_eq!(format!("0{bits:o}"), *mode);
            }
        }
    }

    #[test]
    fn a_source_that_changed_since_hashing_aborts_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        std::fs::write(&src, b"abc").unwrap();
        let now = Timestamp::now().unix();
        let mut m = Manifest {
            format: FORMAT.into(),
            name: "chg".into(),
            channel: "chg".into(),
            sequence: 1,
            created: Timestamp(now),
            expires: Timestamp(now + 60),
            builder: "test".into(),
            target: Target {
                distro: "debian".into(),
                codename: "bookworm".into(),
                arch: "amd64".into(),
            },
            files: vec![entry("files/a", b"abc", "0644")],
            packages: vec![],
            images: vec![],
            steps: vec![],
            backups: vec![],
            notes: vec![],
        };
        m.files[0].sha256 = hex::encode(Sha256::digest(b"abd"));
        let json = m.to_json();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let err = write_bundle(
            &out,
            &BundleContents {
                manifest_json: &json,
                signatures: &[],
                sources: &[src],
            },
            WriteOptions {
                compression: Compression::Gzip,
                split: None,
            },
            &NullReporter,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("changed while the bundle was being written"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "partial output left behind"
        );
    }
}
