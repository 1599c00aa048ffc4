//! API owners: the tenants. One stream per username, so a username is taken at most once.

use super::{DomainEvent, OwnerId, Timestamp};

pub fn stream_id(username: &str) -> String {
    format!("owner:{username}")
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerState {
    pub owner_id: Option<OwnerId>,
}

#[derive(Clone, Debug)]
pub enum OwnerCommand {
    Create {
        owner_id: OwnerId,
        username: String,
        password_hash: String,
        at: Timestamp,
    },
    IssueToken {
        token_hash: String,
        expires_at: Timestamp,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("an owner with this username already exists")]
    Exists,
    #[error("no such owner")]
    Unknown,
}

pub fn decide(state: &OwnerState, command: OwnerCommand) -> Result<Vec<DomainEvent>, OwnerError> {
    match (state.owner_id, command) {
        (Some(_), OwnerCommand::Create { .. }) => Err(OwnerError::Exists),
        (
            None,
            OwnerCommand::Create {
                owner_id,
                username,
                password_hash,
                at,
            },
        ) => Ok(vec![DomainEvent::OwnerCreated {
            owner_id,
            username,
            password_hash,
            created_at: at,
        }]),
        (None, OwnerCommand::IssueToken { .. }) => Err(OwnerError::Unknown),
        (
            Some(owner_id),
            OwnerCommand::IssueToken {
                token_hash,
                expires_at,
            },
        ) => Ok(vec![DomainEvent::OwnerTokenIssued {
            owner_id,
            token_hash,
            expires_at,
        }]),
    }
}

pub fn evolve(state: OwnerState, event: &DomainEvent) -> OwnerState {
    match event {
        DomainEvent::OwnerCreated { owner_id, .. } => OwnerState {
            owner_id: Some(*owner_id),
        },
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::parse("2026-11-01T00:00:00Z").unwrap()
    }

    fn created(owner_id: OwnerId) -> DomainEvent {
        DomainEvent::OwnerCreated {
            owner_id,
            username: "alice".into(),
            password_hash: "$argon2id$…".into(),
            created_at: at(),
        }
    }

    #[test]
    fn given_no_owner_when_created_then_owner_created() {
        let owner_id = OwnerId::new();
        let events = decide(
            &OwnerState::default(),
            OwnerCommand::Create {
                owner_id,
                username: "alice".into(),
                password_hash: "$argon2id$…".into(),
                at: at(),
            },
        );
        assert_eq!(events, Ok(vec![created(owner_id)]));
    }

    #[test]
    fn given_an_owner_when_created_again_then_refused() {
        let owner_id = OwnerId::new();
        let state = evolve(OwnerState::default(), &created(owner_id));
        let again = OwnerCommand::Create {
            owner_id: OwnerId::new(),
            username: "alice".into(),
            password_hash: "x".into(),
            at: at(),
        };
        assert_eq!(decide(&state, again), Err(OwnerError::Exists));
    }

    #[test]
    fn given_no_owner_when_a_token_is_issued_then_refused() {
        let issue = OwnerCommand::IssueToken {
            token_hash: "h".into(),
            expires_at: at(),
        };
        assert_eq!(
            decide(&OwnerState::default(), issue),
            Err(OwnerError::Unknown)
        );
    }
}
