//! The Leaf user aggregate: a user and the credentials it holds, at most one per provider.
//! One stream per user (`user:{id}`), so every change to a user or its credentials is
//! decided against the whole of it and appended with the version it was decided on.
//!
//! `state` is what a stream folds to and what commands ask; `decide` turns a command into
//! events; `evolve` folds an event into the state; `schedule` says when a credential is
//! checked next.

mod decide;
mod evolve;
mod schedule;
mod state;
#[cfg(test)]
mod tests;

pub use decide::decide;
pub use evolve::{apply_tokens, evolve};
pub use schedule::*;
pub use state::*;

use super::UserId;

pub fn stream_id(user_id: UserId) -> String {
    format!("user:{user_id}")
}
