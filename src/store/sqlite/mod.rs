//! The embedded store: one SQLite file in WAL mode.
//!
//! SQLite never runs on the async executor: one writer thread owns the write connection and
//! takes jobs over a channel (group commit, see `writer`); reads run on blocking threads with
//! read-only connections (`read_pool`). The SQL itself is small functions over a connection:
//! `events` (the ledger), `projections` (applied in the append's transaction), `queries` (the
//! views), `schema` (layout and migrations), `replay` (rebuild from position 0).

mod events;
mod profile;
mod projections;
mod queries;
mod read_pool;
mod replay;
pub mod schema;
#[cfg(test)]
mod tests;
mod writer;

use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

use super::{
    DueCheck, EventStore, ExchangeView, OwnerView, Progress, ReadModel, RecordedEvent, Rewrap,
    SideWrites, StoreError, StreamAppend, UserQuery, UserView,
};
use crate::domain::{CredentialId, OwnerId, Provider, Timestamp, UserId};
use read_pool::ReadPool;
use writer::{Job, Pending, Writer, WriterStats};

pub use writer::WriterCounts;

impl From<rusqlite::Error> for StoreError {
    /// Busy, locked, full, I/O and the like may pass; anything else (a constraint violation, a
    /// type mismatch, a bad statement) is a bug, which retrying will not fix.
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match error.sqlite_error_code() {
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::DiskFull
                | C::SystemIoFailure
                | C::CannotOpen
                | C::OutOfMemory
                | C::ReadOnly
                | C::FileLockingProtocolFailed,
            ) => StoreError::Unavailable(Arc::new(error)),
            Some(C::DatabaseCorrupt | C::NotADatabase) => StoreError::Corrupt(error.to_string()),
            _ => StoreError::Failed(Arc::new(error)),
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    // Dropped before the writer: a read-only connection cannot remove the WAL, so the writer's
    // must be the last to close.
    readers: Arc<ReadPool>,
    writer: Arc<Writer>,
    stats: Arc<WriterStats>,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// `synchronous=FULL` (every commit reaches the disk) unless turned off for speed.
    pub synchronous_full: bool,
    /// Most write jobs committed in one transaction (1: one commit, so one fsync, per write).
    pub max_batch: usize,
}

/// Default `max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 256;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous_full: true,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its folder.
    pub fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(Arc::new(e)))?;
        }
        let mut conn = Connection::open(path)?;
        schema::set_page_size_of_new_database(&conn)?;
        schema::configure(&conn, options.synchronous_full)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::create_ledger(&tx)?;
        schema::create_projections(&tx)?;
        tx.commit()?;

        let (writer, jobs) = mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(WriterStats::default());
        let hook_stats = stats.clone();
        conn.update_hook(Some(
            move |action: rusqlite::hooks::Action, _: &str, table: &str, _: i64| {
                if table == "data_keys" && action != rusqlite::hooks::Action::SQLITE_INSERT {
                    hook_stats.shredded.store(true, Ordering::SeqCst);
                }
            },
        ));
        let writer_stats = stats.clone();
        let max_batch = options.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer::run_writer(&conn, &jobs, max_batch, &writer_stats))
            .map_err(|e| StoreError::Unavailable(Arc::new(e)))?;
        let readers = Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(read_pool::READERS),
        });
        Ok(SqliteStore {
            writer: Arc::new(Writer {
                jobs: writer,
                thread: Some(writer_thread),
            }),
            readers,
            stats,
        })
    }

    /// Runs `job` on the writer thread, inside a transaction it may share with other jobs;
    /// answers once that transaction has committed. A job that fails is rolled back alone. The
    /// job may run more than once (its batch is rerun when another of its jobs fails), each time
    /// in a transaction that is rolled back or committed with it, so it must only write through
    /// `conn`.
    async fn write<T: Send + 'static>(
        &self,
        job: impl FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (caller, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            job,
            result: None,
            caller,
        });
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        if self.writer.jobs.send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::unavailable("the writer has stopped"));
        }
        answer
            .await
            .map_err(|_| StoreError::unavailable("the writer dropped a job"))?
    }

    /// The writer's counters (for tests and the benchmark).
    pub fn writer_counts(&self) -> WriterCounts {
        WriterCounts {
            queued: self.stats.queued.load(Ordering::SeqCst),
            commits: self.stats.commits.load(Ordering::SeqCst),
            jobs: self.stats.jobs.load(Ordering::SeqCst),
            reruns: self.stats.reruns.load(Ordering::SeqCst),
            shred_checkpoints: self.stats.shred_checkpoints.load(Ordering::SeqCst),
        }
    }

    /// Runs `query` on a read-only connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        // At most `permits` reads at once: a bounded set of connections (and page caches) and
        // blocking threads, however many requests wait.
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::unavailable("the read pool is closed"))?;
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|e| StoreError::Failed(Arc::new(e)))?
    }
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        side: SideWrites,
        recorded_at: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.write(move |tx| {
            for key in &side.data_keys {
                events::insert_data_key(tx, key)?;
            }
            for content in &side.contents {
                events::insert_exchange_content(tx, content)?;
            }
            let mut recorded = Vec::new();
            for append in &appends {
                for event in events::append_events(tx, append, recorded_at)? {
                    projections::apply(tx, &event)?;
                    recorded.push(event);
                }
            }
            Ok(recorded)
        })
        .await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |conn| events::read_stream(conn, &stream_id, after_version))
            .await
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |conn| Ok(events::stream_version(conn, &stream_id)?))
            .await
    }

    /// In one transaction on the writer (no append runs meanwhile).
    async fn rebuild(&self, mut progress: Progress) -> Result<u64, StoreError> {
        let path = self.readers.path.clone();
        self.write(move |tx| replay::replay(tx, &path, &mut progress))
            .await
    }

    async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.write(move |tx| events::purge_exchanges(tx, cutoff))
            .await
    }

    async fn rewrap_keys(&self, rewrap: Rewrap) -> Result<usize, StoreError> {
        self.write(move |tx| events::rewrap_keys(tx, &rewrap)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?))
            .await
    }
}

#[async_trait::async_trait]
impl ReadModel for SqliteStore {
    async fn owner_by_username(&self, username: &str) -> Result<Option<OwnerView>, StoreError> {
        let username = username.to_owned();
        self.read(move |conn| queries::owner_by_username(conn, &username))
            .await
    }

    async fn count_owners(&self) -> Result<u64, StoreError> {
        self.read(queries::count_owners).await
    }

    async fn owner_by_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(OwnerId, Timestamp)>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| queries::owner_by_token(conn, &token_hash, now))
            .await
    }

    async fn user(&self, owner: OwnerId, user: UserId) -> Result<Option<UserView>, StoreError> {
        self.read(move |conn| queries::user_of(conn, owner, user))
            .await
    }

    async fn users(
        &self,
        owner: OwnerId,
        query: UserQuery,
    ) -> Result<(Vec<UserView>, u64), StoreError> {
        self.read(move |conn| queries::users_of(conn, owner, &query))
            .await
    }

    async fn credential(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<super::CredentialView>, StoreError> {
        self.read(move |conn| queries::credential_of(conn, owner, user, provider))
            .await
    }

    async fn exchanges(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
        since: Timestamp,
    ) -> Result<Option<Vec<ExchangeView>>, StoreError> {
        self.read(move |conn| {
            queries::credential_of(conn, owner, user, provider)?
                .map(|credential| queries::exchanges_of(conn, credential.id, since))
                .transpose()
        })
        .await
    }

    async fn due_checks(
        &self,
        now: Timestamp,
        providers: &[Provider],
        limit: u32,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let keys: Vec<&str> = providers.iter().map(|p| p.key()).collect();
        let providers = serde_json::json!(keys).to_string();
        self.read(move |conn| queries::due_checks(conn, now, &providers, limit))
            .await
    }

    async fn due_check(&self, id: CredentialId) -> Result<Option<DueCheck>, StoreError> {
        self.read(move |conn| queries::due_check(conn, id)).await
    }
}
