//! API owners: creation (and the first one on an empty ledger), passwords, login and bearer
//! tokens, with a cache of tokens already authenticated.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
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
        match self.create_owner(&username, &password).await {
            Ok(_) => Ok(Some((username, password))),
            // Another node on the same database created it first.
            Err(_) if self.store.count_owners().await? > 0 => Ok(None),
            Err(error) => Err(error),
        }
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
        let hash = found.as_ref().map(|o| o.password_hash.clone());
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

/// Password work waiting for a hashing thread beyond which logins are refused (429).
const HASH_QUEUE: usize = 32;

type HashJob = Box<dyn FnOnce() + Send>;

/// The threads that hash and verify passwords: few (half the cores, at least one) and always the
/// same, with a bounded queue. Argon2 takes 19 MiB and tens of milliseconds per password; run on
/// any blocking thread, a spray of logins ran hundreds at once, each thread keeping its memory
/// (5 GiB) and the CPU starved every other request. Here at most `threads × 19 MiB` is in use,
/// and a login that would wait behind `HASH_QUEUE` others is refused at once.
struct Hashers {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
}

fn hashers() -> &'static Hashers {
    static POOL: OnceLock<Hashers> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(HASH_QUEUE);
        let queue = std::sync::Arc::new(Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        for i in 0..threads {
            let queue = queue.clone();
            let _ = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
        }
        Hashers { jobs }
    })
}

/// Runs `work` on a hashing thread; `AppError::Busy` when the queue is full.
async fn on_hasher<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = answer.send(work());
    });
    hashers().jobs.try_send(job).map_err(|e| match e {
        std::sync::mpsc::TrySendError::Full(_) => AppError::Busy("password checks"),
        std::sync::mpsc::TrySendError::Disconnected(_) => {
            AppError::Internal(anyhow::anyhow!("the password hashing threads have stopped"))
        }
    })?;
    answered
        .await
        .map_err(|_| AppError::Internal(anyhow::anyhow!("a password hashing job was dropped")))
}

async fn hash_password(password: String) -> Result<String, AppError> {
    on_hasher(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(anyhow::anyhow!("cannot hash a password: {e}")))
    })
    .await?
}

/// Whether `password` matches `hash` (`None`: an unknown user, checked against a dummy hash).
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, AppError> {
    on_hasher(move || {
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        verify_in_reused_memory(password.as_bytes(), &hash)
    })
    .await
}

/// `Argon2::verify_password`, but in this thread's own block memory, allocated once and reused:
/// allocated afresh for every password, the 19 MiB landed in a new place each time until the
/// allocator held 8 copies (150 MiB) it never gave back.
fn verify_in_reused_memory(password: &[u8], phc: &str) -> bool {
    use argon2::{Algorithm, Block, Params, Version};
    use std::cell::RefCell;
    thread_local! {
        static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        blocks.resize(params.block_count(), Block::default());
        argon2
            .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
            .is_ok()
    }) && argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_in_reused_memory_exactly_as_argon2_verifies_it() {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(b"right password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_in_reused_memory(b"right password", &hash));
        assert!(!verify_in_reused_memory(b"wrong password", &hash));
        assert!(
            verify_in_reused_memory(b"right password", &hash),
            "again, same memory"
        );
        assert!(!verify_in_reused_memory(b"right password", "not a hash"));
    }

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
