//! credential-ledger: a self-hosted, Leaf-compatible provider-credential service on an
//! event-sourced SQLite ledger.

pub mod api;
pub mod cli;
pub mod crypto;
pub mod domain;
pub mod health;
pub mod ledger;
pub mod openapi;
pub mod providers;
pub mod startup;
pub mod store;
pub mod telemetry;
