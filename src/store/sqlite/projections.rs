//! Projections: the current views, updated in the append's transaction and rebuilt from position 0.
//!
//! Writes say `OR FAIL`: each changes one row, and any error already rolls back the whole
//! command (its savepoint) or rebuild, so SQLite need not keep a statement journal. With the
//! default `ABORT` it copies every page a statement changes to a temp file first: 1.5 GB of
//! writes for a rebuild of 300k events.

use std::collections::HashMap;

use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::profile;
use crate::domain::event::IssuedTokens;
use crate::domain::{CredentialId, CredentialStatus, DomainEvent, OwnerId, Timestamp, UserId};
use crate::store::{RecordedEvent, StoreError};

/// Applies one recorded event to every projection table.
pub fn apply(conn: &Connection, recorded: &RecordedEvent) -> Result<(), StoreError> {
    apply_to(conn, &mut InTable, recorded)
}

/// Applies one recorded event, with the `credentials` rows kept by `credentials`.
pub fn apply_to(
    conn: &Connection,
    credentials: &mut impl Credentials,
    recorded: &RecordedEvent,
) -> Result<(), StoreError> {
    use DomainEvent as E;
    match &recorded.event {
        E::OwnerCreated {
            owner_id,
            username,
            password_hash,
            created_at,
        } => {
            conn.prepare_cached(
                "INSERT OR FAIL INTO owners (id, username, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                owner_id.to_string(),
                username,
                password_hash,
                created_at.to_string()
            ])?;
        }
        E::OwnerTokenIssued {
            owner_id,
            token_hash,
            expires_at,
        } => {
            conn.prepare_cached(
                "INSERT OR FAIL INTO owner_tokens (token_hash, owner_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                token_hash,
                owner_id.to_string(),
                expires_at.to_string()
            ])?;
        }
        E::UserCreated {
            user_id,
            owner_id,
            profile,
            created_at,
        } => {
            let (id, owner, created_at) = (
                user_id.to_string(),
                owner_id.to_string(),
                created_at.to_string(),
            );
            let mut values: Vec<&dyn ToSql> = vec![&id, &owner, &recorded.position];
            values.extend(profile::values(profile));
            values.push(&created_at);
            conn.prepare_cached(profile::insert_user_sql())?
                .execute(&*values)?;
        }
        E::UserUpdated { user_id, profile } => {
            let id = user_id.to_string();
            let mut values = profile::values(profile);
            values.push(&id);
            conn.prepare_cached(profile::update_profile_sql())?
                .execute(&*values)?;
        }
        E::UserDeleted { user_id } => {
            for credential in credentials.ids_of_user(conn, user_id)? {
                delete_credential(conn, credentials, &credential)?;
            }
            conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute([user_id.to_string()])?;
        }
        E::CredentialCreated {
            user_id,
            credential_id,
            provider,
            fields,
            created_at,
        }
        | E::CredentialReplaced {
            user_id,
            credential_id,
            provider,
            fields,
            created_at,
            ..
        } => {
            if let E::CredentialReplaced {
                replaced_credential_id,
                ..
            } = &recorded.event
            {
                delete_credential(conn, credentials, replaced_credential_id)?;
            }
            insert_credential(
                conn,
                credentials,
                recorded,
                user_id,
                credential_id,
                *provider,
                fields,
                created_at,
            )?;
        }
        E::CredentialDeleted { credential_id, .. } => {
            delete_credential(conn, credentials, credential_id)?;
        }
        E::CredentialStatusChanged {
            credential_id,
            status,
            reason,
            ..
        } => {
            credentials.update(
                conn,
                credential_id,
                Change::Status(*status, reason.as_deref()),
            )?;
        }
        E::CredentialTokensRotated {
            credential_id,
            tokens,
            ..
        } => {
            credentials.update(conn, credential_id, Change::Tokens(tokens))?;
        }
        E::CredentialChecked {
            credential_id,
            next_check_at,
            consecutive_failures,
            reason,
            ..
        } => {
            credentials.update(
                conn,
                credential_id,
                Change::Checked {
                    at: recorded.recorded_at,
                    next_check_at: *next_check_at,
                    consecutive_failures: *consecutive_failures,
                    reason: reason.as_deref(),
                },
            )?;
        }
        E::CredentialCheckParked {
            credential_id,
            reason,
            ..
        } => {
            credentials.update(conn, credential_id, Change::Parked(reason))?;
        }
        E::CredentialCheckRequested {
            credential_id, at, ..
        } => {
            credentials.update(conn, credential_id, Change::CheckRequested(*at))?;
        }
        E::ProviderExchangeRecorded { exchange: x } => {
            // Shown only while its credential lives and its contents are retained; the ledger
            // keeps the fact either way.
            if !credentials.exists(conn, &x.credential_id)? {
                return Ok(());
            }
            // The time is the contents' own (the same instant, written from the same value):
            // `/events` merges the two tables in (time, id) order, so they must agree to the
            // character.
            conn.prepare_cached(
                "INSERT OR FAIL INTO provider_exchanges (id, credential_id, status_code, recorded_at)
                 SELECT ?1, ?2, ?3, c.recorded_at
                 FROM exchange_contents c WHERE c.exchange_id = ?1",
            )?
            .execute(params![
                &*x.exchange_id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
                &*x.credential_id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
                x.status_code,
            ])?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_credential(
    conn: &Connection,
    credentials: &mut impl Credentials,
    recorded: &RecordedEvent,
    user_id: &crate::domain::UserId,
    credential_id: &crate::domain::CredentialId,
    provider: crate::domain::Provider,
    fields: &Map<String, Value>,
    created_at: &Timestamp,
) -> Result<(), StoreError> {
    let owner_id = recorded
        .owner_id
        .ok_or_else(|| StoreError::Corrupt(format!("event {} has no owner", recorded.position)))?;
    credentials.insert(
        conn,
        CredentialRow {
            id: *credential_id,
            user_id: *user_id,
            owner_id,
            provider: provider.key(),
            status: CredentialStatus::Ok,
            fields: fields.clone(),
            next_check_at: Some(*created_at),
            created_at: *created_at,
            consecutive_failures: 0,
            last_checked_at: None,
            status_reason: None,
        },
    )
}

fn delete_credential(
    conn: &Connection,
    credentials: &mut impl Credentials,
    credential_id: &CredentialId,
) -> Result<(), StoreError> {
    let id = credential_id.to_string();
    // Crypto-shredding: without its data key the credential's secrets in the ledger are noise.
    conn.prepare_cached("DELETE FROM data_keys WHERE credential_id = ?1")?
        .execute([&id])?;
    // A deleted credential's log is never shown again: reclaim its contents now.
    conn.prepare_cached("DELETE FROM exchange_contents WHERE credential_id = ?1")?
        .execute([&id])?;
    credentials.remove(conn, credential_id)
}

/// One row of the `credentials` table.
pub struct CredentialRow {
    id: CredentialId,
    user_id: UserId,
    owner_id: OwnerId,
    provider: &'static str,
    status: CredentialStatus,
    fields: Map<String, Value>,
    created_at: Timestamp,
    next_check_at: Option<Timestamp>,
    consecutive_failures: u32,
    /// When the last check was recorded.
    last_checked_at: Option<Timestamp>,
    /// Why the status is what it is: the last check's reason, or the status change's.
    status_reason: Option<String>,
}

/// A change to one credential row.
pub enum Change<'a> {
    /// A new status, and why (kept as it was when the event gives no reason).
    Status(CredentialStatus, Option<&'a str>),
    Tokens(&'a IssuedTokens),
    /// A check recorded at `at`.
    Checked {
        at: Timestamp,
        next_check_at: Option<Timestamp>,
        consecutive_failures: u32,
        reason: Option<&'a str>,
    },
    CheckRequested(Timestamp),
    /// No check is due, for this reason.
    Parked(&'a str),
}

impl CredentialRow {
    fn change(&mut self, change: Change<'_>) {
        match change {
            Change::Status(status, reason) => {
                self.status = status;
                if let Some(reason) = reason {
                    self.status_reason = Some(reason.to_owned());
                }
            }
            Change::Tokens(tokens) => crate::domain::user::apply_tokens(&mut self.fields, tokens),
            Change::Checked {
                at,
                next_check_at,
                consecutive_failures,
                reason,
            } => {
                self.last_checked_at = Some(at);
                self.next_check_at = next_check_at;
                self.consecutive_failures = consecutive_failures;
                if let Some(reason) = reason {
                    self.status_reason = Some(reason.to_owned());
                }
            }
            Change::CheckRequested(at) => self.next_check_at = Some(at),
            Change::Parked(reason) => {
                self.next_check_at = None;
                self.status_reason = Some(reason.to_owned());
            }
        }
    }

    fn insert_into(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT OR FAIL INTO credentials (id, user_id, owner_id, provider, status, fields,
               created_at, next_check_at, consecutive_failures, last_checked_at, status_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            self.id.to_string(),
            self.user_id.to_string(),
            self.owner_id.to_string(),
            self.provider,
            self.status.as_str(),
            serde_json::to_string(&self.fields).unwrap_or_default(),
            self.created_at.to_string(),
            self.next_check_at.map(|at| at.to_string()),
            self.consecutive_failures,
            self.last_checked_at.map(|at| at.to_string()),
            self.status_reason,
        ])?;
        Ok(())
    }
}

/// Where `apply_to` keeps the rows of the `credentials` table: the table itself ([`InTable`],
/// for every append), or memory until the end of a replay ([`InMemory`]), where most events
/// change a credential already written and an UPDATE per event would dominate.
pub trait Credentials {
    fn insert(&mut self, conn: &Connection, row: CredentialRow) -> Result<(), StoreError>;
    /// Removes the row (from the table, with its exchange log rows; see [`InMemory`]).
    fn remove(&mut self, conn: &Connection, id: &CredentialId) -> Result<(), StoreError>;
    fn update(
        &mut self,
        conn: &Connection,
        id: &CredentialId,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    fn exists(&mut self, conn: &Connection, id: &CredentialId) -> Result<bool, StoreError>;
    fn ids_of_user(
        &mut self,
        conn: &Connection,
        user: &UserId,
    ) -> Result<Vec<CredentialId>, StoreError>;
}

/// The `credentials` table.
pub struct InTable;

impl Credentials for InTable {
    fn insert(&mut self, conn: &Connection, row: CredentialRow) -> Result<(), StoreError> {
        row.insert_into(conn)
    }

    fn remove(&mut self, conn: &Connection, id: &CredentialId) -> Result<(), StoreError> {
        let id = id.to_string();
        conn.prepare_cached("DELETE FROM provider_exchanges WHERE credential_id = ?1")?
            .execute([&id])?;
        conn.prepare_cached("DELETE FROM credentials WHERE id = ?1")?
            .execute([&id])?;
        Ok(())
    }

    fn update(
        &mut self,
        conn: &Connection,
        id: &CredentialId,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let id = &id.to_string();
        match change {
            Change::Status(status, reason) => {
                conn.prepare_cached(
                    "UPDATE OR FAIL credentials SET status = ?2,
                       status_reason = coalesce(?3, status_reason) WHERE id = ?1",
                )?
                .execute(params![id, status.as_str(), reason])?;
            }
            Change::Tokens(tokens) => {
                let fields: Option<String> = conn
                    .prepare_cached("SELECT fields FROM credentials WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                if let Some(fields) = fields {
                    let mut fields: Map<String, Value> = serde_json::from_str(&fields)
                        .map_err(|_| StoreError::Corrupt(format!("fields of credential {id}")))?;
                    crate::domain::user::apply_tokens(&mut fields, tokens);
                    conn.prepare_cached(
                        "UPDATE OR FAIL credentials SET fields = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, Value::Object(fields).to_string()])?;
                }
            }
            Change::Checked {
                at,
                next_check_at,
                consecutive_failures,
                reason,
            } => {
                conn.prepare_cached(
                    "UPDATE OR FAIL credentials SET next_check_at = ?2, consecutive_failures = ?3,
                       last_checked_at = ?4, status_reason = coalesce(?5, status_reason)
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    next_check_at.map(|at| at.to_string()),
                    consecutive_failures,
                    at.to_string(),
                    reason
                ])?;
            }
            Change::CheckRequested(at) => {
                conn.prepare_cached(
                    "UPDATE OR FAIL credentials SET next_check_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id, at.to_string()])?;
            }
            Change::Parked(reason) => {
                conn.prepare_cached(
                    "UPDATE OR FAIL credentials SET next_check_at = NULL, status_reason = ?2
                     WHERE id = ?1",
                )?
                .execute(params![id, reason])?;
            }
        }
        Ok(())
    }

    fn exists(&mut self, conn: &Connection, id: &CredentialId) -> Result<bool, StoreError> {
        Ok(conn
            .prepare_cached("SELECT 1 FROM credentials WHERE id = ?1")?
            .exists([id.to_string()])?)
    }

    fn ids_of_user(
        &mut self,
        conn: &Connection,
        user: &UserId,
    ) -> Result<Vec<CredentialId>, StoreError> {
        let ids: Vec<String> = conn
            .prepare_cached("SELECT id FROM credentials WHERE user_id = ?1")?
            .query_map([user.to_string()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("credential id {id}")))
            })
            .collect()
    }
}

/// Credential rows held in memory during a replay; [`InMemory::finish`] writes them. Removing a
/// credential needs no log rows deleted here: its exchange contents were deleted with it, so a
/// replay logs none of its exchanges in the first place.
#[derive(Default)]
pub struct InMemory {
    rows: HashMap<CredentialId, CredentialRow>,
    by_user: HashMap<UserId, Vec<CredentialId>>,
}

impl InMemory {
    /// Writes every row to the (empty) `credentials` table.
    pub fn finish(self, conn: &Connection) -> Result<(), StoreError> {
        let mut rows: Vec<_> = self.rows.into_values().collect();
        rows.sort_unstable_by_key(|row| row.id);
        rows.iter().try_for_each(|row| row.insert_into(conn))
    }
}

impl Credentials for InMemory {
    fn insert(&mut self, _: &Connection, row: CredentialRow) -> Result<(), StoreError> {
        self.by_user.entry(row.user_id).or_default().push(row.id);
        if let Some(old) = self.rows.insert(row.id, row) {
            return Err(StoreError::Corrupt(format!(
                "credential {} created twice",
                old.id
            )));
        }
        Ok(())
    }

    fn remove(&mut self, _: &Connection, id: &CredentialId) -> Result<(), StoreError> {
        if let Some(row) = self.rows.remove(id) {
            if let Some(ids) = self.by_user.get_mut(&row.user_id) {
                ids.retain(|other| other != id);
            }
        }
        Ok(())
    }

    fn update(
        &mut self,
        _: &Connection,
        id: &CredentialId,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        if let Some(row) = self.rows.get_mut(id) {
            row.change(change);
        }
        Ok(())
    }

    fn exists(&mut self, _: &Connection, id: &CredentialId) -> Result<bool, StoreError> {
        Ok(self.rows.contains_key(id))
    }

    fn ids_of_user(
        &mut self,
        _: &Connection,
        user: &UserId,
    ) -> Result<Vec<CredentialId>, StoreError> {
        Ok(self.by_user.get(user).cloned().unwrap_or_default())
    }
}
