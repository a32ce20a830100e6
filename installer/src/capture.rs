//! Rollback packages captured before dpkg runs (being written).
