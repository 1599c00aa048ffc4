//! What every provider shares: its spec (names, fields, how its credentials are checked) and
//! the statuses a credential can have. The providers themselves are data, one file each in
//! `providers/`; `for_each_provider!` lists them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub use super::fields::ClientEnvironment;
use super::fields::{validate_object, FieldError, FieldSpec};

/// Calls `$callback!` with every provider as `Variant module`, in this order (that of the
/// OpenAPI document and of a user's credential objects). A provider is its file in
/// `providers/` and its line here.
macro_rules! for_each_provider {
    ($callback:ident) => {
        $callback! {
            AgLeader ag_leader,
            Agvance agvance,
            Claas claas,
            ClimateFieldView climate_field_view,
            Cnhi cnhi,
            CnhiFieldOps cnhi_field_ops,
            JohnDeere john_deere,
            Lindsay lindsay,
            Panorama panorama,
            Raven raven,
            RavenSlingshot raven_slingshot,
            Sentera sentera,
            Stara stara,
            Trimble trimble,
            Valley valley,
        }
    };
}
pub(crate) use for_each_provider;

macro_rules! provider_enum {
    ($($variant:ident $module:ident),* $(,)?) => {
        /// A machine-data provider whose credentials the ledger keeps.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Provider { $($variant),* }

        impl Provider {
            pub const ALL: &'static [Provider] = &[$(Provider::$variant),*];

            pub fn spec(self) -> &'static ProviderSpec {
                match self { $(Provider::$variant => &super::providers::$module::SPEC),* }
            }

            /// The stable name stored in the ledger.
            pub fn key(self) -> &'static str {
                match self { $(Provider::$variant => stringify!($variant)),* }
            }
        }
    };
}
for_each_provider!(provider_enum);

impl Provider {
    pub fn from_key(key: &str) -> Option<Provider> {
        Self::ALL.iter().copied().find(|p| p.key() == key)
    }
}

/// The health of a credential, as Leaf reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialStatus {
    /// Everything is OK.
    Ok,
    /// The credential is no longer valid (revoked or expired).
    Unauthenticated,
    /// The credential is valid but lacks permissions (scopes).
    MissingPermission,
    /// The provider failed (5xx, timeout); checks go on.
    TemporarilyUnavailable,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::MissingPermission => "MISSING_PERMISSION",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Ok,
            Self::Unauthenticated,
            Self::MissingPermission,
            Self::TemporarilyUnavailable,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// How a provider's OAuth client authenticates at its token endpoint, naming the credential
/// fields (JSON names) that hold the client id and secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic {
        id: &'static str,
        secret: &'static str,
    },
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Body {
        id: &'static str,
        secret: &'static str,
    },
}

/// The endpoints a provider publishes, by `clientEnvironment` (`None`: not published, so it
/// must be configured).
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub production: Option<&'static str>,
    /// For `clientEnvironment: STAGE`, where different from production.
    pub stage: Option<&'static str>,
}

impl Endpoints {
    /// Nothing published: checked once an endpoint is configured.
    pub const UNPUBLISHED: Endpoints = Endpoints {
        production: None,
        stage: None,
    };

    /// One published endpoint, for every environment.
    pub const fn published(url: &'static str) -> Self {
        Self {
            production: Some(url),
            stage: None,
        }
    }

    /// The published endpoint for `environment`: stage falls back to production.
    pub fn for_environment(&self, environment: Option<ClientEnvironment>) -> Option<&'static str> {
        match environment {
            Some(ClientEnvironment::Stage) => self.stage.or(self.production),
            _ => self.production,
        }
    }
}

/// How a provider's credentials can be checked; `crate::checks` has one adapter per kind.
/// What a configured endpoint (`--token-url`) names differs by kind, as each says.
#[derive(Clone, Copy, Debug)]
pub enum CheckKind {
    /// A `refresh_token` grant at the provider's token endpoint.
    OAuthRefresh(OAuthCheck),
    /// Raven Slingshot: `GET /accesskey`, signed with HMAC-SHA1; the endpoint is the API's
    /// base URL.
    SignedAccessKey(Endpoints),
    /// Sentera: a session login (`POST /v1/sessions`) when no session token works, then a
    /// GraphQL query (`POST /graphql`) for the grower's organization; the endpoint is the API's
    /// base URL.
    SenteraSession(Endpoints),
    /// AgVance: a login that answers a session id, whose errors may come as HTTP 200 with a
    /// body `Status`; the endpoint is the login URL.
    AgvanceLogin(Endpoints),
    /// Stara: tokens re-minted with the API key and client access token; the endpoint is the
    /// token URL.
    StaraRemint(Endpoints),
    /// AWS Cognito: `InitiateAuth` with `REFRESH_TOKEN_AUTH`, and the partner login
    /// (`USER_PASSWORD_AUTH`) when the refresh token is refused; the endpoint is the Cognito
    /// identity provider URL of the pool's region.
    CognitoRefresh(Endpoints),
    /// No check this service can make yet; says why (shown as the credential's
    /// `statusReason` until a check runs, which for these is never).
    Unchecked(&'static str),
}

impl CheckKind {
    /// The endpoints this kind of check calls, as published; `None` for `Unchecked`.
    pub fn endpoints(&self) -> Option<Endpoints> {
        match *self {
            CheckKind::OAuthRefresh(oauth) => Some(Endpoints {
                production: oauth.production_token_url,
                stage: oauth.stage_token_url,
            }),
            CheckKind::SignedAccessKey(endpoints)
            | CheckKind::SenteraSession(endpoints)
            | CheckKind::AgvanceLogin(endpoints)
            | CheckKind::StaraRemint(endpoints)
            | CheckKind::CognitoRefresh(endpoints) => Some(endpoints),
            CheckKind::Unchecked(_) => None,
        }
    }
}

/// A `refresh_token` grant at the provider's token endpoint.
#[derive(Clone, Copy, Debug)]
pub struct OAuthCheck {
    pub client_auth: ClientAuth,
    /// The provider's published production token endpoint, if it publishes one.
    pub production_token_url: Option<&'static str>,
    /// The published token endpoint for `clientEnvironment: STAGE`, if different.
    pub stage_token_url: Option<&'static str>,
}

impl OAuthCheck {
    /// A provider that publishes no token endpoint: it is checked once one is configured.
    pub const fn unpublished(client_auth: ClientAuth) -> Self {
        Self {
            client_auth,
            production_token_url: None,
            stage_token_url: None,
        }
    }
}

/// Everything the rest of the service needs to know about one provider.
#[derive(Debug)]
pub struct ProviderSpec {
    pub provider: Provider,
    /// Human name, e.g. "John Deere"; also the OpenAPI tag.
    pub name: &'static str,
    /// What its credentials open, e.g. "John Deere Operations Center" (the tag's description).
    pub title: &'static str,
    /// Path segment under `/users/{leafUserId}/`.
    pub slug: &'static str,
    /// Name of the credential object in a Leaf user (and in `fieldErrors`).
    pub object_name: &'static str,
    /// What its operation ids say, e.g. `john_deere` in `get_john_deere_credentials`.
    pub operation: &'static str,
    pub fields: &'static [FieldSpec],
    /// The name of its request body schema in the OpenAPI document.
    pub request_schema: &'static str,
    /// The name of its answer's schema in the OpenAPI document.
    pub response_schema: &'static str,
    /// How its credentials are checked in the background.
    pub check: CheckKind,
    /// A stored credential (what every answer says, and its fields) as this provider's typed
    /// answer.
    pub answer: fn(
        &super::providers::CredentialFacts<'_>,
        &Map<String, Value>,
    ) -> serde_json::Result<Value>,
}

impl ProviderSpec {
    pub fn validate(&self, body: &Value) -> Result<Map<String, Value>, Vec<FieldError>> {
        validate_object(self.object_name, self.fields, body, &[])
    }
}
