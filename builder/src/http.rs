//! The builder's HTTP client: keep-alive connections, proxies from the standard
//! environment variables, retries with exponential backoff on connection errors and 5xx,
//! and downloads that resume with `Range` and are verified while they stream.
//!
//! Downloads go to `<hash>.partial` and are renamed into the content-addressed cache only
//! when size and SHA-256 match; a `.partial` never enters the cache.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Attempts without progress before a download or fetch gives up.
const MAX_ATTEMPTS: u32 = 6;

/// Counters of what the client did (tests and the build summary read them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests that resumed a partial file with `Range`.
    pub resumed: AtomicU64,
    /// Retries after a failure.
    pub retries: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
}

/// A shared, thread-safe HTTP client.
pub struct Http {
    client: reqwest::blocking::Client,
    base_delay: Duration,
    /// What happened so far.
    pub stats: Stats,
}

/// Why one attempt failed, and whether another may succeed.
enum Attempt {
    Retry(String),
    Fatal(Error),
}

impl Http {
    /// A client with ferry's user agent, proxies from the environment and keep-alive.
    pub fn new() -> Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("ferry-build/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| Error::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Http {
            client,
            base_delay: Duration::from_millis(
                std::env::var("FERRY_RETRY_DELAY_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(250),
            ),
            stats: Stats::default(),
        })
    }

    fn backoff(&self, attempt: u32) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.base_delay * 2u32.saturating_pow(attempt.min(6)));
    }

    /// GET a small file into memory. `Ok(None)` when the server says 404/410.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                self.backoff(attempt);
            }
            match self.get_once(url, limit) {
                Ok(v) => return Ok(v),
                Err(Attempt::Retry(why)) => last = why,
                Err(Attempt::Fatal(e)) => return Err(e),
            }
        }
        Err(Error::Download {
            url: url.to_string(),
            message: format!("gave up after {MAX_ATTEMPTS} attempts: {last}"),
        })
    }

    fn get_once(&self, url: &str, limit: u64) -> std::result::Result<Option<Vec<u8>>, Attempt> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| Attempt::Retry(chain(&e)))?;
        let status = resp.status();
        if status == 404 || status == 410 {
            return Ok(None);
        }
        check_status(url, status)?;
        if let Some(len) = resp.content_length() {
            if len > limit {
                return Err(Attempt::Fatal(Error::Download {
                    url: url.into(),
                    message: format!(
                        "{len} bytes is more than the {limit}-byte limit for this file"
                    ),
                }));
            }
        }
        let mut body = Vec::new();
        resp.take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| Attempt::Retry(format!("connection broke while reading: {e}")))?;
        if body.len() as u64 > limit {
            return Err(Attempt::Fatal(Error::Download {
                url: url.into(),
                message: format!("more than the {limit}-byte limit for this file"),
            }));
        }
        self.stats
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(Some(body))
    }

    /// Download `url` into `partial`, resuming what is already there, checking `size` and
    /// `sha256` as it streams. On success the file is complete and verified; on a hash
    /// mismatch it is deleted (once retried from scratch, in case a resumed prefix was
    /// bad). `progress` gets byte counts as they arrive.
    pub fn download(
        &self,
        url: &str,
        partial: &Path,
        size: u64,
        sha256: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let mut failures = 0;
        let mut restarts = 0;
        loop {
            let before = file_len(partial);
            match self.download_once(url, partial, size, progress) {
                Ok(()) => {
                    let digest = hash_file(partial)?;
                    if digest == sha256 {
                        return Ok(());
                    }
                    let _ = std::fs::remove_file(partial);
                    if restarts == 0 {
                        restarts += 1;
                        continue;
                    }
                    return Err(Error::Download {
                        url: url.into(),
                        message: format!(
                            "sha256 mismatch: the signed index says {sha256}, the server sent {digest}\nhelp: the mirror or a proxy serves corrupted or tampered files; nothing was cached"
                        ),
                    });
                }
                Err(Attempt::Fatal(e)) => {
                    let _ = std::fs::remove_file(partial);
                    return Err(e);
                }
                Err(Attempt::Retry(last)) => {
                    // Only attempts that made no progress count toward giving up.
                    if file_len(partial) > before {
                        failures = 0;
                    } else {
                        failures += 1;
                    }
                    if failures >= MAX_ATTEMPTS {
                        return Err(Error::Download {
                            url: url.into(),
                            message: format!(
                                "gave up after {MAX_ATTEMPTS} attempts without progress: {last}\nhelp: the partial download is kept; run the build again to resume it"
                            ),
                        });
                    }
                    self.backoff(failures);
                }
            }
        }
    }

    fn download_once(
        &self,
        url: &str,
        partial: &Path,
        size: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> std::result::Result<(), Attempt> {
        let have = file_len(partial);
        if have > size {
            let _ = std::fs::remove_file(partial);
            return Err(Attempt::Retry(
                "partial file longer than expected; restarting".into(),
            ));
        }
        if have == size && size > 0 {
            return Ok(());
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.client.get(url);
        if have > 0 {
            self.stats.resumed.fetch_add(1, Ordering::Relaxed);
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = req.send().map_err(|e| Attempt::Retry(chain(&e)))?;
        let status = resp.status();
        if status == 404 || status == 410 {
            return Err(Attempt::Fatal(Error::Download {
                url: url.into(),
                message: format!("{status}: the repository no longer serves this file\nhelp: the index or lockfile is out of date; run `ferry-build resolve` again"),
            }));
        }
        check_status(url, status)?;
        let (mut file, start) = if status == 206 && have > 0 {
            let file = OpenOptions::new()
                .append(true)
                .open(partial)
                .map_err(|e| Attempt::Fatal(Error::io(partial, e)))?;
            (file, have)
        } else {
            // The server ignored the range (or there was none): start over.
            let file = File::create(partial).map_err(|e| Attempt::Fatal(Error::io(partial, e)))?;
            (file, 0)
        };
        if start == 0 && have > 0 {
            progress(0);
        }
        let mut got = start;
        let mut buf = vec![0u8; 256 * 1024];
        let mut body = resp;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = file.flush();
                    return Err(Attempt::Retry(format!(
                        "connection broke after {got} of {size} bytes: {e}"
                    )));
                }
            };
            if got + n as u64 > size {
                drop(file);
                let _ = std::fs::remove_file(partial);
                return Err(Attempt::Fatal(Error::Download {
                    url: url.into(),
                    message: format!(
                        "the server sent more than the {size} bytes the signed index lists\nhelp: the mirror serves a different file than its index says; nothing was cached"
                    ),
                }));
            }
            file.write_all(&buf[..n])
                .map_err(|e| Attempt::Fatal(Error::io(partial, e)))?;
            got += n as u64;
            self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            progress(n as u64);
        }
        file.sync_all()
            .map_err(|e| Attempt::Fatal(Error::io(partial, e)))?;
        if got < size {
            return Err(Attempt::Retry(format!(
                "body ended after {got} of {size} bytes"
            )));
        }
        Ok(())
    }
}

fn check_status(url: &str, status: reqwest::StatusCode) -> std::result::Result<(), Attempt> {
    if status.is_success() {
        return Ok(());
    }
    if status.is_server_error() || status == 429 || status == 408 {
        return Err(Attempt::Retry(format!("server answered {status}")));
    }
    Err(Attempt::Fatal(Error::Download {
        url: url.into(),
        message: format!("server answered {status}"),
    }))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, streamed, lower-case hex.
pub fn hash_file(path: &Path) -> Result<String> {
    hash_files(&[path.to_path_buf()]).map(|(hex, _)| hex)
}

/// SHA-256 and total size of files read one after the other (a bundle's parts), streamed.
pub fn hash_files(paths: &[PathBuf]) -> Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in paths {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
    }
    Ok((hex::encode(h.finalize()), size))
}

/// The content-addressed download cache: `<root>/sha256/<hex>`, partials beside it.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Open (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["sha256", "partial"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("ferry");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".cache/ferry")
    }

    /// Where the verified file with this hash lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Where its download in progress lives.
    pub fn partial(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(format!("{sha256}.partial"))
    }

    /// The cached file, if present and its content still has this hash (a corrupted
    /// entry is removed).
    pub fn lookup(&self, sha256: &str, size: u64) -> Result<Option<PathBuf>> {
        let p = self.path(sha256);
        match std::fs::metadata(&p) {
            Ok(m) if m.len() == size && hash_file(&p)? == sha256 => Ok(Some(p)),
            Ok(_) => {
                let _ = std::fs::remove_file(&p);
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// Move a verified partial into the cache.
    pub fn commit(&self, sha256: &str) -> Result<PathBuf> {
        let from = self.partial(sha256);
        let to = self.path(sha256);
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        Ok(to)
    }

    /// Store verified bytes (small files such as indices).
    pub fn store(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf> {
        let partial = self.partial(sha256);
        std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
        self.commit(sha256)
    }
}
