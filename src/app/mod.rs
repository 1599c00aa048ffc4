//! The application: what handlers, the check worker and the CLI call. It runs commands through
//! the pure domain onto the ledger (`commands`), answers queries from the read model
//! (`queries`), keeps secrets sealed at rest (`secrets`, `crypto`) and authenticates API
//! owners (`auth`). It holds its storage as an `Arc<dyn Store>`, whatever the backend.

pub mod auth;
pub mod commands;
pub mod crypto;
pub mod queries;
pub mod secrets;

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::owner::OwnerError;
use crate::domain::user::UserError;
use crate::domain::{Clock, Provider, Timestamp};
use crate::store::{CredentialView, SharedStore, StoreError};

pub use secrets::Secrets;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Our fault (a key that does not decrypt, a hashing failure): logged with its cause chain.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// Too much of a bounded kind of work is already waiting (password checks): try later.
    #[error("too many {0} in progress")]
    Busy(&'static str),
}

/// The application services, cheap to clone (every part is shared).
#[derive(Clone)]
pub struct Service {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    secrets: Secrets,
    checks_wanted: Arc<tokio::sync::Notify>,
    tokens: Arc<auth::TokenCache>,
    states: Arc<commands::StateCache>,
    user_locks: Arc<commands::UserLocks>,
    /// Why credentials of a provider are not checked with this configuration; providers absent
    /// here are checked.
    unchecked: Arc<HashMap<Provider, String>>,
}

impl Service {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, secrets: Secrets) -> Self {
        Self {
            store,
            clock,
            secrets,
            checks_wanted: Arc::new(tokio::sync::Notify::new()),
            tokens: Arc::default(),
            states: Arc::default(),
            user_locks: Arc::default(),
            unchecked: Arc::default(),
        }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The service, telling answers why credentials of these providers are never checked
    /// (with this configuration).
    pub fn with_unchecked(mut self, unchecked: HashMap<Provider, String>) -> Self {
        self.unchecked = Arc::new(unchecked);
        self
    }

    /// The credential as an answer shows it: secrets opened (or masked), and a reason for its
    /// status even before any check: why it is never checked, or that it has not been yet.
    pub fn reveal(&self, view: CredentialView) -> Result<CredentialView, AppError> {
        let mut view = self.secrets.reveal(view)?;
        if view.last_checked_at.is_none() && view.status_reason.is_none() {
            view.status_reason = Some(match self.unchecked.get(&view.provider) {
                Some(why) => format!("not checked: {why}"),
                None => "not checked yet: the status is the one every new credential starts with"
                    .to_owned(),
            });
        }
        Ok(view)
    }

    /// Notified whenever a command makes a credential due for a check (created, replaced,
    /// check requested), so the check worker need not wait for its next tick.
    pub fn checks_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.checks_wanted.clone()
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
