//! A real, throwaway `redis-server` for the Redis backup tests: bound to 127.0.0.1 on a
//! free port, data in a [`TestDir`], shut down and reaped on drop. Also a tiny RESP2
//! client ([`RedisClient`]) so tests can fill and read servers, binary data included.

use crate::{require_tool, TestDir};
use ferry_installer::backup::redis::RedisConn;
use ferry_installer::secret::Secret;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a [`RedisServer`].
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// `--requirepass`.
    pub password: Option<String>,
    /// Disable `CONFIG` (`--rename-command CONFIG ""`), as hardened setups do.
    pub rename_config: bool,
    /// TLS only: `--port 0 --tls-port PORT` with a CA and server certificate made by
    /// `openssl` in the server's directory ([`RedisServer::ca_cert`]).
    pub tls: bool,
    /// More `redis-server` arguments.
    pub args: Vec<String>,
}

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
    password: Option<String>,
    tls: bool,
    dir: TestDir,
}

impl RedisServer {
    /// Start one and wait until it answers `PING`. Panics (naming the Debian package)
    /// when `redis-server` is not installed.
    pub fn start(options: RedisOptions) -> RedisServer {
        let program = require_tool("redis-server", "redis-server");
        let mut dir = TestDir::new();
        if options.tls {
            make_certificates(dir.path());
        }
        let mut last_log = String::new();
        for _ in 0..20 {
            let port = free_port();
            let log_path = dir.join("redis.log");
            let log = File::create(&log_path).unwrap();
            let mut cmd = Command::new(&program);
            if options.tls {
                let d = dir.path().display();
                cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cert-file", &format!("{d}/server.crt")])
                    .args(["--tls-key-file", &format!("{d}/server.key")])
                    .args(["--tls-ca-cert-file", &format!("{d}/ca.crt")])
                    .args(["--tls-auth-clients", "no"]);
            } else {
                cmd.args(["--port", &port.to_string()]);
            }
            cmd.args(["--bind", "127.0.0.1", "--dir"])
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "no"]);
            if let Some(pw) = &options.password {
                cmd.args(["--requirepass", pw]);
            }
            if options.rename_config {
                cmd.args(["--rename-command", "CONFIG", ""]);
            }
            cmd.args(&options.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut server = RedisServer {
                child,
                port,
                password: options.password.clone(),
                tls: options.tls,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) => {
                    // Port taken between choosing and binding: try another.
                    let retry = log.contains("Address already in use");
                    last_log = log;
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    if !retry {
                        break;
                    }
                    dir = std::mem::take(&mut server.dir);
                    drop(server);
                }
            }
        }
        panic!("redis-server did not start:\n{last_log}");
    }

    /// Wait for "Ready to accept connections" in its own log, then `PING`. `Err(log)`
    /// when it exits or takes too long.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if self.log().contains("Ready to accept connections") {
                if self.tls {
                    return Ok(());
                }
                if let Ok(mut c) = RedisClient::connect(self.port, self.password.as_deref()) {
                    if c.try_cmd(&[b"PING"])
                        .is_ok_and(|v| v == Value::Status("PONG".into()))
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after 15 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its TCP port on 127.0.0.1 (the TLS port for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory (`--dir`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate of a TLS server.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// How ferry reaches it: `redis://127.0.0.1:PORT/0` with its password.
    pub fn conn(&self) -> RedisConn {
        RedisConn {
            host: "127.0.0.1".into(),
            port: self.port,
            socket: None,
            username: None,
            password: self.password.as_deref().map(Secret::new),
            database: 0,
            tls: self.tls,
            ca_cert: self.tls.then(|| self.ca_cert()),
        }
    }

    /// A new authenticated connection (not for TLS servers).
    pub fn client(&self) -> RedisClient {
        assert!(!self.tls, "RedisClient speaks no TLS: use redis-cli");
        RedisClient::connect(self.port, self.password.as_deref())
            .unwrap_or_else(|e| panic!("cannot connect to redis on port {}: {e}", self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            // Already reaped; the port may now belong to another server.
            return;
        }
        // SHUTDOWN also stops a background save's child, which a kill would orphan.
        if !self.tls {
            if let Ok(mut c) = RedisClient::connect(self.port, self.password.as_deref()) {
                let _ = c.try_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a server certificate for 127.0.0.1 (EC keys: fast to make).
fn make_certificates(dir: &Path) {
    let openssl = require_tool("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509", "-nodes"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
        &["-subj", "/CN=ferry test CA"],
    ]
    .concat());
    run(&[
        &["req", "-nodes"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr"],
        &["-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// `$-1` or `*-1`.
    Nil,
    /// `+…`.
    Status(String),
    /// `-…`.
    Error(String),
    /// `:…`.
    Int(i64),
    /// `$…`.
    Bulk(Vec<u8>),
    /// `*…`.
    Array(Vec<Value>),
}

impl Value {
    /// The integer, or panic.
    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    /// The bytes of a bulk string (or status), or panic.
    #[track_caller]
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Bulk(b) => b.clone(),
            Value::Status(s) => s.clone().into_bytes(),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    /// The text of a bulk string (or status), or panic.
    #[track_caller]
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("UTF-8 reply")
    }

    /// The items of an array, or panic.
    #[track_caller]
    pub fn items(&self) -> Vec<Value> {
        match self {
            Value::Array(a) => a.clone(),
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

/// A minimal blocking RESP2 client over TCP to 127.0.0.1.
pub struct RedisClient {
    reader: BufReader<TcpStream>,
}

impl RedisClient {
    /// Connect to 127.0.0.1:`port` and `AUTH` when a password is given.
    pub fn connect(port: u16, password: Option<&str>) -> io::Result<RedisClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        let mut c = RedisClient {
            reader: BufReader::new(stream),
        };
        if let Some(pw) = password {
            match c.try_cmd(&[b"AUTH", pw.as_bytes()])? {
                Value::Status(_) => {}
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("AUTH: {other:?}"),
                    ))
                }
            }
        }
        Ok(c)
    }

    /// Send one command and read its reply (error replies are values).
    pub fn try_cmd(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        let mut buf = Vec::new();
        encode(&mut buf, args);
        self.reader.get_mut().write_all(&buf)?;
        read_value(&mut self.reader)
    }

    /// One command with text arguments; panics on I/O errors and error replies.
    #[track_caller]
    pub fn cmd(&mut self, args: &[&str]) -> Value {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_raw(&args)
    }

    /// One command with binary arguments; panics on I/O errors and error replies.
    #[track_caller]
    pub fn cmd_raw(&mut self, args: &[&[u8]]) -> Value {
        let v = self.try_cmd(args).expect("redis connection");
        if let Value::Error(e) = &v {
            panic!("redis {:?} failed: {e}", String::from_utf8_lossy(args[0]));
        }
        v
    }

    /// Send many commands at once, then read all replies; panics on error replies.
    #[track_caller]
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Value> {
        let mut buf = Vec::new();
        for c in commands {
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            encode(&mut buf, &args);
        }
        self.reader.get_mut().write_all(&buf).expect("redis write");
        commands
            .iter()
            .map(|c| {
                let v = read_value(&mut self.reader).expect("redis reply");
                if let Value::Error(e) = &v {
                    panic!("redis {:?} failed: {e}", String::from_utf8_lossy(&c[0]));
                }
                v
            })
            .collect()
    }
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn read_value(r: &mut impl BufRead) -> io::Result<Value> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short reply"));
    }
    line.truncate(line.len() - 2);
    let rest = String::from_utf8_lossy(&line[1..]).into_owned();
    let number = || -> io::Result<i64> {
        rest.parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad number {rest:?}")))
    };
    Ok(match line[0] {
        b'+' => Value::Status(rest.clone()),
        b'-' => Value::Error(rest.clone()),
        b':' => Value::Int(number()?),
        b'$' => match number()? {
            n if n < 0 => Value::Nil,
            n => {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                data.truncate(n as usize);
                Value::Bulk(data)
            }
        },
        b'*' => match number()? {
            n if n < 0 => Value::Nil,
            n => (0..n)
                .map(|_| read_value(r))
                .collect::<io::Result<Vec<_>>>()
                .map(Value::Array)?,
        },
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad reply type {other:#04x}"),
            ))
        }
    })
}
