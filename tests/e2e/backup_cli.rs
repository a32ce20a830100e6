//! `ferry-install backup create BUNDLE` and `backup restore` through the binary, on a
//! throwaway root: the configs a bundle's steps name (with odd modes and owners), a
//! real PostgreSQL database whose connection comes from the Dashboard's config, and
//! MongoDB through the recording stand-in (MongoDB cannot be installed here).

use ferry_bundle::manifest::{Backup, BackupKind, Step};
use ferry_tests::bundle::{manifest, sign_bundle};
use ferry_tests::fake_mongo::FakeMongoTools;
use ferry_tests::postgres_server::PgServer;
use ferry_tests::TestDir;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const DB_PASSWORD: &str = "s3cret-pg:pw";
const MONGO_PASSWORD: &str = "m0ngo-secret";

/// A root with an empty dpkg database and Debian's os-release.
pub fn minimal_root(dir: &TestDir) -> std::path::PathBuf {
    let root = dir.join("root");
    for (path, text) in [
        ("var/lib/dpkg/status", ""),
        (
            "etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        ),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    root
}

fn install(root: &Path, path: &str, args: &[&str]) -> Output {
    Command::new(ferry_tests::bin("ferry-install"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn backup_create_takes_configs_postgres_and_mongodb_and_restore_brings_them_back() {
    let pg = PgServer::start();
    pg.create_role("tyk", DB_PASSWORD);
    pg.create_database("tyk_analytics", Some("tyk"));
    pg.psql_as(
        "tyk",
        DB_PASSWORD,
        "tyk_analytics",
        "CREATE TABLE apis (id int PRIMARY KEY, name text); INSERT INTO apis SELECT g, 'api-' || g FROM generate_series(1, 300) g;",
    );
    let mongo = FakeMongoTools::new();
    let dir = TestDir::new();
    let root = minimal_root(&dir);
    let conf = root.join("opt/tyk-dashboard/tyk_analytics.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let dashboard_conf = serde_json::json!({
        "listen_port": 3000,
        "mongo_url": format!("mongodb://tyk:{MONGO_PASSWORD}@127.0.0.1:27017/tyk_analytics"),
        "storage": {"main": {"type": "postgres",
            "connection_string": pg.conninfo("tyk", DB_PASSWORD, "tyk_analytics")}},
    });
    std::fs::write(&conf, serde_json::to_vec_pretty(&dashboard_conf).unwrap()).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&conf, Some(4321), Some(8765)).unwrap();
    let original = std::fs::read(&conf).unwrap();

    let mut m = manifest("backup-cli");
    m.steps = vec![Step {
        component: "dashboard".into(),
        packages: vec![],
        service: None,
        configs: vec![
            "/opt/tyk-dashboard/tyk_analytics.conf".into(),
            "/opt/tyk-pump/pump.conf".into(),
        ],
        only_if_installed: false,
        health: None,
        place: vec![],
    }];
    m.backups = vec![
        Backup {
            kind: BackupKind::Postgres,
            config: Some("/opt/tyk-dashboard/tyk_analytics.conf".into()),
            paths: vec![],
            optional: false,
        },
        Backup {
            kind: BackupKind::Mongodb,
            config: Some("/opt/tyk-dashboard/tyk_analytics.conf".into()),
            paths: vec![],
            optional: false,
        },
    ];
    let bundle = sign_bundle(&dir.join("media"), m, &[]);
    let path = mongo.search_path().into_string().unwrap();
    let bundle_path = bundle.path.to_str().unwrap();
    let trust = bundle.trust.to_str().unwrap();

    // plan asks PostgreSQL how large the database is (read-only).
    let out = install(
        &root,
        &path,
        &["plan", bundle_path, "--trust", trust, "--json"],
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size_of = |kind: &str| {
        plan["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["kind"] == kind)
            .unwrap()["estimated_bytes"]
            .as_u64()
    };
    assert!(size_of("postgres").unwrap() > 1_000_000, "{plan}");
    assert_eq!(size_of("mongodb"), None);

    let out = install(
        &root,
        &path,
        &["backup", "create", bundle_path, "--trust", trust, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        !stdout.contains(DB_PASSWORD) && !stdout.contains(MONGO_PASSWORD),
        "{stdout}"
    );
    let set: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = set["id"].as_str().unwrap().to_string();
    let kinds: Vec<&str> = set["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["files", "postgres", "mongodb"], "{stdout}");
    assert_eq!(set["skipped"][0]["pattern"], "/opt/tyk-pump/pump.conf");
    let pg_item = &set["items"][1];
    assert_eq!(pg_item["path_in_set"], "postgres.dump");
    assert!(
        pg_item["tool"].as_str().unwrap().starts_with("pg_dump"),
        "{pg_item}"
    );
    assert!(pg_item["server_version"].as_str().is_some(), "{pg_item}");
    assert!(pg_item["source"]
        .as_str()
        .unwrap()
        .contains("tyk_analytics"));
    let set_dir = root.join("var/backups/ferry").join(&id);
    let json_on_disk = std::fs::read_to_string(set_dir.join("backup.json")).unwrap();
    assert!(!json_on_disk.contains(DB_PASSWORD) && !json_on_disk.contains(MONGO_PASSWORD));
    // mongodump got the URI only through its 0600 config file.
    let argv = mongo.argv("mongodump");
    assert!(argv.iter().all(|a| !a.contains(MONGO_PASSWORD)), "{argv:?}");
    assert!(argv.contains(&"--gzip".to_string()), "{argv:?}");
    assert!(argv.contains(&"--db=tyk_analytics".to_string()), "{argv:?}");
    assert_eq!(mongo.config_mode("mongodump"), 0o600);

    // Change everything, then restore each kind.
    pg.psql_as(
        "tyk",
        DB_PASSWORD,
        "tyk_analytics",
        "DELETE FROM apis WHERE id > 10; UPDATE apis SET name = 'changed';",
    );
    std::fs::write(&conf, "{}").unwrap();
    let out = install(&root, &path, &["backup", "restore", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("pg_restore --clean"), "{report}");
    assert!(report.contains("mongorestore --drop"), "{report}");
    assert_eq!(std::fs::read(&conf).unwrap(), original);
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 4321, 8765)
    );
    let rows = pg.psql_as(
        "tyk",
        DB_PASSWORD,
        "tyk_analytics",
        "SELECT count(*), count(*) FILTER (WHERE name = 'changed') FROM apis;",
    );
    assert_eq!(rows.trim(), "300|0");
    assert!(mongo.argv("mongorestore").contains(&"--drop".to_string()));

    // --path restores just that file; --postgres-target restores into another database.
    std::fs::write(&conf, "{}").unwrap();
    let out = install(
        &root,
        &path,
        &[
            "backup",
            "restore",
            &id,
            "--only",
            "files",
            "--path",
            "/opt/tyk-dashboard/tyk_analytics.conf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&conf).unwrap(), original);
    pg.create_database("tyk_copy", Some("tyk"));
    let copy = pg.conninfo("tyk", DB_PASSWORD, "tyk_copy");
    let out = install(
        &root,
        &path,
        &[
            "backup",
            "restore",
            &id,
            "--only",
            "postgres",
            "--postgres-target",
            &copy,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(DB_PASSWORD));
    let rows = pg.psql_as("tyk", DB_PASSWORD, "tyk_copy", "SELECT count(*) FROM apis;");
    assert_eq!(rows.trim(), "300");

    // A damaged dump is refused before anything is restored.
    std::fs::write(&conf, "{}").unwrap();
    let dump = set_dir.join("postgres.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let out = install(&root, &path, &["backup", "restore", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match backup.json"));
    assert_eq!(std::fs::read(&conf).unwrap(), b"{}", "nothing restored");
}

#[test]
fn backup_create_with_a_missing_mongodump_exits_4_and_writes_nothing() {
    let dir = TestDir::new();
    let root = minimal_root(&dir);
    let conf = root.join("opt/tyk-dashboard/tyk_analytics.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(
        &conf,
        r#"{"mongo_url": "mongodb://127.0.0.1:27017/tyk_analytics"}"#,
    )
    .unwrap();
    let mut m = manifest("no-mongodump");
    m.backups = vec![Backup {
        kind: BackupKind::Mongodb,
        config: Some("/opt/tyk-dashboard/tyk_analytics.conf".into()),
        paths: vec![],
        optional: false,
    }];
    let bundle = sign_bundle(&dir.join("media"), m, &[]);
    // The system PATH: dpkg is there, mongodump is not (MongoDB's tools are not Debian
    // packages).
    let system_path = "/usr/sbin:/usr/bin:/sbin:/bin";
    assert!(!Path::new("/usr/bin/mongodump").exists());
    let before = ferry_tests::snapshot(&root);
    let out = install(
        &root,
        system_path,
        &[
            "backup",
            "create",
            bundle.path.to_str().unwrap(),
            "--trust",
            bundle.trust.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mongodump") && err.contains("mongodb-database-tools"),
        "{err}"
    );
    assert_eq!(ferry_tests::snapshot(&root), before);
}

/// Redis through the CLI: the connection from a gateway's `tyk.conf` (with a password),
/// CONFIG disabled so the snapshot comes over replication, restore into a server named
/// with `--redis-target`; and a destination that fills up during the dump fails
/// cleanly, removes the half-written set and says how much space was needed.
#[test]
fn redis_backup_through_the_cli_and_a_destination_that_fills_up() {
    use ferry_tests::redis_server::{RedisOptions, RedisServer};
    let redis = RedisServer::start(RedisOptions {
        password: Some("r3dis-pw".into()),
        rename_config: true,
        ..RedisOptions::default()
    });
    let mut client = redis.client();
    for i in 0..64 {
        let value = ferry_tests::noise(64 * 1024, i);
        client.cmd_raw(&[b"SET", format!("apikey-{i}").as_bytes(), &value]);
    }
    let dir = TestDir::new();
    let root = minimal_root(&dir);
    let conf = root.join("opt/tyk-gateway/tyk.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(
        &conf,
        serde_json::to_vec(&serde_json::json!({
            "storage": {"type": "redis", "host": "127.0.0.1", "port": redis.port(),
                        "password": "r3dis-pw", "database": 0}
        }))
        .unwrap(),
    )
    .unwrap();
    let mut m = manifest("redis-cli");
    m.backups = vec![Backup {
        kind: BackupKind::Redis,
        config: Some("/opt/tyk-gateway/tyk.conf".into()),
        paths: vec![],
        optional: false,
    }];
    let bundle = sign_bundle(&dir.join("media"), m, &[]);
    let path = std::env::var("PATH").unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "create",
            bundle.path.to_str().unwrap(),
            "--trust",
            bundle.trust.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        install(&root, &path, &args)
    };

    // A 1 MiB tmpfs cannot hold the 4 MiB snapshot.
    let small = dir.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount (Debian package mount)");
    assert!(mount.success(), "mounting a tmpfs needs root");
    let out = create(&["--dest", small.to_str().unwrap()]);
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("filled up"), "{err}");
    assert!(err.contains("was removed"), "{err}");
    assert!(err.contains("needs more than the 1.0 MiB"), "{err}");
    assert!(!err.contains("r3dis-pw"), "{err}");

    // plan measures the dataset (4 MiB of values) before anything is taken.
    let out = install(
        &root,
        &path,
        &[
            "plan",
            bundle.path.to_str().unwrap(),
            "--trust",
            bundle.trust.to_str().unwrap(),
            "--json",
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let redis_plan = &plan["backups"][0];
    assert_eq!(redis_plan["kind"], "redis", "{plan}");
    assert!(
        redis_plan["estimated_bytes"].as_u64().unwrap() >= 4 * 1024 * 1024,
        "{plan}"
    );

    // With room, the snapshot comes over replication and restores key for key.
    let out = create(&["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let set: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = &set["items"][0];
    assert_eq!(item["kind"], "redis");
    assert_eq!(item["method"], "replication", "{item}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("r3dis-pw"));
    let id = set["id"].as_str().unwrap();
    let fresh = RedisServer::start(RedisOptions::default());
    let out = install(&root, &path, &["backup", "restore", id, "--only", "redis"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--redis-target"),
        "without a target the procedure is printed: {}",
        text(&out)
    );
    let target = format!("127.0.0.1:{}", fresh.port());
    let out = install(
        &root,
        &path,
        &[
            "backup",
            "restore",
            id,
            "--only",
            "redis",
            "--redis-target",
            &target,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("64 keys"),
        "{}",
        text(&out)
    );
    let mut check = fresh.client();
    for i in [0u64, 17, 63] {
        let got = check.cmd(&["GET", &format!("apikey-{i}")]).bytes();
        assert_eq!(got, ferry_tests::noise(64 * 1024, i));
    }
}
