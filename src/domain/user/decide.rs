//! A command against the user's state: the events it leads to, or why it is refused.

use super::{
    next_check, CredentialState, LiveUser, NewCredential, UserCommand, UserError, UserState,
};
use crate::domain::event::UserProfile;
use crate::domain::{CredentialId, DomainEvent, Provider};

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
            Ok(profile_changed(user, profile))
        }
        UserCommand::Patch { owner_id, changes } => {
            let user = state.owned_by(owner_id).ok_or(UserError::UserNotFound)?;
            let mut merged = match serde_json::to_value(&user.profile) {
                Ok(serde_json::Value::Object(fields)) => fields,
                _ => serde_json::Map::new(),
            };
            merged.extend(changes);
            let profile = serde_json::from_value(serde_json::Value::Object(merged))
                .map_err(|_| UserError::InvalidProfile)?;
            Ok(profile_changed(user, profile))
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
                next_check(&result, current.status, current.consecutive_failures, now);
            events.push(E::CredentialChecked {
                user_id,
                credential_id,
                provider,
                next_check_at,
                consecutive_failures,
                reason: Some(result.reason.clone()),
            });
            Ok(events)
        }
        UserCommand::ParkCheck {
            credential_id,
            provider,
            reason,
        } => {
            let UserState::Live(user) = state else {
                return Err(UserError::StaleCredential);
            };
            current_credential(user, provider, credential_id)?;
            Ok(vec![E::CredentialCheckParked {
                user_id: user.id,
                credential_id,
                provider,
                reason,
            }])
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

/// The user's profile replaced by `profile`: nothing when they are the same.
fn profile_changed(user: &LiveUser, profile: UserProfile) -> Vec<DomainEvent> {
    if user.profile == profile {
        return vec![];
    }
    vec![DomainEvent::UserUpdated {
        user_id: user.id,
        profile,
    }]
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
