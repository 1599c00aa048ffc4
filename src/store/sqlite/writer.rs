//! The writer thread and group commit.
//!
//! One thread owns the write connection and takes jobs over a channel. Group commit: it takes
//! every job that is waiting (up to `max_batch`) and runs them in one transaction. One COMMIT,
//! so one fsync, makes the whole batch durable, and only then is each job answered: no request
//! is acknowledged before its write is on disk. A job that fails (a lost race, say) must be
//! undone alone: the batch first runs without savepoints (whose journals copy every page a job
//! changes), and only if one of its jobs fails is it rolled back and run again with each job
//! in its own savepoint.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// A write job waiting for, or running in, the writer's transaction.
pub(super) trait Job: Send {
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
pub(super) struct Pending<F, T> {
    pub(super) job: F,
    pub(super) result: Option<Result<T, StoreError>>,
    pub(super) caller: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
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
                StoreError::unavailable("the write transaction was rolled back")
            })),
        };
        let _ = self.caller.send(answer);
    }
}

/// The way to the writer thread, shared by every clone of a `Store`.
pub(super) struct Writer {
    pub(super) jobs: mpsc::Sender<Box<dyn Job>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
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

/// What the writer has done so far.
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    /// Write jobs sent to the writer and not yet taken into a batch.
    pub(super) queued: AtomicU64,
    /// Transactions committed (each one fsync with `synchronous=FULL`).
    pub(super) commits: AtomicU64,
    /// Write jobs committed.
    pub(super) jobs: AtomicU64,
    /// Batches rolled back and run again with a savepoint per job, because one of their jobs
    /// failed.
    pub(super) reruns: AtomicU64,
    /// Set (by the write connection's update hook) when a data key was deleted or re-wrapped;
    /// cleared when the writer has shredded its old copies (see `shred`).
    pub(super) shredded: AtomicBool,
    /// Checkpoints that truncated the WAL after a shred.
    pub(super) shred_checkpoints: AtomicU64,
}

/// How soon after a data key is deleted its old copies in the WAL are overwritten: the WAL is
/// checkpointed and truncated this long after the first shred, busy or not (later shreds
/// meanwhile share that checkpoint).
pub(super) const SHRED_WITHIN: Duration = Duration::from_millis(500);
/// How long to wait before trying again when readers kept a checkpoint from finishing.
const SHRED_RETRY: Duration = Duration::from_millis(100);

/// A snapshot of `WriterStats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterCounts {
    pub queued: u64,
    pub commits: u64,
    pub jobs: u64,
    pub reruns: u64,
    pub shred_checkpoints: u64,
}

/// The writer thread: takes the jobs that are waiting, runs them in one transaction and answers
/// them after its COMMIT (or ROLLBACK); until the channel closes.
pub(super) fn run_writer(
    conn: &Connection,
    jobs: &mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    stats: &WriterStats,
) {
    // When the WAL must be checkpointed and truncated because a data key was shredded.
    let mut shred_at: Option<Instant> = None;
    loop {
        if stats.shredded.swap(false, Ordering::SeqCst) {
            shred_at.get_or_insert_with(|| Instant::now() + SHRED_WITHIN);
        }
        if shred_at.is_some_and(|at| at <= Instant::now()) {
            shred_at = (!shred(conn, stats)).then(|| Instant::now() + SHRED_RETRY);
            continue;
        }
        let first = match shred_at {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Some(at) => match jobs.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    shred(conn, stats);
                    return;
                }
            },
        };
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
            Ended::JobFailed => Err(StoreError::unavailable("the write was rolled back")),
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

/// Overwrites the old copies of shredded data keys: secure_delete has zeroed them in the pages
/// the deleting commit wrote, but the WAL still holds the pages as earlier commits wrote them.
/// A checkpoint copies the current pages into the database file and TRUNCATE empties the WAL.
/// Returns false when readers kept it from finishing (try again soon).
fn shred(conn: &Connection, stats: &WriterStats) -> bool {
    let done = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|busy| busy == 0);
    match done {
        Ok(true) => {
            stats.shred_checkpoints.fetch_add(1, Ordering::SeqCst);
            true
        }
        Ok(false) => false,
        Err(error) => {
            tracing::warn!(%error, "could not checkpoint the WAL after a shred; trying again");
            false
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
        return Ended::Failed(StoreError::unavailable(
            "the write transaction was rolled back",
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

/// Runs a statement that is run often (transaction control) from the statement cache, rather
/// than parsing it again each time as `execute_batch` does.
pub(super) fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}
