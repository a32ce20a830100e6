//! The `ferry-install` binary starts, and the installer links no network or TLS code.
//! (Having an integration test here also makes `cargo test --workspace` build the binary
//! the end-to-end tests run.)

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[test]
fn help_and_version() {
    let bin = env!("CARGO_BIN_EXE_ferry-install");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in ["verify", "inspect", "--root", "--config"] {
        assert!(text.contains(needle), "{text}");
    }
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ferry-install {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Walk the committed Cargo.lock from ferry-installer: the closure must not contain an
/// HTTP client or a TLS stack. (The lock graph is a superset of what is compiled, so
/// this errs on the side of refusing.)
#[test]
fn installer_links_no_tls_or_http_client() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(lock_path).unwrap()).unwrap();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pkg in lock["package"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap().to_string();
        let list = pkg
            .get("dependencies")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        deps.entry(name).or_default().extend::<Vec<String>>(list);
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec!["ferry-installer".to_string()];
    while let Some(name) = stack.pop() {
        if seen.insert(name.clone()) {
            stack.extend(deps.get(&name).cloned().unwrap_or_default());
        }
    }
    assert!(seen.len() > 5, "dependency walk found too little: {seen:?}");
    let forbidden = [
        "reqwest",
        "hyper",
        "rustls",
        "native-tls",
        "openssl",
        "openssl-sys",
        "oci-client",
        "h2",
        "ureq",
        "curl",
    ];
    for f in forbidden {
        assert!(!seen.contains(f), "ferry-installer depends on {f}");
    }
}
