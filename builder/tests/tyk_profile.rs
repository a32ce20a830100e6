//! The built-in Tyk profile, through the `ferry-build` binary: the spec `spec tyk` prints
//! (field by field), the Go plugin upgrade path for each row of Tyk's guide, supported
//! systems, Go plugin files and rebuilt plugin bundles (read back with `unzip`), signing
//! keys downloaded and checked against a pinned fingerprint, and `tyk` building a bundle
//! from a signed APT repository. Every server is on 127.0.0.1.

use ferry_builder::spec::Spec;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use toml::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ferry-build");
const PATH1: &str = "6c76e802a29838d058588ff924358706a078d0c5";
const PATH2: &str = "54e1072a6a9918e29606edf6b60def437b273d0a";
const PATH3: &str = "ffa83a27d3bf793aa27e5f6e4c7106106286699d";
const GRAPHQL: &str = "go mod edit -replace github.com/jensneuse/graphql-go-tools=github.com/TykTechnologies/graphql-go-tools@v1.6.2-0.20220426094453-0cc35471c1ca";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The path of a tool the test drives; fails naming the Debian package that has it.
fn require_tool(tool: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{tool} is not installed: install the Debian package {package} (apt-get install -y {package})");
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-tyk-")
        .tempdir()
        .unwrap()
}

/// Run `ferry-build` with loopback never proxied and quick retries.
fn ferry(args: &[&str]) -> Output {
    ferry_env(args, &[])
}

fn ferry_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .env("FERRY_RETRY_DELAY_MS", "10")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Stdout of a run that must succeed.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ferry-build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stderr of a run that must fail.
fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "ferry-build succeeded but should not have:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A private GNUPGHOME; kills its agent when dropped.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let dir = tempfile::Builder::new()
            .prefix("ferry-tyk-gpg-")
            .tempdir()
            .unwrap();
        Gpg { dir }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let gpg = require_tool("gpg", "gnupg");
        let mut child = Command::new(gpg)
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new Ed25519 signing key; returns its fingerprint.
    fn generate(&self, name: &str) -> String {
        let uid = format!("{name} <{name}@example.invalid>");
        self.run(&["--quick-gen-key", &uid, "ed25519", "sign", "never"], None);
        let listing =
            String::from_utf8(self.run(&["--with-colons", "--list-keys", &uid], None)).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("a fingerprint")
    }

    fn export(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", fpr], None)
    }

    fn clearsign(&self, fpr: &str, text: &[u8]) -> Vec<u8> {
        self.run(&["--local-user", fpr, "--clearsign"], Some(text))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        if let Some(gpgconf) = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| Path::new(d).join("gpgconf"))
            .find(|p| p.is_file())
        {
            let _ = Command::new(gpgconf)
                .arg("--homedir")
                .arg(self.dir.path())
                .args(["--kill", "all"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One throwaway public key (fingerprint, armored), shared by the spec tests.
fn shared_key() -> &'static (String, Vec<u8>) {
    static KEY: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let gpg = Gpg::new();
        let fpr = gpg.generate("tyk-profile-test");
        let asc = gpg.export(&fpr);
        (fpr, asc)
    })
}

/// A `--keyring-dir` with the shared key for every Tyk repository.
fn keyring_dir() -> tempfile::TempDir {
    let dir = temp();
    for repo in ["tyk-dashboard", "tyk-gateway", "tyk-pump"] {
        std::fs::write(dir.path().join(format!("{repo}.asc")), &shared_key().1).unwrap();
    }
    dir
}

/// `ferry-build spec tyk ARGS --keyring-dir DIR`, parsed; the text also loads as a spec.
fn spec(args: &[&str]) -> Value {
    let keys = keyring_dir();
    let mut all = vec!["spec", "tyk"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--keyring-dir", keys.path().to_str().unwrap()]);
    let text = ok(ferry(&all));
    Spec::parse(&text, Path::new("/nonexistent/tyk.spec.toml"))
        .unwrap_or_else(|e| panic!("the printed spec does not load: {e}\n{text}"));
    toml::from_str(&text).unwrap()
}

fn table_list<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    v.get(key)
        .map(|a| a.as_array().unwrap().iter().collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .as_str()
        .unwrap()
}

fn notes(v: &Value) -> Vec<String> {
    table_list(v, "notes")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn go_note(v: &Value) -> Option<String> {
    notes(v).into_iter().find(|n| n.starts_with("Go plugins"))
}

/// A minimal 64-bit little-endian ELF shared-object header for `machine`, then `payload`.
fn elf(machine: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little-endian
    b[6] = 1;
    b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b.extend_from_slice(payload);
    b
}
const AMD64: u16 = 62;
const ARM64: u16 = 183;

/// A tiny HTTP/1.0-style file server on 127.0.0.1: one request per connection.
struct Server {
    addr: SocketAddr,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, r, st) = (files.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &f, &r);
                }
            }
        });
        Server {
            addr,
            files,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn put(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_vec());
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    files: &Mutex<BTreeMap<String, Vec<u8>>>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    requests.lock().unwrap().push(path.clone());
    let body = files.lock().unwrap().get(&path).cloned();
    let mut conn = conn;
    match body {
        Some(body) => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method != "HEAD" {
                conn.write_all(&body)?;
            }
        }
        None => write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    conn.flush()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------
// The spec, field by field
// ---------------------------------------------------------------------------------------

#[test]
fn spec_ubuntu_focal_full_upgrade_field_by_field() {
    let keys = keyring_dir();
    let keys_path = std::fs::canonicalize(keys.path()).unwrap();
    let text = ok(ferry(&[
        "spec",
        "tyk",
        "--version",
        "5.2.5",
        "--from",
        "4.0.8",
        "--carry-previous",
        "--distro",
        "ubuntu",
        "--codename",
        "focal",
        "--plugin-compiler",
        "--keyring-dir",
        keys.path().to_str().unwrap(),
    ]));
    let v: Value = toml::from_str(&text).unwrap();

    assert_eq!(s(&v, "name"), "tyk-5.2.5-ubuntu-focal-amd64");
    assert_eq!(s(&v, "channel"), "tyk/ubuntu-focal-amd64");
    assert!(v.get("expires_in_days").is_none());
    let target = &v["target"];
    assert_eq!(
        (
            s(target, "distro"),
            s(target, "codename"),
            s(target, "arch")
        ),
        ("ubuntu", "focal", "amd64")
    );

    let repos = table_list(&v, "repository");
    let ids: Vec<&str> = repos.iter().map(|r| s(r, "id")).collect();
    assert_eq!(ids, ["tyk-dashboard", "tyk-gateway", "tyk-pump"]);
    for r in &repos {
        let id = s(r, "id");
        assert_eq!(
            s(r, "url"),
            format!("https://packagecloud.io/tyk/{id}/ubuntu/")
        );
        assert_eq!(s(r, "suite"), "focal");
        assert_eq!(strings(&r["components"]), ["main"]);
        assert_eq!(
            Path::new(s(r, "keyring")),
            keys_path.join(format!("{id}.asc"))
        );
    }

    let packages = table_list(&v, "package");
    assert_eq!(packages.len(), 3);
    for (p, name) in packages.iter().zip(["tyk-dashboard", "tyk-gateway"]) {
        assert_eq!(s(p, "name"), name);
        assert_eq!(s(p, "version"), "5.2.5");
        assert_eq!(s(p, "repository"), name);
        assert_eq!(s(p, "previous"), "4.0.8");
    }
    let pump = packages[2];
    assert_eq!(s(pump, "name"), "tyk-pump");
    assert_eq!(s(pump, "repository"), "tyk-pump");
    assert!(pump.get("version").is_none(), "pump takes the newest");
    assert!(pump.get("previous").is_none(), "pump has its own versions");

    let images = table_list(&v, "image");
    assert_eq!(images.len(), 1);
    assert_eq!(
        s(images[0], "reference"),
        "docker.io/tykio/tyk-plugin-compiler:v5.2.5"
    );
    assert_eq!(s(images[0], "platform"), "linux/amd64");
    assert!(table_list(&v, "file").is_empty());

    let steps = table_list(&v, "step");
    let expected = [
        (
            "dashboard",
            "/opt/tyk-dashboard/tyk_analytics.conf",
            "http://127.0.0.1:3000/hello",
            vec!["ok", "pass"],
            vec![],
        ),
        (
            "gateway",
            "/opt/tyk-gateway/tyk.conf",
            "http://127.0.0.1:8080/hello",
            vec!["pass"],
            vec!["warn"],
        ),
        (
            "pump",
            "/opt/tyk-pump/pump.conf",
            "http://127.0.0.1:8083/health",
            vec!["ok"],
            vec![],
        ),
    ];
    assert_eq!(steps.len(), 3);
    for (step, (component, config, url, pass, warn)) in steps.iter().zip(expected) {
        let package = format!("tyk-{component}");
        assert_eq!(s(step, "component"), component);
        assert_eq!(strings(&step["packages"]), [package.as_str()]);
        assert_eq!(s(step, "service"), package);
        assert_eq!(strings(&step["configs"]), [config]);
        assert_eq!(step["only_if_installed"].as_bool(), Some(true));
        assert!(step.get("place").is_none());
        let health = &step["health"];
        assert_eq!(s(health, "url"), url);
        assert_eq!(strings(&health["json_status"]), pass);
        match health.get("warn_status") {
            Some(w) => assert_eq!(strings(w), warn),
            None => assert!(warn.is_empty()),
        }
        assert_eq!(health["timeout_secs"].as_integer(), Some(60));
        assert_eq!(s(&health["derive"], "profile"), package);
        assert_eq!(s(&health["derive"], "config"), config);
    }

    type Row = (String, Option<String>, Option<Vec<String>>, bool);
    let backups: Vec<Row> = table_list(&v, "backup")
        .iter()
        .map(|b| {
            (
                s(b, "kind").to_string(),
                b.get("config").map(|c| c.as_str().unwrap().to_string()),
                b.get("paths")
                    .map(|p| strings(p).into_iter().map(String::from).collect()),
                b["optional"].as_bool().unwrap(),
            )
        })
        .collect();
    let gw = Some("/opt/tyk-gateway/tyk.conf".to_string());
    let dash = Some("/opt/tyk-dashboard/tyk_analytics.conf".to_string());
    let dir = |d: &str| Some(vec![format!("/opt/tyk-gateway/{d}")]);
    assert_eq!(
        backups,
        vec![
            ("files".into(), None, dir("apps"), true),
            ("files".into(), None, dir("policies"), true),
            ("files".into(), None, dir("middleware"), true),
            ("files".into(), gw.clone(), Some(vec![]), true),
            ("redis".into(), gw, None, true),
            ("mongodb".into(), dash.clone(), None, true),
            ("postgres".into(), dash, None, true),
        ]
    );

    let notes = notes(&v);
    assert!(notes[0].contains("tyk-dashboard, then tyk-gateway, then tyk-pump"));
    assert!(notes.iter().any(|n| n.contains("--pump-version")));
    assert!(notes
        .iter()
        .any(|n| n.contains("4.0.8") && n.contains("rollback")));
    let go = go_note(&v).expect("a Go plugin note");
    assert!(go.contains("upgrade path 3"), "{go}");
    assert!(go.contains(&format!(
        "    go get github.com/TykTechnologies/tyk@{PATH3}\n"
    )));
    assert!(go.contains("    go mod tidy\n"));
    assert!(!go.contains("    go mod vendor\n"));
    assert!(go.contains("docker run --rm -v \"$PWD\":/plugin-source --platform=linux/amd64 tykio/tyk-plugin-compiler:v5.2.5 plugin.so"), "{go}");
    assert!(go.contains("plugin_v5.2.5_linux_amd64.so"));
    assert!(go.contains("predates 4.1"), "from 4.0.8: {go}");
    assert!(go.contains("Could not load Go-plugin"));
    assert!(notes
        .iter()
        .any(|n| n.contains("images load") && n.contains("tyk-plugin-compiler:v5.2.5")));
}

#[test]
fn plugin_compiler_image_replaces_tyks_image() {
    let mirror = "127.0.0.1:5000/tykio/tyk-plugin-compiler:v5.2.5";
    // The flag alone carries the image: it implies --plugin-compiler.
    let v = spec(&[
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
        "--plugin-compiler-image",
        mirror,
    ]);
    let images = table_list(&v, "image");
    assert_eq!(images.len(), 1);
    assert_eq!(s(images[0], "reference"), mirror);
    assert_eq!(s(images[0], "platform"), "linux/amd64");
    let go = go_note(&v).expect("a Go plugin note");
    assert!(
        go.contains(&format!("--platform=linux/amd64 {mirror} plugin.so")),
        "{go}"
    );
    let notes = notes(&v);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("images load") && n.contains(mirror)),
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("docker.io/tykio")),
        "{notes:?}"
    );

    // With --plugin-compiler too it is still the one image.
    let v = spec(&[
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
        "--plugin-compiler",
        "--plugin-compiler-image",
        mirror,
    ]);
    let images = table_list(&v, "image");
    assert_eq!(images.len(), 1);
    assert_eq!(s(images[0], "reference"), mirror);

    // Something that is not a reference is refused before anything is fetched.
    let keys = keyring_dir();
    for bad in ["", "http://127.0.0.1:5000/tyk:v1", "tyk plugin"] {
        let err = fails(ferry(&[
            "spec",
            "tyk",
            "--version",
            "5.2.5",
            "--distro",
            "debian",
            "--codename",
            "bookworm",
            "--plugin-compiler-image",
            bad,
            "--keyring-dir",
            keys.path().to_str().unwrap(),
        ]));
        assert!(
            err.contains("--plugin-compiler-image") && err.contains("not an image reference"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn spec_debian_bookworm_gateway_only_on_arm64() {
    let v = spec(&[
        "--version",
        "5.0.3",
        "--from",
        "4.2.0",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
        "--arch",
        "arm64",
        "--components",
        "gateway",
        "--expires-in-days",
        "30",
        "--name",
        "tyk-gw-test",
        "--repo-base",
        "http://127.0.0.1:9/mirror/tyk/",
    ]);
    assert_eq!(s(&v, "name"), "tyk-gw-test");
    assert_eq!(s(&v, "channel"), "tyk/debian-bookworm-arm64");
    assert_eq!(v["expires_in_days"].as_integer(), Some(30));
    assert_eq!(s(&v["target"], "arch"), "arm64");
    let repos = table_list(&v, "repository");
    assert_eq!(repos.len(), 1);
    assert_eq!(
        s(repos[0], "url"),
        "http://127.0.0.1:9/mirror/tyk/tyk-gateway/debian/"
    );
    assert_eq!(s(repos[0], "suite"), "bookworm");
    let packages = table_list(&v, "package");
    assert_eq!(packages.len(), 1);
    assert_eq!(s(packages[0], "version"), "5.0.3");
    assert!(packages[0].get("previous").is_none(), "no --carry-previous");
    let steps = table_list(&v, "step");
    assert_eq!(steps.len(), 1);
    assert_eq!(s(steps[0], "component"), "gateway");
    let kinds: Vec<&str> = table_list(&v, "backup")
        .iter()
        .map(|b| s(b, "kind"))
        .collect();
    assert_eq!(kinds, ["files", "files", "files", "files", "redis"]);
    assert!(table_list(&v, "image").is_empty());
    let go = go_note(&v).unwrap();
    assert!(go.contains("upgrade path 2"), "{go}");
    assert!(
        go.contains("-e GOARCH=arm64 tykio/tyk-plugin-compiler:v5.0.3"),
        "{go}"
    );
    assert!(go.contains("plugin_v5.0.3_linux_arm64.so"));
    assert!(go.contains("The commit is the v5.0.3 tag itself"), "{go}");
    assert!(!go.contains("predates 4.1"));
}

#[test]
fn spec_dashboard_and_pump_only() {
    let v = spec(&[
        "--version",
        "4.2.0",
        "--pump-version",
        "1.9.0",
        "--components",
        "pump,dashboard",
        "--distro",
        "debian",
        "--codename",
        "bullseye",
    ]);
    let components: Vec<&str> = table_list(&v, "step")
        .iter()
        .map(|st| s(st, "component"))
        .collect();
    assert_eq!(components, ["dashboard", "pump"], "always in upgrade order");
    let packages = table_list(&v, "package");
    assert_eq!(s(packages[0], "version"), "4.2.0");
    assert_eq!(s(packages[1], "name"), "tyk-pump");
    assert_eq!(s(packages[1], "version"), "1.9.0");
    let kinds: Vec<&str> = table_list(&v, "backup")
        .iter()
        .map(|b| s(b, "kind"))
        .collect();
    assert_eq!(kinds, ["mongodb", "postgres"]);
    assert!(go_note(&v).is_none(), "no gateway, no Go plugins");
    assert!(!notes(&v).iter().any(|n| n.contains("--pump-version")));
    // A plugin flag without the gateway is refused.
    let keys = keyring_dir();
    let err = fails(ferry(&[
        "spec",
        "tyk",
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bullseye",
        "--components",
        "dashboard",
        "--plugin",
        "/nonexistent.so",
        "--keyring-dir",
        keys.path().to_str().unwrap(),
    ]));
    assert!(err.contains("add gateway to --components"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Go plugin upgrade paths
// ---------------------------------------------------------------------------------------

#[test]
fn go_plugin_path_for_each_row_of_the_guide() {
    // (target, path, commit, graphql replace, vendor, the commit is the target's tag)
    let rows = [
        ("4.0.3", 1, PATH1, true, true, true),
        ("4.0.8", 1, PATH1, true, true, false),
        ("4.1.0", 1, PATH1, true, true, false),
        ("4.2.0", 2, PATH2, false, true, false),
        ("5.0.3", 2, PATH2, false, true, true),
        ("5.0.9", 2, PATH2, false, true, false),
        ("5.1.0", 3, PATH3, false, false, false),
        ("5.2.1", 3, PATH3, false, false, true),
        ("5.2.5", 3, PATH3, false, false, false),
        ("5.3.0", 3, PATH3, false, false, false),
    ];
    for (target, path, commit, replace, vendor, own_tag) in rows {
        let v = spec(&[
            "--version",
            target,
            "--from",
            "4.0.1",
            "--distro",
            "ubuntu",
            "--codename",
            "jammy",
            "--components",
            "gateway",
        ]);
        let go = go_note(&v).unwrap();
        let ctx = format!("target {target}:\n{go}");
        assert!(
            go.starts_with(&format!("Go plugins (upgrade path {path} ")),
            "{ctx}"
        );
        let lines: Vec<&str> = go.lines().map(str::trim).collect();
        let get = format!("go get github.com/TykTechnologies/tyk@{commit}");
        let at = lines.iter().position(|l| *l == get).expect(&ctx);
        let mut expect = vec![get.as_str()];
        if replace {
            expect.push(GRAPHQL);
        }
        expect.push("go mod tidy");
        if vendor {
            expect.push("go mod vendor");
        }
        assert_eq!(&lines[at..at + expect.len()], &expect[..], "{ctx}");
        if !vendor {
            assert!(!lines.contains(&"go mod vendor"), "{ctx}");
        }
        assert_eq!(
            go.contains(&format!("v{target} tag itself")),
            own_tag,
            "{ctx}"
        );
        if !own_tag {
            assert!(go.contains(&format!("refs/tags/v{target}")), "{ctx}");
        }
        assert!(
            go.contains(&format!("tykio/tyk-plugin-compiler:v{target} plugin.so")),
            "{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Supported systems
// ---------------------------------------------------------------------------------------

#[test]
fn unsupported_systems_are_refused_with_the_list() {
    let keys = keyring_dir();
    let k = keys.path().to_str().unwrap();
    let run = |distro: &str, codename: &str, arch: &str, version: &str, extra: &[&str]| {
        let mut args = vec![
            "spec",
            "tyk",
            "--version",
            version,
            "--distro",
            distro,
            "--codename",
            codename,
            "--arch",
            arch,
            "--keyring-dir",
            k,
        ];
        args.extend_from_slice(extra);
        ferry(&args)
    };
    for (distro, codename) in [
        ("ubuntu", "trusty"),
        ("debian", "trixie"),
        ("ubuntu", "bookworm"),
    ] {
        let err = fails(run(distro, codename, "amd64", "5.2.5", &[]));
        for supported in [
            "Debian 11 (bullseye)",
            "Debian 12 (bookworm)",
            "Ubuntu 16.04 (xenial)",
            "Ubuntu 18.04 (bionic)",
            "Ubuntu 20.04 (focal)",
            "Ubuntu 22.04 (jammy)",
            "Ubuntu 24.04 (noble)",
        ] {
            assert!(err.contains(supported), "{distro} {codename}: {err}");
        }
        assert!(err.contains("--allow-unsupported-os"), "{err}");
    }
    let text = ok(run(
        "debian",
        "trixie",
        "amd64",
        "5.2.5",
        &["--allow-unsupported-os"],
    ));
    let v: Value = toml::from_str(&text).unwrap();
    assert_eq!(s(&v["target"], "codename"), "trixie");
    assert!(notes(&v)
        .iter()
        .any(|n| n.contains("not a system this profile supports")));

    for (distro, codename) in [
        ("debian", "bullseye"),
        ("debian", "bookworm"),
        ("ubuntu", "xenial"),
        ("ubuntu", "bionic"),
        ("ubuntu", "focal"),
        ("ubuntu", "jammy"),
        ("ubuntu", "noble"),
    ] {
        ok(run(distro, codename, "arm64", "5.2.5", &[]));
    }

    let err = fails(run("ubuntu", "noble", "s390x", "5.2.5", &[]));
    assert!(err.contains("s390x") && err.contains("5.3"), "{err}");
    let err = fails(run(
        "ubuntu",
        "noble",
        "s390x",
        "5.2.9",
        &["--allow-unsupported-os"],
    ));
    assert!(err.contains("from 5.3"), "{err}");
    let v: Value = toml::from_str(&ok(run("ubuntu", "noble", "s390x", "5.3.0", &[]))).unwrap();
    assert_eq!(s(&v, "name"), "tyk-5.3.0-ubuntu-noble-s390x");

    // Other flag checks.
    let err = fails(run("ubuntu", "noble", "amd64", "5.3", &[]));
    assert!(err.contains("major.minor.patch"), "{err}");
    let err = fails(run(
        "ubuntu",
        "noble",
        "amd64",
        "5.2.5",
        &["--from", "5.3.0"],
    ));
    assert!(err.contains("not older"), "{err}");
    let err = fails(run(
        "ubuntu",
        "noble",
        "amd64",
        "5.2.5",
        &["--carry-previous"],
    ));
    assert!(err.contains("--from"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Go plugin files
// ---------------------------------------------------------------------------------------

#[test]
fn plugins_are_renamed_placed_and_checked() {
    let dir = temp();
    let plain = dir.path().join("plugin.so");
    let named = dir.path().join("auth_v5.2.5_linux_amd64.so");
    std::fs::write(&plain, elf(AMD64, b"plugin")).unwrap();
    std::fs::write(&named, elf(AMD64, b"auth")).unwrap();
    let base = [
        "--version",
        "5.2.5",
        "--from",
        "5.0.2",
        "--distro",
        "ubuntu",
        "--codename",
        "jammy",
        "--components",
        "gateway,pump",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--plugin",
        plain.to_str().unwrap(),
        "--plugin",
        named.to_str().unwrap(),
    ]);
    let v = spec(&args);
    let files = table_list(&v, "file");
    assert_eq!(files.len(), 2);
    let want = [
        (&plain, "plugin_v5.2.5_linux_amd64.so"),
        (&named, "auth_v5.2.5_linux_amd64.so"),
    ];
    for (f, (source, name)) in files.iter().zip(want) {
        assert_eq!(
            Path::new(s(f, "source")),
            std::fs::canonicalize(source).unwrap()
        );
        assert_eq!(s(f, "path"), format!("files/plugins/{name}"));
        assert_eq!(s(f, "mode"), "0644");
    }
    let steps = table_list(&v, "step");
    assert_eq!(s(steps[0], "component"), "gateway");
    let place = table_list(steps[0], "place");
    assert_eq!(place.len(), 2);
    for (p, (_, name)) in place.iter().zip(want) {
        assert_eq!(s(p, "file"), format!("files/plugins/{name}"));
        assert_eq!(s(p, "dest"), format!("/opt/tyk-gateway/middleware/{name}"));
        assert_eq!(s(p, "mode"), "0644");
    }
    assert!(
        steps[1].get("place").is_none(),
        "only the gateway places plugins"
    );
    assert!(notes(&v)
        .iter()
        .any(|n| n
            .contains("placed in /opt/tyk-gateway/middleware/ before tyk-gateway is installed")));

    // Another directory on the host.
    let mut other = args.clone();
    other.extend_from_slice(&["--plugin-dir", "/srv/tyk/plugins/"]);
    let v = spec(&other);
    let place = table_list(table_list(&v, "step")[0], "place");
    assert_eq!(
        s(place[0], "dest"),
        "/srv/tyk/plugins/plugin_v5.2.5_linux_amd64.so"
    );

    // Refusals: wrong architecture, another version, not a shared object.
    let keys = keyring_dir();
    let refuse = |file: &Path, content: &[u8], arch: &str| {
        std::fs::write(file, content).unwrap();
        let mut a = vec!["spec", "tyk"];
        a.extend_from_slice(&base);
        a.extend_from_slice(&[
            "--arch",
            arch,
            "--plugin",
            file.to_str().unwrap(),
            "--keyring-dir",
            keys.path().to_str().unwrap(),
        ]);
        fails(ferry(&a))
    };
    let err = refuse(&dir.path().join("arm.so"), &elf(ARM64, b""), "amd64");
    assert!(err.contains("arm64") && err.contains("amd64"), "{err}");
    let err = refuse(&dir.path().join("x86.so"), &elf(AMD64, b""), "arm64");
    assert!(err.contains("GOARCH=arm64"), "{err}");
    let err = refuse(
        &dir.path().join("old_v5.2.4_linux_amd64.so"),
        &elf(AMD64, b""),
        "amd64",
    );
    assert!(
        err.contains("5.2.4") && err.contains("tyk-plugin-compiler:v5.2.5"),
        "{err}"
    );
    let err = refuse(&dir.path().join("script.so"), b"#!/bin/sh\n", "amd64");
    assert!(err.contains("not an ELF shared object"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Plugin bundles
// ---------------------------------------------------------------------------------------

fn unzip(args: &[&str]) -> Vec<u8> {
    let unzip = require_tool("unzip", "unzip");
    let out = Command::new(unzip).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "unzip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Hex MD5 by coreutils' `md5sum`, independent of the builder's code.
fn md5sum(bytes: &[u8]) -> String {
    let tool = require_tool("md5sum", "coreutils");
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tyk")
}

#[test]
fn plugin_bundle_is_rebuilt_with_both_plugins_and_a_fresh_checksum() {
    let work = temp();
    let bundle_dir = work.path().join("my-plugin");
    std::fs::create_dir(&bundle_dir).unwrap();
    std::fs::copy(
        data_dir().join("plugin-bundle/manifest.json"),
        bundle_dir.join("manifest.json"),
    )
    .unwrap();
    let old = elf(AMD64, b"compiled for 4.0.8");
    let new = elf(AMD64, b"compiled for 5.2.5 by tyk-plugin-compiler");
    std::fs::write(bundle_dir.join("plugin.so"), &old).unwrap();
    let build_dir = work.path().join("build");
    std::fs::create_dir(&build_dir).unwrap();
    std::fs::write(build_dir.join("plugin.so"), &new).unwrap();
    let manifest = bundle_dir.join("manifest.json");
    let new_plugin = build_dir.join("plugin.so");

    let run = |assets: &Path| {
        spec(&[
            "--version",
            "5.2.5",
            "--from",
            "4.0.8",
            "--distro",
            "debian",
            "--codename",
            "bullseye",
            "--components",
            "gateway",
            "--plugin",
            new_plugin.to_str().unwrap(),
            "--plugin-bundle",
            manifest.to_str().unwrap(),
            "--assets-dir",
            assets.to_str().unwrap(),
        ])
    };
    let assets = work.path().join("assets");
    let v = run(&assets);
    let zip_path = std::fs::canonicalize(&assets)
        .unwrap()
        .join("plugins/my-plugin-v5.2.5.zip");
    let files = table_list(&v, "file");
    let zip_file = files
        .iter()
        .find(|f| s(f, "path") == "files/plugins/my-plugin-v5.2.5.zip")
        .expect("the bundle zip is carried");
    assert_eq!(Path::new(s(zip_file, "source")), zip_path);
    assert!(files
        .iter()
        .any(|f| s(f, "path") == "files/plugins/plugin_v5.2.5_linux_amd64.so"));

    // unzip reads it: both plugins and the manifest, CRCs correct.
    let z = zip_path.to_str().unwrap();
    unzip(&["-tq", z]);
    let listing = String::from_utf8(unzip(&["-Z1", z])).unwrap();
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["manifest.json", "plugin.so", "plugin_v5.2.5_linux_amd64.so"]
    );
    let listed = String::from_utf8(unzip(&["-l", z])).unwrap();
    assert!(listed.contains("plugin_v5.2.5_linux_amd64.so"), "{listed}");
    assert_eq!(unzip(&["-p", z, "plugin.so"]), old);
    assert_eq!(unzip(&["-p", z, "plugin_v5.2.5_linux_amd64.so"]), new);
    let m: serde_json::Value = serde_json::from_slice(&unzip(&["-p", z, "manifest.json"])).unwrap();
    assert_eq!(
        m["file_list"],
        serde_json::json!(["plugin.so", "plugin_v5.2.5_linux_amd64.so"])
    );
    let mut both = old.clone();
    both.extend_from_slice(&new);
    assert_eq!(m["checksum"].as_str().unwrap(), md5sum(&both));
    assert_eq!(m["signature"], "", "the old signature is dropped");
    assert_eq!(
        m["custom_middleware"]["post"][0]["path"], "plugin.so",
        "middleware definitions are kept"
    );
    assert_eq!(m["custom_middleware"]["driver"], "goplugin");
    let note = notes(&v)
        .into_iter()
        .find(|n| n.starts_with("Plugin bundle"))
        .unwrap();
    assert!(note.contains(&md5sum(&both)), "{note}");
    assert!(note.contains("tyk bundle build -k"), "{note}");
    assert!(note.contains("signature was dropped"), "{note}");

    // Deterministic: the same inputs give the same zip.
    let again = work.path().join("again");
    run(&again);
    assert_eq!(
        std::fs::read(again.join("plugins/my-plugin-v5.2.5.zip")).unwrap(),
        std::fs::read(&zip_path).unwrap()
    );

    // The new build may sit beside the manifest instead of coming from --plugin; without
    // it the bundle is refused, naming the compiler image.
    let keys = keyring_dir();
    let beside = |assets: &Path| {
        ferry(&[
            "spec",
            "tyk",
            "--version",
            "5.2.5",
            "--distro",
            "debian",
            "--codename",
            "bullseye",
            "--components",
            "gateway",
            "--plugin-bundle",
            manifest.to_str().unwrap(),
            "--assets-dir",
            assets.to_str().unwrap(),
            "--keyring-dir",
            keys.path().to_str().unwrap(),
        ])
    };
    let err = fails(beside(&work.path().join("a1")));
    assert!(
        err.contains("tyk-plugin-compiler:v5.2.5") && err.contains("--plugin"),
        "{err}"
    );
    std::fs::write(bundle_dir.join("plugin_v5.2.5_linux_amd64.so"), &new).unwrap();
    let v: Value = toml::from_str(&ok(beside(&work.path().join("a2")))).unwrap();
    assert!(table_list(&v, "file")
        .iter()
        .all(|f| s(f, "path") != "files/plugins/plugin_v5.2.5_linux_amd64.so"));
    let z2 = work.path().join("a2/plugins/my-plugin-v5.2.5.zip");
    let m: serde_json::Value =
        serde_json::from_slice(&unzip(&["-p", z2.to_str().unwrap(), "manifest.json"])).unwrap();
    assert_eq!(m["checksum"].as_str().unwrap(), md5sum(&both));

    // A bundle without a Go plugin is refused.
    let js = work.path().join("js");
    std::fs::create_dir(&js).unwrap();
    std::fs::write(
        js.join("manifest.json"),
        r#"{"file_list":["mw.js"],"custom_middleware":{"driver":"otto"}}"#,
    )
    .unwrap();
    let err = fails(ferry(&[
        "spec",
        "tyk",
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bullseye",
        "--plugin-bundle",
        js.join("manifest.json").to_str().unwrap(),
        "--assets-dir",
        work.path().join("a3").to_str().unwrap(),
        "--keyring-dir",
        keys.path().to_str().unwrap(),
    ]));
    assert!(err.contains("no .so"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------

#[test]
fn downloaded_signing_key_is_checked_against_the_pinned_fingerprint() {
    let gpg = Gpg::new();
    let served = gpg.generate("served");
    let other = gpg.generate("other");
    let server = Server::start();
    server.put("/tyk/tyk-gateway/gpgkey", &gpg.export(&served));
    let base = format!("{}/tyk", server.url());
    let work = temp();
    let spec_with = |assets: &Path, pin: Option<&str>| {
        let mut args = vec![
            "spec",
            "tyk",
            "--version",
            "5.2.5",
            "--distro",
            "debian",
            "--codename",
            "bookworm",
            "--components",
            "gateway",
            "--repo-base",
            &base,
            "--assets-dir",
            assets.to_str().unwrap(),
        ];
        let pin = pin.map(|p| format!("tyk-gateway={p}"));
        if let Some(p) = &pin {
            args.extend_from_slice(&["--keyring-fingerprint", p]);
        }
        ferry(&args)
    };

    // A key that is not the pinned one is refused, naming both, and not kept.
    let refused = work.path().join("refused");
    let err = fails(spec_with(&refused, Some(&other)));
    assert!(
        err.contains(&served) && err.contains(&other),
        "both fingerprints: {err}"
    );
    assert!(err.contains("tyk-gateway"), "{err}");
    assert!(!refused.join("keys/tyk-gateway.asc").exists());

    // The pinned key (written in lower case with spaces) is accepted and stored.
    let pinned = work.path().join("pinned");
    let spaced = served
        .to_lowercase()
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let out = spec_with(&pinned, Some(&spaced));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v: Value = toml::from_str(&ok(out)).unwrap();
    assert!(
        stderr.contains(&served) && stderr.contains("as pinned"),
        "{stderr}"
    );
    let stored = std::fs::canonicalize(&pinned)
        .unwrap()
        .join("keys/tyk-gateway.asc");
    assert_eq!(std::fs::read(&stored).unwrap(), gpg.export(&served));
    assert_eq!(
        Path::new(s(table_list(&v, "repository")[0], "keyring")),
        stored
    );

    // Unpinned: accepted, and the fingerprint is printed with how to pin it.
    let unpinned = work.path().join("unpinned");
    let out = spec_with(&unpinned, None);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(
        stderr.contains(&format!("--keyring-fingerprint tyk-gateway={served}")),
        "{stderr}"
    );

    // Fetched on first use only: a stored key is reused, and still checked against a pin.
    let before = server.requests().len();
    ok(spec_with(&unpinned, None));
    assert_eq!(server.requests().len(), before, "no second download");
    let err = fails(spec_with(&unpinned, Some(&other)));
    assert!(err.contains(&served) && err.contains(&other), "{err}");

    // A repository without a key is a clear error.
    let err = fails(ferry(&[
        "spec",
        "tyk",
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
        "--components",
        "pump",
        "--repo-base",
        &base,
        "--assets-dir",
        work.path().join("nokey").to_str().unwrap(),
    ]));
    assert!(err.contains("/tyk/tyk-pump/gpgkey"), "{err}");
    // Without --keyring-dir or --assets-dir, `spec tyk` says what it needs.
    let err = fails(ferry(&[
        "spec",
        "tyk",
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
    ]));
    assert!(
        err.contains("--keyring-dir") && err.contains("--assets-dir"),
        "{err}"
    );
    // Malformed pins are usage errors.
    let err = fails(spec_with(&work.path().join("bad"), Some("XYZ")));
    assert!(err.contains("fingerprint"), "{err}");
}

// ---------------------------------------------------------------------------------------
// `ferry-build tyk`: spec, lock and bundle in one go
// ---------------------------------------------------------------------------------------

/// A signed APT repository for tyk-gateway 5.2.4 and 5.2.5 (debian bookworm amd64)
/// under `/tyk/tyk-gateway/`, with its key at `/tyk/tyk-gateway/gpgkey`.
fn serve_gateway_repository(server: &Server, gpg: &Gpg, fpr: &str) -> BTreeMap<String, Vec<u8>> {
    let root = "/tyk/tyk-gateway";
    server.put(&format!("{root}/gpgkey"), &gpg.export(fpr));
    let mut debs = BTreeMap::new();
    let mut packages = String::new();
    for version in ["5.2.4", "5.2.5"] {
        let body = format!("not really a deb: tyk-gateway {version}\n").into_bytes();
        let filename = format!("pool/main/t/tyk-gateway/tyk-gateway_{version}_amd64.deb");
        packages.push_str(&format!(
            "Package: tyk-gateway\nVersion: {version}\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\nFilename: {filename}\nSize: {}\nSHA256: {}\nDescription: Tyk API Gateway (test)\n\n",
            body.len(),
            sha256(&body)
        ));
        server.put(&format!("{root}/debian/{filename}"), &body);
        debs.insert(version.to_string(), body);
    }
    let index = "main/binary-amd64/Packages";
    server.put(
        &format!("{root}/debian/dists/bookworm/{index}"),
        packages.as_bytes(),
    );
    let release = format!(
        "Origin: packagecloud.io/tyk/tyk-gateway\nLabel: tyk-gateway\nSuite: bookworm\nCodename: bookworm\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} {index}\n",
        sha256(packages.as_bytes()),
        packages.len()
    );
    server.put(
        &format!("{root}/debian/dists/bookworm/InRelease"),
        &gpg.clearsign(fpr, release.as_bytes()),
    );
    debs
}

fn bundle_manifest(path: &Path) -> serde_json::Value {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("ferry/manifest.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return serde_json::from_str(&text).unwrap();
        }
    }
    panic!("no ferry/manifest.json in {}", path.display());
}

#[test]
fn tyk_builds_a_bundle_from_a_signed_repository() {
    let gpg = Gpg::new();
    let fpr = gpg.generate("tyk-gateway-repo");
    let server = Server::start();
    let debs = serve_gateway_repository(&server, &gpg, &fpr);
    let work = temp();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_string();
    ok(ferry(&[
        "key",
        "generate",
        "--out",
        &w("signer"),
        "--no-passphrase",
    ]));
    let plugin = work.path().join("plugin.so");
    let plugin_bytes = elf(AMD64, b"plugin for 5.2.5");
    std::fs::write(&plugin, &plugin_bytes).unwrap();
    let base = format!("{}/tyk", server.url());
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let out = ferry_env(
        &[
            "tyk",
            "--version",
            "5.2.5",
            "--from",
            "5.2.4",
            "--carry-previous",
            "--distro",
            "debian",
            "--codename",
            "bookworm",
            "--components",
            "gateway",
            "--repo-base",
            &base,
            "--keyring-fingerprint",
            &format!("tyk-gateway={fpr}"),
            "--plugin",
            plugin.to_str().unwrap(),
            "--key",
            &w("signer.key"),
            "--out",
            &w("out"),
            "--cache",
            &w("cache"),
            "--jobs",
            "2",
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = ok(out);
    assert!(stderr.contains(&fpr), "fingerprint on stderr: {stderr}");
    let name = "tyk-5.2.5-debian-bookworm-amd64";
    assert!(stdout.contains(&format!("bundle {name}")), "{stdout}");

    // The spec beside the bundle: the key relative to it, other paths absolute.
    let out_dir = work.path().join("out");
    let spec_path = out_dir.join(format!("{name}.spec.toml"));
    let v: Value = toml::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    assert_eq!(
        s(table_list(&v, "repository")[0], "keyring"),
        "keys/tyk-gateway.asc"
    );
    assert!(out_dir.join("keys/tyk-gateway.asc").is_file());
    assert!(Path::new(s(table_list(&v, "file")[0], "source")).is_absolute());

    // The lock records the key's fingerprint and what was fetched.
    let lock: Value = toml::from_str(
        &std::fs::read_to_string(out_dir.join(format!("{name}.spec.toml.lock"))).unwrap(),
    )
    .unwrap();
    let repo = table_list(&lock, "repository")[0];
    assert_eq!(strings(&repo["keyring"]), [fpr.as_str()]);
    assert_eq!(s(repo, "signed_by"), fpr);

    // The bundle: both versions, the plugin, the step that places it.
    let bundle = out_dir.join(format!("{name}.ferry.tar.gz"));
    let m = bundle_manifest(&bundle);
    assert_eq!(m["name"], name);
    assert_eq!(m["channel"], "tyk/debian-bookworm-amd64");
    let pkgs: Vec<(String, String)> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap().to_string(),
                p["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pkgs,
        [
            ("5.2.4".to_string(), "previous".to_string()),
            ("5.2.5".to_string(), "target".to_string())
        ]
    );
    let files = m["files"].as_array().unwrap();
    let file = |path: &str| files.iter().find(|f| f["path"] == path).cloned();
    assert_eq!(
        file("debs/tyk-gateway_5.2.5_amd64.deb").unwrap()["sha256"],
        sha256(&debs["5.2.5"])
    );
    assert_eq!(
        file("files/plugins/plugin_v5.2.5_linux_amd64.so").unwrap()["sha256"],
        sha256(&plugin_bytes)
    );
    let step = &m["steps"][0];
    assert_eq!(step["component"], "gateway");
    assert_eq!(
        step["place"],
        serde_json::json!([{
            "file": "files/plugins/plugin_v5.2.5_linux_amd64.so",
            "dest": "/opt/tyk-gateway/middleware/plugin_v5.2.5_linux_amd64.so",
            "mode": "0644"
        }])
    );
    assert_eq!(
        step["health"]["derive"],
        serde_json::json!({"profile": "tyk-gateway", "config": "/opt/tyk-gateway/tyk.conf"})
    );
    assert_eq!(step["health"]["warn_status"], serde_json::json!(["warn"]));
    assert!(m["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains(PATH3)));

    // The written spec rebuilds to the same bytes with plain `ferry-build build`.
    ok(ferry_env(
        &[
            "build",
            "--spec",
            spec_path.to_str().unwrap(),
            "--key",
            &w("signer.key"),
            "--out",
            &w("rebuilt"),
            "--cache",
            &w("cache"),
        ],
        &env,
    ));
    assert_eq!(
        std::fs::read(work.path().join(format!("rebuilt/{name}.ferry.tar.gz"))).unwrap(),
        std::fs::read(&bundle).unwrap()
    );

    // A changed key upstream is refused before anything is built.
    let other = gpg.generate("impostor");
    server.put("/tyk/tyk-gateway/gpgkey", &gpg.export(&other));
    let err = fails(ferry(&[
        "tyk",
        "--version",
        "5.2.5",
        "--distro",
        "debian",
        "--codename",
        "bookworm",
        "--components",
        "gateway",
        "--repo-base",
        &base,
        "--keyring-fingerprint",
        &format!("tyk-gateway={fpr}"),
        "--key",
        &w("signer.key"),
        "--out",
        &w("out2"),
        "--cache",
        &w("cache"),
    ]));
    assert!(err.contains(&other) && err.contains(&fpr), "{err}");
    assert!(!work.path().join("out2/keys/tyk-gateway.asc").exists());
    assert!(!work
        .path()
        .join(format!("out2/{name}.ferry.tar.gz"))
        .exists());
}

#[test]
fn help_describes_the_tyk_commands() {
    let top = ok(ferry(&["--help"]));
    assert!(top.contains("spec") && top.contains("tyk"), "{top}");
    let spec_help = ok(ferry(&["spec", "tyk", "--help"]));
    for flag in [
        "--version",
        "--pump-version",
        "--distro",
        "--codename",
        "--arch",
        "--from",
        "--carry-previous",
        "--components",
        "--plugin-compiler",
        "--plugin ",
        "--plugin-bundle",
        "--repo-base",
        "--keyring-dir",
        "--keyring-fingerprint",
        "--allow-unsupported-os",
        "--name",
        "--expires-in-days",
        "--assets-dir",
    ] {
        assert!(spec_help.contains(flag), "{flag}: {spec_help}");
    }
    let tyk_help = ok(ferry(&["tyk", "--help"]));
    for flag in [
        "--key",
        "--out",
        "--compression",
        "--split",
        "--cache",
        "--jobs",
        "--inventory",
    ] {
        assert!(tyk_help.contains(flag), "{flag}: {tyk_help}");
    }
    // The binary's own --version still works.
    let version = ok(ferry(&["--version"]));
    assert!(version.starts_with("ferry-build "), "{version}");
}
