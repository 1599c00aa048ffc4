//! Encryption at rest: envelope encryption with one AES-256-GCM data key per credential,
//! wrapped by a master key that never enters the database.
//!
//! Secret fields are sealed before they enter an event, so the ledger and the projections hold
//! only ciphertext. Wrapped data keys live in `data_keys`, the one table whose rows are deleted:
//! deleting or replacing a credential (or its user) deletes its data key in the same
//! transaction, after which no copy of the ledger, nor the master key, can recover its secrets.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

const SEALED: &str = "enc:v1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key file {0}: {1}")]
    KeyFile(PathBuf, String),
    #[error("unknown master key id {0}")]
    UnknownKey(String),
    #[error("decryption failed (wrong key or tampered data)")]
    Decrypt,
}

/// Where master keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A file of `ID BASE64KEY` lines, the last one active; created (0600) if absent.
    File(PathBuf),
    /// One base64 key, e.g. from an environment variable.
    Inline(String),
}

/// The master keys, newest last. Wraps with the newest, unwraps with any it knows.
pub struct Keyring {
    source: KeySource,
    keys: RwLock<Vec<(String, Key<Aes256Gcm>)>>,
}

fn key_id(key: &[u8]) -> String {
    Sha256::digest(key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_key(text: &str) -> Option<Key<Aes256Gcm>> {
    let bytes = B64.decode(text.trim()).ok()?;
    (bytes.len() == 32).then(|| *Key::<Aes256Gcm>::from_slice(&bytes))
}

fn read_file(path: &Path) -> Result<Vec<(String, Key<Aes256Gcm>)>, CryptoError> {
    let bad = |e: String| CryptoError::KeyFile(path.to_owned(), e);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let keys: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (id, key) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `ID BASE64KEY` lines".into()))?;
            let key =
                parse_key(key).ok_or_else(|| bad(format!("key {id} is not 32 base64 bytes")))?;
            Ok((id.to_owned(), key))
        })
        .collect::<Result<_, CryptoError>>()?;
    if keys.is_empty() {
        return Err(bad("no key".into()));
    }
    Ok(keys)
}

/// Appends a new random key to the file (creating it 0600); returns its id.
fn append_new_key(path: &Path) -> Result<String, CryptoError> {
    use std::io::Write;
    let bad = |e: std::io::Error| CryptoError::KeyFile(path.to_owned(), e.to_string());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(bad)?;
    }
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let id = key_id(&key);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(bad)?;
    writeln!(file, "{id} {}", B64.encode(key)).map_err(bad)?;
    file.sync_all().map_err(bad)?;
    Ok(id)
}

/// Logs a warning when `path` may be read by users other than its owner.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "the master key file can be read by other users: chmod 600 it"
            );
        }
    }
}

impl Keyring {
    /// Loads the master keys, generating a key file on first start.
    pub fn open(source: KeySource) -> Result<Keyring, CryptoError> {
        let keys = match &source {
            KeySource::Inline(text) => {
                let key = parse_key(text).ok_or_else(|| {
                    CryptoError::KeyFile("<inline>".into(), "not 32 base64 bytes".into())
                })?;
                vec![(key_id(&key), key)]
            }
            KeySource::File(path) => {
                if !path.exists() {
                    append_new_key(path)?;
                }
                read_file(path)?
            }
        };
        Ok(Keyring {
            source,
            keys: RwLock::new(keys),
        })
    }

    /// Loads the master keys for a database whose data keys are wrapped by the keys `in_use`:
    /// refuses a source that lacks any of them, and a missing key file when the database
    /// already holds data keys (a new key would open none of them, and what is written
    /// meanwhile would not open with the old one once restored). Warns when the key file can
    /// be read by other users.
    pub fn open_for(source: KeySource, in_use: &[String]) -> Result<Keyring, CryptoError> {
        let place = match &source {
            KeySource::File(path) => path.clone(),
            KeySource::Inline(_) => "CREDENTIAL_LEDGER_MASTER_KEY".into(),
        };
        if let KeySource::File(path) = &source {
            if !path.exists() && !in_use.is_empty() {
                return Err(CryptoError::KeyFile(
                    path.clone(),
                    format!(
                        "missing, but the database holds data keys wrapped by master key {}: \
                         restore this file from where you keep it (it is in no database backup), \
                         or name it with --master-key-file",
                        in_use.join(", ")
                    ),
                ));
            }
        }
        let ring = Keyring::open(source)?;
        if let KeySource::File(path) = &ring.source {
            warn_if_readable_by_others(path);
        }
        let known: Vec<String> = ring
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        let missing: Vec<&str> = in_use
            .iter()
            .filter(|id| !known.contains(id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(CryptoError::KeyFile(
                place,
                format!(
                    "does not hold master key {} that wraps data keys in the database (it holds {}): \
                     restore the key file that does",
                    missing.join(", "),
                    known.join(", ")
                ),
            ));
        }
        Ok(ring)
    }

    /// Adds a new master key to the key file and makes it the active one.
    pub fn add_key(&self) -> Result<String, CryptoError> {
        let KeySource::File(path) = &self.source else {
            return Err(CryptoError::KeyFile(
                "<inline>".into(),
                "an inline key cannot be rotated".into(),
            ));
        };
        let id = append_new_key(path)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = read_file(path)?;
        Ok(id)
    }

    pub fn active_id(&self) -> String {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    fn key(&self, id: &str) -> Result<Key<Aes256Gcm>, CryptoError> {
        let find = |keys: &Vec<(String, Key<Aes256Gcm>)>| {
            keys.iter().find(|(k, _)| k == id).map(|(_, key)| *key)
        };
        if let Some(key) = find(&self.keys.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(key);
        }
        // `rotate-key` may have added a key since this process started: reload, no restart.
        if let KeySource::File(path) = &self.source {
            let keys = read_file(path)?;
            let found = find(&keys);
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            if let Some(key) = found {
                return Ok(key);
            }
        }
        Err(CryptoError::UnknownKey(id.to_owned()))
    }

    /// Wraps a data key with the active master key: (master key id, wrapped bytes).
    pub fn wrap(&self, data_key: &DataKey, aad: &str) -> Result<(String, Vec<u8>), CryptoError> {
        let id = self.active_id();
        let wrapped = seal_bytes(&self.key(&id)?, &data_key.0, aad);
        Ok((id, wrapped))
    }

    pub fn unwrap(&self, key_id: &str, wrapped: &[u8], aad: &str) -> Result<DataKey, CryptoError> {
        let bytes = open_bytes(&self.key(key_id)?, wrapped, aad)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(DataKey(key))
    }
}

fn seal_bytes(key: &Key<Aes256Gcm>, plaintext: &[u8], aad: &str) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(key);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    [nonce.as_slice(), &sealed].concat()
}

fn open_bytes(key: &Key<Aes256Gcm>, sealed: &[u8], aad: &str) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 12 {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, body) = sealed.split_at(12);
    Aes256Gcm::new(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// One credential's data key.
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> DataKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        DataKey(key)
    }

    fn key(&self) -> Key<Aes256Gcm> {
        *Key::<Aes256Gcm>::from_slice(&self.0)
    }

    /// `enc:v1:BASE64(nonce | ciphertext)`, bound to `aad` (credential id and field name).
    pub fn seal(&self, plaintext: &str, aad: &str) -> String {
        format!(
            "{SEALED}{}",
            B64.encode(seal_bytes(&self.key(), plaintext.as_bytes(), aad))
        )
    }

    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, CryptoError> {
        let body = sealed.strip_prefix(SEALED).ok_or(CryptoError::Decrypt)?;
        let bytes = B64.decode(body).map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(open_bytes(&self.key(), &bytes, aad)?).map_err(|_| CryptoError::Decrypt)
    }
}

pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = DataKey::generate();
        let sealed = key.seal("grower-refresh-token", "c1/refreshToken");
        assert!(is_sealed(&sealed) && !sealed.contains("grower"));
        assert_eq!(
            key.open(&sealed, "c1/refreshToken").unwrap(),
            "grower-refresh-token"
        );
        assert!(
            key.open(&sealed, "c2/refreshToken").is_err(),
            "bound to its credential and field"
        );
        assert!(DataKey::generate()
            .open(&sealed, "c1/refreshToken")
            .is_err());
    }

    #[test]
    fn a_key_file_is_created_0600_and_rotation_keeps_old_keys_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let ring = Keyring::open(KeySource::File(path.clone())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let data = DataKey::generate();
        let (old_id, wrapped) = ring.wrap(&data, "c1").unwrap();
        let new_id = ring.add_key().unwrap();
        assert_ne!(old_id, new_id);
        assert_eq!(ring.active_id(), new_id);
        let back = ring.unwrap(&old_id, &wrapped, "c1").unwrap();
        assert_eq!(back.0, data.0);
        // Another process that loaded the file earlier finds the new key by reloading.
        let other = Keyring::open(KeySource::File(path)).unwrap();
        let (id, rewrapped) = ring.wrap(&data, "c1").unwrap();
        assert_eq!(other.unwrap(&id, &rewrapped, "c1").unwrap().0, data.0);
    }
}
