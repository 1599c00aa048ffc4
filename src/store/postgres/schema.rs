//! The PostgreSQL tables: the ledger (append-only, one head row that serialises appends), the
//! rows beside it, and the projections. Times are stored as the ledger writes them (RFC 3339
//! text, fixed width, UTC) and compared byte-wise (`COLLATE "C"`), as SQLite compares them.
//! Text that a client chooses (profile fields, owner names) is stored as its UTF-8 bytes
//! (`BYTEA`): PostgreSQL's `TEXT` refuses U+0000, which SQLite (and the API) accept, and bytes
//! compare and sort as SQLite's text does. Exchange contents never hold U+0000
//! (`checks::redact::body`); every other text column holds JSON or text this service writes.

/// The ledger and the rows beside it, idempotent; run under the migration lock.
pub const LEDGER: &str = r#"
CREATE TABLE IF NOT EXISTS ledger_head (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    position  BIGINT  NOT NULL              -- the last position handed out
);
INSERT INTO ledger_head (only_row, position) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS check_leader (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    fence     BIGINT  NOT NULL              -- raised by each new leader of the checks
);
INSERT INTO check_leader (only_row, fence) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS events (
    position      BIGINT  PRIMARY KEY,      -- gap-free global order, in commit order
    stream_id     TEXT    NOT NULL,
    version       BIGINT  NOT NULL CHECK (version >= 1),
    event_type    TEXT    NOT NULL,
    event_version BIGINT  NOT NULL DEFAULT 1,
    payload       TEXT    NOT NULL,
    owner_id      TEXT,
    recorded_at   TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE OR REPLACE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the events table is append-only: % refused', TG_OP; END $$;
DROP TRIGGER IF EXISTS events_are_never_changed ON events;
CREATE TRIGGER events_are_never_changed BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
DROP TRIGGER IF EXISTS events_are_never_truncated ON events;
CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();
CREATE TABLE IF NOT EXISTS exchange_contents (
    credential_id TEXT NOT NULL,
    recorded_at   TEXT COLLATE "C" NOT NULL,
    exchange_id   TEXT COLLATE "C" NOT NULL UNIQUE,
    headers       TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (credential_id, recorded_at, exchange_id)
);
CREATE INDEX IF NOT EXISTS exchange_contents_by_age ON exchange_contents (recorded_at);
CREATE TABLE IF NOT EXISTS data_keys (
    credential_id TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL,
    wrapped       BYTEA NOT NULL
);
"#;

/// The projection tables and their indexes (in the schema first on the search path: the
/// live one, or a rebuild's side schema).
pub const VIEWS: &str = r#"
CREATE TABLE IF NOT EXISTS owners (
    id            TEXT PRIMARY KEY,
    username      BYTEA NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS owner_tokens (
    token_hash TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id          TEXT COLLATE "C" PRIMARY KEY,
    owner_id    TEXT   NOT NULL,
    seq         BIGINT NOT NULL,            -- ledger position of its creation: list order
    name        BYTEA,
    email       BYTEA,
    phone       BYTEA,
    address     BYTEA,
    external_id BYTEA,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS users_by_owner ON users (owner_id, seq);
CREATE TABLE IF NOT EXISTS credentials (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    owner_id             TEXT NOT NULL,
    provider             TEXT COLLATE "C" NOT NULL,
    status               TEXT NOT NULL,
    fields               TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    next_check_at        TEXT COLLATE "C",  -- NULL: wait for a replacement or a request
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_checked_at      TEXT,              -- NULL: never checked
    status_reason        TEXT,
    UNIQUE (user_id, provider)
);
CREATE INDEX IF NOT EXISTS credentials_due ON credentials (next_check_at)
    WHERE next_check_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS provider_exchanges (
    id            TEXT COLLATE "C" PRIMARY KEY,
    credential_id TEXT   NOT NULL,
    status_code   BIGINT NOT NULL,
    recorded_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_for_events
    ON provider_exchanges (credential_id, recorded_at DESC, id DESC);
"#;

/// The projection tables, emptied by a rebuild (the ledger and the rows beside it stay).
pub const PROJECTION_TABLES: &str = "owners, owner_tokens, users, credentials, provider_exchanges";

/// The key of the session advisory lock under which a node migrates the schema (and creates the
/// first owner): one node at a time.
pub const MIGRATION_LOCK: i64 = 0x6c65_6467_6572; // "ledger"
