//! redis backups (being written).
