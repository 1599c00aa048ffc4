//! Settings and the limits that several layers read.

use std::path::PathBuf;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long exchanges with providers stay visible (`/events`) and stored (retention).
pub const EVENTS_WINDOW_DAYS: i64 = 30;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub bind: String,
    /// The SQLite file; its folder is created if missing.
    pub database: PathBuf,
    pub store: crate::store::StoreOptions,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// The background credential checks.
    pub checks: crate::checks::CheckSettings,
    /// Where the master keys that wrap credential data keys come from.
    pub master_key: crate::app::crypto::KeySource,
    /// Never show secret fields in answers (they read `********`).
    pub mask_secrets: bool,
    pub rate_limits: crate::http::limits::RateLimits,
}
