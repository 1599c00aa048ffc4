//! The ledger's tables: appending to and reading from `events`, and the rows written beside
//! it (exchange contents, wrapped data keys).

use rusqlite::{params, Connection, Row};

use crate::domain::event::PAYLOAD_VERSION;
use crate::domain::{DomainEvent, OwnerId, Timestamp};
use crate::store::{ExchangeContent, RecordedEvent, StoreError, StreamAppend, WrappedKey};

/// The stream's current version: 0 when it has no events.
pub fn stream_version(conn: &Connection, stream_id: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1")?
        .query_row([stream_id], |row| row.get(0))
}

pub fn last_position(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
        .query_row([], |row| row.get(0))
}

/// Appends one stream's events if the stream is still at `expected_version`.
pub fn append_events(
    tx: &Connection,
    append: &StreamAppend,
    recorded_at: Timestamp,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let current = stream_version(tx, &append.stream_id)?;
    if current != append.expected_version {
        return Err(StoreError::Conflict {
            stream_id: append.stream_id.clone(),
        });
    }
    let mut position = last_position(tx)?;
    let mut insert = tx.prepare_cached(
        "INSERT OR FAIL INTO events (position, stream_id, version, event_type, payload, owner_id, recorded_at, event_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut recorded = Vec::with_capacity(append.events.len());
    for (offset, event) in append.events.iter().enumerate() {
        position += 1;
        let version = current + offset as u64 + 1;
        insert.execute(params![
            position,
            append.stream_id,
            version,
            event.event_type(),
            event.payload().to_string(),
            append.owner_id.map(|o| o.to_string()),
            recorded_at.to_string(),
            PAYLOAD_VERSION,
        ])?;
        recorded.push(RecordedEvent {
            position,
            stream_id: append.stream_id.clone(),
            version,
            owner_id: append.owner_id,
            recorded_at,
            event: event.clone(),
        });
    }
    Ok(recorded)
}

const COLUMNS: &str =
    "position, stream_id, version, event_type, payload, owner_id, recorded_at, event_version";

/// The stream's events after `after_version`, in version order.
pub fn read_stream(
    conn: &Connection,
    stream_id: &str,
    after_version: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 AND version > ?2 ORDER BY version"
    ))?;
    let mut rows = stmt.query(params![stream_id, after_version])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode(row)?);
    }
    Ok(events)
}

/// Calls `apply` on every event up to position `last`, in order.
pub fn for_each_event_until(
    conn: &Connection,
    last: i64,
    mut apply: impl FnMut(RecordedEvent) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM events WHERE position <= ?1 ORDER BY position"
    ))?;
    let mut rows = stmt.query([last])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        apply(decode(row)?)?;
        count += 1;
    }
    Ok(count)
}

/// One event from a row of [`COLUMNS`]. The text columns are read in place (borrowed from
/// SQLite's row buffer); only the stream id is copied.
fn decode(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {position}: {what}"));
    let text = |column: usize| -> Result<Option<&str>, StoreError> {
        row.get_ref(column)?
            .as_str_or_null()
            .map_err(|_| corrupt(&format!("column {column} is not text")))
    };
    let payload_version: u32 = row.get(7)?;
    if payload_version > PAYLOAD_VERSION {
        return Err(corrupt(&format!(
            "payload version {payload_version} is newer than this build reads ({PAYLOAD_VERSION})"
        )));
    }
    let event_type = text(3)?.ok_or_else(|| corrupt("no event type"))?;
    let payload = text(4)?.ok_or_else(|| corrupt("no payload"))?;
    let event = DomainEvent::from_stored(event_type, payload)
        .map_err(|e| corrupt(&format!("cannot decode {event_type}: {e}")))?;
    let owner_id = text(5)?
        .map(|o| o.parse::<OwnerId>())
        .transpose()
        .map_err(|_| corrupt("bad owner id"))?;
    let recorded_at = text(6)?
        .and_then(Timestamp::parse)
        .ok_or_else(|| corrupt("bad recorded_at"))?;
    Ok(RecordedEvent {
        position,
        stream_id: row.get(1)?,
        version: row.get(2)?,
        owner_id,
        recorded_at,
        event,
    })
}

pub fn insert_data_key(tx: &Connection, key: &WrappedKey) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR FAIL INTO data_keys (credential_id, key_id, wrapped) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        key.credential_id.to_string(),
        key.key_id,
        key.wrapped
    ])?;
    Ok(())
}

pub fn insert_exchange_content(
    tx: &Connection,
    content: &ExchangeContent,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR FAIL INTO exchange_contents (exchange_id, credential_id, recorded_at, headers, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        content.exchange_id.to_string(),
        content.credential_id.to_string(),
        content.recorded_at.to_string(),
        content.headers,
        content.body,
    ])?;
    Ok(())
}

/// Deletes exchange contents (and their log rows) recorded before `cutoff`. Events stay.
pub fn purge_exchanges(tx: &Connection, cutoff: Timestamp) -> Result<usize, StoreError> {
    let cutoff = cutoff.to_string();
    // Through the contents' age index: provider_exchanges has none on its own.
    tx.execute(
        "DELETE FROM provider_exchanges WHERE id IN
           (SELECT exchange_id FROM exchange_contents WHERE recorded_at < ?1)",
        [&cutoff],
    )?;
    Ok(tx.execute(
        "DELETE FROM exchange_contents WHERE recorded_at < ?1",
        [&cutoff],
    )?)
}

/// Re-wraps every data key with `rewrap` (master key rotation).
pub fn rewrap_keys(
    tx: &Connection,
    rewrap: &(dyn Fn(&WrappedKey) -> Result<WrappedKey, String> + Send + Sync),
) -> Result<usize, StoreError> {
    let keys: Vec<(String, String, Vec<u8>)> = tx
        .prepare("SELECT credential_id, key_id, wrapped FROM data_keys")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (credential_id, key_id, wrapped) in &keys {
        let id = credential_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("data key id {credential_id}")))?;
        let old = WrappedKey {
            credential_id: id,
            key_id: key_id.clone(),
            wrapped: wrapped.clone(),
        };
        let new = rewrap(&old).map_err(StoreError::failed)?;
        tx.execute(
            "UPDATE data_keys SET key_id = ?2, wrapped = ?3 WHERE credential_id = ?1",
            params![credential_id, new.key_id, new.wrapped],
        )?;
    }
    Ok(keys.len())
}

/// The distinct master key ids of the stored data keys.
pub fn data_key_ids(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let ids = conn
        .prepare_cached("SELECT DISTINCT key_id FROM data_keys ORDER BY key_id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}
