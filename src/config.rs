//! Settings and the limits that several layers read.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::provider::ClientAuth;
use crate::domain::{ClientEnvironment, Provider};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long exchanges with providers stay visible (`/events`) and stored (retention).
pub const EVENTS_WINDOW_DAYS: i64 = 30;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub bind: String,
    /// Where the ledger is.
    pub database: Database,
    pub store: crate::store::StoreOptions,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// The background credential checks.
    pub checks: CheckSettings,
    /// Where the master keys that wrap credential data keys come from.
    pub master_key: crate::app::crypto::KeySource,
    /// Never show secret fields in answers (they read `********`).
    pub mask_secrets: bool,
    pub rate_limits: RateLimits,
    pub connections: ConnectionLimits,
}

/// Where the ledger is: a SQLite file (its folder is created if missing), or a PostgreSQL
/// database shared by several nodes. `Debug` shows what `describe` does: never a password.
#[derive(Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL or `host=… dbname=…` conninfo.
    Postgres(String),
}

impl Database {
    /// `--database`: a PostgreSQL URL or conninfo, else a SQLite file's path.
    pub fn named(text: &str) -> Database {
        if crate::store::postgres::is_postgres(text) {
            Database::Postgres(text.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(text))
        }
    }

    /// The database as logs and errors name it (a PostgreSQL password never shown).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(conninfo) => crate::store::postgres::describe(conninfo),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What a client connection may hold of the server. Every connection is a file descriptor: a
/// client that opens many and sends nothing, or stops halfway through a body, is cut off.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to send a request's head, and separately its body: past it, 408 and the connection
    /// is closed.
    pub request_timeout: Duration,
    /// Most connections open at once per HTTP worker; beyond, new ones wait to be accepted.
    pub max_per_worker: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_per_worker: 4096,
        }
    }
}

/// Rate limits: requests per API owner (all its tokens together), login attempts per client
/// address, and per username from one address. Over a limit: 429 with `Retry-After`.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    /// Sustained requests per second per owner.
    pub owner_per_second: u32,
    /// Requests an owner may send at once above that rate.
    pub owner_burst: u32,
    /// Login attempts per minute for one username from one client address (successful or not).
    pub logins_per_minute: u32,
    /// Login attempts per minute from one client address, whatever the usernames.
    pub logins_per_client_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            owner_per_second: 1000,
            owner_burst: 2000,
            logins_per_minute: 10,
            logins_per_client_per_minute: 30,
        }
    }
}

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

/// How a provider's OAuth client authenticates at its token endpoint, in place of what the
/// provider's spec says: `claas=basic` (HTTP Basic) or `claas=body` (in the form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuthChoice {
    pub provider: Provider,
    pub basic: bool,
}

impl FromStr for ClientAuthChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, how) = text.split_once('=').ok_or("expected PROVIDER=basic|body")?;
        let basic = match how.to_ascii_lowercase().as_str() {
            "basic" => true,
            "body" => false,
            other => {
                return Err(format!(
                    "unknown client authentication `{other}` (basic or body)"
                ))
            }
        };
        Ok(ClientAuthChoice {
            provider: provider_named(name)?,
            basic,
        })
    }
}

#[derive(Clone, Debug)]
pub struct CheckSettings {
    pub enabled: bool,
    /// How often the worker looks for due checks (it is also woken by new credentials).
    pub tick: Duration,
    /// How many checks run at once.
    pub concurrency: usize,
    /// Timeout of one exchange with a provider.
    pub timeout: Duration,
    pub token_urls: Vec<TokenUrl>,
    pub required_scopes: Vec<RequiredScopes>,
    /// Client authentication chosen for providers that do not publish theirs.
    pub client_auth: Vec<ClientAuthChoice>,
    /// How often exchange logs older than 30 days are reclaimed.
    pub retention_every: Duration,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: Duration::from_secs(1),
            concurrency: 8,
            timeout: Duration::from_secs(10),
            token_urls: vec![],
            required_scopes: vec![],
            client_auth: vec![],
            retention_every: Duration::from_secs(3600),
        }
    }
}

impl CheckSettings {
    /// The token endpoint configured for `provider` and `environment` (`None`: for all of
    /// the provider's environments).
    pub fn configured_token_url(
        &self,
        provider: Provider,
        environment: Option<ClientEnvironment>,
    ) -> Option<&str> {
        self.token_urls
            .iter()
            .find(|t| t.provider == provider && t.environment == environment)
            .map(|t| t.url.as_str())
    }

    /// How `provider`'s client authenticates: as configured, else as its spec says (`spec`).
    pub fn client_auth(&self, provider: Provider, spec: ClientAuth) -> ClientAuth {
        let (ClientAuth::Basic { id, secret } | ClientAuth::Body { id, secret }) = spec;
        match self.client_auth.iter().find(|c| c.provider == provider) {
            Some(ClientAuthChoice { basic: true, .. }) => ClientAuth::Basic { id, secret },
            Some(ClientAuthChoice { basic: false, .. }) => ClientAuth::Body { id, secret },
            None => spec,
        }
    }

    /// Scopes `provider`'s tokens must carry (`MISSING_PERMISSION` without them).
    pub fn required_scopes(&self, provider: Provider) -> &[String] {
        self.required_scopes
            .iter()
            .find(|r| r.provider == provider)
            .map_or(&[], |r| &r.scopes)
    }
}
