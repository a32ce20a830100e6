//! A real container registry for end-to-end tests — Debian's `docker-registry`
//! (distribution 2.8) on a random port of 127.0.0.1 with filesystem storage in a temp
//! dir, optionally behind htpasswd basic auth — plus [`CorruptingProxy`], an HTTP/1.1
//! proxy that flips one byte in every blob body it forwards, and a [`skopeo`] runner
//! isolated from the user's registry credentials.
//!
//! It owns its temp dir (config, storage, htpasswd file, log) and the registry process,
//! which it kills and reaps at drop. It never touches the machine's own registry
//! (`/etc/docker/registry`, `/var/lib/docker-registry`) and never listens beyond
//! loopback. A missing tool fails the test with the Debian package to install.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{require_tool, Run, TestDir};

/// How long the registry may take to answer `GET /v2/` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a start is retried when another process took the port in between.
const START_ATTEMPTS: u32 = 5;

/// Socket timeouts of the proxy: a stuck peer ends its connection, not the test run.
const PROXY_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest HTTP head (start line and headers) the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;

/// Lock a mutex, ignoring poisoning: a panicking test thread must not hide the log.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `docker-registry`; dropping it kills the process and removes its storage.
pub struct Registry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    dir: TestDir,
}

impl Registry {
    /// Start an open registry (no auth) on a random port of 127.0.0.1.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// Start a registry that requires HTTP basic auth (htpasswd, bcrypt) for `user`.
    /// Distribution 2.8 accepts basic auth over plain HTTP, so no TLS is involved.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> Registry {
        let binary = require_tool("docker-registry", "docker-registry");
        let dir = TestDir::new();
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let auth = match &credentials {
            None => String::new(),
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                std::fs::write(&htpasswd, htpasswd_line(user, password)).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            // The registry must be told its port, so reserve one and release it; another
            // process can take it in between, which shows up as a bind error and a retry.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind 127.0.0.1:0")
                .port();
            let config = dir.write(
                "config.yml",
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {storage}\n  \
                     delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: ferry-test-not-secret\n\
                     {auth}",
                    storage = dir.join("storage").display(),
                ),
            );
            let log_path = dir.join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let ready = if credentials.is_some() { 401 } else { 200 };
            match wait_ready(&mut child, port, ready, &log_path) {
                Ok(()) => {
                    return Registry {
                        child,
                        port,
                        credentials,
                        dir,
                    }
                }
                Err(log) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = log;
                    if !last_log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, as used in image references (`HOST/repo/name:tag`).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The registry's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The user and password it requires, if started with auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Its storage directory (distribution's filesystem layout).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The status of a `GET` on `path` (e.g. `/v2/`), sending the registry's own
    /// credentials when `authenticate` is set.
    pub fn status(&self, path: &str, authenticate: bool) -> u16 {
        let creds = if authenticate {
            self.credentials()
        } else {
            None
        };
        http_status(&self.host(), path, creds)
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.url()))
    }

    /// `HOST/name` for a repository name with tag or digest (`ferry/a:1`).
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Run `skopeo` with a home directory private to this registry (see [`skopeo`]).
    pub fn skopeo(&self, args: &[&str]) -> Run {
        skopeo(&self.dir.join("home"), args)
    }

    /// `skopeo inspect` of `name` (`repo/name:tag`) in this registry, parsed; fails the
    /// test if skopeo does.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.inspect_args(name, false).ok();
        serde_json::from_str(&out.stdout).expect("skopeo inspect prints JSON")
    }

    /// The manifest (or index) bytes the registry serves for `name`, as
    /// `skopeo inspect --raw` prints them.
    pub fn inspect_raw(&self, name: &str) -> Vec<u8> {
        self.inspect_args(name, true).ok().stdout.into_bytes()
    }

    /// The digest of the manifest (or index) the registry serves for `name`.
    pub fn manifest_digest(&self, name: &str) -> String {
        use sha2::{Digest, Sha256};
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.inspect_raw(name)))
        )
    }

    fn inspect_args(&self, name: &str, raw: bool) -> Run {
        let reference = format!("docker://{}", self.reference(name));
        let creds = self.credentials().map(|(u, p)| format!("{u}:{p}"));
        let mut args = vec!["inspect", "--tls-verify=false"];
        if raw {
            args.push("--raw");
        }
        if let Some(creds) = &creds {
            args.extend(["--creds", creds]);
        }
        args.push(&reference);
        self.skopeo(&args)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until the registry `child` listens on `port` and `GET /v2/` answers `ready`;
/// on failure return why, with its log.
fn wait_ready(child: &mut Child, port: u16, ready: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let host = format!("127.0.0.1:{port}");
    // Only the registry's own "listening on" line proves the port is its and not that
    // of a process that took it after we released it.
    let listening = format!("listening on {host}");
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("(exited with {status})\n{text}"));
        }
        if text.contains(&listening) && http_status(&host, "/v2/", None).ok() == Some(ready) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "(no answer {ready} to GET /v2/ within {START_TIMEOUT:?})\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One htpasswd line for `user` with a bcrypt hash, made by `htpasswd -Bbn`.
fn htpasswd_line(user: &str, password: &str) -> String {
    let htpasswd = require_tool("htpasswd", "apache2-utils");
    let out = Command::new(&htpasswd)
        .args(["-Bbn", user, password])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", htpasswd.display()));
    assert!(
        out.status.success(),
        "htpasswd -Bbn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}\n", String::from_utf8(out.stdout).unwrap().trim())
}

/// The status line's code of `GET path` on `host`, one request per connection.
fn http_status(host: &str, path: &str, creds: Option<(&str, &str)>) -> std::io::Result<u16> {
    use base64::Engine;
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some((user, password)) = creds {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))
}

/// Run `skopeo` (Debian package skopeo) without a signature policy and with `home` as
/// its home directory, so neither the user's stored registry credentials nor their
/// blob-info cache take part: credentials are only ever the ones passed as flags.
pub fn skopeo(home: &Path, args: &[&str]) -> Run {
    let program = require_tool("skopeo", "skopeo");
    std::fs::create_dir_all(home).unwrap();
    let output = Command::new(&program)
        .arg("--insecure-policy")
        .args(args)
        .current_dir(home)
        .stdin(Stdio::null())
        .env("HOME", home)
        // A path that is never created: skopeo then reads no credentials from files.
        .env("REGISTRY_AUTH_FILE", home.join("no-auth.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DOCKER_CONFIG")
        // containers/image keeps its blob-info cache (which registry holds which blob) in
        // /var/lib/containers/cache when run as root. Claiming a rootless uid moves it
        // under `home`, so tests neither write to the machine nor share what they learnt.
        .env("_CONTAINERS_ROOTLESS_UID", "65534")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One request as the [`CorruptingProxy`] forwarded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/v2/ferry/a/blobs/sha256:…`.
    pub path: String,
    /// The status the registry answered.
    pub status: u16,
    /// Whether the proxy flipped a byte of the response body.
    pub corrupted: bool,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a registry that flips the middle byte of
/// every `GET /v2/…/blobs/sha256:…` response body (same length, so only the digest check
/// can notice) and passes everything else through unchanged. It speaks one request per
/// connection (`Connection: close` both ways). Dropping it stops it and joins its threads.
pub struct CorruptingProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: String,
    stopping: AtomicBool,
    log: Mutex<Vec<ProxiedRequest>>,
    /// Every socket a connection thread uses, so drop can unblock it, and the thread.
    connections: Mutex<Vec<(Vec<TcpStream>, JoinHandle<()>)>>,
}

impl CorruptingProxy {
    /// Start a proxy forwarding to `upstream` (`127.0.0.1:PORT`, e.g. [`Registry::host`]).
    pub fn start(upstream: &str) -> CorruptingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_owned(),
            stopping: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("proxy-accept-{}", addr.port()))
                .spawn(move || proxy_accept_loop(&shared, &listener))
                .expect("spawn accept thread")
        };
        CorruptingProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, to use in place of the registry's host in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request forwarded so far, in order of completion.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.log).clone()
    }

    /// How many response bodies it corrupted so far.
    pub fn corrupted(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.corrupted)
            .count()
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for (streams, _) in &connections {
            for stream in streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        for (_, handle) in connections {
            let _ = handle.join();
        }
    }
}

fn proxy_accept_loop(shared: &Arc<ProxyShared>, listener: &TcpListener) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        // Connect upstream here so drop can find (and shut down) both sockets.
        let Ok(upstream) = TcpStream::connect(&shared.upstream) else {
            continue;
        };
        let (Ok(client_control), Ok(upstream_control)) = (client.try_clone(), upstream.try_clone())
        else {
            continue;
        };
        let shared_for_thread = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || {
                let _ = proxy_connection(&shared_for_thread, client, upstream);
            })
            .expect("spawn proxy connection thread");
        let mut connections = lock(&shared.connections);
        // Forget finished connections so a long test does not pile up handles.
        connections.retain(|(_, h)| !h.is_finished());
        connections.push((vec![client_control, upstream_control], handle));
    }
}

/// An HTTP head split into its start line and header fields.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head as bytes, without hop-by-hop connection headers and the ones in
    /// `drop`, with `Connection: close` and `extra` appended.
    fn encode(&self, drop: &[&str], extra: &[(&str, String)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (name, value) in &self.headers {
            let hop = ["connection", "keep-alive", "proxy-connection"];
            if hop.iter().chain(drop).any(|h| name.eq_ignore_ascii_case(h)) {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Read an HTTP head; returns it and the bytes read past its end.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("HTTP head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf.split_off(end + 4);
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((Head { start, headers }, rest))
}

/// Whether a request target is a blob download: `/v2/<name>/blobs/sha256:<64 hex>`.
fn is_blob_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix("/v2/") else {
        return false;
    };
    let Some((name, digest)) = rest.rsplit_once("/blobs/") else {
        return false;
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    !name.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Read a chunked body (and its trailers) to the end.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

fn proxy_connection(
    shared: &ProxyShared,
    mut client: TcpStream,
    mut upstream: TcpStream,
) -> std::io::Result<()> {
    for stream in [&client, &upstream] {
        stream.set_read_timeout(Some(PROXY_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(PROXY_IO_TIMEOUT))?;
    }
    // skopeo tries HTTPS first on an insecure registry. A TLS hello is no HTTP head and
    // would wait for one until the client's handshake timeout; tunnel it instead, so the
    // registry's "400" ends the attempt at once, as it does without the proxy.
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && !first[0].is_ascii_uppercase() {
        return tunnel(client, upstream);
    }
    let (request, early_body) = read_head(&mut client)?;
    let mut parts = request.start.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();

    upstream.write_all(&request.encode(&[], &[]))?;
    upstream.write_all(&early_body)?;
    // The rest of the request body, however it is framed, is copied as it comes: with
    // `Connection: close` the client sends nothing after it.
    let body_pump = {
        let mut from = client.try_clone()?;
        let mut to = upstream.try_clone()?;
        std::thread::Builder::new()
            .name("proxy-request-body".into())
            .spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
            })?
    };

    let result = (|| {
        let (response, early) = read_head(&mut upstream)?;
        let status: u16 = response
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut body = BufReader::new(Cursor::new(early).chain(upstream.try_clone()?));
        let corrupt = method == "GET" && is_blob_path(&path) && matches!(status, 200 | 206);
        let mut corrupted = false;
        if corrupt {
            let mut bytes = if response
                .header("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
            {
                read_chunked(&mut body)?
            } else if let Some(len) = response
                .header("content-length")
                .and_then(|l| l.parse::<u64>().ok())
            {
                let mut bytes = Vec::new();
                body.by_ref().take(len).read_to_end(&mut bytes)?;
                bytes
            } else {
                let mut bytes = Vec::new();
                body.read_to_end(&mut bytes)?;
                bytes
            };
            if !bytes.is_empty() {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xFF;
                corrupted = true;
            }
            client.write_all(&response.encode(
                &["content-length", "transfer-encoding"],
                &[("Content-Length", bytes.len().to_string())],
            ))?;
            client.write_all(&bytes)?;
        } else {
            // The registry closes after answering a `Connection: close` request, so the
            // body (whatever its framing, or none) ends at end of stream.
            client.write_all(&response.encode(&[], &[]))?;
            std::io::copy(&mut body, &mut client)?;
        }
        client.flush()?;
        lock(&shared.log).push(ProxiedRequest {
            method: method.clone(),
            path: path.clone(),
            status,
            corrupted,
        });
        Ok(())
    })();
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = body_pump.join();
    result
}

/// Copy bytes both ways unchanged until the upstream side closes.
fn tunnel(mut client: TcpStream, mut upstream: TcpStream) -> std::io::Result<()> {
    let pump = {
        let mut from = client.try_clone()?;
        let mut to = upstream.try_clone()?;
        std::thread::Builder::new()
            .name("proxy-tunnel".into())
            .spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
            })?
    };
    let result = std::io::copy(&mut upstream, &mut client).map(drop);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = pump.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci_image::{push, push_via, TestImages};

    #[test]
    fn registry_answers_v2_and_drop_kills_it() {
        let registry = Registry::start();
        assert_eq!(registry.status("/v2/", false), 200);
        assert!(registry.url().starts_with("http://127.0.0.1:"));
        let host = registry.host();
        drop(registry);
        assert!(
            TcpStream::connect(&host).is_err(),
            "registry still listening"
        );
    }

    #[test]
    fn auth_registry_accepts_push_with_credentials_and_refuses_without() {
        let dir = TestDir::new();
        let images = TestImages::build(dir.join("layout"));
        let registry = Registry::start_with_auth("ferry", "s3cret pass");
        assert_eq!(registry.status("/v2/", false), 401);
        assert_eq!(registry.status("/v2/", true), 200);

        let denied = push_via(
            &registry,
            &registry.host(),
            images.layout.path(),
            Some("a"),
            "ferry/denied:1",
            None,
        )
        .expect_err("push without credentials must fail");
        assert!(
            denied.stderr.contains("authentication required")
                || denied.stderr.contains("unauthorized"),
            "unexpected error: {}",
            denied.stderr
        );
        let wrong = push_via(
            &registry,
            &registry.host(),
            images.layout.path(),
            Some("a"),
            "ferry/denied:1",
            Some(("ferry", "wrong")),
        );
        assert!(wrong.is_err(), "push with a wrong password must fail");

        let digest = push(&registry, images.layout.path(), Some("a"), "ferry/a:1");
        assert_eq!(digest, images.a.manifest.digest);
        assert_eq!(
            registry.inspect("ferry/a:1")["Digest"],
            images.a.manifest.digest.as_str()
        );
        // Nothing of the refused pushes reached the storage.
        let anonymous = registry.skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}", registry.reference("ferry/denied:1")),
        ]);
        assert_ne!(anonymous.code, 0);
    }

    #[test]
    fn corrupting_proxy_breaks_blob_digests_and_passes_the_rest() {
        let dir = TestDir::new();
        let images = TestImages::build(dir.join("layout"));
        let registry = Registry::start();
        let proxy = CorruptingProxy::start(&registry.host());

        // Pushing through the proxy exercises request bodies (PATCH/PUT) and redirects
        // with Location headers; none of that is altered.
        let pushed = push_via(
            &registry,
            &proxy.host(),
            images.layout.path(),
            Some("a"),
            "ferry/a:1",
            None,
        )
        .expect("push through the proxy");
        assert_eq!(pushed, images.a.manifest.digest);
        assert_eq!(proxy.corrupted(), 0);
        assert!(proxy.requests().iter().any(|r| r.method == "PUT"));

        // Manifests are not blobs: they come through intact.
        let raw = registry.skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}/ferry/a:1", proxy.host()),
        ]);
        assert_eq!(
            raw.ok().stdout.into_bytes(),
            registry.inspect_raw("ferry/a:1")
        );

        // Control: the same copy straight from the registry succeeds.
        registry
            .skopeo(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}", registry.reference("ferry/a:1")),
                &format!("dir:{}", dir.join("direct").display()),
            ])
            .ok();

        let failed = registry.skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/ferry/a:1", proxy.host()),
            &format!("dir:{}", dir.join("through-proxy").display()),
        ]);
        assert_ne!(failed.code, 0, "copy through the proxy succeeded");
        assert!(
            failed.stderr.to_lowercase().contains("digest"),
            "expected a digest error, got: {}",
            failed.stderr
        );
        assert!(proxy.corrupted() >= 1);
        assert!(proxy
            .requests()
            .iter()
            .filter(|r| r.corrupted)
            .all(|r| r.method == "GET" && is_blob_path(&r.path)));
    }

    #[test]
    fn blob_paths_are_recognised() {
        let d = "0123456789abcdef".repeat(4);
        assert!(is_blob_path(&format!("/v2/ferry/a/blobs/sha256:{d}")));
        assert!(is_blob_path(&format!("/v2/a/blobs/sha256:{d}?x=1")));
        assert!(!is_blob_path("/v2/ferry/a/blobs/uploads/"));
        assert!(!is_blob_path(&format!("/v2/ferry/a/manifests/sha256:{d}")));
        assert!(!is_blob_path(&format!("/v2//blobs/sha256:{d}")));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut r = Cursor::new(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n".to_vec());
        assert_eq!(read_chunked(&mut r).unwrap(), b"hello world");
    }
}
