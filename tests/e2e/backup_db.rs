//! Database backups: PostgreSQL against real throwaway servers (dump over TCP with a
//! password, restore into fresh databases and over a changed one, row by row), and
//! MongoDB against the stand-in tools (MongoDB itself cannot be installed here), which
//! show exactly what ferry hands to mongodump and mongorestore.

use ferry_installer::backup::mongodb::{self, MongoConn};
use ferry_installer::backup::postgres::{self, PgConn};
use ferry_installer::Error;
use ferry_tests::fake_mongo::{FakeMongoTools, ARCHIVE_CONTENT, STAND_IN_VERSION};
use ferry_tests::postgres_server::PgServer;
use ferry_tests::{require_tool, sha256_file, TestDir};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The backup role's password: `:` and `\` need escaping in a pgpass file, quotes in a
/// conninfo string, the rest in a URL.
const TYK_PASSWORD: &str = r#"Tyk:pa\ss 'w"ord' ü@/#1"#;

/// Tables of every kind of value the Tyk dashboard keeps, plus a sequence, an index and
/// a view.
const FIXTURE: &str = r#"
CREATE SEQUENCE ticket_seq START 100;
CREATE TABLE apis (
    id serial PRIMARY KEY,
    name text NOT NULL,
    note text,
    price numeric(14,4),
    blob bytea,
    active boolean,
    created timestamptz,
    spec jsonb
);
INSERT INTO apis (name, note, price, blob, active, created, spec) VALUES
    ('Zürich — 東京 🚀', 'it''s "quoted" \ back\slash', 12345678.1234, '\x00ff10'::bytea, true,
     '2026-11-21 03:04:05+00', '{"listen_path": "/zürich/", "n": 1}'),
    (E'tab\tand\nnewline', NULL, -0.0001, NULL, NULL, NULL, NULL),
    ('', '', 0, ''::bytea, false, '1970-01-01 00:00:00+00', '[]'),
    ('bytes', E'\u00e9 \\N', 99.5, decode(repeat('00ff7f80', 512), 'hex'), true, now(),
     '{"k": [1, 2, null]}');
CREATE INDEX apis_name_idx ON apis (name);
CREATE VIEW expensive_apis AS SELECT id, name, price FROM apis WHERE price > 10;
CREATE TABLE keys (
    key text PRIMARY KEY,
    api_id int REFERENCES apis (id),
    hits bigint NOT NULL DEFAULT nextval('ticket_seq'),
    secret_hash bytea
);
INSERT INTO keys (key, api_id, secret_hash)
    SELECT 'key-' || g, 1 + g % 3, sha256(g::text::bytea) FROM generate_series(1, 500) g;
CREATE TABLE empty_table (x int);
"#;

/// A database with the fixture, owned by role `tyk`.
fn tyk_database(pg: &PgServer, db: &str) {
    pg.create_database(db, Some("tyk"));
    pg.psql_as("tyk", TYK_PASSWORD, db, FIXTURE);
}

/// Every row of every table (ordered `COPY ... TO STDOUT`), the sequences, indexes and
/// views of `db`'s public schema.
fn snapshot(pg: &PgServer, db: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let tables = pg.psql(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;",
    );
    for table in tables.lines() {
        out.insert(
            format!("table {table}"),
            pg.copy_out(db, &format!("SELECT * FROM public.\"{table}\" ORDER BY 1")),
        );
    }
    out.insert(
        "sequences".into(),
        pg.copy_out(
            db,
            "SELECT sequencename, start_value, increment_by, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
        ),
    );
    out.insert(
        "indexes".into(),
        pg.copy_out(
            db,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        ),
    );
    out.insert(
        "views".into(),
        pg.copy_out(
            db,
            "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
        ),
    );
    out.insert(
        "view rows".into(),
        pg.copy_out(db, "SELECT * FROM expensive_apis ORDER BY id"),
    );
    out
}

/// A `pg_dump` wrapper script that records its argv, its `PG*` environment and the
/// pgpass file it was given, then runs the real pg_dump.
struct PgDumpRecorder {
    dir: TestDir,
}

impl PgDumpRecorder {
    fn new(pg: &PgServer) -> PgDumpRecorder {
        require_tool("stat", "coreutils");
        let dir = TestDir::new();
        std::fs::create_dir(dir.join("bin")).unwrap();
        std::fs::create_dir(dir.join("log")).unwrap();
        let script = format!(
            r#"#!/bin/sh
log='{log}'
printf '%s\n' "$@" > "$log/argv"
env | grep '^PG' | sort > "$log/env"
if [ -n "$PGPASSFILE" ]; then
    printf '%s\n' "$PGPASSFILE" > "$log/passfile"
    stat -c %a "$PGPASSFILE" > "$log/passfile-mode"
    stat -c %a "$(dirname "$PGPASSFILE")" > "$log/passfile-dir-mode"
fi
exec '{real}' "$@"
"#,
            log = dir.join("log").display(),
            real = pg.bin_dir().join("pg_dump").display(),
        );
        let path = dir.join("bin/pg_dump");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        PgDumpRecorder { dir }
    }

    fn search_path(&self) -> OsString {
        let mut dirs = vec![self.dir.join("bin")];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("log").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn tmp_of(out: &Path) -> PathBuf {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn postgres_backup_restores_every_row_into_fresh_databases() {
    let second = std::thread::spawn(PgServer::start);
    let pg = PgServer::start();
    pg.create_role("tyk", TYK_PASSWORD);
    tyk_database(&pg, "tyk_analytics");
    let before = snapshot(&pg, "tyk_analytics");
    assert!(
        before["table apis"].contains("Zürich — 東京 🚀"),
        "{before:?}"
    );
    assert!(before["table apis"].contains(r"\\x00ff10"), "{before:?}");
    assert_eq!(before["table keys"].lines().count(), 500);
    assert!(
        before["sequences"].contains("ticket_seq\t100\t1\t599"),
        "{before:?}"
    );

    let recorder = PgDumpRecorder::new(&pg);
    let work = TestDir::new();
    let out = work.join("tyk_analytics.dump");
    let conn = PgConn::parse(&pg.conninfo("tyk", TYK_PASSWORD, "tyk_analytics")).unwrap();
    let backup = postgres::backup_with_path(&conn, &out, Some(&recorder.search_path())).unwrap();

    // What pg_dump was given: no connection and no password on its command line, the
    // connection in libpq variables, the password in a private pgpass file.
    let argv = recorder.log("argv");
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "--format=custom",
            "--no-password",
            &format!("--file={}", tmp_of(&out).display()),
        ]
    );
    let env = recorder.log("env");
    for var in [
        format!("PGHOST={}", pg.host()),
        format!("PGPORT={}", pg.port()),
        "PGUSER=tyk".into(),
        "PGDATABASE=tyk_analytics".into(),
        "PGCONNECT_TIMEOUT=30".into(),
    ] {
        assert!(env.lines().any(|l| l == var), "{var} missing from:\n{env}");
    }
    assert!(!env.contains("PGPASSWORD"), "{env}");
    for text in [&argv, &env] {
        assert!(!text.contains(TYK_PASSWORD), "{text}");
        assert!(!text.contains("pa\\ss"), "{text}");
    }
    let passfile = PathBuf::from(recorder.log("passfile").trim());
    assert_eq!(recorder.log("passfile-mode").trim(), "600");
    assert_eq!(recorder.log("passfile-dir-mode").trim(), "700");
    assert!(!passfile.exists(), "{} was left behind", passfile.display());
    assert!(
        !passfile.parent().unwrap().exists(),
        "{} was left behind",
        passfile.parent().unwrap().display()
    );

    // The dump and its record.
    assert!(!tmp_of(&out).exists());
    assert_eq!(mode(&out), 0o600);
    assert_eq!(backup.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(backup.sha256, sha256_file(&out));
    assert_eq!(
        backup.source,
        format!("postgres://tyk@127.0.0.1:{}/tyk_analytics", pg.port())
    );
    assert!(
        backup.tool_version.starts_with("pg_dump (PostgreSQL) "),
        "{}",
        backup.tool_version
    );
    let server_version = backup.server_version.clone().expect("server version");
    assert!(
        server_version.starts_with(&format!("{}.", pg.major_version())),
        "{server_version}"
    );
    // 3 tables, their data, a view, 2 sequences and their values, constraints, an index...
    assert!(backup.toc_entries >= 15, "{backup:?}");
    let json = serde_json::to_string(&backup).unwrap();
    assert!(!json.contains("pa\\ss") && !json.contains("Tyk:"), "{json}");

    // Into a fresh database of the same server.
    pg.create_database("restored", Some("tyk"));
    let target = PgConn::parse(&pg.conninfo("tyk", TYK_PASSWORD, "restored")).unwrap();
    let restored = postgres::restore(&out, &target).unwrap();
    assert_eq!(restored.toc_entries, backup.toc_entries);
    assert_eq!(snapshot(&pg, "restored"), before);

    // Into a fresh server, connecting with a URL and another password.
    let pg2 = second.join().unwrap();
    let other_password = "other:pass/wörd@#?";
    pg2.create_role("tyk", other_password);
    pg2.create_database("tyk_analytics", Some("tyk"));
    let url = format!(
        "postgresql://tyk:{}@127.0.0.1:{}/tyk_analytics?sslmode=disable&application_name=ferry",
        percent_encode(other_password),
        pg2.port()
    );
    let target = PgConn::parse(&url).unwrap();
    postgres::restore(&out, &target).unwrap();
    assert_eq!(snapshot(&pg2, "tyk_analytics"), before);
}

#[test]
fn postgres_restore_over_a_changed_database_brings_back_the_backup() {
    let pg = PgServer::start();
    pg.create_role("tyk", TYK_PASSWORD);
    tyk_database(&pg, "tyk_analytics");
    let before = snapshot(&pg, "tyk_analytics");
    let work = TestDir::new();
    let out = work.join("tyk.dump");
    let conn = PgConn::parse(&pg.conninfo("tyk", TYK_PASSWORD, "tyk_analytics")).unwrap();
    postgres::backup(&conn, &out).unwrap();

    pg.psql_as(
        "tyk",
        TYK_PASSWORD,
        "tyk_analytics",
        "UPDATE apis SET name = 'changed', price = 1, blob = NULL;
         DELETE FROM keys WHERE api_id = 2;
         INSERT INTO keys (key, api_id) VALUES ('added-after-backup', 1);
         SELECT setval('ticket_seq', 5000);
         DROP VIEW expensive_apis;
         DROP INDEX apis_name_idx;
         CREATE VIEW expensive_apis AS SELECT id, name, price FROM apis;
         CREATE TABLE added_later (y int);
         INSERT INTO added_later VALUES (1);",
    );
    assert_ne!(snapshot(&pg, "tyk_analytics"), before);

    let restored = postgres::restore(&out, &conn).unwrap();
    assert!(restored.toc_entries > 0);
    let mut after = snapshot(&pg, "tyk_analytics");
    // --clean drops what the dump holds; a table made after the backup stays.
    assert_eq!(
        after.remove("table added_later").as_deref(),
        Some("1\n"),
        "{after:?}"
    );
    assert_eq!(after, before);

    // A restore that fails is rolled back as a whole (--single-transaction) and reports
    // pg_restore's message: here the role may not drop a table it does not own.
    pg.psql(
        "tyk_analytics",
        "CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw';
         GRANT CONNECT ON DATABASE tyk_analytics TO intruder;",
    );
    let intruder = PgConn::parse(&pg.conninfo("intruder", "intruder-pw", "tyk_analytics")).unwrap();
    let err = postgres::restore(&out, &intruder).unwrap_err();
    match &err {
        Error::Command { detail, help, .. } => {
            assert!(detail.contains("pg_restore: error"), "{err}");
            assert!(
                detail.contains("owner") || detail.contains("permission denied"),
                "{err}"
            );
            assert!(help.contains("rolled back"), "{err}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert_eq!(
        {
            let mut now = snapshot(&pg, "tyk_analytics");
            now.remove("table added_later");
            now
        },
        before
    );
}

#[test]
fn postgres_wrong_password_reports_the_clients_message_and_an_empty_database_backs_up() {
    const WRONG: &str = "Wrong-Secret-4711";
    let pg = PgServer::start();
    pg.create_role("tyk", TYK_PASSWORD);
    pg.create_database("tyk_analytics", Some("tyk"));
    let work = TestDir::new();
    let out = work.join("tyk.dump");

    let conn = PgConn::parse(&pg.conninfo("tyk", WRONG, "tyk_analytics")).unwrap();
    let err = postgres::backup(&conn, &out).unwrap_err();
    let text = err.to_string();
    match &err {
        Error::Command {
            command, detail, ..
        } => {
            assert!(
                detail.contains("password authentication failed for user \"tyk\""),
                "{text}"
            );
            assert!(
                command.contains("pg_dump --format=custom --no-password --file="),
                "{text}"
            );
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert!(!text.contains(WRONG), "{text}");
    assert!(!format!("{err:?}").contains(WRONG), "{err:?}");
    // libpq names the pgpass file it took the password from; that file is gone.
    assert!(text.contains("ferry's temporary pgpass file"), "{text}");
    assert!(!text.contains("/ferry-pg-"), "{text}");
    assert!(
        text.contains(&format!(
            "postgres://tyk@127.0.0.1:{}/tyk_analytics",
            pg.port()
        )),
        "{text}"
    );
    assert!(!out.exists());
    assert!(!tmp_of(&out).exists());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);

    // No password at all: --no-password makes pg_dump fail at once instead of asking.
    let conn = PgConn::parse(&format!(
        "postgresql://tyk@127.0.0.1:{}/tyk_analytics",
        pg.port()
    ))
    .unwrap();
    let err = postgres::backup(&conn, &out).unwrap_err();
    assert!(err.to_string().contains("no password supplied"), "{err}");

    // An empty database (a fresh install) backs up and restores: its dump lists no
    // objects but still has table-of-contents entries (encoding, search path).
    let good = PgConn::parse(&pg.conninfo("tyk", TYK_PASSWORD, "tyk_analytics")).unwrap();
    let empty_dump = work.join("empty.dump");
    let empty = postgres::backup(&good, &empty_dump).unwrap();
    assert!(empty.toc_entries > 0, "{empty:?}");
    assert_eq!(
        postgres::restore(&empty_dump, &good).unwrap().toc_entries,
        empty.toc_entries
    );

    // pg_restore's message, likewise.
    pg.psql_as(
        "tyk",
        TYK_PASSWORD,
        "tyk_analytics",
        "CREATE TABLE t (x int);",
    );
    postgres::backup(&good, &out).unwrap();
    let bad = PgConn::parse(&pg.conninfo("tyk", WRONG, "tyk_analytics")).unwrap();
    let err = postgres::restore(&out, &bad).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Command { .. }), "{err:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains("pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --no-password --dbname=tyk_analytics"), "{text}");
    assert!(!text.contains(WRONG), "{text}");
}

#[test]
fn postgres_bad_input_is_refused_before_running_anything() {
    let work = TestDir::new();
    require_tool("pg_restore", "postgresql-client");
    let conn = PgConn::parse("host=127.0.0.1 port=1 user=tyk dbname=tyk").unwrap();

    // Missing client programs.
    let empty = work.join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    for err in [
        postgres::backup_with_path(&conn, &work.join("a.dump"), Some(empty.as_os_str()))
            .unwrap_err(),
        postgres::restore_with_path(&work.join("a.dump"), &conn, Some(empty.as_os_str()))
            .unwrap_err(),
    ] {
        match &err {
            Error::ToolMissing {
                program, package, ..
            } => {
                assert!(program == "pg_dump" || program == "pg_restore", "{err}");
                assert_eq!(package, "postgresql-client");
            }
            other => panic!("expected ToolMissing, got {other:?}"),
        }
    }

    // An existing backup file is never overwritten.
    let existing = work.write("existing.dump", "keep me");
    let err = postgres::backup(&conn, &existing).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");

    // A file that is not a custom-format dump, and a target without a database.
    let err = postgres::restore(&existing, &conn).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a pg_dump custom-format archive"),
        "{err}"
    );
    let no_db = PgConn::parse("host=127.0.0.1 user=tyk").unwrap();
    let err = postgres::restore(&existing, &no_db).unwrap_err();
    assert!(err.to_string().contains("names no database"), "{err}");

    // Nothing reachable on port 1: pg_dump's own message, no temp file left.
    let out = work.join("unreachable.dump");
    let err = postgres::backup(&conn, &out).unwrap_err();
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(!out.exists() && !tmp_of(&out).exists());
}

const MONGO_PASSWORD: &str = "S3cr%40t-pass";
const MONGO_URI: &str = "mongodb://tyk:S3cr%40t-pass@mongo1:27017,mongo2:27017/tyk_analytics?authSource=admin&replicaSet=rs0";

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn mongodb_backup_passes_the_uri_only_in_a_private_config_file() {
    let fake = FakeMongoTools::new();
    let work = TestDir::new();
    let out = work.join("tyk_analytics.archive.gz");
    let conn = MongoConn::new(MONGO_URI, Some("tyk_analytics"));
    let backup = mongodb::backup_with_path(&conn, &out, Some(&fake.search_path())).unwrap();

    let config = fake.config_path("mongodump");
    assert_eq!(
        fake.argv("mongodump"),
        [
            format!("--config={}", config.display()),
            format!("--archive={}", tmp_of(&out).display()),
            "--gzip".into(),
            "--db=tyk_analytics".into(),
        ]
    );
    for arg in fake.argv("mongodump") {
        assert!(
            !arg.contains(MONGO_PASSWORD) && !arg.contains("S3cr"),
            "{arg}"
        );
    }
    assert_eq!(fake.config_mode("mongodump"), 0o600);
    assert_eq!(fake.config_dir_mode("mongodump"), 0o700);
    assert_eq!(fake.config("mongodump"), format!("uri: \"{MONGO_URI}\"\n"));
    assert!(!config.exists(), "{} was left behind", config.display());
    assert!(!config.parent().unwrap().exists());

    assert!(!tmp_of(&out).exists());
    assert_eq!(mode(&out), 0o600);
    assert_eq!(gunzip(&out), ARCHIVE_CONTENT);
    assert_eq!(backup.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(backup.sha256, sha256_file(&out));
    assert_eq!(backup.tool_version, STAND_IN_VERSION);
    assert_eq!(
        backup.source,
        "mongodb://tyk:***@mongo1:27017,mongo2:27017/tyk_analytics?authSource=admin&replicaSet=rs0 (database tyk_analytics)"
    );
    let json = serde_json::to_string(&backup).unwrap();
    assert!(!json.contains("S3cr"), "{json}");

    // The whole deployment: no --db.
    let all = work.join("all.archive.gz");
    let conn = MongoConn::new("mongodb://mongo:27017", None);
    mongodb::backup_with_path(&conn, &all, Some(&fake.search_path())).unwrap();
    let argv = fake.argv("mongodump");
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(argv[2], "--gzip");
    assert_eq!(fake.config("mongodump"), "uri: \"mongodb://mongo:27017\"\n");
}

#[test]
fn mongodb_restore_drops_and_limits_itself_to_the_database() {
    let fake = FakeMongoTools::new();
    let work = TestDir::new();
    let archive = work.join("tyk.archive.gz");
    let conn = MongoConn::new(MONGO_URI, Some("tyk_analytics"));
    mongodb::backup_with_path(&conn, &archive, Some(&fake.search_path())).unwrap();

    mongodb::restore_with_path(&archive, &conn, Some(&fake.search_path())).unwrap();
    let config = fake.config_path("mongorestore");
    assert_eq!(
        fake.argv("mongorestore"),
        [
            format!("--config={}", config.display()),
            format!("--archive={}", archive.display()),
            "--gzip".into(),
            "--drop".into(),
            "--nsInclude=tyk_analytics.*".into(),
        ]
    );
    assert!(!fake.argv("mongorestore").concat().contains("S3cr"));
    assert_eq!(fake.config_mode("mongorestore"), 0o600);
    assert_eq!(
        fake.config("mongorestore"),
        format!("uri: \"{MONGO_URI}\"\n")
    );
    assert!(!config.exists());
    assert_eq!(fake.restored(), ARCHIVE_CONTENT);

    let all = MongoConn::new("mongodb://mongo:27017", None);
    mongodb::restore_with_path(&archive, &all, Some(&fake.search_path())).unwrap();
    assert_eq!(
        fake.argv("mongorestore")[1..],
        [
            format!("--archive={}", archive.display()),
            "--gzip".into(),
            "--drop".into(),
        ]
    );
}

#[test]
fn mongodb_failures_surface_the_tools_message_without_the_password() {
    let fake = FakeMongoTools::new();
    let work = TestDir::new();
    let out = work.join("tyk.archive.gz");
    let conn = MongoConn::new(MONGO_URI, Some("tyk_analytics"));
    fake.fail(
        "mongodump",
        &format!("2026-11-21T03:04:05.000+0000\tFailed: can't create session: could not connect to server: server selection error ({MONGO_URI}) password S3cr@t-pass\n"),
        1,
    );
    let err = mongodb::backup_with_path(&conn, &out, Some(&fake.search_path())).unwrap_err();
    let text = err.to_string();
    match &err {
        Error::Command { detail, status, .. } => {
            assert!(detail.contains("server selection error"), "{text}");
            assert_eq!(status, "exit status 1");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert!(!text.contains("S3cr"), "{text}");
    assert!(text.contains("mongodb://tyk:***@mongo1"), "{text}");
    assert!(!out.exists() && !tmp_of(&out).exists());
    assert!(!fake.config_path("mongodump").exists());

    // mongorestore likewise.
    let good = FakeMongoTools::new();
    mongodb::backup_with_path(&conn, &out, Some(&good.search_path())).unwrap();
    fake.fail(
        "mongorestore",
        "Failed: tyk_analytics.apis: error dropping collection: not authorized\n",
        2,
    );
    let err = mongodb::restore_with_path(&out, &conn, Some(&fake.search_path())).unwrap_err();
    assert!(
        matches!(&err, Error::Command { status, .. } if status == "exit status 2"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not authorized"), "{err}");
    assert!(!err.to_string().contains("S3cr"), "{err}");
}

#[test]
fn mongodb_empty_or_foreign_archives_are_rejected() {
    let fake = FakeMongoTools::new();
    let work = TestDir::new();
    let out = work.join("tyk.archive.gz");
    let conn = MongoConn::new(MONGO_URI, Some("tyk_analytics"));
    fake.write_empty_archive();
    let err = mongodb::backup_with_path(&conn, &out, Some(&fake.search_path())).unwrap_err();
    match &err {
        Error::Backup { path, message, .. } => {
            assert_eq!(path, &out);
            assert!(message.contains("empty archive"), "{err}");
        }
        other => panic!("expected a backup error, got {other:?}"),
    }
    assert!(!out.exists() && !tmp_of(&out).exists());

    // Restoring refuses what is not a gzip archive without running mongorestore.
    let fresh = FakeMongoTools::new();
    for (name, bytes) in [
        ("empty.gz", &b""[..]),
        ("plain.gz", &b"{\"not\": \"gzip\"}"[..]),
    ] {
        let file = work.write(name, bytes);
        let err = mongodb::restore_with_path(&file, &conn, Some(&fresh.search_path())).unwrap_err();
        assert!(matches!(err, Error::Backup { .. }), "{err:?}");
        assert!(!fresh.ran("mongorestore"));
    }

    // Missing tools name their package.
    let empty = work.join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let err =
        mongodb::backup_with_path(&conn, &work.join("x.gz"), Some(empty.as_os_str())).unwrap_err();
    assert!(
        matches!(&err, Error::ToolMissing { program, package, .. } if program == "mongodump" && package == "mongodb-database-tools"),
        "{err:?}"
    );
    let err = mongodb::restore_with_path(&out, &conn, Some(empty.as_os_str())).unwrap_err();
    assert!(
        matches!(&err, Error::ToolMissing { program, .. } if program == "mongorestore"),
        "{err:?}"
    );
}
