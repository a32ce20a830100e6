//! Helpers shared by the benchmark binaries (`apt-bench`, `oci-bench`): failures that
//! end the run, numeric settings from the environment, finding `ferry-build`, timing.

use crate::Run;
use std::path::PathBuf;
use std::time::Duration;

/// A command failed: the message to print before exiting non-zero.
pub struct Failure(pub String);

pub type Result<T> = std::result::Result<T, Failure>;

pub fn env_number(name: &str, default: u64, min: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(Failure(format!(
                "{name} must be an integer >= {min} (got {v:?})"
            ))),
        },
    }
}

/// `FERRY_BUILD`, else `ferry-build` in this executable's directory.
pub fn ferry_build_path() -> Result<PathBuf> {
    let path = match std::env::var_os("FERRY_BUILD").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| Failure(format!("cannot find this executable: {e}")))?
            .parent()
            .map(|d| d.join("ferry-build"))
            .ok_or_else(|| Failure("this executable has no directory".into()))?,
    };
    if !path.is_file() {
        return Err(Failure(format!(
            "{} is missing: run `cargo build --release -p ferry-builder` (the bench/ scripts do), or set FERRY_BUILD",
            path.display()
        )));
    }
    std::fs::canonicalize(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

pub fn check(what: &str, run: Run) -> Result<Run> {
    if run.code == 0 {
        return Ok(run);
    }
    Err(Failure(format!(
        "{what} failed with exit code {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    )))
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
