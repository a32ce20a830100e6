//! Copies `builder/src/main.rs` and `installer/src/main.rs` into `OUT_DIR` in a form
//! that `include!` accepts inside a module of this crate: inner attributes and `//!`
//! docs become plain comments, a `mod NAME;` gets a `#[path]` back to the binary's own
//! source directory, and `crate::` paths are re-rooted at that module. (A submodule
//! file of a binary that says `crate::` is not rewritten: this crate then fails to
//! compile, loudly.)

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.join("../..");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for (crate_dir, name) in [("builder", "ferry_build"), ("installer", "ferry_install")] {
        let src_dir = workspace.join(crate_dir).join("src");
        let main = src_dir.join("main.rs");
        println!("cargo:rerun-if-changed={}", main.display());
        let text =
            std::fs::read_to_string(&main).unwrap_or_else(|e| panic!("{}: {e}", main.display()));
        std::fs::write(
            out.join(format!("{name}.rs")),
            rewrite(&text, &src_dir, name),
        )
        .unwrap();
    }
}

fn rewrite(text: &str, src_dir: &Path, module: &str) -> String {
    let crate_path = format!("crate::{module}::");
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("//!") {
            out.push_str("//");
            out.push_str(rest);
        } else if trimmed.starts_with("#![") {
            out.push_str("// ");
            out.push_str(line);
        } else if let Some(module) = module_declaration(trimmed) {
            let file = [format!("{module}.rs"), format!("{module}/mod.rs")]
                .into_iter()
                .map(|f| src_dir.join(f))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("module {module} of {}", src_dir.display()));
            println!("cargo:rerun-if-changed={}", file.display());
            out.push_str(&format!(
                "#[path = {:?}] {line}",
                file.display().to_string()
            ));
        } else {
            out.push_str(&line.replace("crate::", &crate_path));
        }
        out.push('\n');
    }
    out
}

/// `NAME` of a line `mod NAME;` or `pub mod NAME;` (any visibility).
fn module_declaration(line: &str) -> Option<&str> {
    let line = line.strip_suffix(';')?;
    let at = line.find("mod ")?;
    let (vis, rest) = line.split_at(at);
    if !(vis.is_empty() || vis.trim_end().starts_with("pub")) {
        return None;
    }
    let name = rest["mod ".len()..].trim();
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}
