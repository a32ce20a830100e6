//! postgres backups (being written).
