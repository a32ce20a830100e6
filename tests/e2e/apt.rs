//! `ferry-build resolve` and `build` against a real signed APT repository served on
//! 127.0.0.1, with faults injected by the server.

use ferry_tests::apt_repo::{AptGet, AptRepo, DebSpec, Key, SignatureFault};
use ferry_tests::http::{Fault, Server};
use ferry_tests::{ferry_build, ferry_install, Run, TestDir};
use std::collections::BTreeMap;

/// The packages every test repository carries: Pre-Depends, alternatives, a virtual
/// package, `Architecture: all`, an epoch and a `~` version.
fn packages() -> Vec<DebSpec> {
    vec![
        DebSpec::new("app", "2.0")
            .pre_depends("libpre (>= 1:0.5~rc1)")
            .depends("libfoo (>= 1.2) | libalt, mail-transport-agent, appdata (= 2.0)")
            .file("opt/app/bin", b"#!/bin/sh\necho app 2.0\n".to_vec())
            .postinst("#!/bin/sh\nexit 0\n"),
        DebSpec::new("app", "1.0").depends("appdata"),
        DebSpec::new("appdata", "2.0").arch("all"),
        DebSpec::new("appdata", "1.0").arch("all"),
        DebSpec::new("libpre", "1:0.5~rc1").multi_arch("same"),
        DebSpec::new("libfoo", "1.3"),
        DebSpec::new("libfoo", "1.1"),
        DebSpec::new("libalt", "1").arch("all"),
        DebSpec::new("postfix", "3.7").provides("mail-transport-agent"),
        DebSpec::new("unrelated", "9.9"),
    ]
}

fn repo_with(
    change: impl FnOnce(ferry_tests::apt_repo::RepoBuilder) -> ferry_tests::apt_repo::RepoBuilder,
) -> AptRepo {
    change(AptRepo::builder().suite("stable").packages(packages())).build()
}

/// A spec for `app` (and `extra` TOML) against the repository at `url`.
fn write_spec(dir: &TestDir, repo: &AptRepo, url: &str, package: &str, extra: &str) {
    std::fs::copy(&repo.keyring_asc, dir.join("repo.asc")).unwrap();
    dir.write(
        "spec.toml",
        format!(
            r#"name = "app-2.0"
[target]
distro = "debian"
codename = "bookworm"
arch = "amd64"

[[repository]]
id = "fixture"
url = "{url}/"
suite = "stable"
components = ["main"]
keyring = "repo.asc"

{package}

[[step]]
component = "app"
packages = ["app"]
{extra}"#
        ),
    );
}

const APP: &str = "[[package]]\nname = \"app\"\n";

fn env(dir: &TestDir) -> Vec<(String, String)> {
    vec![
        ("FERRY_RETRY_DELAY_MS".into(), "1".into()),
        (
            "XDG_CACHE_HOME".into(),
            dir.join("xdg").to_string_lossy().into_owned(),
        ),
        ("SOURCE_DATE_EPOCH".into(), epoch(dir)),
    ]
}

/// One build time per test directory, so rebuilds are byte-identical.
fn epoch(dir: &TestDir) -> String {
    let path = dir.join("source-date-epoch");
    if let Ok(v) = std::fs::read_to_string(&path) {
        return v;
    }
    let v = ferry_tests::apt_repo::unix_now().to_string();
    std::fs::write(&path, &v).unwrap();
    v
}

fn build_cmd(dir: &TestDir, args: &[&str]) -> Run {
    let env = env(dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ferry_build(dir.path(), args, &env)
}

fn resolve(dir: &TestDir, extra: &[&str]) -> Run {
    let mut args = vec![
        "resolve",
        "--spec",
        "spec.toml",
        "--cache",
        "cache",
        "--json",
    ];
    args.extend_from_slice(extra);
    build_cmd(dir, &args)
}

fn build(dir: &TestDir, extra: &[&str]) -> Run {
    if !dir.join("k.key").exists() {
        ferry_build(
            dir.path(),
            &["key", "generate", "--out", "k", "--no-passphrase", "-q"],
            &[],
        )
        .ok();
    }
    let mut args = vec![
        "build",
        "--spec",
        "spec.toml",
        "--key",
        "k.key",
        "--out",
        "out",
        "--cache",
        "cache",
        "--json",
    ];
    args.extend_from_slice(extra);
    build_cmd(dir, &args)
}

/// name -> (version, role) from `resolve --json`.
fn resolved(run: &Run) -> BTreeMap<String, (String, String)> {
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                (
                    p["version"].as_str().unwrap().to_string(),
                    p["role"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn cached_files(dir: &TestDir) -> Vec<String> {
    std::fs::read_dir(dir.join("cache/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn partial_files(dir: &TestDir) -> usize {
    std::fs::read_dir(dir.join("cache/partial"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn happy_path_closure_package_by_package_and_into_the_bundle() {
    let repo = repo_with(|b| b);
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(
        &dir,
        &repo,
        &server.url(),
        &format!("{APP}previous = \"1.0\"\n"),
        "",
    );
    let run = resolve(&dir, &[]).ok();
    let got = resolved(&run);
    let want: BTreeMap<String, (String, String)> = [
        ("app", "2.0", "target"),
        ("appdata", "2.0", "dependency"),
        ("libpre", "1:0.5~rc1", "dependency"),
        ("libfoo", "1.3", "dependency"),
        ("postfix", "3.7", "dependency"),
    ]
    .iter()
    .map(|(n, v, r)| (n.to_string(), (v.to_string(), r.to_string())))
    .collect();
    let mut got_current = got.clone();
    // The previous version is carried too (it shares the name, so it is listed apart).
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let previous: Vec<&serde_json::Value> = v["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "previous")
        .collect();
    assert_eq!(previous.len(), 1);
    assert_eq!(previous[0]["version"], "1.0");
    got_current.retain(|_, (_, role)| role != "previous");
    got_current.insert("app".into(), ("2.0".into(), "target".into()));
    assert_eq!(got_current, want);
    // Reasons name the chain.
    let postfix = v["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "postfix")
        .unwrap();
    assert!(
        postfix["reason"]
            .as_str()
            .unwrap()
            .starts_with("app 2.0 -> postfix 3.7 (mail-transport-agent)"),
        "{}",
        postfix["reason"]
    );
    assert!(dir.join("spec.toml.lock").exists());

    // Build from the lock, verify, and check every .deb is the repository's own bytes.
    let run = build(&dir, &[]).ok();
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let bundle = out["files"][0].as_str().unwrap().to_string();
    dir.write("trusted/k.pub", std::fs::read(dir.join("k.pub")).unwrap());
    ferry_install(dir.path(), &["verify", &bundle, "--trust", "trusted"]).ok();
    let inspect = ferry_install(dir.path(), &["inspect", &bundle, "--json"]).ok();
    let m: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let files: BTreeMap<String, String> = m["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, version, file) in [
        ("app", "2.0", "debs/app_2.0_amd64.deb"),
        ("app", "1.0", "debs/app_1.0_amd64.deb"),
        ("libpre", "1:0.5~rc1", "debs/libpre_1%3a0.5~rc1_amd64.deb"),
        ("appdata", "2.0", "debs/appdata_2.0_all.deb"),
    ] {
        assert_eq!(
            files[file],
            ferry_tests::sha256_file(&repo.deb_path(name, version)),
            "{file}"
        );
    }
    // Dependencies come before the step's own package, in the same step.
    let step = &m["manifest"]["steps"][0]["packages"];
    assert_eq!(step.as_array().unwrap().last().unwrap(), "app");
    assert_eq!(step.as_array().unwrap().len(), 5, "{step}");
    let roles: Vec<&str> = m["manifest"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert!(roles.contains(&"previous"));
    // inspect groups packages by step.
    ferry_install(dir.path(), &["inspect", &bundle])
        .ok()
        .stdout_has("step 1 app")
        .stdout_has("not installed by any step");
}

#[test]
fn the_closure_matches_what_apt_itself_would_install() {
    let repo = repo_with(|b| b);
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(&dir, &repo, &server.url(), APP, "");
    let ours: Vec<String> = resolved(&resolve(&dir, &[]).ok())
        .into_iter()
        .map(|(n, (v, _))| format!("{n} {v}"))
        .collect();
    let apt = AptGet::new(&repo, &server.url());
    apt.update().ok();
    let sim = apt.simulate_install(&["app"]).ok();
    let mut theirs: Vec<String> = sim
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let version = parts.next().unwrap().trim_start_matches('(').to_string();
            format!("{name} {version}")
        })
        .collect();
    theirs.sort();
    assert_eq!(ours, theirs, "apt's plan:\n{}", sim.stdout);
}

#[test]
fn an_inventory_baseline_skips_installed_packages() {
    let repo = repo_with(|b| b);
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(&dir, &repo, &server.url(), APP, "");
    let inventory = serde_json::json!({
        "format": "ferry-inventory/1",
        "created": "2026-11-21T00:00:00Z",
        "hostname": "gw-1",
        "os": {"id": "debian", "version_id": "12", "version_codename": "bookworm"},
        "arch": "amd64",
        "foreign_archs": [],
        "packages": [
            {"name": "libfoo", "version": "1.5", "arch": "amd64", "status": "install ok installed", "essential": false},
            {"name": "exim4-daemon-light", "version": "4.96", "arch": "amd64", "status": "install ok installed",
             "provides": "mail-transport-agent", "essential": false},
            {"name": "libpre", "version": "1:0.4", "arch": "amd64", "status": "install ok installed", "essential": false},
            {"name": "appdata", "version": "2.0", "arch": "all", "status": "deinstall ok config-files", "essential": false}
        ]
    });
    dir.write("host.json", serde_json::to_vec_pretty(&inventory).unwrap());
    let got = resolved(&resolve(&dir, &["--inventory", "host.json"]).ok());
    // libfoo and the MTA are present; libpre 1:0.4 is too old; appdata is only config-files.
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(names, ["app", "appdata", "libpre"]);
}

/// Build expecting failure; the message must contain `needle` and the cache must hold
/// no `.deb` and no partial file afterwards.
fn refused(repo: &AptRepo, server: &Server, needle: &str, extra: &[&str]) {
    let dir = TestDir::new();
    write_spec(&dir, repo, &server.url(), APP, "");
    let run = build(&dir, extra).code(1).stderr_has(needle);
    let debs: Vec<String> = repo
        .debs
        .iter()
        .map(|d| ferry_tests::sha256_file(&d.path))
        .collect();
    for f in cached_files(&dir) {
        assert!(
            !debs.contains(&f),
            "a .deb entered the cache: {}",
            run.stderr
        );
    }
    assert_eq!(
        partial_files(&dir),
        0,
        "a partial file was left: {}",
        run.stderr
    );
    assert!(!dir.join("out").exists() || std::fs::read_dir(dir.join("out")).unwrap().count() == 0);
}

#[test]
fn bad_signature_wrong_key_and_expired_release_are_refused() {
    let bad = repo_with(|b| b.signature_fault(Some(SignatureFault::FlippedSignature)));
    refused(&bad, &bad.serve(), "no valid signature", &[]);
    let tampered = repo_with(|b| b.signature_fault(Some(SignatureFault::TamperedText)));
    refused(&tampered, &tampered.serve(), "no valid signature", &[]);
    let wrong = repo_with(|b| b.sign_with(Key::Other));
    refused(&wrong, &wrong.serve(), "no valid signature", &[]);
    let expired = repo_with(|b| b.valid_until(Some(ferry_tests::apt_repo::unix_now() - 86_400)));
    refused(&expired, &expired.serve(), "Valid-Until", &[]);
    // The override for an expired Release works, loudly.
    let dir = TestDir::new();
    let server = expired.serve();
    write_spec(&dir, &expired, &server.url(), APP, "");
    build(&dir, &["--allow-expired-release"])
        .ok()
        .stderr_has("allowed by --allow-expired-release");
    let future = repo_with(|b| b.date(ferry_tests::apt_repo::unix_now() + 86_400));
    refused(&future, &future.serve(), "in the future", &[]);
    let no_sha = repo_with(|b| b.sha256(false));
    refused(&no_sha, &no_sha.serve(), "no SHA256", &[]);
    // An unsigned repository only with the explicit, per-repository override.
    let unsigned = repo_with(|b| b.inrelease(false).release_gpg(false));
    let server = unsigned.serve();
    refused(
        &unsigned,
        &server,
        "--allow-unsigned-repository fixture",
        &[],
    );
    let dir = TestDir::new();
    write_spec(&dir, &unsigned, &server.url(), APP, "");
    build(&dir, &["--allow-unsigned-repository", "fixture"])
        .ok()
        .stderr_has("UNSIGNED REPOSITORY fixture ALLOWED");
}

#[test]
fn subkeys_ed25519_binary_keyrings_and_detached_release_signatures_verify() {
    for key in [Key::RsaSubkey, Key::Ed25519] {
        let repo = repo_with(|b| b.key(key));
        let server = repo.serve();
        let dir = TestDir::new();
        write_spec(&dir, &repo, &server.url(), APP, "");
        resolve(&dir, &[]).ok();
    }
    // Binary keyring, and Release + Release.gpg without InRelease.
    let repo = repo_with(|b| b.inrelease(false));
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(&dir, &repo, &server.url(), APP, "");
    let spec = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
    std::fs::copy(&repo.keyring_gpg, dir.join("repo.gpg")).unwrap();
    dir.write("spec.toml", spec.replace("repo.asc", "repo.gpg"));
    resolve(&dir, &[]).ok();
}

#[test]
fn index_checksum_mismatch_and_wrong_deb_bytes_are_refused() {
    let repo = repo_with(|b| b.wrong_checksum("main/binary-amd64/Packages.gz"));
    let server = repo.serve();
    // With the plain index also listed, the mismatch on the one used must still fail.
    let dir = TestDir::new();
    write_spec(&dir, &repo, &server.url(), APP, "");
    build(&dir, &[]).code(1).stderr_has("checksum mismatch");

    let repo = repo_with(|b| b);
    let server = repo.serve();
    server.set_fault("*.deb", Fault::WrongBytes);
    refused(&repo, &server, "sha256 mismatch", &[]);
}

#[test]
fn downloads_resume_through_connections_dropped_half_way() {
    let repo = repo_with(|b| b.packages(ferry_tests::apt_repo::filler_sized(3, 200_000)));
    let server = repo.serve();
    server.set_fault("*.deb", Fault::DropHalfway(u32::MAX));
    server.set_fault("InRelease", Fault::Status(500, 2));
    let dir = TestDir::new();
    write_spec(
        &dir,
        &repo,
        &server.url(),
        "[[package]]\nname = \"app\"\n[[package]]\nname = \"filler-0000\"\n",
        "",
    );
    build(&dir, &["--jobs", "4"]).ok();
    let ranged = server.count(|r| r.path.ends_with(".deb") && r.range.is_some());
    assert!(
        ranged > 3,
        "expected Range requests, saw {ranged}: {:#?}",
        server.requests()
    );
    assert_eq!(partial_files(&dir), 0);
}

#[test]
fn a_warm_cache_downloads_no_debs_and_the_lock_reproduces_the_bundle() {
    let mut repo = repo_with(|b| b);
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(&dir, &repo, &server.url(), APP, "");
    resolve(&dir, &[]).ok();
    let first: serde_json::Value = serde_json::from_str(&build(&dir, &[]).ok().stdout).unwrap();
    server.clear_log();
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&build(&dir, &[]).ok().stdout).unwrap();
    assert_eq!(
        server.count(|r| r.path.ends_with(".deb")),
        0,
        "{:#?}",
        server.requests()
    );
    assert_eq!(
        server.count(|_| true),
        0,
        "a build from lock and cache needs no network"
    );
    assert_eq!(first["sha256"], second["sha256"]);

    // A newer app appears upstream: the lock still builds the same bundle.
    repo.add(DebSpec::new("app", "3.0"));
    let third: serde_json::Value = serde_json::from_str(&build(&dir, &[]).ok().stdout).unwrap();
    assert_eq!(first["sha256"], third["sha256"]);

    // Without the cache, the lock is fetched from the repository and must match it.
    std::fs::remove_dir_all(dir.join("cache")).unwrap();
    let fourth: serde_json::Value = serde_json::from_str(&build(&dir, &[]).ok().stdout).unwrap();
    assert_eq!(first["sha256"], fourth["sha256"]);
    // If the repository no longer serves the locked bytes, the build fails.
    std::fs::remove_dir_all(dir.join("cache")).unwrap();
    repo.rebuild_with(|b| b.remove("libfoo", "1.3"));
    build(&dir, &[]).code(1).stderr_has("no longer serves");

    // Editing the spec makes the lock stale.
    let spec = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
    dir.write("spec.toml", format!("{spec}\n# changed\n"));
    build(&dir, &[]).code(1).stderr_has("stale");
}

#[test]
fn missing_packages_and_versions_list_what_exists() {
    let repo = repo_with(|b| b);
    let server = repo.serve();
    let dir = TestDir::new();
    write_spec(
        &dir,
        &repo,
        &server.url(),
        "[[package]]\nname = \"app\"\nversion = \">= 5\"\n",
        "",
    );
    resolve(&dir, &[])
        .code(1)
        .stderr_has("no version matches >= 5")
        .stderr_has("available: 2.0, 1.0");
    write_spec(
        &dir,
        &repo,
        &server.url(),
        "[[package]]\nname = \"nope\"\n",
        "",
    );
    let spec = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
    dir.write(
        "spec.toml",
        spec.replace("packages = [\"app\"]", "packages = [\"nope\"]"),
    );
    resolve(&dir, &[])
        .code(1)
        .stderr_has("package nope does not exist");
}

#[test]
#[ignore = "needs the Debian mirror from this machine's apt sources; run by hand"]
fn jq_from_the_debian_mirror() {
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let mirror = sources
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .map(|u| u.trim().to_string())
        .expect("a URIs: line in /etc/apt/sources.list.d/debian.sources");
    let dir = TestDir::new();
    dir.write(
        "spec.toml",
        format!(
            "name = \"jq\"\n[target]\ndistro = \"debian\"\ncodename = \"bookworm\"\n[[repository]]\nid = \"debian\"\nurl = \"{mirror}\"\nsuite = \"bookworm\"\nkeyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\n[[package]]\nname = \"jq\"\n[[step]]\ncomponent = \"jq\"\npackages = [\"jq\"]\n"
        ),
    );
    let got = resolved(&resolve(&dir, &[]).ok());
    assert!(
        got.contains_key("jq") && got.contains_key("libjq1") && got.contains_key("libonig5"),
        "{got:?}"
    );
    let out: serde_json::Value = serde_json::from_str(&build(&dir, &[]).ok().stdout).unwrap();
    dir.write("trusted/k.pub", std::fs::read(dir.join("k.pub")).unwrap());
    ferry_install(
        dir.path(),
        &[
            "verify",
            out["files"][0].as_str().unwrap(),
            "--trust",
            "trusted",
        ],
    )
    .ok();
}
