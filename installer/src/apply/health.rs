//! Health checks: `GET` a loopback/LAN URL until its JSON `status` is one of the
//! accepted values (or, with none listed, until it answers 2xx), for up to
//! `timeout_secs`. Plain HTTP only; the installer links no TLS stack.

use super::log::RunLog;
use ferry_bundle::manifest::Health;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// Accepted.
    Pass(String),
    /// Answered, but not healthy.
    Unhealthy(String),
    /// No answer (refused, timed out, malformed).
    NoAnswer(String),
}

/// Poll `health` until it passes or its timeout ends. `Ok(summary)` or
/// `Err(last result)`; every attempt is logged.
pub fn wait_healthy(health: &Health, log: &mut RunLog) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(health.timeout_secs);
    let mut n = 0;
    loop {
        n += 1;
        let attempt = check_once(health);
        log.line(&format!("health {} attempt {n}: {attempt:?}", health.url));
        match attempt {
            Attempt::Pass(s) => return Ok(s),
            Attempt::Unhealthy(s) | Attempt::NoAnswer(s) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{} not healthy after {} s ({n} attempts); last: {s}",
                        health.url, health.timeout_secs
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One `GET`.
pub fn check_once(health: &Health) -> Attempt {
    let (status, body) = match get(&health.url, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => return Attempt::NoAnswer(e),
    };
    let json_status = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(String::from));
    if health.json_status.is_empty() {
        return if (200..300).contains(&status) {
            Attempt::Pass(format!("HTTP {status}"))
        } else {
            Attempt::Unhealthy(format!("HTTP {status}"))
        };
    }
    match json_status {
        Some(s) if health.json_status.contains(&s) => {
            Attempt::Pass(format!("HTTP {status}, status {s:?}"))
        }
        Some(s) if health.warn_status.contains(&s) => Attempt::Pass(format!(
            "HTTP {status}, status {s:?} (WARNING: passes with a warning; check the component's details)"
        )),
        Some(s) => Attempt::Unhealthy(format!(
            "HTTP {status}, status {s:?} (accepted: {})",
            health.json_status.join(", ")
        )),
        None => Attempt::Unhealthy(format!(
            "HTTP {status}, no JSON \"status\" field in the answer"
        )),
    }
}

/// Check a health URL's form without connecting (preflight).
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = match url.strip_prefix("http://") {
        Some(r) => r,
        None if url.starts_with("https://") => {
            return Err(format!(
                "{url}: https health checks are not supported (ferry-install links no TLS stack); use the service's plain-HTTP port on loopback, or override the URL in installer.toml [health]"
            ))
        }
        None => return Err(format!("{url}: not an http:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// A minimal HTTP/1.1 GET: status code and body (identity or chunked), at most 1 MiB.
fn get(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let (host, port, path) = parse_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ferry-install\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(1024 * 1024 + 16 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "malformed HTTP answer (no end of headers)".to_string())?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| "malformed chunked body".to_string())?;
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/hello").unwrap(),
            ("127.0.0.1".into(), 8080, "/hello".into())
        );
        assert_eq!(
            parse_url("http://[::1]:3000").unwrap(),
            ("::1".into(), 3000, "/".into())
        );
        assert_eq!(
            parse_url("http://gw/health").unwrap(),
            ("gw".into(), 80, "/health".into())
        );
        assert!(parse_url("https://x/").unwrap_err().contains("no TLS"));
        assert!(parse_url("ftp://x/").is_err());
    }

    /// A one-answer HTTP server on 127.0.0.1; returns its URL.
    fn answer_once(status: u16, body: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hello", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).unwrap();
        });
        url
    }

    fn health(url: String) -> Health {
        Health {
            url,
            json_status: vec!["pass".into()],
            timeout_secs: 1,
            warn_status: vec!["warn".into()],
            derive: None,
        }
    }

    #[test]
    fn status_field_decides_not_the_http_code() {
        let pass = check_once(&health(answer_once(200, r#"{"status":"pass"}"#)));
        assert!(matches!(pass, Attempt::Pass(_)), "{pass:?}");
        let warn = check_once(&health(answer_once(200, r#"{"status":"warn"}"#)));
        assert!(
            matches!(&warn, Attempt::Pass(s) if s.contains("WARNING")),
            "{warn:?}"
        );
        let fail = check_once(&health(answer_once(200, r#"{"status":"fail"}"#)));
        assert!(matches!(fail, Attempt::Unhealthy(_)), "{fail:?}");
        // 503 with an accepted status still passes: the JSON decides.
        let odd = check_once(&health(answer_once(503, r#"{"status":"pass"}"#)));
        assert!(matches!(odd, Attempt::Pass(_)), "{odd:?}");
        let none = check_once(&health(answer_once(200, "hello")));
        assert!(matches!(none, Attempt::Unhealthy(_)), "{none:?}");
    }

    #[test]
    fn chunked() {
        assert_eq!(
            dechunk(b"4\r\n{\"st\r\n3;x=1\r\nat\"\r\n0\r\n\r\n").unwrap(),
            b"{\"stat\"".to_vec()
        );
        assert!(dechunk(b"9\r\nab\r\n").is_none());
    }
}
