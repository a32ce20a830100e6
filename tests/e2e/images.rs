//! Container images: `ferry-build` pulls from a real `docker-registry` on 127.0.0.1
//! (images pushed with skopeo), and the bundle's image tars are accepted by skopeo and
//! pushed on by `ferry-install images push` with their digests intact.

use ferry_tests::oci_image::TestImages;
use ferry_tests::registry::{CorruptingProxy, Registry};
use ferry_tests::{ferry_build, ferry_install, require_tool, run_in, Run, TestDir};

struct Setup {
    dir: TestDir,
    registry: Registry,
    images: TestImages,
    digests: [String; 3],
}

fn setup(registry: Registry) -> Setup {
    let dir = TestDir::new();
    let images = TestImages::build(dir.join("layout"));
    let digests = images.push_all(&registry);
    ferry_build(
        dir.path(),
        &["key", "generate", "--out", "k", "--no-passphrase", "-q"],
        &[],
    )
    .ok();
    dir.write("trusted/k.pub", std::fs::read(dir.join("k.pub")).unwrap());
    Setup {
        dir,
        registry,
        images,
        digests,
    }
}

/// A spec with `[[image]]` entries (reference, optional platform).
fn spec(s: &Setup, host: &str, images: &[(&str, Option<&str>)]) {
    let mut text = String::from("name = \"images-1\"\n[target]\ndistro = \"debian\"\ncodename = \"bookworm\"\narch = \"amd64\"\n");
    for (name, platform) in images {
        text.push_str(&format!("[[image]]\nreference = \"{host}/{name}\"\n"));
        if let Some(p) = platform {
            text.push_str(&format!("platform = \"{p}\"\n"));
        }
    }
    s.dir.write("spec.toml", text);
}

fn build(s: &Setup, host: &str, extra: &[&str]) -> Run {
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
        "--insecure-registry",
        host,
        "--json",
    ];
    args.extend_from_slice(extra);
    ferry_build(s.dir.path(), &args, &[])
}

fn manifest(s: &Setup, bundle: &str) -> serde_json::Value {
    let run = ferry_install(s.dir.path(), &["inspect", bundle, "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["manifest"].clone()
}

fn bundle_of(run: &Run) -> String {
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["files"][0].as_str().unwrap().to_string()
}

/// Extract the verified payload with the library (the installer's staging path).
fn extract(s: &Setup, bundle: &str) -> std::path::PathBuf {
    let trust = ferry_keys::TrustStore::load(&s.dir.join("trusted")).unwrap();
    let source = ferry_bundle::BundleSource::open(&s.dir.join(bundle)).unwrap();
    let staging = s.dir.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    ferry_bundle::read_bundle(
        &source,
        ferry_bundle::Check::Verify(ferry_bundle::TrustPolicy::new(&trust, 1)),
        Some(&staging),
        &ferry_bundle::NullReporter,
    )
    .unwrap();
    staging
}

#[test]
fn pull_by_tag_and_digest_with_shared_layers_once_and_skopeo_accepts_the_tars() {
    let s = setup(Registry::start());
    let host = s.registry.host();
    let a_by_digest = format!("ferry-test/a@{}", s.digests[0]);
    spec(&s, &host, &[(TestImages::B, None), (&a_by_digest, None)]);
    let run = build(&s, &host, &[]).ok();
    // A: config + 2 layers; B: config + the shared layer + its own: 5 distinct blobs.
    assert!(
        run.stderr.contains("5 blob(s) downloaded"),
        "{}",
        run.stderr
    );
    let bundle = bundle_of(&run);
    ferry_install(s.dir.path(), &["verify", &bundle, "--trust", "trusted"]).ok();
    let m = manifest(&s, &bundle);
    let images = m["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let b = images
        .iter()
        .find(|i| i["reference"].as_str().unwrap().contains("ferry-test/b"))
        .unwrap();
    assert_eq!(b["digest"], s.digests[1].as_str());
    assert_eq!(b["platform"], "linux/amd64");
    assert_eq!(b["format"], "docker-archive+oci");
    let a = images
        .iter()
        .find(|i| i["reference"].as_str().unwrap().contains("ferry-test/a"))
        .unwrap();
    assert_eq!(a["digest"], s.digests[0].as_str());

    let staging = extract(&s, &bundle);
    let home = s.dir.join("skopeo-home");
    std::fs::create_dir_all(&home).unwrap();
    let skopeo = require_tool("skopeo", "skopeo");
    for (image, digest) in [(b, &s.digests[1]), (a, &s.digests[0])] {
        let tar = staging.join(image["file"].as_str().unwrap());
        let tar = tar.to_str().unwrap();
        // The OCI view of the archive keeps the registry's manifest and digest.
        let inspect = run_in(
            s.dir.path(),
            &skopeo,
            &["inspect", &format!("oci-archive:{tar}")],
            &[("HOME", home.to_str().unwrap())],
        )
        .ok();
        let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(v["Digest"].as_str().unwrap(), digest.as_str());
        // The docker-archive view is accepted too (docker load's format).
        run_in(
            s.dir.path(),
            &skopeo,
            &["inspect", &format!("docker-archive:{tar}")],
            &[("HOME", home.to_str().unwrap())],
        )
        .ok();
        let out = s.dir.join(format!("oci-{}", &digest[7..19]));
        run_in(
            s.dir.path(),
            &skopeo,
            &[
                "copy",
                &format!("docker-archive:{tar}"),
                &format!("oci:{}", out.display()),
            ],
            &[("HOME", home.to_str().unwrap())],
        )
        .ok();
    }

    // A warm cache transfers no blob bytes, and the bundle is the same.
    let again = build(&s, &host, &[]).ok();
    assert!(
        again.stderr.contains("0 blob(s) downloaded"),
        "{}",
        again.stderr
    );
}

#[test]
fn the_platform_is_chosen_from_the_index_and_a_missing_one_is_named() {
    let s = setup(Registry::start());
    let host = s.registry.host();
    spec(&s, &host, &[(TestImages::C, Some("linux/arm64"))]);
    let run = build(&s, &host, &[]).ok();
    let m = manifest(&s, &bundle_of(&run));
    assert_eq!(
        m["images"][0]["digest"],
        s.images.c.image("linux", "arm64").digest()
    );
    assert_eq!(m["images"][0]["platform"], "linux/arm64");
    // The default platform follows the target architecture.
    spec(&s, &host, &[(TestImages::C, None)]);
    let run = build(&s, &host, &[]).ok();
    let m = manifest(&s, &bundle_of(&run));
    assert_eq!(
        m["images"][0]["digest"],
        s.images.c.image("linux", "amd64").digest()
    );
    spec(&s, &host, &[(TestImages::C, Some("linux/s390x"))]);
    build(&s, &host, &[])
        .code(1)
        .stderr_has("no image for platform linux/s390x")
        .stderr_has("linux/amd64")
        .stderr_has("linux/arm64");
}

#[test]
fn basic_auth_works_and_a_wrong_password_fails_clearly() {
    let s = setup(Registry::start_with_auth("ferry", "s3cret"));
    let host = s.registry.host();
    spec(&s, &host, &[(TestImages::A, None)]);
    build(
        &s,
        &host,
        &["--registry-auth", &format!("{host}=ferry:s3cret")],
    )
    .ok();
    let bad = build(
        &s,
        &host,
        &["--registry-auth", &format!("{host}=ferry:wrong")],
    )
    .code(1);
    assert!(
        !bad.stderr.contains("wrong"),
        "the password leaked: {}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("image") && bad.stderr.contains("ferry-test/a"),
        "{}",
        bad.stderr
    );
    // Credentials from a Docker config.json (base64 user:password).
    let docker = s.dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("ferry:s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    let mut args = vec![
        "build",
        "--spec",
        "spec.toml",
        "--key",
        "k.key",
        "--out",
        "out2",
        "--cache",
        "cache2",
        "--insecure-registry",
    ];
    args.push(&host);
    ferry_build(
        s.dir.path(),
        &args,
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
    )
    .ok();
}

#[test]
fn a_registry_that_corrupts_blobs_is_refused_and_nothing_corrupt_is_cached() {
    let s = setup(Registry::start());
    let proxy = CorruptingProxy::start(&s.registry.host());
    let host = proxy.host();
    spec(&s, &host, &[(TestImages::A, None)]);
    build(&s, &host, &[])
        .code(1)
        .stderr_has("does not match its digest");
    assert!(proxy.corrupted() > 0);
    for entry in std::fs::read_dir(s.dir.join("cache/sha256"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(
            ferry_tests::sha256_file(&entry.path()),
            name,
            "corrupt file in the cache"
        );
    }
    assert_eq!(
        std::fs::read_dir(s.dir.join("cache/partial"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        !s.dir.join("out").exists() || std::fs::read_dir(s.dir.join("out")).unwrap().count() == 0
    );
}

#[test]
fn images_push_into_a_second_registry_keeps_the_digest() {
    let s = setup(Registry::start());
    let host = s.registry.host();
    spec(&s, &host, &[(TestImages::B, None)]);
    let bundle = bundle_of(&build(&s, &host, &[]).ok());
    let second = Registry::start();
    let root = s.dir.join("root");
    std::fs::create_dir_all(root.join("etc/ferry/trusted")).unwrap();
    std::fs::copy(s.dir.join("k.pub"), root.join("etc/ferry/trusted/k.pub")).unwrap();
    ferry_install(
        s.dir.path(),
        &[
            "--root",
            root.to_str().unwrap(),
            "images",
            "push",
            &bundle,
            "--registry",
            &second.host(),
            "--insecure",
        ],
    )
    .ok();
    assert_eq!(second.manifest_digest(TestImages::B), s.digests[1]);
}

#[test]
fn a_build_from_the_lock_pulls_by_digest_after_the_tag_moved() {
    let s = setup(Registry::start());
    let host = s.registry.host();
    spec(&s, &host, &[(TestImages::A, None)]);
    let run = ferry_build(
        s.dir.path(),
        &[
            "resolve",
            "--spec",
            "spec.toml",
            "--cache",
            "cache",
            "--insecure-registry",
            &host,
            "--json",
        ],
        &[],
    )
    .ok();
    let lock: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(lock["image"][0]["digest"], s.digests[0].as_str());
    // The tag now points at image B's content.
    ferry_tests::oci_image::push(
        &s.registry,
        s.images.layout.path(),
        Some("b"),
        TestImages::A,
    );
    assert_eq!(s.registry.manifest_digest(TestImages::A), s.digests[1]);
    // A fresh cache forces network pulls: by digest, so still A.
    std::fs::remove_dir_all(s.dir.join("cache")).unwrap();
    let m = manifest(&s, &bundle_of(&build(&s, &host, &[]).ok()));
    assert_eq!(m["images"][0]["digest"], s.digests[0].as_str());
}

#[test]
fn a_build_from_lock_and_warm_cache_makes_no_registry_request() {
    let s = setup(Registry::start());
    let direct = s.registry.host();
    let proxy = CorruptingProxy::start(&direct);
    let host = proxy.host();
    // Warm the cache from the registry directly (blobs are content-addressed)...
    spec(&s, &direct, &[(TestImages::A, None)]);
    build(&s, &direct, &[]).ok();
    // ...then lock the same image through the proxy (manifests only, never corrupted).
    spec(&s, &host, &[(TestImages::A, None)]);
    ferry_build(
        s.dir.path(),
        &[
            "resolve",
            "--spec",
            "spec.toml",
            "--cache",
            "cache",
            "--insecure-registry",
            &host,
        ],
        &[],
    )
    .ok();
    let before = proxy.requests().len();
    let run = build(&s, &host, &[]).ok();
    assert!(
        run.stderr.contains("0 blob(s) downloaded"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.requests().len(), before, "{:#?}", proxy.requests());
}
