//! Rebuilding every projection from position 0.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;

use super::{events, projections, schema};
use crate::store::{RecordedEvent, StoreError};

/// Events handed from the reading thread of a replay to the applying one at a time.
const REPLAY_BATCH: usize = 1024;

/// Drops the projections and applies every event to fresh ones, inside the open transaction.
/// A second thread reads and decodes the events (through its own read-only connection: the
/// open transaction holds the write lock, so no event is appended meanwhile) while this one
/// applies them, so the two halves of the work run on two cores.
pub(super) fn replay(
    tx: &Connection,
    path: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let total = events::last_position(tx)?;
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
                events::for_each_event_until(&conn, total, |event| {
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
                            .map_err(|_| StoreError::unavailable("replay stopped"))?;
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
