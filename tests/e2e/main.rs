//! End-to-end tests: the real binaries, real files, real `minisign`.

mod apply;
mod apt;
mod backup_cli;
mod backup_db;
mod backup_redis;
mod capture;
mod hostile;
mod images;
mod interop;
mod properties;
mod repo_export;
mod roundtrip;
