//! The SQLite store's own internals: group commit, page size, migrations, query plans.

use super::*;
use crate::domain::{Clock, CredentialId, DomainEvent, ExchangeId, SystemClock};
use crate::store::{EventStore, SharedStore};
use rusqlite::params;
use std::path::PathBuf;

mod contract {
    use super::*;

    /// A fresh store in a new directory (removed when the directory goes).
    fn open() -> Option<(tempfile::TempDir, SharedStore)> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ledger.sqlite"), StoreOptions::default());
        Some((dir, Arc::new(store.unwrap())))
    }

    store_contract!(open());
}

impl SqliteStore {
    /// `append` with no side writes.
    async fn append_now(
        &self,
        appends: Vec<StreamAppend>,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::append(self, appends, SideWrites::default(), now).await
    }
}

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
    store: &SqliteStore,
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

async fn wait_until_queued(store: &SqliteStore, jobs: u64) {
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
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    let before = store.writer_counts();
    let (release, held) = hold_writer(&store).await;

    // 20 appends to distinct streams, and one that lost its race (wrong expected version).
    let mut writes = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            store
                .append_now(
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
                .append_now(vec![token_append("token:loser", 3)], SystemClock.now())
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
    store: &SqliteStore,
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
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    let before = store.writer_counts();
    let writes = (0..10)
        .map(|i| {
            Box::new(move |conn: &Connection| {
                events::append_events(conn, &token_append(&format!("t:{i}"), 0), SystemClock.now())
                    .map(|events| events.len())
            }) as Box<dyn FnMut(&Connection) -> Result<usize, StoreError> + Send>
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
        events::last_position(&Connection::open(&path).unwrap()).unwrap(),
        10
    );
}

#[tokio::test]
async fn given_a_job_that_writes_then_fails_in_a_batch_then_only_its_writes_are_undone() {
    let (_dir, path) = database();
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    type Write = TestWrite<()>;
    let append = |stream: &'static str| -> Write {
        Box::new(move |conn: &Connection| {
            events::append_events(conn, &token_append(stream, 0), SystemClock.now()).map(|_| ())
        })
    };
    let failing: Write = Box::new(|conn: &Connection| {
        events::append_events(conn, &token_append("failed", 0), SystemClock.now())?;
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
    let store = SqliteStore::open(&dir.path().join("ledger.sqlite"), options).unwrap();
    let before = store.writer_counts();
    let (release, held) = hold_writer(&store).await;
    let writes: Vec<_> = (0..5)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_now(
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
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
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
        .append_now(vec![token_append("s", 0)], SystemClock.now())
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
    assert_eq!(events::last_position(&conn).unwrap(), 1);
    assert_eq!((before.commits, before.jobs), (1, 1), "{before:?}");
}

#[tokio::test]
async fn when_the_last_handle_goes_the_database_is_closed_and_its_wal_removed() {
    let (_dir, path) = database();
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    store
        .append_now(vec![token_append("s", 0)], SystemClock.now())
        .await
        .unwrap();
    assert_eq!(store.read_stream("s", 0).await.unwrap().len(), 1);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(wal.exists());
    let other = store.clone();
    drop(store);
    assert!(wal.exists(), "another handle still uses the database");
    drop(other);
    assert!(!wal.exists(), "the writer's connection was not closed");
    assert_eq!(
        events::last_position(&Connection::open(&path).unwrap()).unwrap(),
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
    drop(SqliteStore::open(&new, StoreOptions::default()).unwrap());
    assert_eq!(page_size(&new), 16 * 1024);

    let (_older_dir, older) =
        older_database("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);");
    drop(SqliteStore::open(&older, StoreOptions::default()).unwrap());
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
    drop(SqliteStore::open(path, StoreOptions::default()).unwrap());
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
        query_plan(&conn, queries::EXCHANGE_LOG_SINCE),
        ["SEARCH provider_exchanges USING COVERING INDEX exchanges_for_events (credential_id=? AND recorded_at>?)"],
    );
    assert_eq!(
        query_plan(&conn, queries::EXCHANGE_CONTENTS_SINCE),
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
        .prepare(
            "SELECT credential_id, recorded_at, exchange_id, headers, body FROM exchange_contents",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
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
    drop(SqliteStore::open(&path, StoreOptions::default()).unwrap());
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
        query_plan(&conn, queries::EXCHANGE_LOG_SINCE),
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
        queries::exchanges_of(&conn, credential, since)
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

#[test]
fn a_constraint_violation_is_a_failure_and_a_locked_database_is_unavailable() {
    let (_dir, path) = database();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1);")
        .unwrap();
    let duplicate = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    let failed = StoreError::from(duplicate);
    assert!(matches!(failed, StoreError::Failed(_)), "{failed:?}");
    let cause = std::error::Error::source(&failed).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("UNIQUE")),
        "the cause is kept"
    );

    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2);")
        .unwrap();
    let other = Connection::open(&path).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = other.execute("INSERT INTO t VALUES (3)", []).unwrap_err();
    let unavailable = StoreError::from(busy);
    assert!(
        matches!(unavailable, StoreError::Unavailable(_)),
        "{unavailable:?}"
    );

    use rusqlite::ffi;
    let of = |code| StoreError::from(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
    for code in [
        ffi::SQLITE_BUSY,
        ffi::SQLITE_LOCKED,
        ffi::SQLITE_FULL,
        ffi::SQLITE_IOERR,
    ] {
        assert!(matches!(of(code), StoreError::Unavailable(_)), "{code}");
    }
    for code in [
        ffi::SQLITE_CONSTRAINT,
        ffi::SQLITE_MISMATCH,
        ffi::SQLITE_ERROR,
    ] {
        assert!(matches!(of(code), StoreError::Failed(_)), "{code}");
    }
    assert!(matches!(of(ffi::SQLITE_CORRUPT), StoreError::Corrupt(_)));
}
