//! Projections: the current views, updated in the append's transaction and rebuilt from position 0.
//!
//! Writes say `OR FAIL`: each changes one row, and any error already rolls back the whole
//! command (its savepoint) or rebuild, so SQLite need not keep a statement journal. With the
//! default `ABORT` it copies every page a statement changes to a temp file first: 1.5 GB of
//! writes for a rebuild of 300k events.

use rusqlite::{params, Connection, OptionalExtension};

use super::{RecordedEvent, StoreError};
use crate::domain::{CredentialStatus, DomainEvent};

/// Applies one recorded event to every projection table.
pub fn apply(conn: &Connection, recorded: &RecordedEvent) -> Result<(), StoreError> {
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
            conn.prepare_cached(
                "INSERT OR FAIL INTO users (id, owner_id, seq, name, email, phone, address, external_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                user_id.to_string(),
                owner_id.to_string(),
                recorded.position,
                profile.name,
                profile.email,
                profile.phone,
                profile.address,
                profile.external_id,
                created_at.to_string(),
            ])?;
        }
        E::UserUpdated { user_id, profile } => {
            conn.prepare_cached(
                "UPDATE OR FAIL users SET name = ?2, email = ?3, phone = ?4, address = ?5, external_id = ?6
                 WHERE id = ?1",
            )?
            .execute(params![
                user_id.to_string(),
                profile.name,
                profile.email,
                profile.phone,
                profile.address,
                profile.external_id,
            ])?;
        }
        E::UserDeleted { user_id } => {
            let id = user_id.to_string();
            conn.prepare_cached(
                "DELETE FROM exchange_contents WHERE credential_id IN (SELECT id FROM credentials WHERE user_id = ?1)",
            )?
            .execute([&id])?;
            conn.prepare_cached(
                "DELETE FROM data_keys WHERE credential_id IN (SELECT id FROM credentials WHERE user_id = ?1)",
            )?
            .execute([&id])?;
            conn.prepare_cached("DELETE FROM provider_exchanges WHERE user_id = ?1")?
                .execute([&id])?;
            conn.prepare_cached("DELETE FROM credentials WHERE user_id = ?1")?
                .execute([&id])?;
            conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute([&id])?;
        }
        E::CredentialCreated {
            user_id,
            credential_id,
            provider,
            fields,
            created_at,
        } => {
            insert_credential(
                conn,
                recorded,
                user_id,
                credential_id,
                *provider,
                fields,
                created_at,
            )?;
        }
        E::CredentialReplaced {
            user_id,
            replaced_credential_id,
            credential_id,
            provider,
            fields,
            created_at,
        } => {
            delete_credential(conn, &replaced_credential_id.to_string())?;
            insert_credential(
                conn,
                recorded,
                user_id,
                credential_id,
                *provider,
                fields,
                created_at,
            )?;
        }
        E::CredentialDeleted { credential_id, .. } => {
            delete_credential(conn, &credential_id.to_string())?;
        }
        E::CredentialStatusChanged {
            credential_id,
            status,
            ..
        } => {
            conn.prepare_cached("UPDATE OR FAIL credentials SET status = ?2 WHERE id = ?1")?
                .execute(params![credential_id.to_string(), status.as_str()])?;
        }
        E::CredentialTokensRotated {
            credential_id,
            tokens,
            ..
        } => {
            let id = credential_id.to_string();
            let fields: Option<String> = conn
                .prepare_cached("SELECT fields FROM credentials WHERE id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            if let Some(fields) = fields {
                let mut fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&fields)
                        .map_err(|_| StoreError::Corrupt(format!("fields of credential {id}")))?;
                crate::domain::user::apply_tokens(&mut fields, tokens);
                conn.prepare_cached("UPDATE OR FAIL credentials SET fields = ?2 WHERE id = ?1")?
                    .execute(params![id, serde_json::Value::Object(fields).to_string()])?;
            }
        }
        E::CredentialChecked {
            credential_id,
            next_check_at,
            consecutive_failures,
            ..
        } => {
            conn.prepare_cached(
                "UPDATE OR FAIL credentials SET next_check_at = ?2, consecutive_failures = ?3 WHERE id = ?1",
            )?
            .execute(params![
                credential_id.to_string(),
                next_check_at.map(|t| t.to_string()),
                consecutive_failures
            ])?;
        }
        E::CredentialCheckRequested {
            credential_id, at, ..
        } => {
            conn.prepare_cached("UPDATE OR FAIL credentials SET next_check_at = ?2 WHERE id = ?1")?
                .execute(params![credential_id.to_string(), at.to_string()])?;
        }
        E::ProviderExchangeRecorded { exchange: x } => {
            // Shown only while its credential lives and its contents are retained; the ledger
            // keeps the fact either way.
            conn.prepare_cached(
                "INSERT OR FAIL INTO provider_exchanges
                   (id, credential_id, user_id, request_method, request_url, status_code, recorded_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                 WHERE EXISTS (SELECT 1 FROM credentials WHERE id = ?2)
                   AND EXISTS (SELECT 1 FROM exchange_contents WHERE exchange_id = ?1)",
            )?
            .execute(params![
                x.exchange_id.to_string(),
                x.credential_id.to_string(),
                x.user_id.to_string(),
                x.request_method,
                x.request_url,
                x.status_code,
                x.recorded_at.to_string(),
            ])?;
        }
    }
    Ok(())
}

fn insert_credential(
    conn: &Connection,
    recorded: &RecordedEvent,
    user_id: &crate::domain::UserId,
    credential_id: &crate::domain::CredentialId,
    provider: crate::domain::Provider,
    fields: &serde_json::Map<String, serde_json::Value>,
    created_at: &crate::domain::Timestamp,
) -> Result<(), StoreError> {
    let owner_id = recorded
        .owner_id
        .ok_or_else(|| StoreError::Corrupt(format!("event {} has no owner", recorded.position)))?;
    conn.prepare_cached(
        "INSERT OR FAIL INTO credentials (id, user_id, owner_id, provider, status, fields, created_at, next_check_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        credential_id.to_string(),
        user_id.to_string(),
        owner_id.to_string(),
        provider.key(),
        CredentialStatus::Ok.as_str(),
        serde_json::Value::Object(fields.clone()).to_string(),
        created_at.to_string(),
    ])?;
    Ok(())
}

fn delete_credential(conn: &Connection, credential_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM provider_exchanges WHERE credential_id = ?1")?
        .execute([credential_id])?;
    // Crypto-shredding: without its data key the credential's secrets in the ledger are noise.
    conn.prepare_cached("DELETE FROM data_keys WHERE credential_id = ?1")?
        .execute([credential_id])?;
    // A deleted credential's log is never shown again: reclaim its contents now.
    conn.prepare_cached("DELETE FROM exchange_contents WHERE credential_id = ?1")?
        .execute([credential_id])?;
    conn.prepare_cached("DELETE FROM credentials WHERE id = ?1")?
        .execute([credential_id])?;
    Ok(())
}
