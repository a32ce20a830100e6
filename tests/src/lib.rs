//! Test support for ferry's end-to-end tests: temp dirs, the built binaries, a command
//! runner, and a "forge" that writes tar archives byte by byte so hostile bundles can be
//! made on purpose. Everything runs for real on this machine; nothing is mocked.

pub mod apt_repo;
pub mod bench;
pub mod bundle;
pub mod dpkg_root;
pub mod fake_mongo;
pub mod forge;
pub mod http;
pub mod oci_image;
pub mod postgres_server;
pub mod redis_server;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of a workspace binary. `cargo test --workspace` builds them (the builder and
/// installer crates have integration tests, which makes cargo build their binaries).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// Fail (never skip) when a system tool is missing, naming the Debian package.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{tool} is not installed: install the Debian package {package} (apt-get install -y {package}); .ci/run does this");
}

/// A temporary directory removed at drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A fresh directory.
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("ferry-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a file (creating parent directories).
    pub fn write(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Every path below the directory with its size and modification time: compare two
    /// snapshots to prove an operation wrote nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u64, i64)> {
        snapshot(self.path())
    }
}

/// Every path below `root` (not following links) with size and mtime.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            out.insert(
                p.clone(),
                (meta.len(), meta.mtime_nsec() + meta.mtime() * 1_000_000_000),
            );
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The result of running a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Assert success and return self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Assert a specific exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit code {code}:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Assert stderr mentions `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Assert stdout mentions `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }
}

/// Run `program args...` in `cwd` with extra environment, stdin closed.
pub fn run_in(cwd: &Path, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    cmd.env_remove("FERRY_PASSPHRASE")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display())),
    )
}

/// Run `ferry-build`.
pub fn ferry_build(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_in(cwd, &bin("ferry-build"), args, env)
}

/// Run `ferry-install`.
pub fn ferry_install(cwd: &Path, args: &[&str]) -> Run {
    run_in(cwd, &bin("ferry-install"), args, &[])
}

/// Run a command with bytes on stdin.
pub fn run_with_stdin(
    cwd: &Path,
    program: &Path,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Run {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("FERRY_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // The program may exit without reading its input: a broken pipe is not an error.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    Run::from(child.wait_with_output().unwrap())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for tests.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
