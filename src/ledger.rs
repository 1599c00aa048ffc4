//! The application's use of the ledger: load a stream, fold it, let the pure aggregate decide,
//! append what it decided at the version it decided on. Handlers and the CLI come through here.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

use crate::crypto::{self, DataKey, Keyring};
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::owner::{self, OwnerCommand, OwnerError, OwnerState};
use crate::domain::provider::FieldKind;
use crate::domain::user::{self, CheckResult, NewCredential, UserCommand, UserError, UserState};
use crate::domain::{Clock, CredentialId, DomainEvent, OwnerId, Provider, Timestamp, UserId};
use crate::store::views::CredentialView;
use crate::store::{
    views, ExchangeContent, RecordedEvent, SideWrites, Store, StoreError, StreamAppend, WrappedKey,
};
use serde_json::Value;

/// How long a bearer token lives: 24 hours, or 30 days with `rememberMe`.
pub const TOKEN_TTL_HOURS: i64 = 24;
pub const REMEMBER_ME_TTL_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

#[derive(Clone)]
pub struct Ledger {
    store: Store,
    clock: Arc<dyn Clock>,
    keyring: Arc<Keyring>,
    checks_wanted: Arc<tokio::sync::Notify>,
    mask_secrets: bool,
    /// Token hash → (owner, expiry) of tokens already authenticated. Exact: tokens are only
    /// ever issued, never changed or revoked, and the expiry is checked on every use.
    tokens: Arc<std::sync::Mutex<std::collections::HashMap<String, (OwnerId, Timestamp)>>>,
}

/// Most tokens remembered by `authenticate` before it starts afresh.
const TOKEN_CACHE_SIZE: usize = 10_000;

impl Ledger {
    pub fn new(store: Store, clock: Arc<dyn Clock>, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            clock,
            keyring,
            checks_wanted: Arc::new(tokio::sync::Notify::new()),
            mask_secrets: false,
            tokens: Arc::default(),
        }
    }

    /// Answers show `********` instead of secret fields (`--mask-secrets`).
    pub fn with_masked_secrets(mut self, mask: bool) -> Self {
        self.mask_secrets = mask;
        self
    }

    /// The credential as an answer shows it: decrypted, or with secrets masked.
    pub fn reveal(&self, mut view: CredentialView) -> Result<CredentialView, LedgerError> {
        if !self.mask_secrets {
            return self.open(view);
        }
        let provider = view.provider;
        for (name, value) in view.fields.iter_mut() {
            if is_secret(provider, name) && value.is_string() {
                *value = Value::String(MASK.into());
            }
        }
        Ok(view)
    }

    pub fn keyring_handle(&self) -> Arc<Keyring> {
        self.keyring.clone()
    }

    /// Seals a new credential's secret fields with a fresh data key; returns the key, wrapped.
    pub fn seal_credential(
        &self,
        credential: &mut NewCredential,
    ) -> Result<WrappedKey, LedgerError> {
        let key = DataKey::generate();
        for (name, value) in credential.fields.iter_mut() {
            if let (true, Some(text)) = (is_secret(credential.provider, name), value.as_str()) {
                *value = Value::String(key.seal(text, &format!("{}/{name}", credential.id)));
            }
        }
        let (key_id, wrapped) = self
            .keyring
            .wrap(&key, &credential.id.to_string())
            .map_err(internal)?;
        Ok(WrappedKey {
            credential_id: credential.id,
            key_id,
            wrapped,
        })
    }

    fn data_key(&self, view: &CredentialView) -> Result<DataKey, LedgerError> {
        let wrapped = view.data_key.as_ref().ok_or_else(|| {
            LedgerError::Internal(format!("credential {} has no data key", view.id))
        })?;
        self.keyring
            .unwrap(&wrapped.key_id, &wrapped.wrapped, &view.id.to_string())
            .map_err(internal)
    }

    /// The credential with its secret fields decrypted.
    pub fn open(&self, mut view: CredentialView) -> Result<CredentialView, LedgerError> {
        if !view
            .fields
            .values()
            .any(|v| v.as_str().is_some_and(crypto::is_sealed))
        {
            return Ok(view);
        }
        let key = self.data_key(&view)?;
        for (name, value) in view.fields.iter_mut() {
            if let Some(sealed) = value.as_str().filter(|v| crypto::is_sealed(v)) {
                *value = Value::String(
                    key.open(sealed, &format!("{}/{name}", view.id))
                        .map_err(internal)?,
                );
            }
        }
        Ok(view)
    }

    /// Tokens a check obtained, sealed with the credential's data key.
    pub fn seal_tokens(
        &self,
        view: &CredentialView,
        tokens: IssuedTokens,
    ) -> Result<IssuedTokens, LedgerError> {
        let key = self.data_key(view)?;
        let aad = |name: &str| format!("{}/{name}", view.id);
        Ok(IssuedTokens {
            access_token: key.seal(&tokens.access_token, &aad("accessToken")),
            refresh_token: tokens
                .refresh_token
                .map(|t| key.seal(&t, &aad("refreshToken"))),
            ..tokens
        })
    }

    /// Notified whenever a command makes a credential due for a check (created, replaced,
    /// check requested), so the health worker need not wait for its next tick.
    pub fn checks_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.checks_wanted.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Decides `command` against the user's stream and appends the result at the version it
    /// was decided on. A concurrent writer makes this fail with `StoreError::Conflict`.
    pub async fn execute(
        &self,
        user_id: UserId,
        command: UserCommand,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        self.execute_with_keys(user_id, command, vec![]).await
    }

    /// `execute`, storing the wrapped data keys of the credentials the command creates.
    pub async fn execute_with_keys(
        &self,
        user_id: UserId,
        command: UserCommand,
        data_keys: Vec<WrappedKey>,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let stream_id = user::stream_id(user_id);
        let (state, version) = self.user_state(user_id).await?;
        let owner_id = match (&command, &state) {
            (UserCommand::Create { owner_id, .. }, _) => Some(*owner_id),
            (_, UserState::Live(user)) => Some(user.owner_id),
            _ => None,
        };
        let events = user::decide(&state, command)?;
        if events.is_empty() {
            return Ok(vec![]);
        }
        let wants_check = events.iter().any(|e| {
            matches!(
                e,
                DomainEvent::CredentialCreated { .. }
                    | DomainEvent::CredentialReplaced { .. }
                    | DomainEvent::CredentialCheckRequested { .. }
            )
        });
        let append = StreamAppend {
            stream_id,
            expected_version: version,
            owner_id,
            events,
        };
        let side = SideWrites {
            contents: vec![],
            data_keys,
        };
        let recorded = self
            .store
            .append_with(vec![append], side, self.now())
            .await?;
        if wants_check {
            self.checks_wanted.notify_one();
        }
        Ok(recorded)
    }

    async fn user_state(&self, user_id: UserId) -> Result<(UserState, u64), LedgerError> {
        let history = self.store.read_stream(&user::stream_id(user_id)).await?;
        let version = history.last().map_or(0, |r| r.version);
        let state = history
            .iter()
            .map(|r| &r.event)
            .fold(UserState::default(), user::evolve);
        Ok((state, version))
    }

    /// `execute` for a command whose intent survives a lost race (e.g. asking for a check):
    /// on a conflict it is decided again against the new state, up to a few times.
    pub async fn execute_idempotent(
        &self,
        user_id: UserId,
        command: UserCommand,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let mut attempts = 0;
        loop {
            match self.execute(user_id, command.clone()).await {
                Err(LedgerError::Store(StoreError::Conflict { .. })) if attempts < 5 => {
                    attempts += 1
                }
                other => return other,
            }
        }
    }

    /// Records one exchange with a provider, if its credential is still the user's live one.
    pub async fn record_exchange(&self, exchange: ProviderExchange) -> Result<(), LedgerError> {
        let meta = &exchange.meta;
        let (state, version) = self.user_state(meta.user_id).await?;
        let UserState::Live(live) = &state else {
            return Err(UserError::StaleCredential.into());
        };
        user::current_credential(live, meta.provider, meta.credential_id)?;
        let (user_id, credential_id, owner_id) = (meta.user_id, meta.credential_id, live.owner_id);
        self.append_check(
            user_id,
            owner_id,
            version,
            vec![],
            credential_id,
            vec![exchange],
        )
        .await?;
        Ok(())
    }

    /// Records a background check: its exchanges, rotated tokens, status and next check, all in
    /// one transaction. A result for a credential replaced or deleted meanwhile is refused
    /// (`UserError::StaleCredential`) and nothing is written; a lost race is decided again.
    pub async fn record_check(
        &self,
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        result: CheckResult,
        exchanges: Vec<ProviderExchange>,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let mut attempts = 0;
        loop {
            let (state, version) = self.user_state(user_id).await?;
            let owner_id = match &state {
                UserState::Live(user) => user.owner_id,
                _ => return Err(UserError::StaleCredential.into()),
            };
            let command = UserCommand::RecordCheck {
                credential_id,
                provider,
                result: result.clone(),
                now: self.now(),
            };
            let events = user::decide(&state, command)?;
            match self
                .append_check(
                    user_id,
                    owner_id,
                    version,
                    events,
                    credential_id,
                    exchanges.clone(),
                )
                .await
            {
                Err(LedgerError::Store(StoreError::Conflict { .. })) if attempts < 5 => {
                    attempts += 1
                }
                other => return other,
            }
        }
    }

    async fn append_check(
        &self,
        user_id: UserId,
        owner_id: OwnerId,
        user_version: u64,
        user_events: Vec<DomainEvent>,
        credential_id: CredentialId,
        exchanges: Vec<ProviderExchange>,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let log_stream = format!("exchanges:{credential_id}");
        let log_version = self.store.stream_version(&log_stream).await?;
        let contents = exchanges
            .iter()
            .map(|x| ExchangeContent {
                exchange_id: x.meta.exchange_id,
                credential_id: x.meta.credential_id,
                recorded_at: x.meta.recorded_at,
                headers: x.headers.clone(),
                body: x.body.clone(),
            })
            .collect();
        let log_events = exchanges
            .into_iter()
            .map(|x| DomainEvent::ProviderExchangeRecorded { exchange: x.meta })
            .collect();
        let owner_id = Some(owner_id);
        let appends = vec![
            // With no events this only checks that the user's stream did not move meanwhile.
            StreamAppend {
                stream_id: user::stream_id(user_id),
                expected_version: user_version,
                owner_id,
                events: user_events,
            },
            StreamAppend {
                stream_id: log_stream,
                expected_version: log_version,
                owner_id,
                events: log_events,
            },
        ];
        Ok(self
            .store
            .append_with(
                appends,
                SideWrites {
                    contents,
                    data_keys: vec![],
                },
                self.now(),
            )
            .await?)
    }

    /// Adds an API owner. The password is kept only as an argon2 hash.
    pub async fn create_owner(
        &self,
        username: &str,
        password: &str,
    ) -> Result<OwnerId, LedgerError> {
        let password_hash = hash_password(password.to_owned()).await?;
        let stream_id = owner::stream_id(username);
        let state = self.owner_state(&stream_id).await?;
        let owner_id = OwnerId::new();
        let command = OwnerCommand::Create {
            owner_id,
            username: username.to_owned(),
            password_hash,
            at: self.now(),
        };
        let events = owner::decide(&state.0, command)?;
        let append = StreamAppend {
            stream_id,
            expected_version: state.1,
            owner_id: Some(owner_id),
            events,
        };
        self.store.append(vec![append], self.now()).await?;
        Ok(owner_id)
    }

    /// On an empty database, creates the first owner and returns its login (shown once).
    pub async fn bootstrap_owner(&self) -> Result<Option<(String, String)>, LedgerError> {
        if self.store.read(views::count_owners).await? > 0 {
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
    ) -> Result<Option<String>, LedgerError> {
        let name = username.to_owned();
        let found = self
            .store
            .read(move |conn| views::owner_by_username(conn, &name))
            .await?;
        // Verify against a dummy hash for unknown users so timing does not reveal usernames.
        let hash = found
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |o| o.password_hash.clone());
        let verified = verify_password(password.to_owned(), hash).await?;
        if found.is_none() || !verified {
            return Ok(None);
        }
        let owner_stream = owner::stream_id(username);
        let (state, owner_version) = self.owner_state(&owner_stream).await?;
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
        let events = owner::decide(&state, command)?;
        let owner_id = state.owner_id;
        let appends = vec![
            StreamAppend {
                stream_id: owner_stream,
                expected_version: owner_version,
                owner_id,
                events: vec![],
            },
            // One stream per token, so concurrent logins never conflict.
            StreamAppend {
                stream_id: format!("token:{token_hash}"),
                expected_version: 0,
                owner_id,
                events,
            },
        ];
        self.store.append(appends, self.now()).await?;
        Ok(Some(token))
    }

    /// The owner a bearer token belongs to, if it is known and unexpired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<OwnerId>, LedgerError> {
        let hash = token_hash(token);
        let now = self.now();
        let cached = self.token_cache().get(&hash).copied();
        if let Some((owner, expires_at)) = cached {
            return Ok((now < expires_at).then_some(owner));
        }
        let key = hash.clone();
        let found = self
            .store
            .read(move |conn| views::owner_by_token(conn, &key, now))
            .await?;
        if let Some((owner, expires_at)) = found {
            let mut cache = self.token_cache();
            if cache.len() >= TOKEN_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(hash, (owner, expires_at));
        }
        Ok(found.map(|(owner, _)| owner))
    }

    fn token_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (OwnerId, Timestamp)>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn owner_state(&self, stream_id: &str) -> Result<(OwnerState, u64), LedgerError> {
        let history = self.store.read_stream(stream_id).await?;
        let version = history.last().map_or(0, |r| r.version);
        let state = history
            .iter()
            .map(|r| &r.event)
            .fold(OwnerState::default(), owner::evolve);
        Ok((state, version))
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

async fn hash_password(password: String) -> Result<String, LedgerError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| LedgerError::Internal(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| LedgerError::Internal(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, LedgerError> {
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
    .map_err(|e| LedgerError::Internal(e.to_string()))
}

/// What a masked secret reads as.
pub const MASK: &str = "********";

fn internal(error: crypto::CryptoError) -> LedgerError {
    LedgerError::Internal(error.to_string())
}

/// Whether a credential field is a secret, sealed at rest: the provider's secret fields and the
/// tokens a check stores.
pub fn is_secret(provider: Provider, name: &str) -> bool {
    name == "accessToken"
        || name == "refreshToken"
        || provider
            .spec()
            .fields
            .iter()
            .any(|f| f.kind == FieldKind::Secret && f.json_name() == name)
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
