//! PostgreSQL backups: `pg_dump --format=custom` of one database, checked with
//! `pg_restore --list` and renamed into place; restored with `pg_restore --clean` in a
//! single transaction.
//!
//! The connection never appears on a command line. Every libpq keyword ferry accepts is
//! handed to the client programs through its libpq environment variable (`host` as
//! `PGHOST`, `sslmode` as `PGSSLMODE`, ...), after every inherited `PG*` variable has
//! been removed so the host environment cannot redirect a dump. The password goes into a
//! 0600 pgpass file inside a private 0700 directory that is removed as soon as the
//! program has exited (a `passfile` keyword is used only when there is no password).
//! Keywords libpq reads from no environment variable (`keepalives`, `sslpassword`, ...)
//! are refused when the connection string is parsed, and keywords the installed client
//! is too old to read from its environment (`require_auth` before 16, ...) when it runs.
//! Without a `connect_timeout`, connecting gives up after
//! [`DEFAULT_CONNECT_TIMEOUT`] seconds.
//!
//! Client programs are looked up on `PATH`; [`backup_with_path`] and
//! [`restore_with_path`] take the search path explicitly (tests put wrapper scripts
//! first without touching the process environment).

use crate::secret::Secret;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{
    describe, display_command, find_program, redact, run, tail, PendingFile, PrivateDir,
};

/// The Debian package that ships `pg_dump` and `pg_restore`.
pub const CLIENT_PACKAGE: &str = "postgresql-client";

/// Used when the connection names no `connect_timeout`: an unreachable server fails the
/// backup after this many seconds instead of hanging the installer.
pub const DEFAULT_CONNECT_TIMEOUT: &str = "30";

/// libpq keywords ferry accepts, the environment variable that carries each to the
/// client programs, and the first libpq major version that reads that variable.
const KEYWORDS: &[(&str, &str, u32)] = &[
    ("host", "PGHOST", 0),
    ("hostaddr", "PGHOSTADDR", 0),
    ("port", "PGPORT", 0),
    ("dbname", "PGDATABASE", 0),
    ("user", "PGUSER", 0),
    ("passfile", "PGPASSFILE", 0),
    ("service", "PGSERVICE", 0),
    ("servicefile", "PGSERVICEFILE", 0),
    ("options", "PGOPTIONS", 0),
    ("application_name", "PGAPPNAME", 0),
    ("client_encoding", "PGCLIENTENCODING", 0),
    ("connect_timeout", "PGCONNECT_TIMEOUT", 0),
    ("sslmode", "PGSSLMODE", 0),
    ("sslcompression", "PGSSLCOMPRESSION", 0),
    ("sslcert", "PGSSLCERT", 0),
    ("sslkey", "PGSSLKEY", 0),
    ("sslrootcert", "PGSSLROOTCERT", 0),
    ("sslcrl", "PGSSLCRL", 0),
    ("requirepeer", "PGREQUIREPEER", 0),
    ("krbsrvname", "PGKRBSRVNAME", 0),
    ("gsslib", "PGGSSLIB", 0),
    ("gssencmode", "PGGSSENCMODE", 12),
    ("channel_binding", "PGCHANNELBINDING", 13),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION", 13),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION", 13),
    ("sslcrldir", "PGSSLCRLDIR", 14),
    ("sslsni", "PGSSLSNI", 14),
    ("target_session_attrs", "PGTARGETSESSIONATTRS", 14),
    ("require_auth", "PGREQUIREAUTH", 16),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS", 16),
    ("sslcertmode", "PGSSLCERTMODE", 16),
    ("gssdelegation", "PGGSSDELEGATION", 16),
    ("sslnegotiation", "PGSSLNEGOTIATION", 17),
];

/// libpq keywords ferry refuses, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sslpassword", "libpq reads it from no environment variable and ferry puts no secret on a command line; use a client key without a passphrase"),
    ("keepalives", "libpq reads it from no environment variable; leave it out (the default keeps TCP keepalives on)"),
    ("keepalives_idle", "libpq reads it from no environment variable; leave it out"),
    ("keepalives_interval", "libpq reads it from no environment variable; leave it out"),
    ("keepalives_count", "libpq reads it from no environment variable; leave it out"),
    ("tcp_user_timeout", "libpq reads it from no environment variable; leave it out"),
    ("fallback_application_name", "libpq reads it from no environment variable; use application_name"),
    ("replication", "pg_dump does not dump over replication connections; leave it out"),
    ("requiressl", "it is deprecated; use sslmode=require"),
];

const CONNINFO_HELP: &str = "help: give a libpq connection string, either keyword=value pairs (host=db.example port=5432 dbname=tyk user=tyk password='...') or a URL (postgresql://tyk:...@db.example:5432/tyk?sslmode=verify-full)";

/// A PostgreSQL connection: libpq keywords and values, the password kept apart.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PgConn {
    /// libpq keywords (`host`, `port`, `dbname`, `user`, `sslmode`, ...) and their values;
    /// never `password`. Several hosts are one comma-separated `host` (and `port`).
    pub params: BTreeMap<String, String>,
    /// The password, if the connection string held a non-empty one.
    pub password: Option<Secret>,
}

impl PgConn {
    /// Parse a libpq connection string: keyword/value pairs (`host=a port=5432`, values
    /// quoted with `'...'` and `\` escapes as libpq does) or a URL
    /// (`postgres://` / `postgresql://user:pass@host:port,host2:port2/db?sslmode=...`,
    /// percent-decoded). Unknown keywords and keywords libpq reads from no environment
    /// variable are refused. Errors ([`Error::Usage`]) name keywords and character
    /// positions only, never text from the string, so a password cannot leak into them.
    pub fn parse(conninfo: &str) -> Result<PgConn> {
        let pairs = if let Some(rest) = strip_url_prefix(conninfo) {
            parse_url(conninfo, rest)
        } else {
            parse_keyword_value(conninfo)
        }
        .map_err(|problem| {
            Error::Usage(format!(
                "invalid PostgreSQL connection string: {problem}\n{CONNINFO_HELP}"
            ))
        })?;
        let mut conn = PgConn::default();
        for (keyword, value, position) in pairs {
            if keyword == "password" {
                conn.password = (!value.is_empty()).then(|| Secret::new(value));
                continue;
            }
            if env_var(&keyword).is_some() {
                conn.params.insert(keyword, value);
                continue;
            }
            let problem = match UNSUPPORTED.iter().find(|(k, _)| *k == keyword) {
                Some((k, why)) => format!("keyword {k:?} is not supported: {why}"),
                None => format!(
                    "unknown keyword at character {position}{}",
                    suggest(&keyword)
                        .map(|k| format!(" (did you mean {k:?}?)"))
                        .unwrap_or_default()
                ),
            };
            return Err(Error::Usage(format!(
                "invalid PostgreSQL connection string: {problem}\n{CONNINFO_HELP}"
            )));
        }
        Ok(conn)
    }

    /// `postgres://user@host:port/db` (socket directories as `?host=`), never a password.
    pub fn display(&self) -> String {
        let mut s = String::from("postgres://");
        if let Some(user) = self.params.get("user") {
            s.push_str(&percent_encode(user));
            s.push('@');
        }
        let port = self.params.get("port");
        let ports: Vec<&str> = port.map(|p| p.split(',').collect()).unwrap_or_default();
        let mut query = Vec::new();
        match self
            .params
            .get("host")
            .or_else(|| self.params.get("hostaddr"))
        {
            Some(hosts)
                if hosts
                    .split(',')
                    .any(|h| h.starts_with('/') || h.starts_with('@')) =>
            {
                query.push(format!("host={}", percent_encode(hosts)));
                if let Some(port) = port {
                    query.push(format!("port={}", percent_encode(port)));
                }
            }
            Some(hosts) => {
                for (i, host) in hosts.split(',').enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    if host.contains(':') {
                        s.push_str(&format!("[{host}]"));
                    } else {
                        s.push_str(&percent_encode(host));
                    }
                    let port = if ports.len() == 1 {
                        ports[0]
                    } else {
                        ports.get(i).copied().unwrap_or("")
                    };
                    if !port.is_empty() {
                        s.push(':');
                        s.push_str(&percent_encode(port));
                    }
                }
            }
            None => {
                if let Some(port) = port {
                    query.push(format!("port={}", percent_encode(port)));
                }
            }
        }
        if let Some(db) = self.params.get("dbname") {
            s.push('/');
            s.push_str(&percent_encode(db));
        }
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        s
    }

    /// Refuse keywords whose environment variable the installed libpq is too old to read
    /// (it would ignore them silently, e.g. `require_auth`).
    fn check_client(&self, tool: &Path, tool_version: &str) -> Result<()> {
        let Some(major) = major_version(tool_version) else {
            return Ok(());
        };
        for keyword in self.params.keys() {
            if let Some(&(_, env, since)) = KEYWORDS.iter().find(|(k, _, _)| k == keyword) {
                if major < since {
                    return Err(Error::Usage(format!(
                        "PostgreSQL connection keyword {keyword:?} needs PostgreSQL client {since} or later (it is passed as {env}), but {} is {tool_version}\nhelp: install a newer {CLIENT_PACKAGE}, or leave {keyword:?} out",
                        tool.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn password(&self) -> Option<&Secret> {
        self.password.as_ref().filter(|p| !p.is_empty())
    }
}

/// What a PostgreSQL backup holds; recorded in the backup set, free of secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgBackup {
    /// The database dumped, as [`PgConn::display`] shows it.
    pub source: String,
    /// Bytes of the dump file.
    pub size: u64,
    /// sha256 of the dump file, hex.
    pub sha256: String,
    /// `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub tool_version: String,
    /// The server version the dump records (`Dumped from database version:`).
    pub server_version: Option<String>,
    /// Entries in the dump's table of contents, as the `TOC Entries:` header of
    /// `pg_restore --list` counts them: the listed objects and data plus the encoding
    /// and search-path entries every dump has (so > 0 even for an empty database).
    pub toc_entries: usize,
}

/// What a PostgreSQL restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgRestore {
    /// Entries in the restored dump's table of contents.
    pub toc_entries: usize,
}

/// Dump the database of `conn` to `out` (custom format, which `out` must not exist yet),
/// finding `pg_dump` and `pg_restore` on `PATH`. See [`backup_with_path`].
pub fn backup(conn: &PgConn, out: &Path) -> Result<PgBackup> {
    backup_with_path(conn, out, None)
}

/// [`backup`] with the search path for the client programs given explicitly (`None`:
/// the process's `PATH`); the programs also run with it as their `PATH`.
///
/// Runs `pg_dump --format=custom --no-password --file=<out>.tmp` with the connection in
/// libpq environment variables and the password in a temporary pgpass file, checks the
/// dump with `pg_restore --list` (at least one table-of-contents entry), then syncs it
/// and renames it to `out`. On any failure the temporary file is removed and `out` is
/// not created; a failing `pg_dump` is an [`Error::Command`] carrying its own message.
pub fn backup_with_path(
    conn: &PgConn,
    out: &Path,
    search_path: Option<&OsStr>,
) -> Result<PgBackup> {
    let pg_dump = find_tool("pg_dump", search_path, "to back up PostgreSQL databases")?;
    let pg_restore = find_tool("pg_restore", search_path, "to check PostgreSQL backups")?;
    let tool_version = tool_version(&pg_dump, search_path)?;
    conn.check_client(&pg_dump, &tool_version)?;

    let pending = PendingFile::reserve(out)?;
    let mut file_arg = OsString::from("--file=");
    file_arg.push(pending.tmp());
    let args = [
        OsString::from("--format=custom"),
        OsString::from("--no-password"),
        file_arg,
    ];
    let command = display_command(&pg_dump, &args);
    let secrets = Secrets::write(conn)?;
    let mut cmd = Command::new(&pg_dump);
    cmd.args(&args);
    connection_env(&mut cmd, conn, secrets.passfile(), search_path);
    tracing::debug!("running {command} for {}", conn.display());
    let output = run(&mut cmd).map_err(|e| Error::io(&pg_dump, e))?;
    let detail = secrets.explain(&output.stderr, conn);
    // The pgpass file is gone before anything else runs.
    drop(secrets);
    if !output.status.success() {
        return Err(Error::Command {
            what: format!("backing up PostgreSQL database {}", conn.display()),
            command,
            status: describe(output.status),
            detail,
            help: "pg_dump's message above says why: check that the server is running and reachable from this host, the user name and password, pg_hba.conf, and that the user may read every table of the database".into(),
        });
    }

    let listing = list(&pg_restore, pending.tmp(), search_path)?;
    if listing.toc_entries == 0 {
        return Err(Error::Backup {
            path: out.to_path_buf(),
            message: "pg_dump wrote a dump with no table-of-contents entries".into(),
            help: format!(
                "run `pg_restore --list` on a dump of {} by hand to see what is wrong",
                conn.display()
            ),
        });
    }
    let (size, sha256) = pending.commit()?;
    Ok(PgBackup {
        source: conn.display(),
        size,
        sha256,
        tool_version,
        server_version: listing.server_version,
        toc_entries: listing.toc_entries,
    })
}

/// The size of the database `conn` names (`pg_database_size`), through `psql` with the
/// same connection handling as `pg_dump`: about what a custom-format dump takes at
/// most (it compresses). Read-only; used by `plan` to estimate the backup.
pub fn database_size(conn: &PgConn, search_path: Option<&OsStr>) -> Result<u64> {
    let psql = find_tool("psql", search_path, "to measure PostgreSQL databases")?;
    let args = [
        OsString::from("--no-psqlrc"),
        OsString::from("--no-password"),
        OsString::from("--tuples-only"),
        OsString::from("--no-align"),
        OsString::from("--command=SELECT pg_database_size(current_database())"),
    ];
    let command = display_command(&psql, &args);
    let secrets = Secrets::write(conn)?;
    let mut cmd = Command::new(&psql);
    cmd.args(&args);
    connection_env(&mut cmd, conn, secrets.passfile(), search_path);
    let output = run(&mut cmd).map_err(|e| Error::io(&psql, e))?;
    let detail = secrets.explain(&output.stderr, conn);
    drop(secrets);
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse() {
        Ok(n) if output.status.success() => Ok(n),
        _ => Err(Error::Command {
            what: format!("measuring PostgreSQL database {}", conn.display()),
            command,
            status: describe(output.status),
            detail,
            help: "check that the server is running and reachable from this host, and the user name and password".into(),
        }),
    }
}

/// Restore a custom-format dump into the database `target` names, finding `pg_restore`
/// on `PATH`. See [`restore_with_path`].
pub fn restore(dump: &Path, target: &PgConn) -> Result<PgRestore> {
    restore_with_path(dump, target, None)
}

/// [`restore`] with the search path for `pg_restore` given explicitly (`None`: the
/// process's `PATH`).
///
/// Checks the dump (custom-format header, `pg_restore --list`), then runs
/// `pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error
/// --no-password --dbname=<dbname> <dump>` with the connection in libpq environment
/// variables and the password in a temporary pgpass file. Objects of the dump that exist
/// in the database are dropped and recreated; on failure the transaction is rolled back
/// and the [`Error::Command`] carries pg_restore's message. `target` must name a
/// database (`dbname`).
pub fn restore_with_path(
    dump: &Path,
    target: &PgConn,
    search_path: Option<&OsStr>,
) -> Result<PgRestore> {
    let pg_restore = find_tool("pg_restore", search_path, "to restore PostgreSQL backups")?;
    let version = tool_version(&pg_restore, search_path)?;
    target.check_client(&pg_restore, &version)?;
    let dbname = target
        .params
        .get("dbname")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "the PostgreSQL restore target {} names no database\nhelp: add dbname=... (or /dbname in a URL) naming the database to restore into",
                target.display()
            ))
        })?;
    let dump = std::path::absolute(dump).map_err(|e| Error::io(dump, e))?;
    check_header(&dump)?;
    let listing = list(&pg_restore, &dump, search_path)?;
    if listing.toc_entries == 0 {
        return Err(Error::Backup {
            path: dump.clone(),
            message: "the dump has no table-of-contents entries".into(),
            help: "this dump is damaged; restore from another backup set".into(),
        });
    }

    let mut dbname_arg = OsString::from("--dbname=");
    dbname_arg.push(dbname_argument(dbname));
    let args = [
        OsString::from("--clean"),
        OsString::from("--if-exists"),
        OsString::from("--no-owner"),
        OsString::from("--single-transaction"),
        OsString::from("--exit-on-error"),
        OsString::from("--no-password"),
        dbname_arg,
        dump.clone().into_os_string(),
    ];
    let command = display_command(&pg_restore, &args);
    let secrets = Secrets::write(target)?;
    let mut cmd = Command::new(&pg_restore);
    cmd.args(&args);
    connection_env(&mut cmd, target, secrets.passfile(), search_path);
    tracing::debug!("running {command} for {}", target.display());
    let output = run(&mut cmd).map_err(|e| Error::io(&pg_restore, e))?;
    let detail = secrets.explain(&output.stderr, target);
    drop(secrets);
    if !output.status.success() {
        return Err(Error::Command {
            what: format!(
                "restoring {} into PostgreSQL database {}",
                dump.display(),
                target.display()
            ),
            command,
            status: describe(output.status),
            detail,
            help: "pg_restore's message above says why; it ran in a single transaction, which was rolled back, so the database is as it was. Check the connection, that the user may create and drop the dump's objects (or owns the database), and that roles the dump grants to exist".into(),
        });
    }
    Ok(PgRestore {
        toc_entries: listing.toc_entries,
    })
}

/// What `pg_restore --list` says about a dump.
struct Listing {
    toc_entries: usize,
    server_version: Option<String>,
}

/// Run `pg_restore --list <dump>` (no connection) and count the entries.
fn list(pg_restore: &Path, dump: &Path, search_path: Option<&OsStr>) -> Result<Listing> {
    let args = [OsString::from("--list"), dump.as_os_str().to_owned()];
    let command = display_command(pg_restore, &args);
    let mut cmd = Command::new(pg_restore);
    cmd.args(&args);
    clear_pg_env(&mut cmd, search_path);
    let output = run(&mut cmd).map_err(|e| Error::io(pg_restore, e))?;
    if !output.status.success() {
        return Err(Error::Command {
            what: format!("checking PostgreSQL dump {}", dump.display()),
            command,
            status: describe(output.status),
            detail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            help: "the dump cannot be read back: it is damaged, or was written by a newer pg_dump than this pg_restore".into(),
        });
    }
    Ok(parse_listing(&String::from_utf8_lossy(&output.stdout)))
}

/// The header's `TOC Entries: N` (which counts the encoding and search-path entries
/// every dump has, so an empty database's dump has some too); without that header, the
/// listed entries (non-empty lines that are not `;` comments).
fn parse_listing(text: &str) -> Listing {
    let header = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(';')?
                .trim_start()
                .strip_prefix(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    };
    let toc_entries = header("TOC Entries:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
                .count()
        });
    let server_version = header("Dumped from database version:");
    Listing {
        toc_entries,
        server_version,
    }
}

fn check_header(dump: &Path) -> Result<()> {
    let mut magic = [0u8; 5];
    let mut f = std::fs::File::open(dump).map_err(|e| Error::io(dump, e))?;
    let n = read_up_to(&mut f, &mut magic).map_err(|e| Error::io(dump, e))?;
    if &magic[..n] != b"PGDMP" {
        return Err(Error::Backup {
            path: dump.to_path_buf(),
            message: "not a pg_dump custom-format archive (it does not start with PGDMP)".into(),
            help: "give the .dump file of a PostgreSQL backup ferry made".into(),
        });
    }
    Ok(())
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The `--dbname` value for pg_restore: a plain name, unless libpq would take it for a
/// connection string (it contains `=` or starts with a URL prefix); then it is wrapped
/// as `dbname='...'`, the rest of the connection still coming from the environment.
fn dbname_argument(dbname: &str) -> String {
    if dbname.contains('=') || strip_url_prefix(dbname).is_some() {
        let escaped = dbname.replace('\\', "\\\\").replace('\'', "\\'");
        format!("dbname='{escaped}'")
    } else {
        dbname.to_string()
    }
}

/// The pgpass file of one client run, in a private directory removed at drop.
struct Secrets {
    dir: Option<PrivateDir>,
    passfile: Option<PathBuf>,
}

impl Secrets {
    fn write(conn: &PgConn) -> Result<Secrets> {
        let Some(password) = conn.password() else {
            return Ok(Secrets {
                dir: None,
                passfile: None,
            });
        };
        let text = password.expose();
        if text.contains(['\n', '\r']) {
            return Err(Error::Usage(format!(
                "the password for {} contains a line break, which a pgpass file cannot hold\nhelp: change the database user's password",
                conn.display()
            )));
        }
        // pgpass: host:port:database:user:password, `\` escaping `:` and `\`. The file
        // serves this one run, so every field but the password is a wildcard.
        let line = Secret::new(format!(
            "*:*:*:*:{}\n",
            text.replace('\\', "\\\\").replace(':', "\\:")
        ));
        let dir = PrivateDir::new("pg")?;
        let passfile = dir.write_secret("pgpass", line.expose().as_bytes())?;
        Ok(Secrets {
            dir: Some(dir),
            passfile: Some(passfile),
        })
    }

    fn passfile(&self) -> Option<&Path> {
        debug_assert_eq!(self.dir.is_some(), self.passfile.is_some());
        self.passfile.as_deref()
    }

    /// The last lines of a client's stderr, the password scrubbed and the temporary
    /// pgpass file (which libpq names when its password is refused) explained.
    fn explain(&self, stderr: &[u8], conn: &PgConn) -> String {
        let mut text = redact(&tail(&String::from_utf8_lossy(stderr), 20), conn.password());
        if let Some(passfile) = &self.passfile {
            text = text.replace(
                &format!("\"{}\"", passfile.display()),
                "(ferry's temporary pgpass file holding the connection string's password)",
            );
        }
        text
    }
}

/// Remove every inherited `PG*` variable; run with `search_path` as `PATH` if given.
fn clear_pg_env(cmd: &mut Command, search_path: Option<&OsStr>) {
    use std::os::unix::ffi::OsStrExt;
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    if let Some(path) = search_path {
        cmd.env("PATH", path);
    }
}

/// The libpq environment of a connection: inherited `PG*` cleared, every keyword as its
/// variable, the pgpass file as `PGPASSFILE`, a connect timeout unless one is given.
fn connection_env(
    cmd: &mut Command,
    conn: &PgConn,
    passfile: Option<&Path>,
    search_path: Option<&OsStr>,
) {
    clear_pg_env(cmd, search_path);
    for (keyword, value) in &conn.params {
        if let Some(var) = env_var(keyword) {
            cmd.env(var, value);
        }
    }
    if let Some(passfile) = passfile {
        cmd.env("PGPASSFILE", passfile);
    }
    if !conn.params.contains_key("connect_timeout") {
        cmd.env("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT);
    }
    cmd.env_remove("PGPASSWORD");
}

fn env_var(keyword: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .find(|(k, _, _)| *k == keyword)
        .map(|(_, env, _)| *env)
}

fn find_tool(program: &str, search_path: Option<&OsStr>, purpose: &str) -> Result<PathBuf> {
    find_program(program, search_path).ok_or_else(|| Error::ToolMissing {
        program: program.into(),
        package: CLIENT_PACKAGE.into(),
        purpose: purpose.into(),
    })
}

/// `<program> --version`, trimmed.
fn tool_version(program: &Path, search_path: Option<&OsStr>) -> Result<String> {
    let args = [OsString::from("--version")];
    let mut cmd = Command::new(program);
    cmd.args(&args);
    clear_pg_env(&mut cmd, search_path);
    let output = run(&mut cmd).map_err(|e| Error::io(program, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout.lines().next().unwrap_or("").trim().to_string();
    if !output.status.success() || version.is_empty() {
        return Err(Error::Command {
            what: format!("asking {} for its version", program.display()),
            command: display_command(program, &args),
            status: describe(output.status),
            detail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            help: format!("reinstall the Debian package {CLIENT_PACKAGE}"),
        });
    }
    Ok(version)
}

/// `pg_dump (PostgreSQL) 15.18 (Debian ...)` → 15; `9.6.24` → 9.
fn major_version(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|w| {
            let digits: String = w.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
}

fn strip_url_prefix(s: &str) -> Option<&str> {
    s.strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
}

/// A parsed keyword, its value, and its 1-based character position in the input.
type Pairs = Vec<(String, String, usize)>;

/// libpq's keyword/value syntax: `kw = value` pairs separated by whitespace; a value is
/// either `'quoted'` (with `\'` and `\\`) or runs to the next whitespace (`\` escapes
/// the next character there too).
fn parse_keyword_value(s: &str) -> std::result::Result<Pairs, String> {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut pairs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < n && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= n {
            break;
        }
        let start = i;
        while i < n && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let keyword: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if i >= n || chars[i] != '=' {
            return Err(if is_known_keyword(&keyword) {
                format!("missing \"=\" after {keyword:?}")
            } else {
                format!("expected keyword=value at character {}", start + 1)
            });
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if i < n && chars[i] == '\'' {
            let open = i;
            i += 1;
            loop {
                if i >= n {
                    return Err(format!(
                        "unterminated quoted string starting at character {}",
                        open + 1
                    ));
                }
                match chars[i] {
                    '\\' if i + 1 < n => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    '\\' => i += 1,
                    '\'' => {
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < n && !chars[i].is_whitespace() {
                if chars[i] == '\\' {
                    if i + 1 < n {
                        value.push(chars[i + 1]);
                    }
                    i += 2;
                } else {
                    value.push(chars[i]);
                    i += 1;
                }
            }
        }
        pairs.push((keyword, value, start + 1));
    }
    Ok(pairs)
}

/// libpq's URL syntax:
/// `postgres[ql]://[user[:password]@][host][:port][,...][/dbname][?param=value&...]`.
fn parse_url(whole: &str, rest: &str) -> std::result::Result<Pairs, String> {
    let base = whole.len() - rest.len();
    let at = |offset: usize| whole[..base + offset].chars().count() + 1;
    let mut pairs: Pairs = Vec::new();
    let mut p = 0;
    let bytes = rest.as_bytes();

    // user[:password]@ — libpq looks for '@' before the first '/'.
    let end = rest.find(['@', '/']).unwrap_or(rest.len());
    if bytes.get(end) == Some(&b'@') {
        let userinfo = &rest[..end];
        let (user, password) = match userinfo.find(':') {
            Some(c) => (&userinfo[..c], Some((&userinfo[c + 1..], c + 1))),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            pairs.push(("user".into(), percent_decode(user, at(0))?, at(0)));
        }
        if let Some((password, offset)) = password {
            pairs.push((
                "password".into(),
                percent_decode(password, at(offset))?,
                at(offset),
            ));
        }
        p = end + 1;
    }

    // host[:port] list up to '/' or '?'.
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    loop {
        let start = p;
        let host = if bytes.get(p) == Some(&b'[') {
            let close = rest[p..]
                .find(']')
                .map(|c| p + c)
                .ok_or_else(|| format!("unterminated [IPv6 address] at character {}", at(p)))?;
            if close == p + 1 {
                return Err(format!("empty [IPv6 address] at character {}", at(p)));
            }
            p = close + 1;
            rest[start + 1..close].to_string()
        } else {
            let e = rest[p..]
                .find([':', '/', '?', ','])
                .map_or(rest.len(), |e| p + e);
            let host = percent_decode(&rest[p..e], at(p))?;
            p = e;
            host
        };
        let mut port = String::new();
        if bytes.get(p) == Some(&b':') {
            let e = rest[p + 1..]
                .find(['/', '?', ','])
                .map_or(rest.len(), |e| p + 1 + e);
            port = percent_decode(&rest[p + 1..e], at(p + 1))?;
            check_port(&port, at(p + 1))?;
            p = e;
        } else if p < rest.len() && !matches!(bytes[p], b'/' | b'?' | b',') {
            return Err(format!(
                "unexpected character after the host at character {}",
                at(p)
            ));
        }
        hosts.push(host);
        ports.push(port);
        if bytes.get(p) == Some(&b',') {
            p += 1;
            continue;
        }
        break;
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".into(), hosts.join(","), at(0)));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".into(), ports.join(","), at(0)));
    }

    // /dbname
    if bytes.get(p) == Some(&b'/') {
        let e = rest[p + 1..].find('?').map_or(rest.len(), |e| p + 1 + e);
        let db = percent_decode(&rest[p + 1..e], at(p + 1))?;
        if !db.is_empty() {
            pairs.push(("dbname".into(), db, at(p + 1)));
        }
        p = e;
    }

    // ?keyword=value&...
    if bytes.get(p) == Some(&b'?') {
        p += 1;
        for param in rest[p..].split('&') {
            let offset = p;
            p += param.len() + 1;
            if param.is_empty() {
                continue;
            }
            let Some((raw_key, raw_value)) = param.split_once('=') else {
                return Err(format!(
                    "URL parameter at character {} has no \"=\"",
                    at(offset)
                ));
            };
            if raw_value.contains('=') {
                return Err(format!(
                    "URL parameter at character {} has more than one \"=\"",
                    at(offset)
                ));
            }
            let k = percent_decode(raw_key, at(offset))?;
            let v = percent_decode(raw_value, at(offset + raw_key.len() + 1))?;
            if k == "ssl" && v == "true" {
                pairs.push(("sslmode".into(), "require".into(), at(offset)));
            } else {
                pairs.push((k, v, at(offset)));
            }
        }
    } else if p < rest.len() {
        return Err(format!("unexpected character at character {}", at(p)));
    }
    Ok(pairs)
}

fn check_port(port: &str, position: usize) -> std::result::Result<(), String> {
    let ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && (1..=65535).contains(&port.parse::<u32>().unwrap_or(0));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the port at character {position} is not a number from 1 to 65535"
        ))
    }
}

fn percent_decode(s: &str, position: usize) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(0) => {
                    return Err(format!(
                        "%00 is not allowed in the part starting at character {position}"
                    ))
                }
                Some(byte) => out.push(byte),
                None => {
                    return Err(format!(
                        "invalid percent-encoding in the part starting at character {position}"
                    ))
                }
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        format!("percent-encoding in the part starting at character {position} is not UTF-8")
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_known_keyword(keyword: &str) -> bool {
    keyword == "password"
        || env_var(keyword).is_some()
        || UNSUPPORTED.iter().any(|(k, _)| *k == keyword)
}

/// The accepted keyword closest to a misspelt one (edit distance at most 2).
fn suggest(unknown: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .map(|(k, _, _)| *k)
        .chain(["password"])
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Helpers the PostgreSQL and MongoDB backups share: finding programs, private
/// directories for credentials, temporary output renamed into place.
pub(super) mod support {
    use crate::{Error, Result};
    use sha2::{Digest, Sha256};
    use std::fs::OpenOptions;
    use std::io::{self, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) use crate::tools::{describe, display_command, find_program, redact, tail};

    /// Run with stdin closed, capturing stdout and stderr.
    pub(crate) fn run(cmd: &mut Command) -> io::Result<Output> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
    }

    /// A fresh mode-0700 directory under the temp dir, removed with its contents at drop.
    #[derive(Debug)]
    pub(crate) struct PrivateDir {
        path: PathBuf,
    }

    impl PrivateDir {
        pub(crate) fn new(label: &str) -> Result<PrivateDir> {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let base = std::env::temp_dir();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            for _ in 0..100 {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let path = base.join(format!(
                    "ferry-{label}-{}-{nanos:08x}-{n}",
                    std::process::id()
                ));
                // `create` fails on an existing name, so a directory planted by someone
                // else is never used.
                match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                    Ok(()) => {
                        let dir = PrivateDir { path };
                        std::fs::set_permissions(&dir.path, PermissionsExt::from_mode(0o700))
                            .map_err(|e| Error::io(&dir.path, e))?;
                        return Ok(dir);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            Err(Error::Backup {
                path: base,
                message: "cannot create a private temporary directory: every name tried exists"
                    .into(),
                help: "clean up ferry-* directories in the temporary directory, or set TMPDIR"
                    .into(),
            })
        }

        /// Write a new mode-0600 file in the directory.
        pub(crate) fn write_secret(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
            let path = self.path.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(bytes).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        }
    }

    impl Drop for PrivateDir {
        fn drop(&mut self) {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }

    /// `<out>.tmp`, created empty with mode 0600 next to `out` for a program to write;
    /// removed at drop unless [`PendingFile::commit`] renamed it to `out`.
    #[derive(Debug)]
    pub(crate) struct PendingFile {
        out: PathBuf,
        tmp: PathBuf,
        committed: bool,
    }

    impl PendingFile {
        /// Refuses an existing `out`; replaces a stale `<out>.tmp` left by an interrupted run.
        pub(crate) fn reserve(out: &Path) -> Result<PendingFile> {
            if out.file_name().is_none() {
                return Err(Error::Backup {
                    path: out.to_path_buf(),
                    message: "not a file name".into(),
                    help: "give the path of the backup file to write".into(),
                });
            }
            if std::fs::symlink_metadata(out).is_ok() {
                return Err(Error::Backup {
                    path: out.to_path_buf(),
                    message: "already exists".into(),
                    help: "backups never overwrite a file; choose a new path".into(),
                });
            }
            let mut tmp = out.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            match std::fs::remove_file(&tmp) {
                Ok(()) => tracing::warn!("removed stale {}", tmp.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&tmp, e)),
            }
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            Ok(PendingFile {
                out: out.to_path_buf(),
                tmp,
                committed: false,
            })
        }

        pub(crate) fn tmp(&self) -> &Path {
            &self.tmp
        }

        /// Sync the file, hash it, rename it to `out` and sync the directory; returns
        /// its size and sha256.
        pub(crate) fn commit(mut self) -> Result<(u64, String)> {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.tmp)
                .map_err(|e| Error::io(&self.tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
            let mut hasher = Sha256::new();
            let size = io::copy(&mut f, &mut hasher).map_err(|e| Error::io(&self.tmp, e))?;
            let sha256 = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
            self.committed = true;
            let dir = match self.out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            super::super::files::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
            Ok((size, sha256))
        }
    }

    impl Drop for PendingFile {
        fn drop(&mut self) {
            if !self.committed {
                match std::fs::remove_file(&self.tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("cannot remove {}: {e}", self.tmp.display()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(conn: &PgConn) -> Vec<(&str, &str)> {
        conn.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn keyword_value_form() {
        let c = PgConn::parse(
            "host=db.example port = 5433 dbname=tyk_analytics user=tyk password=s3cret sslmode=verify-full sslrootcert=/etc/ssl/ca.pem",
        )
        .unwrap();
        assert_eq!(
            params(&c),
            [
                ("dbname", "tyk_analytics"),
                ("host", "db.example"),
                ("port", "5433"),
                ("sslmode", "verify-full"),
                ("sslrootcert", "/etc/ssl/ca.pem"),
                ("user", "tyk"),
            ]
        );
        assert_eq!(c.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(c.display(), "postgres://tyk@db.example:5433/tyk_analytics");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn keyword_value_quoting() {
        let c = PgConn::parse(
            r"password='it''s' user='o\'brien' dbname='my db' options='-c search_path=a\\b' host=a\ b",
        );
        // libpq has no '' doubling: 'it' then 's' run together would be a syntax error.
        assert!(c.is_err());
        let c = PgConn::parse(
            r"password='p\'a ss:\\w' user='o\'brien' dbname='my db' options='-c x=a\\b' host=a\ b application_name=''",
        )
        .unwrap();
        assert_eq!(c.password.as_ref().unwrap().expose(), r"p'a ss:\w");
        assert_eq!(c.params["user"], "o'brien");
        assert_eq!(c.params["dbname"], "my db");
        assert_eq!(c.params["options"], r"-c x=a\b");
        assert_eq!(c.params["host"], "a b");
        assert_eq!(c.params["application_name"], "");
        // Empty input: every default (local socket).
        assert_eq!(PgConn::parse("  ").unwrap(), PgConn::default());
        // An empty password is no password.
        assert_eq!(PgConn::parse("password=''").unwrap().password, None);
    }

    #[test]
    fn url_form() {
        let c = PgConn::parse(
            "postgresql://tyk%40corp:p%40ss%3Aw%2Fd@db1.example:5432,db2.example:5433/tyk%20analytics?sslmode=require&connect_timeout=5&application_name=ferry",
        )
        .unwrap();
        assert_eq!(
            params(&c),
            [
                ("application_name", "ferry"),
                ("connect_timeout", "5"),
                ("dbname", "tyk analytics"),
                ("host", "db1.example,db2.example"),
                ("port", "5432,5433"),
                ("sslmode", "require"),
                ("user", "tyk@corp"),
            ]
        );
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss:w/d");
        assert_eq!(
            c.display(),
            "postgres://tyk%40corp@db1.example:5432,db2.example:5433/tyk%20analytics"
        );

        let c = PgConn::parse("postgres://[::1]:5432/tyk?ssl=true").unwrap();
        assert_eq!(c.params["host"], "::1");
        assert_eq!(c.params["sslmode"], "require");
        assert_eq!(c.display(), "postgres://[::1]:5432/tyk");

        let c = PgConn::parse("postgres:///tyk?host=%2Fvar%2Frun%2Fpostgresql").unwrap();
        assert_eq!(
            params(&c),
            [("dbname", "tyk"), ("host", "/var/run/postgresql")]
        );
        assert_eq!(
            c.display(),
            "postgres:///tyk?host=%2Fvar%2Frun%2Fpostgresql"
        );

        let c = PgConn::parse("postgresql://user@host").unwrap();
        assert_eq!(params(&c), [("host", "host"), ("user", "user")]);
        assert_eq!(c.password, None);

        // One port for several hosts, and a host without a port.
        let c = PgConn::parse("postgresql://a,b:6000/x").unwrap();
        assert_eq!(c.params["host"], "a,b");
        assert_eq!(c.params["port"], ",6000");
        assert_eq!(c.display(), "postgres://a,b:6000/x");

        assert_eq!(PgConn::parse("postgresql://").unwrap(), PgConn::default());
    }

    #[test]
    fn errors_name_the_problem_not_the_password() {
        let cases = [
            (
                "host=a password=hunter2 bogus=1",
                "unknown keyword at character 25",
            ),
            ("host=a sslmod=require", "did you mean \"sslmode\""),
            ("host=a password", "missing \"=\" after \"password\""),
            (
                "password=hunter2 x",
                "expected keyword=value at character 18",
            ),
            ("password='hunter2", "unterminated quoted string"),
            ("host=a keepalives=1", "\"keepalives\" is not supported"),
            ("sslpassword=hunter2", "\"sslpassword\" is not supported"),
            (
                "postgres://u:hunter2@h:99999/db",
                "not a number from 1 to 65535",
            ),
            (
                "postgres://u:hunter2@h:5x/db",
                "not a number from 1 to 65535",
            ),
            ("postgres://u:hunter2%zz@h/db", "invalid percent-encoding"),
            ("postgres://u:hunter2%00@h/db", "%00 is not allowed"),
            ("postgres://u:hunter2@h/db?hunter2", "has no \"=\""),
            ("postgres://u:hunter2@h/db?frob=hunter2", "unknown keyword"),
            (
                "postgres://u:hunter2@[::1/db",
                "unterminated [IPv6 address]",
            ),
        ];
        for (input, expected) in cases {
            let e = PgConn::parse(input).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{input}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(expected), "{input}: {text}");
            assert!(!text.contains("hunter2"), "{input}: {text}");
            assert!(text.contains("help: "), "{input}: {text}");
        }
    }

    #[test]
    fn display_never_shows_the_password() {
        for input in [
            "host=h user=u password=hunter2",
            "postgresql://u:hunter2@h/db",
            "postgresql://:hunter2@h",
        ] {
            let c = PgConn::parse(input).unwrap();
            assert!(!c.display().contains("hunter2"), "{}", c.display());
            assert_eq!(c.password.as_ref().unwrap().expose(), "hunter2");
        }
        let c = PgConn::parse("host=/run/pg,/tmp port=5432 user=u").unwrap();
        assert_eq!(
            c.display(),
            "postgres://u@?host=%2Frun%2Fpg%2C%2Ftmp&port=5432"
        );
    }

    #[test]
    fn new_keywords_need_a_new_client() {
        let c = PgConn::parse("host=h require_auth=scram-sha-256").unwrap();
        let e = c
            .check_client(Path::new("/usr/bin/pg_dump"), "pg_dump (PostgreSQL) 15.18")
            .unwrap_err();
        assert!(e.to_string().contains("needs PostgreSQL client 16"), "{e}");
        c.check_client(Path::new("pg_dump"), "pg_dump (PostgreSQL) 16.4")
            .unwrap();
        assert_eq!(major_version("pg_dump (PostgreSQL) 9.6.24"), Some(9));
    }

    #[test]
    fn listing_counts_entries() {
        let text = "\
;
; Archive created at 2026-01-01 00:00:00 UTC
;     dbname: tyk
;     TOC Entries: 6
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)
;
; Selected TOC Entries:
;
215; 1259 16385 TABLE public t postgres
3340; 0 16385 TABLE DATA public t postgres
";
        let l = parse_listing(text);
        assert_eq!(l.toc_entries, 6);
        // Without the header: the listed entries.
        let l = parse_listing(&text.replace(";     TOC Entries: 6\n", ""));
        assert_eq!(l.toc_entries, 2);
        assert_eq!(
            l.server_version.as_deref(),
            Some("15.18 (Debian 15.18-0+deb12u1)")
        );
    }

    #[test]
    fn dbname_that_looks_like_a_connection_string_is_quoted() {
        assert_eq!(dbname_argument("tyk"), "tyk");
        assert_eq!(dbname_argument("a=b"), r"dbname='a=b'");
        assert_eq!(
            dbname_argument(r"postgres://x'\"),
            r"dbname='postgres://x\'\\'"
        );
    }

    #[test]
    fn every_keyword_is_a_libpq_variable() {
        for (keyword, env, _) in KEYWORDS {
            assert!(env.starts_with("PG"), "{keyword}");
            assert!(!UNSUPPORTED.iter().any(|(k, _)| k == keyword), "{keyword}");
        }
        assert!(env_var("password").is_none());
    }
}
