//! `apt-bench`: times `ferry-build build` against `apt-get update` + `apt-get download`
//! on the same local, signed APT repository served with a fixed latency per request.
//!
//! Run it through `bench/apt.sh`, which builds the release binaries first. The table goes
//! to stdout, progress to stderr. The exit status is non-zero only when a command fails
//! (or the warm-cache build downloads a `.deb`); a missed target prints `MISS`.
//!
//! Knobs (environment): `FERRY_BUILD` (path of ferry-build; default: beside this
//! executable), `FERRY_BENCH_RUNS` (3), `FERRY_BENCH_PACKAGES` (100),
//! `FERRY_BENCH_PACKAGE_BYTES` (20000), `FERRY_BENCH_LATENCY_MS` (20),
//! `FERRY_BENCH_JOBS` (unset: ferry-build's default `--jobs`).

use ferry_tests::apt_repo::{filler_sized, AptGet, AptRepo};
use ferry_tests::bench::{check, env_number, ferry_build_path, median, secs, Failure, Result};
use ferry_tests::http::Server;
use ferry_tests::{run_in, TestDir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The ratio ferry-cold / apt(update + download) to reach.
const TARGET: f64 = 0.35;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("apt-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the server saw during one timed command.
#[derive(Clone, Copy, Default)]
struct Traffic {
    requests: usize,
    debs: usize,
    connections: usize,
}

fn traffic(server: &Server) -> Traffic {
    let log = server.requests();
    Traffic {
        requests: log.len(),
        debs: log.iter().filter(|r| r.path.ends_with(".deb")).count(),
        connections: log
            .iter()
            .map(|r| r.connection)
            .collect::<BTreeSet<_>>()
            .len(),
    }
}

struct Ferry<'a> {
    exe: PathBuf,
    dir: TestDir,
    server: &'a Server,
    jobs: Option<String>,
    runs: usize,
}

impl Ferry<'_> {
    /// One `ferry-build build` into a fresh `--out`, with `cache`; wall time and traffic.
    fn build(&mut self, cache: &str) -> Result<(Duration, Traffic)> {
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
            "--json",
        ];
        if let Some(jobs) = &self.jobs {
            args.extend(["--jobs", jobs.as_str()]);
        }
        self.server.clear_log();
        let start = Instant::now();
        let run = run_in(self.dir.path(), &self.exe, &args, &[]);
        let elapsed = start.elapsed();
        let seen = traffic(self.server);
        check("ferry-build build", run)?;
        let _ = std::fs::remove_dir_all(self.dir.join(&out));
        Ok((elapsed, seen))
    }

    /// A cold build (fresh cache) then a warm one (same cache).
    fn cold_and_warm(&mut self) -> Result<(Duration, Traffic, Duration, Traffic)> {
        let cache = format!("cache-{}", self.runs);
        let (cold, cold_traffic) = self.build(&cache)?;
        let (warm, warm_traffic) = self.build(&cache)?;
        let _ = std::fs::remove_dir_all(self.dir.join(&cache));
        if warm_traffic.debs != 0 {
            return Err(Failure(format!(
                "the warm-cache build downloaded {} .deb file(s); it should download none",
                warm_traffic.debs
            )));
        }
        Ok((cold, cold_traffic, warm, warm_traffic))
    }
}

struct Apt<'a> {
    repo: &'a AptRepo,
    server: &'a Server,
    names: Vec<String>,
}

impl Apt<'_> {
    /// `apt-get update` then `apt-get download` with a fresh private state; wall times.
    fn update_and_download(&self) -> Result<(Duration, Duration, Traffic)> {
        let apt = AptGet::new(self.repo, &self.server.url());
        let into = TestDir::new();
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        self.server.clear_log();
        let start = Instant::now();
        let run = apt.update();
        let update = start.elapsed();
        check("apt-get update", run)?;
        let start = Instant::now();
        let run = apt.download(into.path(), &names);
        let download = start.elapsed();
        let seen = traffic(self.server);
        check("apt-get download", run)?;
        let got = count_debs(into.path());
        if got != names.len() {
            return Err(Failure(format!(
                "apt-get download left {got} .deb file(s), expected {}",
                names.len()
            )));
        }
        Ok((update, download, seen))
    }
}

fn count_debs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
                .count()
        })
        .unwrap_or(0)
}

fn spec(url: &str, names: &[String]) -> String {
    let mut s = format!(
        r#"name = "apt-bench"
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
"#
    );
    for n in names {
        s.push_str(&format!("\n[[package]]\nname = \"{n}\"\n"));
    }
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    s.push_str(&format!(
        "\n[[step]]\ncomponent = \"filler\"\npackages = [{}]\n",
        list.join(", ")
    ));
    s
}

fn bench() -> Result<()> {
    let exe = ferry_build_path()?;
    let runs = env_number("FERRY_BENCH_RUNS", 3, 1)? as usize;
    let count = env_number("FERRY_BENCH_PACKAGES", 100, 1)? as usize;
    let bytes = env_number("FERRY_BENCH_PACKAGE_BYTES", 20_000, 1)? as usize;
    let latency_ms = env_number("FERRY_BENCH_LATENCY_MS", 20, 0)?;
    let jobs = match std::env::var("FERRY_BENCH_JOBS") {
        Ok(_) => Some(env_number("FERRY_BENCH_JOBS", 8, 1)?.to_string()),
        Err(_) => None,
    };

    eprintln!("== building the fixture repository ({count} packages x {bytes} bytes)");
    let repo = AptRepo::builder()
        .suite("stable")
        .packages(filler_sized(count, bytes))
        .build();
    let names: Vec<String> = repo.debs.iter().map(|d| d.name.clone()).collect();
    let server = repo.serve();
    server.set_latency(Duration::from_millis(latency_ms));

    let dir = TestDir::new();
    std::fs::copy(&repo.keyring_asc, dir.join("repo.asc"))
        .map_err(|e| Failure(format!("copying the repository keyring: {e}")))?;
    dir.write("spec.toml", spec(&server.url(), &names));
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
        server: &server,
        jobs: jobs.clone(),
        runs: 0,
    };
    let apt = Apt {
        repo: &repo,
        server: &server,
        names,
    };

    eprintln!("== untimed warm-up of both");
    ferry.cold_and_warm()?;
    apt.update_and_download()?;

    let (mut cold, mut warm, mut apt_total, mut apt_update, mut apt_download) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut cold_traffic, mut warm_traffic, mut apt_traffic) = Default::default();
    for i in 0..runs {
        // Alternate which side goes first.
        let order = if i % 2 == 0 {
            ["ferry", "apt"]
        } else {
            ["apt", "ferry"]
        };
        for side in order {
            if side == "ferry" {
                let (c, ct, w, wt) = ferry.cold_and_warm()?;
                eprintln!(
                    "== run {}: ferry cold {:.3} s, warm {:.3} s",
                    i + 1,
                    secs(c),
                    secs(w)
                );
                cold.push(secs(c));
                warm.push(secs(w));
                (cold_traffic, warm_traffic) = (ct, wt);
            } else {
                let (u, d, t) = apt.update_and_download()?;
                eprintln!(
                    "== run {}: apt update {:.3} s, download {:.3} s",
                    i + 1,
                    secs(u),
                    secs(d)
                );
                apt_update.push(secs(u));
                apt_download.push(secs(d));
                apt_total.push(secs(u + d));
                apt_traffic = t;
            }
        }
    }

    let (cold, warm) = (median(&cold), median(&warm));
    let (total, update, download) = (
        median(&apt_total),
        median(&apt_update),
        median(&apt_download),
    );
    let ratio = cold / total;
    let verdict = if ratio <= TARGET { "PASS" } else { "MISS" };
    let jobs = jobs.unwrap_or_else(|| "8 (default)".into());
    let shown = |t: Traffic| {
        format!(
            "{} requests ({} .deb) on {} connection(s)",
            t.requests, t.debs, t.connections
        )
    };
    println!(
        "ferry vs apt benchmark ({count} packages x {bytes} bytes incompressible, {latency_ms} ms latency per request, median of {runs})"
    );
    println!(
        "ferry-build build, cold cache:  {cold:6.3} s   --jobs {jobs}; {}",
        shown(cold_traffic)
    );
    println!(
        "ferry-build build, warm cache:  {warm:6.3} s   {}",
        shown(warm_traffic)
    );
    println!(
        "apt-get update + download:      {total:6.3} s   {}",
        shown(apt_traffic)
    );
    println!("  apt-get update:               {update:6.3} s");
    println!("  apt-get download:             {download:6.3} s");
    println!(
        "ratio ferry cold / apt update+download: {ratio:.2} (target <= {TARGET:.2})  {verdict}"
    );
    Ok(())
}
