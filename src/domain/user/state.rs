//! What a user stream folds to, and the commands and refusals of the aggregate.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::domain::event::{IssuedTokens, UserProfile};
use crate::domain::{CredentialId, CredentialStatus, OwnerId, Provider, Timestamp, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct CredentialState {
    pub id: CredentialId,
    pub status: CredentialStatus,
    pub fields: Map<String, Value>,
    pub created_at: Timestamp,
    /// When the next background check is due; none while it waits for a replacement or a
    /// requested check (after `UNAUTHENTICATED`).
    pub next_check_at: Option<Timestamp>,
    pub consecutive_failures: u32,
}

/// What a background check of a credential found.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub status: CredentialStatus,
    pub tokens: Option<IssuedTokens>,
    /// Why, in a few words (e.g. `invalid_grant`, `timeout`).
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LiveUser {
    pub id: UserId,
    pub owner_id: OwnerId,
    pub profile: UserProfile,
    pub credentials: BTreeMap<Provider, CredentialState>,
}

/// What a user stream folds to: nothing yet, a live user, or a deleted one.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum UserState {
    #[default]
    Absent,
    Live(LiveUser),
    Deleted,
}

impl UserState {
    /// The user, if it exists and belongs to `owner`: another owner's user is indistinguishable
    /// from one that does not exist.
    pub fn owned_by(&self, owner: OwnerId) -> Option<&LiveUser> {
        match self {
            UserState::Live(user) if user.owner_id == owner => Some(user),
            _ => None,
        }
    }
}

/// A credential about to be stored; its id is chosen by the caller so `decide` stays pure.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCredential {
    pub id: CredentialId,
    pub provider: Provider,
    pub fields: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub enum UserCommand {
    Create {
        user_id: UserId,
        owner_id: OwnerId,
        profile: UserProfile,
        credentials: Vec<NewCredential>,
        at: Timestamp,
    },
    Update {
        owner_id: OwnerId,
        profile: UserProfile,
    },
    /// No check of the credential is possible with this configuration; says why.
    ParkCheck {
        credential_id: CredentialId,
        provider: Provider,
        reason: String,
    },
    /// Profile fields to change, by JSON name: a string sets one, null clears it; the fields
    /// not named keep their values.
    Patch {
        owner_id: OwnerId,
        changes: serde_json::Map<String, serde_json::Value>,
    },
    Delete {
        owner_id: OwnerId,
    },
    /// POST of a credential: creates it, or replaces the existing one unless `create_only`.
    SaveCredential {
        owner_id: OwnerId,
        credential: NewCredential,
        create_only: bool,
        at: Timestamp,
    },
    DeleteCredential {
        owner_id: OwnerId,
        provider: Provider,
    },
    /// A background check's result for one credential: rotated tokens, status and next check.
    /// Refused (`StaleCredential`) if the credential was replaced or deleted meanwhile.
    RecordCheck {
        credential_id: CredentialId,
        provider: Provider,
        result: CheckResult,
        now: Timestamp,
    },
    /// `POST …/check`: check now (nothing to do if a check is already due).
    RequestCheck {
        owner_id: OwnerId,
        provider: Provider,
        now: Timestamp,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no such user")]
    UserNotFound,
    #[error("this user already exists")]
    UserExists,
    #[error("the user has no {} credentials", .0.spec().name)]
    NoCredential(Provider),
    #[error("the user already has {} credentials", .0.spec().name)]
    CredentialExists(Provider),
    #[error("the credential was replaced or deleted")]
    StaleCredential,
    #[error("profile fields are text or null")]
    InvalidProfile,
}
