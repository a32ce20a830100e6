//! End-to-end tests: the real binaries, real files, real `minisign`.

mod apt;
mod hostile;
mod images;
mod interop;
mod properties;
mod roundtrip;
