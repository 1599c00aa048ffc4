//! credential-ledger: a self-hosted, Leaf-compatible provider-credential service on an
//! event-sourced ledger.
//!
//! Layers, each depending only on those below it: `http` (handlers, the OpenAPI document) and
//! `checks` (the background credential checks) call `app` (commands, queries, secrets,
//! owners), which runs the pure `domain` and keeps its ledger in a `store` (traits, with the
//! SQLite implementation in `store::sqlite`). `config` holds settings; `startup` and `cli`
//! wire it all together.

pub mod app;
pub mod checks;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod startup;
pub mod store;
pub mod telemetry;
