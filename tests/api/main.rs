//! Integration tests: the real server on loopback over a real SQLite file.

mod auth;
mod credentials;
mod errors;
mod helpers;
mod ledger;
mod openapi;
mod users;
