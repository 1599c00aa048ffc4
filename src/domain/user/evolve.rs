//! An event folded into the user's state.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::{CredentialState, LiveUser, UserState};
use crate::domain::event::token_fields::{
    ACCESS_TOKEN, ACCESS_TOKEN_EXPIRES_AT, REFRESH_TOKEN, SCOPES,
};
use crate::domain::event::IssuedTokens;
use crate::domain::{CredentialStatus, DomainEvent};

/// Puts freshly issued tokens into a credential's fields (shared with the projection).
pub fn apply_tokens(fields: &mut Map<String, Value>, tokens: &IssuedTokens) {
    if let Some(access) = &tokens.access_token {
        fields.insert(ACCESS_TOKEN.into(), Value::String(access.clone()));
    }
    if let Some(refresh) = &tokens.refresh_token {
        fields.insert(REFRESH_TOKEN.into(), Value::String(refresh.clone()));
    }
    for (name, value) in &tokens.fields {
        fields.insert(name.clone(), Value::String(value.clone()));
    }
    fields.insert(SCOPES.into(), serde_json::json!(tokens.scopes));
    match tokens.expires_at {
        Some(at) => fields.insert(
            ACCESS_TOKEN_EXPIRES_AT.into(),
            Value::String(at.to_string()),
        ),
        None => fields.remove(ACCESS_TOKEN_EXPIRES_AT),
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
        E::CredentialCheckParked { provider, .. } => {
            if let Some(credential) = user.credentials.get_mut(provider) {
                credential.next_check_at = None;
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
