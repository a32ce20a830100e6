//! mongodb backups (being written).
