//! The ledger's storage, behind a narrow interface: append events to streams with an expected
//! version (projections updated in the same transaction), read a stream, read projections.
//!
//! SQLite never runs on the async executor: one writer thread owns the write connection and
//! takes jobs over a channel; reads run on blocking threads with read-only connections.
//!
//! Group commit: the writer takes every job that is waiting (up to `max_batch`) and runs them in
//! one transaction. One COMMIT, so one fsync, makes the whole batch durable, and only then is
//! each job answered: no request is acknowledged before its write is on disk. A job that fails
//! (a lost race, say) must be undone alone: the batch first runs without savepoints (whose
//! journals copy every page a job changes), and only if one of its jobs fails is it rolled back
//! and run again with each job in its own savepoint.

mod ledger;
mod projections;
pub mod schema;
pub mod views;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::domain::{DomainEvent, OwnerId, Timestamp};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first.
    #[error("stream {stream_id} was changed concurrently")]
    Conflict { stream_id: String },
    /// The database cannot be reached (writer gone, busy past the timeout, disk error).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("ledger data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
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

/// Rows written beside the ledger in an append's transaction.
#[derive(Clone, Debug, Default)]
pub struct SideWrites {
    pub contents: Vec<ExchangeContent>,
    pub data_keys: Vec<WrappedKey>,
}

/// A credential's data key, wrapped by the master key `key_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub credential_id: crate::domain::CredentialId,
    pub key_id: String,
    pub wrapped: Vec<u8>,
}

/// The redacted headers and body of one exchange, stored beside the ledger.
#[derive(Clone, Debug)]
pub struct ExchangeContent {
    pub exchange_id: crate::domain::ExchangeId,
    pub credential_id: crate::domain::CredentialId,
    pub recorded_at: Timestamp,
    pub headers: String,
    pub body: String,
}

/// A write job waiting for, or running in, the writer's transaction.
trait Job: Send {
    /// Runs the job in the open transaction, inside its own savepoint if `savepoint`, and keeps
    /// its result; returns whether it succeeded. It runs again if its batch is rerun.
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool;
    /// Forgets the result of an earlier run (its transaction was rolled back).
    fn forget(&mut self);
    /// Answers the caller once the transaction has ended: a failed job with its own error,
    /// whatever became of the transaction; a job that succeeded, with its result once
    /// `committed`; a job that never ran, with the transaction's error.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A `Job` for `Store::write`: the closure, its last result and the way back to its caller.
struct Pending<F, T> {
    job: F,
    result: Option<Result<T, StoreError>>,
    caller: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Pending<F, T>
where
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool {
        let result = if savepoint {
            in_savepoint(conn, &mut self.job)
        } else {
            (self.job)(conn)
        };
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn forget(&mut self) {
        self.result = None;
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match self.result {
            Some(result) => result.and_then(|value| committed.map(|()| value)),
            None => Err(committed.err().unwrap_or_else(|| {
                StoreError::Unavailable("the write transaction was rolled back".into())
            })),
        };
        let _ = self.caller.send(answer);
    }
}

#[derive(Clone)]
pub struct Store {
    // Dropped before the writer: a read-only connection cannot remove the WAL, so the writer's
    // must be the last to close.
    readers: Arc<ReadPool>,
    writer: Arc<Writer>,
    stats: Arc<WriterStats>,
}

/// The way to the writer thread, shared by every clone of a `Store`.
struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// When the last clone of the store goes: closes the channel, which ends the writer's loop
    /// once the jobs already sent have run, and waits for it, so that its connection closes
    /// (SQLite then checkpoints and removes the WAL) before the process exits.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        // (Never from the writer thread itself, should a job hold the last clone.)
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
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

/// What the writer has done so far.
#[derive(Debug, Default)]
struct WriterStats {
    /// Write jobs sent to the writer and not yet taken into a batch.
    queued: AtomicU64,
    /// Transactions committed (each one fsync with `synchronous=FULL`).
    commits: AtomicU64,
    /// Write jobs committed.
    jobs: AtomicU64,
    /// Batches rolled back and run again with a savepoint per job, because one of their jobs
    /// failed.
    reruns: AtomicU64,
}

/// A snapshot of `WriterStats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterCounts {
    pub queued: u64,
    pub commits: u64,
    pub jobs: u64,
    pub reruns: u64,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and its folder.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
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
        let writer_stats = stats.clone();
        let max_batch = options.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run_writer(&conn, &jobs, max_batch, &writer_stats))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        let readers = Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(READERS),
        });
        Ok(Store {
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
            return Err(StoreError::Unavailable("the writer has stopped".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer dropped a job".into()))?
    }

    /// The writer's counters (for tests and the benchmark).
    pub fn writer_counts(&self) -> WriterCounts {
        WriterCounts {
            queued: self.stats.queued.load(Ordering::SeqCst),
            commits: self.stats.commits.load(Ordering::SeqCst),
            jobs: self.stats.jobs.load(Ordering::SeqCst),
            reruns: self.stats.reruns.load(Ordering::SeqCst),
        }
    }

    /// Runs `query` on a read-only connection on a blocking thread.
    pub async fn read<T: Send + 'static>(
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
            .map_err(|_| StoreError::Unavailable("the read pool is closed".into()))?;
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    /// Appends to one or more streams in one transaction, each at its expected version, and
    /// applies the new events to the projections before committing. All or nothing.
    pub async fn append(
        &self,
        appends: Vec<StreamAppend>,
        recorded_at: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.append_with(appends, SideWrites::default(), recorded_at)
            .await
    }

    /// `append`, also storing, in the same transaction, what lives beside the ledger: the
    /// contents of recorded exchanges and the wrapped data keys of new credentials.
    pub async fn append_with(
        &self,
        appends: Vec<StreamAppend>,
        side: SideWrites,
        recorded_at: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.write(move |tx| {
            for key in &side.data_keys {
                tx.prepare_cached("INSERT OR FAIL INTO data_keys (credential_id, key_id, wrapped) VALUES (?1, ?2, ?3)")?
                    .execute(rusqlite::params![key.credential_id.to_string(), key.key_id, key.wrapped])?;
            }
            for content in &side.contents {
                tx.prepare_cached(
                    "INSERT OR FAIL INTO exchange_contents (exchange_id, credential_id, recorded_at, headers, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(rusqlite::params![
                    content.exchange_id.to_string(),
                    content.credential_id.to_string(),
                    content.recorded_at.to_string(),
                    content.headers,
                    content.body,
                ])?;
            }
            let mut recorded = Vec::new();
            for append in &appends {
                for event in ledger::append_events(tx, append, recorded_at)? {
                    projections::apply(tx, &event)?;
                    recorded.push(event);
                }
            }
            Ok(recorded)
        })
        .await
    }

    /// Every event of a stream, in version order.
    pub async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |conn| ledger::read_stream(conn, &stream_id))
            .await
    }

    /// The stream's current version (0 when it has no events).
    pub async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |conn| Ok(ledger::stream_version(conn, &stream_id)?))
            .await
    }

    /// Drops every projection and replays the whole ledger into fresh ones, in one
    /// transaction. `progress` is called with (events applied, total) now and then.
    pub async fn rebuild(
        &self,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<u64, StoreError> {
        let path = self.readers.path.clone();
        self.write(move |tx| replay(tx, &path, &mut progress)).await
    }

    /// Deletes exchange contents (and their log rows) recorded before `cutoff`. Events stay.
    pub async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.write(move |tx| {
            let cutoff = cutoff.to_string();
            // Through the contents' age index: provider_exchanges has none on its own.
            tx.execute(
                "DELETE FROM provider_exchanges WHERE id IN
                   (SELECT exchange_id FROM exchange_contents WHERE recorded_at < ?1)",
                [&cutoff],
            )?;
            let purged = tx.execute(
                "DELETE FROM exchange_contents WHERE recorded_at < ?1",
                [&cutoff],
            )?;
            Ok(purged)
        })
        .await
    }

    /// Re-wraps every data key with `rewrap` (master key rotation), in one transaction.
    pub async fn rewrap_keys(
        &self,
        rewrap: impl Fn(&WrappedKey) -> Result<WrappedKey, String> + Send + 'static,
    ) -> Result<usize, StoreError> {
        self.write(move |tx| {
            let keys: Vec<(String, String, Vec<u8>)> = tx
                .prepare("SELECT credential_id, key_id, wrapped FROM data_keys")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (credential_id, key_id, wrapped) in &keys {
                let id = credential_id
                    .parse()
                    .map_err(|_| StoreError::Corrupt("data key id".into()))?;
                let old = WrappedKey {
                    credential_id: id,
                    key_id: key_id.clone(),
                    wrapped: wrapped.clone(),
                };
                let new = rewrap(&old).map_err(StoreError::Corrupt)?;
                tx.execute(
                    "UPDATE data_keys SET key_id = ?2, wrapped = ?3 WHERE credential_id = ?1",
                    rusqlite::params![credential_id, new.key_id, new.wrapped],
                )?;
            }
            Ok(keys.len())
        })
        .await
    }

    /// The event at a global position, if any (for tests and tools).
    pub async fn event_at(&self, position: i64) -> Result<Option<RecordedEvent>, StoreError> {
        self.read(move |conn| ledger::event_at(conn, position))
            .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?))
            .await
    }
}

/// The writer thread: takes the jobs that are waiting, runs them in one transaction and answers
/// them after its COMMIT (or ROLLBACK); until the channel closes.
fn run_writer(
    conn: &Connection,
    jobs: &mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    stats: &WriterStats,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        stats.queued.fetch_sub(batch.len() as u64, Ordering::SeqCst);
        // Without savepoints first: most batches have no failing job. A job alone in its batch
        // never needs one, as its failure rolls back the transaction, which holds only its
        // writes.
        let mut ended = run_batch(conn, &mut batch, false);
        if matches!(ended, Ended::JobFailed) && batch.len() > 1 {
            stats.reruns.fetch_add(1, Ordering::SeqCst);
            ended = run_batch(conn, &mut batch, true);
        }
        let committed = match ended {
            Ended::Committed => {
                stats.commits.fetch_add(1, Ordering::SeqCst);
                stats.jobs.fetch_add(batch.len() as u64, Ordering::SeqCst);
                Ok(())
            }
            Ended::JobFailed => Err(StoreError::Unavailable("the write was rolled back".into())),
            Ended::Failed(error) => {
                tracing::error!(%error, jobs = batch.len(), "a write transaction failed");
                Err(error)
            }
        };
        for job in batch {
            job.answer(committed.clone());
        }
    }
}

/// How a batch's transaction ended.
enum Ended {
    Committed,
    /// A job failed with no savepoint to undo it alone: the transaction was rolled back.
    JobFailed,
    /// The transaction could not begin or commit, or SQLite rolled it back (disk full, I/O).
    Failed(StoreError),
}

/// Runs `batch` in one transaction: each job in its own savepoint if `savepoints` (a failed job
/// is undone alone and the others commit), else all in the transaction itself, which is rolled
/// back at the first failure.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>], savepoints: bool) -> Ended {
    for job in batch.iter_mut() {
        job.forget();
    }
    if let Err(error) = run(conn, "BEGIN IMMEDIATE") {
        return Ended::Failed(error.into());
    }
    for job in batch.iter_mut() {
        // Once SQLite has rolled the whole transaction back, later jobs must not run outside
        // it: they are answered with the transaction's error.
        if conn.is_autocommit() {
            break;
        }
        if !job.run(conn, savepoints) && !savepoints {
            rollback(conn);
            return Ended::JobFailed;
        }
    }
    if conn.is_autocommit() {
        return Ended::Failed(StoreError::Unavailable(
            "the write transaction was rolled back".into(),
        ));
    }
    match run(conn, "COMMIT") {
        Ok(()) => Ended::Committed,
        Err(error) => {
            rollback(conn);
            Ended::Failed(error.into())
        }
    }
}

/// Rolls back the open transaction, if SQLite has not already.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Runs `job` in a savepoint of the open transaction: its writes stay if it succeeds and are
/// undone, alone, if it fails.
fn in_savepoint<T>(
    conn: &Connection,
    job: &mut impl FnMut(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run(conn, "SAVEPOINT job")?;
    match job(conn) {
        Ok(value) => {
            run(conn, "RELEASE job")?;
            Ok(value)
        }
        Err(error) => {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
            Err(error)
        }
    }
}

/// Events handed from the reading thread of a replay to the applying one at a time.
const REPLAY_BATCH: usize = 1024;

/// Drops the projections and applies every event to fresh ones, inside the open transaction.
/// A second thread reads and decodes the events (through its own read-only connection: the
/// open transaction holds the write lock, so no event is appended meanwhile) while this one
/// applies them, so the two halves of the work run on two cores.
fn replay(
    tx: &Connection,
    path: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let total = ledger::last_position(tx)?;
    // The new projections are built beside the old ones, which are dropped only at the end, so
    // that new rows go to new pages rather than into freed ones (20% faster).
    schema::set_projections_aside(tx)?;
    schema::create_projection_tables(tx)?;
    // Credential rows stay in memory until the end: most events change one, and an UPDATE per
    // event would cost more than everything else the replay does.
    let mut credentials = projections::InMemory::default();
    let mut done = 0;
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel(4);
        // Applied batches go back to the reading thread, which allocated them, to be freed
        // there: glibc frees another thread's memory under its arena's lock.
        let (recycle, applied) = std::sync::mpsc::channel::<Vec<RecordedEvent>>();
        scope.spawn(move || {
            let read = || -> Result<(), StoreError> {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                let mut batch = Vec::with_capacity(REPLAY_BATCH);
                ledger::for_each_event_until(&conn, total, |event| {
                    batch.push(event);
                    if batch.len() == REPLAY_BATCH {
                        let next = match applied.try_recv() {
                            Ok(mut old) => {
                                old.clear();
                                old
                            }
                            Err(_) => Vec::with_capacity(REPLAY_BATCH),
                        };
                        let full = std::mem::replace(&mut batch, next);
                        // The applying side stopped (it failed): nothing more to do.
                        send.send(Ok(full))
                            .map_err(|_| StoreError::Unavailable("replay stopped".into()))?;
                    }
                    Ok(())
                })?;
                let _ = send.send(Ok(batch));
                Ok(())
            };
            if let Err(error) = read() {
                let _ = send.send(Err(error));
            }
        });
        for batch in receive {
            let batch = batch?;
            for event in &batch {
                projections::apply_to(tx, &mut credentials, event)?;
                done += 1;
                if done % 10_000 == 0 {
                    progress(done, total as u64);
                }
            }
            let _ = recycle.send(batch);
        }
        Ok::<_, StoreError>(())
    })?;
    if done != total as u64 {
        return Err(StoreError::Corrupt(format!(
            "replayed {done} events of {total}"
        )));
    }
    credentials.finish(tx)?;
    // Secondary indexes last: one sorted build each instead of an insert per row.
    schema::create_projection_indexes(tx)?;
    schema::drop_projections_set_aside(tx)?;
    progress(done, total as u64);
    Ok(done)
}

/// Runs a statement that is run often (transaction control) from the statement cache, rather
/// than parsing it again each time as `execute_batch` does.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Read-only connections kept open; reads beyond this many wait for one.
const READERS: usize = 4;

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

impl ReadPool {
    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn.set_prepared_statement_cache_capacity(schema::STATEMENT_CACHE);
                conn
            }
        };
        // A read sees one consistent snapshot: a user and its credentials come from the same commit.
        let result = (|| {
            run(&conn, "BEGIN")?;
            let out = query(&conn);
            run(&conn, "COMMIT")?;
            out
        })();
        if result.is_ok() || conn.is_autocommit() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Clock, CredentialId, ExchangeId, SystemClock};
    use rusqlite::params;

    fn token_append(stream: &str, expected_version: u64) -> StreamAppend {
        let owner_id = OwnerId::new();
        StreamAppend {
            stream_id: stream.to_owned(),
            expected_version,
            owner_id: Some(owner_id),
            events: vec![DomainEvent::OwnerTokenIssued {
                owner_id,
                token_hash: stream.to_owned(),
                expires_at: SystemClock.now(),
            }],
        }
    }

    /// Holds the writer on a job until the returned sender is used, so later writes queue up.
    async fn hold_writer(
        store: &Store,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let mut started = Some(started);
        let writer = store.clone();
        let job = tokio::spawn(async move {
            writer
                .write(move |_| {
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                    let _ = held.recv();
                    Ok(())
                })
                .await
                .unwrap();
        });
        running.await.unwrap();
        (release, job)
    }

    async fn wait_until_queued(store: &Store, jobs: u64) {
        for _ in 0..500 {
            if store.writer_counts().queued == jobs {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{jobs} writes never queued: {:?}", store.writer_counts());
    }

    #[tokio::test]
    async fn given_writes_waiting_when_the_writer_is_free_then_one_commit_makes_them_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let before = store.writer_counts();
        let (release, held) = hold_writer(&store).await;

        // 20 appends to distinct streams, and one that lost its race (wrong expected version).
        let mut writes = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .append(
                        vec![token_append(&format!("token:{i}"), 0)],
                        SystemClock.now(),
                    )
                    .await
            }));
        }
        let loser = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(vec![token_append("token:loser", 3)], SystemClock.now())
                    .await
            })
        };
        wait_until_queued(&store, 21).await;
        release.send(()).unwrap();
        held.await.unwrap();

        for write in writes {
            assert_eq!(write.await.unwrap().unwrap().len(), 1);
        }
        assert!(matches!(
            loser.await.unwrap(),
            Err(StoreError::Conflict { .. })
        ));
        let after = store.writer_counts();
        // The holding job's commit, then one commit for the 21 queued jobs, which ran again with
        // savepoints once the loser had failed.
        assert_eq!(after.commits - before.commits, 2, "{after:?}");
        assert_eq!(after.jobs - before.jobs, 22, "{after:?}");
        assert_eq!(after.reruns - before.reruns, 1, "{after:?}");

        // The loser's savepoint was rolled back alone; the others are durable and gap-free.
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let (count, max, losers): (i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), MAX(position), SUM(stream_id = 'token:loser') FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((count, max, losers), (20, 20, 0));
        let tokens: i64 = conn
            .query_row("SELECT COUNT(*) FROM owner_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tokens, 20);
    }

    /// A write job for `in_one_batch`.
    type TestWrite<T> = Box<dyn FnMut(&Connection) -> Result<T, StoreError> + Send>;

    /// Queues `writes` behind a held writer, releases it and returns each write's answer.
    async fn in_one_batch<T: Send + 'static>(
        store: &Store,
        writes: Vec<TestWrite<T>>,
    ) -> Vec<Result<T, StoreError>> {
        let (release, held) = hold_writer(store).await;
        let queued = store.writer_counts().queued + writes.len() as u64;
        let writes: Vec<_> = writes
            .into_iter()
            .map(|write| {
                let store = store.clone();
                tokio::spawn(async move { store.write(write).await })
            })
            .collect();
        wait_until_queued(store, queued).await;
        release.send(()).unwrap();
        held.await.unwrap();
        let mut answers = Vec::new();
        for write in writes {
            answers.push(write.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn given_a_batch_without_failures_then_it_commits_once_and_is_never_rerun() {
        let (_dir, path) = database();
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let before = store.writer_counts();
        let writes = (0..10)
            .map(|i| {
                Box::new(move |conn: &Connection| {
                    ledger::append_events(
                        conn,
                        &token_append(&format!("t:{i}"), 0),
                        SystemClock.now(),
                    )
                    .map(|events| events.len())
                })
                    as Box<dyn FnMut(&Connection) -> Result<usize, StoreError> + Send>
            })
            .collect();
        for answer in in_one_batch(&store, writes).await {
            assert_eq!(answer.unwrap(), 1);
        }
        let after = store.writer_counts();
        assert_eq!(
            (
                after.commits - before.commits,
                after.jobs - before.jobs,
                after.reruns
            ),
            (2, 11, 0),
            "{after:?}"
        );
        drop(store);
        assert_eq!(
            ledger::last_position(&Connection::open(&path).unwrap()).unwrap(),
            10
        );
    }

    #[tokio::test]
    async fn given_a_job_that_writes_then_fails_in_a_batch_then_only_its_writes_are_undone() {
        let (_dir, path) = database();
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        type Write = TestWrite<()>;
        let append = |stream: &'static str| -> Write {
            Box::new(move |conn: &Connection| {
                ledger::append_events(conn, &token_append(stream, 0), SystemClock.now()).map(|_| ())
            })
        };
        let failing: Write = Box::new(|conn: &Connection| {
            ledger::append_events(conn, &token_append("failed", 0), SystemClock.now())?;
            Err(StoreError::Conflict {
                stream_id: "failed".into(),
            })
        });
        let answers = in_one_batch(&store, vec![append("first"), failing, append("last")]).await;
        assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
        assert!(
            matches!(answers[1], Err(StoreError::Conflict { .. })),
            "{answers:?}"
        );
        assert_eq!(store.writer_counts().reruns, 1);
        drop(store);
        let streams = texts(
            &Connection::open(&path).unwrap(),
            "SELECT stream_id || ' ' || position FROM events ORDER BY position",
        );
        // Gap-free: the failed job's position was taken again by the job after it.
        assert_eq!(streams, ["first 1", "last 2"]);
    }

    #[tokio::test]
    async fn given_a_batch_of_one_when_writes_wait_then_each_gets_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_batch: 1,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("ledger.sqlite"), options).unwrap();
        let before = store.writer_counts();
        let (release, held) = hold_writer(&store).await;
        let writes: Vec<_> = (0..5)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(
                            vec![token_append(&format!("token:{i}"), 0)],
                            SystemClock.now(),
                        )
                        .await
                })
            })
            .collect();
        wait_until_queued(&store, 5).await;
        release.send(()).unwrap();
        held.await.unwrap();
        for write in writes {
            write.await.unwrap().unwrap();
        }
        let after = store.writer_counts();
        assert_eq!(after.commits - before.commits, 6, "{after:?}");
    }

    #[tokio::test]
    async fn a_job_that_fails_alone_in_its_transaction_leaves_nothing_and_answers_its_own_error() {
        let (_dir, path) = database();
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let failed = store
            .write(|conn| {
                conn.execute_batch("CREATE TABLE scratch (x); INSERT INTO scratch VALUES (1);")?;
                Err::<(), _>(StoreError::Conflict {
                    stream_id: "s".into(),
                })
            })
            .await;
        assert!(
            matches!(failed, Err(StoreError::Conflict { .. })),
            "{failed:?}"
        );
        // The writer goes on, and the failed job's writes were rolled back with its transaction.
        store
            .append(vec![token_append("s", 0)], SystemClock.now())
            .await
            .unwrap();
        let before = store.writer_counts();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let tables = texts(
            &conn,
            "SELECT name FROM sqlite_master WHERE name = 'scratch'",
        );
        assert!(tables.is_empty(), "{tables:?}");
        assert_eq!(ledger::last_position(&conn).unwrap(), 1);
        assert_eq!((before.commits, before.jobs), (1, 1), "{before:?}");
    }

    #[tokio::test]
    async fn when_the_last_handle_goes_the_database_is_closed_and_its_wal_removed() {
        let (_dir, path) = database();
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        store
            .append(vec![token_append("s", 0)], SystemClock.now())
            .await
            .unwrap();
        assert_eq!(store.read_stream("s").await.unwrap().len(), 1);
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        assert!(wal.exists());
        let other = store.clone();
        drop(store);
        assert!(wal.exists(), "another handle still uses the database");
        drop(other);
        assert!(!wal.exists(), "the writer's connection was not closed");
        assert_eq!(
            ledger::last_position(&Connection::open(&path).unwrap()).unwrap(),
            1
        );
    }

    /// `.cargo/config.toml` builds the bundled SQLite with one page cache per connection (not
    /// one shared behind a process-wide mutex, which the replay's two threads and the server's
    /// readers and writer contended on) and without memory statistics (a mutex per malloc).
    #[test]
    fn sqlite_is_built_with_a_page_cache_per_connection_and_no_memory_statistics() {
        let options = texts(
            &Connection::open_in_memory().unwrap(),
            "PRAGMA compile_options",
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[test]
    fn a_new_database_has_16_kib_pages_and_an_older_one_keeps_its_own() {
        let page_size = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let (_dir, new) = database();
        drop(Store::open(&new, StoreOptions::default()).unwrap());
        assert_eq!(page_size(&new), 16 * 1024);

        let (_older_dir, older) = older_database(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);",
        );
        drop(Store::open(&older, StoreOptions::default()).unwrap());
        assert_eq!(page_size(&older), 4096);
    }

    /// A database file in a new directory, removed when the `TempDir` is dropped.
    fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        (dir, path)
    }

    /// A database laid out by `sql` (an older version's tables), not yet opened by the store.
    fn older_database(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let (dir, path) = database();
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    /// Opens the store at `path` (which creates or brings up to date its tables) and closes it;
    /// then a plain connection to look inside.
    fn opened(path: &Path) -> Connection {
        drop(Store::open(path, StoreOptions::default()).unwrap());
        Connection::open(path).unwrap()
    }

    /// The first column of every row of `sql`, as text, in order.
    fn texts(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// What SQLite plans to do for `sql`: one line per step.
    fn query_plan(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(["credential", "2026-01-01"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn events_reads_one_credential_through_its_indexes_without_scanning_or_sorting() {
        let (_dir, path) = database();
        let conn = opened(&path);
        assert_eq!(
            query_plan(&conn, views::EXCHANGE_LOG_SINCE),
            ["SEARCH provider_exchanges USING COVERING INDEX exchanges_for_events (credential_id=? AND recorded_at>?)"],
        );
        assert_eq!(
            query_plan(&conn, views::EXCHANGE_CONTENTS_SINCE),
            ["SEARCH exchange_contents USING PRIMARY KEY (credential_id=? AND recorded_at>?)"],
        );
    }

    #[test]
    fn exchange_contents_of_an_older_database_are_moved_into_the_clustered_table_on_open() {
        // The layout before the contents were clustered by credential.
        let (_dir, path) = older_database(
            "CREATE TABLE exchange_contents (
                 exchange_id   TEXT PRIMARY KEY,
                 credential_id TEXT NOT NULL,
                 recorded_at   TEXT NOT NULL,
                 headers       TEXT NOT NULL,
                 body          TEXT NOT NULL
             );
             CREATE INDEX exchange_contents_by_age ON exchange_contents (recorded_at);
             CREATE INDEX exchange_contents_by_credential ON exchange_contents (credential_id);
             INSERT INTO exchange_contents VALUES
                 ('x1', 'c2', '2026-11-01T00:00:00Z', '{}', 'first'),
                 ('x2', 'c1', '2026-11-02T00:00:00Z', '{\"a\":1}', 'second'),
                 ('x3', 'c2', '2026-10-01T00:00:00Z', '{}', 'third');",
        );

        let conn = opened(&path);
        let rows: Vec<(String, String, String, String, String)> = conn
            .prepare("SELECT credential_id, recorded_at, exchange_id, headers, body FROM exchange_contents")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let row = |c: &str, at: &str, x: &str, h: &str, b: &str| {
            (
                c.to_owned(),
                at.to_owned(),
                x.to_owned(),
                h.to_owned(),
                b.to_owned(),
            )
        };
        // Every row kept, now in the table's key order: by credential, then time.
        assert_eq!(
            rows,
            [
                row("c1", "2026-11-02T00:00:00Z", "x2", "{\"a\":1}", "second"),
                row("c2", "2026-10-01T00:00:00Z", "x3", "{}", "third"),
                row("c2", "2026-11-01T00:00:00Z", "x1", "{}", "first"),
            ]
        );
        let objects = texts(
            &conn,
            "SELECT name FROM sqlite_master WHERE tbl_name LIKE 'exchange_contents%' AND sql IS NOT NULL ORDER BY name",
        );
        assert_eq!(objects, ["exchange_contents", "exchange_contents_by_age"]);
        // Opening again finds nothing to move.
        drop(conn);
        drop(Store::open(&path, StoreOptions::default()).unwrap());
    }

    #[test]
    fn an_older_exchange_log_keeps_its_rows_without_the_columns_nothing_reads_on_open() {
        // The layout before: the request's method and URL and the user in every log row.
        let (_dir, path) = older_database(
            "CREATE TABLE provider_exchanges (
                 id             TEXT PRIMARY KEY,
                 credential_id  TEXT    NOT NULL,
                 user_id        TEXT    NOT NULL,
                 request_method TEXT    NOT NULL,
                 request_url    TEXT    NOT NULL,
                 status_code    INTEGER NOT NULL,
                 recorded_at    TEXT    NOT NULL
             );
             CREATE INDEX exchanges_by_user ON provider_exchanges (user_id);
             CREATE INDEX exchanges_for_events
                 ON provider_exchanges (credential_id, recorded_at DESC, id DESC, status_code);
             INSERT INTO provider_exchanges VALUES
                 ('x1', 'c1', 'u1', 'POST', 'https://provider/token', 200, '2026-11-01T00:00:00Z'),
                 ('x2', 'c2', 'u2', 'GET', 'https://provider/me', 401, '2026-11-02T00:00:00Z');",
        );

        let conn = opened(&path);
        let columns = texts(
            &conn,
            "SELECT name FROM pragma_table_info('provider_exchanges')",
        );
        assert_eq!(
            columns,
            ["id", "credential_id", "status_code", "recorded_at"]
        );
        let rows: Vec<(String, String, u16, String)> = conn
            .prepare("SELECT id, credential_id, status_code, recorded_at FROM provider_exchanges ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let row = |x: &str, c: &str, status, at: &str| (x.into(), c.into(), status, at.into());
        assert_eq!(
            rows,
            [
                row("x1", "c1", 200, "2026-11-01T00:00:00Z"),
                row("x2", "c2", 401, "2026-11-02T00:00:00Z"),
            ]
        );
        // The old table and its index by user are gone; `/events` reads the index built anew.
        let objects = texts(
            &conn,
            "SELECT name FROM sqlite_master WHERE name LIKE '%exchanges%' ORDER BY name",
        );
        assert_eq!(
            objects,
            [
                "exchanges_for_events",
                "provider_exchanges",
                "sqlite_autoindex_provider_exchanges_1"
            ]
        );
        assert_eq!(
            query_plan(&conn, views::EXCHANGE_LOG_SINCE),
            ["SEARCH provider_exchanges USING COVERING INDEX exchanges_for_events (credential_id=? AND recorded_at>?)"],
        );
        drop(conn);
        assert_eq!(
            texts(&opened(&path), "SELECT id FROM provider_exchanges"),
            ["x1", "x2"]
        );
    }

    #[test]
    fn events_merges_log_and_contents_newest_first_and_shows_only_exchanges_with_both() {
        let (_dir, path) = database();
        let conn = opened(&path);
        let (credential, other) = (CredentialId::new(), CredentialId::new());
        let t1 = Timestamp::parse("2026-11-01T10:00:00Z").unwrap();
        let t2 = t1.plus(chrono::Duration::hours(1));
        let t3 = t2.plus(chrono::Duration::hours(1));
        let [e1, e2, e3, no_log, no_contents, others] = [(); 6].map(|_| ExchangeId::new());
        let content = |id: ExchangeId, of: CredentialId, at: Timestamp| {
            conn.execute(
                "INSERT INTO exchange_contents (credential_id, recorded_at, exchange_id, headers, body)
                 VALUES (?1, ?2, ?3, '{}', ?3)",
                params![of.to_string(), at.to_string(), id.to_string()],
            )
            .unwrap();
        };
        let log = |id: ExchangeId, of: CredentialId, at: Timestamp, status: u16| {
            conn.execute(
                "INSERT INTO provider_exchanges (id, credential_id, status_code, recorded_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), of.to_string(), status, at.to_string()],
            )
            .unwrap();
        };
        for (id, at, status) in [(e1, t1, 200), (e2, t2, 401), (e3, t2, 500)] {
            content(id, credential, at);
            log(id, credential, at, status);
        }
        content(no_log, credential, t3);
        log(no_contents, credential, t2, 200);
        content(others, other, t2);
        log(others, other, t2, 200);

        let shown = |since: Timestamp| -> Vec<(ExchangeId, u16, String, Timestamp)> {
            views::exchanges_of(&conn, credential, since)
                .unwrap()
                .into_iter()
                .map(|x| (x.id, x.status_code, x.body, x.recorded_at))
                .collect()
        };
        // Newest first, ties by id (newest id first), each with its own contents.
        assert_eq!(
            shown(t1),
            [
                (e3, 500, e3.to_string(), t2),
                (e2, 401, e2.to_string(), t2),
                (e1, 200, e1.to_string(), t1),
            ]
        );
        assert_eq!(
            shown(t2),
            [(e3, 500, e3.to_string(), t2), (e2, 401, e2.to_string(), t2)]
        );
        assert_eq!(shown(t3), []);
    }
}
