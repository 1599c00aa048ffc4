//! Sentera: the stored session token (`authToken`) is tried on a GraphQL query for the
//! organizations the login can see; without one, or when Sentera refuses it (401), the
//! grower's login (`POST /v1/sessions`, Sentera's legacy flow) issues a new one. The grower's
//! organization, found by name, gives `organizationId`.

use serde_json::{json, Value};

use super::exchange::{credential_secrets, field, finish, verdict, Sent};
use super::CheckAdapter;
use crate::config::CheckSettings;
use crate::domain::event::token_fields::{AUTH_TOKEN, ORGANIZATION_ID};
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus};
use crate::store::CredentialView;

/// The `CheckKind::SenteraSession` adapter; the endpoint is the API's base URL.
pub struct SessionCheck<'a> {
    pub client: &'a reqwest::Client,
}

/// The organizations the session can see (the first hundred).
const ORGANIZATIONS: &str =
    "query { organizations(pagination: { page: 1, page_size: 100 }) { results { sentera_id name } } }";

/// What the GraphQL query found.
enum Query {
    /// The session works; the grower's organization's id, if it is visible.
    Answered(Option<String>),
    /// Sentera refused the session token (401).
    Refused,
    /// Anything else, final.
    Failed(CheckResult),
}

#[async_trait::async_trait]
impl CheckAdapter for SessionCheck<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        _settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let base = endpoint.trim_end_matches('/');
        let organization = field(&credential.fields, "organizationName");
        let mut secrets = credential_secrets(credential);
        let mut sent = vec![];
        // The stored session first; without one, as if it were refused.
        let stored = Some(field(&credential.fields, AUTH_TOKEN)).filter(|t| !t.is_empty());
        let mut query = Query::Refused;
        if let Some(token) = stored {
            let (answer, exchange) = self
                .query(credential, base, token, organization, clock)
                .await;
            sent.push(exchange);
            query = answer;
        }
        let mut issued = None;
        if matches!(query, Query::Refused) {
            let (login, exchange) = self.login(credential, base, clock).await;
            sent.push(exchange);
            let token = match login {
                Ok(token) => token,
                Err(result) => return finish(result, sent, secrets),
            };
            secrets.add(&token);
            let (answer, exchange) = self
                .query(credential, base, &token, organization, clock)
                .await;
            sent.push(exchange);
            query = answer;
            issued = Some(token);
        }
        let mut result = match query {
            Query::Answered(id) => answered(organization, id),
            Query::Failed(result) => result,
            Query::Refused => verdict(
                CredentialStatus::TemporarilyUnavailable,
                "Sentera refused the session it had just issued (HTTP 401); checks go on",
            ),
        };
        // A session issued on the way is kept whatever the query found.
        if let Some(token) = issued {
            result
                .tokens
                .get_or_insert_with(IssuedTokens::default)
                .fields
                .insert(AUTH_TOKEN.into(), token);
        }
        finish(result, sent, secrets)
    }
}

/// The result of a query that worked: the organization's id is stored when it is visible.
fn answered(organization: &str, id: Option<String>) -> CheckResult {
    match id {
        Some(id) => {
            let mut tokens = IssuedTokens::default();
            tokens.fields.insert(ORGANIZATION_ID.into(), id);
            CheckResult {
                status: CredentialStatus::Ok,
                tokens: Some(tokens),
                reason: format!("Sentera's session works and sees the organization {organization}"),
            }
        }
        None => verdict(
            CredentialStatus::MissingPermission,
            format!(
                "Sentera's session works but does not see an organization named {organization}"
            ),
        ),
    }
}

impl SessionCheck<'_> {
    /// The grower's login: a new session token, or the result its refusal means.
    async fn login(
        &self,
        credential: &CredentialView,
        base: &str,
        clock: &dyn Clock,
    ) -> (Result<String, CheckResult>, Sent) {
        let fields = &credential.fields;
        let url = format!("{base}/v1/sessions");
        let body = json!({ "session": {
            "email": field(fields, "username"),
            "password": field(fields, "password"),
            "platform_id": "API",
            "version_id": "1.0.0",
        }});
        let request = self
            .client
            .post(&url)
            .header("Accept", "application/json")
            .json(&body);
        let sent = Sent::send(request, "POST", &url, credential, clock.now()).await;
        if let Some(trouble) = sent.trouble() {
            return (Err(trouble), sent);
        }
        let code = sent.code;
        let token = sent
            .json()
            .and_then(|answer| {
                answer
                    .get("auth_token")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|t| !t.is_empty());
        let login = match (code, token) {
            (200..=299, Some(token)) => Ok(token),
            (200..=299, None) => Err(verdict(
                CredentialStatus::TemporarilyUnavailable,
                "no auth_token in Sentera's answer to the login",
            )),
            (401 | 403 | 422, _) => Err(verdict(
                CredentialStatus::Unauthenticated,
                format!("Sentera refused the grower's login (HTTP {code})"),
            )),
            _ => Err(verdict(
                CredentialStatus::TemporarilyUnavailable,
                format!("Sentera's login answered HTTP {code}; checks go on"),
            )),
        };
        (login, sent)
    }

    /// The organizations `token` can see, searched for `organization`.
    async fn query(
        &self,
        credential: &CredentialView,
        base: &str,
        token: &str,
        organization: &str,
        clock: &dyn Clock,
    ) -> (Query, Sent) {
        let url = format!("{base}/graphql");
        let request = self
            .client
            .post(&url)
            .header("Accept", "application/json")
            .bearer_auth(token)
            .json(&json!({ "query": ORGANIZATIONS }));
        let sent = Sent::send(request, "POST", &url, credential, clock.now()).await;
        if let Some(trouble) = sent.trouble() {
            return (Query::Failed(trouble), sent);
        }
        let query = match sent.code {
            401 => Query::Refused,
            200..=299 => {
                let results = sent.json().and_then(|answer| {
                    answer
                        .get("data")?
                        .get("organizations")?
                        .get("results")?
                        .as_array()
                        .cloned()
                });
                match results {
                    Some(results) => Query::Answered(
                        results
                            .iter()
                            .find(|org| {
                                org.get("name").and_then(Value::as_str) == Some(organization)
                            })
                            .and_then(|org| org.get("sentera_id").and_then(Value::as_str))
                            .map(str::to_owned),
                    ),
                    None => Query::Failed(verdict(
                        CredentialStatus::TemporarilyUnavailable,
                        "Sentera's GraphQL answer has no organizations",
                    )),
                }
            }
            403 => Query::Failed(verdict(
                CredentialStatus::MissingPermission,
                "Sentera refused the query (HTTP 403)",
            )),
            code => Query::Failed(verdict(
                CredentialStatus::TemporarilyUnavailable,
                format!("Sentera's GraphQL endpoint answered HTTP {code}; checks go on"),
            )),
        };
        (query, sent)
    }
}
