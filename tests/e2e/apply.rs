//! `ferry-install apply`, `resume`, `rollback` and `status` with real dpkg on throwaway
//! roots: Tyk-like dashboard, gateway and pump packages at 1.0 installed, a bundle
//! bringing 2.0, and health endpoints whose answers follow what is installed in the
//! root (a "bad" 2.0 reports `fail`).

use ferry_bundle::manifest::{Health, Package, Role, Step};
use ferry_tests::bundle::{manifest, sign_bundle, TestBundle};
use ferry_tests::dpkg_root::{tyk_like, tyk_names, DpkgRoot, HealthServer, Variant};
use ferry_tests::TestDir;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};

const COMPONENTS: [&str; 3] = ["dashboard", "gateway", "pump"];

/// Where the 1.0 packages come from for rollback.
#[derive(Clone, Copy, PartialEq)]
enum Old {
    /// Not carried anywhere: rebuilt from the dpkg database.
    Rebuilt,
    /// The bundle carries 1.0 with role `previous`.
    Previous,
    /// The 1.0 `.deb` is in the root's apt cache.
    AptCache,
}

struct Scenario {
    root: DpkgRoot,
    /// Holds the packages and the bundle for as long as the scenario lives.
    _work: TestDir,
    servers: BTreeMap<&'static str, HealthServer>,
    bundle: TestBundle,
}

struct Setup {
    /// Components installed at 1.0 before the run.
    installed: Vec<&'static str>,
    /// The 2.0 variant of each component.
    variants: BTreeMap<&'static str, Variant>,
    /// Where each component's 1.0 comes from for rollback.
    old: BTreeMap<&'static str, Old>,
    /// Health timeout per step.
    timeout_secs: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            installed: COMPONENTS.to_vec(),
            variants: BTreeMap::new(),
            old: BTreeMap::new(),
            timeout_secs: 10,
        }
    }
}

fn scenario(setup: Setup) -> Scenario {
    let root = DpkgRoot::new();
    let work = TestDir::new();
    let debs = work.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    std::fs::write(
        root.join("/etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("/lib/systemd/system")).unwrap();
    let mut old_debs = BTreeMap::new();
    for c in COMPONENTS {
        std::fs::write(
            root.join(format!("/lib/systemd/system/tyk-{c}.service")),
            "[Unit]\n",
        )
        .unwrap();
        let v1 = tyk_like(c, "1.0", Variant::Good).build(&debs);
        if setup.installed.contains(&c) {
            root.install(&[&v1]);
        }
        old_debs.insert(c, v1);
    }
    let servers: BTreeMap<&'static str, HealthServer> = COMPONENTS
        .iter()
        .map(|c| (*c, HealthServer::start(root.path(), c)))
        .collect();

    let mut m = manifest("tyk-2.0");
    let mut payload = Vec::new();
    for c in COMPONENTS {
        let variant = setup.variants.get(c).copied().unwrap_or(Variant::Good);
        let deb = tyk_like(c, "2.0", variant).build(&work.join(format!("v2-{c}")));
        let file = format!("debs/tyk-{c}_2.0_all.deb");
        payload.push((file.clone(), deb));
        m.packages.push(Package {
            name: format!("tyk-{c}"),
            version: "2.0".into(),
            arch: "all".into(),
            file,
            repository: "test".into(),
            role: Role::Target,
        });
        match setup.old.get(c).copied().unwrap_or(Old::Rebuilt) {
            Old::Rebuilt => {}
            Old::Previous => {
                let file = format!("debs/tyk-{c}_1.0_all.deb");
                payload.push((file.clone(), old_debs[c].clone()));
                m.packages.push(Package {
                    name: format!("tyk-{c}"),
                    version: "1.0".into(),
                    arch: "all".into(),
                    file,
                    repository: "test".into(),
                    role: Role::Previous,
                });
            }
            Old::AptCache => {
                std::fs::copy(
                    &old_debs[c],
                    root.join(format!("/var/cache/apt/archives/tyk-{c}_1.0_all.deb")),
                )
                .unwrap();
            }
        }
        let (_, conf) = tyk_names(c);
        m.steps.push(Step {
            component: c.into(),
            packages: vec![format!("tyk-{c}")],
            service: Some(format!("tyk-{c}")),
            configs: vec![format!("/opt/tyk-{c}/{conf}")],
            only_if_installed: true,
            health: Some(Health {
                url: servers[c].url(),
                json_status: vec!["pass".into()],
                timeout_secs: setup.timeout_secs,
                warn_status: vec![],
                derive: None,
            }),
            place: vec![],
        });
    }
    let bundle = sign_bundle(&work.join("media"), m, &payload);
    Scenario {
        root,
        _work: work,
        servers,
        bundle,
    }
}

impl Scenario {
    fn ferry(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(ferry_tests::bin("ferry-install"));
        cmd.arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("LC_ALL", "C")
            .env_remove("FERRY_TEST_CHECKPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn apply(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec![
            "apply",
            self.bundle.path.to_str().unwrap(),
            "--trust",
            self.bundle.trust.to_str().unwrap(),
            "--yes",
        ];
        args.extend_from_slice(extra);
        self.ferry(&args, env)
    }

    fn version(&self, c: &str) -> Option<String> {
        self.root.status(&format!("tyk-{c}")).map(|(v, _)| v)
    }

    fn versions(&self) -> Vec<Option<String>> {
        COMPONENTS.iter().map(|c| self.version(c)).collect()
    }

    fn healthy(&self, c: &str) -> bool {
        let (code, body) = self.servers[c].get();
        code == 200 && body.contains("\"pass\"")
    }

    /// Write an `installer.toml` sending the pump's health check to a port nobody
    /// listens on; returns its path (remove it to fix the cause).
    fn point_pump_health_at_a_dead_port(&self) -> PathBuf {
        let config = self.root.join("/etc/ferry/installer.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}/hello", dead.local_addr().unwrap());
        drop(dead);
        std::fs::write(&config, format!("[health.pump]\nurl = \"{dead_url}\"\n")).unwrap();
        config
    }

    fn assert_consistent(&self) {
        assert_eq!(self.root.audit(), "", "dpkg --audit must be clean");
        assert!(
            !self.root.join("/var/lib/ferry/journal.json").exists(),
            "journal left behind"
        );
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn all(v: &str) -> Vec<Option<String>> {
    vec![Some(v.to_string()); 3]
}

#[test]
fn apply_upgrades_in_order_with_backup_and_summary() {
    let s = scenario(Setup::default());
    // An administrator's change to a conffile survives the upgrade.
    let conf = s.root.join("/opt/tyk-gateway/tyk.conf");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push('\n');
    edited = edited.replace("8080", "8181");
    std::fs::write(&conf, &edited).unwrap();
    let log_before = s.root.order_log().len();
    // Rollback packages of three older runs: the oldest is pruned after this run.
    let rollback = s.root.join("/var/lib/ferry/rollback");
    for i in 1..=3 {
        std::fs::create_dir_all(rollback.join(format!("2020010{i}T000000Z-old"))).unwrap();
    }

    let out = s.apply(&["--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.versions(), all("2.0"));
    let order: Vec<String> = s.root.order_log()[log_before..].to_vec();
    assert_eq!(
        order,
        [
            "tyk-dashboard 2.0 configure",
            "tyk-gateway 2.0 configure",
            "tyk-pump 2.0 configure"
        ]
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    s.assert_consistent();
    let mut kept: Vec<String> = std::fs::read_dir(&rollback)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(&kept[..2], ["20200102T000000Z-old", "20200103T000000Z-old"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "applied");
    let rows = summary["components"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["component"], "gateway");
    assert_eq!(rows[1]["before"], "1.0");
    assert_eq!(rows[1]["after"], "2.0");
    assert!(
        rows[1]["health"].as_str().unwrap().contains("pass"),
        "{rows:?}"
    );
    // The backup set holds the configs; state.json records the run.
    let backup_id = summary["backup_id"].as_str().unwrap();
    let set = s
        .root
        .join(format!("/var/backups/ferry/{backup_id}/backup.json"));
    let set: serde_json::Value = serde_json::from_slice(&std::fs::read(set).unwrap()).unwrap();
    let sources: Vec<&str> = set["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"/opt/tyk-gateway/tyk.conf"),
        "{sources:?}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.root.join("/var/lib/ferry/state.json")).unwrap())
            .unwrap();
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["outcome"], "ok");
    assert_eq!(last["backup_id"], backup_id);
    // Staging is cleaned; the log exists; status shows the run.
    let staging = s.root.join("/var/lib/ferry/staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    let log = PathBuf::from(summary["log"].as_str().unwrap());
    assert!(std::fs::read_to_string(&log).unwrap().contains("dpkg"));
    let out = s.ferry(&["status", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["last_run"]["phase"], "done");
    assert!(status["in_progress"].is_null());

    // Applying again changes nothing.
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing-to-do"));

    // rollback --to names the run by its backup set; an unknown set is refused.
    let out = s.ferry(&["rollback", "--to", "20200101T000000Z-none"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no applied run took backup set"));
    let out = s.ferry(&["rollback", "--to", backup_id], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.versions(), all("1.0"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    s.assert_consistent();
}

/// The gateway listens where this host's `tyk.conf` says (the bundle's URL is only a
/// fallback), a plugin is placed beside the old one before dpkg runs, and `--components`
/// limits the run; a rollback removes the placed plugin again.
#[test]
fn apply_derives_health_from_the_config_and_places_plugins() {
    use ferry_bundle::manifest::{HealthSource, Place};
    let mut s = scenario(Setup {
        timeout_secs: 3,
        ..Setup::default()
    });
    let port = s.servers["gateway"]
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let conf = s.root.join("/opt/tyk-gateway/tyk.conf");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    json["listen_port"] = serde_json::json!(port.parse::<u16>().unwrap());
    std::fs::write(&conf, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    // A bundle whose gateway health URL is wrong but derivable, with a plugin to place.
    let plugin = s
        ._work
        .write("plugin_v2.0_linux_amd64.so", b"\x7fELF plugin 2.0");
    let mut m =
        ferry_bundle::read_manifest(&ferry_bundle::BundleSource::open(&s.bundle.path).unwrap())
            .unwrap()
            .manifest;
    let mut payload: Vec<(String, PathBuf)> = Vec::new();
    for p in &m.packages {
        let src = s
            ._work
            .join(format!("v2-{}", p.name.trim_start_matches("tyk-")))
            .join(format!("{}_2.0_all.deb", p.name));
        payload.push((p.file.clone(), src));
    }
    payload.push(("files/plugins/plugin_v2.0_linux_amd64.so".into(), plugin));
    let gw = m
        .steps
        .iter_mut()
        .find(|st| st.component == "gateway")
        .unwrap();
    let health = gw.health.as_mut().unwrap();
    health.url = "http://127.0.0.1:9/hello".into();
    health.derive = Some(HealthSource {
        profile: "tyk-gateway".into(),
        config: "/opt/tyk-gateway/tyk.conf".into(),
    });
    gw.place = vec![Place {
        file: "files/plugins/plugin_v2.0_linux_amd64.so".into(),
        dest: "/opt/tyk-gateway/middleware/plugin_v2.0_linux_amd64.so".into(),
        mode: "0644".into(),
    }];
    s.bundle = sign_bundle(&s._work.join("media2"), m, &payload);

    let out = s.apply(&["--components", "gateway"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        s.versions(),
        [Some("1.0".into()), Some("2.0".into()), Some("1.0".into())]
    );
    let placed = s
        .root
        .join("/opt/tyk-gateway/middleware/plugin_v2.0_linux_amd64.so");
    assert_eq!(std::fs::read(&placed).unwrap(), b"\x7fELF plugin 2.0");
    let out = s.ferry(&["rollback"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!placed.exists(), "the placed plugin is taken back");
    assert_eq!(s.versions(), all("1.0"));
    s.assert_consistent();
}

/// Without `--yes` and without a terminal, apply refuses to ask and changes nothing.
#[test]
fn apply_without_yes_and_without_a_terminal_refuses() {
    let s = scenario(Setup::default());
    let mut args = vec![
        "apply",
        s.bundle.path.to_str().unwrap(),
        "--trust",
        s.bundle.trust.to_str().unwrap(),
    ];
    args.push("--quiet");
    let out = s.ferry(&args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
    assert_eq!(s.versions(), all("1.0"));
    let staging = s.root.join("/var/lib/ferry/staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(!s.root.join("/var/lib/ferry/journal.json").exists());
}

#[test]
fn apply_skips_a_component_the_host_does_not_have() {
    let s = scenario(Setup {
        installed: vec!["dashboard", "gateway"],
        ..Setup::default()
    });
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.versions(), [Some("2.0".into()), Some("2.0".into()), None]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(skipped)"), "{stdout}");
    s.assert_consistent();
}

#[test]
fn postinst_failure_in_step_two_rolls_everything_back() {
    let s = scenario(Setup {
        variants: BTreeMap::from([("gateway", Variant::PostinstFails)]),
        ..Setup::default()
    });
    let dash_conf = s.root.join("/opt/tyk-dashboard/tyk_analytics.conf");
    let before = std::fs::read(&dash_conf).unwrap();
    let tree_before = s.root.tree_digest("/opt/tyk-dashboard");
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{stdout}");
    assert!(stdout.contains("step gateway"), "{stdout}");
    assert_eq!(s.versions(), all("1.0"));
    assert_eq!(std::fs::read(&dash_conf).unwrap(), before);
    let mut tree_after = s.root.tree_digest("/opt/tyk-dashboard");
    tree_after.remove("/opt/tyk-dashboard/health");
    let mut tree_before = tree_before;
    tree_before.remove("/opt/tyk-dashboard/health");
    assert_eq!(tree_after, tree_before);
    assert!(s.healthy("dashboard") && s.healthy("gateway"));
    s.assert_consistent();
}

#[test]
fn health_failure_in_step_three_rolls_back_from_all_three_capture_sources() {
    let s = scenario(Setup {
        variants: BTreeMap::from([("pump", Variant::Unhealthy)]),
        old: BTreeMap::from([
            ("dashboard", Old::AptCache),
            ("gateway", Old::Previous),
            ("pump", Old::Rebuilt),
        ]),
        timeout_secs: 2,
        ..Setup::default()
    });
    let out = s.apply(&["--json"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "rolled-back");
    assert!(
        summary["failure"].as_str().unwrap().contains("pump"),
        "{summary}"
    );
    assert_eq!(s.versions(), all("1.0"));
    for c in COMPONENTS {
        assert!(s.healthy(c), "{c} is not healthy after the rollback");
    }
    s.assert_consistent();
    let run_id = summary["run_id"].as_str().unwrap();
    let run: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.root.join(format!("/var/lib/ferry/runs/{run_id}.json"))).unwrap(),
    )
    .unwrap();
    let sources: BTreeMap<String, String> = run["captured"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(sources["tyk-dashboard"], "apt-cache");
    assert_eq!(sources["tyk-gateway"], "bundle-previous");
    assert_eq!(sources["tyk-pump"], "rebuilt");
}

#[test]
fn dry_run_shows_the_dpkg_commands_and_changes_nothing() {
    let s = scenario(Setup::default());
    let before = ferry_tests::snapshot(s.root.path());
    let out = s.apply(&["--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dpkg --root=")
            && stdout.contains("--force-confold --force-confdef --install"),
        "{stdout}"
    );
    assert!(stdout.contains("tyk-gateway_2.0_all.deb"), "{stdout}");
    assert!(
        stdout.contains("capture tyk-pump 1.0 for rollback"),
        "{stdout}"
    );
    assert_eq!(ferry_tests::snapshot(s.root.path()), before);
    assert_eq!(s.versions(), all("1.0"));
}

#[test]
fn held_dpkg_lock_and_a_second_installer_are_refused() {
    let s = scenario(Setup::default());
    // dpkg's frontend lock, held as apt holds it.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(s.root.join("/var/lib/dpkg/lock-frontend"))
        .unwrap();
    // SAFETY: plain fcntl on an open fd.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    assert_eq!(
        unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETLK, &mut fl) },
        0
    );
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("lock-frontend"),
        "{}",
        text(&out)
    );
    drop(lock);

    // Another ferry-install holding /var/lib/ferry/lock.
    std::fs::create_dir_all(s.root.join("/var/lib/ferry")).unwrap();
    let ferry_lock = std::fs::File::create(s.root.join("/var/lib/ferry/lock")).unwrap();
    // SAFETY: flock on an open fd.
    assert_eq!(
        unsafe { libc::flock(ferry_lock.as_raw_fd(), libc::LOCK_EX) },
        0
    );
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another ferry-install"),
        "{}",
        text(&out)
    );
    drop(ferry_lock);
    assert_eq!(s.versions(), all("1.0"));
}

/// Points where the installer is killed, and what each run needs.
const CHECKPOINTS: [&str; 9] = [
    "after-verify",
    "after-backup",
    "after-capture",
    "after-dpkg-dashboard",
    "after-restart-dashboard",
    "after-dpkg-gateway",
    "after-restart-gateway",
    "after-dpkg-pump",
    "after-restart-pump",
];

fn killed(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(libc::SIGKILL)
}

/// Kill the installer at `checkpoint`, then recover with `recover` (`resume` or
/// `rollback`) and check the host ends where it should, consistent and healthy.
fn crash_and_recover(checkpoint: &str, recover: &str) {
    let s = scenario(Setup::default());
    let out = s.apply(&[], &[("FERRY_TEST_CHECKPOINT", checkpoint)]);
    assert!(killed(&out), "{checkpoint}: not killed\n{}", text(&out));
    assert!(s.root.join("/var/lib/ferry/journal.json").exists());
    // A second apply refuses while the journal exists.
    let again = s.apply(&[], &[]);
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("ferry-install resume"));
    // status shows the interrupted run and what to do next.
    let status = s.ferry(&["status", "--json"], &[]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["in_progress"]["run_id"].is_string(), "{status}");
    assert_eq!(status["running"], false);
    let shown = s.ferry(&["status"], &[]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("INTERRUPTED") && shown.contains("ferry-install resume"),
        "{shown}"
    );
    let out = s.ferry(&[recover], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{checkpoint} {recover}: {}",
        text(&out)
    );
    let want = if recover == "resume" { "2.0" } else { "1.0" };
    assert_eq!(s.versions(), all(want), "{checkpoint} {recover}");
    for c in COMPONENTS {
        assert!(s.healthy(c), "{checkpoint} {recover}: {c} unhealthy");
    }
    s.assert_consistent();
}

#[test]
fn crash_at_every_checkpoint_then_resume_finishes() {
    for checkpoint in CHECKPOINTS {
        crash_and_recover(checkpoint, "resume");
    }
}

#[test]
fn crash_at_every_checkpoint_then_rollback_restores() {
    for checkpoint in CHECKPOINTS {
        crash_and_recover(checkpoint, "rollback");
    }
}

/// The gateway's health check first points at a dead port (so the run rolls back and
/// is killed in the middle of it); with the cause fixed, both directions recover.
#[test]
fn crash_mid_rollback_then_resume_or_rollback() {
    for recover in ["resume", "rollback"] {
        let s = scenario(Setup {
            timeout_secs: 1,
            ..Setup::default()
        });
        let config = s.point_pump_health_at_a_dead_port();
        let out = s.apply(&[], &[("FERRY_TEST_CHECKPOINT", "mid-rollback")]);
        assert!(killed(&out), "not killed mid-rollback\n{}", text(&out));
        std::fs::remove_file(&config).unwrap();
        let out = s.ferry(&[recover], &[]);
        assert_eq!(out.status.code(), Some(0), "{recover}: {}", text(&out));
        let want = if recover == "resume" { "2.0" } else { "1.0" };
        assert_eq!(s.versions(), all(want), "{recover}");
        for c in COMPONENTS {
            assert!(s.healthy(c), "{recover}: {c} unhealthy");
        }
        s.assert_consistent();
    }
}

/// When the rollback itself cannot finish (the pump never answers, before or after),
/// apply stops with exit code 6, keeps the journal and names the next command; with
/// the cause fixed, `rollback` finishes the job.
#[test]
fn rollback_that_cannot_finish_exits_6_and_can_be_completed() {
    let s = scenario(Setup {
        timeout_secs: 1,
        ..Setup::default()
    });
    let config = s.point_pump_health_at_a_dead_port();
    let out = s.apply(&[], &[]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOT undone"), "{stdout}");
    assert!(stdout.contains("ferry-install rollback"), "{stdout}");
    assert!(s.root.join("/var/lib/ferry/journal.json").exists());
    std::fs::remove_file(&config).unwrap();
    let out = s.ferry(&["rollback"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.versions(), all("1.0"));
    s.assert_consistent();
}
