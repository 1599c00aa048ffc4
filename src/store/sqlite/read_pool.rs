//! Read-only connections, each read on a blocking thread in one snapshot.

use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Mutex;

use super::schema;
use super::writer::run;
use crate::store::StoreError;

/// Read-only connections kept open; reads beyond this many wait for one.
pub(super) const READERS: usize = 4;

pub(super) struct ReadPool {
    pub(super) path: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
    pub(super) permits: tokio::sync::Semaphore,
}

impl ReadPool {
    pub(super) fn with<T>(
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
                conn.busy_timeout(schema::BUSY_TIMEOUT)?;
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
