//! Reads for answers (secrets opened or masked on the way out), for the check worker, and the
//! ledger's upkeep (retention, rebuild, master key rotation).

use super::{AppError, Service};
use crate::domain::{CredentialId, OwnerId, Provider, Timestamp, UserId};
use crate::store::{CredentialView, DueCheck, ExchangeView, UserQuery, UserView, WrappedKey};

impl Service {
    /// The credential with its secrets still sealed (for its status).
    pub async fn credential(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<CredentialView>, AppError> {
        Ok(self.store.credential(owner, user, provider).await?)
    }

    /// The user with its credentials as an answer shows them.
    pub async fn user(&self, owner: OwnerId, user: UserId) -> Result<Option<UserView>, AppError> {
        self.store
            .user(owner, user)
            .await?
            .map(|view| self.reveal_user(view))
            .transpose()
    }

    /// One page of the owner's users, and how many match.
    pub async fn users(
        &self,
        owner: OwnerId,
        query: UserQuery,
    ) -> Result<(Vec<UserView>, u64), AppError> {
        let (users, total) = self.store.users(owner, query).await?;
        let users = users
            .into_iter()
            .map(|view| self.reveal_user(view))
            .collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    fn reveal_user(&self, mut view: UserView) -> Result<UserView, AppError> {
        view.credentials = std::mem::take(&mut view.credentials)
            .into_iter()
            .map(|c| self.reveal(c))
            .collect::<Result<_, _>>()?;
        Ok(view)
    }

    /// The credential's exchanges since `since`, newest first; `None` without the credential.
    pub async fn exchanges(
        &self,
        owner: OwnerId,
        user: UserId,
        provider: Provider,
        since: Timestamp,
    ) -> Result<Option<Vec<ExchangeView>>, AppError> {
        Ok(self.store.exchanges(owner, user, provider, since).await?)
    }

    /// Credentials of `providers` due for a check now, longest overdue first.
    pub async fn due_checks(
        &self,
        providers: &[Provider],
        limit: u32,
    ) -> Result<Vec<DueCheck>, AppError> {
        Ok(self.store.due_checks(self.now(), providers, limit).await?)
    }

    /// The credential as it is now, with its secrets opened, if it is still due (a list of due
    /// checks may predate a check that finished since, or tokens rotated since).
    pub async fn due_now(&self, id: CredentialId) -> Result<Option<CredentialView>, AppError> {
        let now = self.now();
        let due = self.store.due_check(id).await?;
        due.filter(|due| due.next_check_at <= now)
            .map(|due| self.secrets.open(due.credential))
            .transpose()
    }

    /// Reclaims exchange contents recorded before `cutoff`; returns how many.
    pub async fn purge_exchanges(&self, cutoff: Timestamp) -> Result<usize, AppError> {
        Ok(self.store.purge_exchanges(cutoff).await?)
    }

    /// Adds a new master key and re-wraps every data key with it; returns the key's id and how
    /// many data keys were re-wrapped.
    pub async fn rotate_master_key(&self) -> Result<(String, usize), AppError> {
        let keyring = self.secrets.keyring().clone();
        let new_id = keyring.add_key()?;
        let count = self
            .store
            .rewrap_keys(Box::new(move |old| {
                let aad = old.credential_id.to_string();
                let key = keyring
                    .unwrap(&old.key_id, &old.wrapped, &aad)
                    .map_err(|e| e.to_string())?;
                let (key_id, wrapped) = keyring.wrap(&key, &aad).map_err(|e| e.to_string())?;
                Ok(WrappedKey {
                    credential_id: old.credential_id,
                    key_id,
                    wrapped,
                })
            }))
            .await?;
        Ok((new_id, count))
    }

    /// Whether the storage answers.
    pub async fn ping(&self) -> Result<(), AppError> {
        Ok(self.store.ping().await?)
    }
}
