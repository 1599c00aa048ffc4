//! Credential checks: a background worker that checks due credentials at their providers,
//! records each exchange, rotates tokens and sets statuses, and reclaims exchange logs older
//! than 30 days. How a credential is checked depends on its provider's `CheckKind`: one
//! [`CheckAdapter`] per kind (`oauth` for the refresh-token grant).
//!
//! The schedule lives in the ledger (`next_check_at` of each credential, set by events), so a
//! restart resumes where the ledger says, without a burst. A credential is checked by at most
//! one task at a time: the in-flight set guards overlapping ticks, and each task re-reads the
//! schedule before calling out, so a check that just finished is not repeated. Requests never
//! wait for a check: `POST …/check` only records that one is wanted.

pub mod agvance;
pub mod cognito;
pub mod exchange;
pub mod oauth;
pub mod redact;
pub mod sentera;
pub mod slingshot;
pub mod stara;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::app::{AppError, Service};
use crate::config::{CheckSettings, EVENTS_WINDOW_DAYS};
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::fields::FieldKind;
use crate::domain::provider::CheckKind;
use crate::domain::user::{CheckResult, UserError};
use crate::domain::{ClientEnvironment, Clock, CredentialId, CredentialStatus, Provider, UserId};
use crate::store::{CredentialView, DueCheck, StoreError};
use crate::telemetry::chain;

/// Checks one credential the way its provider allows. Never fails: every outcome, the
/// provider's silence included, is a result and the exchanges that led to it.
#[async_trait::async_trait]
pub trait CheckAdapter: Send + Sync {
    /// Checks `credential` (its secrets opened) at `endpoint` (what that names depends on the
    /// kind: see `CheckKind`).
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>);
}

/// The adapter for a kind of check; `None` for a provider that cannot be checked.
fn adapter(kind: CheckKind, client: &reqwest::Client) -> Option<Box<dyn CheckAdapter + '_>> {
    Some(match kind {
        CheckKind::OAuthRefresh(oauth) => Box::new(oauth::RefreshGrant { oauth, client }),
        CheckKind::SignedAccessKey(_) => Box::new(slingshot::AccessKeyProbe { client }),
        CheckKind::SenteraSession(_) => Box::new(sentera::SessionCheck { client }),
        CheckKind::AgvanceLogin(_) => Box::new(agvance::Login { client }),
        CheckKind::StaraRemint(_) => Box::new(stara::Remint { client }),
        CheckKind::CognitoRefresh(_) => Box::new(cognito::RefreshAuth { client }),
        CheckKind::Unchecked(_) => return None,
    })
}

/// The environment a credential names in its provider's environment field, if any.
fn environment_of(credential: &CredentialView) -> Option<ClientEnvironment> {
    credential
        .provider
        .spec()
        .fields
        .iter()
        .find(|f| f.kind == FieldKind::Environment)
        .and_then(|f| credential.fields.get(&f.json_name()))
        .and_then(|v| serde_json::from_value::<ClientEnvironment>(v.clone()).ok())
}

/// Where to check `provider`'s credentials of `environment`: configuration for that
/// environment, then for the provider, then the provider's published endpoint.
pub fn endpoint(
    settings: &CheckSettings,
    provider: Provider,
    environment: Option<ClientEnvironment>,
) -> Option<String> {
    let published = provider.spec().check.endpoints()?;
    environment
        .and_then(|env| settings.configured_token_url(provider, Some(env)))
        .or_else(|| settings.configured_token_url(provider, None))
        .or(published.for_environment(environment))
        .map(str::to_owned)
}

/// Whether these settings let `provider`'s credentials be checked: its kind has an adapter,
/// and an endpoint is known for at least one of its environments.
fn checkable(provider: Provider, settings: &CheckSettings) -> bool {
    [
        None,
        Some(ClientEnvironment::Stage),
        Some(ClientEnvironment::Production),
    ]
    .into_iter()
    .any(|env| endpoint(settings, provider, env).is_some())
}

/// Why each provider that these settings leave unchecked is not checked: it has no way to be
/// checked yet, no endpoint is configured for it, or checks are off.
pub fn unchecked_reasons(settings: &CheckSettings) -> HashMap<Provider, String> {
    Provider::ALL
        .iter()
        .filter_map(|&provider| {
            let spec = provider.spec();
            let why = match spec.check {
                CheckKind::Unchecked(why) => why.to_owned(),
                _ if !settings.enabled => {
                    "background checks are off on this server (--no-health-checks)".to_owned()
                }
                _ if checkable(provider, settings) => return None,
                _ => format!(
                    "no endpoint is configured for {} (--token-url {}=URL)",
                    spec.name,
                    crate::config::short_name(provider)
                ),
            };
            Some((provider, why))
        })
        .collect()
}

/// A credential's place among the checks running: removed from the in-flight set, and its
/// concurrency permit returned, when dropped.
struct Slot<'a> {
    worker: &'a Worker,
    id: CredentialId,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.worker
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

struct Worker {
    service: Service,
    settings: CheckSettings,
    client: reqwest::Client,
    /// The providers whose credentials these settings let the worker check.
    checkable: Vec<Provider>,
    in_flight: Mutex<HashSet<CredentialId>>,
    permits: Arc<Semaphore>,
}

/// Starts the worker on the current tokio runtime (none when disabled).
pub fn spawn(
    service: Service,
    settings: CheckSettings,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !settings.enabled {
        return Ok(None);
    }
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let checkable = Provider::ALL
        .iter()
        .copied()
        .filter(|p| checkable(*p, &settings))
        .collect();
    let worker = Arc::new(Worker {
        service,
        settings,
        client,
        checkable,
        in_flight: Mutex::new(HashSet::new()),
        permits,
    });
    Ok(Some(tokio::spawn(worker.run())))
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let wake = self.service.checks_wanted();
        let mut last_retention: Option<Instant> = None;
        let mut led = None;
        loop {
            // On a database several nodes share, one of them checks, under a fence that its
            // results are recorded with.
            let leads = match self.service.store().lead().await {
                Ok(leads) => leads,
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "could not ask whether this node leads the checks");
                    None
                }
            };
            if leads != led {
                match leads {
                    Some(fence) => tracing::info!(
                        fence,
                        "this node now leads the credential checks and retention"
                    ),
                    None => tracing::warn!("this node no longer leads the credential checks"),
                }
                led = leads;
            }
            let Some(fence) = leads else {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.tick) => {}
                    _ = wake.notified() => {}
                }
                continue;
            };
            if let Err(error) = self.clone().start_due_checks(fence).await {
                tracing::warn!(error = %chain(&error), "could not look for due checks");
            }
            if last_retention.is_none_or(|at| at.elapsed() >= self.settings.retention_every) {
                last_retention = Some(Instant::now());
                let cutoff = self
                    .service
                    .now()
                    .minus(chrono::Duration::days(EVENTS_WINDOW_DAYS));
                match self.service.purge_exchanges(cutoff).await {
                    Ok(0) => {}
                    Ok(purged) => {
                        tracing::info!(purged, "reclaimed exchange logs older than 30 days")
                    }
                    Err(error) => {
                        tracing::warn!(error = %chain(&error), "exchange log retention failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.tick) => {}
                _ = wake.notified() => {}
            }
        }
    }

    /// Starts the due checks; their results are recorded under `fence`, or dropped if the
    /// checks are led under another by then.
    async fn start_due_checks(self: Arc<Self>, fence: u64) -> Result<(), AppError> {
        let limit = (self.settings.concurrency * 4) as u32;
        let due = self.service.due_checks(&self.checkable, limit).await?;
        for check in due {
            let id = check.credential.id;
            if !self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id)
            {
                continue;
            }
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return Ok(());
            };
            let worker = self.clone();
            tokio::spawn(async move {
                // Frees the credential's slot however the check ends, a panic included.
                let _slot = Slot {
                    worker: &worker,
                    id,
                    _permit: permit,
                };
                let (user_id, provider) = (check.credential.user_id, check.credential.provider);
                let checking = worker.clone();
                let ended = tokio::spawn(async move { checking.check(check, fence).await }).await;
                if let Err(error) = ended {
                    tracing::error!(credential = %id, error = %error, "a check failed unexpectedly");
                    worker.record_failure(user_id, id, provider, fence).await;
                }
            });
        }
        Ok(())
    }

    /// Records that a check broke down (a bug, not the provider): the credential is
    /// `TEMPORARILY_UNAVAILABLE` and its next check backs off, so one bad answer cannot keep it
    /// due for ever.
    async fn record_failure(
        &self,
        user_id: UserId,
        id: CredentialId,
        provider: Provider,
        fence: u64,
    ) {
        let result = CheckResult {
            status: CredentialStatus::TemporarilyUnavailable,
            tokens: None,
            reason: "the check failed unexpectedly".into(),
        };
        if let Err(error) = self
            .service
            .record_check(user_id, id, provider, result, vec![], Some(fence))
            .await
        {
            tracing::warn!(credential = %id, error = %chain(&error), "could not record a failed check");
        }
    }

    async fn check(&self, due: DueCheck, fence: u64) {
        let (id, provider) = (due.credential.id, due.credential.provider);
        // The list may predate a check that finished since (or tokens it rotated): read the
        // credential again, and check only if it is still due.
        let credential = match self.service.due_now(id).await {
            Ok(Some(credential)) => credential,
            Ok(None) => return,
            Err(error) => {
                return tracing::warn!(credential = %id, error = %chain(&error), "could not read a due credential")
            }
        };
        let secrets = self.service.secrets();
        let spec = provider.spec();
        let Some(adapter) = adapter(spec.check, &self.client) else {
            return;
        };
        let environment = environment_of(&credential);
        let Some(url) = endpoint(&self.settings, provider, environment) else {
            // Configured for another environment only: parked, or it would be due (and first
            // in line) on every tick.
            let environment = environment.map_or("its environment", |e| match e {
                ClientEnvironment::Stage => "STAGE",
                ClientEnvironment::Production => "PRODUCTION",
            });
            let reason = format!(
                "not checked: no endpoint is configured for {} {environment} (--token-url {}:{}=URL, then ask for a check)",
                spec.name,
                crate::config::short_name(provider),
                environment.to_ascii_lowercase(),
            );
            tracing::warn!(credential = %id, %reason, "parked a credential");
            let parked = self
                .service
                .park_check(credential.user_id, id, provider, reason)
                .await;
            if let Err(error) = parked {
                tracing::warn!(credential = %id, error = %chain(&error), "could not park a credential");
            }
            return;
        };
        let (mut result, exchanges) = adapter
            .check(
                &credential,
                &url,
                &self.settings,
                self.service.clock().as_ref(),
            )
            .await;
        let (status, reason) = (result.status, result.reason.clone());
        if let Some(tokens) = result.tokens.take() {
            match secrets.seal_tokens(&credential, tokens) {
                Ok(sealed) => result.tokens = Some(sealed),
                Err(error) => {
                    return tracing::error!(credential = %id, error = %chain(&error), "cannot seal the tokens the provider issued: they are lost, and a rotated refresh token with them")
                }
            }
        }
        // The provider may have rotated the refresh token already: a result that storage
        // could not take now is offered again, a few times, and one that carries a new refresh
        // token for as long as this process lives (the old token may be dead at the provider
        // now). The credential's slot stays taken meanwhile, so no other check sends the old one.
        let rotated = result.tokens.as_ref().is_some_and(IssuedTokens::rotates);
        let mut waits = [100, 400, 1600, 6400]
            .into_iter()
            .chain(std::iter::repeat(10_000).take_while(move |_| rotated));
        let recorded = loop {
            let recorded = self
                .service
                .record_check(
                    credential.user_id,
                    id,
                    provider,
                    result.clone(),
                    exchanges.clone(),
                    Some(fence),
                )
                .await;
            match (recorded, waits.next()) {
                (Err(AppError::Store(StoreError::Unavailable(error))), Some(wait_ms)) => {
                    if wait_ms >= 10_000 {
                        tracing::warn!(credential = %id, error = %chain(&error), "storage cannot take a rotated refresh token yet; holding it and trying again");
                    }
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await
                }
                (recorded, _) => break recorded,
            }
        };
        match recorded {
            Ok(_) => {
                tracing::info!(credential = %id, provider = spec.name, status = status.as_str(), %reason, "checked")
            }
            Err(AppError::User(UserError::StaleCredential)) => {
                tracing::info!(credential = %id, "discarded the result of a check: the credential was replaced or deleted")
            }
            Err(AppError::Store(StoreError::Fenced)) if rotated => {
                tracing::error!(credential = %id, "another node leads the checks now: this check's result is not recorded, and the rotated refresh token it carried is lost")
            }
            Err(AppError::Store(StoreError::Fenced)) => {
                tracing::warn!(credential = %id, "another node leads the checks now: this check's result is not recorded")
            }
            Err(error) if rotated => {
                tracing::error!(credential = %id, error = %chain(&error), "could not record a check: the rotated refresh token it carried is lost")
            }
            Err(error) => {
                tracing::warn!(credential = %id, error = %chain(&error), "could not record a check")
            }
        }
    }
}
