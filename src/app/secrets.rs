//! Secret fields at rest: sealed with the credential's own data key before they enter an event,
//! opened (or masked) only on the way into an answer or a check.

use serde_json::Value;
use std::sync::Arc;

use super::crypto::{self, CryptoError, DataKey, Keyring};
use super::AppError;
use crate::domain::event::token_fields::{ACCESS_TOKEN, ISSUED_SECRETS, REFRESH_TOKEN};
use crate::domain::event::IssuedTokens;
use crate::domain::fields::FieldKind;
use crate::domain::user::NewCredential;
use crate::domain::Provider;
use crate::store::{CredentialView, WrappedKey};

/// What a masked secret reads as.
pub const MASK: &str = "********";

/// Seals, opens and masks credentials' secret fields.
#[derive(Clone)]
pub struct Secrets {
    keyring: Arc<Keyring>,
    /// Answers show `MASK` instead of secret fields (`--mask-secrets`).
    mask: bool,
}

impl From<CryptoError> for AppError {
    fn from(error: CryptoError) -> Self {
        AppError::Internal(anyhow::Error::new(error).context("credential encryption"))
    }
}

impl Secrets {
    pub fn new(keyring: Arc<Keyring>, mask: bool) -> Self {
        Self { keyring, mask }
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The credential as an answer shows it: decrypted, or with secrets masked.
    pub fn reveal(&self, mut view: CredentialView) -> Result<CredentialView, AppError> {
        if !self.mask {
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

    /// Seals a new credential's secret fields with a fresh data key; returns the key, wrapped.
    pub fn seal_credential(&self, credential: &mut NewCredential) -> Result<WrappedKey, AppError> {
        let key = DataKey::generate();
        for (name, value) in credential.fields.iter_mut() {
            if let (true, Some(text)) = (is_secret(credential.provider, name), value.as_str()) {
                *value = Value::String(key.seal(text, &format!("{}/{name}", credential.id)));
            }
        }
        let (key_id, wrapped) = self.keyring.wrap(&key, &credential.id.to_string())?;
        Ok(WrappedKey {
            credential_id: credential.id,
            key_id,
            wrapped,
        })
    }

    fn data_key(&self, view: &CredentialView) -> Result<DataKey, AppError> {
        let wrapped = view.data_key.as_ref().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("credential {} has no data key", view.id))
        })?;
        Ok(self
            .keyring
            .unwrap(&wrapped.key_id, &wrapped.wrapped, &view.id.to_string())?)
    }

    /// The credential with its secret fields decrypted.
    pub fn open(&self, mut view: CredentialView) -> Result<CredentialView, AppError> {
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
                *value = Value::String(key.open(sealed, &format!("{}/{name}", view.id))?);
            }
        }
        Ok(view)
    }

    /// Tokens a check obtained, sealed with the credential's data key (the secret ones among
    /// its other fields too).
    pub fn seal_tokens(
        &self,
        view: &CredentialView,
        tokens: IssuedTokens,
    ) -> Result<IssuedTokens, AppError> {
        let key = self.data_key(view)?;
        let seal = |name: &str, value: &str| key.seal(value, &format!("{}/{name}", view.id));
        Ok(IssuedTokens {
            access_token: tokens.access_token.map(|t| seal(ACCESS_TOKEN, &t)),
            refresh_token: tokens.refresh_token.map(|t| seal(REFRESH_TOKEN, &t)),
            fields: tokens
                .fields
                .into_iter()
                .map(|(name, value)| {
                    let value = if is_secret(view.provider, &name) {
                        seal(&name, &value)
                    } else {
                        value
                    };
                    (name, value)
                })
                .collect(),
            ..tokens
        })
    }
}

/// Whether a credential field is a secret, sealed at rest: the provider's secret fields and the
/// tokens a check stores.
pub fn is_secret(provider: Provider, name: &str) -> bool {
    ISSUED_SECRETS.contains(&name)
        || provider
            .spec()
            .fields
            .iter()
            .any(|f| f.kind == FieldKind::Secret && f.json_name() == name)
}
