//! `oci-bench`: times `ferry-build build` of a spec with one container image against
//! `skopeo copy` of the same image into a `docker-archive:` tar, both pulling from the
//! same local registry (Debian's `docker-registry` on 127.0.0.1, plain HTTP).
//!
//! Run it through `bench/oci.sh`, which builds the release binaries first. The table goes
//! to stdout, progress to stderr. The exit status is non-zero only when a command fails
//! (or the warm-cache build downloads a blob); a missed target prints `MISS`.
//!
//! Knobs (environment): `FERRY_BUILD` (path of ferry-build; default: beside this
//! executable), `FERRY_BENCH_RUNS` (3), `FERRY_BENCH_IMAGE_MIB` (300),
//! `FERRY_BENCH_IMAGE_LAYERS` (6), `FERRY_BENCH_JOBS` (unset: ferry-build's default
//! `--jobs`).

use ferry_tests::bench::{check, env_number, ferry_build_path, median, mib, secs, Failure, Result};
use ferry_tests::oci_image::{big_image, push, OciLayout};
use ferry_tests::registry::{skopeo, Registry};
use ferry_tests::{run_in, TestDir};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The ratio ferry-cold / skopeo to reach.
const TARGET: f64 = 1.0;

/// The repository and tag the image is pushed as.
const NAME: &str = "bench/big:1";

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("oci-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Total size of the regular files directly in `dir` (a build's `--out`).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// N from ferry-build's step line "… N blob(s) downloaded, the rest from the cache".
fn blobs_downloaded(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains(" blob(s) downloaded"))?;
    let before = line.split(" blob(s) downloaded").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// One ferry-build build as measured.
#[derive(Clone, Copy)]
struct Build {
    time: Duration,
    downloaded: u64,
    bundle_bytes: u64,
}

struct Ferry {
    exe: PathBuf,
    dir: TestDir,
    host: String,
    jobs: Option<String>,
    runs: usize,
}

impl Ferry {
    /// One `ferry-build build` into a fresh `--out`, with `cache` and `compression`.
    fn build(&mut self, cache: &str, compression: &str) -> Result<Build> {
        self.runs += 1;
        let out = format!("out-{}", self.runs);
        let mut args = vec![
            "build",
            "--spec",
            "spec.toml",
            "--key",
            "k.key",
            "--out",
            &out,
            "--cache",
            cache,
            "--insecure-registry",
            &self.host,
            "--compression",
            compression,
        ];
        if let Some(jobs) = &self.jobs {
            args.extend(["--jobs", jobs.as_str()]);
        }
        let start = Instant::now();
        let run = run_in(self.dir.path(), &self.exe, &args, &[]);
        let time = start.elapsed();
        let run = check("ferry-build build", run)?;
        let downloaded = blobs_downloaded(&run.stderr).ok_or_else(|| {
            Failure(format!(
                "ferry-build build printed no \"N blob(s) downloaded\" line; stderr:\n{}",
                run.stderr
            ))
        })?;
        let bundle_bytes = dir_bytes(&self.dir.join(&out));
        let _ = std::fs::remove_dir_all(self.dir.join(&out));
        Ok(Build {
            time,
            downloaded,
            bundle_bytes,
        })
    }

    /// A build with a fresh (cold) cache, removed afterwards.
    fn cold(&mut self, compression: &str) -> Result<Build> {
        let cache = format!("cache-{}", self.runs);
        let build = self.build(&cache, compression);
        let _ = std::fs::remove_dir_all(self.dir.join(&cache));
        build
    }

    /// A cold build (fresh cache) then a warm one (same cache), `--compression none`.
    fn cold_and_warm(&mut self) -> Result<(Build, Build)> {
        let cache = format!("cache-{}", self.runs);
        let builds = self
            .build(&cache, "none")
            .and_then(|cold| Ok((cold, self.build(&cache, "none")?)));
        let _ = std::fs::remove_dir_all(self.dir.join(&cache));
        let (cold, warm) = builds?;
        if cold.downloaded == 0 {
            return Err(Failure(
                "the cold-cache build downloaded no blob; the cache was not cold".into(),
            ));
        }
        if warm.downloaded != 0 {
            return Err(Failure(format!(
                "the warm-cache build downloaded {} blob(s); it should download none",
                warm.downloaded
            )));
        }
        Ok((cold, warm))
    }
}

struct Skopeo {
    dir: TestDir,
    source: String,
    runs: usize,
}

impl Skopeo {
    /// `skopeo copy` into a fresh `docker-archive:` tar with a fresh private home; wall
    /// time and the archive's size.
    fn copy(&mut self) -> Result<(Duration, u64)> {
        self.runs += 1;
        let home = self.dir.join(format!("home-{}", self.runs));
        let out = self.dir.join(format!("out-{}.tar", self.runs));
        let dest = format!("docker-archive:{}:{NAME}", out.display());
        let start = Instant::now();
        let run = skopeo(
            &home,
            &["copy", "--src-tls-verify=false", &self.source, &dest],
        );
        let time = start.elapsed();
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_dir_all(&home);
        check("skopeo copy", run)?;
        if size == 0 {
            return Err(Failure(format!(
                "skopeo copy succeeded but wrote no {}",
                out.display()
            )));
        }
        Ok((time, size))
    }
}

fn spec(host: &str) -> String {
    format!(
        r#"name = "oci-bench"
[target]
distro = "debian"
codename = "bookworm"
arch = "amd64"

[[image]]
reference = "{host}/{NAME}"
"#
    )
}

fn bench() -> Result<()> {
    let exe = ferry_build_path()?;
    let runs = env_number("FERRY_BENCH_RUNS", 3, 1)? as usize;
    let image_mib = env_number("FERRY_BENCH_IMAGE_MIB", 300, 1)?;
    let layers = env_number("FERRY_BENCH_IMAGE_LAYERS", 6, 1)? as usize;
    let jobs = match std::env::var("FERRY_BENCH_JOBS") {
        Ok(_) => Some(env_number("FERRY_BENCH_JOBS", 8, 1)?.to_string()),
        Err(_) => None,
    };

    eprintln!("== starting the registry");
    let registry = Registry::start();
    let host = registry.host();

    eprintln!("== building the image ({image_mib} MiB incompressible in {layers} layer(s)) and pushing it as {NAME}");
    let image_bytes = {
        let layout_dir = TestDir::new();
        let mut layout = OciLayout::create(layout_dir.join("layout"));
        let image = layout.add_image("big", &big_image(image_mib, layers));
        push(&registry, layout.path(), Some("big"), NAME);
        image.total_size()
    };

    let dir = TestDir::new();
    dir.write("spec.toml", spec(&host));
    check(
        "ferry-build key generate",
        run_in(
            dir.path(),
            &exe,
            &["key", "generate", "--out", "k", "--no-passphrase", "-q"],
            &[],
        ),
    )?;
    let mut ferry = Ferry {
        exe,
        dir,
        host: host.clone(),
        jobs: jobs.clone(),
        runs: 0,
    };
    let mut skopeo = Skopeo {
        dir: TestDir::new(),
        source: format!("docker://{host}/{NAME}"),
        runs: 0,
    };

    eprintln!("== untimed warm-up of both");
    ferry.cold_and_warm()?;
    skopeo.copy()?;

    let (mut cold, mut warm, mut copy) = (vec![], vec![], vec![]);
    let mut last: Option<(Build, Build)> = None;
    let mut archive_bytes = 0;
    for i in 0..runs {
        // Alternate which side goes first.
        let order = if i % 2 == 0 {
            ["ferry", "skopeo"]
        } else {
            ["skopeo", "ferry"]
        };
        for side in order {
            if side == "ferry" {
                let (c, w) = ferry.cold_and_warm()?;
                eprintln!(
                    "== run {}: ferry cold {:.3} s ({} blob(s) downloaded), warm {:.3} s ({} downloaded)",
                    i + 1,
                    secs(c.time),
                    c.downloaded,
                    secs(w.time),
                    w.downloaded
                );
                cold.push(secs(c.time));
                warm.push(secs(w.time));
                last = Some((c, w));
            } else {
                let (t, size) = skopeo.copy()?;
                eprintln!("== run {}: skopeo copy {:.3} s", i + 1, secs(t));
                copy.push(secs(t));
                archive_bytes = size;
            }
        }
    }
    eprintln!("== ferry cold with --compression gzip (once, for information)");
    let gzip = ferry.cold("gzip")?;

    let (last_cold, last_warm) = last.expect("at least one run");
    let (cold, warm, copy) = (median(&cold), median(&warm), median(&copy));
    let ratio = cold / copy;
    let verdict = if ratio <= TARGET { "PASS" } else { "MISS" };
    let jobs = jobs.unwrap_or_else(|| "8 (default)".into());
    println!(
        "ferry vs skopeo image pull benchmark ({image_mib} MiB incompressible in {layers} layer(s), {:.1} MiB of blobs, local registry, median of {runs})",
        mib(image_bytes)
    );
    println!(
        "ferry-build build, cold cache:      {cold:7.3} s   {:6.1} MiB/s; --compression none, --jobs {jobs}; {} blob(s) downloaded; bundle {:.1} MiB",
        mib(image_bytes) / cold,
        last_cold.downloaded,
        mib(last_cold.bundle_bytes)
    );
    println!(
        "ferry-build build, warm cache:      {warm:7.3} s   {} blob(s) downloaded",
        last_warm.downloaded
    );
    println!(
        "skopeo copy to docker-archive:      {copy:7.3} s   {:6.1} MiB/s; archive {:.1} MiB",
        mib(image_bytes) / copy,
        mib(archive_bytes)
    );
    println!(
        "ferry-build build, cold, gzip:      {:7.3} s   (once, for information) {} blob(s) downloaded; bundle {:.1} MiB",
        secs(gzip.time),
        gzip.downloaded,
        mib(gzip.bundle_bytes)
    );
    println!("ratio ferry cold / skopeo copy: {ratio:.2} (target <= {TARGET:.2})  {verdict}");
    Ok(())
}
