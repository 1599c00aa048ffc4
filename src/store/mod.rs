//! The ledger's storage, behind a narrow interface: append events to streams with an expected
//! version (projections updated in the same transaction), read a stream, read projections.
//!
//! SQLite never runs on the async executor: one writer thread owns the write connection and
//! takes jobs over a channel; reads run on blocking threads with read-only connections.

mod ledger;
mod projections;
pub mod schema;
pub mod views;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use crate::domain::{DomainEvent, OwnerId, Timestamp};

#[derive(Debug, thiserror::Error)]
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

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// `synchronous=FULL` (every commit reaches the disk) unless turned off for speed.
    pub synchronous_full: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous_full: true,
        }
    }
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
        schema::configure(&conn, options.synchronous_full)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::create_ledger(&tx)?;
        schema::create_projections(&tx)?;
        tx.commit()?;

        let (writer, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                for job in jobs {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        let readers = Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Store { writer, readers })
    }

    /// Runs `job` on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send(Box::new(move |conn| {
                let _ = tx.send(job(conn));
            }))
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer dropped a job".into()))?
    }

    /// Runs `query` on a read-only connection on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
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
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for key in &side.data_keys {
                tx.prepare_cached("INSERT INTO data_keys (credential_id, key_id, wrapped) VALUES (?1, ?2, ?3)")?
                    .execute(rusqlite::params![key.credential_id.to_string(), key.key_id, key.wrapped])?;
            }
            for content in &side.contents {
                tx.prepare_cached(
                    "INSERT INTO exchange_contents (exchange_id, credential_id, recorded_at, headers, body)
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
                for event in ledger::append_events(&tx, append, recorded_at)? {
                    projections::apply(&tx, &event)?;
                    recorded.push(event);
                }
            }
            tx.commit()?;
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
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let total = ledger::last_position(&tx)? as u64;
            schema::drop_projections(&tx)?;
            schema::create_projections(&tx)?;
            let mut done = 0;
            ledger::for_each_event(&tx, 0, |event| {
                projections::apply(&tx, &event)?;
                done += 1;
                if done % 10_000 == 0 {
                    progress(done, total);
                }
                Ok(())
            })?;
            tx.commit()?;
            progress(done, total);
            Ok(done)
        })
        .await
    }

    /// Deletes exchange contents (and their log rows) recorded before `cutoff`. Events stay.
    pub async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cutoff = cutoff.to_string();
            tx.execute(
                "DELETE FROM provider_exchanges WHERE recorded_at < ?1",
                [&cutoff],
            )?;
            let purged = tx.execute(
                "DELETE FROM exchange_contents WHERE recorded_at < ?1",
                [&cutoff],
            )?;
            tx.commit()?;
            Ok(purged)
        })
        .await
    }

    /// Re-wraps every data key with `rewrap` (master key rotation), in one transaction.
    pub async fn rewrap_keys(
        &self,
        rewrap: impl Fn(&WrappedKey) -> Result<WrappedKey, String> + Send + 'static,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
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
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
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
                conn
            }
        };
        // A read sees one consistent snapshot: a user and its credentials come from the same commit.
        let result = (|| {
            conn.execute_batch("BEGIN")?;
            let out = query(&conn);
            conn.execute_batch("COMMIT")?;
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
