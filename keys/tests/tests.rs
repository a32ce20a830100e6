//! Integration tests for `ferry-keys`, through its public API only: interoperability
//! with the real `minisign` binary, and trust stores with threshold counting.

mod minisign;
mod trust;
mod util;
