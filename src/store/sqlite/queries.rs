//! Reading the projections. Every query that touches a user or a credential is scoped by owner.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::event::UserProfile;
use crate::domain::{CredentialId, CredentialStatus, OwnerId, Provider, Timestamp, UserId};
use crate::store::{
    CredentialView, DueCheck, ExchangeView, OwnerView, StoreError, UserQuery, UserSortKey,
    UserView, WrappedKey,
};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn parse<T: std::str::FromStr>(text: String, what: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt(what))
}

fn timestamp(text: String) -> Result<Timestamp, StoreError> {
    Timestamp::parse(&text).ok_or_else(|| corrupt("bad timestamp in a projection"))
}

pub fn owner_by_username(
    conn: &Connection,
    username: &str,
) -> Result<Option<OwnerView>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, username, password_hash FROM owners WHERE username = ?1")?
        .query_row([username], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    row.map(|(id, username, password_hash)| {
        Ok(OwnerView {
            id: parse(id, "owner id")?,
            username,
            password_hash,
        })
    })
    .transpose()
}

pub fn count_owners(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM owners", [], |r| r.get(0))?)
}

/// The owner holding this token hash, and the token's expiry, if it has not expired at `now`.
pub fn owner_by_token(
    conn: &Connection,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<(OwnerId, Timestamp)>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT owner_id, expires_at FROM owner_tokens WHERE token_hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![token_hash, now.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(id, expires_at)| Ok((parse(id, "owner id")?, timestamp(expires_at)?)))
        .transpose()
}

/// A credential's columns, with its wrapped data key (`raw_credential` reads the first ten).
const CREDENTIAL_COLUMNS: &str = "id, user_id, provider, status, fields, created_at, \
    (SELECT key_id FROM data_keys WHERE credential_id = id), \
    (SELECT wrapped FROM data_keys WHERE credential_id = id), last_checked_at, status_reason";

struct RawCredential {
    text: [String; 6],
    key_id: Option<String>,
    wrapped: Option<Vec<u8>>,
    last_checked_at: Option<String>,
    status_reason: Option<String>,
}

fn raw_credential(r: &Row<'_>) -> rusqlite::Result<RawCredential> {
    Ok(RawCredential {
        text: [
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ],
        key_id: r.get(6)?,
        wrapped: r.get(7)?,
        last_checked_at: r.get(8)?,
        status_reason: r.get(9)?,
    })
}

fn credential(raw: RawCredential) -> Result<CredentialView, StoreError> {
    let [id, user_id, provider, status, fields, created_at] = raw.text;
    let credential_id: CredentialId = parse(id, "credential id")?;
    let data_key = raw
        .key_id
        .zip(raw.wrapped)
        .map(|(key_id, wrapped)| WrappedKey {
            credential_id,
            key_id,
            wrapped,
        });
    Ok(CredentialView {
        id: credential_id,
        user_id: parse(user_id, "user id")?,
        provider: Provider::from_key(&provider).ok_or_else(|| corrupt("unknown provider"))?,
        status: CredentialStatus::parse(&status).ok_or_else(|| corrupt("unknown status"))?,
        fields: serde_json::from_str(&fields).map_err(|_| corrupt("credential fields"))?,
        created_at: timestamp(created_at)?,
        last_checked_at: raw.last_checked_at.map(timestamp).transpose()?,
        status_reason: raw.status_reason,
        data_key,
    })
}

pub fn credential_of(
    conn: &Connection,
    owner: OwnerId,
    user: UserId,
    provider: Provider,
) -> Result<Option<CredentialView>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE owner_id = ?1 AND user_id = ?2 AND provider = ?3"
    ))?
    .query_row(params![owner.to_string(), user.to_string(), provider.key()], raw_credential)
    .optional()?
    .map(credential)
    .transpose()
}

fn credentials_of_user(conn: &Connection, user: &str) -> Result<Vec<CredentialView>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?1 ORDER BY provider"
    ))?;
    let rows = stmt.query_map([user], raw_credential)?;
    rows.map(|raw| credential(raw?)).collect()
}

use super::profile::{self, USER_COLUMNS};

type RawUser = (String, UserProfile, String);

fn raw_user(r: &Row<'_>) -> rusqlite::Result<RawUser> {
    let profile = profile::from_user_row(r)?;
    Ok((r.get(0)?, profile, r.get(profile::CREATED_AT)?))
}

fn user(conn: &Connection, raw: RawUser) -> Result<UserView, StoreError> {
    let (id, profile, created_at) = raw;
    let credentials = credentials_of_user(conn, &id)?;
    Ok(UserView {
        id: parse(id, "user id")?,
        profile,
        created_at: timestamp(created_at)?,
        credentials,
    })
}

pub fn user_of(
    conn: &Connection,
    owner: OwnerId,
    id: UserId,
) -> Result<Option<UserView>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE owner_id = ?1 AND id = ?2"
    ))?
    .query_row(params![owner.to_string(), id.to_string()], raw_user)
    .optional()?
    .map(|raw| user(conn, raw))
    .transpose()
}

/// One page of the owner's users, in `query.sort` order (oldest first without one), and the
/// total matching the filters. Only the
/// filters given are in the SQL: written as `(?2 IS NULL OR email = ?2)`, SQLite reads every
/// one of the owner's rows to test them, where `owner_id = ?1` alone counts from the
/// `users_by_owner` index.
pub fn users_of(
    conn: &Connection,
    owner: OwnerId,
    query: &UserQuery,
) -> Result<(Vec<UserView>, u64), StoreError> {
    let owner = owner.to_string();
    let mut filter = String::from("owner_id = ?");
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&owner];
    for (column, value) in [
        ("email", &query.email),
        ("name", &query.name),
        ("external_id", &query.external_id),
    ] {
        if let Some(value) = value {
            filter.push_str(&format!(" AND {column} = ?"));
            values.push(value);
        }
    }
    let total: u64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {filter}"))?
        .query_row(values.as_slice(), |r| r.get(0))?;
    let offset = u64::from(query.page) * u64::from(query.size);
    values.push(&query.size);
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
        let direction = if sort.descending { "DESC" } else { "ASC" };
        order.push_str(&format!("{column} {direction}, "));
    }
    let raws: Vec<RawUser> = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY {order}seq LIMIT ? OFFSET ?"
        ))?
        .query_map(values.as_slice(), raw_user)?
        .collect::<rusqlite::Result<_>>()?;
    let users = raws
        .into_iter()
        .map(|raw| user(conn, raw))
        .collect::<Result<_, _>>()?;
    Ok((users, total))
}

/// A credential's exchange contents since a time (`?1`, `?2`), newest first (the table's own
/// order, read backwards).
pub(crate) const EXCHANGE_CONTENTS_SINCE: &str =
    "SELECT exchange_id, headers, body, recorded_at FROM exchange_contents
     WHERE credential_id = ?1 AND recorded_at >= ?2 ORDER BY recorded_at DESC, exchange_id DESC";

/// A credential's exchange log since a time (`?1`, `?2`), newest first.
pub(crate) const EXCHANGE_LOG_SINCE: &str =
    "SELECT id, status_code, recorded_at FROM provider_exchanges
     WHERE credential_id = ?1 AND recorded_at >= ?2 ORDER BY recorded_at DESC, id DESC";

/// The credential's exchanges recorded at or after `since`, newest first.
///
/// Two range scans over adjacent entries, in the same order, merged here: the log rows from
/// the covering index `exchanges_for_events`, their contents from `exchange_contents` (stored
/// by credential and time). A join in SQL would look each content up by its exchange id
/// instead, one B-tree probe per row into an index as large as the whole log.
pub fn exchanges_of(
    conn: &Connection,
    credential: CredentialId,
    since: Timestamp,
) -> Result<Vec<ExchangeView>, StoreError> {
    let (credential, since) = (credential.to_string(), since.to_string());
    let mut contents_stmt = conn.prepare_cached(EXCHANGE_CONTENTS_SINCE)?;
    let mut contents = contents_stmt.query(params![credential, since])?;
    let mut log_stmt = conn.prepare_cached(EXCHANGE_LOG_SINCE)?;
    let mut log = log_stmt.query(params![credential, since])?;
    let mut exchanges = Vec::new();
    let mut content = contents.next()?;
    while let Some(row) = log.next()? {
        let (id, recorded_at): (String, String) = (row.get(0)?, row.get(2)?);
        // Contents newer than this log row have no log row (not shown); a log row without
        // contents is not shown either (as an inner join would not).
        let key = (recorded_at.as_str(), id.as_str());
        while let Some(c) = content {
            if content_key(c)? <= key {
                break;
            }
            content = contents.next()?;
        }
        let Some(c) = content else { break };
        if content_key(c)? != key {
            continue;
        }
        exchanges.push(ExchangeView {
            id: parse(id, "exchange id")?,
            status_code: row.get(1)?,
            headers: c.get(1)?,
            body: c.get(2)?,
            recorded_at: timestamp(recorded_at)?,
        });
        content = contents.next()?;
    }
    Ok(exchanges)
}

/// The (time, exchange id) of a row of `EXCHANGE_CONTENTS_SINCE`, as stored.
fn content_key<'r>(row: &'r Row<'_>) -> Result<(&'r str, &'r str), StoreError> {
    let text = |i| -> Result<&'r str, StoreError> {
        row.get_ref(i)?
            .as_str()
            .map_err(|e| StoreError::Corrupt(format!("exchange contents: {e}")))
    };
    Ok((text(3)?, text(0)?))
}

fn raw_due(r: &Row<'_>) -> rusqlite::Result<(RawCredential, String, String)> {
    Ok((
        raw_credential(r)?,
        r.get::<_, String>(10)?,
        r.get::<_, String>(11)?,
    ))
}

/// Credentials of the `providers` (a JSON array of provider keys) due for a check at `now`,
/// longest overdue first.
pub fn due_checks(
    conn: &Connection,
    now: Timestamp,
    providers: &str,
    limit: u32,
) -> Result<Vec<DueCheck>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CREDENTIAL_COLUMNS}, owner_id, next_check_at FROM credentials
         WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
           AND provider IN (SELECT value FROM json_each(?2))
         ORDER BY next_check_at LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![now.to_string(), providers, limit], raw_due)?;
    rows.map(|row| {
        let (raw, owner, next) = row?;
        Ok(DueCheck {
            owner_id: parse(owner, "owner id")?,
            credential: credential(raw)?,
            next_check_at: timestamp(next)?,
        })
    })
    .collect()
}

/// One credential's schedule, if it is live and scheduled.
pub fn due_check(conn: &Connection, id: CredentialId) -> Result<Option<DueCheck>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, owner_id, next_check_at FROM credentials
             WHERE id = ?1 AND next_check_at IS NOT NULL"
        ))?
        .query_row([id.to_string()], raw_due)
        .optional()?;
    row.map(|(raw, owner, next)| {
        Ok(DueCheck {
            owner_id: parse(owner, "owner id")?,
            credential: credential(raw)?,
            next_check_at: timestamp(next)?,
        })
    })
    .transpose()
}
