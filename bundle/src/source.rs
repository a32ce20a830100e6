//! Getting bytes out of a bundle file: whole or split into `.000`, `.001`, … parts,
//! gzip-compressed or not (detected by magic bytes, never by name), decompressed on a
//! read-ahead thread so that inflating and hashing use both cores.
//!
//! This module only reads; it never writes anywhere.

use crate::{Error, Result};
use flate2::bufread::GzDecoder;
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver};

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

/// A bundle on disk: one file, or the ordered list of its parts.
#[derive(Clone, Debug)]
pub struct BundleSource {
    display: PathBuf,
    parts: Vec<PathBuf>,
}

impl BundleSource {
    /// Locate a bundle. `path` may be the bundle itself, its first part (`NAME.000`), or
    /// the name of a bundle that only exists as parts.
    pub fn open(path: &Path) -> Result<BundleSource> {
        let s = path.to_string_lossy();
        let base = if let Some(stem) = s.strip_suffix(".000") {
            PathBuf::from(stem)
        } else if path.exists() {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if !meta.is_file() {
                return Err(Error::io(
                    path,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
                ));
            }
            return Ok(BundleSource {
                display: path.to_path_buf(),
                parts: vec![path.to_path_buf()],
            });
        } else if part_path(path, 0).exists() {
            path.to_path_buf()
        } else {
            return Err(Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "no such bundle (nor a .000 first part)",
                ),
            ));
        };
        let mut parts = Vec::new();
        while part_path(&base, parts.len()).is_file() {
            parts.push(part_path(&base, parts.len()));
        }
        if parts.is_empty() {
            return Err(Error::io(
                part_path(&base, 0),
                io::Error::new(io::ErrorKind::NotFound, "first part not found"),
            ));
        }
        // A gap means a part was lost on the way: say which one.
        if let Some(later) = find_later_part(&base, parts.len()) {
            return Err(Error::format(
                part_path(&base, parts.len()).display().to_string(),
                format!(
                    "split part is missing but {} exists\nhelp: copy every part of the bundle from the media",
                    later.display()
                ),
            ));
        }
        // Every part but the last was cut at the same size.
        let sizes: Vec<u64> = parts
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|e| Error::io(p, e))
            })
            .collect::<Result<_>>()?;
        if let Some(first) = sizes.first() {
            for (i, size) in sizes.iter().enumerate().take(sizes.len() - 1) {
                if size != first {
                    return Err(Error::format(
                        parts[i].display().to_string(),
                        format!(
                            "split part is {size} bytes but the first part is {first}; every part except the last must have the same size\nhelp: the part is truncated or comes from another bundle; copy it again"
                        ),
                    ));
                }
            }
        }
        Ok(BundleSource {
            display: base,
            parts,
        })
    }

    /// The path to show in messages.
    pub fn display_path(&self) -> &Path {
        &self.display
    }

    /// The files read, in order.
    pub fn parts(&self) -> &[PathBuf] {
        &self.parts
    }

    /// Total size on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.parts
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Start reading the decompressed tar stream on a read-ahead thread.
    pub(crate) fn tar_stream(&self) -> Result<TarStream> {
        let mut raw = BufReader::with_capacity(CHUNK, PartsReader::new(self.parts.clone())?);
        let head = raw.fill_buf().map_err(|e| Error::io(&self.display, e))?;
        let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let worker = std::thread::Builder::new()
            .name("ferry-read-ahead".into())
            .spawn(move || {
                let result = if gzip {
                    let mut decoder = GzDecoder::new(raw);
                    pump(&mut decoder, &tx).and_then(|()| {
                        // One gzip member and nothing after it.
                        let rest = decoder.get_mut().fill_buf()?;
                        if rest.is_empty() {
                            Ok(())
                        } else {
                            Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "trailing garbage after the end of the gzip stream",
                            ))
                        }
                    })
                } else {
                    pump(&mut raw, &tx)
                };
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::io(&self.display, e))?;
        Ok(TarStream {
            rx: Some(rx),
            worker: Some(worker),
            current: Vec::new(),
            pos: 0,
            counters: Counters::default(),
            compressed: gzip,
        })
    }
}

fn part_path(base: &Path, index: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{index:03}"));
    PathBuf::from(s)
}

fn find_later_part(base: &Path, missing: usize) -> Option<PathBuf> {
    (missing + 1..1000)
        .map(|i| part_path(base, i))
        .find(|p| p.exists())
}

/// Move chunks from `src` into the channel until EOF, error, or the reader hangs up.
fn pump(
    src: &mut dyn Read,
    tx: &std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match src.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        chunk.truncate(filled);
        if tx.send(Ok(chunk)).is_err() {
            return Ok(()); // the reader stopped early (inspect): nothing more to do
        }
        if filled < CHUNK {
            return Ok(());
        }
    }
}

/// Reads a list of files as one stream.
struct PartsReader {
    parts: Vec<PathBuf>,
    index: usize,
    file: File,
}

impl PartsReader {
    fn new(parts: Vec<PathBuf>) -> Result<PartsReader> {
        let file = File::open(&parts[0]).map_err(|e| Error::io(&parts[0], e))?;
        Ok(PartsReader {
            parts,
            index: 0,
            file,
        })
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.file.read(buf).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.parts[self.index].display()),
                )
            })?;
            if n > 0 || buf.is_empty() || self.index + 1 == self.parts.len() {
                return Ok(n);
            }
            self.index += 1;
            self.file = File::open(&self.parts[self.index]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.parts[self.index].display()),
                )
            })?;
        }
    }
}

/// Shared view of how far the tar parser has read, and how far it may read.
#[derive(Clone, Default)]
pub(crate) struct Counters {
    pub pos: Rc<Cell<u64>>,
    pub limit: Rc<Cell<u64>>,
    pub overflowed: Rc<Cell<bool>>,
}

/// The decompressed tar stream, with a hard cap on how many bytes it will yield.
pub(crate) struct TarStream {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    worker: Option<std::thread::JoinHandle<()>>,
    current: Vec<u8>,
    pos: usize,
    pub counters: Counters,
    pub compressed: bool,
}

impl Drop for TarStream {
    /// Hang up, then wait for the read-ahead thread: it stops at its next send, so no
    /// thread outlives the read (a reader that stopped early, like `inspect`, included).
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Read for TarStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            let Some(rx) = self.rx.as_ref() else {
                return Ok(0);
            };
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let pos = self.counters.pos.get();
        let allowed = self.counters.limit.get().saturating_sub(pos);
        if allowed == 0 {
            self.counters.overflowed.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the archive holds more bytes than the manifest accounts for",
            ));
        }
        let n = buf
            .len()
            .min(self.current.len() - self.pos)
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.counters.pos.set(pos + n as u64);
        Ok(n)
    }
}
