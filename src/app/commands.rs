//! The command path: load a stream, fold it, let the pure aggregate decide, append what it
//! decided at the version it decided on.
//!
//! A lost race (another writer appended to the stream first) is not the client's problem: the
//! command is loaded and decided again, by one retry helper ([`retry_until`]), until it succeeds
//! or `CONFLICT_DEADLINE` passes (then 503, never 409). What the client sees is the decision on
//! the state its write would change: a 404 for what is not there, a 412 only for the
//! precondition it stated (`If-None-Match: *`).
//!
//! Commands on one user take turns on this node ([`UserLocks`]), so concurrent requests for a
//! user do not all decide on the same state and all but one fail their append (a group commit
//! holding a failed append is rolled back and run again). Lost races then come from other
//! writers (another node, the CLI), or from a request whose client went away while its write
//! was still queued; either way they are decided again.
//!
//! Users' states are kept in a [`StateCache`] at the version they were folded to, so a command on
//! a user this node has seen appends without reading its stream first (and a user's creation,
//! whose stream is new, never reads it). The cache is exact
//! whoever else writes the stream: events never change, so a cached state is the stream's
//! state at its version, and a command decided on a state that is no longer the newest fails its
//! expected-version check and is decided again on the stream's newer events. A refusal or a
//! no-op, which appends nothing to check, is never answered from the cache: the stream is read
//! first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{AppError, Service};
use crate::domain::event::{ProviderExchange, UserProfile};
use crate::domain::user::{self, CheckResult, NewCredential, UserCommand, UserState};
use crate::domain::{CredentialId, DomainEvent, OwnerId, Provider, UserId};
use crate::store::{
    CredentialView, ExchangeContent, RecordedEvent, SideWrites, StoreError, StreamAppend, UserView,
};

/// How long a command is decided again after lost races before its 503.
pub const CONFLICT_DEADLINE: Duration = Duration::from_secs(5);

/// Users whose state is kept per generation of the cache (so at most twice this many).
const STATE_CACHE_GENERATION: usize = 2048;

/// How many locks commands on users are spread over: two users share one with a chance of
/// 1 in this, which only makes the second wait for the first.
const USER_LOCKS: usize = 1024;

/// A lock per slice of the users, held by a command from its decision to its commit.
pub(super) struct UserLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for UserLocks {
    fn default() -> Self {
        Self(
            (0..USER_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}

impl UserLocks {
    async fn lock(&self, user: UserId) -> tokio::sync::MutexGuard<'_, ()> {
        // A v7 id ends in random bits.
        let slice = (user.0.as_u128() % USER_LOCKS as u128) as usize;
        self.0[slice].lock().await
    }
}

/// A user's state at a version of its stream.
#[derive(Clone, Debug)]
struct Folded {
    version: u64,
    state: Arc<UserState>,
}

/// Users' states in two generations: a state read or written goes into the newer one, and when
/// that is full the older one is dropped and the newer takes its place. The users in use stay
/// (each use brings them back into the newer generation); a burst of others cannot push them
/// out, as it could out of a map that is cleared when full.
#[derive(Default)]
pub(super) struct StateCache(Mutex<Generations>);

#[derive(Default)]
struct Generations {
    newer: HashMap<UserId, Folded>,
    older: HashMap<UserId, Folded>,
}

impl StateCache {
    fn get(&self, user: UserId) -> Option<Folded> {
        let mut cache = self.lock();
        if let Some(kept) = cache.newer.get(&user) {
            return Some(kept.clone());
        }
        let kept = cache.older.remove(&user)?;
        cache.keep(user, kept.clone());
        Some(kept)
    }

    /// Keeps `folded` unless a newer state of the user is already kept.
    fn put(&self, user: UserId, folded: Folded) {
        let mut cache = self.lock();
        let kept = cache.newer.get(&user).or_else(|| cache.older.get(&user));
        if kept.is_some_and(|kept| kept.version >= folded.version) {
            return;
        }
        cache.older.remove(&user);
        cache.keep(user, folded);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Generations {
    fn keep(&mut self, user: UserId, folded: Folded) {
        if self.newer.len() >= STATE_CACHE_GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(user, folded);
    }
}

/// What an append recorded, and the user's state it led to.
struct Appended {
    recorded: Vec<RecordedEvent>,
    state: Arc<UserState>,
}

/// A decision on a user, and the state and version it was made on.
struct Decided {
    base: Folded,
    events: Vec<DomainEvent>,
}

impl Service {
    /// Runs `attempt` again while it fails with a lost race (`StoreError::Conflict`), until
    /// `CONFLICT_DEADLINE`; each attempt is told how many came before it. After the deadline the
    /// conflict is answered as storage too busy to take the write (503), never as a 409.
    pub(super) async fn retrying_conflicts<T, F, Fut>(&self, attempt: F) -> Result<T, AppError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        retry_until(Instant::now() + CONFLICT_DEADLINE, attempt).await
    }

    /// The user's turn on this node (commands on one user run one after the other), waited for
    /// until `deadline`, which the command's retries then share.
    async fn turn(
        &self,
        user_id: UserId,
        deadline: Instant,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, AppError> {
        let turn = tokio::time::timeout_at(deadline.into(), self.user_locks.lock(user_id)).await;
        turn.map_err(|_| {
            AppError::Store(StoreError::unavailable(format!(
                "user {user_id} was busy with other commands for {CONFLICT_DEADLINE:?}"
            )))
        })
    }

    /// Replaces the user's profile; answers with the user as this request left it: its new
    /// profile (never a later request's) and its credentials as they are now.
    pub async fn update_user(
        &self,
        owner_id: OwnerId,
        user_id: UserId,
        profile: UserProfile,
    ) -> Result<UserView, AppError> {
        let command = UserCommand::Update {
            owner_id,
            profile: profile.clone(),
        };
        let mut user = self.change_profile(owner_id, user_id, command).await?;
        // A later update by another writer may have committed since: the profile is the one
        // this request wrote.
        user.profile = profile;
        Ok(user)
    }

    /// Changes the profile fields named in `changes` (null clears one) and leaves the rest;
    /// answers with the user as it is after this request.
    pub async fn patch_user(
        &self,
        owner_id: OwnerId,
        user_id: UserId,
        changes: serde_json::Map<String, serde_json::Value>,
    ) -> Result<UserView, AppError> {
        let command = UserCommand::Patch { owner_id, changes };
        self.change_profile(owner_id, user_id, command).await
    }

    /// Runs a profile command in the user's turn and reads the user back in the same turn, so
    /// no other command of this node commits in between.
    async fn change_profile(
        &self,
        owner_id: OwnerId,
        user_id: UserId,
        command: UserCommand,
    ) -> Result<UserView, AppError> {
        let deadline = Instant::now() + CONFLICT_DEADLINE;
        let _turn = self.turn(user_id, deadline).await?;
        self.decide_and_append(user_id, command, SideWrites::default(), deadline)
            .await?;
        Ok(self
            .user(owner_id, user_id)
            .await?
            .ok_or(user::UserError::UserNotFound)?)
    }

    /// Decides `command` against the user's stream and appends the result at the version it
    /// was decided on; decided again after a lost race.
    pub async fn execute(
        &self,
        user_id: UserId,
        command: UserCommand,
    ) -> Result<Vec<RecordedEvent>, AppError> {
        let appended = self
            .execute_with(user_id, command, SideWrites::default())
            .await?;
        Ok(appended.recorded)
    }

    /// Creates a user (its profile and credentials already validated), sealing the
    /// credentials' secrets, each with a data key of its own.
    pub async fn create_user(
        &self,
        owner_id: OwnerId,
        profile: UserProfile,
        credentials: Vec<(Provider, Map<String, Value>)>,
    ) -> Result<UserId, AppError> {
        let mut credentials: Vec<NewCredential> = credentials
            .into_iter()
            .map(|(provider, fields)| NewCredential {
                id: CredentialId::new(),
                provider,
                fields,
            })
            .collect();
        let data_keys = credentials
            .iter_mut()
            .map(|c| self.secrets.seal_credential(c))
            .collect::<Result<Vec<_>, _>>()?;
        let user_id = UserId::new();
        let command = UserCommand::Create {
            user_id,
            owner_id,
            profile,
            credentials,
            at: self.now(),
        };
        let side = SideWrites {
            data_keys,
            ..SideWrites::default()
        };
        self.execute_with(user_id, command, side).await?;
        Ok(user_id)
    }

    /// Attaches a credential (its fields already validated) to the user, replacing the one it
    /// has unless `create_only`, with its secrets sealed; answers with what this request stored
    /// (even if a later one has replaced it since), secrets as answers show them.
    pub async fn save_credential(
        &self,
        owner_id: OwnerId,
        user_id: UserId,
        provider: Provider,
        fields: Map<String, Value>,
        create_only: bool,
    ) -> Result<CredentialView, AppError> {
        let mut credential = NewCredential {
            id: CredentialId::new(),
            provider,
            fields,
        };
        let data_key = self.secrets.seal_credential(&mut credential)?;
        let credential_id = credential.id;
        let command = UserCommand::SaveCredential {
            owner_id,
            credential,
            create_only,
            at: self.now(),
        };
        let side = SideWrites {
            data_keys: vec![data_key.clone()],
            ..SideWrites::default()
        };
        let appended = self.execute_with(user_id, command, side).await?;
        // This request's credential as its own events left it, even if a later request has
        // replaced it since.
        let stored = match &*appended.state {
            UserState::Live(user) => user
                .credentials
                .get(&provider)
                .filter(|c| c.id == credential_id),
            _ => None,
        };
        let stored = stored.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "saving a credential left no such credential"
            ))
        })?;
        let view = CredentialView {
            id: stored.id,
            user_id,
            provider,
            status: stored.status,
            fields: stored.fields.clone(),
            created_at: stored.created_at,
            last_checked_at: None,
            status_reason: None,
            data_key: Some(data_key),
        };
        self.reveal(view)
    }

    /// `execute`, with `side` written in the append's transaction.
    async fn execute_with(
        &self,
        user_id: UserId,
        command: UserCommand,
        side: SideWrites,
    ) -> Result<Appended, AppError> {
        let deadline = Instant::now() + CONFLICT_DEADLINE;
        let _turn = self.turn(user_id, deadline).await?;
        let appended = self
            .decide_and_append(user_id, command, side, deadline)
            .await?;
        if appended.recorded.iter().any(|r| makes_due(&r.event)) {
            self.checks_wanted.notify_one();
        }
        Ok(appended)
    }

    /// Decides `command` and appends it (with `side`), decided again after each lost race
    /// until `deadline`; in the user's turn.
    async fn decide_and_append(
        &self,
        user_id: UserId,
        command: UserCommand,
        side: SideWrites,
        deadline: Instant,
    ) -> Result<Appended, AppError> {
        retry_until(deadline, |tries| {
            let command = command.clone();
            let side = side.clone();
            async move {
                let decided = self.decide(user_id, command, tries > 0).await?;
                self.append_user(user_id, decided, vec![], side).await
            }
        })
        .await
    }

    /// Records a background check: its exchanges, rotated tokens, status and next check, all in
    /// one transaction. A result for a credential replaced or deleted meanwhile is refused
    /// (`UserError::StaleCredential`) and nothing is written.
    /// Records a check's result, its tokens and exchanges; with `fence`, only while the checks
    /// are still led under it (`StoreError::Fenced` otherwise: another process leads now).
    pub async fn record_check(
        &self,
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        result: CheckResult,
        exchanges: Vec<ProviderExchange>,
        fence: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, AppError> {
        let deadline = Instant::now() + CONFLICT_DEADLINE;
        let _turn = self.turn(user_id, deadline).await?;
        let appended = retry_until(deadline, |tries| {
            let command = UserCommand::RecordCheck {
                credential_id,
                provider,
                result: result.clone(),
                now: self.now(),
            };
            let exchanges = exchanges.clone();
            async move {
                let decided = self.decide(user_id, command, tries > 0).await?;
                let (log, mut side) = self
                    .exchange_log(&decided, credential_id, exchanges)
                    .await?;
                side.leader_fence = fence;
                self.append_user(user_id, decided, log, side).await
            }
        })
        .await?;
        Ok(appended.recorded)
    }

    /// Records that the credential cannot be checked with this configuration, and why: it is
    /// not due again until it is replaced or a check is asked for.
    pub async fn park_check(
        &self,
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        reason: String,
    ) -> Result<(), AppError> {
        let command = UserCommand::ParkCheck {
            credential_id,
            provider,
            reason,
        };
        self.execute(user_id, command).await.map(|_| ())
    }

    /// The append of `exchanges` to the credential's exchange log, and their contents.
    async fn exchange_log(
        &self,
        decided: &Decided,
        credential_id: CredentialId,
        exchanges: Vec<ProviderExchange>,
    ) -> Result<(Vec<StreamAppend>, SideWrites), AppError> {
        if exchanges.is_empty() {
            return Ok((vec![], SideWrites::default()));
        }
        let stream_id = format!("exchanges:{credential_id}");
        let expected_version = self.store.stream_version(&stream_id).await?;
        let contents = exchanges
            .iter()
            .map(|x| ExchangeContent {
                exchange_id: x.meta.exchange_id,
                credential_id: x.meta.credential_id,
                recorded_at: x.meta.recorded_at,
                headers: x.headers.clone(),
                body: x.body.clone(),
            })
            .collect();
        let events = exchanges
            .into_iter()
            .map(|x| DomainEvent::ProviderExchangeRecorded { exchange: x.meta })
            .collect();
        let append = StreamAppend {
            stream_id,
            expected_version,
            owner_id: owner_of(&decided.base.state),
            events,
        };
        let side = SideWrites {
            contents,
            ..SideWrites::default()
        };
        Ok((vec![append], side))
    }

    /// The user's state: unless `fresh`, the cached one as it is, or for a user not cached a
    /// stream not yet written (a new user's, which its creation appends to at version 0; for
    /// any other the guess leads to a refusal, made again on the stream); if `fresh`, brought up
    /// to date with the stream's newer events.
    async fn load(&self, user_id: UserId, fresh: bool) -> Result<Folded, AppError> {
        let cached = self.states.get(user_id);
        let base = cached.unwrap_or(Folded {
            version: 0,
            state: Arc::new(UserState::default()),
        });
        if !fresh {
            return Ok(base);
        }
        let newer = self
            .store
            .read_stream(&user::stream_id(user_id), base.version)
            .await?;
        let Some(last) = newer.last() else {
            return Ok(base);
        };
        let version = last.version;
        let state = newer
            .iter()
            .map(|r| &r.event)
            .fold(UserState::clone(&base.state), user::evolve);
        let folded = Folded {
            version,
            state: Arc::new(state),
        };
        self.states.put(user_id, folded.clone());
        Ok(folded)
    }

    /// Decides `command` on the user's state. A decision that writes nothing (a refusal, a
    /// no-op) is made on the stream as it is now, never on a cached state alone.
    async fn decide(
        &self,
        user_id: UserId,
        command: UserCommand,
        fresh: bool,
    ) -> Result<Decided, AppError> {
        let base = self.load(user_id, fresh).await?;
        match user::decide(&base.state, command.clone()) {
            Ok(events) if !events.is_empty() || fresh => Ok(Decided { base, events }),
            Err(error) if fresh => Err(error.into()),
            _ => {
                let base = self.load(user_id, true).await?;
                let events = user::decide(&base.state, command)?;
                Ok(Decided { base, events })
            }
        }
    }

    /// Appends what was decided on the user (with `also`, in the same transaction) at the
    /// version it was decided on, and keeps the state it leads to.
    async fn append_user(
        &self,
        user_id: UserId,
        decided: Decided,
        also: Vec<StreamAppend>,
        side: SideWrites,
    ) -> Result<Appended, AppError> {
        let Decided { base, events } = decided;
        if events.is_empty() && also.is_empty() {
            return Ok(Appended {
                recorded: vec![],
                state: base.state,
            });
        }
        let owner_id = events
            .iter()
            .find_map(|e| match e {
                DomainEvent::UserCreated { owner_id, .. } => Some(*owner_id),
                _ => None,
            })
            .or_else(|| owner_of(&base.state));
        let mut appends = vec![StreamAppend {
            stream_id: user::stream_id(user_id),
            expected_version: base.version,
            owner_id,
            // With no events this only checks that the user's stream did not move meanwhile.
            events: events.clone(),
        }];
        appends.extend(also);
        let recorded = self.store.append(appends, side, self.now()).await?;
        if events.is_empty() {
            return Ok(Appended {
                recorded,
                state: base.state,
            });
        }
        let state = events
            .iter()
            .fold(UserState::clone(&base.state), user::evolve);
        let folded = Folded {
            version: base.version + events.len() as u64,
            state: Arc::new(state),
        };
        self.states.put(user_id, folded.clone());
        Ok(Appended {
            recorded,
            state: folded.state,
        })
    }
}

/// Runs `attempt` again while it fails with a lost race, until `deadline`; then the last
/// conflict becomes the cause of a 503.
async fn retry_until<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, AppError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AppError>>,
{
    let mut tries = 0;
    loop {
        match attempt(tries).await {
            Err(AppError::Store(conflict @ StoreError::Conflict { .. })) => {
                if Instant::now() >= deadline {
                    return Err(AppError::Store(StoreError::Unavailable(Arc::new(conflict))));
                }
                tries += 1;
                // Past the first few, lost races are spread out a little.
                if tries > 3 {
                    tokio::time::sleep(Duration::from_millis(u64::from(tries.min(20)))).await;
                }
            }
            other => return other,
        }
    }
}

fn owner_of(state: &UserState) -> Option<crate::domain::OwnerId> {
    match state {
        UserState::Live(user) => Some(user.owner_id),
        _ => None,
    }
}

/// Whether an event makes a credential due for a check now.
fn makes_due(event: &DomainEvent) -> bool {
    matches!(
        event,
        DomainEvent::CredentialCreated { .. }
            | DomainEvent::CredentialReplaced { .. }
            | DomainEvent::CredentialCheckRequested { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::crypto::{KeySource, Keyring};
    use crate::app::Secrets;
    use crate::domain::user::UserError;
    use crate::domain::{Clock, SystemClock};
    use crate::store::{SqliteStore, StoreOptions};

    /// Two services over one database, as two nodes (or a node and the CLI) would be: each
    /// with its own state cache, neither seeing the other's writes but through the ledger.
    fn two_nodes() -> (tempfile::TempDir, Service, Service) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let node = || {
            let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
            let keyring = Keyring::open(KeySource::File(dir.path().join("master.key"))).unwrap();
            let secrets = Secrets::new(Arc::new(keyring), false);
            Service::new(Arc::new(store), Arc::new(SystemClock), secrets)
        };
        let (a, b) = (node(), node());
        (dir, a, b)
    }

    fn save(owner_id: OwnerId, create_only: bool) -> UserCommand {
        let fields =
            serde_json::json!({"clientId": "id", "clientSecret": "s", "refreshToken": "r"});
        UserCommand::SaveCredential {
            owner_id,
            credential: NewCredential {
                id: CredentialId::new(),
                provider: Provider::Raven,
                fields: fields.as_object().cloned().unwrap_or_default(),
            },
            create_only,
            at: SystemClock.now(),
        }
    }

    fn delete(owner_id: OwnerId) -> UserCommand {
        UserCommand::DeleteCredential {
            owner_id,
            provider: Provider::Raven,
        }
    }

    async fn run(node: &Service, user: UserId, command: UserCommand) -> Result<usize, AppError> {
        let recorded = node.execute(user, command).await?;
        Ok(recorded.len())
    }

    #[tokio::test]
    async fn a_state_cached_before_another_node_wrote_is_never_decided_on_alone() {
        let (_dir, a, b) = two_nodes();
        let (owner_id, user) = (OwnerId::new(), UserId::new());
        let create = UserCommand::Create {
            user_id: user,
            owner_id,
            profile: UserProfile::default(),
            credentials: vec![],
            at: SystemClock.now(),
        };
        run(&a, user, create).await.unwrap();
        // A has the user cached without credentials; B attaches one.
        run(&b, user, save(owner_id, false)).await.unwrap();
        // A refusal is not made on the stale state: the stream is read first.
        let exists = run(&a, user, save(owner_id, true)).await;
        assert!(
            matches!(exists, Err(AppError::User(UserError::CredentialExists(_)))),
            "{exists:?}"
        );
        // B deletes it; A, whose cache now holds it, deletes too: a refusal, not a second event.
        run(&b, user, delete(owner_id)).await.unwrap();
        run(&a, user, save(owner_id, false)).await.unwrap(); // a lost race, decided again
        run(&b, user, delete(owner_id)).await.unwrap();
        let gone = run(&a, user, delete(owner_id)).await;
        assert!(
            matches!(gone, Err(AppError::User(UserError::NoCredential(_)))),
            "{gone:?}"
        );
        let stream = a
            .store
            .read_stream(&user::stream_id(user), 0)
            .await
            .unwrap();
        let types: Vec<&str> = stream.iter().map(|e| e.event.event_type()).collect();
        assert_eq!(
            types,
            [
                "UserCreated",
                "CredentialCreated",
                "CredentialDeleted",
                "CredentialCreated",
                "CredentialDeleted"
            ]
        );
    }
}
