//! `ferry-tyk-demo`: ferry end to end on one machine, with no network but 127.0.0.1 (what
//! `./demo.sh` runs).
//!
//! It plays both sides of the air gap. The vendor side: Tyk-like `tyk-dashboard`,
//! `tyk-gateway` and `tyk-pump` packages (4.0.8, 5.2.5, and a 5.2.6 whose gateway is
//! broken; Pump 1.8.3 and 1.9.0) in three signed APT repositories laid out like Tyk's
//! (`/tyk/<repo>/debian/dists/bookworm/...` and `/tyk/<repo>/gpgkey`), a registry with a
//! small plugin-compiler-like image, and Redis. The host side: a throwaway dpkg root
//! running 4.0.8, with HTTP services answering `/hello` and `/health` as Tyk does, with
//! the status each package's post-install "restart" wrote.
//!
//! Then it runs the real `ferry-build tyk`, `ferry-install verify`, `plan`, `apply`,
//! `backup list` and `status`, printing every command line and its output, and applies a
//! bundle with the broken gateway to show the automatic rollback. Every server stops and
//! every file it wrote is removed when it ends; it checks that nothing is left running.

use ferry_tests::apt_repo::{AptRepo, DebSpec, Key};
use ferry_tests::dpkg_root::{http_get, DpkgRoot, HealthServer};
use ferry_tests::http::Server;
use ferry_tests::oci_image::{push, ImageSpec, Layer, OciLayout, Platform};
use ferry_tests::redis_server::{RedisOptions, RedisServer};
use ferry_tests::registry::Registry;
use ferry_tests::{noise, require_tool};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Dashboard and Gateway versions: what the host runs, the upgrade, the broken release.
const FROM: &str = "4.0.8";
const TO: &str = "5.2.5";
const BROKEN: &str = "5.2.6";
/// Pump has its own version line.
const PUMP_FROM: &str = "1.8.3";
const PUMP_TO: &str = "1.9.0";
const CODENAME: &str = "bookworm";
/// How long `apply` waits for a component to turn healthy (`installer.toml` on the host;
/// the bundle says 60 s). The demo's services answer at once, so this is how long the
/// broken gateway is given before the rollback starts.
const HEALTH_TIMEOUT_SECS: u64 = 8;

/// A Tyk component as the demo packages it.
struct Component {
    /// `dashboard`, `gateway`, `pump`.
    name: &'static str,
    /// The binary under `/opt/tyk-<name>/`.
    binary: &'static str,
    /// The configuration file under `/opt/tyk-<name>/`.
    conf: &'static str,
    /// The health endpoint's path.
    health_path: &'static str,
    /// The JSON `status` a healthy one reports.
    healthy: &'static str,
}

const COMPONENTS: [Component; 3] = [
    Component {
        name: "dashboard",
        binary: "tyk-analytics",
        conf: "tyk_analytics.conf",
        health_path: "/hello",
        healthy: "ok",
    },
    Component {
        name: "gateway",
        binary: "tyk",
        conf: "tyk.conf",
        health_path: "/hello",
        healthy: "pass",
    },
    Component {
        name: "pump",
        binary: "tyk-pump",
        conf: "pump.conf",
        health_path: "/health",
        healthy: "ok",
    },
];

impl Component {
    fn package(&self) -> String {
        format!("tyk-{}", self.name)
    }

    fn config_path(&self) -> String {
        format!("/opt/tyk-{}/{}", self.name, self.conf)
    }

    /// The versions the vendor publishes.
    fn versions(&self) -> &'static [&'static str] {
        if self.name == "pump" {
            &[PUMP_FROM, PUMP_TO]
        } else {
            &[FROM, TO, BROKEN]
        }
    }
}

/// Ports the packages' configuration files name.
struct Ports {
    redis: u16,
    /// By component name.
    health: BTreeMap<&'static str, u16>,
}

fn main() {
    let started = Instant::now();
    let keep = parse_args();
    let out = Out::new();
    out.banner();
    preflight(&out);

    // Everything the demo writes, temp dirs of the harness and gpg's homes included, goes
    // under one directory, removed at the end.
    let work = tempfile::Builder::new()
        .prefix("ferry-demo.")
        .tempdir()
        .unwrap_or_else(|e| die(&format!("cannot create a temporary directory: {e}")));
    let work_path = work.path().to_path_buf();
    std::env::set_var("TMPDIR", &work_path);

    // A failure panics with its message: unwinding stops every server on the way out.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" (at {l})"))
            .unwrap_or_default();
        eprintln!("\nferry-tyk-demo: FAILED{place}:\n{message}");
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&out, &work_path, keep.as_deref())
    }));

    out.section("Cleaning up");
    // run() has returned: every server, registry, Redis and dpkg root it started has
    // been stopped (they stop when dropped). Prove it, then remove the files.
    let leftovers = wait_for_no_leftovers(&work_path, Duration::from_secs(5));
    if !leftovers.is_empty() {
        die(&format!(
            "processes left running after the demo:\n{}",
            leftovers.join("\n")
        ));
    }
    out.say("servers stopped: package repositories, registry, Redis, the three Tyk-like services");
    out.say("no process of the demo is left running (checked in /proc)");
    drop(work);
    if work_path.exists() {
        die(&format!("{} was not removed", work_path.display()));
    }
    out.say(&format!("removed {}", work_path.display()));
    let Ok(summary) = result else {
        die("the demo failed (see above); everything it started was stopped and its files removed");
    };

    out.section("Summary");
    for line in &summary {
        out.say(line);
    }
    out.say(&format!(
        "total time {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}

/// `--keep DIR`: copy the bundles, backups, run logs and the host's ferry state there
/// before the cleanup.
fn parse_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--keep" => Some(PathBuf::from(dir)),
        [flag] if flag == "--help" || flag == "-h" => {
            println!("usage: ferry-tyk-demo [--keep DIR]\n\nRuns ferry's Tyk demo (see README.md, \"The demo\"); needs root.\n--keep DIR  copy the bundles, backup sets, run logs and ferry state there before cleaning up");
            std::process::exit(0);
        }
        _ => die("usage: ferry-tyk-demo [--keep DIR]"),
    }
}

/// Stop with a message before anything was started (or after everything was stopped).
fn die(message: &str) -> ! {
    eprintln!("\nferry-tyk-demo: {message}");
    std::process::exit(1);
}

/// Fail the demo: unwinds, so every server started so far is stopped.
fn fail(message: &str) -> ! {
    std::panic::panic_any(message.to_string())
}

/// Root (dpkg chroots into the throwaway root to run maintainer scripts) and every tool.
fn preflight(out: &Out) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        die("the demo must run as root: dpkg chroots into the throwaway root to run the packages' maintainer scripts (run ./demo.sh with sudo)");
    }
    for (tool, package) in [
        ("dpkg", "dpkg"),
        ("dpkg-deb", "dpkg"),
        ("busybox", "busybox-static"),
        ("gpg", "gnupg"),
        ("gpgconf", "gnupg"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("redis-server", "redis-server"),
    ] {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| Path::new(d).join(tool).is_file());
        if !found {
            die(&format!(
                "{tool} is not installed: install the Debian package {package} (apt-get install -y {package}); ./demo.sh does this"
            ));
        }
    }
    for tool in ["ferry-build", "ferry-install"] {
        if !sibling(tool).is_file() {
            die(&format!(
                "{} is missing: build it first (cargo build -p ferry-builder -p ferry-installer), as ./demo.sh does",
                sibling(tool).display()
            ));
        }
    }
    out.say("running as root; dpkg, busybox-static, gnupg, docker-registry, skopeo and redis-server are installed");
}

/// A binary built beside this one (`target/<profile>/`).
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("target directory").join(name)
}

/// The demo itself; returns the summary lines.
fn run(out: &Out, work: &Path, keep: Option<&Path>) -> Vec<String> {
    let arch = native_arch();
    let mut summary = Vec::new();

    // ---------------------------------------------------------------------------------
    out.section("1. The air-gapped host: a throwaway root, Redis, three Tyk-like services");
    let root = DpkgRoot::new();
    out.say(&format!(
        "$ROOT = {}: an empty dpkg database and a static busybox; dpkg installs into it with --root",
        root.path().display()
    ));
    out.alias(root.path(), "$ROOT");
    out.say(&format!(
        "$DEMO = {}: everything else the demo writes (removed at the end)",
        work.display()
    ));
    out.alias(work, "$DEMO");
    std::fs::write(
        root.join("/etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    let redis = RedisServer::start(RedisOptions::default());
    let mut client = redis.client();
    for (key, value) in [
        (
            "apikey-5a1f0c2d",
            r#"{"org_id":"demo","alias":"mobile-app","rate":100}"#,
        ),
        (
            "apikey-9e44b7a1",
            r#"{"org_id":"demo","alias":"partner","rate":1000}"#,
        ),
        ("tyk-admin-api-demo", r#"{"org_id":"demo","active":true}"#),
    ] {
        client.cmd(&["SET", key, value]);
    }
    out.say(&format!(
        "redis-server on 127.0.0.1:{} (Tyk's storage) holding 3 keys: two API keys and an admin session",
        redis.port()
    ));
    let services: BTreeMap<&'static str, HealthServer> = COMPONENTS
        .iter()
        .map(|c| (c.name, HealthServer::start(root.path(), c.name)))
        .collect();
    let ports = Ports {
        redis: redis.port(),
        health: services.iter().map(|(n, s)| (*n, s.port())).collect(),
    };
    for c in &COMPONENTS {
        out.say(&format!(
            "tyk-{:<9} service on 127.0.0.1:{:<5} answers {:<7} with the status its package's last restart wrote",
            c.name,
            ports.health[c.name],
            c.health_path
        ));
    }

    // ---------------------------------------------------------------------------------
    out.section(
        "2. The vendor: APT repositories laid out like Tyk's, a registry with the plugin compiler",
    );
    let www = work.join("www");
    let mut repos = BTreeMap::new();
    for c in &COMPONENTS {
        let mut builder = AptRepo::builder()
            .suite(CODENAME)
            .codename(CODENAME)
            .origin(c.package())
            .label(c.package())
            .archs(&[&arch])
            .key(Key::Rsa);
        for v in c.versions() {
            builder = builder.package(tyk_deb(c, v, &arch, &ports));
        }
        let repo = builder.build();
        copy_tree(&repo.root, &www.join(format!("tyk/{}/debian", c.package())));
        std::fs::write(
            www.join(format!("tyk/{}/gpgkey", c.package())),
            &Key::Rsa.info().public_asc,
        )
        .unwrap();
        repos.insert(c.name, repo);
    }
    let web = Server::start(&www);
    let repo_base = format!("{}/tyk", web.url());
    out.say("packages built with dpkg-deb: files under /opt/tyk-<component>/, the JSON config as a conffile (naming the ports above), a systemd unit, and a postinst that chowns to tyk, chmods the config 660 and restarts the service");
    for c in &COMPONENTS {
        out.say(&format!(
            "{repo_base}/{}/debian/dists/{CODENAME}/InRelease  ({}), .../{}/gpgkey",
            c.package(),
            c.versions().join(", "),
            c.package()
        ));
    }
    let fingerprint = Key::Rsa.info().fingerprint.clone();
    out.say(&format!(
        "InRelease is signed by an OpenPGP key made just now, {fingerprint}: the operator checks it out of band and pins it"
    ));
    out.say(&format!(
        "tyk-gateway {BROKEN} is broken on purpose: after its restart it reports \"fail\""
    ));

    let registry = Registry::start();
    let mut layout = OciLayout::create(work.join("oci"));
    let image = layout.add_image(
        "compiler",
        &ImageSpec::new(Platform::linux_amd64())
            .layer(
                Layer::new()
                    .file("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n")
                    .file_mode(
                        "usr/local/bin/build-plugin",
                        format!("#!/bin/sh\n# Builds a Go plugin for Tyk Gateway {TO} (stand-in).\necho \"plugin_v{TO}_linux_amd64.so\"\n"),
                        0o755,
                    ),
            )
            .layer(Layer::new().noise_file("usr/local/go/pkg/tool.a", 512 * 1024, 7))
            .cmd(&["/usr/local/bin/build-plugin"])
            .env("TYK_GW_TAG", &format!("v{TO}"))
            .label("org.opencontainers.image.title", "tyk-plugin-compiler (demo)"),
    );
    let image_ref = format!("tykio/tyk-plugin-compiler:v{TO}");
    push(&registry, layout.path(), Some("compiler"), &image_ref);
    let image_ref = registry.reference(&image_ref);
    out.say(&format!(
        "docker-registry on {}: {image_ref}, {} in {} layers (pushed with skopeo)",
        registry.url(),
        human(image.total_size()),
        image.layers.len()
    ));

    // ---------------------------------------------------------------------------------
    out.section("3. The host runs Tyk 4.0.8");
    let first: Vec<PathBuf> = COMPONENTS
        .iter()
        .map(|c| {
            let v = if c.name == "pump" { PUMP_FROM } else { FROM };
            let deb = repos[c.name].deb(&c.package(), v);
            www.join(format!("tyk/{}/debian", c.package()))
                .join(&deb.filename)
        })
        .collect();
    let mut shown = vec![
        format!("--root={}", root.path().display()),
        "--install".into(),
    ];
    shown.extend(first.iter().map(|p| p.display().to_string()));
    out.command("dpkg", &shown);
    let refs: Vec<&Path> = first.iter().map(PathBuf::as_path).collect();
    let installed = root.install(&refs);
    out.output(&String::from_utf8_lossy(&installed.stdout), 6);
    std::fs::create_dir_all(root.join("/etc/ferry")).unwrap();
    std::fs::write(
        root.join("/etc/ferry/installer.toml"),
        format!(
            "# This host's overrides. The demo's services answer at once: a component that is\n# not healthy after {HEALTH_TIMEOUT_SECS} s will not become so.\n[health.dashboard]\ntimeout_secs = {HEALTH_TIMEOUT_SECS}\n\n[health.gateway]\ntimeout_secs = {HEALTH_TIMEOUT_SECS}\n\n[health.pump]\ntimeout_secs = {HEALTH_TIMEOUT_SECS}\n"
        ),
    )
    .unwrap();
    let before = show_host(out, &root, &services);
    out.say(&format!(
        "$ROOT/etc/ferry/installer.toml gives each health check {HEALTH_TIMEOUT_SECS} s on this host (the bundle says 60)"
    ));

    // ---------------------------------------------------------------------------------
    out.section("4. Connected side: ferry-build tyk (spec, resolve, fetch, sign)");
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let release_key = keys.join("release");
    out.run(
        "ferry-build",
        &[
            "key",
            "generate",
            "--out",
            &path_str(&release_key),
            "--no-passphrase",
        ],
        0,
        8,
    );

    let build1 = work.join("build-5.2.5");
    let cache = work.join("cache");
    let mut args: Vec<String> = [
        "tyk",
        "--version",
        TO,
        "--from",
        FROM,
        "--carry-previous",
        "--pump-version",
        PUMP_TO,
        "--distro",
        "debian",
        "--codename",
        CODENAME,
        "--arch",
        &arch,
        "--repo-base",
        &repo_base,
        "--plugin-compiler-image",
        &image_ref,
        "--insecure-registry",
        &registry.host(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let packages: Vec<String> = COMPONENTS.iter().map(|c| c.package()).collect();
    args.extend(signing_args(
        &packages,
        &fingerprint,
        &release_key,
        &cache,
        &build1,
    ));
    out.run("ferry-build", &strs(&args), 0, 40);
    let bundle = built_bundle(&build1);
    let bundle_size = std::fs::metadata(&bundle).unwrap().len();
    out.say(&format!(
        "the spec it wrote and reviewed: {}",
        out.short(&build1.join(format!("tyk-{TO}-debian-{CODENAME}-{arch}.spec.toml")))
    ));

    // ---------------------------------------------------------------------------------
    out.section("5. Across the air gap: verify, a co-signature, a tampered copy");
    let media = work.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let carried = media.join(bundle.file_name().unwrap());
    std::fs::copy(&bundle, &carried).unwrap();
    out.say(&format!(
        "copied {} ({}) to the removable media",
        bundle.file_name().unwrap().to_string_lossy(),
        human(bundle_size)
    ));
    // A second person reviews the bundle and co-signs it; the host requires both.
    let review_key = keys.join("review");
    out.run(
        "ferry-build",
        &[
            "--quiet",
            "key",
            "generate",
            "--out",
            &path_str(&review_key),
            "--no-passphrase",
        ],
        0,
        4,
    );
    let cosig = media.join("review.minisig");
    out.run(
        "ferry-build",
        &[
            "sign",
            &path_str(&carried),
            "--key",
            &path_str(&review_key.with_extension("key")),
            "--out",
            &path_str(&cosig),
        ],
        0,
        6,
    );
    let trusted = work.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    for k in [&release_key, &review_key] {
        let pubkey = k.with_extension("pub");
        std::fs::copy(&pubkey, trusted.join(pubkey.file_name().unwrap())).unwrap();
    }
    out.say("the host trusts both public keys ($DEMO/trusted) and requires both signatures:");
    out.run(
        "ferry-install",
        &[
            "verify",
            &path_str(&carried),
            "--trust",
            &path_str(&trusted),
            "--threshold",
            "2",
            "--signature",
            &path_str(&cosig),
        ],
        0,
        30,
    );
    let tampered = work.join("tampered").join(carried.file_name().unwrap());
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    std::fs::copy(&carried, &tampered).unwrap();
    let mut bytes = std::fs::read(&tampered).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&tampered, &bytes).unwrap();
    out.say(&format!(
        "a copy with one bit flipped at byte {middle} of {}:",
        bytes.len()
    ));
    out.run(
        "ferry-install",
        &[
            "verify",
            &path_str(&tampered),
            "--trust",
            &path_str(&trusted),
        ],
        3,
        8,
    );
    out.say("refused with exit code 3: nothing from a bundle that fails verification is used");

    // ---------------------------------------------------------------------------------
    out.section("6. Air-gapped side: ferry-install plan");
    let host_args = |cmd: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--root".to_string(),
            path_str(root.path()),
            "--service-manager".into(),
            "none".into(),
        ];
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };
    let trust = path_str(&trusted);
    let carried_s = path_str(&carried);
    out.run(
        "ferry-install",
        &strs(&host_args(&["plan", &carried_s, "--trust", &trust])),
        0,
        60,
    );

    // ---------------------------------------------------------------------------------
    out.section("7. ferry-install apply: back up, install in order, restart, health-check");
    let restarts_log = root.join("/var/log/tyk/restarts.log");
    let restarts_before = read_lines(&restarts_log).len();
    out.run_condensed(
        "ferry-install",
        &strs(&host_args(&[
            "apply", &carried_s, "--trust", &trust, "--yes",
        ])),
        0,
        60,
        Condense::Plan,
    );
    let after = show_host(out, &root, &services);
    out.say(
        "the packages' post-install scripts ran in this order ($ROOT/var/log/tyk/restarts.log):",
    );
    for line in &read_lines(&restarts_log)[restarts_before..] {
        out.say(&format!("  {line}"));
    }
    out.run(
        "ferry-install",
        &strs(&host_args(&["backup", "list"])),
        0,
        20,
    );
    let backup_id = backup_sets(&root).first().cloned().unwrap_or_default();
    out.say(&format!("what set {backup_id} holds (its backup.json):"));
    let redis_item = show_backup_set(out, &root, &backup_id);

    // ---------------------------------------------------------------------------------
    out.section("8. A broken release: ferry-build tyk 5.2.6, whose gateway fails its health check");
    let build2 = work.join("build-5.2.6");
    let mut args: Vec<String> = [
        "tyk",
        "--version",
        BROKEN,
        "--from",
        TO,
        "--carry-previous",
        "--components",
        "dashboard,gateway",
        "--distro",
        "debian",
        "--codename",
        CODENAME,
        "--arch",
        &arch,
        "--repo-base",
        &repo_base,
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let packages: Vec<String> = COMPONENTS
        .iter()
        .filter(|c| c.name != "pump")
        .map(|c| c.package())
        .collect();
    args.extend(signing_args(
        &packages,
        &fingerprint,
        &release_key,
        &cache,
        &build2,
    ));
    out.run("ferry-build", &strs(&args), 0, 10);
    let broken = built_bundle(&build2);
    let broken_s = path_str(&broken);
    out.run_condensed(
        "ferry-install",
        &strs(&host_args(&[
            "apply", &broken_s, "--trust", &trust, "--yes",
        ])),
        5,
        60,
        Condense::Notes,
    );
    out.say(
        "exit code 5: the gateway never turned healthy, so both steps were undone automatically",
    );
    out.run("ferry-install", &strs(&host_args(&["status"])), 0, 30);
    let end = show_host(out, &root, &services);
    let audit = root.audit();
    if !audit.is_empty() {
        fail(&format!(
            "dpkg --audit reports problems after the rollback:\n{audit}"
        ));
    }
    out.say("dpkg --audit: the package database is consistent");

    // ---------------------------------------------------------------------------------
    if let Some(dir) = keep {
        out.section("Keeping the results");
        std::fs::create_dir_all(dir).unwrap();
        for (from, to) in [
            (build1.clone(), "build-5.2.5"),
            (build2.clone(), "build-5.2.6"),
            (root.join("/var/backups/ferry"), "root/var/backups/ferry"),
            (root.join("/var/log/ferry"), "root/var/log/ferry"),
            (root.join("/var/lib/ferry"), "root/var/lib/ferry"),
            (root.join("/var/log/tyk"), "root/var/log/tyk"),
        ] {
            if from.exists() {
                copy_tree(&from, &dir.join(to));
            }
        }
        out.say(&format!(
            "copied bundles, backup sets, run logs and ferry's state to {}",
            dir.display()
        ));
    }

    // ---------------------------------------------------------------------------------
    summary.push(format!(
        "built   tyk-{TO}-debian-{CODENAME}-{arch}: {} signed bundle, {} packages (dashboard, gateway {TO}, pump {PUMP_TO}; dashboard and gateway {FROM} carried for rollback) and the image {image_ref}",
        human(bundle_size),
        count_debs(&build1)
    ));
    summary.push(
        "verified on the host: 2-of-2 signatures (release key and a reviewer's co-signature); a copy with one flipped bit refused (exit 3)".into(),
    );
    summary.push(
        "applied dashboard, then gateway, then pump; each restarted and health-checked:".into(),
    );
    for (c, (b, a)) in COMPONENTS.iter().zip(before.iter().zip(&after)) {
        summary.push(format!(
            "          tyk-{:<9} {:>6} -> {:<6} health {}",
            c.name, b.0, a.0, a.1
        ));
    }
    summary.push(format!(
        "backup  set {backup_id} taken before installing: configs with owner and mode, gateway apps and policies, and a Redis snapshot{}",
        redis_item
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    ));
    let end_versions: Vec<String> = COMPONENTS
        .iter()
        .zip(&end)
        .map(|(c, e)| format!("{} {} ({})", c.name, e.0, e.1))
        .collect();
    summary.push(format!(
        "rolled back {BROKEN} automatically (apply exit 5): the host runs {}",
        end_versions.join(", ")
    ));
    summary.push(format!(
        "logs    run logs in $ROOT/var/log/ferry, backup sets in $ROOT/var/backups/ferry, state in $ROOT/var/lib/ferry{}",
        match keep {
            Some(dir) => format!(" (copied to {} with --keep)", dir.display()),
            None => " (removed with the root: run with --keep DIR to keep them)".into(),
        }
    ));
    // Every server stops here, in reverse order of creation.
    drop(web);
    drop(registry);
    drop(services);
    drop(client);
    drop(redis);
    drop(repos);
    drop(root);
    summary
}

// -------------------------------------------------------------------------------------
// The packages
// -------------------------------------------------------------------------------------

/// A Tyk-like package: the binary, a version file, the JSON configuration (a conffile)
/// naming the demo's ports, a systemd unit, for the gateway an API definition and a
/// policy; a post-install script that does what Tyk's does on `configure` (files to the
/// `tyk` user, the configuration mode 660, restart the service).
fn tyk_deb(c: &Component, version: &str, arch: &str, ports: &Ports) -> DebSpec {
    let name = c.package();
    let base = format!("/opt/{name}");
    let mut bin = format!("\x7fELF stand-in for {name} {version}\n").into_bytes();
    let seed = name
        .bytes()
        .chain(version.bytes())
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    bin.extend(noise(96 * 1024, seed));
    let port = ports.health[c.name];
    let config = match c.name {
        "gateway" => serde_json::json!({
            "listen_port": port,
            "health_check_endpoint_name": "hello",
            "app_path": "/opt/tyk-gateway/apps/",
            "middleware_path": "/opt/tyk-gateway/middleware",
            "template_path": "/opt/tyk-gateway/templates",
            "policies": {"policy_source": "file", "policy_path": "/opt/tyk-gateway/policies"},
            "storage": {"type": "redis", "host": "127.0.0.1", "port": ports.redis, "database": 0},
            "enable_analytics": true,
        }),
        "dashboard" => serde_json::json!({
            "listen_port": port,
            "tyk_api_config": {"Host": "http://127.0.0.1", "Port": ports.health["gateway"]},
            "redis_host": "127.0.0.1",
            "redis_port": ports.redis,
        }),
        _ => serde_json::json!({
            "analytics_storage_type": "redis",
            "analytics_storage_config": {"type": "redis", "host": "127.0.0.1", "port": ports.redis},
            "health_check_endpoint_name": "health",
            "health_check_endpoint_port": port,
            "pumps": {},
        }),
    };
    let config = serde_json::to_string_pretty(&config).unwrap() + "\n";
    let status = if c.name == "gateway" && version == BROKEN {
        "fail"
    } else {
        c.healthy
    };
    let conf = c.config_path();
    let postinst = format!(
        r#"# {name} {version}: what Tyk's post-install script does on configure.
if [ "$1" = configure ]; then
    chown -R tyk:tyk {base}
    chmod 660 {conf}
    # systemctl restart {name}: this root has no systemd, so the restart is recorded
    # and the restarted service's status written where the demo's service reads it.
    mkdir -p /var/log/tyk
    echo "{name} {version} configured (was ${{2:-not installed}}): chmod 660 {conf}, restarted {name}, status {status}" >> /var/log/tyk/restarts.log
    echo {status} > {base}/health
fi
"#
    );
    let unit = format!(
        "[Unit]\nDescription={name}\nAfter=network.target\n\n[Service]\nUser=tyk\nExecStart={base}/{} --conf {conf}\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n",
        c.binary
    );
    let mut spec = DebSpec::new(name.clone(), version)
        .arch(arch)
        .section("net")
        .maintainer("Ferry Demo <ferry-demo@example.invalid>")
        .description(format!(
            "{name} (demo stand-in)\n Built by ferry's demo: a Tyk-like package with the layout and\n maintainer script behaviour of Tyk's."
        ))
        .file_mode(format!("{base}/{}", c.binary), bin, 0o755)
        .file(format!("{base}/version"), format!("{version}\n"))
        .conffile(conf.clone(), config)
        .file(format!("/lib/systemd/system/{name}.service"), unit)
        .postinst(postinst);
    if c.name == "gateway" {
        spec = spec
            .file(
                "/opt/tyk-gateway/apps/httpbin.json",
                serde_json::to_string_pretty(&serde_json::json!({
                    "name": "httpbin", "api_id": "httpbin", "org_id": "demo",
                    "proxy": {"listen_path": "/httpbin/", "target_url": "http://127.0.0.1:9/", "strip_listen_path": true},
                    "use_keyless": false,
                }))
                .unwrap()
                    + "\n",
            )
            .file(
                "/opt/tyk-gateway/policies/policies.json",
                "{\n  \"default\": {\"rate\": 100, \"per\": 60, \"access_rights\": {}}\n}\n",
            )
            .file("/opt/tyk-gateway/templates/error.json", "{\"error\": \"{{.Message}}\"}\n");
    }
    spec
}

// -------------------------------------------------------------------------------------
// The host
// -------------------------------------------------------------------------------------

/// Print each component's installed version, its service's answer and its
/// configuration's mode and owner; return (version, status) per component.
fn show_host(
    out: &Out,
    root: &DpkgRoot,
    services: &BTreeMap<&'static str, HealthServer>,
) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for c in &COMPONENTS {
        let version = root
            .status(&c.package())
            .map(|(v, _)| v)
            .unwrap_or_else(|| "-".into());
        let url = services[c.name].url_at(c.health_path);
        let (code, body) = http_get(&url);
        let status = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["status"].as_str().map(String::from))
            .unwrap_or_else(|| format!("HTTP {code}"));
        let meta = std::fs::metadata(root.join(c.config_path())).ok();
        let mode = meta.as_ref().map_or_else(
            || "missing".into(),
            |m| {
                format!(
                    "{:04o} {}:{}",
                    m.permissions().mode() & 0o7777,
                    user(m.uid()),
                    user(m.gid())
                )
            },
        );
        out.say(&format!(
            "tyk-{:<9} {:<6} GET {url} -> {code} {body}   {} {mode}",
            c.name, version, c.conf
        ));
        rows.push((version, status));
    }
    rows
}

/// Backup set ids under the root, newest first.
fn backup_sets(root: &DpkgRoot) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join("/var/backups/ferry"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("backup.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.reverse();
    ids
}

/// Print the items of a backup set; return its Redis item as "SIZE from SOURCE".
fn show_backup_set(out: &Out, root: &DpkgRoot, id: &str) -> Option<String> {
    use ferry_installer::backup::Item;
    let dir = root.join(format!("/var/backups/ferry/{id}"));
    let set = ferry_installer::backup::read_manifest(&dir)
        .unwrap_or_else(|e| fail(&format!("cannot read backup set {id}: {e}")));
    let mut redis = None;
    for item in &set.items {
        match item {
            Item::Files(f) => out.say(&format!(
                "  files  {:<40} {:<7} {:04o} {}:{}  {}",
                f.source,
                format!("{:?}", f.file_type).to_lowercase(),
                f.mode,
                user(f.uid),
                user(f.gid),
                human(f.size)
            )),
            Item::Redis(d) | Item::Postgres(d) | Item::Mongodb(d) => {
                out.say(&format!(
                    "  {:<6} {:<40} {} ({}), {}",
                    item.kind(),
                    d.path_in_set,
                    d.source,
                    d.method,
                    human(d.size)
                ));
                if item.kind() == "redis" {
                    redis = Some(format!("{} from {}", human(d.size), d.source));
                }
            }
        }
    }
    redis
}

fn user(id: u32) -> &'static str {
    match id {
        0 => "root",
        ferry_tests::dpkg_root::TYK_UID => "tyk",
        _ => "?",
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The bundle file in a `ferry-build` output directory.
fn built_bundle(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".ferry.tar.gz"))
        .unwrap_or_else(|| fail(&format!("no bundle in {}", dir.display())))
}

/// Packages in a build's lock file.
fn count_debs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".lock"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map_or(0, |t| t.matches("[[package]]").count())
}

fn native_arch() -> String {
    let out = Command::new(require_tool("dpkg", "dpkg"))
        .arg("--print-architecture")
        .output()
        .expect("dpkg --print-architecture");
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !matches!(arch.as_str(), "amd64" | "arm64") {
        fail(&format!(
            "this machine is {arch}: Tyk publishes amd64 and arm64 packages, and the demo builds for the machine it runs on"
        ));
    }
    arch
}

/// Copy a directory tree (files and directories; symlinks are not expected).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Processes still running that belong to the demo: its descendants, and any process
/// whose command line or working directory is under the demo's directory (gpg-agent
/// detaches from its parent).
fn leftovers(work: &Path) -> Vec<String> {
    let me = std::process::id();
    let mut parent = BTreeMap::new();
    let mut cmdline = BTreeMap::new();
    let work = work.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces, so split after the ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        parent.insert(pid, ppid);
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        cmdline.insert(pid, (cmd, cwd));
    }
    let mut found = Vec::new();
    for (&pid, (cmd, cwd)) in &cmdline {
        if pid == me {
            continue;
        }
        let mut p = parent.get(&pid).copied().unwrap_or(0);
        let mut descendant = false;
        for _ in 0..64 {
            if p == me {
                descendant = true;
                break;
            }
            if p <= 1 {
                break;
            }
            p = parent.get(&p).copied().unwrap_or(0);
        }
        if descendant || cmd.contains(&work) || cwd.starts_with(&work) {
            found.push(format!("  pid {pid}: {cmd}"));
        }
    }
    found
}

fn wait_for_no_leftovers(work: &Path, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let found = leftovers(work);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// -------------------------------------------------------------------------------------
// Output
// -------------------------------------------------------------------------------------

/// How the demo prints: section headers, notes, command lines and their (trimmed)
/// output, long paths shortened to `$ROOT` and `$DEMO`.
struct Out {
    color: bool,
    aliases: std::cell::RefCell<Vec<(String, String)>>,
}

impl Out {
    fn new() -> Out {
        Out {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            aliases: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn banner(&self) {
        self.section("ferry: a Tyk upgrade across an air gap, on this machine, on 127.0.0.1 only");
        self.say(&format!(
            "Tyk Dashboard and Gateway {FROM} -> {TO}, Pump {PUMP_FROM} -> {PUMP_TO}; then a broken {BROKEN}, rolled back"
        ));
    }

    fn alias(&self, path: &Path, name: &str) {
        let mut a = self.aliases.borrow_mut();
        a.push((path.to_string_lossy().into_owned(), name.to_string()));
        // Longest first, so $ROOT (inside $DEMO) wins.
        a.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    fn short_text(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (path, name) in self.aliases.borrow().iter() {
            t = t.replace(path.as_str(), name);
        }
        t
    }

    fn short(&self, path: &Path) -> String {
        self.short_text(&path.to_string_lossy())
    }

    fn section(&self, title: &str) {
        if self.color {
            println!("\n\x1b[1;36m== {title}\x1b[0m");
        } else {
            println!("\n== {title}");
        }
    }

    fn say(&self, text: &str) {
        println!("   {}", self.short_text(text));
    }

    fn command(&self, program: &str, args: &[String]) {
        let line = std::iter::once(program.to_string())
            .chain(args.iter().map(|a| {
                if a.is_empty() || a.contains([' ', '"', '\'', '$', '*']) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            }))
            .collect::<Vec<_>>()
            .join(" ");
        let line = self.short_text(&line);
        if self.color {
            println!("\n\x1b[1m$ {line}\x1b[0m");
        } else {
            println!("\n$ {line}");
        }
    }

    /// Print output, at most `max` lines (the first and last ones when longer).
    fn output(&self, text: &str, max: usize) {
        let text = self.short_text(text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() <= max {
            for l in &lines {
                println!("  {l}");
            }
            return;
        }
        let head = max * 2 / 3;
        let tail = max - head;
        for l in &lines[..head] {
            println!("  {l}");
        }
        println!("  ... ({} more lines)", lines.len() - max);
        for l in &lines[lines.len() - tail..] {
            println!("  {l}");
        }
    }

    /// Run a ferry binary, print its command line and output (stdout and stderr as they
    /// came, at most `max` lines); its exit code must be `expect`.
    fn run(&self, program: &str, args: &[&str], expect: i32, max: usize) -> String {
        self.run_inner(program, args, expect, max, Condense::Nothing)
    }

    /// [`Out::run`] for `apply`, leaving out the bundle's notes from the plan it prints
    /// first, or the whole plan when `plan` printed it just before.
    fn run_condensed(
        &self,
        program: &str,
        args: &[&str],
        expect: i32,
        max: usize,
        condense: Condense,
    ) -> String {
        self.run_inner(program, args, expect, max, condense)
    }

    fn run_inner(
        &self,
        program: &str,
        args: &[&str],
        expect: i32,
        max: usize,
        condense: Condense,
    ) -> String {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.command(program, &owned);
        let started = Instant::now();
        // One file for both streams keeps their lines in the order they were written.
        let capture = tempfile::tempfile().expect("temporary file");
        let status = Command::new(sibling(program))
            .args(args)
            .stdin(Stdio::null())
            .stdout(capture.try_clone().expect("dup"))
            .stderr(capture.try_clone().expect("dup"))
            .env("LC_ALL", "C")
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("FERRY_PASSPHRASE")
            .env_remove("FERRY_TEST_CHECKPOINT")
            .status()
            .unwrap_or_else(|e| fail(&format!("cannot run {program}: {e}")));
        let mut text = String::new();
        let mut capture = capture;
        capture.seek(std::io::SeekFrom::Start(0)).unwrap();
        capture.read_to_string(&mut text).unwrap();
        let code = status.code().unwrap_or(-1);
        let secs = started.elapsed().as_secs_f64();
        if code != expect {
            fail(&format!(
                "{program} exited with {code}, expected {expect}; its output:\n{}",
                self.short_text(&text)
            ));
        }
        self.output(&condensed(&text, condense), max);
        let note = format!("[exit code {code}, {secs:.1} s]");
        if self.color {
            println!("  \x1b[2m{note}\x1b[0m");
        } else {
            println!("  {note}");
        }
        text
    }
}

/// What [`Out::run_condensed`] leaves out of `apply`'s output.
#[derive(Clone, Copy, PartialEq)]
enum Condense {
    /// Nothing.
    Nothing,
    /// The plan's `note:` paragraphs (they run up to `preflight:`).
    Notes,
    /// The whole plan, from `plan for` up to `preflight:`.
    Plan,
}

fn condensed(text: &str, how: Condense) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let starts = match how {
            Condense::Nothing => false,
            Condense::Notes => line.starts_with("note:"),
            Condense::Plan => line.starts_with("plan for "),
        };
        if starts && !skipping {
            out.push_str(match how {
                Condense::Plan => "plan ... (as `ferry-install plan` printed it above)\n",
                _ => "note: ... (the bundle's notes: `ferry-install plan` prints them in full)\n",
            });
            skipping = true;
        }
        if skipping && !line.starts_with("preflight:") {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `ferry-build tyk` arguments both builds share: each repository's pinned key
/// fingerprint, the release key, the download cache and the output directory.
fn signing_args(
    packages: &[String],
    fingerprint: &str,
    release_key: &Path,
    cache: &Path,
    out: &Path,
) -> Vec<String> {
    let mut args = Vec::new();
    for package in packages {
        args.push("--keyring-fingerprint".into());
        args.push(format!("{package}={fingerprint}"));
    }
    args.extend([
        "--key".into(),
        path_str(&release_key.with_extension("key")),
        "--cache".into(),
        path_str(cache),
        "--out".into(),
        path_str(out),
    ]);
    args
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}
