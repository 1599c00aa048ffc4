//! The ledger's storage, behind two traits of domain operations: [`EventStore`] (append events
//! to streams at an expected version, with the projections and the rows beside the ledger
//! written in the same transaction; read a stream; rebuild, purge, rewrap) and [`ReadModel`]
//! (the current views). [`Store`] is both; the rest of the service holds an `Arc<dyn Store>`
//! and never sees SQL or a driver type.
//!
//! `sqlite` is the embedded implementation, `postgres` the one for several nodes on one
//! database. Each passes the contract suite in `contract` (`cargo test` runs it against SQLite,
//! and against PostgreSQL when `CREDENTIAL_LEDGER_TEST_POSTGRES` names a database).

#[cfg(test)]
#[macro_use]
pub mod contract;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::domain::event::UserProfile;
use crate::domain::{
    CredentialId, CredentialStatus, DomainEvent, ExchangeId, OwnerId, Provider, Timestamp, UserId,
};

pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, StoreOptions, WriterCounts, DEFAULT_MAX_BATCH};

/// An error's cause, kept with its own chain (shared: a failed group commit answers each of
/// its writers with the same error).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first.
    #[error("stream {stream_id} was changed concurrently")]
    Conflict { stream_id: String },
    /// The database cannot take the request now (busy or locked past the timeout, disk full,
    /// I/O error, writer stopped): retrying later may succeed.
    #[error("storage unavailable")]
    Unavailable(#[source] Cause),
    /// What the ledger holds cannot be read back.
    #[error("ledger data is corrupt: {0}")]
    Corrupt(String),
    /// A constraint violation or another bug: retrying will not help.
    #[error("storage failed")]
    Failed(#[source] Cause),
    /// Another process already serves this database.
    #[error("{0}")]
    InUse(String),
    /// The append was fenced: it was written as the checks' leader, and another process
    /// leads them now.
    #[error("this process no longer leads the credential checks")]
    Fenced,
}

/// A plain message as an error cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

impl StoreError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        StoreError::Unavailable(Arc::new(Message(what.into())))
    }

    pub fn failed(what: impl Into<String>) -> Self {
        StoreError::Failed(Arc::new(Message(what.into())))
    }
}

/// Events to append to one stream, valid only if the stream is at `expected_version`
/// (0: the stream must not exist yet). An empty `events` list only checks the version.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected_version: u64,
    pub owner_id: Option<OwnerId>,
    pub events: Vec<DomainEvent>,
}

/// An event as the ledger holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: u64,
    pub owner_id: Option<OwnerId>,
    pub recorded_at: Timestamp,
    pub event: DomainEvent,
}

/// Rows written beside the ledger in an append's transaction, and what it requires.
#[derive(Clone, Debug, Default)]
pub struct SideWrites {
    pub contents: Vec<ExchangeContent>,
    pub data_keys: Vec<WrappedKey>,
    /// Append only if the checks are still led under this fence (from [`EventStore::lead`]):
    /// a check's result is recorded only while the process that ran it leads.
    pub leader_fence: Option<u64>,
}

/// A credential's data key, wrapped by the master key `key_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub credential_id: CredentialId,
    pub key_id: String,
    pub wrapped: Vec<u8>,
}

/// The redacted headers and body of one exchange, stored beside the ledger.
#[derive(Clone, Debug)]
pub struct ExchangeContent {
    pub exchange_id: ExchangeId,
    pub credential_id: CredentialId,
    pub recorded_at: Timestamp,
    pub headers: String,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OwnerView {
    pub id: OwnerId,
    pub username: String,
    pub password_hash: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CredentialView {
    pub id: CredentialId,
    pub user_id: UserId,
    pub provider: Provider,
    pub status: CredentialStatus,
    pub fields: Map<String, Value>,
    pub created_at: Timestamp,
    /// When its last check was recorded; `None` until one was.
    pub last_checked_at: Option<Timestamp>,
    /// Why its status is what it is (the last check's reason, secrets redacted).
    pub status_reason: Option<String>,
    /// Its wrapped data key; secret fields stay sealed with it until `app::secrets` opens them.
    pub data_key: Option<WrappedKey>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserView {
    pub id: UserId,
    pub profile: UserProfile,
    pub created_at: Timestamp,
    pub credentials: Vec<CredentialView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeView {
    pub id: ExchangeId,
    pub status_code: u16,
    pub headers: String,
    pub body: String,
    pub recorded_at: Timestamp,
}

/// Filters, order and page of `GET /users`.
#[derive(Clone, Debug, Default)]
pub struct UserQuery {
    pub email: Option<String>,
    pub name: Option<String>,
    pub external_id: Option<String>,
    /// Sort keys, most significant first; creation order breaks ties (and is the order when
    /// there are none).
    pub sort: Vec<SortBy>,
    pub page: u32,
    pub size: u32,
}

/// What a user list can be sorted by: a user's id, a profile field or its creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSortKey {
    Id,
    Name,
    Email,
    Phone,
    Address,
    ExternalId,
    CreatedTime,
}

impl UserSortKey {
    /// Every key, by the name a `sort` parameter gives it (the user's JSON field name).
    pub const ALL: [(&'static str, UserSortKey); 7] = [
        ("id", UserSortKey::Id),
        ("name", UserSortKey::Name),
        ("email", UserSortKey::Email),
        ("phone", UserSortKey::Phone),
        ("address", UserSortKey::Address),
        ("externalId", UserSortKey::ExternalId),
        ("createdTime", UserSortKey::CreatedTime),
    ];

    pub fn named(name: &str) -> Option<UserSortKey> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(n, _)| n)
    }
}

/// One sort key and its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortBy {
    pub key: UserSortKey,
    pub descending: bool,
}

/// A credential whose background check is due.
#[derive(Clone, Debug, PartialEq)]
pub struct DueCheck {
    pub owner_id: OwnerId,
    pub credential: CredentialView,
    pub next_check_at: Timestamp,
}

/// Called now and then during a rebuild with (events applied, total).
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

/// Re-wraps one data key (master key rotation); an error names the key that failed.
pub type Rewrap = Box<dyn Fn(&WrappedKey) -> Result<WrappedKey, String> + Send + Sync>;

/// The ledger itself: streams of events in one gap-free global order.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Appends to one or more streams in one transaction, each at its expected version, writes
    /// `side` and applies the new events to the projections before committing. All or nothing:
    /// a stream not at its expected version fails the whole append with `Conflict`. Answers
    /// only once the transaction is durable.
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        side: SideWrites,
        recorded_at: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The events of a stream with a version above `after_version`, in version order.
    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's current version (0 when it has no events).
    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError>;

    /// Drops every projection and replays the whole ledger into fresh ones; returns how many
    /// events were applied.
    async fn rebuild(&self, progress: Progress) -> Result<u64, StoreError>;

    /// Deletes exchange contents (and their log rows) recorded before `cutoff`; events stay.
    async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, StoreError>;

    /// Re-wraps every data key with `rewrap`, all or none.
    async fn rewrap_keys(&self, rewrap: Rewrap) -> Result<usize, StoreError>;

    /// The ids of the master keys that wrap the stored data keys: a keyring must know each of
    /// them to open the credentials.
    async fn data_key_ids(&self) -> Result<Vec<String>, StoreError>;

    /// Whether the storage answers (and no read has found it damaged).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether this process leads: runs the jobs that one process at a time must run on this
    /// database (the credential checks, retention). Asked again before each round of them; a
    /// leader that loses its database connection stops leading, and another process takes
    /// over. While leading, the fence to give the appends of those jobs
    /// ([`SideWrites::leader_fence`]): each new leadership has a new one, and an append under
    /// an old one fails with `Fenced`.
    async fn lead(&self) -> Result<Option<u64>, StoreError>;
}

/// The current views, projected from the ledger. Every read of a user or a credential is
/// scoped by its owner: another owner's ids read as missing.
#[async_trait::async_trait]
pub trait ReadModel: Send + Sync {
    async fn owner_by_username(&self, username: &str) -> Result<Option<OwnerView>, StoreError>;

    async fn count_owners(&self) -> Result<u64, StoreError>;

    /// The owner holding this token hash, and the token's expiry, if it has not expired at `now`.
    async fn owner_by_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(OwnerId, Timestamp)>, StoreError>;

    async fn user(&self, owner: OwnerId, user: UserId) -> Result<Option<UserView>, StoreError>;

    /// One page of the owner's users, oldest first, and how many match the filters.
    async fn users(
        &self,
        owner: OwnerId,
        query: UserQuery,
    ) -> Result<(Vec<UserView>, u64), StoreError>;

    async fn credential(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<CredentialView>, StoreError>;

    /// The credential's exchanges recorded at or after `since`, newest first (ties: newest
    /// id first); `None` when there is no such credential. One snapshot.
    async fn exchanges(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
        since: Timestamp,
    ) -> Result<Option<Vec<ExchangeView>>, StoreError>;

    /// Credentials of `providers` due for a check at `now`, longest overdue first.
    async fn due_checks(
        &self,
        now: Timestamp,
        providers: &[Provider],
        limit: u32,
    ) -> Result<Vec<DueCheck>, StoreError>;

    /// One credential's schedule, if it is live and scheduled.
    async fn due_check(&self, id: CredentialId) -> Result<Option<DueCheck>, StoreError>;
}

/// A complete storage backend.
pub trait Store: EventStore + ReadModel {}

impl<T: EventStore + ReadModel> Store for T {}

/// How the rest of the service holds its storage.
pub type SharedStore = Arc<dyn Store>;
