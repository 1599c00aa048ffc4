//! The projections on PostgreSQL, applied in the append's transaction (and by a rebuild, from
//! position 0). The same rows as SQLite's, event for event: the contract suite compares them.

use deadpool_postgres::GenericClient;

use super::cached::Cached;
use super::queries::bytes;
use serde_json::{Map, Value};

use crate::domain::DomainEvent;
use crate::store::{RecordedEvent, StoreError};

/// What applying an event touches besides the views.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// An append: a deleted credential's data key and exchange contents go too.
    WithSideRows,
    /// A rebuild beside the live views: the views only (the appends did the rest long ago).
    ViewsOnly,
}

/// Applies one recorded event to every projection table.
pub async fn apply(
    tx: &impl GenericClient,
    recorded: &RecordedEvent,
    rows: Rows,
) -> Result<(), StoreError> {
    use DomainEvent as E;
    match &recorded.event {
        E::OwnerCreated {
            owner_id,
            username,
            password_hash,
            created_at,
        } => {
            tx.execute_cached(
                "INSERT INTO owners (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                &[
                    &owner_id.to_string(),
                    &username.as_bytes(),
                    password_hash,
                    &created_at.to_string(),
                ],
            )
            .await?;
        }
        E::OwnerTokenIssued {
            owner_id,
            token_hash,
            expires_at,
        } => {
            tx.execute_cached(
                "INSERT INTO owner_tokens (token_hash, owner_id, expires_at) VALUES ($1, $2, $3)",
                &[token_hash, &owner_id.to_string(), &expires_at.to_string()],
            )
            .await?;
        }
        E::UserCreated {
            user_id,
            owner_id,
            profile,
            created_at,
        } => {
            tx.execute_cached(
                "INSERT INTO users (id, owner_id, seq, name, email, phone, address, external_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &user_id.to_string(),
                    &owner_id.to_string(),
                    &recorded.position,
                    &bytes(&profile.name),
                    &bytes(&profile.email),
                    &bytes(&profile.phone),
                    &bytes(&profile.address),
                    &bytes(&profile.external_id),
                    &created_at.to_string(),
                ],
            )
            .await?;
        }
        E::UserUpdated { user_id, profile } => {
            tx.execute_cached(
                "UPDATE users SET name = $2, email = $3, phone = $4, address = $5, external_id = $6
                 WHERE id = $1",
                &[
                    &user_id.to_string(),
                    &bytes(&profile.name),
                    &bytes(&profile.email),
                    &bytes(&profile.phone),
                    &bytes(&profile.address),
                    &bytes(&profile.external_id),
                ],
            )
            .await?;
        }
        E::UserDeleted { user_id } => {
            let owned = tx
                .query_cached(
                    "SELECT id FROM credentials WHERE user_id = $1",
                    &[&user_id.to_string()],
                )
                .await?;
            for row in owned {
                delete_credential(tx, row.try_get(0)?, rows).await?;
            }
            tx.execute_cached("DELETE FROM users WHERE id = $1", &[&user_id.to_string()])
                .await?;
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
                delete_credential(tx, &replaced_credential_id.to_string(), rows).await?;
            }
            let owner_id = recorded.owner_id.ok_or_else(|| {
                StoreError::Corrupt(format!("event {} has no owner", recorded.position))
            })?;
            tx.execute_cached(
                "INSERT INTO credentials (id, user_id, owner_id, provider, status, fields,
                   created_at, next_check_at, consecutive_failures, last_checked_at, status_reason)
                 VALUES ($1, $2, $3, $4, 'OK', $5, $6, $6, 0, NULL, NULL)",
                &[
                    &credential_id.to_string(),
                    &user_id.to_string(),
                    &owner_id.to_string(),
                    &provider.key(),
                    &Value::Object(fields.clone()).to_string(),
                    &created_at.to_string(),
                ],
            )
            .await?;
        }
        E::CredentialDeleted { credential_id, .. } => {
            delete_credential(tx, &credential_id.to_string(), rows).await?;
        }
        E::CredentialStatusChanged {
            credential_id,
            status,
            reason,
            ..
        } => {
            tx.execute_cached(
                "UPDATE credentials SET status = $2, status_reason = coalesce($3, status_reason)
                 WHERE id = $1",
                &[&credential_id.to_string(), &status.as_str(), reason],
            )
            .await?;
        }
        E::CredentialTokensRotated {
            credential_id,
            tokens,
            ..
        } => {
            let id = credential_id.to_string();
            let row = tx
                .query_opt_cached("SELECT fields FROM credentials WHERE id = $1", &[&id])
                .await?;
            if let Some(row) = row {
                let text: &str = row.try_get(0)?;
                let mut fields: Map<String, Value> = serde_json::from_str(text)
                    .map_err(|_| StoreError::Corrupt(format!("fields of credential {id}")))?;
                crate::domain::user::apply_tokens(&mut fields, tokens);
                tx.execute_cached(
                    "UPDATE credentials SET fields = $2 WHERE id = $1",
                    &[&id, &Value::Object(fields).to_string()],
                )
                .await?;
            }
        }
        E::CredentialChecked {
            credential_id,
            next_check_at,
            consecutive_failures,
            reason,
            ..
        } => {
            tx.execute_cached(
                "UPDATE credentials SET next_check_at = $2, consecutive_failures = $3,
                   last_checked_at = $4, status_reason = coalesce($5, status_reason)
                 WHERE id = $1",
                &[
                    &credential_id.to_string(),
                    &next_check_at.map(|at| at.to_string()),
                    &i64::from(*consecutive_failures),
                    &recorded.recorded_at.to_string(),
                    reason,
                ],
            )
            .await?;
        }
        E::CredentialCheckParked {
            credential_id,
            reason,
            ..
        } => {
            tx.execute_cached(
                "UPDATE credentials SET next_check_at = NULL, status_reason = $2 WHERE id = $1",
                &[&credential_id.to_string(), reason],
            )
            .await?;
        }
        E::CredentialCheckRequested {
            credential_id, at, ..
        } => {
            tx.execute_cached(
                "UPDATE credentials SET next_check_at = $2 WHERE id = $1",
                &[&credential_id.to_string(), &at.to_string()],
            )
            .await?;
        }
        E::ProviderExchangeRecorded { exchange: x } => {
            // Shown only while its credential lives and its contents are retained; the ledger
            // keeps the fact either way. The time is the contents' own, to the character.
            tx.execute_cached(
                "INSERT INTO provider_exchanges (id, credential_id, status_code, recorded_at)
                 SELECT $1, $2, $3, c.recorded_at
                 FROM exchange_contents c
                 WHERE c.exchange_id = $1 AND EXISTS (SELECT 1 FROM credentials WHERE id = $2)",
                &[
                    &x.exchange_id.to_string(),
                    &x.credential_id.to_string(),
                    &i64::from(x.status_code),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Removes a credential's row, its exchange log and contents, and its data key
/// (crypto-shredding: without it the credential's secrets in the ledger are noise).
async fn delete_credential(
    tx: &impl GenericClient,
    id: &str,
    rows: Rows,
) -> Result<(), StoreError> {
    if rows == Rows::WithSideRows {
        for sql in [
            "DELETE FROM data_keys WHERE credential_id = $1",
            "DELETE FROM exchange_contents WHERE credential_id = $1",
        ] {
            tx.execute_cached(sql, &[&id]).await?;
        }
    }
    for sql in [
        "DELETE FROM provider_exchanges WHERE credential_id = $1",
        "DELETE FROM credentials WHERE id = $1",
    ] {
        tx.execute_cached(sql, &[&id]).await?;
    }
    Ok(())
}
