//! An in-process HTTP/1.1 file server on `127.0.0.1:0` for end-to-end tests: it serves a
//! directory (GET and HEAD, keep-alive, pipelining, single byte ranges), records every
//! request, and injects faults on demand — latency, error statuses, connections dropped
//! half-way through a body, and wrong bytes.
//!
//! It owns nothing but its root directory, which it only ever reads: it never serves a
//! path outside the root (`..` segments are refused, symlinks leading out are refused)
//! and never lists directories. It speaks only to loopback clients. Dropping the
//! [`Server`] stops it and joins every thread it started.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bodies at most this long are never dropped half-way, so repeated Range resumes of a
/// file served with [`Fault::DropHalfway`] converge.
pub const DROP_MIN_BODY: usize = 1024;

/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A fault injected into the responses for the paths matching a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before every response.
    Latency(Duration),
    /// Answer the next `times` matching requests with this status and a short text body
    /// (`u32::MAX`: always).
    Status(u16, u32),
    /// For the next `times` GET responses whose body is longer than [`DROP_MIN_BODY`]:
    /// send the headers and the first half of that body, then close the connection
    /// (`u32::MAX`: always; clients can then only finish by resuming with Range).
    DropHalfway(u32),
    /// Serve the files with some bytes flipped, keeping their length: the middle byte,
    /// the last byte and every byte at an offset ≡ 512 (mod 1024) of the file.
    WrongBytes,
}

/// One request as the server saw and answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Which connection it came on (1 for the first accepted, and so on).
    pub connection: u64,
    /// The method, e.g. `GET`.
    pub method: String,
    /// The decoded path, e.g. `/dists/stable/InRelease`.
    pub path: String,
    /// The `Range` header's value, if any.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Body bytes the server sent (or set out to send, if the client went away).
    pub bytes_sent: u64,
    /// Whether the server cut the connection in the middle of the body.
    pub dropped: bool,
}

/// A running file server; dropping it stops it.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

struct Rule {
    pattern: String,
    fault: Fault,
}

struct Shared {
    root: PathBuf,
    log: Mutex<Vec<Request>>,
    rules: Mutex<Vec<Rule>>,
    latency: Mutex<Duration>,
    stopping: AtomicBool,
    accepted: AtomicU64,
    connections: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

/// Lock a mutex, ignoring poisoning: a panicking test thread must not hide the log.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Start serving `root` on a random port of 127.0.0.1.
    pub fn start(root: impl Into<PathBuf>) -> Server {
        let root = root.into();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            root,
            log: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            stopping: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("http-accept-{}", addr.port()))
                .spawn(move || accept_loop(&shared, &listener))
                .expect("spawn accept thread")
        };
        Server {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory it serves.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Forget the requests recorded so far.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// How many recorded requests satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&Request) -> bool) -> usize {
        lock(&self.shared.log).iter().filter(|r| pred(r)).count()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Inject `fault` into the responses for the paths matching `pattern`: a pattern with
    /// `*` is a glob over the whole path (`*` matches any run of characters, `/`
    /// included, e.g. `*.deb`), one starting with `/` is an exact path, and any other is a
    /// suffix (`InRelease`). Faults add up: several may apply to one path.
    pub fn set_fault(&self, pattern: &str, fault: Fault) {
        lock(&self.shared.rules).push(Rule {
            pattern: pattern.to_owned(),
            fault,
        });
    }

    /// Remove every fault set with [`Server::set_fault`] (the global latency stays).
    pub fn clear_faults(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Wait this long before every response, whatever its path.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared.latency) = latency;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for (stream, _) in &connections {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, handle) in connections {
            let _ = handle.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(control) = stream.try_clone() else {
            continue;
        };
        let id = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let conn_shared = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name(format!("http-conn-{id}"))
            .spawn(move || serve_connection(&conn_shared, stream, id));
        let Ok(handle) = handle else { continue };
        let mut connections = lock(&shared.connections);
        // Reap finished connections so a long benchmark does not pile up handles.
        let (done, alive): (Vec<_>, Vec<_>) = std::mem::take(&mut *connections)
            .into_iter()
            .partition(|(_, h)| h.is_finished());
        *connections = alive;
        connections.push((control, handle));
        drop(connections);
        for (_, h) in done {
            let _ = h.join();
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this response.
    fn keep_alive(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| tokens.split(',').any(|x| x.trim() == t);
        if self.version == "HTTP/1.0" {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Read one request head; `None` at a clean end of the connection.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            // Tolerate blank lines before a request line (RFC 9112 §2.2).
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let mut request_line = lines[0].split_whitespace();
    let (Some(method), Some(target), Some(version)) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(std::io::ErrorKind::InvalidData.into());
    };
    let headers = lines[1..]
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    }))
}

fn serve_connection(shared: &Shared, stream: TcpStream, id: u64) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(_) => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match respond(shared, id, &head, &mut writer) {
            Ok(true) => continue,
            Ok(false) | Err(_) => {
                let _ = writer.flush();
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// What one response will be.
struct Plan {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then cut the connection.
    cut_at: Option<usize>,
}

impl Plan {
    fn text(status: u16, text: &str) -> Plan {
        Plan {
            status,
            headers: vec![("Content-Type", "text/plain".to_owned())],
            body: format!("{text}\n").into_bytes(),
            cut_at: None,
        }
    }
}

/// Answer one request; `Ok(true)` to keep the connection open.
fn respond(shared: &Shared, id: u64, head: &Head, out: &mut TcpStream) -> std::io::Result<bool> {
    let keep_alive = head.keep_alive();
    let is_head = head.method == "HEAD";
    let range = head.header("range").map(str::to_owned);
    let path = request_path(&head.target);

    let mut plan = match (&path, head.method.as_str()) {
        (_, "GET" | "HEAD") if head.header("content-length").is_some_and(|v| v != "0") => {
            Plan::text(400, "request bodies are not accepted")
        }
        (_, "GET" | "HEAD") => match &path {
            Some(path) => serve_file(&shared.root, path, range.as_deref()),
            None => Plan::text(400, "bad request target"),
        },
        _ => {
            let mut p = Plan::text(405, "only GET and HEAD");
            p.headers.push(("Allow", "GET, HEAD".to_owned()));
            p
        }
    };
    let path = path.unwrap_or_else(|| head.target.clone());

    // Faults are decided under one lock so counted faults are consumed exactly once.
    let mut delay = *lock(&shared.latency);
    {
        let mut rules = lock(&shared.rules);
        let mut status_done = false;
        let mut drop_done = false;
        let mut wrong = false;
        for rule in rules.iter_mut().filter(|r| matches(&r.pattern, &path)) {
            match &mut rule.fault {
                Fault::Latency(d) => delay += *d,
                Fault::Status(code, times) if !status_done && *times > 0 => {
                    plan = Plan::text(*code, &format!("injected fault: status {code}"));
                    status_done = true;
                    if *times != u32::MAX {
                        *times -= 1;
                    }
                }
                Fault::WrongBytes => wrong = true,
                _ => {}
            }
        }
        if wrong && !status_done && matches!(plan.status, 200 | 206) {
            let (start, len) = plan.body_origin();
            flip_bytes(&mut plan.body, start, len);
        }
        let droppable = !status_done
            && !is_head
            && matches!(plan.status, 200 | 206)
            && plan.body.len() > DROP_MIN_BODY;
        for rule in rules.iter_mut().filter(|r| matches(&r.pattern, &path)) {
            if let Fault::DropHalfway(times) = &mut rule.fault {
                if droppable && !drop_done && *times > 0 {
                    plan.cut_at = Some(plan.body.len() / 2);
                    drop_done = true;
                    if *times != u32::MAX {
                        *times -= 1;
                    }
                }
            }
        }
    }

    let keep_alive = keep_alive && plan.cut_at.is_none() && plan.status != 400;
    let sent = if is_head {
        0
    } else {
        plan.cut_at.unwrap_or(plan.body.len())
    };
    // Record before answering so a client that has its answer always finds it logged.
    lock(&shared.log).push(Request {
        connection: id,
        method: head.method.clone(),
        path,
        range,
        status: plan.status,
        bytes_sent: sent as u64,
        dropped: plan.cut_at.is_some(),
    });

    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let mut response = format!("HTTP/1.1 {} {}\r\n", plan.status, reason(plan.status));
    response.push_str(&format!("Content-Length: {}\r\n", plan.body.len()));
    for (k, v) in &plan.headers {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep_alive {
        response.push_str("Connection: close\r\n");
    }
    response.push_str("\r\n");
    out.write_all(response.as_bytes())?;
    if !is_head {
        out.write_all(&plan.body[..sent])?;
    }
    out.flush()?;
    Ok(keep_alive)
}

impl Plan {
    /// The file offset of the body's first byte and the file's length, from the
    /// `Content-Range` header (a 200 body starts at 0 and is the whole file).
    fn body_origin(&self) -> (usize, usize) {
        for (k, v) in &self.headers {
            if *k == "Content-Range" {
                // bytes START-END/LEN
                let parse = || -> Option<(usize, usize)> {
                    let rest = v.strip_prefix("bytes ")?;
                    let (span, len) = rest.split_once('/')?;
                    let (start, _) = span.split_once('-')?;
                    Some((start.parse().ok()?, len.parse().ok()?))
                };
                if let Some(origin) = parse() {
                    return origin;
                }
            }
        }
        (0, self.body.len())
    }
}

/// Flip the bytes [`Fault::WrongBytes`] names in a body that starts at file offset
/// `start` of a file of `len` bytes.
fn flip_bytes(body: &mut [u8], start: usize, len: usize) {
    for (i, b) in body.iter_mut().enumerate() {
        let offset = start + i;
        if offset == len / 2 || offset + 1 == len || offset % 1024 == 512 {
            *b ^= 0xFF;
        }
    }
}

/// The decoded path of a request target (origin or absolute form), without the query;
/// `None` if it is not a path or does not decode.
fn request_path(target: &str) -> Option<String> {
    let target = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => target,
    };
    let raw = target.split(['?', '#']).next().unwrap_or("");
    if !raw.starts_with('/') {
        return None;
    }
    percent_decode(raw)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a fault pattern (see [`Server::set_fault`]) matches a path.
fn matches(pattern: &str, path: &str) -> bool {
    if pattern.contains('*') {
        glob(pattern.as_bytes(), path.as_bytes())
    } else if pattern.starts_with('/') {
        pattern == path
    } else {
        path.ends_with(pattern)
    }
}

/// `*`-only glob matching, iterative with backtracking to the last star.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Plan the answer for a file request.
fn serve_file(root: &Path, path: &str, range: Option<&str>) -> Plan {
    let Some(file) = resolve(root, path) else {
        return Plan::text(403, "outside the served directory");
    };
    if !file.is_file() {
        return Plan::text(404, "not found");
    }
    let Ok(data) = std::fs::read(&file) else {
        return Plan::text(404, "not found");
    };
    let len = data.len();
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_owned()),
        ("Accept-Ranges", "bytes".to_owned()),
    ];
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeReq::Ignore) => Plan {
            status: 200,
            headers,
            body: data,
            cut_at: None,
        },
        Some(RangeReq::Unsatisfiable) => {
            let mut p = Plan::text(416, "range not satisfiable");
            p.headers.push(("Content-Range", format!("bytes */{len}")));
            p
        }
        Some(RangeReq::Span(start, end)) => {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
            Plan {
                status: 206,
                headers,
                body: data[start..=end].to_vec(),
                cut_at: None,
            }
        }
    }
}

/// Map a request path to a file under `root`, refusing anything that could leave it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    if path.contains('\0') || path.contains('\\') {
        return None;
    }
    let rel = Path::new(path.trim_start_matches('/'));
    let mut file = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(seg) => file.push(seg),
            Component::CurDir => {}
            _ => return None,
        }
    }
    // A symlink inside the root must not lead out of it.
    if let (Ok(real), Ok(real_root)) = (file.canonicalize(), root.canonicalize()) {
        if !real.starts_with(real_root) {
            return None;
        }
    }
    Some(file)
}

enum RangeReq {
    /// Serve the whole file (no usable single range).
    Ignore,
    /// 416.
    Unsatisfiable,
    /// Inclusive byte span.
    Span(usize, usize),
}

/// Parse a `Range` header for a file of `len` bytes (RFC 9110 §14.1.2): one
/// `bytes=N-`, `bytes=N-M` or `bytes=-S`; anything else is ignored.
fn parse_range(value: &str, len: usize) -> RangeReq {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeReq::Ignore;
    };
    if spec.contains(',') {
        return RangeReq::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<usize>().ok();
    match (a.is_empty(), b.is_empty()) {
        (false, true) => match num(a) {
            Some(start) if start < len => RangeReq::Span(start, len - 1),
            Some(_) => RangeReq::Unsatisfiable,
            None => RangeReq::Ignore,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start < len {
                    RangeReq::Span(start, end.min(len - 1))
                } else {
                    RangeReq::Unsatisfiable
                }
            }
            _ => RangeReq::Ignore,
        },
        (true, false) => match num(b) {
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if len == 0 => RangeReq::Unsatisfiable,
            Some(suffix) => RangeReq::Span(len - suffix.min(len), len - 1),
            None => RangeReq::Ignore,
        },
        (true, true) => RangeReq::Ignore,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{noise, TestDir};
    use std::io::Read;
    use std::time::Instant;

    /// A response read by the raw test client.
    #[derive(Debug)]
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A raw HTTP/1.1 client on one connection, so tests control keep-alive exactly.
    struct Conn {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Conn {
        fn open(server: &Server) -> Conn {
            let s = TcpStream::connect(server.addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Conn {
                reader: BufReader::new(s.try_clone().unwrap()),
                writer: s,
            }
        }

        fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            self.writer.write_all(req.as_bytes()).unwrap();
        }

        /// Read one response; a body cut short comes back short.
        fn recv(&mut self, head_only: bool) -> Resp {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut headers = Vec::new();
            loop {
                let mut l = String::new();
                self.reader.read_line(&mut l).unwrap();
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            let mut resp = Resp {
                status,
                headers,
                body: Vec::new(),
            };
            if !head_only {
                let len: u64 = resp.header("content-length").unwrap().parse().unwrap();
                (&mut self.reader)
                    .take(len)
                    .read_to_end(&mut resp.body)
                    .unwrap();
            }
            resp
        }

        fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
            self.send("GET", path, headers);
            self.recv(false)
        }

        /// Whether the server has closed the connection.
        fn closed(&mut self) -> bool {
            let mut buf = [0u8; 1];
            matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
        }
    }

    fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut headers = headers.to_vec();
        headers.push(("Connection", "close"));
        Conn::open(server).get(path, &headers)
    }

    fn fixture() -> (TestDir, Vec<u8>, Server) {
        let dir = TestDir::new();
        let data = noise(10_000, 7);
        dir.write("www/pool/a.deb", &data);
        dir.write("www/dists/stable/InRelease", b"small file\n");
        dir.write("secret.txt", b"outside the root\n");
        let server = Server::start(dir.join("www"));
        (dir, data, server)
    }

    #[test]
    fn get_head_and_404() {
        let (_dir, data, server) = fixture();
        assert!(server.url().starts_with("http://127.0.0.1:"));
        let r = get(&server, "/pool/a.deb", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data);
        assert_eq!(r.header("content-length"), Some("10000"));

        let mut c = Conn::open(&server);
        c.send("HEAD", "/pool/a.deb", &[]);
        let r = c.recv(true);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("10000"));
        // The HEAD answer carried no body: the next response on the connection parses.
        let r = c.get("/dists/stable/InRelease", &[]);
        assert_eq!(r.body, b"small file\n");

        assert_eq!(get(&server, "/pool/missing.deb", &[]).status, 404);
        assert_eq!(get(&server, "/pool", &[]).status, 404);
        let log = server.requests();
        assert_eq!(log.len(), 5);
        assert_eq!(log[0].bytes_sent, 10_000);
        assert_eq!(log[1].method, "HEAD");
        assert_eq!(log[1].bytes_sent, 0);
        assert_eq!(server.count(|r| r.status == 404), 2);
        server.clear_log();
        assert!(server.requests().is_empty());
    }

    #[test]
    fn percent_encoded_paths_are_decoded() {
        let (dir, _data, server) = fixture();
        dir.write("www/pool/x_1.0~rc1_all.deb", b"tilde");
        let r = get(&server, "/pool/x_1.0%7erc1_all.deb?query=1", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"tilde");
        assert_eq!(server.requests()[0].path, "/pool/x_1.0~rc1_all.deb");
    }

    #[test]
    fn never_serves_outside_the_root() {
        let (dir, _data, server) = fixture();
        for path in [
            "/../secret.txt",
            "/pool/../../secret.txt",
            "/%2e%2e/secret.txt",
        ] {
            let r = get(&server, path, &[]);
            assert_eq!(r.status, 403, "{path}");
            assert!(!String::from_utf8_lossy(&r.body).contains("outside the root\n"));
        }
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("www/link")).unwrap();
        assert_eq!(get(&server, "/link", &[]).status, 403);
    }

    #[test]
    fn ranges() {
        let (_dir, data, server) = fixture();
        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=9000-")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 9000-9999/10000"));
        assert_eq!(r.body, &data[9000..]);

        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=10-19")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 10-19/10000"));
        assert_eq!(r.body, &data[10..20]);

        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=9990-20000")]);
        assert_eq!(r.body, &data[9990..]);

        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=-5")]);
        assert_eq!(r.body, &data[9995..]);

        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=10000-")]);
        assert_eq!(r.status, 416);
        assert_eq!(r.header("content-range"), Some("bytes */10000"));

        // Not a single byte range: the whole file, as RFC 9110 allows.
        let r = get(&server, "/pool/a.deb", &[("Range", "bytes=0-1,5-6")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data);

        let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range).collect();
        assert_eq!(ranges[0].as_deref(), Some("bytes=9000-"));
        assert_eq!(server.requests()[0].bytes_sent, 1000);
    }

    #[test]
    fn keep_alive_serves_two_requests_on_one_connection() {
        let (_dir, data, server) = fixture();
        let mut c = Conn::open(&server);
        assert_eq!(c.get("/pool/a.deb", &[]).body, data);
        assert_eq!(c.get("/dists/stable/InRelease", &[]).status, 200);
        // Pipelined: two requests sent before reading either answer.
        c.send("GET", "/dists/stable/InRelease", &[]);
        c.send("GET", "/pool/a.deb", &[("Range", "bytes=0-9")]);
        assert_eq!(c.recv(false).body, b"small file\n");
        assert_eq!(c.recv(false).body, &data[..10]);
        let r = c.get("/pool/a.deb", &[("Connection", "close")]);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed());

        assert_eq!(server.connections(), 1);
        let log = server.requests();
        assert_eq!(log.len(), 5);
        assert!(log.iter().all(|r| r.connection == 1));
    }

    #[test]
    fn http_1_0_closes_unless_asked() {
        let (_dir, _data, server) = fixture();
        let mut c = Conn::open(&server);
        c.writer
            .write_all(b"GET /dists/stable/InRelease HTTP/1.0\r\n\r\n")
            .unwrap();
        assert_eq!(c.recv(false).status, 200);
        assert!(c.closed());
    }

    #[test]
    fn fault_status_for_the_next_n_requests() {
        let (_dir, data, server) = fixture();
        server.set_fault("*.deb", Fault::Status(500, 2));
        let mut c = Conn::open(&server);
        assert_eq!(c.get("/pool/a.deb", &[]).status, 500);
        // Other paths are untouched and do not consume the fault.
        assert_eq!(c.get("/dists/stable/InRelease", &[]).status, 200);
        assert_eq!(c.get("/pool/a.deb", &[]).status, 500);
        let r = c.get("/pool/a.deb", &[]);
        assert_eq!((r.status, r.body), (200, data));
        assert_eq!(server.count(|r| r.status == 500), 2);

        server.set_fault("/dists/stable/InRelease", Fault::Status(503, u32::MAX));
        for _ in 0..3 {
            assert_eq!(c.get("/dists/stable/InRelease", &[]).status, 503);
        }
        server.clear_faults();
        assert_eq!(c.get("/dists/stable/InRelease", &[]).status, 200);
    }

    #[test]
    fn fault_drop_halfway_then_range_resumes_converge() {
        let (_dir, data, server) = fixture();
        server.set_fault("a.deb", Fault::DropHalfway(u32::MAX));
        // A small file is never dropped.
        assert_eq!(
            get(&server, "/dists/stable/InRelease", &[]).body,
            b"small file\n"
        );

        let mut got = Vec::new();
        let mut rounds = 0;
        while got.len() < data.len() {
            rounds += 1;
            assert!(rounds < 20, "resumes do not converge");
            let mut c = Conn::open(&server);
            let range = format!("bytes={}-", got.len());
            let headers: &[(&str, &str)] = if got.is_empty() {
                &[]
            } else {
                &[("Range", &range)]
            };
            let r = c.get("/pool/a.deb", headers);
            let expected_len: usize = r.header("content-length").unwrap().parse().unwrap();
            if r.body.len() < expected_len {
                assert!(c.closed(), "a dropped response must close the connection");
            }
            got.extend_from_slice(&r.body);
        }
        assert_eq!(got, data);
        let log = server.requests();
        let first = &log[1];
        assert!(first.dropped);
        assert_eq!(first.bytes_sent, 5000);
        assert!(!log.last().unwrap().dropped);
        assert!(log.last().unwrap().bytes_sent as usize <= DROP_MIN_BODY);
    }

    #[test]
    fn fault_drop_halfway_counts_down() {
        let (_dir, data, server) = fixture();
        server.set_fault("/pool/a.deb", Fault::DropHalfway(1));
        let r = get(&server, "/pool/a.deb", &[]);
        assert_eq!(r.body.len(), 5000);
        assert_eq!(get(&server, "/pool/a.deb", &[]).body, data);
        assert_eq!(server.count(|r| r.dropped), 1);
    }

    #[test]
    fn fault_wrong_bytes_keeps_length() {
        let (_dir, data, server) = fixture();
        server.set_fault("*.deb", Fault::WrongBytes);
        let r = get(&server, "/pool/a.deb", &[]);
        assert_eq!(r.body.len(), data.len());
        assert_ne!(r.body, data);
        // A range of the tail is wrong too, and consistent with the whole.
        let tail = get(&server, "/pool/a.deb", &[("Range", "bytes=9999-")]);
        assert_eq!(tail.body.len(), 1);
        assert_ne!(tail.body, &data[9999..]);
        assert_eq!(tail.body, &r.body[9999..]);
        assert_eq!(
            get(&server, "/dists/stable/InRelease", &[]).body,
            b"small file\n"
        );
        server.clear_faults();
        assert_eq!(get(&server, "/pool/a.deb", &[]).body, data);
    }

    #[test]
    fn fault_latency_per_path_and_global() {
        let (_dir, _data, server) = fixture();
        server.set_fault("InRelease", Fault::Latency(Duration::from_millis(300)));
        let t = Instant::now();
        get(&server, "/dists/stable/InRelease", &[]);
        assert!(t.elapsed() >= Duration::from_millis(300));
        let t = Instant::now();
        get(&server, "/pool/a.deb", &[]);
        assert!(t.elapsed() < Duration::from_millis(300));

        server.clear_faults();
        server.set_latency(Duration::from_millis(200));
        let t = Instant::now();
        assert_eq!(get(&server, "/nope", &[]).status, 404);
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn other_methods_are_refused() {
        let (_dir, _data, server) = fixture();
        let mut c = Conn::open(&server);
        c.send("DELETE", "/pool/a.deb", &[]);
        assert_eq!(c.recv(false).status, 405);
    }

    #[test]
    fn drop_stops_the_server_with_idle_connections_open() {
        let (_dir, _data, server) = fixture();
        let addr = server.addr();
        let mut c = Conn::open(&server);
        assert_eq!(c.get("/dists/stable/InRelease", &[]).status, 200);
        let t = Instant::now();
        drop(server);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(c.closed());
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn glob_patterns() {
        assert!(matches("*.deb", "/pool/main/a/a/a_1_amd64.deb"));
        assert!(!matches("*.deb", "/pool/main/a/a/a_1_amd64.deb.sig"));
        assert!(matches(
            "/pool/*/a_*_amd64.deb",
            "/pool/main/a/a/a_1_amd64.deb"
        ));
        assert!(matches("Packages", "/dists/s/main/binary-amd64/Packages"));
        assert!(!matches(
            "Packages",
            "/dists/s/main/binary-amd64/Packages.gz"
        ));
        assert!(matches("/dists/s/InRelease", "/dists/s/InRelease"));
        assert!(!matches("/InRelease", "/dists/s/InRelease"));
    }
}
