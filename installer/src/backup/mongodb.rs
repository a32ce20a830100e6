//! MongoDB backups: `mongodump --archive --gzip` of one database (or the whole
//! deployment), restored with `mongorestore --drop`.
//!
//! The connection string, which may hold a password, never appears on a command line:
//! it goes into a YAML file (`uri: "..."`) of mode 0600 inside a private 0700 directory,
//! passed as `--config=<file>` (MongoDB Database Tools 100.3 and later), and removed as
//! soon as the program has exited.
//!
//! Programs are looked up on `PATH`; [`backup_with_path`] and [`restore_with_path`] take
//! the search path explicitly (tests put stand-in tools first without touching the
//! process environment).

use super::postgres::support::{
    describe, display_command, find_program, run, tail, PendingFile, PrivateDir,
};
use crate::secret::Secret;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package (from MongoDB's repository) that ships `mongodump` and
/// `mongorestore`.
pub const TOOLS_PACKAGE: &str = "mongodb-database-tools";

/// A MongoDB connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoConn {
    /// The connection string (`mongodb://` or `mongodb+srv://`); may hold a password.
    pub uri: Secret,
    /// The one database to dump or restore (`--db`, `--nsInclude`); `None`: all of them.
    pub database: Option<String>,
}

impl MongoConn {
    /// A connection from a URI and an optional database name.
    pub fn new(uri: impl Into<String>, database: Option<&str>) -> MongoConn {
        MongoConn {
            uri: Secret::new(uri),
            database: database.map(str::to_string),
        }
    }

    /// The URI with the password (and any secret-bearing option such as
    /// `authMechanismProperties`) replaced by `***`; `***` alone for text that is not a
    /// MongoDB URI.
    pub fn display(&self) -> String {
        redact_uri(self.uri.expose())
    }

    fn check(&self) -> Result<()> {
        let uri = self.uri.expose();
        let lower = uri.get(..14).unwrap_or(uri).to_ascii_lowercase();
        if !(lower.starts_with("mongodb://") || lower.starts_with("mongodb+srv://")) {
            return Err(Error::Usage(
                "the MongoDB connection string does not start with mongodb:// or mongodb+srv://\nhelp: give a MongoDB URI such as mongodb://tyk:...@mongo.example:27017/tyk_analytics?authSource=admin".into(),
            ));
        }
        if let Some(db) = &self.database {
            let bad = db.is_empty()
                || db.len() >= 64
                || db.contains(['/', '\\', '.', ' ', '"', '$', '\0']);
            if bad {
                return Err(Error::Usage(format!(
                    "invalid MongoDB database name {db:?}\nhelp: a database name has 1 to 63 bytes and none of / \\ . space \" $"
                )));
            }
        }
        Ok(())
    }

    /// The password of the URI as written and percent-decoded, for scrubbing output.
    fn passwords(&self) -> Vec<String> {
        let Some(rest) = self.uri.expose().split_once("://").map(|(_, r)| r) else {
            return Vec::new();
        };
        let Some(at) = rest.rfind('@') else {
            return Vec::new();
        };
        let Some((_, password)) = rest[..at].split_once(':') else {
            return Vec::new();
        };
        let mut out = vec![password.to_string()];
        if let Some(decoded) = percent_decode(password) {
            out.push(decoded);
        }
        out.retain(|p| !p.is_empty());
        out
    }

    /// `text` with the URI and its password replaced.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(self.uri.expose(), &self.display());
        for password in self.passwords() {
            text = text.replace(&password, "***");
        }
        text
    }
}

/// What a MongoDB backup holds; recorded in the backup set, free of secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MongoBackup {
    /// The deployment dumped, as [`MongoConn::display`] shows it, with `(database X)`
    /// appended when one database was dumped.
    pub source: String,
    /// Bytes of the gzip archive.
    pub size: u64,
    /// sha256 of the archive, hex.
    pub sha256: String,
    /// The first line of `mongodump --version`.
    pub tool_version: String,
}

/// Dump `conn` into a gzip archive at `out` (which must not exist yet), finding
/// `mongodump` on `PATH`. See [`backup_with_path`].
pub fn backup(conn: &MongoConn, out: &Path) -> Result<MongoBackup> {
    backup_with_path(conn, out, None)
}

/// [`backup`] with the search path for `mongodump` given explicitly (`None`: the
/// process's `PATH`); the program also runs with it as its `PATH`.
///
/// Runs `mongodump --config=<cfg> --archive=<out>.tmp --gzip [--db=<database>]`, where
/// `<cfg>` is a temporary 0600 file holding the URI; checks that the archive is not
/// empty and starts with the gzip magic bytes, then syncs it and renames it to `out`.
/// On failure the temporary archive is removed; a failing mongodump is an
/// [`Error::Command`] carrying its own message (with the password scrubbed).
pub fn backup_with_path(
    conn: &MongoConn,
    out: &Path,
    search_path: Option<&OsStr>,
) -> Result<MongoBackup> {
    conn.check()?;
    let mongodump = find_tool("mongodump", search_path, "to back up MongoDB databases")?;
    let tool_version = tool_version(&mongodump, search_path)?;
    let pending = PendingFile::reserve(out)?;
    let mut archive = OsString::from("--archive=");
    archive.push(pending.tmp());
    let mut extra = vec![OsString::from("--gzip")];
    if let Some(db) = &conn.database {
        extra.push(format!("--db={db}").into());
    }
    let (output, command) = run_with_config(&mongodump, conn, archive, extra, search_path)?;
    if !output.status.success() {
        return Err(Error::Command {
            what: format!("backing up MongoDB {}", conn.display()),
            command,
            status: describe(output.status),
            detail: conn.scrub(&tail(&String::from_utf8_lossy(&output.stderr), 20)),
            help: "mongodump's message above says why: check that the server is reachable from this host, the user name, password and authSource, and that the user may read the database (role backup or read)".into(),
        });
    }
    check_archive(pending.tmp(), out, "mongodump wrote")?;
    let (size, sha256) = pending.commit()?;
    let mut source = conn.display();
    if let Some(db) = &conn.database {
        source.push_str(&format!(" (database {db})"));
    }
    Ok(MongoBackup {
        source,
        size,
        sha256,
        tool_version,
    })
}

/// Restore a gzip archive made by [`backup`] into `target`, finding `mongorestore` on
/// `PATH`. See [`restore_with_path`].
pub fn restore(archive: &Path, target: &MongoConn) -> Result<()> {
    restore_with_path(archive, target, None)
}

/// [`restore`] with the search path for `mongorestore` given explicitly (`None`: the
/// process's `PATH`).
///
/// Checks the archive (not empty, gzip magic), then runs `mongorestore --config=<cfg>
/// --archive=<file> --gzip --drop [--nsInclude=<database>.*]`: each collection in the
/// archive replaces the one of the same name.
pub fn restore_with_path(
    archive: &Path,
    target: &MongoConn,
    search_path: Option<&OsStr>,
) -> Result<()> {
    target.check()?;
    let mongorestore = find_tool("mongorestore", search_path, "to restore MongoDB databases")?;
    tool_version(&mongorestore, search_path)?;
    check_archive(archive, archive, "the archive is")?;
    let mut archive_arg = OsString::from("--archive=");
    archive_arg.push(archive);
    let mut extra = vec![OsString::from("--gzip"), OsString::from("--drop")];
    if let Some(db) = &target.database {
        // nsInclude patterns treat `*` as a wildcard and `\` as an escape.
        let db = db.replace('\\', "\\\\").replace('*', "\\*");
        extra.push(format!("--nsInclude={db}.*").into());
    }
    let (output, command) =
        run_with_config(&mongorestore, target, archive_arg, extra, search_path)?;
    if !output.status.success() {
        return Err(Error::Command {
            what: format!(
                "restoring {} into MongoDB {}",
                archive.display(),
                target.display()
            ),
            command,
            status: describe(output.status),
            detail: target.scrub(&tail(&String::from_utf8_lossy(&output.stderr), 20)),
            help: "mongorestore's message above says why; collections it restored before failing were already replaced (--drop), so fix the cause and run the restore again".into(),
        });
    }
    Ok(())
}

/// Run `<program> --config=<cfg> <archive> <extra...>` with the URI in a private
/// config file that is removed before this returns.
fn run_with_config(
    program: &Path,
    conn: &MongoConn,
    archive: OsString,
    extra: Vec<OsString>,
    search_path: Option<&OsStr>,
) -> Result<(std::process::Output, String)> {
    let dir = PrivateDir::new("mongo")?;
    let config = Secret::new(format!("uri: {}\n", yaml_quote(conn.uri.expose())));
    let config_path = dir.write_secret("config.yaml", config.expose().as_bytes())?;
    let mut config_arg = OsString::from("--config=");
    config_arg.push(&config_path);
    let mut args = vec![config_arg, archive];
    args.extend(extra);
    let command = display_command(program, &args);
    let mut cmd = Command::new(program);
    cmd.args(&args);
    if let Some(path) = search_path {
        cmd.env("PATH", path);
    }
    tracing::debug!("running {command} for {}", conn.display());
    let output = run(&mut cmd).map_err(|e| Error::io(program, e))?;
    drop(dir);
    Ok((output, command))
}

/// Not empty, and starts with the gzip magic `1f 8b`.
fn check_archive(path: &Path, report: &Path, subject: &str) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match f.read(&mut magic[n..]).map_err(|e| Error::io(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    let problem = match n {
        0 => format!("{subject} an empty archive"),
        _ if magic != [0x1f, 0x8b] => {
            format!("{subject} not a gzip archive (it does not start with 1f 8b)")
        }
        _ => return Ok(()),
    };
    Err(Error::Backup {
        path: report.to_path_buf(),
        message: problem,
        help: if path == report {
            "this is not a MongoDB archive ferry made, or it is damaged; restore from another backup set".into()
        } else {
            "mongodump reported success without writing a usable archive; run it by hand with the same options to see why, and check the database name".into()
        },
    })
}

fn find_tool(program: &str, search_path: Option<&OsStr>, purpose: &str) -> Result<PathBuf> {
    find_program(program, search_path).ok_or_else(|| Error::ToolMissing {
        program: program.into(),
        package: TOOLS_PACKAGE.into(),
        purpose: purpose.into(),
    })
}

/// The first line of `<program> --version`; refuses tools older than 100.3, which lack
/// `--config`.
fn tool_version(program: &Path, search_path: Option<&OsStr>) -> Result<String> {
    let args = [OsString::from("--version")];
    let command = display_command(program, &args);
    let mut cmd = Command::new(program);
    cmd.args(&args);
    if let Some(path) = search_path {
        cmd.env("PATH", path);
    }
    let output = run(&mut cmd).map_err(|e| Error::io(program, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout.lines().next().unwrap_or("").trim().to_string();
    if !output.status.success() || version.is_empty() {
        return Err(Error::Command {
            what: format!("asking {} for its version", program.display()),
            command,
            status: describe(output.status),
            detail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            help: format!("reinstall the package {TOOLS_PACKAGE}"),
        });
    }
    if let Some((major, minor)) = tools_version(&version) {
        if (major, minor) < (100, 3) {
            return Err(Error::Command {
                what: format!("checking {}", program.display()),
                command,
                status: describe(output.status),
                detail: version,
                help: format!("ferry passes the connection string in a --config file, which MongoDB Database Tools support from version 100.3; install a newer {TOOLS_PACKAGE}"),
            });
        }
    }
    Ok(version)
}

/// `mongodump version: 100.9.4` → (100, 9); `mongodump version: r4.2.3` → (4, 2).
fn tools_version(line: &str) -> Option<(u32, u32)> {
    let v = line.split_once("version:")?.1.trim();
    let v = v.strip_prefix('r').unwrap_or(v);
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// A YAML double-quoted scalar.
fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Query options whose values are secrets.
fn secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "authmechanismproperties"
        || ["password", "secret", "token"]
            .iter()
            .any(|s| key.contains(s))
}

fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "***".into();
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    if scheme_lower != "mongodb" && scheme_lower != "mongodb+srv" {
        return "***".into();
    }
    let mut out = format!("{scheme}://");
    // The last '@' ends the credentials. Anything odd before it is hidden entirely.
    let after = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if user.contains(['/', '?', '#']) {
                out.push_str("***");
            } else {
                out.push_str(user);
                if userinfo.contains(':') {
                    out.push_str(":***");
                }
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after.split_once('?') {
        Some((hosts, query)) => {
            out.push_str(hosts);
            out.push('?');
            let options: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if secret_option(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&options.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_the_password() {
        let cases = [
            (
                "mongodb://tyk:hunter2@mongo1:27017,mongo2:27017/tyk_analytics?authSource=admin&replicaSet=rs0",
                "mongodb://tyk:***@mongo1:27017,mongo2:27017/tyk_analytics?authSource=admin&replicaSet=rs0",
            ),
            ("mongodb+srv://tyk:p%40ss@cluster.example/", "mongodb+srv://tyk:***@cluster.example/"),
            ("mongodb://mongo:27017", "mongodb://mongo:27017"),
            ("mongodb://tyk@mongo", "mongodb://tyk@mongo"),
            // Unencoded '@' and '/' in the password: still hidden.
            ("mongodb://tyk:a@b/c@mongo/db", "mongodb://tyk:***@mongo/db"),
            ("mongodb://x/y:hunter2@mongo", "mongodb://***@mongo"),
            (
                "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:hunter2",
                "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***",
            ),
            ("hunter2", "***"),
            ("http://u:hunter2@h", "***"),
        ];
        for (uri, shown) in cases {
            assert_eq!(MongoConn::new(uri, None).display(), shown, "{uri}");
        }
    }

    #[test]
    fn scrub_removes_uri_and_password() {
        let c = MongoConn::new("mongodb://tyk:p%40ss@mongo/db", None);
        let text = "failed mongodb://tyk:p%40ss@mongo/db with p@ss and p%40ss";
        assert_eq!(
            c.scrub(text),
            "failed mongodb://tyk:***@mongo/db with *** and ***"
        );
    }

    #[test]
    fn yaml_quoting() {
        assert_eq!(yaml_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(yaml_quote("x\ny\u{1}é"), "\"x\\ny\\x01é\"");
    }

    #[test]
    fn version_check() {
        assert_eq!(tools_version("mongodump version: 100.9.4"), Some((100, 9)));
        assert_eq!(tools_version("mongodump version: r4.2.3"), Some((4, 2)));
        assert_eq!(tools_version("mongodump stand-in (fake)"), None);
    }

    #[test]
    fn connection_checks() {
        assert!(MongoConn::new("postgres://x", None).check().is_err());
        assert!(MongoConn::new("MongoDB://h", Some("tyk_analytics"))
            .check()
            .is_ok());
        for bad in ["", "a.b", "a/b", "a b", "a$b", &"x".repeat(64)] {
            let e = MongoConn::new("mongodb://h", Some(bad))
                .check()
                .unwrap_err();
            assert!(
                e.to_string().contains("invalid MongoDB database name"),
                "{e}"
            );
        }
    }
}
