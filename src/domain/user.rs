//! The Leaf user aggregate: a user and the credentials it holds, at most one per provider.
//! One stream per user (`user:{id}`), so every change to a user or its credentials is
//! decided against the whole of it and appended with the version it was decided on.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::event::{IssuedTokens, UserProfile};
use super::{CredentialId, CredentialStatus, DomainEvent, OwnerId, Provider, Timestamp, UserId};

pub fn stream_id(user_id: UserId) -> String {
    format!("user:{user_id}")
}

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

/// Checks of a valid credential are at most this far apart.
pub const MAX_CHECK_INTERVAL_HOURS: i64 = 24;
/// A valid credential is checked this long before its access token expires.
pub const REFRESH_MARGIN_MINUTES: i64 = 5;
/// After a provider failure the next check waits 1, 2, 4, … minutes, at most an hour.
pub const BACKOFF_BASE_SECS: i64 = 60;
pub const BACKOFF_MAX_SECS: i64 = 3600;

/// When to check again after `result`, and the new count of consecutive provider failures.
pub fn next_check(result: &CheckResult, failures: u32, now: Timestamp) -> (Option<Timestamp>, u32) {
    use chrono::Duration;
    let daily = now.plus(Duration::hours(MAX_CHECK_INTERVAL_HOURS));
    match result.status {
        CredentialStatus::Ok => {
            let before_expiry = result
                .tokens
                .as_ref()
                .and_then(|t| t.expires_at)
                .map(|at| at.minus(Duration::minutes(REFRESH_MARGIN_MINUTES)))
                .unwrap_or(daily);
            let next = before_expiry.min(daily).max(now.plus(Duration::minutes(1)));
            (Some(next), 0)
        }
        CredentialStatus::TemporarilyUnavailable => {
            let wait = BACKOFF_BASE_SECS
                .saturating_mul(1 << failures.min(16))
                .min(BACKOFF_MAX_SECS);
            (Some(now.plus(Duration::seconds(wait))), failures + 1)
        }
        // Permissions may be granted later: look again daily.
        CredentialStatus::MissingPermission => (Some(daily), 0),
        // Not hammered: only a replacement or a requested check brings it back.
        CredentialStatus::Unauthenticated => (None, 0),
    }
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
}

pub fn decide(state: &UserState, command: UserCommand) -> Result<Vec<DomainEvent>, UserError> {
    use DomainEvent as E;
    match command {
        UserCommand::Create {
            user_id,
            owner_id,
            profile,
            credentials,
            at,
        } => {
            if *state != UserState::Absent {
                return Err(UserError::UserExists);
            }
            let mut events = vec![E::UserCreated {
                user_id,
                owner_id,
                profile,
                created_at: at,
            }];
            events.extend(credentials.into_iter().map(|c| E::CredentialCreated {
                user_id,
                credential_id: c.id,
                provider: c.provider,
                fields: c.fields,
                created_at: at,
            }));
            Ok(events)
        }
        UserCommand::Update { owner_id, profile } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            if user.profile == profile {
                return Ok(vec![]);
            }
            Ok(vec![E::UserUpdated {
                user_id: user.id,
                profile,
            }])
        }
        UserCommand::Delete { owner_id } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            Ok(vec![E::UserDeleted { user_id: user.id }])
        }
        UserCommand::SaveCredential {
            owner_id,
            credential,
            create_only,
            at,
        } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            let NewCredential {
                id,
                provider,
                fields,
            } = credential;
            match user.credentials.get(&provider) {
                None => Ok(vec![E::CredentialCreated {
                    user_id: user.id,
                    credential_id: id,
                    provider,
                    fields,
                    created_at: at,
                }]),
                Some(_) if create_only => Err(UserError::CredentialExists(provider)),
                Some(old) => Ok(vec![E::CredentialReplaced {
                    user_id: user.id,
                    replaced_credential_id: old.id,
                    credential_id: id,
                    provider,
                    fields,
                    created_at: at,
                }]),
            }
        }
        UserCommand::DeleteCredential { owner_id, provider } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            let old = user
                .credentials
                .get(&provider)
                .ok_or(UserError::NoCredential(provider))?;
            Ok(vec![E::CredentialDeleted {
                user_id: user.id,
                credential_id: old.id,
                provider,
            }])
        }
        UserCommand::RecordCheck {
            credential_id,
            provider,
            result,
            now,
        } => {
            let UserState::Live(user) = state else {
                return Err(UserError::StaleCredential);
            };
            let current = current_credential(user, provider, credential_id)?;
            let user_id = user.id;
            let mut events = Vec::new();
            if let Some(tokens) = result.tokens.clone() {
                events.push(E::CredentialTokensRotated {
                    user_id,
                    credential_id,
                    provider,
                    tokens,
                });
            }
            if current.status != result.status {
                events.push(E::CredentialStatusChanged {
                    user_id,
                    credential_id,
                    provider,
                    status: result.status,
                    reason: Some(result.reason.clone()),
                });
            }
            let (next_check_at, consecutive_failures) =
                next_check(&result, current.consecutive_failures, now);
            events.push(E::CredentialChecked {
                user_id,
                credential_id,
                provider,
                next_check_at,
                consecutive_failures,
            });
            Ok(events)
        }
        UserCommand::RequestCheck {
            owner_id,
            provider,
            now,
        } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            let current = user
                .credentials
                .get(&provider)
                .ok_or(UserError::NoCredential(provider))?;
            if current.next_check_at.is_some_and(|due| due <= now) {
                return Ok(vec![]);
            }
            Ok(vec![E::CredentialCheckRequested {
                user_id: user.id,
                credential_id: current.id,
                provider,
                at: now,
            }])
        }
    }
}

/// The credential `credential_id` if it is still the user's live one for `provider`.
pub fn current_credential(
    user: &LiveUser,
    provider: Provider,
    credential_id: CredentialId,
) -> Result<&CredentialState, UserError> {
    user.credentials
        .get(&provider)
        .filter(|c| c.id == credential_id)
        .ok_or(UserError::StaleCredential)
}

/// Puts freshly issued tokens into a credential's fields (shared with the projection).
pub fn apply_tokens(fields: &mut Map<String, Value>, tokens: &IssuedTokens) {
    fields.insert(
        "accessToken".into(),
        Value::String(tokens.access_token.clone()),
    );
    if let Some(refresh) = &tokens.refresh_token {
        fields.insert("refreshToken".into(), Value::String(refresh.clone()));
    }
    fields.insert("scopes".into(), serde_json::json!(tokens.scopes));
    match tokens.expires_at {
        Some(at) => fields.insert("accessTokenExpiresAt".into(), Value::String(at.to_string())),
        None => fields.remove("accessTokenExpiresAt"),
    };
}

pub fn evolve(state: UserState, event: &DomainEvent) -> UserState {
    use DomainEvent as E;
    let mut user = match (state, event) {
        (
            _,
            E::UserCreated {
                user_id,
                owner_id,
                profile,
                ..
            },
        ) => {
            return UserState::Live(LiveUser {
                id: *user_id,
                owner_id: *owner_id,
                profile: profile.clone(),
                credentials: BTreeMap::new(),
            })
        }
        (_, E::UserDeleted { .. }) => return UserState::Deleted,
        (UserState::Live(user), _) => user,
        (other, _) => return other,
    };
    match event {
        E::UserUpdated { profile, .. } => user.profile = profile.clone(),
        E::CredentialCreated {
            credential_id,
            provider,
            fields,
            created_at,
            ..
        }
        | E::CredentialReplaced {
            credential_id,
            provider,
            fields,
            created_at,
            ..
        } => {
            user.credentials.insert(
                *provider,
                CredentialState {
                    id: *credential_id,
                    status: CredentialStatus::Ok,
                    fields: fields.clone(),
                    created_at: *created_at,
                    next_check_at: Some(*created_at),
                    consecutive_failures: 0,
                },
            );
        }
        E::CredentialDeleted { provider, .. } => {
            user.credentials.remove(provider);
        }
        E::CredentialStatusChanged {
            provider, status, ..
        } => {
            if let Some(credential) = user.credentials.get_mut(provider) {
                credential.status = *status;
            }
        }
        E::CredentialTokensRotated {
            provider, tokens, ..
        } => {
            if let Some(credential) = user.credentials.get_mut(provider) {
                apply_tokens(&mut credential.fields, tokens);
            }
        }
        E::CredentialChecked {
            provider,
            next_check_at,
            consecutive_failures,
            ..
        } => {
            if let Some(credential) = user.credentials.get_mut(provider) {
                credential.next_check_at = *next_check_at;
                credential.consecutive_failures = *consecutive_failures;
            }
        }
        E::CredentialCheckRequested { provider, at, .. } => {
            if let Some(credential) = user.credentials.get_mut(provider) {
                credential.next_check_at = Some(*at);
            }
        }
        _ => {}
    }
    UserState::Live(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Given {
        owner: OwnerId,
        user: UserId,
        state: UserState,
    }

    fn at() -> Timestamp {
        Timestamp::parse("2026-11-01T00:00:00Z").unwrap()
    }

    fn fields(token: &str) -> Map<String, Value> {
        json!({"clientId": "id", "clientSecret": "s", "refreshToken": token})
            .as_object()
            .unwrap()
            .clone()
    }

    fn given(events: &[DomainEvent]) -> UserState {
        events.iter().fold(UserState::default(), evolve)
    }

    fn a_user() -> Given {
        let (owner, user) = (OwnerId::new(), UserId::new());
        let state = given(&[DomainEvent::UserCreated {
            user_id: user,
            owner_id: owner,
            profile: UserProfile::default(),
            created_at: at(),
        }]);
        Given { owner, user, state }
    }

    fn with_raven(g: &Given, id: CredentialId) -> UserState {
        evolve(
            g.state.clone(),
            &DomainEvent::CredentialCreated {
                user_id: g.user,
                credential_id: id,
                provider: Provider::Raven,
                fields: fields("r1"),
                created_at: at(),
            },
        )
    }

    fn save(owner: OwnerId, id: CredentialId, create_only: bool) -> UserCommand {
        UserCommand::SaveCredential {
            owner_id: owner,
            credential: NewCredential {
                id,
                provider: Provider::Raven,
                fields: fields("r2"),
            },
            create_only,
            at: at(),
        }
    }

    #[test]
    fn given_a_user_without_raven_when_saved_then_created() {
        let g = a_user();
        let id = CredentialId::new();
        assert_eq!(
            decide(&g.state, save(g.owner, id, false)),
            Ok(vec![DomainEvent::CredentialCreated {
                user_id: g.user,
                credential_id: id,
                provider: Provider::Raven,
                fields: fields("r2"),
                created_at: at(),
            }])
        );
    }

    #[test]
    fn given_raven_when_saved_again_then_replaced() {
        let g = a_user();
        let (old, new) = (CredentialId::new(), CredentialId::new());
        let state = with_raven(&g, old);
        assert_eq!(
            decide(&state, save(g.owner, new, false)),
            Ok(vec![DomainEvent::CredentialReplaced {
                user_id: g.user,
                replaced_credential_id: old,
                credential_id: new,
                provider: Provider::Raven,
                fields: fields("r2"),
                created_at: at(),
            }])
        );
    }

    #[test]
    fn given_raven_when_saved_create_only_then_refused() {
        let g = a_user();
        let state = with_raven(&g, CredentialId::new());
        assert_eq!(
            decide(&state, save(g.owner, CredentialId::new(), true)),
            Err(UserError::CredentialExists(Provider::Raven))
        );
    }

    #[test]
    fn given_another_owners_user_when_anything_then_not_found() {
        let g = a_user();
        let stranger = OwnerId::new();
        assert_eq!(
            decide(&g.state, save(stranger, CredentialId::new(), false)),
            Err(UserError::UserNotFound)
        );
        assert_eq!(
            decide(&g.state, UserCommand::Delete { owner_id: stranger }),
            Err(UserError::UserNotFound)
        );
    }

    #[test]
    fn given_no_raven_when_deleted_then_no_credential() {
        let g = a_user();
        let delete = UserCommand::DeleteCredential {
            owner_id: g.owner,
            provider: Provider::Raven,
        };
        assert_eq!(
            decide(&g.state, delete),
            Err(UserError::NoCredential(Provider::Raven))
        );
    }

    #[test]
    fn given_a_deleted_user_when_saved_then_not_found_and_cannot_be_recreated() {
        let g = a_user();
        let state = evolve(
            g.state.clone(),
            &DomainEvent::UserDeleted { user_id: g.user },
        );
        assert_eq!(
            decide(&state, save(g.owner, CredentialId::new(), false)),
            Err(UserError::UserNotFound)
        );
        let create = UserCommand::Create {
            user_id: g.user,
            owner_id: g.owner,
            profile: UserProfile::default(),
            credentials: vec![],
            at: at(),
        };
        assert_eq!(decide(&state, create), Err(UserError::UserExists));
    }

    #[test]
    fn given_a_replaced_credential_when_its_status_changes_then_the_result_is_stale() {
        let g = a_user();
        let old = CredentialId::new();
        let state = with_raven(&g, old);
        let state = evolve(
            state,
            &DomainEvent::CredentialReplaced {
                user_id: g.user,
                replaced_credential_id: old,
                credential_id: CredentialId::new(),
                provider: Provider::Raven,
                fields: fields("r2"),
                created_at: at(),
            },
        );
        let record = UserCommand::RecordCheck {
            credential_id: old,
            provider: Provider::Raven,
            result: CheckResult {
                status: CredentialStatus::Unauthenticated,
                tokens: None,
                reason: "invalid_grant".into(),
            },
            now: at(),
        };
        assert_eq!(decide(&state, record), Err(UserError::StaleCredential));
    }

    fn ok_with(refresh: Option<&str>, expires_in_minutes: i64) -> CheckResult {
        CheckResult {
            status: CredentialStatus::Ok,
            tokens: Some(IssuedTokens {
                access_token: "a2".into(),
                refresh_token: refresh.map(str::to_owned),
                expires_at: Some(at().plus(chrono::Duration::minutes(expires_in_minutes))),
                scopes: vec!["ag1".into()],
            }),
            reason: "refreshed".into(),
        }
    }

    #[test]
    fn given_raven_when_a_check_rotates_tokens_then_they_replace_the_old_ones() {
        let g = a_user();
        let id = CredentialId::new();
        let state = with_raven(&g, id);
        let record = UserCommand::RecordCheck {
            credential_id: id,
            provider: Provider::Raven,
            result: ok_with(Some("r-next"), 60),
            now: at(),
        };
        let events = decide(&state, record).unwrap();
        assert!(matches!(
            events[0],
            DomainEvent::CredentialTokensRotated { .. }
        ));
        let next = match &events[1] {
            DomainEvent::CredentialChecked { next_check_at, .. } => *next_check_at,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            next,
            Some(at().plus(chrono::Duration::minutes(55))),
            "before the token expires"
        );
        let state = events.iter().fold(state, evolve);
        let UserState::Live(user) = state else {
            panic!()
        };
        let raven = &user.credentials[&Provider::Raven];
        assert_eq!(raven.fields["refreshToken"], "r-next");
        assert_eq!(raven.fields["accessToken"], "a2");
    }

    #[test]
    fn a_long_lived_token_is_still_checked_daily_and_failures_back_off() {
        let (next, failures) = next_check(&ok_with(None, 60 * 24 * 90), 3, at());
        assert_eq!(
            (next, failures),
            (Some(at().plus(chrono::Duration::hours(24))), 0)
        );
        let down = CheckResult {
            status: CredentialStatus::TemporarilyUnavailable,
            tokens: None,
            reason: "503".into(),
        };
        let waits: Vec<i64> = (0..8)
            .map(|f| {
                (next_check(&down, f, at()).0.unwrap().datetime() - at().datetime()).num_seconds()
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let revoked = CheckResult {
            status: CredentialStatus::Unauthenticated,
            tokens: None,
            reason: "invalid_grant".into(),
        };
        assert_eq!(next_check(&revoked, 0, at()), (None, 0), "not hammered");
    }

    #[test]
    fn given_a_due_check_when_another_is_requested_then_nothing_happens() {
        let g = a_user();
        let state = with_raven(&g, CredentialId::new());
        let request = UserCommand::RequestCheck {
            owner_id: g.owner,
            provider: Provider::Raven,
            now: at(),
        };
        assert_eq!(
            decide(&state, request),
            Ok(vec![]),
            "a new credential is already due"
        );
    }

    #[test]
    fn given_a_replaced_credential_when_its_check_result_arrives_then_it_is_refused() {
        let g = a_user();
        let old = CredentialId::new();
        let state = with_raven(&g, old);
        let state = evolve(
            state,
            &DomainEvent::CredentialDeleted {
                user_id: g.user,
                credential_id: old,
                provider: Provider::Raven,
            },
        );
        let record = UserCommand::RecordCheck {
            credential_id: old,
            provider: Provider::Raven,
            result: ok_with(Some("r-next"), 60),
            now: at(),
        };
        assert_eq!(decide(&state, record), Err(UserError::StaleCredential));
    }

    #[test]
    fn given_a_status_when_a_check_finds_the_same_then_no_status_change_is_recorded() {
        let g = a_user();
        let id = CredentialId::new();
        let state = with_raven(&g, id);
        let record = UserCommand::RecordCheck {
            credential_id: id,
            provider: Provider::Raven,
            result: ok_with(None, 60),
            now: at(),
        };
        let events = decide(&state, record).unwrap();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, DomainEvent::CredentialStatusChanged { .. })),
            "{events:?}"
        );
    }
}
