//! A STAND-IN for MongoDB's `mongodump` and `mongorestore`: MongoDB cannot be installed
//! on the test machines, so these are shell scripts, not the real tools. They check
//! nothing about MongoDB; they only show what ferry hands to the tools.
//!
//! Both scripts live in a temporary bin directory (put it first on the search path
//! given to `backup_with_path`/`restore_with_path`). `--version` prints
//! [`STAND_IN_VERSION`] (`mongodump ...`, `mongorestore ...`). Otherwise each script
//! records into the state directory its argv (one argument per line), the mode of the
//! `--config` file and of its directory, and the config file's contents; then
//! `mongodump` writes a small gzip archive to `--archive` and `mongorestore` reads one
//! (decompressing it into `mongorestore.restored`). Either can be told to fail with a
//! given stderr and exit code, and `mongodump` to write an empty archive.

use crate::{require_tool, TestDir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// What the stand-in `mongodump --version` prints.
pub const STAND_IN_VERSION: &str =
    "mongodump stand-in (fake, ferry tests: MongoDB cannot be installed here)";

/// The uncompressed content of every archive the stand-in `mongodump` writes.
pub const ARCHIVE_CONTENT: &str = "ferry test stand-in: not a real mongodump archive\n";

/// The two tools.
pub const TOOLS: [&str; 2] = ["mongodump", "mongorestore"];

const SCRIPT: &str = r#"#!/bin/sh
# STAND-IN for @TOOL@ (fake, ferry tests: MongoDB cannot be installed here).
state='@STATE@'
tool='@TOOL@'
if [ "$1" = "--version" ]; then
    echo "$tool stand-in (fake, ferry tests: MongoDB cannot be installed here)"
    exit 0
fi
: > "$state/$tool.argv"
for a in "$@"; do
    printf '%s\n' "$a" >> "$state/$tool.argv"
done
cfg=
archive=
for a in "$@"; do
    case "$a" in
        --config=*) cfg=${a#--config=} ;;
        --archive=*) archive=${a#--archive=} ;;
    esac
done
if [ -n "$cfg" ]; then
    stat -c %a "$cfg" > "$state/$tool.config-mode"
    stat -c %a "$(dirname "$cfg")" > "$state/$tool.config-dir-mode"
    cat "$cfg" > "$state/$tool.config"
fi
if [ -f "$state/$tool.fail" ]; then
    cat "$state/$tool.fail" >&2
    exit "$(cat "$state/$tool.fail-code")"
fi
case "$tool" in
    mongodump)
        if [ -f "$state/empty-archive" ]; then
            : > "$archive"
        else
            printf '%s' '@CONTENT@' | gzip -c > "$archive" || exit 1
        fi
        ;;
    mongorestore)
        if ! gzip -dc "$archive" > "$state/mongorestore.restored"; then
            echo "$tool stand-in: cannot read $archive" >&2
            exit 1
        fi
        ;;
esac
echo "$tool stand-in: done" >&2
exit 0
"#;

/// The stand-in tools and their record of what they were given.
pub struct FakeMongoTools {
    dir: TestDir,
}

impl Default for FakeMongoTools {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeMongoTools {
    /// Write the scripts into a fresh temporary directory.
    pub fn new() -> FakeMongoTools {
        require_tool("gzip", "gzip");
        require_tool("stat", "coreutils");
        let dir = TestDir::new();
        std::fs::create_dir(dir.join("bin")).unwrap();
        std::fs::create_dir(dir.join("state")).unwrap();
        let state = dir.join("state");
        let state = state.to_str().expect("UTF-8 temp path");
        assert!(!state.contains('\''), "{state}");
        for tool in TOOLS {
            let path = dir.join("bin").join(tool);
            let script = SCRIPT
                .replace("@STATE@", state)
                .replace("@TOOL@", tool)
                .replace("@CONTENT@", ARCHIVE_CONTENT);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        FakeMongoTools { dir }
    }

    /// The directory holding the stand-in `mongodump` and `mongorestore`.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// [`FakeMongoTools::bin_dir`] followed by this process's `PATH`.
    pub fn search_path(&self) -> OsString {
        let mut dirs = vec![self.bin_dir()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap()
    }

    /// Make `tool` print `stderr` and exit with `code` (after recording its argv).
    pub fn fail(&self, tool: &str, stderr: &str, code: i32) {
        std::fs::write(self.state(&format!("{tool}.fail")), stderr).unwrap();
        std::fs::write(self.state(&format!("{tool}.fail-code")), code.to_string()).unwrap();
    }

    /// Make `mongodump` succeed but write an empty archive.
    pub fn write_empty_archive(&self) {
        std::fs::write(self.state("empty-archive"), "").unwrap();
    }

    /// Whether `tool` ran (other than `--version`).
    pub fn ran(&self, tool: &str) -> bool {
        self.state(&format!("{tool}.argv")).exists()
    }

    /// The arguments `tool` was last run with.
    pub fn argv(&self, tool: &str) -> Vec<String> {
        self.read(&format!("{tool}.argv"))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The path `tool` got as `--config=`.
    pub fn config_path(&self, tool: &str) -> PathBuf {
        self.argv(tool)
            .iter()
            .find_map(|a| a.strip_prefix("--config=").map(PathBuf::from))
            .unwrap_or_else(|| panic!("{tool} got no --config"))
    }

    /// The mode of the `--config` file when `tool` ran, e.g. `0o600`.
    pub fn config_mode(&self, tool: &str) -> u32 {
        u32::from_str_radix(self.read(&format!("{tool}.config-mode")).trim(), 8).unwrap()
    }

    /// The mode of the directory holding the `--config` file when `tool` ran.
    pub fn config_dir_mode(&self, tool: &str) -> u32 {
        u32::from_str_radix(self.read(&format!("{tool}.config-dir-mode")).trim(), 8).unwrap()
    }

    /// The contents of the `--config` file when `tool` ran.
    pub fn config(&self, tool: &str) -> String {
        self.read(&format!("{tool}.config"))
    }

    /// What `mongorestore` decompressed from its `--archive`.
    pub fn restored(&self) -> String {
        self.read("mongorestore.restored")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(name)
    }

    fn read(&self, name: &str) -> String {
        let path = self.state(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (did the stand-in run?)", path.display()))
    }
}
