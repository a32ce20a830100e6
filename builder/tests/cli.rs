//! The `ferry-build` binary starts and describes itself. (Having an integration test
//! here also makes `cargo test --workspace` build the binary the end-to-end tests run.)

use std::process::Command;

#[test]
fn help_and_version() {
    let bin = env!("CARGO_BIN_EXE_ferry-build");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["key", "build", "sign"] {
        assert!(text.contains(cmd), "{text}");
    }
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ferry-build {}", env!("CARGO_PKG_VERSION"))
    );
}
