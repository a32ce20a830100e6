//! Redis backup and restore against real `redis-server` processes on 127.0.0.1 (random
//! ports): every key type, TTLs, binary data and several databases survive
//! backup → restore into another server; CONFIG disabled, TLS, wrong passwords,
//! damaged files and unreachable servers fail or fall back clearly, never showing a
//! password.

use ferry_installer::backup::redis::{self, RedisConn, RedisMethod, SaveMode};
use ferry_installer::host::Host;
use ferry_installer::secret::Secret;
use ferry_tests::redis_server::{free_port, RedisClient, RedisOptions, RedisServer, Value};
use ferry_tests::{noise, require_tool, sha256_file, TestDir};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);
const SOURCE_PW: &str = "src-Pw-q81zLx";
const TARGET_PW: &str = "dst-Pw-k27mVb";

fn host() -> Host {
    Host::new("/")
}

fn server(password: Option<&str>) -> RedisServer {
    RedisServer::start(RedisOptions {
        password: password.map(str::to_string),
        ..RedisOptions::default()
    })
}

fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// Keys of every type, with and without TTLs, binary names and values, large values,
/// in databases 0, 3 and 15. Returns the number of keys.
fn fill(s: &RedisServer) -> u64 {
    let mut c = s.client();
    // db 0: 2000 plain strings, every third with a TTL.
    let cmds: Vec<_> = (0..2000)
        .map(|i| {
            let (k, v) = (format!("str:{i}"), format!("value-{i}"));
            if i % 3 == 0 {
                let ttl = (600_000 + i * 10).to_string();
                args(&[b"SET", k.as_bytes(), v.as_bytes(), b"PX", ttl.as_bytes()])
            } else {
                args(&[b"SET", k.as_bytes(), v.as_bytes()])
            }
        })
        .collect();
    c.pipeline(&cmds);
    c.cmd_raw(&[b"SET", b"bin:\x00\xff\r\nkey", &noise(1000, 1)]);
    c.cmd_raw(&[b"SET", b"crlf", b"a\r\nb\r\n\x00$3\r\n*1\r\n"]);
    c.cmd_raw(&[b"SET", b"big", &noise(4 << 20, 2)]);
    c.cmd(&["SET", "counter", "12345"]);
    c.cmd(&["SET", "empty", ""]);
    c.cmd(&["HSET", "h:small", "a", "1", "b", "2", "c", "three"]);
    let mut hset = args(&[b"HSET", b"h:large"]);
    for i in 0..2000u64 {
        hset.push(format!("field{i}").into_bytes());
        hset.push(noise(20, i));
    }
    c.pipeline(&[hset]);
    c.cmd(&["RPUSH", "l:small", "x", "y", "x", "z"]);
    for chunk in 0..20u64 {
        let mut rpush = args(&[b"RPUSH", b"l:large"]);
        rpush.extend((0..1000).map(|i| format!("item-{chunk}-{i}").into_bytes()));
        c.pipeline(&[rpush]);
    }
    let mut sadd = args(&[b"SADD", b"s:int"]);
    sadd.extend((0..100).map(|i: u64| (i * 7).to_string().into_bytes()));
    let mut sstr = args(&[b"SADD", b"s:str"]);
    sstr.extend((0..50).map(|i| format!("member-{i}").into_bytes()));
    let mut slarge = args(&[b"SADD", b"s:large"]);
    slarge.extend((0..3000u64).map(|i| noise(16, i + 100)));
    c.pipeline(&[sadd, sstr, slarge]);
    c.cmd(&["ZADD", "z:small", "1", "one", "2.5", "two", "-3", "minus"]);
    let mut zadd = args(&[b"ZADD", b"z:large"]);
    for i in 0..1000 {
        zadd.push(format!("{}", f64::from(i) * 1.5 - 200.25).into_bytes());
        zadd.push(format!("m{i}").into_bytes());
    }
    c.pipeline(&[zadd]);
    let xadds: Vec<_> = (0..300)
        .map(|i| {
            let v = i.to_string();
            args(&[
                b"XADD",
                b"stream",
                b"*",
                b"n",
                v.as_bytes(),
                b"bin",
                b"\x00\x01",
            ])
        })
        .collect();
    c.pipeline(&xadds);
    c.cmd(&["XGROUP", "CREATE", "stream", "g1", "0"]);
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "c1",
        "COUNT",
        "10",
        "STREAMS",
        "stream",
        ">",
    ]);
    c.cmd(&["HSET", "ttl:hash", "f", "v"]);
    c.cmd(&["PEXPIRE", "ttl:hash", "900000"]);
    c.cmd(&["RPUSH", "ttl:list", "a", "b"]);
    c.cmd(&["EXPIRE", "ttl:list", "86400"]);

    // db 3: more of each, with TTLs.
    c.cmd(&["SELECT", "3"]);
    let cmds: Vec<_> = (0..300)
        .map(|i| {
            let (k, v) = (format!("db3:{i}"), noise(i % 50, i as u64));
            args(&[b"SET", k.as_bytes(), &v, b"EX", b"7200"])
        })
        .collect();
    c.pipeline(&cmds);
    c.cmd(&["HSET", "db3:hash", "k", "v", "k2", "v2"]);
    c.cmd(&["RPUSH", "db3:list", "1", "2", "3"]);
    c.cmd(&["SADD", "db3:set", "a", "b"]);
    c.cmd(&["ZADD", "db3:zset", "1", "a", "2", "b"]);
    c.cmd(&["XADD", "db3:stream", "1-1", "f", "v"]);
    c.cmd(&["EXPIRE", "db3:zset", "5000"]);

    // db 15: one key.
    c.cmd(&["SELECT", "15"]);
    c.cmd(&["SET", "last", "x"]);

    let mut total = 0;
    for db in [0, 3, 15] {
        c.cmd(&["SELECT", &db.to_string()]);
        total += c.cmd(&["DBSIZE"]).int() as u64;
    }
    total
}

/// What a key holds, comparable across servers.
#[derive(Debug, PartialEq)]
struct KeyState {
    kind: String,
    value: Value,
    pttl: i64,
}

/// Every key of every database (0..16): type, value and remaining TTL.
fn snapshot(c: &mut RedisClient) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    let mut out = BTreeMap::new();
    for db in 0..16u32 {
        c.cmd(&["SELECT", &db.to_string()]);
        let mut cursor = "0".to_string();
        loop {
            let reply = c.cmd(&["SCAN", &cursor, "COUNT", "500"]).items();
            cursor = reply[0].text();
            let keys: Vec<Vec<u8>> = reply[1].items().iter().map(Value::bytes).collect();
            let meta: Vec<Vec<Vec<u8>>> = keys
                .iter()
                .flat_map(|k| [args(&[b"TYPE", k]), args(&[b"PTTL", k])])
                .collect();
            let meta = c.pipeline(&meta);
            for (i, key) in keys.iter().enumerate() {
                let kind = meta[2 * i].text();
                let pttl = meta[2 * i + 1].int();
                let value = read_value(c, &kind, key);
                let state = KeyState { kind, value, pttl };
                assert!(out.insert((db, key.clone()), state).is_none());
            }
            if cursor == "0" {
                break;
            }
        }
    }
    out
}

fn read_value(c: &mut RedisClient, kind: &str, key: &[u8]) -> Value {
    let sorted = |v: Value| {
        let mut items = v.items();
        items.sort();
        Value::Array(items)
    };
    match kind {
        "string" => c.cmd_raw(&[b"GET", key]),
        "hash" => {
            let flat = c.cmd_raw(&[b"HGETALL", key]).items();
            let mut pairs: Vec<Value> = flat.chunks(2).map(|p| Value::Array(p.to_vec())).collect();
            pairs.sort();
            Value::Array(pairs)
        }
        "list" => c.cmd_raw(&[b"LRANGE", key, b"0", b"-1"]),
        "set" => sorted(c.cmd_raw(&[b"SMEMBERS", key])),
        "zset" => c.cmd_raw(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
        "stream" => Value::Array(vec![
            c.cmd_raw(&[b"XRANGE", key, b"-", b"+"]),
            c.cmd_raw(&[b"XINFO", b"GROUPS", key]),
            c.cmd_raw(&[b"XINFO", b"STREAM", key, b"FULL"]),
        ]),
        other => panic!("unexpected key type {other}"),
    }
}

/// Same keys, types and values in every database; TTLs within a few seconds.
#[track_caller]
fn assert_same(
    before: &BTreeMap<(u32, Vec<u8>), KeyState>,
    after: &BTreeMap<(u32, Vec<u8>), KeyState>,
) {
    let names = |m: &BTreeMap<(u32, Vec<u8>), KeyState>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(after),
        "restored key sets differ ({} vs {} keys)",
        before.len(),
        after.len()
    );
    for (id, b) in before {
        let a = &after[id];
        let name = format!("db {} key {:?}", id.0, String::from_utf8_lossy(&id.1));
        assert_eq!(a.kind, b.kind, "{name}: type");
        assert!(a.value == b.value, "{name}: value differs");
        if b.pttl < 0 {
            assert_eq!(a.pttl, b.pttl, "{name}: TTL");
        } else {
            assert!(
                a.pttl > 0 && (a.pttl - b.pttl).abs() < 10_000,
                "{name}: TTL {} ms before, {} ms after",
                b.pttl,
                a.pttl
            );
        }
    }
}

/// The directory holds exactly these file names (no temporary leftovers).
#[track_caller]
fn assert_files(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, expected);
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for pw in [SOURCE_PW, TARGET_PW, "wrong-Pw-x9"] {
        assert!(!text.contains(pw), "password {pw} leaked into: {text}");
    }
}

#[test]
fn bgsave_backup_restores_every_key_type_into_another_server() {
    let source = server(Some(SOURCE_PW));
    let keys = fill(&source);
    assert!(keys > 2300, "{keys}");
    let before = snapshot(&mut source.client());
    assert_eq!(before.len() as u64, keys);

    let dir = TestDir::new();
    let out = dir.join("redis.rdb");
    let conn = source.conn();
    let b = redis::backup(&host(), &conn, SaveMode::Bgsave, &out, TIMEOUT).unwrap();
    assert_eq!(b.method, RedisMethod::ConfigDirCopy, "{b:?}");
    assert_eq!(b.source, format!("redis://127.0.0.1:{}/0", source.port()));
    assert_eq!(b.server_version.split('.').count(), 3, "{b:?}");
    assert!(b.rdb_version >= 9, "{b:?}");
    assert_eq!(b.size, std::fs::metadata(&out).unwrap().len());
    assert!(b.size > 4 << 20, "{b:?}");
    assert_eq!(b.sha256, sha256_file(&out));
    let header = format!("RDB header REDIS{:04}", b.rdb_version);
    for check in [header.as_str(), "redis-check-rdb: OK", "BGSAVE finished"] {
        assert!(
            b.checks.iter().any(|c| c.starts_with(check)),
            "{check}: {b:?}"
        );
    }
    assert!(b.checks.iter().any(|c| c.starts_with("RDB checksum OK")));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(redis::check_rdb(&out).unwrap(), b.rdb_version);
    let json = serde_json::to_string(&b).unwrap();
    assert!(json.contains("\"method\":\"config-dir-copy\""), "{json}");
    assert_no_secret(&json);
    assert_no_secret(&format!("{conn:?} {}", conn.display()));

    // A second backup right away: LASTSAVE has 1-second granularity.
    let again = redis::backup(
        &host(),
        &conn,
        SaveMode::Bgsave,
        &dir.join("again.rdb"),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(again.method, RedisMethod::ConfigDirCopy);
    assert_files(dir.path(), &["again.rdb", "redis.rdb"]);

    let target = server(Some(TARGET_PW));
    target.client().cmd(&["SET", "already-there", "kept"]);
    let restored = redis::restore(&out, &target.conn(), TIMEOUT).unwrap();
    assert_eq!(restored.keys, keys);
    assert_eq!(restored.databases, [0, 3, 15]);
    let mut after = snapshot(&mut target.client());
    let kept = after.remove(&(0, b"already-there".to_vec())).unwrap();
    assert_eq!(kept.value, Value::Bulk(b"kept".to_vec()));
    assert_same(&before, &after);
}

#[test]
fn save_mode_over_a_unix_socket() {
    let dir = TestDir::new();
    let socket = dir.join("redis.sock");
    let source = RedisServer::start(RedisOptions {
        password: Some(SOURCE_PW.into()),
        args: vec![
            "--unixsocket".into(),
            socket.display().to_string(),
            "--unixsocketperm".into(),
            "700".into(),
        ],
        ..RedisOptions::default()
    });
    let mut c = source.client();
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    let before = snapshot(&mut c);

    let conn = RedisConn {
        socket: Some(socket.clone()),
        ..source.conn()
    };
    let out = dir.join("save.rdb");
    let b = redis::backup(&host(), &conn, SaveMode::Save, &out, TIMEOUT).unwrap();
    assert_eq!(b.method, RedisMethod::ConfigDirCopy);
    assert_eq!(b.source, format!("unix:{}", socket.display()));
    assert!(
        b.checks.iter().any(|c| c.starts_with("SAVE finished")),
        "{b:?}"
    );
    assert_eq!(redis::check_rdb(&out).unwrap(), b.rdb_version);

    let target = server(None);
    let restored = redis::restore(&out, &target.conn(), TIMEOUT).unwrap();
    assert_eq!((restored.keys, restored.databases), (2, vec![0, 2]));
    assert_same(&before, &snapshot(&mut target.client()));
}

#[test]
fn config_disabled_falls_back_to_replication() {
    let source = RedisServer::start(RedisOptions {
        password: Some(SOURCE_PW.into()),
        rename_config: true,
        ..RedisOptions::default()
    });
    let keys = fill(&source);
    let before = snapshot(&mut source.client());
    let dir = TestDir::new();
    let out = dir.join("repl.rdb");
    let b = redis::backup(&host(), &source.conn(), SaveMode::Bgsave, &out, TIMEOUT).unwrap();
    assert_eq!(b.method, RedisMethod::Replication, "{b:?}");
    assert!(
        b.checks
            .iter()
            .any(|c| c.contains("CONFIG GET dir refused")),
        "{b:?}"
    );
    assert!(b.checks.iter().any(|c| c == "redis-check-rdb: OK"), "{b:?}");
    assert_eq!(b.sha256, sha256_file(&out));
    assert_no_secret(&serde_json::to_string(&b).unwrap());
    assert_files(dir.path(), &["repl.rdb"]);

    let target = server(Some(TARGET_PW));
    let restored = redis::restore(&out, &target.conn(), TIMEOUT).unwrap();
    assert_eq!(restored.keys, keys);
    assert_same(&before, &snapshot(&mut target.client()));
}

#[test]
fn check_rdb_rejects_truncated_and_foreign_files() {
    let source = server(None);
    let mut c = source.client();
    for i in 0..50 {
        c.cmd(&["SET", &format!("k{i}"), &"v".repeat(i * 10)]);
    }
    let dir = TestDir::new();
    let good = dir.join("good.rdb");
    let b = redis::backup(&host(), &source.conn(), SaveMode::Save, &good, TIMEOUT).unwrap();
    assert_eq!(redis::check_rdb(&good).unwrap(), b.rdb_version);
    let bytes = std::fs::read(&good).unwrap();

    for cut in [bytes.len() - 1, bytes.len() - 9, bytes.len() / 2, 12, 5, 0] {
        let path = dir.write(format!("cut-{cut}.rdb"), &bytes[..cut]);
        let e = redis::check_rdb(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(
            e.contains("truncated") || e.contains("not an RDB file"),
            "{cut}: {e}"
        );
    }
    // One flipped byte in the middle: the checksum catches it.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x55;
    let path = dir.write("flipped.rdb", &flipped);
    let e = redis::check_rdb(&path).unwrap_err().to_string();
    assert!(e.contains("flipped.rdb") && e.contains("CRC64"), "{e}");

    let path = dir.write("foreign.rdb", b"PK\x03\x04 this is a zip, not redis");
    let e = redis::check_rdb(&path).unwrap_err().to_string();
    assert!(
        e.contains("foreign.rdb") && e.contains("not an RDB file"),
        "{e}"
    );
    let path = dir.write("lower.rdb", b"redis0010\xff\0\0\0\0\0\0\0\0");
    let e = redis::check_rdb(&path).unwrap_err().to_string();
    assert!(
        e.contains("lower.rdb") && e.contains("not an RDB file"),
        "{e}"
    );

    let missing = dir.join("missing.rdb");
    let e = redis::check_rdb(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.rdb"), "{e}");

    // restore refuses a damaged file before touching the target.
    let target = server(None);
    let e = redis::restore(&dir.join("cut-12.rdb"), &target.conn(), TIMEOUT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut-12.rdb"), "{e}");
    assert_eq!(target.client().cmd(&["DBSIZE"]).int(), 0);
}

#[test]
fn wrong_or_missing_password_is_a_clear_error_without_the_password() {
    let source = server(Some(SOURCE_PW));
    source.client().cmd(&["SET", "k", "v"]);
    let dir = TestDir::new();
    let out = dir.join("never.rdb");
    let address = format!("redis://127.0.0.1:{}/0", source.port());

    let wrong = RedisConn {
        password: Some(Secret::new("wrong-Pw-x9")),
        ..source.conn()
    };
    let e = redis::backup(&host(), &wrong, SaveMode::Bgsave, &out, TIMEOUT).unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(text.contains(&address), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("help: check the Redis password"), "{text}");
    assert_no_secret(&text);

    let user = RedisConn {
        username: Some("backup".into()),
        ..wrong.clone()
    };
    let e = redis::backup(&host(), &user, SaveMode::Bgsave, &out, TIMEOUT).unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(text.contains("as user \"backup\""), "{text}");
    assert_no_secret(&text);

    let none = RedisConn {
        password: None,
        ..source.conn()
    };
    let e = redis::backup(&host(), &none, SaveMode::Bgsave, &out, TIMEOUT)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&address) && e.contains("NOAUTH"), "{e}");
    assert!(e.contains("requires a password"), "{e}");
    assert_files(dir.path(), &[]);

    // Restoring with the wrong password for the target.
    let good = dir.join("good.rdb");
    redis::backup(&host(), &source.conn(), SaveMode::Save, &good, TIMEOUT).unwrap();
    let target = server(Some(TARGET_PW));
    let e = redis::restore(&good, &with_password(&target, "wrong-Pw-x9"), TIMEOUT).unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", target.port())),
        "{text}"
    );
    assert!(text.contains("authentication failed"), "{text}");
    assert_no_secret(&text);
}

fn with_password(target: &RedisServer, password: &str) -> RedisConn {
    RedisConn {
        password: Some(Secret::new(password)),
        ..target.conn()
    }
}

#[test]
fn restore_into_an_unreachable_server_fails_clearly() {
    let source = server(None);
    source.client().cmd(&["SET", "k", "v"]);
    let dir = TestDir::new();
    let out = dir.join("r.rdb");
    redis::backup(&host(), &source.conn(), SaveMode::Save, &out, TIMEOUT).unwrap();

    let port = free_port();
    let nowhere = RedisConn {
        port,
        password: Some(Secret::new(TARGET_PW)),
        ..RedisConn::default()
    };
    let started = Instant::now();
    let e = redis::restore(&out, &nowhere, Duration::from_secs(3)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains(&format!("redis://127.0.0.1:{port}/0")) && text.contains("cannot connect"),
        "{text}"
    );
    assert!(text.contains("help: check that Redis is running"), "{text}");
    assert_no_secret(&text);

    // Backing up from nowhere fails the same way and leaves nothing behind.
    let e = redis::backup(
        &host(),
        &nowhere,
        SaveMode::Bgsave,
        &dir.join("x.rdb"),
        TIMEOUT,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot connect"), "{e}");
    assert_files(dir.path(), &["r.rdb"]);
}

#[test]
fn backup_waits_for_a_running_bgsave_and_reports_a_timeout() {
    let source = server(None);
    let mut c = source.client();
    let cmds: Vec<_> = (0..200)
        .map(|i| args(&[b"SET", format!("k{i}").as_bytes(), b"v"]))
        .collect();
    c.pipeline(&cmds);
    // 7 ms per key: this background save takes about 1.4 s (longer than the up to 1 s
    // backup waits for LASTSAVE's second to pass); the child keeps the delay, later
    // saves are fast again.
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "7000"]);
    c.cmd(&["BGSAVE"]);
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let dir = TestDir::new();
    let out = dir.join("after-running.rdb");
    let b = redis::backup(&host(), &source.conn(), SaveMode::Bgsave, &out, TIMEOUT).unwrap();
    assert_eq!(b.method, RedisMethod::ConfigDirCopy);
    assert!(
        b.checks
            .iter()
            .any(|c| c.starts_with("waited for a running background job")),
        "{b:?}"
    );
    let target = server(None);
    assert_eq!(
        redis::restore(&out, &target.conn(), TIMEOUT).unwrap().keys,
        200
    );

    // 50 ms per key: 10 s, far beyond a 1 s timeout.
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "50000"]);
    let started = Instant::now();
    let e = redis::backup(
        &host(),
        &source.conn(),
        SaveMode::Bgsave,
        &dir.join("slow.rdb"),
        Duration::from_secs(1),
    )
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.contains("did not finish within 1s"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{}", source.port())), "{e}");
    assert_files(dir.path(), &["after-running.rdb"]);
}

#[test]
fn tls_backup_goes_through_redis_cli() {
    let redis_cli = require_tool("redis-cli", "redis-tools");
    let source = RedisServer::start(RedisOptions {
        password: Some(SOURCE_PW.into()),
        tls: true,
        args: vec!["--repl-diskless-sync-delay".into(), "0".into()],
        ..RedisOptions::default()
    });
    let conn = source.conn();
    let port = source.port().to_string();
    let ca = source.ca_cert();
    let cli = |db: &str, cmd: &[&str]| {
        let out = Command::new(&redis_cli)
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["-h", "127.0.0.1", "-p", &port, "-n", db])
            .args(cmd)
            .env("REDISCLI_AUTH", SOURCE_PW)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli("0", &["SET", "tls-key", "over tls"]), "OK");
    assert_eq!(cli("4", &["RPUSH", "tls-list", "a", "b"]), "2");

    let dir = TestDir::new();
    let out = dir.join("tls.rdb");
    let b = redis::backup(&host(), &conn, SaveMode::Bgsave, &out, TIMEOUT).unwrap();
    assert_eq!(b.method, RedisMethod::RedisCliTls, "{b:?}");
    assert_eq!(b.source, format!("rediss://127.0.0.1:{port}/0"));
    assert!(b.checks.iter().any(|c| c == "redis-check-rdb: OK"), "{b:?}");
    assert_eq!(b.sha256, sha256_file(&out));
    assert_no_secret(&serde_json::to_string(&b).unwrap());
    assert_files(dir.path(), &["tls.rdb"]);

    let target = server(Some(TARGET_PW));
    let restored = redis::restore(&out, &target.conn(), TIMEOUT).unwrap();
    assert_eq!((restored.keys, restored.databases), (2, vec![0, 4]));
    let mut c = target.client();
    assert_eq!(c.cmd(&["GET", "tls-key"]).text(), "over tls");
    c.cmd(&["SELECT", "4"]);
    assert_eq!(
        c.cmd(&["LRANGE", "tls-list", "0", "-1"]),
        Value::Array(vec![Value::Bulk(b"a".to_vec()), Value::Bulk(b"b".to_vec())])
    );

    // A wrong password: redis-cli's failure, without the password.
    let wrong = RedisConn {
        password: Some(Secret::new("wrong-Pw-x9")),
        ..conn.clone()
    };
    let e = redis::backup(
        &host(),
        &wrong,
        SaveMode::Bgsave,
        &dir.join("w.rdb"),
        TIMEOUT,
    )
    .unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains("redis-cli") && text.contains("--tls"),
        "{text}"
    );
    assert_no_secret(&text);
    assert_files(dir.path(), &["tls.rdb"]);

    // Restoring into a TLS server is refused with the manual procedure.
    let e = redis::restore(&out, &conn, TIMEOUT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rediss://127.0.0.1"), "{e}");
    assert!(e.contains(&redis::restore_procedure(&out)), "{e}");
}

#[test]
fn a_failing_restore_names_the_key_and_the_target() {
    let source = server(None);
    source
        .client()
        .cmd_raw(&[b"SET", b"huge", &noise(2 << 20, 9)]);
    let dir = TestDir::new();
    let out = dir.join("huge.rdb");
    redis::backup(&host(), &source.conn(), SaveMode::Save, &out, TIMEOUT).unwrap();

    // A target that refuses writes: maxmemory below what it already uses.
    let target = RedisServer::start(RedisOptions {
        password: Some(TARGET_PW.into()),
        args: vec!["--maxmemory".into(), "1mb".into()],
        ..RedisOptions::default()
    });
    let e = redis::restore(&out, &target.conn(), TIMEOUT).unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains("RESTORE of key \"huge\" (database 0)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("redis://127.0.0.1:{}/0", target.port())),
        "{text}"
    );
    assert!(text.contains("OOM"), "{text}");
    assert!(text.contains(&redis::restore_procedure(&out)), "{text}");
    assert_no_secret(&text);
}
