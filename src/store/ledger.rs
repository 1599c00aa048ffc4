//! Appending to and reading from the `events` table.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{RecordedEvent, StoreError, StreamAppend};
use crate::domain::{DomainEvent, OwnerId, Timestamp};

/// The stream's current version: 0 when it has no events.
pub fn stream_version(conn: &Connection, stream_id: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1",
        [stream_id],
        |row| row.get(0),
    )
}

pub fn last_position(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| {
        row.get(0)
    })
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
    let rows = stmt.query_map([stream_id], raw_event)?;
    rows.map(|row| decode(row?)).collect()
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
        apply(decode(raw_event(row)?)?)?;
        count += 1;
    }
    Ok(count)
}

pub fn event_at(conn: &Connection, position: i64) -> Result<Option<RecordedEvent>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM events WHERE position = ?1"),
        [position],
        raw_event,
    )
    .optional()?
    .map(decode)
    .transpose()
}

type RawEvent = (i64, String, u64, String, String, Option<String>, String);

fn raw_event(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn decode(raw: RawEvent) -> Result<RecordedEvent, StoreError> {
    let (position, stream_id, version, event_type, payload, owner_id, recorded_at) = raw;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {position}: {what}"));
    let event = DomainEvent::from_stored(&event_type, &payload)
        .map_err(|e| corrupt(&format!("cannot decode {event_type}: {e}")))?;
    let owner_id = owner_id
        .map(|o| o.parse::<OwnerId>())
        .transpose()
        .map_err(|_| corrupt("bad owner id"))?;
    let recorded_at = Timestamp::parse(&recorded_at).ok_or_else(|| corrupt("bad recorded_at"))?;
    Ok(RecordedEvent {
        position,
        stream_id,
        version,
        owner_id,
        recorded_at,
        event,
    })
}
