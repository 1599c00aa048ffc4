//! Reading the projections on PostgreSQL. Every query that touches a user or a credential is
//! scoped by owner.

use deadpool_postgres::GenericClient;

use super::cached::Cached;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::event::UserProfile;
use crate::domain::{CredentialId, CredentialStatus, OwnerId, Provider, Timestamp, UserId};
use crate::store::{
    CredentialView, DueCheck, ExchangeView, OwnerView, StoreError, UserQuery, UserSortKey,
    UserView, WrappedKey,
};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt(what))
}

fn timestamp(text: &str) -> Result<Timestamp, StoreError> {
    Timestamp::parse(text).ok_or_else(|| corrupt("bad timestamp in a projection"))
}

/// A text column's value as stored (its UTF-8 bytes; see `schema`).
pub fn bytes(text: &Option<String>) -> Option<&[u8]> {
    text.as_deref().map(str::as_bytes)
}

/// A text column's value as read back.
fn text(row: &Row, column: usize) -> Result<Option<String>, StoreError> {
    row.try_get::<_, Option<Vec<u8>>>(column)?
        .map(|b| String::from_utf8(b).map_err(|_| corrupt("text that is not UTF-8")))
        .transpose()
}

pub async fn owner_by_username(
    client: &impl GenericClient,
    username: &str,
) -> Result<Option<OwnerView>, StoreError> {
    let row = client
        .query_opt_cached(
            "SELECT id, username, password_hash FROM owners WHERE username = $1",
            &[&username.as_bytes()],
        )
        .await?;
    row.map(|r| {
        Ok(OwnerView {
            id: parse(r.try_get(0)?, "owner id")?,
            username: text(&r, 1)?.ok_or_else(|| corrupt("owner without a name"))?,
            password_hash: r.try_get(2)?,
        })
    })
    .transpose()
}

pub async fn owner_by_token(
    client: &impl GenericClient,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<(OwnerId, Timestamp)>, StoreError> {
    let row = client
        .query_opt_cached(
            "SELECT owner_id, expires_at FROM owner_tokens WHERE token_hash = $1 AND expires_at > $2",
            &[&token_hash, &now.to_string()],
        )
        .await?;
    row.map(|r| Ok((parse(r.try_get(0)?, "owner id")?, timestamp(r.try_get(1)?)?)))
        .transpose()
}

/// `SELECT` of credentials (each with its wrapped data key, in the columns `credential` and
/// `due` read) and then `$rest`, as one literal: no query text is built per request.
macro_rules! select_credentials {
    ($rest:literal) => {
        concat!(
            "SELECT c.id, c.user_id, c.provider, c.status, c.fields, c.created_at, \
               k.key_id, k.wrapped, c.last_checked_at, c.status_reason, c.owner_id, c.next_check_at \
             FROM credentials c LEFT JOIN data_keys k ON k.credential_id = c.id ",
            $rest
        )
    };
}

fn credential(r: &Row) -> Result<CredentialView, StoreError> {
    let credential_id: CredentialId = parse(r.try_get(0)?, "credential id")?;
    let key_id: Option<String> = r.try_get(6)?;
    let wrapped: Option<Vec<u8>> = r.try_get(7)?;
    let provider: &str = r.try_get(2)?;
    let status: &str = r.try_get(3)?;
    Ok(CredentialView {
        id: credential_id,
        user_id: parse(r.try_get(1)?, "user id")?,
        provider: Provider::from_key(provider).ok_or_else(|| corrupt("unknown provider"))?,
        status: CredentialStatus::parse(status).ok_or_else(|| corrupt("unknown status"))?,
        fields: serde_json::from_str(r.try_get(4)?).map_err(|_| corrupt("credential fields"))?,
        created_at: timestamp(r.try_get(5)?)?,
        last_checked_at: r
            .try_get::<_, Option<&str>>(8)?
            .map(timestamp)
            .transpose()?,
        status_reason: r.try_get(9)?,
        data_key: key_id.zip(wrapped).map(|(key_id, wrapped)| WrappedKey {
            credential_id,
            key_id,
            wrapped,
        }),
    })
}

pub async fn credential_of(
    client: &impl GenericClient,
    owner: OwnerId,
    user: UserId,
    provider: Provider,
) -> Result<Option<CredentialView>, StoreError> {
    let row = client
        .query_opt_cached(
            select_credentials!("WHERE c.owner_id = $1 AND c.user_id = $2 AND c.provider = $3"),
            &[&owner.to_string(), &user.to_string(), &provider.key()],
        )
        .await?;
    row.as_ref().map(credential).transpose()
}

/// A user's columns, in the order `user` reads them.
macro_rules! user_columns {
    () => {
        "id, name, email, phone, address, external_id, created_at"
    };
}

const USER_COLUMNS: &str = user_columns!();

async fn user(client: &impl GenericClient, r: &Row) -> Result<UserView, StoreError> {
    let id: &str = r.try_get(0)?;
    let credentials = client
        .query_cached(
            select_credentials!("WHERE c.user_id = $1 ORDER BY c.provider"),
            &[&id],
        )
        .await?
        .iter()
        .map(credential)
        .collect::<Result<_, _>>()?;
    Ok(UserView {
        id: parse(id, "user id")?,
        profile: UserProfile {
            name: text(r, 1)?,
            email: text(r, 2)?,
            phone: text(r, 3)?,
            address: text(r, 4)?,
            external_id: text(r, 5)?,
        },
        created_at: timestamp(r.try_get(6)?)?,
        credentials,
    })
}

pub async fn user_of(
    client: &impl GenericClient,
    owner: OwnerId,
    id: UserId,
) -> Result<Option<UserView>, StoreError> {
    let row = client
        .query_opt_cached(
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE owner_id = $1 AND id = $2"
            ),
            &[&owner.to_string(), &id.to_string()],
        )
        .await?;
    match row {
        Some(r) => Ok(Some(user(client, &r).await?)),
        None => Ok(None),
    }
}

/// One page of the owner's users, in `query.sort` order (oldest first without one), and the
/// total matching the filters. NULLs sort first ascending, as in SQLite.
pub async fn users_of(
    client: &impl GenericClient,
    owner: OwnerId,
    query: &UserQuery,
) -> Result<(Vec<UserView>, u64), StoreError> {
    let owner = owner.to_string();
    let mut filter = String::from("owner_id = $1");
    let given: Vec<(&str, &[u8])> = [
        ("email", &query.email),
        ("name", &query.name),
        ("external_id", &query.external_id),
    ]
    .into_iter()
    .filter_map(|(column, value)| Some((column, bytes(value)?)))
    .collect();
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![&owner];
    for (column, value) in &given {
        values.push(value);
        filter.push_str(&format!(" AND {column} = ${}", values.len()));
    }
    let total: i64 = client
        .query_one_cached(
            &format!("SELECT COUNT(*) FROM users WHERE {filter}"),
            &values,
        )
        .await?
        .try_get(0)?;
    let limit = i64::from(query.size);
    let offset = i64::from(query.page) * i64::from(query.size);
    values.push(&limit);
    values.push(&offset);
    let mut order = String::new();
    for sort in &query.sort {
        let column = match sort.key {
            UserSortKey::Id => "id",
            UserSortKey::Name => "name",
            UserSortKey::Email => "email",
            UserSortKey::Phone => "phone",
            UserSortKey::Address => "address",
            UserSortKey::ExternalId => "external_id",
            UserSortKey::CreatedTime => "created_at",
        };
        let direction = if sort.descending {
            "DESC NULLS LAST"
        } else {
            "ASC NULLS FIRST"
        };
        order.push_str(&format!("{column} {direction}, "));
    }
    let rows = client
        .query_cached(
            &format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY {order}seq LIMIT ${} OFFSET ${}",
                values.len() - 1,
                values.len()
            ),
            &values,
        )
        .await?;
    let mut users = Vec::with_capacity(rows.len());
    for r in &rows {
        users.push(user(client, r).await?);
    }
    Ok((users, total as u64))
}

/// The credential's exchanges recorded at or after `since`, newest first (ties: newest id).
pub async fn exchanges_of(
    client: &impl GenericClient,
    credential: CredentialId,
    since: Timestamp,
) -> Result<Vec<ExchangeView>, StoreError> {
    let rows = client
        .query_cached(
            "SELECT e.id, e.status_code, c.headers, c.body, e.recorded_at
             FROM provider_exchanges e JOIN exchange_contents c ON c.exchange_id = e.id
             WHERE e.credential_id = $1 AND e.recorded_at >= $2
             ORDER BY e.recorded_at DESC, e.id DESC",
            &[&credential.to_string(), &since.to_string()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let code: i64 = r.try_get(1)?;
            Ok(ExchangeView {
                id: parse(r.try_get(0)?, "exchange id")?,
                status_code: u16::try_from(code).map_err(|_| corrupt("status code"))?,
                headers: r.try_get(2)?,
                body: r.try_get(3)?,
                recorded_at: timestamp(r.try_get(4)?)?,
            })
        })
        .collect()
}

fn due(r: &Row) -> Result<DueCheck, StoreError> {
    Ok(DueCheck {
        owner_id: parse(r.try_get(10)?, "owner id")?,
        credential: credential(r)?,
        next_check_at: timestamp(r.try_get(11)?)?,
    })
}

pub async fn due_checks(
    client: &impl GenericClient,
    now: Timestamp,
    providers: &[&str],
    limit: u32,
) -> Result<Vec<DueCheck>, StoreError> {
    let rows = client
        .query_cached(
            select_credentials!(
                "WHERE c.next_check_at IS NOT NULL AND c.next_check_at <= $1
                   AND c.provider = ANY($2)
                 ORDER BY c.next_check_at LIMIT $3"
            ),
            &[&now.to_string(), &providers, &i64::from(limit)],
        )
        .await?;
    rows.iter().map(due).collect()
}

pub async fn due_check(
    client: &impl GenericClient,
    id: CredentialId,
) -> Result<Option<DueCheck>, StoreError> {
    let row = client
        .query_opt_cached(
            select_credentials!("WHERE c.id = $1 AND c.next_check_at IS NOT NULL"),
            &[&id.to_string()],
        )
        .await?;
    row.as_ref().map(due).transpose()
}
