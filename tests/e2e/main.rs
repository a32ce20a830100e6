//! End-to-end tests: the real binaries, real files, real `minisign`.

mod hostile;
mod apt;
mod interop;
mod properties;
mod roundtrip;
