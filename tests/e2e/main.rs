//! End-to-end tests: the real binaries, real files, real `minisign`.

mod hostile;
mod interop;
mod properties;
mod roundtrip;
