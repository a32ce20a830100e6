//! Redis backups: one consistent RDB snapshot of a running server, taken before an
//! upgrade, and a way to load it back without stopping the server.
//!
//! [`backup`] asks the server for a fresh snapshot (`BGSAVE`, or a blocking `SAVE` as the
//! Tyk upgrade guide does) and then gets the RDB file in one of three ways:
//!
//! * [`RedisMethod::ConfigDirCopy`]: the server is on this host and `CONFIG GET dir` /
//!   `CONFIG GET dbfilename` name a readable file written by that snapshot: copy it.
//! * [`RedisMethod::Replication`]: `CONFIG` is renamed or disabled, or the file is not
//!   reachable (remote server, container, permissions): fetch the RDB over the
//!   replication protocol (`SYNC`), as `redis-cli --rdb` does.
//! * [`RedisMethod::RedisCliTls`]: the connection uses TLS. This crate links no TLS
//!   stack, so `redis-cli --tls --rdb` fetches the file; the password reaches it only
//!   through the `REDISCLI_AUTH` environment variable, never its command line.
//!
//! The file is written through a temporary file in the destination directory (fsync,
//! rename), mode 0600, and checked ([`check_rdb`]) before it takes its final name.
//!
//! [`restore`] loads an RDB into a running server key by key: it starts a private,
//! temporary `redis-server` on a unix socket with the RDB as its data file and copies
//! every key with `DUMP` / `RESTORE … REPLACE`. [`restore_procedure`] is the manual
//! alternative (stop Redis, put the file in place, start it).
//!
//! Passwords are only ever written to the server connection (`AUTH`) or to the
//! environment of `redis-cli`; they appear in no log line, `Debug` output, error or
//! [`RedisBackup`].

use crate::host::Host;
use crate::secret::Secret;
use crate::tools::{describe, find_program, redact, sha256_file, tail};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Keys asked for per `SCAN` call during [`restore`].
const SCAN_COUNT: &str = "200";
/// Payload bytes sent in one pipelined batch of `RESTORE` commands.
const RESTORE_BATCH_BYTES: usize = 8 << 20;
/// How far (seconds) the copied dump file's mtime may lie before `LASTSAVE` and still
/// count as written by the save ferry just asked for.
const DUMP_MTIME_SLACK: u64 = 10;
/// Databases the temporary restore server accepts (a source configured with more than
/// the default 16 must still load).
const TEMP_SERVER_DATABASES: &str = "1024";

/// How to reach a Redis server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConn {
    /// Host name or IP address; unused when `socket` is set.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Unix socket path (a real path, already mapped under `--root`); wins over
    /// `host`/`port`. `tls` does not apply to it.
    pub socket: Option<PathBuf>,
    /// Redis 6 ACL user, sent as `AUTH username password`.
    pub username: Option<String>,
    /// Password (`requirepass` or the ACL user's); `None` or empty: no `AUTH`.
    pub password: Option<Secret>,
    /// The database the component uses. Informational: an RDB holds every database.
    pub database: u32,
    /// Connect with TLS (through `redis-cli`, see [`RedisMethod::RedisCliTls`]).
    pub tls: bool,
    /// CA certificate for TLS (`redis-cli --cacert`); `None`: the system's CAs.
    pub ca_cert: Option<PathBuf>,
}

impl Default for RedisConn {
    /// `redis://127.0.0.1:6379/0` without a password.
    fn default() -> Self {
        RedisConn {
            host: "127.0.0.1".into(),
            port: 6379,
            socket: None,
            username: None,
            password: None,
            database: 0,
            tls: false,
            ca_cert: None,
        }
    }
}

impl RedisConn {
    /// The server as messages name it, never with a password: `redis://127.0.0.1:6379/0`,
    /// `rediss://…` for TLS, `unix:/run/redis/redis.sock`.
    pub fn display(&self) -> String {
        if let Some(socket) = &self.socket {
            return format!("unix:{}", socket.display());
        }
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}/{}", self.port, self.database)
    }

    /// TLS applies to TCP connections only.
    fn uses_tls(&self) -> bool {
        self.tls && self.socket.is_none()
    }

    /// The password when one is set and not empty.
    fn secret(&self) -> Option<&Secret> {
        self.password.as_ref().filter(|p| !p.is_empty())
    }

    /// On this machine: a unix socket, or a loopback host.
    fn is_local(&self) -> bool {
        self.socket.is_some()
            || matches!(
                self.host.trim_start_matches('[').trim_end_matches(']'),
                "127.0.0.1" | "::1" | "localhost"
            )
    }
}

/// How [`backup`] makes the server write a fresh snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveMode {
    /// `BGSAVE` and wait for it: the server keeps serving meanwhile.
    #[default]
    Bgsave,
    /// Blocking `SAVE`, as the Tyk upgrade guide does: clients wait until it is written.
    Save,
}

/// How [`backup`] got the RDB file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisMethod {
    /// Copied from the server's `dir`/`dbfilename` on this host.
    ConfigDirCopy,
    /// Streamed over the replication protocol (`SYNC`), as `redis-cli --rdb` does.
    Replication,
    /// Fetched by `redis-cli --tls --rdb`.
    RedisCliTls,
}

/// One Redis item of a backup set, as `backup.json` records it. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisBackup {
    /// The server, [`RedisConn::display`].
    pub source: String,
    /// Bytes of the RDB file.
    pub size: u64,
    /// sha256 of the RDB file, hex.
    pub sha256: String,
    /// How the file was obtained.
    pub method: RedisMethod,
    /// `redis_version` from `INFO server`.
    pub server_version: String,
    /// The RDB format version of the file (the digits after `REDIS`).
    pub rdb_version: u32,
    /// What was done and checked, for the record: `"BGSAVE finished"`,
    /// `"RDB header REDIS0010"`, `"redis-check-rdb: OK"`, …
    pub checks: Vec<String>,
}

/// What [`restore`] loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisRestore {
    /// Keys written to the target (`RESTORE … REPLACE`).
    pub keys: u64,
    /// The databases (numbers) the backup held keys in, ascending.
    pub databases: Vec<u32>,
}

/// Take a fresh snapshot of the server `conn` names and write it to `out` (mode 0600).
///
/// `timeout` bounds connecting, every single reply, waiting for `BGSAVE` and the
/// transfer's pauses. `out`'s directory must exist; `out` is replaced atomically and
/// only by a file that passed [`check_rdb`]; on failure an existing `out` is left as it
/// was and the temporary file is removed.
///
/// Over TLS, `mode` does not apply: the server makes the snapshot for the transfer
/// itself (`redis-cli --rdb`), and `timeout` bounds `INFO` and each stretch of the
/// transfer without progress.
pub fn backup(
    host: &Host,
    conn: &RedisConn,
    mode: SaveMode,
    out: &Path,
    timeout: Duration,
) -> Result<RedisBackup> {
    let mut tmp = TempOut::create(out)?;
    tracing::info!("backing up Redis {} to {}", conn.display(), out.display());
    let (method, server_version, mut checks) = if conn.uses_tls() {
        backup_with_redis_cli(conn, tmp.path(), timeout)?
    } else {
        backup_direct(host, conn, mode, &mut tmp, timeout)?
    };
    tmp.sync()?;
    let (rdb_version, rdb_checks) = check_rdb_as(tmp.path(), out)?;
    checks.extend(rdb_checks);
    let (size, sha256) = sha256_file(tmp.path()).map_err(|e| Error::io(out, e))?;
    tmp.commit()?;
    tracing::info!(
        "Redis {} backed up: {size} bytes, RDB version {rdb_version}, method {method:?}",
        conn.display()
    );
    Ok(RedisBackup {
        source: conn.display(),
        size,
        sha256,
        method,
        server_version,
        rdb_version,
        checks,
    })
}

/// The size of the server's dataset (`INFO memory` `used_memory_dataset`, else
/// `used_memory`): about what its snapshot will take, an upper bound as RDB compresses.
/// Read-only; used by `plan` to estimate the backup. TLS servers are not measured (the
/// installer speaks TLS only through `redis-cli` when it takes the snapshot).
pub fn dataset_size(conn: &RedisConn, timeout: Duration) -> Result<u64> {
    if conn.uses_tls() {
        return Err(Error::Backup {
            path: PathBuf::from(conn.display()),
            message: "not measured: the server speaks TLS".into(),
            help: "its snapshot size is known once taken".into(),
        });
    }
    let mut c = Client::connect(conn, timeout)?;
    let info = c.info("memory")?;
    info_field(&info, "used_memory_dataset")
        .or_else(|| info_field(&info, "used_memory"))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Backup {
            path: PathBuf::from(conn.display()),
            message: "INFO memory reports no used_memory".into(),
            help: "its snapshot size is known once taken".into(),
        })
}

/// Check that `path` is a complete RDB file and return its format version.
///
/// It must start with `REDIS` and four ASCII digits and end with the end-of-file
/// opcode; from version 5 on, the trailing CRC64 must match the content (unless the
/// server wrote it with `rdbchecksum no`). When `redis-check-rdb` is on `PATH` it also
/// parses the whole file. Errors name the file.
pub fn check_rdb(path: &Path) -> Result<u32> {
    check_rdb_as(path, path).map(|(version, _)| version)
}

/// Load `rdb` into the running server `target`, which keeps serving meanwhile.
///
/// A temporary private `redis-server` (from `PATH`) loads the file from a 0700 temp
/// directory and listens only on a unix socket there; every key of every database is
/// copied with `DUMP` / `PTTL` and, on the target, `SELECT db` + `RESTORE key ttl
/// payload REPLACE`. Keys already on the target but not in the backup are kept (run
/// `FLUSHALL` first, or follow [`restore_procedure`], to get exactly the backup). The
/// temporary server needs about as much memory as the data and a copy of the file on
/// disk, and is killed and its directory removed however this ends. Redis 7 function
/// libraries (`FUNCTION LOAD`) in the RDB are not copied; Tyk does not use them.
///
/// TLS targets are refused: ferry speaks TLS only through `redis-cli`; the error's help
/// is [`restore_procedure`].
pub fn restore(rdb: &Path, target: &RedisConn, timeout: Duration) -> Result<RedisRestore> {
    if target.uses_tls() {
        return Err(Error::Backup {
            path: rdb.to_path_buf(),
            message: format!(
                "cannot restore into {}: ferry reaches TLS servers only through redis-cli, which cannot load a backup into a running server",
                target.display()
            ),
            help: restore_procedure(rdb),
        });
    }
    check_rdb(rdb)?;
    // Fail on an unreachable or misconfigured target before starting anything.
    let mut dst = Client::connect(target, timeout)?;
    dst.command(&[b"PING"])?;
    let program = find_program("redis-server", None).ok_or_else(|| Error::ToolMissing {
        program: "redis-server".into(),
        package: "redis-server".into(),
        purpose: "to read a Redis backup (restore loads it into a temporary private redis-server)"
            .into(),
    })?;
    tracing::info!(
        "restoring {} into Redis {} through a temporary redis-server",
        rdb.display(),
        target.display()
    );
    let temp = TempServer::start(&program, rdb, timeout)?;
    let mut src = temp.client(timeout)?;
    let databases = keyspace(&mut src)?;
    let mut keys = 0;
    for &db in &databases {
        keys += copy_database(&mut src, &mut dst, db, rdb, target)?;
    }
    drop(temp);
    tracing::info!(
        "restored {keys} keys in database(s) {databases:?} into {}",
        target.display()
    );
    Ok(RedisRestore { keys, databases })
}

/// The manual way to put `rdb` back: stop Redis, replace its data file, start it.
pub fn restore_procedure(rdb: &Path) -> String {
    let rdb = rdb.display();
    format!(
        "To restore {rdb} by hand (this replaces ALL data of that Redis server):
  1. With Redis still running, note where it keeps its data
     (give the password with REDISCLI_AUTH=..., add --tls/--cacert for TLS):
       redis-cli CONFIG GET dir          (Debian default: /var/lib/redis)
       redis-cli CONFIG GET dbfilename   (default: dump.rdb)
       redis-cli CONFIG GET appendonly
     If CONFIG is disabled, read `dir`, `dbfilename` and `appendonly` in /etc/redis/redis.conf.
  2. Stop Redis:  systemctl stop redis-server
  3. Move the current data aside:  mv DIR/DBFILENAME DIR/DBFILENAME.before-restore
     (and DIR/appendonlydir or DIR/appendonly.aof, if present)
  4. Copy the backup in place, owned by redis:redis, mode 0660:
       install -o redis -g redis -m 0660 {rdb} DIR/DBFILENAME
  5. If appendonly is yes, Redis would load the AOF instead of the RDB: set
     `appendonly no` in /etc/redis/redis.conf for this start; once the data is back,
     run `redis-cli CONFIG SET appendonly yes` (rewrites the AOF from the loaded data)
     and set `appendonly yes` in redis.conf again.
  6. Start Redis:  systemctl start redis-server
  7. Check the data:  redis-cli INFO keyspace  and  redis-cli -n DB DBSIZE  show the
     expected key counts per database.
  The RDB format is read only by the same or a newer Redis version than the one that wrote it."
    )
}

// ---------------------------------------------------------------------------------
// Backup paths

type Taken = (RedisMethod, String, Vec<String>);

/// Plain TCP or unix socket: snapshot, then copy the dump file or stream it over `SYNC`.
fn backup_direct(
    host: &Host,
    conn: &RedisConn,
    mode: SaveMode,
    tmp: &mut TempOut,
    timeout: Duration,
) -> Result<Taken> {
    let mut c = Client::connect(conn, timeout)?;
    if conn.database != 0 {
        c.command(&[b"SELECT", conn.database.to_string().as_bytes()])?;
    }
    let info = c.info("server")?;
    let version = info_field(&info, "redis_version")
        .unwrap_or("unknown")
        .to_string();
    let mut checks = vec![format!("Redis {version} at {}", conn.display())];
    let lastsave = match mode {
        SaveMode::Bgsave => {
            let t = bgsave_and_wait(&mut c, timeout, &mut checks)?;
            checks.push(format!("BGSAVE finished (LASTSAVE {t})"));
            t
        }
        SaveMode::Save => {
            let t = save(&mut c, timeout)?;
            checks.push(format!("SAVE finished (LASTSAVE {t})"));
            t
        }
    };
    match locate_dump(host, conn, &mut c, lastsave) {
        Ok(mut file) => {
            let path = file.1.clone();
            io::copy(&mut file.0, tmp.file()).map_err(|e| Error::io(&path, e))?;
            checks.push(format!("copied {}", path.display()));
            Ok((RedisMethod::ConfigDirCopy, version, checks))
        }
        Err(why) => {
            tracing::info!("{why}; fetching the RDB over the replication protocol");
            checks.push(format!("{why}; fetched over replication (SYNC)"));
            let bytes = sync_rdb(&mut c, tmp)?;
            checks.push(format!("received {bytes} bytes over replication"));
            Ok((RedisMethod::Replication, version, checks))
        }
    }
}

/// `LASTSAVE`, `BGSAVE` (retrying while another save or AOF rewrite runs), then wait
/// until `LASTSAVE` advances with `rdb_bgsave_in_progress:0` and
/// `rdb_last_bgsave_status:ok`. Returns the new `LASTSAVE`.
fn bgsave_and_wait(c: &mut Client, timeout: Duration, checks: &mut Vec<String>) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    let before = loop {
        let before = c.int(&[b"LASTSAVE"])?;
        // LASTSAVE counts seconds: a save finishing in the second of the previous one
        // would not advance it.
        wait_for_next_second(c, before)?;
        match c.call(&[b"BGSAVE"])? {
            Reply::Status(_) => break before,
            Reply::Error(e) if e.contains("in progress") || e.contains("child process") => {
                tracing::info!("{}: {e}; waiting for it to finish", c.server);
                checks.push(format!("waited for a running background job ({e})"));
                wait_until_idle(c, deadline, timeout)?;
                pause_before_retry(c, deadline, timeout, "BGSAVE")?;
            }
            Reply::Error(e) => {
                return Err(c.fail(
                    format!("BGSAVE refused: {e}"),
                    "check the Redis log and free disk space in its `dir`; or use the blocking SAVE mode".into(),
                ))
            }
            other => return Err(c.unexpected("BGSAVE", &other)),
        }
    };
    loop {
        let info = c.info("persistence")?;
        let now = c.int(&[b"LASTSAVE"])?;
        if info_field(&info, "rdb_bgsave_in_progress") == Some("0") {
            let status = info_field(&info, "rdb_last_bgsave_status").unwrap_or("unknown");
            if status == "err" {
                return Err(c.fail(
                    "BGSAVE failed: INFO persistence reports rdb_last_bgsave_status:err".into(),
                    "see the Redis log: usually a full disk or an unwritable `dir`, or fork failing for lack of memory (vm.overcommit_memory=1)".into(),
                ));
            }
            if now > before && status == "ok" {
                return Ok(now);
            }
        }
        if Instant::now() >= deadline {
            return Err(c.fail(
                format!("BGSAVE did not finish within {}s", timeout.as_secs_f64()),
                "a large dataset needs more time: raise the timeout; INFO persistence shows the progress".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Blocking `SAVE` (waiting out a running background save first); returns `LASTSAVE`.
fn save(c: &mut Client, timeout: Duration) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        match c.call(&[b"SAVE"])? {
            Reply::Status(_) => return c.int(&[b"LASTSAVE"]),
            Reply::Error(e) if e.contains("in progress") || e.contains("child process") => {
                wait_until_idle(c, deadline, timeout)?;
                pause_before_retry(c, deadline, timeout, "SAVE")?;
            }
            Reply::Error(e) => {
                return Err(c.fail(
                    format!("SAVE failed: {e}"),
                    "see the Redis log: usually a full disk or an unwritable `dir`".into(),
                ))
            }
            other => return Err(c.unexpected("SAVE", &other)),
        }
    }
}

/// Sleep into the next second (server clock from `TIME`, else ours) when `lastsave`
/// is the current second.
fn wait_for_next_second(c: &mut Client, lastsave: i64) -> Result<()> {
    let now = match c.call(&[b"TIME"])? {
        Reply::Array(Some(items)) if items.len() == 2 => {
            let secs = items[0].text().and_then(|s| s.parse::<i64>().ok());
            let micros = items[1].text().and_then(|s| s.parse::<u64>().ok());
            secs.zip(micros)
        }
        _ => None,
    };
    let (secs, micros) = now.unwrap_or_else(|| {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs() as i64, u64::from(d.subsec_micros()))
    });
    if secs <= lastsave {
        // A LASTSAVE further ahead (clock stepped back) is left to the save's deadline.
        let wait = (lastsave - secs).min(1) as u64 * 1_000_000 + (1_000_000 - micros.min(999_999));
        std::thread::sleep(Duration::from_micros(wait + 5_000));
    }
    Ok(())
}

/// A short pause before asking again, within the deadline (another kind of child
/// process, e.g. a module's, is not visible in `INFO persistence`).
fn pause_before_retry(c: &Client, deadline: Instant, timeout: Duration, what: &str) -> Result<()> {
    if Instant::now() >= deadline {
        return Err(c.fail(
            format!(
                "{what} kept being refused for {}s because another child process is active",
                timeout.as_secs_f64()
            ),
            "raise the timeout, or retry when the server is idle (INFO persistence)".into(),
        ));
    }
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// Wait until no background save or AOF rewrite runs.
fn wait_until_idle(c: &mut Client, deadline: Instant, timeout: Duration) -> Result<()> {
    loop {
        let info = c.info("persistence")?;
        let busy = |field| info_field(&info, field).is_some_and(|v| v != "0");
        if !busy("rdb_bgsave_in_progress") && !busy("aof_rewrite_in_progress") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(c.fail(
                format!(
                    "another background save or AOF rewrite did not finish within {}s",
                    timeout.as_secs_f64()
                ),
                "raise the timeout, or retry when the server is idle (INFO persistence)".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dump file the save just wrote, opened, when the server is on this host, tells
/// its `dir` and `dbfilename`, and the file is readable and fresh. `Err` says why not.
fn locate_dump(
    host: &Host,
    conn: &RedisConn,
    c: &mut Client,
    lastsave: i64,
) -> std::result::Result<(File, PathBuf), String> {
    let dir = config_get(c, "dir")?;
    let name = config_get(c, "dbfilename")?;
    if !conn.is_local() {
        return Err(format!(
            "{} is not on this host (dump file {dir}/{name} not reachable)",
            conn.display()
        ));
    }
    if !dir.starts_with('/') || name.contains('/') || name.is_empty() {
        return Err(format!("unusable dir {dir:?} / dbfilename {name:?}"));
    }
    let path = host.path(&dir).join(&name);
    let file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    // A file in another mount namespace (container) can shadow a stale one here.
    if !meta.is_file() || mtime + DUMP_MTIME_SLACK < lastsave.max(0) as u64 {
        return Err(format!(
            "{} was not written by this save (modified at {mtime}, LASTSAVE {lastsave})",
            path.display()
        ));
    }
    Ok((file, path))
}

/// `CONFIG GET name`; `Err` when refused (renamed, disabled, ACL) or unknown.
fn config_get(c: &mut Client, name: &str) -> std::result::Result<String, String> {
    let reply = c
        .call(&[b"CONFIG", b"GET", name.as_bytes()])
        .map_err(|e| e.to_string())?;
    match reply {
        Reply::Array(Some(items)) if items.len() >= 2 => items[1]
            .text()
            .ok_or_else(|| format!("CONFIG GET {name}: unexpected reply")),
        Reply::Error(e) => Err(format!("CONFIG GET {name} refused ({e})")),
        _ => Err(format!("CONFIG GET {name}: no such parameter")),
    }
}

/// Stream the RDB over the replication protocol into `tmp`; returns its size.
fn sync_rdb(c: &mut Client, tmp: &mut TempOut) -> Result<u64> {
    // Redis 7+: send only the RDB, not the command stream after it. Older servers reply
    // with an error, which does not matter.
    let _ = c.call(&[b"REPLCONF", b"rdb-only", b"1"])?;
    c.send(&[b"SYNC"])?;
    let server = c.server.clone();
    let mut writer = WatchedWriter {
        inner: tmp.file(),
        error: None,
    };
    let result = read_sync_payload(&mut c.reader, &mut writer);
    if let Some(e) = writer.error.take() {
        return Err(Error::io(&tmp.out, e));
    }
    match result {
        Ok(n) => Ok(n),
        Err(SyncError::Server(e)) => Err(c.fail(
            format!("SYNC refused: {}", c.redact(&e)),
            "the RDB could not be fetched over replication: allow CONFIG (for a local copy of the dump file) or grant the ACL user +sync +replconf, or run the backup on the Redis host".into(),
        )),
        Err(SyncError::Protocol(e)) => Err(c.fail(
            format!("unexpected data during SYNC: {e}"),
            format!("is {server} a Redis server?"),
        )),
        Err(SyncError::Io(e)) => Err(c.io_error("receiving the RDB over SYNC", e)),
    }
}

/// A writer that remembers its own failure, to tell a full disk from a lost connection.
struct WatchedWriter<'a> {
    inner: &'a mut File,
    error: Option<io::Error>,
}

impl Write for WatchedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            // Keep the OS error itself, so a full disk stays recognisable (ENOSPC).
            self.error = Some(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            });
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug)]
enum SyncError {
    Io(io::Error),
    Server(String),
    Protocol(String),
}

impl From<io::Error> for SyncError {
    fn from(e: io::Error) -> Self {
        SyncError::Io(e)
    }
}

/// The reply to `SYNC`: newline keep-alives, then `$<len>\r\n` and exactly `len` bytes,
/// or the diskless form `$EOF:<40-byte mark>\r\n`, the RDB, and the mark again.
fn read_sync_payload<R: BufRead, W: Write>(
    r: &mut R,
    w: &mut W,
) -> std::result::Result<u64, SyncError> {
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        match b[0] {
            b'\n' | b'\r' => continue,
            b'$' => break,
            b'-' => return Err(SyncError::Server(read_line(r)?)),
            // e.g. +FULLRESYNC from servers answering SYNC like PSYNC.
            b'+' => {
                read_line(r)?;
            }
            other => {
                return Err(SyncError::Protocol(format!(
                    "byte {other:#04x} instead of the RDB length"
                )))
            }
        }
    }
    let header = read_line(r)?;
    if let Some(mark) = header.strip_prefix("EOF:") {
        let mark = mark.as_bytes();
        if mark.len() != 40 {
            return Err(SyncError::Protocol(format!(
                "EOF mark of {} bytes, expected 40",
                mark.len()
            )));
        }
        return copy_until_mark(r, w, mark);
    }
    let len: u64 = header
        .parse()
        .map_err(|_| SyncError::Protocol(format!("bad RDB length {header:?}")))?;
    let copied = io::copy(&mut r.take(len), w)?;
    if copied != len {
        return Err(SyncError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed after {copied} of {len} bytes"),
        )));
    }
    Ok(len)
}

/// Copy until `mark` (not written); error when the stream ends first.
fn copy_until_mark<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    mark: &[u8],
) -> std::result::Result<u64, SyncError> {
    let keep = mark.len() - 1;
    let mut pending: Vec<u8> = Vec::with_capacity(keep + (64 << 10));
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Err(SyncError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {total} bytes, before the end mark"),
            )));
        }
        pending.extend_from_slice(&buf[..n]);
        if let Some(pos) = pending.windows(mark.len()).position(|win| win == mark) {
            w.write_all(&pending[..pos])?;
            return Ok(total + pos as u64);
        }
        let flush = pending.len().saturating_sub(keep);
        w.write_all(&pending[..flush])?;
        total += flush as u64;
        pending.drain(..flush);
    }
}

/// TLS: `redis-cli --tls … INFO server` for the version, then `redis-cli --tls … --rdb`.
fn backup_with_redis_cli(conn: &RedisConn, tmp: &Path, timeout: Duration) -> Result<Taken> {
    let program = find_program("redis-cli", None).ok_or_else(|| Error::ToolMissing {
        program: "redis-cli".into(),
        package: "redis-tools".into(),
        purpose: format!(
            "to back up Redis over TLS ({}); ferry links no TLS library",
            conn.display()
        ),
    })?;
    let help = format!(
        "check that {} is reachable with these TLS settings (CA certificate, port) and the password: run the command above with REDISCLI_AUTH set",
        conn.display()
    );
    let mut info = redis_cli(&program, conn);
    info.args(["INFO", "server"]);
    let what = format!("reading INFO from {}", conn.display());
    let output = run_tool(&mut info, &what, &help, timeout, None)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = info_field(&text, "redis_version").ok_or_else(|| Error::Command {
        what,
        command: display_command(&info),
        status: describe(output.status),
        detail: redact(&tail(&text, 5), conn.secret()),
        help: help.clone(),
    })?;
    let version = version.to_string();
    let mut rdb = redis_cli(&program, conn);
    rdb.arg("--rdb").arg(tmp);
    run_tool(
        &mut rdb,
        &format!("fetching the RDB from {} with redis-cli", conn.display()),
        &help,
        timeout,
        Some(tmp),
    )?;
    let checks = vec![
        format!("Redis {version} at {}", conn.display()),
        "snapshot made by the server for the transfer (redis-cli --rdb)".into(),
    ];
    Ok((RedisMethod::RedisCliTls, version, checks))
}

/// `redis-cli --tls [--cacert CA] -h HOST -p PORT [--user U] -n DB`, the password in
/// `REDISCLI_AUTH` only.
fn redis_cli(program: &Path, conn: &RedisConn) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("--tls");
    if let Some(ca) = &conn.ca_cert {
        cmd.arg("--cacert").arg(ca);
    }
    let host = conn.host.trim_start_matches('[').trim_end_matches(']');
    cmd.args(["-h", host, "-p", &conn.port.to_string()]);
    if let Some(user) = &conn.username {
        cmd.args(["--user", user]);
    }
    cmd.args(["-n", &conn.database.to_string()]);
    cmd.env_remove("REDISCLI_AUTH");
    if let Some(pw) = conn.secret() {
        cmd.env("REDISCLI_AUTH", pw.expose());
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Run `cmd`, killing it after `timeout` — or, with `watch`, after `timeout` without
/// that file growing. Fails on a non-zero exit or when redis-cli reports an error.
fn run_tool(
    cmd: &mut Command,
    what: &str,
    help: &str,
    timeout: Duration,
    watch: Option<&Path>,
) -> Result<std::process::Output> {
    let command = display_command(cmd);
    let secret = cmd
        .get_envs()
        .find(|(k, _)| *k == std::ffi::OsStr::new("REDISCLI_AUTH"))
        .and_then(|(_, v)| v)
        .map(|v| Secret::new(v.to_string_lossy()));
    let fail = |status: String, detail: String| Error::Command {
        what: what.into(),
        command: command.clone(),
        status,
        detail: redact(&detail, secret.as_ref()),
        help: help.into(),
    };
    tracing::debug!("running {command}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("not started".into(), e.to_string()))?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let mut size = None;
    let mut progress = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("unknown".into(), e.to_string()));
            }
        }
        if let Some(path) = watch {
            let now = std::fs::metadata(path).map(|m| m.len()).ok();
            if now != size {
                size = now;
                progress = Instant::now();
            }
        }
        if progress.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&stderr),
        String::from_utf8_lossy(&stdout)
    );
    let Some(status) = status else {
        let waited = if watch.is_some() {
            "made no progress"
        } else {
            "did not finish"
        };
        return Err(fail(
            "killed".into(),
            format!(
                "it {waited} within {}s\n{}",
                timeout.as_secs_f64(),
                tail(&text, 20)
            ),
        ));
    };
    // redis-cli exits 0 after some failures but says so.
    let out = String::from_utf8_lossy(&stdout);
    let failed = !status.success()
        || String::from_utf8_lossy(&stderr).contains("AUTH failed")
        || ["NOAUTH", "WRONGPASS", "ERR", "NOPERM"]
            .iter()
            .any(|p| out.starts_with(p));
    if failed {
        return Err(fail(describe(status), tail(&text, 20)));
    }
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// Read a child's pipe to the end on another thread.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// The command line for messages: program and arguments; the environment (where the
/// password is) is never shown.
fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("{s:?}")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------
// Output file

/// `out` being written: a 0600 temp file next to it, removed unless committed.
struct TempOut {
    tmp: PathBuf,
    out: PathBuf,
    file: Option<File>,
}

impl TempOut {
    fn create(out: &Path) -> Result<TempOut> {
        let name = out.file_name().ok_or_else(|| Error::Backup {
            path: out.to_path_buf(),
            message: "not a file name".into(),
            help: "give the path of the RDB file to write".into(),
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = out.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(out, e))?;
        Ok(TempOut {
            tmp,
            out: out.to_path_buf(),
            file: Some(file),
        })
    }

    fn path(&self) -> &Path {
        &self.tmp
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file open until commit")
    }

    /// Flush to disk (the content may also have been written by another program).
    fn sync(&mut self) -> Result<()> {
        let file = self.file.take().expect("temp file open");
        drop(file);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.tmp)
            .map_err(|e| Error::io(&self.out, e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&self.out, e))?;
        self.file = Some(file);
        Ok(())
    }

    /// Rename into place and sync the directory.
    fn commit(mut self) -> Result<()> {
        self.file = None;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
        let dir = match self.out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // The name is in place now: nothing to clean up any more.
        self.tmp = PathBuf::new();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&dir, e))
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------------------------
// RDB checks

/// [`check_rdb`] reading `path` but naming `name` in messages; also returns the notes.
fn check_rdb_as(path: &Path, name: &Path) -> Result<(u32, Vec<String>)> {
    let bad = |message: String| {
        Error::Backup {
        path: name.to_path_buf(),
        message,
        help: "this is not a complete Redis RDB file: take the backup again (or use another backup set)".into(),
    }
    };
    let mut f = File::open(path).map_err(|e| Error::io(name, e))?;
    let len = f.metadata().map_err(|e| Error::io(name, e))?.len();
    let mut header = [0u8; 9];
    let got = read_up_to(&mut f, &mut header).map_err(|e| Error::io(name, e))?;
    let header = &header[..got];
    let version = match header.strip_prefix(b"REDIS") {
        Some(digits) if digits.len() == 4 && digits.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(digits)
                .expect("ASCII digits")
                .parse::<u32>()
                .expect("four digits")
        }
        _ => {
            return Err(bad(format!(
                "not an RDB file: it does not start with \"REDIS\" and a 4-digit version (starts with \"{}\")",
                header.escape_ascii()
            )))
        }
    };
    let mut checks = vec![format!("RDB header REDIS{version:04}")];
    if version >= 5 {
        if len < 9 + 1 + 8 {
            return Err(bad(format!("truncated: only {len} bytes")));
        }
        let body = len - 8;
        let mut crc = 0u64;
        let mut last = 0u8;
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(name, e))?;
        let mut remaining = body;
        let mut buf = vec![0u8; 1 << 20];
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..want])
                .map_err(|e| Error::io(name, e))?;
            crc = crc64(crc, &buf[..want]);
            last = buf[want - 1];
            remaining -= want as u64;
        }
        let mut stored = [0u8; 8];
        f.read_exact(&mut stored).map_err(|e| Error::io(name, e))?;
        let stored = u64::from_le_bytes(stored);
        if last != 0xFF {
            return Err(bad(format!(
                "truncated or damaged: no end-of-file opcode (0xFF) before the checksum ({len} bytes)"
            )));
        }
        if stored == 0 {
            checks.push(
                "RDB checksum not stored (rdbchecksum no); end-of-file opcode present".into(),
            );
        } else if stored != crc {
            return Err(bad(format!(
                "truncated or damaged: CRC64 {crc:016x} of the content does not match the stored {stored:016x} ({len} bytes)"
            )));
        } else {
            checks.push(format!("RDB checksum OK (CRC64 {crc:016x}, {len} bytes)"));
        }
    } else {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len.saturating_sub(1)))
            .and_then(|_| f.read_exact(&mut last))
            .map_err(|e| Error::io(name, e))?;
        if len < 10 || last[0] != 0xFF {
            return Err(bad(format!(
                "truncated: no end-of-file opcode (0xFF) at the end ({len} bytes)"
            )));
        }
        checks.push("RDB end-of-file opcode present (no checksum before version 5)".into());
    }
    checks.push(run_check_rdb(path, name, version)?);
    Ok((version, checks))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `redis-check-rdb FILE` when installed; the note for `checks`.
fn run_check_rdb(path: &Path, name: &Path, version: u32) -> Result<String> {
    let Some(program) = find_program("redis-check-rdb", None) else {
        return Ok("redis-check-rdb: not installed (Debian package redis-tools), skipped".into());
    };
    let mut cmd = Command::new(program);
    cmd.arg(path).stdin(Stdio::null());
    let command = display_command(&cmd);
    let output = cmd.output().map_err(|e| Error::Command {
        what: format!("checking {} with redis-check-rdb", name.display()),
        command: command.clone(),
        status: "not started".into(),
        detail: e.to_string(),
        help: "reinstall the Debian package redis-tools".into(),
    })?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        return Ok("redis-check-rdb: OK".into());
    }
    if text.contains("Can't handle RDB format version") {
        return Ok(format!(
            "redis-check-rdb: skipped, RDB version {version} is newer than this redis-check-rdb reads"
        ));
    }
    Err(Error::Command {
        what: format!("checking {} with redis-check-rdb", name.display()),
        command,
        status: describe(output.status),
        detail: tail(&text, 20),
        help: "the RDB file is damaged: take the backup again (or use another backup set)".into(),
    })
}

/// Redis's CRC-64 (Jones polynomial, reflected, init 0, no final xor), as stored at
/// the end of RDB files from version 5 on.
fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = CRC64_TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// 0xad93d23594c935a9, bit-reversed.
const CRC64_POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

static CRC64_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

// ---------------------------------------------------------------------------------
// Restore

/// The temporary server restore reads from; killed and its directory removed on drop.
struct TempServer {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl TempServer {
    fn start(program: &Path, rdb: &Path, timeout: Duration) -> Result<TempServer> {
        let dir = private_temp_dir()?;
        let guard = DirGuard(dir.clone());
        let data = dir.join("dump.rdb");
        let mut input = File::open(rdb).map_err(|e| Error::io(rdb, e))?;
        let mut copy = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&data)
            .map_err(|e| Error::io(&data, e))?;
        io::copy(&mut input, &mut copy).map_err(|e| Error::io(&data, e))?;
        drop(copy);
        let socket = dir.join("redis.sock");
        let log_path = dir.join("redis.log");
        let log = File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let mut cmd = Command::new(program);
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--databases", TEMP_SERVER_DATABASES])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let command = display_command(&cmd);
        tracing::debug!("running {command}");
        let child = cmd.spawn().map_err(|e| Error::Command {
            what: format!(
                "starting a temporary redis-server to read {}",
                rdb.display()
            ),
            command: command.clone(),
            status: "not started".into(),
            detail: e.to_string(),
            help: "reinstall the Debian package redis-server".into(),
        })?;
        std::mem::forget(guard);
        let mut server = TempServer { child, dir, socket };
        server.wait_loaded(rdb, &command, timeout)?;
        Ok(server)
    }

    /// Until it answers `PING` and `INFO persistence` says `loading:0`.
    fn wait_loaded(&mut self, rdb: &Path, command: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let failed = |server: &TempServer, status: String, why: &str| {
            Error::Command {
            what: format!("loading {} into a temporary redis-server", rdb.display()),
            command: command.to_string(),
            status,
            detail: format!(
                "{why}\n{}",
                tail(
                    &std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default(),
                    15
                )
            ),
            help: format!(
                "if the log says the RDB format version is not supported, this redis-server is older than the Redis that wrote the backup: install the same version, or restore by hand on that server.\n{}",
                restore_procedure(rdb)
            ),
        }
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(failed(self, describe(status), "it exited while starting"));
            }
            if let Ok(mut c) = self.client(timeout) {
                match c.call(&[b"PING"]) {
                    Ok(Reply::Status(_)) => {
                        let info = c.info("persistence")?;
                        if info_field(&info, "loading") == Some("0") {
                            return Ok(());
                        }
                    }
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => {}
                    Ok(other) => return Err(c.unexpected("PING", &other)),
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    self,
                    "running".into(),
                    &format!("not loaded within {}s", timeout.as_secs_f64()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self, timeout: Duration) -> Result<Client> {
        let conn = RedisConn {
            socket: Some(self.socket.clone()),
            ..RedisConn::default()
        };
        Client::connect(&conn, timeout)
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory on drop (until forgotten).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh 0700 directory under the temp dir, short enough for a unix socket path.
fn private_temp_dir() -> Result<PathBuf> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        base = PathBuf::from("/tmp");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    for attempt in 0..100u32 {
        let dir = base.join(format!(
            "ferry-redis-{}-{:x}",
            std::process::id(),
            nanos.wrapping_add(attempt.wrapping_mul(7919))
        ));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    Err(Error::io(
        &base,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "cannot create a fresh temporary directory",
        ),
    ))
}

/// The databases `INFO keyspace` lists (`db3:keys=…`), ascending.
fn keyspace(c: &mut Client) -> Result<Vec<u32>> {
    let info = c.info("keyspace")?;
    let mut dbs: Vec<u32> = info
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split_once(':')?.0.parse().ok())
        .collect();
    dbs.sort_unstable();
    dbs.dedup();
    Ok(dbs)
}

/// Copy every key of database `db` from `src` to `dst`; returns how many were written.
fn copy_database(
    src: &mut Client,
    dst: &mut Client,
    db: u32,
    rdb: &Path,
    target: &RedisConn,
) -> Result<u64> {
    let db_text = db.to_string();
    src.command(&[b"SELECT", db_text.as_bytes()])?;
    match dst.call(&[b"SELECT", db_text.as_bytes()])? {
        Reply::Status(_) => {}
        Reply::Error(e) => {
            return Err(dst.fail(
                format!("cannot select database {db} (the backup has keys there): {e}"),
                "the target has fewer databases than the source (`databases` in redis.conf) or runs in cluster mode; raise `databases` and restart it".into(),
            ))
        }
        other => return Err(dst.unexpected("SELECT", &other)),
    }
    let mut written = 0u64;
    let mut cursor = b"0".to_vec();
    loop {
        let reply = src.command(&[b"SCAN", &cursor, b"COUNT", SCAN_COUNT.as_bytes()])?;
        let (next, keys) = match reply {
            Reply::Array(Some(mut items)) if items.len() == 2 => {
                let keys = items.pop().expect("two items");
                let next = items.pop().expect("two items");
                match (next, keys) {
                    (Reply::Bulk(Some(next)), Reply::Array(Some(keys))) => (next, keys),
                    (next, keys) => {
                        return Err(src.unexpected("SCAN", &Reply::Array(Some(vec![next, keys]))))
                    }
                }
            }
            other => return Err(src.unexpected("SCAN", &other)),
        };
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter_map(|k| match k {
                Reply::Bulk(Some(k)) => Some(k),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            written += copy_keys(src, dst, db, &keys, rdb, target)?;
        }
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    Ok(written)
}

/// `DUMP` + `PTTL` the keys (pipelined), then `RESTORE … REPLACE` them (pipelined).
fn copy_keys(
    src: &mut Client,
    dst: &mut Client,
    db: u32,
    keys: &[Vec<u8>],
    rdb: &Path,
    target: &RedisConn,
) -> Result<u64> {
    let mut batch = Vec::new();
    for key in keys {
        encode(&mut batch, &[b"DUMP", key]);
        encode(&mut batch, &[b"PTTL", key]);
    }
    src.write_raw(&batch)?;
    let mut entries = Vec::with_capacity(keys.len());
    for key in keys {
        let dump = src.read_reply()?;
        let ttl = src.read_reply()?;
        let payload = match dump {
            Reply::Bulk(Some(p)) => p,
            // Expired since it was listed.
            Reply::Bulk(None) => continue,
            Reply::Error(e) => {
                return Err(src.fail(
                    format!("DUMP of key \"{}\" failed: {e}", key.escape_ascii()),
                    "the temporary server could not serialize this key; restore by hand (restore_procedure)".into(),
                ))
            }
            other => return Err(src.unexpected("DUMP", &other)),
        };
        let ttl = match ttl {
            Reply::Int(-2) => continue,
            Reply::Int(-1) => 0,
            Reply::Int(ms) => ms.max(1),
            other => return Err(src.unexpected("PTTL", &other)),
        };
        entries.push((key, ttl, payload));
    }
    let mut written = 0;
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut bytes = 0;
        let mut out = Vec::new();
        while end < entries.len() && (end == start || bytes < RESTORE_BATCH_BYTES) {
            let (key, ttl, payload) = &entries[end];
            bytes += payload.len();
            let ttl = ttl.to_string();
            encode(
                &mut out,
                &[b"RESTORE", key, ttl.as_bytes(), payload, b"REPLACE"],
            );
            end += 1;
        }
        dst.write_raw(&out)?;
        let mut first_error = None;
        for (key, _, _) in &entries[start..end] {
            match dst.read_reply()? {
                Reply::Status(_) => written += 1,
                Reply::Error(e) => {
                    first_error.get_or_insert((key, e));
                }
                other => return Err(dst.unexpected("RESTORE", &other)),
            }
        }
        if let Some((key, e)) = first_error {
            return Err(Error::Backup {
                path: rdb.to_path_buf(),
                message: format!(
                    "RESTORE of key \"{}\" (database {db}) into {} failed: {}",
                    key.escape_ascii(),
                    target.display(),
                    dst.redact(&e)
                ),
                help: format!(
                    "\"DUMP payload version or checksum are wrong\" means the target Redis is older than the one that wrote the backup; out of memory means maxmemory is too low. Keys before this one were written. To load the file into that server instead:\n{}",
                    restore_procedure(rdb)
                ),
            });
        }
        start = end;
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------
// RESP2 client

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// A short description for messages (never a whole payload).
    fn describe(&self) -> String {
        match self {
            Reply::Status(s) => format!("+{}", truncate(s, 80)),
            Reply::Error(e) => format!("-{}", truncate(e, 200)),
            Reply::Int(i) => format!(":{i}"),
            Reply::Bulk(None) => "nil".into(),
            Reply::Bulk(Some(b)) => format!("a {}-byte string", b.len()),
            Reply::Array(None) => "nil array".into(),
            Reply::Array(Some(a)) => format!("an array of {}", a.len()),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Append one command in RESP2 form.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One `\r\n`-terminated line, without the terminator (at most 64 KiB).
fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref().take(64 << 10).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a reply",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn parse_reply<R: BufRead>(r: &mut R, depth: usize) -> io::Result<Reply> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let line = read_line(r)?;
    let (kind, rest) = match line.get(..1) {
        Some(kind) => (kind, &line[1..]),
        None => ("", line.as_str()),
    };
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| invalid(format!("bad number {:?} in a reply", truncate(s, 40))))
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(number(rest)?),
        "$" => {
            let len = number(rest)?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut data = Vec::with_capacity((len as usize).min(1 << 20));
                let got = r.by_ref().take(len as u64).read_to_end(&mut data)?;
                let mut crlf = [0u8; 2];
                if got as i64 != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a reply",
                    ));
                }
                r.read_exact(&mut crlf)?;
                if &crlf != b"\r\n" {
                    return Err(invalid("bulk string not followed by CRLF".into()));
                }
                Reply::Bulk(Some(data))
            }
        }
        "*" => {
            let n = number(rest)?;
            if n < 0 {
                Reply::Array(None)
            } else {
                if depth >= 16 {
                    return Err(invalid("replies nested too deeply".into()));
                }
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(parse_reply(r, depth + 1)?);
                }
                Reply::Array(Some(items))
            }
        }
        _ => {
            return Err(invalid(format!(
                "not a Redis reply: {:?}",
                truncate(&line, 40)
            )))
        }
    })
}

/// A connection to one server. Errors name the server and never contain the password.
struct Client {
    reader: BufReader<Stream>,
    server: String,
    password: Option<Secret>,
    timeout: Duration,
}

impl Client {
    /// Connect (TCP or unix socket), with `timeout` for connecting and every read and
    /// write, and authenticate.
    fn connect(conn: &RedisConn, timeout: Duration) -> Result<Client> {
        let server = conn.display();
        let timeout = timeout.max(Duration::from_millis(1));
        let unreachable = |e: String| {
            Error::Backup {
            path: PathBuf::from(&server),
            message: format!("cannot connect to Redis: {e}"),
            help: format!(
                "check that Redis is running and listens on {server} (port/bind/unixsocket in /etc/redis/redis.conf, `systemctl status redis-server`) and that no firewall blocks it"
            ),
        }
        };
        let stream = match &conn.socket {
            Some(path) => {
                let s = UnixStream::connect(path).map_err(|e| unreachable(e.to_string()))?;
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .map_err(|e| unreachable(e.to_string()))?;
                Stream::Unix(s)
            }
            None => {
                let host = conn.host.trim_start_matches('[').trim_end_matches(']');
                let addrs: Vec<_> = (host, conn.port)
                    .to_socket_addrs()
                    .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
                    .collect();
                let mut last = format!("{host} resolves to no address");
                let mut found = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                let s = found.ok_or_else(|| unreachable(last))?;
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .and_then(|()| s.set_nodelay(true))
                    .map_err(|e| unreachable(e.to_string()))?;
                Stream::Tcp(s)
            }
        };
        let mut client = Client {
            reader: BufReader::with_capacity(256 << 10, stream),
            server,
            password: conn.secret().cloned(),
            timeout,
        };
        client.auth(conn)?;
        Ok(client)
    }

    /// `AUTH [username] password`: the password goes onto the wire and nowhere else.
    fn auth(&mut self, conn: &RedisConn) -> Result<()> {
        let password = match (&conn.username, conn.secret()) {
            (_, Some(p)) => p.clone(),
            (Some(_), None) => Secret::new(""),
            (None, None) => return Ok(()),
        };
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &conn.username {
            args.push(user.as_bytes());
        }
        args.push(password.expose().as_bytes());
        match self.call(&args)? {
            Reply::Status(_) => Ok(()),
            Reply::Error(e) => {
                let user = conn
                    .username
                    .as_deref()
                    .map_or(String::new(), |u| format!(" as user {u:?}"));
                Err(self.fail(
                    format!("authentication{user} failed: {}", self.redact(&e)),
                    "check the Redis password (requirepass, or the ACL user's password) configured for this component".into(),
                ))
            }
            other => Err(self.unexpected("AUTH", &other)),
        }
    }

    /// An error about this server.
    fn fail(&self, message: String, help: String) -> Error {
        Error::Backup {
            path: PathBuf::from(&self.server),
            message: self.redact(&message),
            help,
        }
    }

    fn unexpected(&self, command: &str, reply: &Reply) -> Error {
        self.fail(
            format!(
                "unexpected reply to {command}: {}",
                self.redact(&reply.describe())
            ),
            format!("is {} a Redis server?", self.server),
        )
    }

    fn io_error(&self, doing: &str, e: io::Error) -> Error {
        let message = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("{doing}: no answer within {}s", self.timeout.as_secs_f64())
            }
            io::ErrorKind::UnexpectedEof => {
                format!("{doing}: the server closed the connection ({e})")
            }
            _ => format!("{doing}: {e}"),
        };
        self.fail(
            message,
            format!(
                "check that {} is a healthy Redis server; raise the timeout for a large or busy one",
                self.server
            ),
        )
    }

    fn redact(&self, text: &str) -> String {
        redact(text, self.password.as_ref())
    }

    fn name(args: &[&[u8]]) -> String {
        String::from_utf8_lossy(args.first().copied().unwrap_or(b"")).to_uppercase()
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.reader.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| self.io_error("sending to the server", e))
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut buf = Vec::new();
        encode(&mut buf, args);
        let name = Self::name(args);
        let stream = self.reader.get_mut();
        let sent = stream.write_all(&buf).and_then(|()| stream.flush());
        // The buffer may hold the password (AUTH).
        buf.fill(0);
        sent.map_err(|e| self.io_error(&format!("sending {name}"), e))
    }

    fn read_reply(&mut self) -> Result<Reply> {
        parse_reply(&mut self.reader, 0).map_err(|e| self.io_error("reading a reply", e))
    }

    /// Send and read one reply; error replies are returned, not raised.
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.send(args)?;
        let name = Self::name(args);
        parse_reply(&mut self.reader, 0)
            .map_err(|e| self.io_error(&format!("waiting for the reply to {name}"), e))
    }

    /// Like [`Client::call`], but an error reply is an error.
    fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        match self.call(args)? {
            Reply::Error(e) => {
                let name = Self::name(args);
                let help = if e.starts_with("NOAUTH") {
                    "the server requires a password: configure the Redis password for this component".to_string()
                } else if e.starts_with("NOPERM") {
                    format!(
                        "the ACL user lacks permission for {name}: grant it (ACL SETUSER … +{})",
                        name.to_lowercase()
                    )
                } else {
                    format!("{name} was refused by {}; see its log", self.server)
                };
                Err(self.fail(format!("{name} failed: {e}"), help))
            }
            reply => Ok(reply),
        }
    }

    fn int(&mut self, args: &[&[u8]]) -> Result<i64> {
        match self.command(args)? {
            Reply::Int(i) => Ok(i),
            other => Err(self.unexpected(&Self::name(args), &other)),
        }
    }

    /// `INFO section` as text.
    fn info(&mut self, section: &str) -> Result<String> {
        match self.command(&[b"INFO", section.as_bytes()])? {
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => Err(self.unexpected("INFO", &other)),
        }
    }
}

/// `field:value` from INFO text.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn crc64_matches_redis() {
        // The check value in Redis's crc64.c.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc64(crc64(0, b"1234"), b"56789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn display_never_shows_the_password() {
        let conn = RedisConn {
            password: Some(Secret::new("hunter2")),
            username: Some("tyk".into()),
            database: 2,
            ..RedisConn::default()
        };
        assert_eq!(conn.display(), "redis://127.0.0.1:6379/2");
        assert!(!format!("{conn:?}").contains("hunter2"));
        let v6 = RedisConn {
            host: "::1".into(),
            tls: true,
            ..RedisConn::default()
        };
        assert_eq!(v6.display(), "rediss://[::1]:6379/0");
        assert!(v6.is_local());
        let unix = RedisConn {
            socket: Some("/run/redis/redis.sock".into()),
            ..RedisConn::default()
        };
        assert_eq!(unix.display(), "unix:/run/redis/redis.sock");
        assert!(!RedisConn {
            host: "10.0.0.5".into(),
            ..RedisConn::default()
        }
        .is_local());
    }

    #[test]
    fn methods_serialize_kebab_case() {
        assert_eq!(
            serde_json::to_string(&RedisMethod::ConfigDirCopy).unwrap(),
            "\"config-dir-copy\""
        );
        assert_eq!(
            serde_json::to_string(&RedisMethod::RedisCliTls).unwrap(),
            "\"redis-cli-tls\""
        );
        assert_eq!(
            serde_json::to_string(&SaveMode::Bgsave).unwrap(),
            "\"bgsave\""
        );
    }

    #[test]
    fn redis_cli_gets_the_password_only_in_its_environment() {
        let conn = RedisConn {
            host: "redis.internal".into(),
            port: 6380,
            username: Some("backup".into()),
            password: Some(Secret::new("s3cret-pw")),
            database: 1,
            tls: true,
            ca_cert: Some("/etc/ssl/ca.pem".into()),
            ..RedisConn::default()
        };
        let cmd = redis_cli(Path::new("/usr/bin/redis-cli"), &conn);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--tls",
                "--cacert",
                "/etc/ssl/ca.pem",
                "-h",
                "redis.internal",
                "-p",
                "6380",
                "--user",
                "backup",
                "-n",
                "1"
            ]
        );
        assert!(!display_command(&cmd).contains("s3cret-pw"));
        let env: Vec<_> = cmd
            .get_envs()
            .filter(|(k, _)| *k == std::ffi::OsStr::new("REDISCLI_AUTH"))
            .collect();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].1.unwrap(), "s3cret-pw");
    }

    #[test]
    fn sync_payload_with_length() {
        let mut input = Cursor::new(b"\n\n\n$5\r\nREDIS+extra".to_vec());
        let mut out = Vec::new();
        assert_eq!(read_sync_payload(&mut input, &mut out).unwrap(), 5);
        assert_eq!(out, b"REDIS");
    }

    #[test]
    fn sync_payload_diskless_eof_mark() {
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut data = format!("\n$EOF:{mark}\r\n").into_bytes();
        data.extend_from_slice(&body);
        data.extend_from_slice(mark.as_bytes());
        // A reader returning small chunks, so the mark straddles reads.
        struct Chunks(Cursor<Vec<u8>>);
        impl Read for Chunks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(17);
                self.0.read(&mut buf[..n])
            }
        }
        let mut input = BufReader::with_capacity(13, Chunks(Cursor::new(data)));
        let mut out = Vec::new();
        assert_eq!(
            read_sync_payload(&mut input, &mut out).unwrap(),
            body.len() as u64
        );
        assert_eq!(out, body);
    }

    #[test]
    fn sync_payload_errors() {
        let mut out = Vec::new();
        let err = read_sync_payload(&mut Cursor::new(b"-NOPERM no\r\n".to_vec()), &mut out);
        assert!(matches!(err, Err(SyncError::Server(e)) if e == "NOPERM no"));
        let err = read_sync_payload(&mut Cursor::new(b"$10\r\nREDIS".to_vec()), &mut out);
        assert!(matches!(err, Err(SyncError::Io(_))));
        let err = read_sync_payload(
            &mut Cursor::new(format!("$EOF:{}\r\nREDIS", "x".repeat(40)).into_bytes()),
            &mut out,
        );
        assert!(matches!(err, Err(SyncError::Io(_))));
    }

    #[test]
    fn replies_parse() {
        let mut r =
            Cursor::new(b"*2\r\n$1\r\n0\r\n*2\r\n$2\r\na\x00\r\n$-1\r\n:-2\r\n-ERR x\r\n".to_vec());
        assert_eq!(
            parse_reply(&mut r, 0).unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"0".to_vec())),
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"a\0".to_vec())),
                    Reply::Bulk(None)
                ])),
            ]))
        );
        assert_eq!(parse_reply(&mut r, 0).unwrap(), Reply::Int(-2));
        assert_eq!(
            parse_reply(&mut r, 0).unwrap(),
            Reply::Error("ERR x".into())
        );
        assert!(parse_reply(&mut Cursor::new(b"$5\r\nab".to_vec()), 0).is_err());
    }

    #[test]
    fn rdb_checks() {
        let dir = std::env::temp_dir().join(format!("ferry-rdb-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A minimal valid RDB: header, EOF opcode, CRC64.
        let mut rdb = b"REDIS0010\xff".to_vec();
        let crc = crc64(0, &rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        let good = dir.join("good.rdb");
        std::fs::write(&good, &rdb).unwrap();
        let (version, checks) = check_rdb_as(&good, &good).unwrap();
        assert_eq!(version, 10);
        assert!(
            checks.iter().any(|c| c == "RDB header REDIS0010"),
            "{checks:?}"
        );
        let bad = dir.join("bad.rdb");
        std::fs::write(&bad, &rdb[..rdb.len() - 1]).unwrap();
        let e = check_rdb(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.rdb") && e.contains("truncated"), "{e}");
        std::fs::write(&bad, b"REDIX0010\xff\0\0\0\0\0\0\0\0").unwrap();
        let e = check_rdb(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.rdb") && e.contains("not an RDB file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nloading:0\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "loading"), Some("0"));
        assert_eq!(info_field(info, "nope"), None);
    }

    #[test]
    fn procedure_names_the_steps() {
        let p = restore_procedure(Path::new("/backups/redis.rdb"));
        for needle in [
            "CONFIG GET dir",
            "CONFIG GET dbfilename",
            "-o redis -g redis -m 0660 /backups/redis.rdb",
            "appendonly no",
            "DBSIZE",
            "systemctl stop",
        ] {
            assert!(p.contains(needle), "{needle}");
        }
    }
}
