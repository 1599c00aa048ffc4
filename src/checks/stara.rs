//! Stara: tokens re-minted at its token endpoint with the API key and the client access token
//! (`POST /token`, JSON); the new tokens replace the stored ones.

use serde_json::{json, Map, Value};

use super::exchange::{add_tokens, credential_secrets, field, lifetime, verdict, Sent};
use super::{redact, CheckAdapter};
use crate::config::CheckSettings;
use crate::domain::event::token_fields::ACCESS_TOKEN;
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus, Timestamp};
use crate::store::CredentialView;

/// The credential field (and the answer's) holding the client access token.
const ACCESS_TOKEN_CLIENT: &str = "accessTokenClient";

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
        let mut secrets = credential_secrets(credential);
        let mut result = sent
            .trouble()
            .unwrap_or_else(|| classify(sent.code, sent.json(), now));
        if let Some(tokens) = &result.tokens {
            add_tokens(&mut secrets, tokens);
        }
        result.reason = redact::reason(&result.reason, &secrets);
        (result, vec![sent.record(&secrets)])
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
            let Some(access_token) = text(&answer, ACCESS_TOKEN, "access_token") else {
                return verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    "no accessToken in Stara's answer",
                );
            };
            let expires_in = ["expiresIn", "expires_in"]
                .into_iter()
                .find_map(|name| lifetime(answer.get(name)));
            let mut tokens = IssuedTokens {
                refresh_token: text(&answer, "refreshToken", "refresh_token"),
                ..IssuedTokens::access(
                    access_token,
                    expires_in.map(|secs| now.plus(chrono::Duration::seconds(secs))),
                )
            };
            if let Some(client) = text(&answer, ACCESS_TOKEN_CLIENT, "access_token_client") {
                tokens.fields.insert(ACCESS_TOKEN_CLIENT.into(), client);
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
