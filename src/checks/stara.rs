//! Stara: tokens re-minted at its token endpoint with the API key and the client access token
//! (`POST /token`, JSON); the new tokens replace the stored ones.

use serde_json::{json, Map, Value};

use super::exchange::{credential_secrets, field, finish, lifetime, verdict, Sent};
use super::CheckAdapter;
use crate::config::CheckSettings;
use crate::domain::event::token_fields::{ACCESS_TOKEN, ACCESS_TOKEN_CLIENT};
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus, Timestamp};
use crate::store::CredentialView;

/// The `CheckKind::StaraRemint` adapter.
pub struct Remint<'a> {
    pub client: &'a reqwest::Client,
}

#[async_trait::async_trait]
impl CheckAdapter for Remint<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        _settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let fields = &credential.fields;
        let body = json!({
            "apiKey": field(fields, "apiKey"),
            ACCESS_TOKEN_CLIENT: field(fields, ACCESS_TOKEN_CLIENT),
        });
        let request = self
            .client
            .post(endpoint)
            .header("Accept", "application/json")
            .json(&body);
        let now = clock.now();
        let sent = Sent::send(request, "POST", endpoint, credential, now).await;
        let result = sent
            .trouble()
            .unwrap_or_else(|| classify(sent.code, sent.json(), now));
        finish(result, vec![sent], credential_secrets(credential))
    }
}

/// A text member of `answer` under either spelling Stara may use.
fn text(answer: &Map<String, Value>, camel: &str, snake: &str) -> Option<String> {
    [camel, snake]
        .into_iter()
        .find_map(|name| answer.get(name).and_then(Value::as_str))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn classify(code: u16, answer: Option<Map<String, Value>>, now: Timestamp) -> CheckResult {
    match code {
        200..=299 => {
            let answer = answer.unwrap_or_default();
            let expires_in = ["expiresIn", "expires_in"]
                .into_iter()
                .find_map(|name| lifetime(answer.get(name)));
            let mut tokens = IssuedTokens {
                access_token: text(&answer, ACCESS_TOKEN, "access_token"),
                refresh_token: text(&answer, "refreshToken", "refresh_token"),
                expires_at: expires_in.map(|secs| now.plus(chrono::Duration::seconds(secs))),
                ..IssuedTokens::default()
            };
            if let Some(client) = text(&answer, ACCESS_TOKEN_CLIENT, "access_token_client") {
                tokens.fields.insert(ACCESS_TOKEN_CLIENT.into(), client);
            }
            if tokens.access_token.is_none() {
                // Whatever it did rotate is kept: the old tokens may be dead now.
                return CheckResult {
                    status: CredentialStatus::TemporarilyUnavailable,
                    tokens: tokens.rotates().then_some(tokens),
                    reason: "no accessToken in Stara's answer".into(),
                };
            }
            CheckResult {
                status: CredentialStatus::Ok,
                tokens: Some(tokens),
                reason: "Stara issued new tokens".into(),
            }
        }
        401 | 403 => verdict(
            CredentialStatus::Unauthenticated,
            format!("Stara refused the API key or the client access token (HTTP {code})"),
        ),
        _ => verdict(
            CredentialStatus::TemporarilyUnavailable,
            format!("Stara's token endpoint answered HTTP {code}; checks go on"),
        ),
    }
}
