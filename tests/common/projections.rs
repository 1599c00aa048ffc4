//! Every projection table of a ledger file, ordered, as plain values: to compare a live
//! database with its rebuild.

use rusqlite::types::Value;

pub fn dump(database: &std::path::Path) -> Vec<(String, Vec<Vec<Value>>)> {
    let conn = rusqlite::Connection::open(database).unwrap();
    credential_ledger::store::sqlite::schema::PROJECTION_TABLES
        .iter()
        .map(|table| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (table.to_string(), rows)
        })
        .collect()
}
