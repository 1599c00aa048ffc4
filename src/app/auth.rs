//! API owners: creation (and the first one on an empty ledger), passwords, login and bearer
//! tokens, with a cache of tokens already authenticated.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{AppError, Service};
use crate::domain::owner::{self, OwnerCommand};
use crate::domain::{OwnerId, Timestamp};
use crate::store::{SideWrites, StreamAppend};

/// How long a bearer token lives: 24 hours, or 30 days with `rememberMe`.
pub const TOKEN_TTL_HOURS: i64 = 24;
pub const REMEMBER_ME_TTL_DAYS: i64 = 30;

/// Most tokens remembered by `authenticate` before it starts afresh.
const TOKEN_CACHE_SIZE: usize = 10_000;

/// Token hash → (owner, expiry) of tokens already authenticated. Exact: tokens are only ever
/// issued, never changed or revoked, and the expiry is checked on every use.
#[derive(Default)]
pub(super) struct TokenCache(Mutex<HashMap<String, (OwnerId, Timestamp)>>);

impl TokenCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (OwnerId, Timestamp)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Service {
    /// Adds an API owner. The password is kept only as an argon2 hash.
    pub async fn create_owner(&self, username: &str, password: &str) -> Result<OwnerId, AppError> {
        let password_hash = hash_password(password.to_owned()).await?;
        let owner_id = OwnerId::new();
        let command = OwnerCommand::Create {
            owner_id,
            username: username.to_owned(),
            password_hash,
            at: self.now(),
        };
        self.execute_owner(username, command, Some(owner_id), None)
            .await?;
        Ok(owner_id)
    }

    /// On an empty database, creates the first owner and returns its login (shown once).
    pub async fn bootstrap_owner(&self) -> Result<Option<(String, String)>, AppError> {
        if self.store.count_owners().await? > 0 {
            return Ok(None);
        }
        let username = "admin".to_owned();
        let password = random_hex(16);
        self.create_owner(&username, &password).await?;
        Ok(Some((username, password)))
    }

    /// Checks a login and issues a bearer token; `None` when the username or password is wrong.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        remember_me: bool,
    ) -> Result<Option<String>, AppError> {
        let found = self.store.owner_by_username(username).await?;
        // Verify against a dummy hash for unknown users so timing does not reveal usernames.
        let hash = found
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |o| o.password_hash.clone());
        let verified = verify_password(password.to_owned(), hash).await?;
        let Some(found) = found.filter(|_| verified) else {
            return Ok(None);
        };
        let token = random_hex(32);
        let token_hash = token_hash(&token);
        let ttl = if remember_me {
            chrono::Duration::days(REMEMBER_ME_TTL_DAYS)
        } else {
            chrono::Duration::hours(TOKEN_TTL_HOURS)
        };
        let command = OwnerCommand::IssueToken {
            token_hash: token_hash.clone(),
            expires_at: self.now().plus(ttl),
        };
        // One stream per token, so concurrent logins never conflict.
        let token_stream = format!("token:{token_hash}");
        self.execute_owner(username, command, Some(found.id), Some(token_stream))
            .await?;
        Ok(Some(token))
    }

    /// Decides an owner command against the owner's stream and appends its events there, or,
    /// with `into`, to that new stream (checking that the owner's stream did not move).
    async fn execute_owner(
        &self,
        username: &str,
        command: OwnerCommand,
        owner_id: Option<OwnerId>,
        into: Option<String>,
    ) -> Result<(), AppError> {
        let stream_id = owner::stream_id(username);
        self.retrying_conflicts(|_| async {
            let history = self.store.read_stream(&stream_id, 0).await?;
            let version = history.last().map_or(0, |r| r.version);
            let state = history
                .iter()
                .map(|r| &r.event)
                .fold(owner::OwnerState::default(), owner::evolve);
            let events = owner::decide(&state, command.clone())?;
            let owner_id = state.owner_id.or(owner_id);
            let mut appends = vec![StreamAppend {
                stream_id: stream_id.clone(),
                expected_version: version,
                owner_id,
                events: vec![],
            }];
            match &into {
                None => appends[0].events = events,
                Some(stream) => appends.push(StreamAppend {
                    stream_id: stream.clone(),
                    expected_version: 0,
                    owner_id,
                    events,
                }),
            }
            self.store
                .append(appends, SideWrites::default(), self.now())
                .await?;
            Ok(())
        })
        .await
    }

    /// The owner a bearer token belongs to, if it is known and unexpired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<OwnerId>, AppError> {
        let hash = token_hash(token);
        let now = self.now();
        let cached = self.tokens.lock().get(&hash).copied();
        if let Some((owner, expires_at)) = cached {
            return Ok((now < expires_at).then_some(owner));
        }
        let found = self.store.owner_by_token(&hash, now).await?;
        if let Some((owner, expires_at)) = found {
            let mut cache = self.tokens.lock();
            if cache.len() >= TOKEN_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(hash, (owner, expires_at));
        }
        Ok(found.map(|(owner, _)| owner))
    }
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

/// Lower-case hex, written into one string (this runs on every authenticated request).
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(random_hex(16).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(anyhow::anyhow!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("password hashing")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("password verification")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_as_the_lower_case_hex_of_its_sha256() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xff]), "00ab0fff");
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1): hashes stored by earlier versions
        // still match.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
