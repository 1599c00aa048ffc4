//! The PostgreSQL implementation of the storage traits, for several API nodes on one database.
//!
//! Appends are serialised by one row (`ledger_head`), locked first in every append's
//! transaction: expected versions are checked after taking it, so positions are gap-free and
//! handed out in commit order, and `UNIQUE (stream_id, version)` stays as the backstop. The
//! projections are applied in the same transaction, so every node reads its own writes at once.
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool.

mod cached;
mod projections;
mod queries;
pub mod schema;
#[cfg(test)]
mod tests;

use cached::Cached;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::NoTls;

use crate::domain::event::PAYLOAD_VERSION;
use crate::domain::{CredentialId, DomainEvent, OwnerId, Provider, Timestamp, UserId};
use crate::store::{
    CredentialView, DueCheck, EventStore, ExchangeView, OwnerView, Progress, ReadModel,
    RecordedEvent, Rewrap, SideWrites, StoreError, StreamAppend, UserQuery, UserView, WrappedKey,
};

/// Whether `database` names a PostgreSQL database (a `postgres://` URL or `key=value`
/// conninfo) rather than a SQLite file.
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://")
        || database.starts_with("postgresql://")
        || database.split_whitespace().any(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, _)| matches!(key, "host" | "dbname" | "user" | "port"))
        })
}

/// `database` as logs name it: its hosts and database name, never its password.
pub fn describe(database: &str) -> String {
    match tokio_postgres::Config::from_str(database) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL database {} on {}",
                config.get_dbname().unwrap_or("(default)"),
                hosts.join(", ")
            )
        }
        Err(_) => "a PostgreSQL database (unreadable connection string)".to_owned(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let class = error.code().map(|c| c.code()[..2].to_owned());
        match class.as_deref() {
            // Connection, resources, operator intervention, transaction rollback (serialisation
            // failure, deadlock): retrying later may succeed.
            None | Some("08" | "40" | "53" | "57" | "58") => {
                StoreError::Unavailable(Arc::new(error))
            }
            Some(_) => StoreError::Failed(Arc::new(error)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(Arc::new(error))
    }
}

/// The ledger on a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// Appends go to the node's writer, which commits them in groups.
    writer: tokio::sync::mpsc::Sender<Job>,
    /// Transactions the writer has committed.
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// The connection holding the leader's session lock, while this node leads, and the fence
    /// it raised: taken out of the pool, so that it is closed (and the lock freed) rather than
    /// reused when dropped.
    leader: tokio::sync::Mutex<Option<(deadpool_postgres::ClientWrapper, u64)>>,
}

/// The key of the session advisory lock held by the node that runs the checks and retention.
pub const LEADER_LOCK: i64 = 0x6c65_6164_6572; // "leader"

/// How many connections one node keeps to the database.
pub const POOL_SIZE: usize = 16;

/// How long to wait for a new connection to the database.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a request waits for a free connection of the pool (then: unavailable, 503).
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl PostgresStore {
    /// Connects to `database` (URL or conninfo) and brings its schema up to date, under a lock
    /// that lets one node migrate at a time.
    pub async fn open(database: &str) -> Result<PostgresStore, StoreError> {
        let config = tokio_postgres::Config::from_str(database)
            .map_err(|e| StoreError::failed(format!("not a PostgreSQL connection string: {e}")))?;
        Self::open_config(config).await
    }

    /// As [`PostgresStore::open`], from a parsed configuration.
    pub async fn open_config(
        mut config: tokio_postgres::Config,
    ) -> Result<PostgresStore, StoreError> {
        // A database that stops answering is noticed, not waited on for ever; a session that
        // sits in a transaction (holding the head lock, say) is ended by the server.
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30));
        let options = format!(
            "{} -c idle_in_transaction_session_timeout=30000",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::failed(format!("cannot build the connection pool: {e}")))?;
        let client = pool.get().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])
            .await?;
        let migrated = client
            .batch_execute(&format!("{}{}", schema::LEDGER, schema::VIEWS))
            .await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&schema::MIGRATION_LOCK])
            .await?;
        migrated?;
        let (writer, jobs) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(write(pool.clone(), jobs, commits.clone()));
        Ok(PostgresStore {
            pool,
            writer,
            commits,
            leader: tokio::sync::Mutex::new(None),
        })
    }
}

impl PostgresStore {
    /// Transactions the writer has committed (each holding one or more appends).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The columns of an event, in the order `decode` reads them.
macro_rules! event_columns {
    () => {
        "position, stream_id, version, event_type, payload, owner_id, recorded_at, event_version"
    };
}

const EVENT_COLUMNS: &str = event_columns!();

const INSERT_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

/// One event from a row of [`EVENT_COLUMNS`].
fn decode(row: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {position}: {what}"));
    let payload_version: i64 = row.try_get(7)?;
    if payload_version > i64::from(PAYLOAD_VERSION) {
        return Err(corrupt(&format!(
            "payload version {payload_version} is newer than this build reads ({PAYLOAD_VERSION})"
        )));
    }
    let event_type: &str = row.try_get(3)?;
    let payload: &str = row.try_get(4)?;
    let event = DomainEvent::from_stored(event_type, payload)
        .map_err(|e| corrupt(&format!("cannot decode {event_type}: {e}")))?;
    let owner_id = row
        .try_get::<_, Option<&str>>(5)?
        .map(|o| o.parse::<OwnerId>())
        .transpose()
        .map_err(|_| corrupt("bad owner id"))?;
    let recorded_at =
        Timestamp::parse(row.try_get(6)?).ok_or_else(|| corrupt("bad recorded_at"))?;
    let version: i64 = row.try_get(2)?;
    Ok(RecordedEvent {
        position,
        stream_id: row.try_get(1)?,
        version: version as u64,
        owner_id,
        recorded_at,
        event,
    })
}

async fn stream_version(client: &impl GenericClient, stream_id: &str) -> Result<u64, StoreError> {
    let row = client
        .query_one_cached(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM events WHERE stream_id = $1",
            &[&stream_id],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// One append waiting for the writer, and where its answer goes.
struct Job {
    appends: Vec<StreamAppend>,
    side: SideWrites,
    recorded_at: Timestamp,
    answer: tokio::sync::oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>,
}

/// Most appends one transaction commits together. Each has a savepoint of its own, and more
/// than 64 subtransactions in one transaction slow every session of the database down.
pub const MAX_BATCH: usize = 32;

/// The node's writer: takes the appends waiting, up to `MAX_BATCH`, and commits them in one
/// transaction under the head lock (one WAL flush for all), each in a savepoint so that one
/// that fails (a stale expected version) is undone alone. Every append is answered only once
/// the transaction is durable; if it does not commit, all of them get its error.
async fn write(
    pool: Pool,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    commits: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(batch.len());
        match commit_batch(&pool, &batch, &mut answers).await {
            Ok(()) => {
                commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.answer.send(answer);
                }
            }
            Err(error) => {
                for job in batch {
                    let _ = job.answer.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Appends every job of `batch` in one transaction; `answers` gets each one's own outcome
/// (valid once the transaction commits).
async fn commit_batch(
    pool: &Pool,
    batch: &[Job],
    answers: &mut Vec<Result<Vec<RecordedEvent>, StoreError>>,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let mut tx = client.transaction().await?;
    // Answered only once durable, whatever the server's or the role's default says.
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    // The serialisation point: one batch at a time past here, in commit order.
    let head: i64 = tx
        .query_one_cached("SELECT position FROM ledger_head FOR UPDATE", &[])
        .await?
        .try_get(0)?;
    let mut position = head;
    for job in batch.iter() {
        let savepoint = tx.savepoint("append").await?;
        let mut at = position;
        match append_in(&savepoint, &mut at, job).await {
            Ok(recorded) => {
                savepoint.commit().await?;
                position = at;
                answers.push(Ok(recorded));
            }
            Err(error) => {
                savepoint.rollback().await?;
                answers.push(Err(error));
            }
        }
    }
    if position != head {
        tx.execute_cached("UPDATE ledger_head SET position = $1", &[&position])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One append inside the batch's transaction, its events from `*position + 1` on.
async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    position: &mut i64,
    job: &Job,
) -> Result<Vec<RecordedEvent>, StoreError> {
    if let Some(fence) = job.side.leader_fence {
        let current: i64 = tx
            .query_one_cached("SELECT fence FROM check_leader", &[])
            .await?
            .try_get(0)?;
        if current as u64 != fence {
            return Err(StoreError::Fenced);
        }
    }
    let mut recorded = Vec::new();
    for append in &job.appends {
        let current = stream_version(tx, &append.stream_id).await?;
        if current != append.expected_version {
            return Err(StoreError::Conflict {
                stream_id: append.stream_id.clone(),
            });
        }
        for (offset, event) in append.events.iter().enumerate() {
            *position += 1;
            recorded.push(RecordedEvent {
                position: *position,
                stream_id: append.stream_id.clone(),
                version: current + offset as u64 + 1,
                owner_id: append.owner_id,
                recorded_at: job.recorded_at,
                event: event.clone(),
            });
        }
    }
    let at = job.recorded_at.to_string();
    for event in &recorded {
        let inserted = tx
            .execute_cached(
                INSERT_EVENT,
                &[
                    &event.position,
                    &event.stream_id,
                    &(event.version as i64),
                    &event.event.event_type(),
                    &event.event.payload().to_string(),
                    &event.owner_id.map(|o| o.to_string()),
                    &at,
                    &i64::from(PAYLOAD_VERSION),
                ],
            )
            .await;
        if let Err(error) = inserted {
            if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                return Err(StoreError::Conflict {
                    stream_id: event.stream_id.clone(),
                });
            }
            return Err(error.into());
        }
    }
    for key in &job.side.data_keys {
        tx.execute_cached(
            "INSERT INTO data_keys (credential_id, key_id, wrapped) VALUES ($1, $2, $3)",
            &[&key.credential_id.to_string(), &key.key_id, &key.wrapped],
        )
        .await?;
    }
    for content in &job.side.contents {
        tx.execute_cached(
            "INSERT INTO exchange_contents (exchange_id, credential_id, recorded_at, headers, body)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &content.exchange_id.to_string(),
                &content.credential_id.to_string(),
                &content.recorded_at.to_string(),
                &content.headers,
                &content.body,
            ],
        )
        .await?;
    }
    for event in &recorded {
        projections::apply(tx, event, projections::Rows::WithSideRows).await?;
    }
    Ok(recorded)
}

/// A read-only transaction over one snapshot, for a read that takes several statements.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Events after `after` up to `until`, applied to the views first on the search path; the
/// positions reached after each page.
async fn replay_views(
    tx: &deadpool_postgres::Transaction<'_>,
    mut after: i64,
    until: i64,
) -> Result<Vec<i64>, StoreError> {
    const PAGE: i64 = 5000;
    let mut reached = Vec::new();
    loop {
        let rows = tx
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position <= $2
                     ORDER BY position LIMIT $3"
                ),
                &[&after, &until, &PAGE],
            )
            .await?;
        if rows.is_empty() {
            return Ok(reached);
        }
        for row in &rows {
            let event = decode(row)?;
            after = event.position;
            projections::apply(tx, &event, projections::Rows::ViewsOnly).await?;
        }
        reached.push(after);
    }
}

/// Builds the views beside the live ones while the nodes serve, then swaps them in: the events
/// up to the head at the start are replayed from one snapshot into the schema `side` (appends
/// and reads go on meanwhile), then, under the head lock, the events appended since are applied
/// and the tables moved into place; only that last step holds anyone up. `client`'s session
/// is left with `side` on its search path: the caller discards it.
async fn rebuild_beside(
    client: &mut deadpool_postgres::Object,
    side: &str,
    progress: &mut Progress,
) -> Result<u64, StoreError> {
    let home: String = client
        .query_one("SELECT current_schema()", &[])
        .await?
        .try_get(0)?;
    // Statements this connection prepared before name the live tables: not reused here.
    client.statement_cache.clear();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {side}; SET search_path = {side}, {home}; {}",
            schema::VIEWS
        ))
        .await?;
    // 1. Beside: everything up to the head of one snapshot.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let snapshot: i64 = tx
        .query_one("SELECT position FROM ledger_head", &[])
        .await?
        .try_get(0)?;
    for reached in replay_views(&tx, 0, snapshot).await? {
        progress(reached as u64, snapshot as u64);
    }
    tx.commit().await?;
    // 2. The cut-over: what was appended meanwhile, then the swap, under the head lock.
    let tx = client.transaction().await?;
    let head: i64 = tx
        .query_one("SELECT position FROM ledger_head FOR UPDATE", &[])
        .await?
        .try_get(0)?;
    replay_views(&tx, snapshot, head).await?;
    let mut swap = String::new();
    for table in schema::PROJECTION_TABLES.split(", ") {
        swap.push_str(&format!(
            "DROP TABLE {home}.{table}; ALTER TABLE {side}.{table} SET SCHEMA {home}; "
        ));
    }
    swap.push_str(&format!("DROP SCHEMA {side}"));
    tx.batch_execute(&swap).await?;
    tx.commit().await?;
    progress(head as u64, head as u64);
    Ok(head as u64)
}

#[async_trait::async_trait]
impl EventStore for PostgresStore {
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        side: SideWrites,
        recorded_at: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Job {
            appends,
            side,
            recorded_at,
            answer,
        };
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::unavailable("the writer has stopped"))?;
        answered
            .await
            .map_err(|_| StoreError::unavailable("the writer stopped before answering"))?
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query_cached(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
                ),
                &[&stream_id, &(after_version as i64)],
            )
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        stream_version(&client, stream_id).await
    }

    /// Builds the views beside the live ones while the nodes serve, then swaps them in: the
    /// events up to the head at the start are replayed from one snapshot into a side schema
    /// (appends and reads go on), then, under the head lock, the events appended meanwhile are
    /// applied and the tables moved into place; only that last step holds anyone up.
    async fn rebuild(&self, mut progress: Progress) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let side = format!("rebuild_{}", uuid::Uuid::new_v4().simple());
        let rebuilt = rebuild_beside(&mut client, &side, &mut progress).await;
        // The session's search path named the side schema: never back into the pool.
        drop(deadpool_postgres::Object::take(client));
        if rebuilt.is_err() {
            if let Ok(client) = self.pool.get().await {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {side} CASCADE"))
                    .await;
            }
        }
        rebuilt
    }

    async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let cutoff = cutoff.to_string();
        tx.execute(
            "DELETE FROM provider_exchanges WHERE id IN
               (SELECT exchange_id FROM exchange_contents WHERE recorded_at < $1)",
            &[&cutoff],
        )
        .await?;
        let purged = tx
            .execute(
                "DELETE FROM exchange_contents WHERE recorded_at < $1",
                &[&cutoff],
            )
            .await?;
        tx.commit().await?;
        Ok(purged as usize)
    }

    async fn rewrap_keys(&self, rewrap: Rewrap) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT credential_id, key_id, wrapped FROM data_keys FOR UPDATE",
                &[],
            )
            .await?;
        for row in &rows {
            let credential_id: String = row.try_get(0)?;
            let old = WrappedKey {
                credential_id: credential_id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("data key id {credential_id}")))?,
                key_id: row.try_get(1)?,
                wrapped: row.try_get(2)?,
            };
            let new = rewrap(&old).map_err(StoreError::failed)?;
            tx.execute(
                "UPDATE data_keys SET key_id = $2, wrapped = $3 WHERE credential_id = $1",
                &[&credential_id, &new.key_id, &new.wrapped],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    async fn data_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT DISTINCT key_id FROM data_keys ORDER BY key_id", &[])
            .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// The node whose connection holds the leader lock leads; the lock goes with the
    /// connection (a node killed loses it at once).
    async fn lead(&self) -> Result<Option<u64>, StoreError> {
        let mut leader = self.leader.lock().await;
        if let Some((held, fence)) = leader.as_ref() {
            if held.execute("SELECT 1", &[]).await.is_ok() {
                return Ok(Some(*fence));
            }
            // The connection is gone, and the lock with it.
            *leader = None;
        }
        let client = self.pool.get().await?;
        let won: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?
            .try_get(0)?;
        if !won {
            return Ok(None);
        }
        let mut client = deadpool_postgres::Object::take(client);
        // A new fence, raised under the head lock: an append fenced by the old one either
        // committed before this or sees the new fence and fails.
        let tx = client.transaction().await?;
        tx.query_one("SELECT position FROM ledger_head FOR UPDATE", &[])
            .await?;
        let fence: i64 = tx
            .query_one(
                "UPDATE check_leader SET fence = fence + 1 RETURNING fence",
                &[],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        *leader = Some((client, fence as u64));
        Ok(Some(fence as u64))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::unavailable("the writer has stopped"));
        }
        let client = self.pool.get().await?;
        client.execute("SELECT 1", &[]).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReadModel for PostgresStore {
    async fn owner_by_username(&self, username: &str) -> Result<Option<OwnerView>, StoreError> {
        queries::owner_by_username(&self.pool.get().await?, username).await
    }

    async fn count_owners(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM owners", &[])
            .await?
            .try_get(0)?;
        Ok(count as u64)
    }

    async fn owner_by_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(OwnerId, Timestamp)>, StoreError> {
        queries::owner_by_token(&self.pool.get().await?, token_hash, now).await
    }

    async fn user(&self, owner: OwnerId, user: UserId) -> Result<Option<UserView>, StoreError> {
        // One snapshot for the user and its credentials.
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let user = queries::user_of(&tx, owner, user).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn users(
        &self,
        owner: OwnerId,
        query: UserQuery,
    ) -> Result<(Vec<UserView>, u64), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let users = queries::users_of(&tx, owner, &query).await?;
        tx.commit().await?;
        Ok(users)
    }

    async fn credential(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<CredentialView>, StoreError> {
        queries::credential_of(&self.pool.get().await?, owner, user, provider).await
    }

    async fn exchanges(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
        since: Timestamp,
    ) -> Result<Option<Vec<ExchangeView>>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let Some(credential) = queries::credential_of(&tx, owner, user, provider).await? else {
            return Ok(None);
        };
        let exchanges = queries::exchanges_of(&tx, credential.id, since).await?;
        tx.commit().await?;
        Ok(Some(exchanges))
    }

    async fn due_checks(
        &self,
        now: Timestamp,
        providers: &[Provider],
        limit: u32,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let keys: Vec<&str> = providers.iter().map(|p| p.key()).collect();
        queries::due_checks(&self.pool.get().await?, now, &keys, limit).await
    }

    async fn due_check(&self, id: CredentialId) -> Result<Option<DueCheck>, StoreError> {
        queries::due_check(&self.pool.get().await?, id).await
    }
}
