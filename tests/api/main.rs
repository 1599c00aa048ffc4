//! Integration tests: the real server on loopback over a real SQLite file.

mod auth;
mod check_kinds;
mod checks;
mod credentials;
mod errors;
mod fake_provider;
mod helpers;
mod ledger;
mod openapi;
#[path = "../common/projections.rs"]
mod projections;
mod security;
mod users;
