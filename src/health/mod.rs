//! Credential health: a background worker that checks due credentials at their providers,
//! records each exchange, rotates tokens and sets statuses, and reclaims exchange logs older
//! than 30 days.
//!
//! The schedule lives in the ledger (`next_check_at` of each credential, set by events), so a
//! restart resumes where the ledger says, without a burst. A credential is checked by at most
//! one task at a time: the in-flight set guards overlapping ticks, and each task re-reads the
//! schedule before calling out, so a check that just finished is not repeated. Requests never
//! wait for a check: `POST …/check` only records that one is wanted.

pub mod oauth;
pub mod redact;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::api::credentials::EVENTS_WINDOW_DAYS;
use crate::domain::user::UserError;
use crate::domain::{ClientEnvironment, CredentialId, Provider};
use crate::ledger::{Ledger, LedgerError};
use crate::store::views::{self, DueCheck};

/// A token endpoint configured for a provider (and optionally one of its environments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUrl {
    pub provider: Provider,
    pub environment: Option<ClientEnvironment>,
    pub url: String,
}

/// The short provider name used in configuration: the slug without `-credentials`.
pub fn short_name(provider: Provider) -> &'static str {
    let slug = provider.spec().slug;
    slug.strip_suffix("-credentials").unwrap_or(slug)
}

fn provider_named(name: &str) -> Result<Provider, String> {
    Provider::ALL
        .iter()
        .copied()
        .find(|p| short_name(*p) == name)
        .ok_or_else(|| {
            let known: Vec<&str> = Provider::ALL.iter().map(|p| short_name(*p)).collect();
            format!("unknown provider `{name}` (known: {})", known.join(", "))
        })
}

impl FromStr for TokenUrl {
    type Err = String;

    /// `john-deere=https://…` or `john-deere:stage=https://…`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (key, url) = text
            .split_once('=')
            .ok_or("expected PROVIDER[:ENVIRONMENT]=URL")?;
        let (name, environment) = match key.split_once(':') {
            Some((name, env)) => {
                let env = match env.to_ascii_lowercase().as_str() {
                    "stage" => ClientEnvironment::Stage,
                    "production" => ClientEnvironment::Production,
                    other => {
                        return Err(format!(
                            "unknown environment `{other}` (stage or production)"
                        ))
                    }
                };
                (name, Some(env))
            }
            None => (key, None),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        Ok(TokenUrl {
            provider: provider_named(name)?,
            environment,
            url: url.to_owned(),
        })
    }
}

/// Scopes a provider's tokens must carry, e.g. `john-deere=ag1 org1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiredScopes {
    pub provider: Provider,
    pub scopes: Vec<String>,
}

impl FromStr for RequiredScopes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, scopes) = text
            .split_once('=')
            .ok_or("expected PROVIDER=SCOPE SCOPE …")?;
        Ok(RequiredScopes {
            provider: provider_named(name)?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct HealthSettings {
    pub enabled: bool,
    /// How often the worker looks for due checks (it is also woken by new credentials).
    pub tick: Duration,
    /// How many checks run at once.
    pub concurrency: usize,
    /// Timeout of one exchange with a provider.
    pub timeout: Duration,
    pub token_urls: Vec<TokenUrl>,
    pub required_scopes: Vec<RequiredScopes>,
    /// How often exchange logs older than 30 days are reclaimed.
    pub retention_every: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: Duration::from_secs(1),
            concurrency: 8,
            timeout: Duration::from_secs(10),
            token_urls: vec![],
            required_scopes: vec![],
            retention_every: Duration::from_secs(3600),
        }
    }
}

impl HealthSettings {
    /// Where to refresh a credential: configuration for its environment, then for the
    /// provider, then the provider's published endpoint.
    pub fn token_url(
        &self,
        provider: Provider,
        environment: Option<ClientEnvironment>,
    ) -> Option<String> {
        let configured = |env: Option<ClientEnvironment>| {
            self.token_urls
                .iter()
                .find(|t| t.provider == provider && t.environment == env)
                .map(|t| t.url.clone())
        };
        let check = provider.spec().check;
        let published = match environment {
            Some(ClientEnvironment::Stage) => check.stage_token_url.or(check.production_token_url),
            _ => check.production_token_url,
        };
        environment
            .and_then(|env| configured(Some(env)))
            .or_else(|| configured(None))
            .or_else(|| published.map(str::to_owned))
    }

    fn checkable(&self) -> Vec<&'static str> {
        Provider::ALL
            .iter()
            .filter(|p| {
                [
                    None,
                    Some(ClientEnvironment::Stage),
                    Some(ClientEnvironment::Production),
                ]
                .into_iter()
                .any(|env| self.token_url(**p, env).is_some())
            })
            .map(|p| p.key())
            .collect()
    }

    fn required_scopes(&self, provider: Provider) -> &[String] {
        self.required_scopes
            .iter()
            .find(|r| r.provider == provider)
            .map_or(&[], |r| &r.scopes)
    }
}

struct Worker {
    ledger: Ledger,
    settings: HealthSettings,
    client: reqwest::Client,
    in_flight: Mutex<HashSet<CredentialId>>,
    permits: Arc<Semaphore>,
}

/// Starts the worker on the current tokio runtime (none when disabled).
pub fn spawn(
    ledger: Ledger,
    settings: HealthSettings,
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
    let worker = Arc::new(Worker {
        ledger,
        settings,
        client,
        in_flight: Mutex::new(HashSet::new()),
        permits,
    });
    Ok(Some(tokio::spawn(worker.run())))
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let wake = self.ledger.checks_wanted();
        let mut last_retention: Option<Instant> = None;
        loop {
            if let Err(error) = self.clone().start_due_checks().await {
                tracing::warn!(%error, "could not look for due checks");
            }
            if last_retention.is_none_or(|at| at.elapsed() >= self.settings.retention_every) {
                last_retention = Some(Instant::now());
                let cutoff = self
                    .ledger
                    .now()
                    .minus(chrono::Duration::days(EVENTS_WINDOW_DAYS));
                match self.ledger.store().purge_exchanges(cutoff).await {
                    Ok(0) => {}
                    Ok(purged) => {
                        tracing::info!(purged, "reclaimed exchange logs older than 30 days")
                    }
                    Err(error) => tracing::warn!(%error, "exchange log retention failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.tick) => {}
                _ = wake.notified() => {}
            }
        }
    }

    async fn start_due_checks(self: Arc<Self>) -> Result<(), LedgerError> {
        let checkable = serde_json::json!(self.settings.checkable()).to_string();
        let now = self.ledger.now();
        let limit = (self.settings.concurrency * 4) as u32;
        let due = self
            .ledger
            .store()
            .read(move |conn| views::due_checks(conn, now, &checkable, limit))
            .await?;
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
                worker.check(check).await;
                worker
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                drop(permit);
            });
        }
        Ok(())
    }

    async fn check(&self, due: DueCheck) {
        let (id, provider) = (due.credential.id, due.credential.provider);
        let credential = match self.ledger.open(due.credential) {
            Ok(credential) => credential,
            Err(error) => {
                return tracing::warn!(credential = %id, %error, "cannot decrypt a credential")
            }
        };
        // The list may predate a check that finished since: re-read the schedule.
        let now = self.ledger.now();
        let still_due = self
            .ledger
            .store()
            .read(move |conn| views::due_check(conn, id))
            .await;
        match still_due {
            Ok(Some(fresh)) if fresh.next_check_at <= now => {}
            Ok(_) => return,
            Err(error) => return tracing::warn!(%error, "could not read a credential's schedule"),
        }
        let environment = credential
            .fields
            .get("clientEnvironment")
            .and_then(|v| serde_json::from_value::<ClientEnvironment>(v.clone()).ok());
        let Some(url) = self.settings.token_url(provider, environment) else {
            return tracing::warn!(credential = %id, "no token endpoint configured for this environment");
        };
        let spec = provider.spec();
        let scopes = self.settings.required_scopes(provider);
        let ledger = &self.ledger;
        let (result, exchange) =
            oauth::check(&self.client, spec, &credential, &url, scopes, || {
                ledger.now()
            })
            .await;
        let (status, reason) = (result.status, result.reason.clone());
        let mut result = result;
        if let Some(tokens) = result.tokens.take() {
            match ledger.seal_tokens(&credential, tokens) {
                Ok(sealed) => result.tokens = Some(sealed),
                Err(error) => {
                    return tracing::warn!(credential = %id, %error, "cannot seal new tokens")
                }
            }
        }
        match ledger
            .record_check(credential.user_id, id, provider, result, vec![exchange])
            .await
        {
            Ok(_) => {
                tracing::info!(credential = %id, provider = spec.name, status = status.as_str(), %reason, "checked")
            }
            Err(LedgerError::User(UserError::StaleCredential)) => {
                tracing::info!(credential = %id, "discarded the result of a check: the credential was replaced or deleted")
            }
            Err(error) => tracing::warn!(credential = %id, %error, "could not record a check"),
        }
    }
}
