//! Given/when/then over `decide` and `evolve`.

use super::*;
use crate::domain::event::{IssuedTokens, UserProfile};
use crate::domain::{
    CredentialId, CredentialStatus, DomainEvent, OwnerId, Provider, Timestamp, UserId,
};
use serde_json::{json, Map, Value};

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
            access_token: Some("a2".into()),
            refresh_token: refresh.map(str::to_owned),
            expires_at: Some(at().plus(chrono::Duration::minutes(expires_in_minutes))),
            scopes: vec!["ag1".into()],
            fields: Default::default(),
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
    use CredentialStatus::{Ok, TemporarilyUnavailable, Unauthenticated};
    let (next, failures) = next_check(&ok_with(None, 60 * 24 * 90), Ok, 3, at());
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
            let next = next_check(&down, TemporarilyUnavailable, f, at())
                .0
                .unwrap();
            (next.datetime() - at().datetime()).num_seconds()
        })
        .collect();
    assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(
        next_check(&down, Unauthenticated, 5, at()),
        (Some(at().plus(chrono::Duration::seconds(60))), 1),
        "a new kind of failure starts its own streak"
    );
    let revoked = CheckResult {
        status: CredentialStatus::Unauthenticated,
        tokens: None,
        reason: "invalid_grant".into(),
    };
    let mut hours = Vec::new();
    let (mut previous, mut in_a_row) = (Ok, 0);
    while let (Some(next), count) = next_check(&revoked, previous, in_a_row, at()) {
        hours.push((next.datetime() - at().datetime()).num_hours());
        (previous, in_a_row) = (Unauthenticated, count);
    }
    assert_eq!(
        hours,
        [1, 6, 24, 24, 24, 24, 24, 24, 24, 24],
        "re-checked slowly for a week, then left alone"
    );
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
