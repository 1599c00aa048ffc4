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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

/// Creates the database file 0600 if it is missing, and makes it and its WAL and index 0600 if
/// they exist with a wider mode.
fn private_files(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct SqliteStore {
    // Dropped before the writer: a read-only connection cannot remove the WAL, so the writer's
    // must be the last to close.
    readers: Arc<ReadPool>,
    writer: Arc<Writer>,
    stats: Arc<WriterStats>,
    /// Set when a read found the database damaged: `ping` reports it from then on.
    damaged: Arc<std::sync::atomic::AtomicBool>,
    /// Held while this process serves the database (see `claim_serving`).
    serving: Arc<Mutex<Option<std::fs::File>>>,
    /// The database file existed but was empty when opened (emptied, or never written).
    found_empty: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// `synchronous=FULL` (every commit reaches the disk) unless turned off for speed.
    pub synchronous_full: bool,
    /// Most write jobs committed in one transaction (1: one commit, so one fsync, per write).
    pub max_batch: usize,
    /// Run SQLite's `quick_check` on open and refuse a damaged database (it reads every page:
    /// about a second per GB).
    pub integrity_check: bool,
    /// How long the writer waits for a lock another process holds before the write fails as
    /// unavailable (503).
    pub busy_timeout: std::time::Duration,
}

/// Default `max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 256;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous_full: true,
            max_batch: DEFAULT_MAX_BATCH,
            integrity_check: true,
            busy_timeout: schema::BUSY_TIMEOUT,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its folder.
    /// The folder it creates is private to this user (0700) and so are the database's files
    /// (0600: SQLite gives its WAL and index the database file's mode).
    pub fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let unavailable = |e: std::io::Error| StoreError::Unavailable(Arc::new(e));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(unavailable)?;
            }
        }
        let found_empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
        let was_empty = found_empty || !path.exists();
        private_files(path).map_err(unavailable)?;
        let mut conn = Connection::open(path)?;
        schema::set_page_size_of_new_database(&conn)?;
        schema::configure(&conn, options.synchronous_full)?;
        conn.busy_timeout(options.busy_timeout)?;
        if options.integrity_check && !was_empty {
            schema::check_integrity(&conn)?;
        }
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
            damaged: Default::default(),
            serving: Default::default(),
            found_empty,
        })
    }

    /// Whether the database file existed, empty, when opened (a missing one is a fresh start).
    pub fn found_empty(&self) -> bool {
        self.found_empty
    }

    /// Claims the database for this process's server until the store is dropped: a second
    /// server on the same file refuses to start rather than run beside the first (both would
    /// refresh the same tokens, and a provider that rotates them accepts only one). Other
    /// commands (`rebuild`, `rotate-key`, `owner create`) do not claim it: SQLite's own locking
    /// keeps them safe beside a server.
    pub fn claim_serving(&self) -> Result<(), StoreError> {
        let path = format!("{}.serve-lock", self.readers.path.display());
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        options.mode(0o600);
        let mut file = options
            .open(&path)
            .map_err(|e| StoreError::Unavailable(Arc::new(e)))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                file.set_len(0)
                    .and_then(|()| writeln!(file, "{}", std::process::id()))
                    .map_err(|e| StoreError::Unavailable(Arc::new(e)))?;
                *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                Err(StoreError::InUse(format!(
                    "{} is already being served by another process (pid {}, holding {path}); \
                     stop it first, or give this server another --database",
                    self.readers.path.display(),
                    holder.trim()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(Arc::new(e))),
        }
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
        let read = tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|e| StoreError::Failed(Arc::new(e)))?;
        if let Err(StoreError::Corrupt(_)) = &read {
            self.damaged.store(true, Ordering::SeqCst);
        }
        read
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

    async fn data_key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(events::data_key_ids).await
    }

    /// One server per file (`claim_serving`): it always leads, under one fence.
    async fn lead(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.damaged.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt(
                "a read found the database damaged; restore it from a backup".into(),
            ));
        }
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
