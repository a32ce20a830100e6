//! Shared test helpers: a temp directory and a `minisign` command runner.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ferry_keys::KeyId;

/// A temporary directory that also serves as `HOME` for `minisign`, so it never
/// touches the real `~/.minisign`.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read test file")
    }

    /// Runs `minisign` in this directory with `stdin` piped in (not a terminal, so
    /// minisign reads passwords from it).
    pub fn minisign(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(minisign_binary())
            .args(args)
            .current_dir(self.root())
            .env("HOME", self.root())
            .env_remove("MINISIGN_CONFIG_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn minisign");
        // minisign may exit without reading stdin (an unencrypted key needs no
        // password): a broken pipe here is not an error.
        let written = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes());
        if let Err(e) = written {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write minisign stdin: {e}"
            );
        }
        child.wait_with_output().expect("wait for minisign")
    }

    /// Like [`TestDir::minisign`], failing the test (with minisign's output) unless it
    /// succeeds; returns stdout.
    pub fn minisign_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.minisign(args, stdin);
        assert!(
            out.status.success(),
            "minisign {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        String::from_utf8(out.stdout).expect("minisign output is UTF-8")
    }
}

/// The `minisign` binary. A missing binary fails the test; it never skips.
pub fn minisign_binary() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("minisign"))
                .collect()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin/minisign")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("minisign not found on PATH or at /usr/bin/minisign: install the Debian package minisign (apt-get install minisign)")
        })
}

/// Rewrites the key id inside a `.minisig` text (line 2, bytes 2..10), leaving the
/// signature bytes alone: a forgery claiming to come from `id`.
pub fn with_key_id(sig_text: &str, id: KeyId) -> String {
    let mut lines: Vec<String> = sig_text.lines().map(str::to_owned).collect();
    let mut bytes = STANDARD.decode(&lines[1]).expect("base64");
    bytes[2..10].copy_from_slice(&id.0);
    lines[1] = STANDARD.encode(&bytes);
    lines.join("\n") + "\n"
}

/// Decodes line 2 of a key file.
pub fn payload(text: &str) -> Vec<u8> {
    STANDARD
        .decode(text.lines().nth(1).expect("line 2"))
        .expect("base64")
}
