//! The database layout. The `events` table is the ledger; everything else is a projection
//! that `rebuild` can drop and recreate from it.

use rusqlite::{Connection, OptionalExtension};

/// How long a connection waits for a lock another holds, unless the store's options say
/// otherwise for the writer.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connection settings shared by the writer and the readers.
pub fn configure(conn: &Connection, synchronous_full: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if synchronous_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten with zeros, not left in free space: a shredded data key
    // must not survive in the file (the writer also truncates the WAL soon after, see
    // `writer::shred`).
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// SQLite's `quick_check`: every page read, the B-trees' structure verified (not index
/// contents). A damaged database is refused rather than served.
pub fn check_integrity(conn: &Connection) -> Result<(), crate::store::StoreError> {
    let checked = conn.prepare("PRAGMA quick_check(5)").and_then(|mut check| {
        check
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
    });
    let found = match checked {
        Ok(found) if found == ["ok"] => return Ok(()),
        Ok(found) => found,
        // Damage the check itself trips over.
        Err(error) => vec![error.to_string()],
    };
    Err(crate::store::StoreError::Corrupt(format!(
        "the database failed its integrity check ({}); restore it from a backup \
         (or start with --skip-integrity-check to serve it as it is)",
        found.join("; ")
    )))
}

/// Page size of a new database: 16 KiB rather than SQLite's 4 KiB. A rebuild writes a quarter
/// as many WAL frames (one `pwrite` each, and a checkpoint copies each again) and `/events`
/// reads a credential's run of rows in fewer pages; on the benchmark machine a rebuild of 1M
/// events took 1.44-1.65 s against 1.71-2.08 s. The cost: a commit of a few rows writes 4× the
/// bytes, so one create with nothing to batch it with takes about twice as long to reach the
/// disk (group commit shares that cost). An existing database keeps its page size (changing
/// it needs a VACUUM, which WAL mode does not allow in place).
pub const PAGE_SIZE: i64 = 16 * 1024;

/// Sets `PAGE_SIZE` on a database that has no pages yet; a no-op on any other.
pub fn set_page_size_of_new_database(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "page_size", PAGE_SIZE)
}

/// Prepared statements kept per connection: more than the writer and a reader use (rusqlite's
/// default of 16 is fewer than the projections alone, so a replay would prepare them again and
/// again).
pub const STATEMENT_CACHE: usize = 64;

const LEDGER: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    position      INTEGER PRIMARY KEY,          -- gap-free global order, 1, 2, 3, …
    stream_id     TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    event_type    TEXT    NOT NULL,
    event_version INTEGER NOT NULL DEFAULT 1,
    payload       TEXT    NOT NULL CHECK (json_valid(payload)),
    owner_id      TEXT,
    recorded_at   TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TRIGGER IF NOT EXISTS events_are_never_updated BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only: DELETE refused'); END;
"#;

/// Every projection table, in the order `rebuild` drops them.
pub const PROJECTION_TABLES: &[&str] = &[
    "provider_exchanges",
    "credentials",
    "users",
    "owner_tokens",
    "owners",
];

const PROJECTIONS: &str = r#"
CREATE TABLE IF NOT EXISTS owners (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS owner_tokens (
    token_hash TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT    NOT NULL,
    seq         INTEGER NOT NULL,               -- ledger position of its creation: list order
    name        TEXT,
    email       TEXT,
    phone       TEXT,
    address     TEXT,
    external_id TEXT,
    created_at  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    provider   TEXT NOT NULL,
    status     TEXT NOT NULL,
    fields     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_check_at        TEXT,                  -- NULL: wait for a replacement or a request
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_checked_at      TEXT,                  -- NULL: never checked
    status_reason        TEXT,                  -- why the status is what it is
    UNIQUE (user_id, provider)
);
-- What `/events` shows of an exchange besides its contents. The request's method and URL and
-- the user stay in the exchange's event: nothing reads them from here.
CREATE TABLE IF NOT EXISTS provider_exchanges (
    id             TEXT PRIMARY KEY,
    credential_id  TEXT    NOT NULL,
    status_code    INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL
);
"#;

/// The secondary indexes of the projection tables. A replay creates them after loading the rows
/// (one sorted build each instead of an insert per row).
const PROJECTION_INDEX_SQL: &str = r#"
CREATE INDEX IF NOT EXISTS users_by_owner ON users (owner_id, seq);
CREATE INDEX IF NOT EXISTS credentials_due ON credentials (next_check_at) WHERE next_check_at IS NOT NULL;
-- In answer order, ties broken by id, with every column `/events` reads from this table:
-- one credential's log is a run of adjacent index entries, read without sorting and without
-- visiting the table's rows (spread over the whole table in the order they were written).
CREATE INDEX IF NOT EXISTS exchanges_for_events
    ON provider_exchanges (credential_id, recorded_at DESC, id DESC, status_code);
"#;

/// The redacted headers and bodies of provider exchanges. Not the ledger and not a projection:
/// each row is written in the transaction that appends its `ProviderExchangeRecorded` event, and
/// the retention job deletes rows older than 30 days (and those of deleted credentials), so their
/// storage is reclaimed while the events table is never touched. `rebuild` keeps this table.
///
/// Stored in the order `/events` reads it, by credential then time (a `WITHOUT ROWID` table is
/// the B-tree of its primary key): one credential's exchanges sit side by side however many
/// other credentials' exchanges were written between them, so an answer reads a few pages
/// rather than one page per exchange.
const EXCHANGE_CONTENTS: &str = r#"
CREATE TABLE IF NOT EXISTS exchange_contents (
    credential_id TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    exchange_id   TEXT NOT NULL UNIQUE,
    headers       TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (credential_id, recorded_at, exchange_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS exchange_contents_by_age ON exchange_contents (recorded_at);
"#;

/// Moves the exchange contents of a database written before they were clustered by credential
/// (a rowid table with an index on `credential_id`) into the clustered table, in the open
/// transaction. Returns how many rows moved; 0 when there was nothing to do.
fn cluster_exchange_contents(conn: &Connection) -> rusqlite::Result<usize> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'exchange_contents'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_none_or(|sql| sql.contains("WITHOUT ROWID")) {
        return Ok(0);
    }
    conn.execute_batch(
        "DROP INDEX IF EXISTS exchange_contents_by_age;
         DROP INDEX IF EXISTS exchange_contents_by_credential;
         ALTER TABLE exchange_contents RENAME TO exchange_contents_unclustered;",
    )?;
    conn.execute_batch(EXCHANGE_CONTENTS)?;
    let moved = conn.execute(
        "INSERT OR FAIL INTO exchange_contents (credential_id, recorded_at, exchange_id, headers, body)
         SELECT credential_id, recorded_at, exchange_id, headers, body FROM exchange_contents_unclustered
         ORDER BY credential_id, recorded_at, exchange_id",
        [],
    )?;
    conn.execute_batch("DROP TABLE exchange_contents_unclustered;")?;
    Ok(moved)
}

/// Copies the exchange log of a database written when its rows also held the request's method
/// and URL and the user (unread; the events keep them) into the narrower table, in the open
/// transaction. Returns how many rows were copied; 0 when there was nothing to do.
fn narrow_exchange_log(conn: &Connection) -> rusqlite::Result<usize> {
    let wide = conn
        .prepare(
            "SELECT 1 FROM pragma_table_info('provider_exchanges') WHERE name = 'request_url'",
        )?
        .exists([])?;
    if !wide {
        return Ok(0);
    }
    // Its indexes go with it (older ones included); `create_projection_indexes` builds the
    // current ones afterwards.
    conn.execute_batch("ALTER TABLE provider_exchanges RENAME TO provider_exchanges_wide;")?;
    create_projection_tables(conn)?;
    let copied = conn.execute(
        "INSERT OR FAIL INTO provider_exchanges (id, credential_id, status_code, recorded_at)
         SELECT id, credential_id, status_code, recorded_at FROM provider_exchanges_wide",
        [],
    )?;
    conn.execute_batch("DROP TABLE provider_exchanges_wide;")?;
    Ok(copied)
}

/// Adds `last_checked_at` and `status_reason` to the credentials of a database written before
/// answers showed them, filled from the ledger as a rebuild would: the time of each
/// credential's last recorded check, and the reason of its last status change (checks recorded
/// before then gave none). In the open transaction; returns how many credentials were filled.
fn add_check_columns(conn: &Connection) -> rusqlite::Result<usize> {
    let exists = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'credentials'")?
        .exists([])?;
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('credentials') WHERE name = 'last_checked_at'")?
        .exists([])?;
    if !exists || has {
        return Ok(0);
    }
    conn.execute_batch(
        "ALTER TABLE credentials ADD COLUMN last_checked_at TEXT;
         ALTER TABLE credentials ADD COLUMN status_reason TEXT;",
    )?;
    let checked = conn.execute(
        // With max(), SQLite takes the bare columns from the row holding the maximum: the
        // credential's last check in ledger order, as a rebuild applies them.
        "UPDATE credentials SET last_checked_at = last.at
         FROM (SELECT payload ->> 'credentialId' AS id, recorded_at AS at, max(position)
               FROM events WHERE event_type = 'CredentialChecked' GROUP BY 1) AS last
         WHERE credentials.id = last.id",
        [],
    )?;
    // A status change without a reason keeps the one before, as the projection does.
    conn.execute(
        "UPDATE credentials SET status_reason = last.reason
         FROM (SELECT payload ->> 'credentialId' AS id, payload ->> 'reason' AS reason,
                      max(position) FROM events
               WHERE event_type = 'CredentialStatusChanged' AND payload ->> 'reason' IS NOT NULL
               GROUP BY 1) AS last
         WHERE credentials.id = last.id",
        [],
    )?;
    Ok(checked)
}

/// One wrapped data key per live credential (see `crate::crypto`). Deleted in the transaction
/// that deletes or replaces its credential: crypto-shredding. `rebuild` keeps this table.
const DATA_KEYS: &str = r#"
CREATE TABLE IF NOT EXISTS data_keys (
    credential_id TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL,
    wrapped       BLOB NOT NULL
);
"#;

/// Creates the ledger's tables, or brings those of an older database up to date (see
/// `cluster_exchange_contents`).
pub fn create_ledger(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(LEDGER)?;
    let moved = cluster_exchange_contents(conn)?;
    if moved > 0 {
        tracing::info!(rows = moved, "exchange contents now stored by credential");
    }
    conn.execute_batch(EXCHANGE_CONTENTS)?;
    conn.execute_batch(DATA_KEYS)
}

/// Creates the projections, or brings those of an older database up to date (see
/// `add_check_columns` and `narrow_exchange_log`).
pub fn create_projections(conn: &Connection) -> rusqlite::Result<()> {
    let filled = add_check_columns(conn)?;
    if filled > 0 {
        tracing::info!(
            credentials = filled,
            "credentials now show when they were last checked"
        );
    }
    let copied = narrow_exchange_log(conn)?;
    if copied > 0 {
        tracing::info!(
            rows = copied,
            "exchange log rows now hold only what /events reads"
        );
    }
    create_projection_tables(conn)?;
    create_projection_indexes(conn)
}

/// The projection tables, without their secondary indexes.
pub fn create_projection_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(PROJECTIONS)
}

pub fn create_projection_indexes(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(PROJECTION_INDEX_SQL)
}

/// Renames the projection tables to `<table>_replaced` (dropping their secondary indexes, whose
/// names the new tables reuse), so that new projections can be built beside them.
pub fn set_projections_aside(conn: &Connection) -> rusqlite::Result<()> {
    for table in PROJECTION_TABLES {
        // Declared indexes only: those SQLite made for a PRIMARY KEY or UNIQUE (no `sql`) go
        // with their table.
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
            )?
            .query_map([table], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for index in indexes {
            conn.execute_batch(&format!("DROP INDEX \"{index}\";"))?;
        }
    }
    for table in PROJECTION_TABLES {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {table}_replaced; ALTER TABLE {table} RENAME TO {table}_replaced;"
        ))?;
    }
    Ok(())
}

pub fn drop_projections_set_aside(conn: &Connection) -> rusqlite::Result<()> {
    for table in PROJECTION_TABLES {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}_replaced;"))?;
    }
    Ok(())
}
