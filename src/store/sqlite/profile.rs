//! A Leaf user's profile in the `users` table: its columns, from the one list of its fields.

use rusqlite::types::ToSql;
use rusqlite::Row;

use crate::domain::event::{with_profile_fields, UserProfile};

macro_rules! profile_columns {
    ($( $(#[doc = $doc:literal])* $field:ident, )*) => {
        /// The profile's columns, in order.
        pub(super) const COLUMNS: &[&str] = &[$(stringify!($field)),*];

        /// The user's columns as queries read them: its id, its profile, its creation time.
        pub(super) const USER_COLUMNS: &str =
            concat!("id, ", $(stringify!($field), ", ",)* "created_at");

        /// The profile's values, in `COLUMNS` order.
        pub(super) fn values(profile: &UserProfile) -> Vec<&dyn ToSql> {
            vec![$(&profile.$field),*]
        }

        /// The profile from a row of `USER_COLUMNS`.
        pub(super) fn from_user_row(row: &Row<'_>) -> rusqlite::Result<UserProfile> {
            let mut column = 0;
            let mut next = || {
                column += 1;
                column
            };
            Ok(UserProfile { $($field: row.get(next())?,)* })
        }
    };
}
with_profile_fields!(crate::store::sqlite::profile::profile_columns! {});
pub(crate) use profile_columns;

/// The column after the profile in a row of `USER_COLUMNS`: its creation time.
pub(super) const CREATED_AT: usize = COLUMNS.len() + 1;

/// `INSERT` of a new user: id, owner, list position, profile, creation time.
pub(super) fn insert_user_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let placeholders = vec!["?"; COLUMNS.len()].join(", ");
        format!(
            "INSERT OR FAIL INTO users (id, owner_id, seq, {}, created_at) VALUES (?, ?, ?, {placeholders}, ?)",
            COLUMNS.join(", ")
        )
    });
    &SQL
}

/// `UPDATE` of a user's profile: the profile, then the id.
pub(super) fn update_profile_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let set: Vec<String> = COLUMNS.iter().map(|c| format!("{c} = ?")).collect();
        format!("UPDATE OR FAIL users SET {} WHERE id = ?", set.join(", "))
    });
    &SQL
}
