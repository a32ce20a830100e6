//! A real, throwaway PostgreSQL server for the backup tests, from Debian's `postgresql`
//! package: `initdb` into a temporary directory, the server listening on a free port of
//! 127.0.0.1 (password authentication, scram-sha-256) with its socket in that directory,
//! stopped with `pg_ctl stop -m immediate` on drop.
//!
//! The tests run as root and PostgreSQL refuses to, so the server runs as the `postgres`
//! system user the package creates (`runuser -u postgres`). Durability is switched off
//! (`initdb --no-sync`, `fsync=off`): start-up takes about a second.

use crate::{require_tool, TestDir};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Debian package of the server.
pub const SERVER_PACKAGE: &str = "postgresql";
/// The system user the server runs as.
pub const SERVER_USER: &str = "postgres";
/// The superuser role `initdb` creates.
pub const SUPERUSER: &str = "ferry_admin";

/// A running PostgreSQL server; stopped at drop.
pub struct PgServer {
    dir: TestDir,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
}

impl PgServer {
    /// initdb, configure and start a server; panics (naming the Debian package) when
    /// PostgreSQL is not installed.
    pub fn start() -> PgServer {
        let bin = server_bin_dir();
        require_tool("runuser", "util-linux");
        let (uid, gid) = system_user(SERVER_USER);
        let dir = TestDir::new();
        // The postgres user must reach the data directory through the temp dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("pg");
        std::fs::create_dir(&home).unwrap();
        std::fs::create_dir(home.join("sock")).unwrap();
        for p in [&home, &home.join("sock")] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        let password = format!("admin-{}", std::process::id());
        let pwfile = home.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();

        let data = home.join("data");
        let mut server = PgServer {
            dir,
            bin,
            data,
            port: 0,
            password,
        };
        let out = server.as_postgres(
            "initdb",
            &[
                "-D".as_ref(),
                server.data.as_os_str(),
                format!("--username={SUPERUSER}").as_ref(),
                format!("--pwfile={}", pwfile.display()).as_ref(),
                "--auth=scram-sha-256".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        );
        assert_success("initdb", &out);
        std::fs::remove_file(&pwfile).unwrap();
        std::fs::write(
            server.data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all ::1/128 scram-sha-256\n",
        )
        .unwrap();

        // A free port can be taken by someone else between probing and binding: retry.
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port();
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(server.data.join("postgresql.conf"))
                .unwrap();
            writeln!(
                conf,
                "\n# ferry tests\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n\
                 shared_buffers = 16MB\nmax_connections = 20\nmax_wal_senders = 0\nwal_level = minimal\n",
                server.port,
                home.join("sock").display()
            )
            .unwrap();
            let log = home.join("server.log");
            let out = server.as_postgres(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    server.data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            );
            if out.status.success() {
                server.wait_ready();
                return server;
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if !log_text.contains("could not bind") && !log_text.contains("already in use") {
                panic!(
                    "pg_ctl start failed:\n{}{}\nserver log:\n{log_text}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            last = Some(log_text);
        }
        panic!(
            "PostgreSQL found no free port:\n{}",
            last.unwrap_or_default()
        );
    }

    /// The server's TCP address.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory of the server's programs (`/usr/lib/postgresql/<version>/bin`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server's major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.bin
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse().ok())
            .expect("version directory")
    }

    /// A libpq keyword/value connection string over TCP for `user` to `db`.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={}",
            self.host(),
            self.port,
            quote_conninfo(user),
            quote_conninfo(password),
            quote_conninfo(db)
        )
    }

    /// Run SQL (any number of statements) as the superuser in `db`; panics on failure.
    /// Returns psql's unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.psql_as(SUPERUSER, &self.password, db, sql)
    }

    /// [`PgServer::psql`] as another role.
    pub fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
        let out = self.try_psql_as(user, password, db, sql);
        assert_success(&format!("psql as {user} in {db}"), &out);
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }

    /// Run SQL as `user` and return psql's output, whether it succeeded or not.
    pub fn try_psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> Output {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg(format!("--host={}", self.host()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={user}"))
            .arg(format!("--dbname={db}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clear_pg_env(&mut cmd);
        cmd.env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10");
        let mut child = cmd.spawn().expect("run psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `CREATE ROLE name LOGIN PASSWORD '...'`.
    pub fn create_role(&self, name: &str, password: &str) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {};",
                quote_ident(name),
                quote_literal(password)
            ),
        );
    }

    /// `CREATE DATABASE name [OWNER owner]` (UTF-8, from template0).
    pub fn create_database(&self, name: &str, owner: Option<&str>) {
        let owner = owner
            .map(|o| format!(" OWNER {}", quote_ident(o)))
            .unwrap_or_default();
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {}{owner} TEMPLATE template0 ENCODING 'UTF8';",
                quote_ident(name)
            ),
        );
    }

    /// `COPY (query) TO STDOUT` as the superuser: every byte of every row, in text form.
    pub fn copy_out(&self, db: &str, query: &str) -> String {
        self.psql(db, &format!("COPY ({query}) TO STDOUT;"))
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pg/server.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cmd = Command::new(self.bin.join("pg_isready"));
            cmd.args(["-q", "-h", self.host(), "-p", &self.port.to_string()]);
            clear_pg_env(&mut cmd);
            if cmd.status().map(|s| s.success()).unwrap_or(false) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run one of the server programs as the postgres user.
    fn as_postgres(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SERVER_USER, "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(self.dir.join("pg"))
            .stdin(Stdio::null());
        clear_pg_env(&mut cmd);
        cmd.env("LC_ALL", "C").env_remove("LANG");
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run runuser {program}: {e}"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let out = self.as_postgres(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    self.data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
            if !out.status.success() {
                eprintln!(
                    "pg_ctl stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// `/usr/lib/postgresql/<highest version>/bin`, holding initdb, pg_ctl and postgres.
pub fn server_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let best = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "psql", "pg_isready"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .max();
    match best {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under {}/*/bin (initdb, pg_ctl, postgres): install the Debian package {SERVER_PACKAGE} (apt-get install -y {SERVER_PACKAGE}); .ci/run does this",
            root.display()
        ),
    }
}

/// uid and gid of a system user, from `id`.
fn system_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        assert!(
            out.status.success(),
            "no {name} user: the Debian package {SERVER_PACKAGE} creates it"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A libpq keyword/value value: `'...'` with `\` and `'` escaped.
pub fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An SQL identifier in double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
