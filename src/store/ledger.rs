//! Appending to and reading from the `events` table.

use rusqlite::{params, Connection, Row};

use super::{RecordedEvent, StoreError, StreamAppend};
use crate::domain::{DomainEvent, OwnerId, Timestamp};

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
        "INSERT OR FAIL INTO events (position, stream_id, version, event_type, payload, owner_id, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
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

const COLUMNS: &str = "position, stream_id, version, event_type, payload, owner_id, recorded_at";

pub fn read_stream(conn: &Connection, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY version"
    ))?;
    let mut rows = stmt.query([stream_id])?;
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

pub fn event_at(conn: &Connection, position: i64) -> Result<Option<RecordedEvent>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE position = ?1"))?;
    let mut rows = stmt.query([position])?;
    rows.next()?.map(decode).transpose()
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
