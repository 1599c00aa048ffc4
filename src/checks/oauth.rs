//! One check of one credential: a `refresh_token` grant at the provider's token endpoint, the
//! answer classified into a status, the exchange redacted for the log.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use super::exchange::{credential_secrets, field, lifetime, Sent};
use super::{redact, CheckAdapter};
use crate::config::CheckSettings;
use crate::domain::event::token_fields::REFRESH_TOKEN;
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::provider::{ClientAuth, OAuthCheck, ProviderSpec};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus, Timestamp};
use crate::store::CredentialView;

/// The `CheckKind::OAuthRefresh` adapter: a `refresh_token` grant at the token endpoint.
pub struct RefreshGrant<'a> {
    pub oauth: OAuthCheck,
    pub client: &'a reqwest::Client,
}

#[async_trait::async_trait]
impl CheckAdapter for RefreshGrant<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        token_url: &str,
        settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let provider = credential.provider;
        let (result, exchange) = check(
            self.client,
            provider.spec(),
            settings.client_auth(provider, self.oauth.client_auth),
            credential,
            token_url,
            settings.required_scopes(provider),
            clock.now(),
        )
        .await;
        (result, vec![exchange])
    }
}

/// What a token endpoint answered, read leniently: a JSON object or a form, numbers as numbers
/// or strings (RFC 6749 says JSON with a numeric `expires_in`; providers differ).
#[derive(Debug, Default, PartialEq)]
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    scope: Option<String>,
    error: Option<String>,
}

impl TokenResponse {
    fn parse(text: &str) -> Option<TokenResponse> {
        let pairs: Vec<(String, Value)> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            Ok(_) => return None,
            Err(_) => {
                if !redact::looks_like_form(text) {
                    return None;
                }
                form_urlencoded::parse(text.trim().as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect()
            }
        };
        let mut answer = TokenResponse::default();
        for (name, value) in pairs {
            let text = match &value {
                Value::String(text) if !text.is_empty() => Some(text.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            match name.as_str() {
                "access_token" => answer.access_token = value.as_str().map(str::to_owned),
                REFRESH_TOKEN_FIELD => answer.refresh_token = value.as_str().map(str::to_owned),
                "expires_in" => answer.expires_in = lifetime(Some(&value)),
                "scope" => answer.scope = value.as_str().map(str::to_owned),
                "error" => answer.error = text,
                _ => {}
            }
        }
        answer.access_token = answer.access_token.filter(|t| !t.is_empty());
        answer.refresh_token = answer.refresh_token.filter(|t| !t.is_empty());
        Some(answer)
    }
}

/// The refresh token's name in a token endpoint's answer (RFC 6749 §5.1).
const REFRESH_TOKEN_FIELD: &str = "refresh_token";

/// Checks `credential` at `token_url`. Never fails: every outcome is a status and an exchange.
pub async fn check(
    client: &reqwest::Client,
    spec: &ProviderSpec,
    client_auth: ClientAuth,
    credential: &CredentialView,
    token_url: &str,
    required_scopes: &[String],
    at: Timestamp,
) -> (CheckResult, ProviderExchange) {
    let fields = &credential.fields;
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", field(fields, REFRESH_TOKEN)),
    ];
    let mut request = client.post(token_url).header("Accept", "application/json");
    let mut secrets = credential_secrets(credential);
    match client_auth {
        ClientAuth::Basic { id, secret } => {
            let (id, secret) = (field(fields, id), field(fields, secret));
            // The header's value, should a provider echo it.
            secrets.add(&B64.encode(format!("{id}:{secret}")));
            request = request.basic_auth(id, Some(secret));
        }
        ClientAuth::Body { id, secret } => {
            form.push(("client_id", field(fields, id)));
            form.push(("client_secret", field(fields, secret)));
        }
    }
    let sent = Sent::send(request.form(&form), "POST", token_url, credential, at).await;
    if let (Some(_), Some(result)) = (sent.failure, sent.trouble()) {
        return (result, sent.record(&secrets));
    }
    let code = sent.code;
    let parsed = TokenResponse::parse(&sent.text);
    if let Some(tokens) = &parsed {
        for token in [&tokens.access_token, &tokens.refresh_token]
            .into_iter()
            .flatten()
        {
            secrets.add(token);
        }
    }
    let error = parsed.as_ref().and_then(|p| p.error.clone());
    let mut result = classify(code, parsed, credential.status, required_scopes, at);
    match error.as_deref() {
        Some("invalid_client") if !(200..300).contains(&code) => tracing::error!(
            provider = spec.name,
            credential = %credential.id,
            "the provider refused the application's client credentials (invalid_client): every \
             credential of this application will fail until its client id or secret is fixed"
        ),
        Some(error @ ("invalid_request" | "unsupported_grant_type"))
            if !(200..300).contains(&code) =>
        {
            tracing::error!(
                provider = spec.name,
                credential = %credential.id,
                error,
                "the provider called our token request malformed: a bug in this service, not the \
                 grower's credential; its status is kept"
            )
        }
        _ => {}
    }
    // The reason may quote the provider (`error`); it goes into the ledger and the logs.
    result.reason = redact::reason(&result.reason, &secrets);
    (result, sent.record(&secrets))
}

/// The status an answer means: a 2xx by its tokens and scopes, any other 4xx by its OAuth
/// `error` code first and its HTTP status second (Auth0 answers `invalid_grant` with 403), 429
/// and 5xx as the provider's trouble. A 2xx answer that rotates the refresh token without a
/// new access token still keeps the refresh token (the stored access token stays). The
/// `current_status` is kept when the provider calls our request malformed (our bug).
fn classify(
    code: u16,
    parsed: Option<TokenResponse>,
    current_status: CredentialStatus,
    required_scopes: &[String],
    at: Timestamp,
) -> CheckResult {
    let error = parsed.as_ref().and_then(|p| p.error.clone());
    let result = |status, reason: String| CheckResult {
        status,
        tokens: None,
        reason,
    };
    match code {
        200..=299 => {
            let Some(TokenResponse {
                access_token,
                refresh_token,
                expires_in,
                scope,
                ..
            }) = parsed
            else {
                return result(
                    CredentialStatus::TemporarilyUnavailable,
                    "no access_token in the answer".into(),
                );
            };
            let Some(access_token) = access_token else {
                return CheckResult {
                    status: CredentialStatus::TemporarilyUnavailable,
                    tokens: refresh_token.map(|refresh_token| IssuedTokens {
                        refresh_token: Some(refresh_token),
                        ..IssuedTokens::default()
                    }),
                    reason: "no access_token in the answer".into(),
                };
            };
            let scopes: Vec<String> = scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            let missing: Vec<&String> = required_scopes
                .iter()
                .filter(|s| !scopes.contains(s))
                .collect();
            let tokens = IssuedTokens {
                refresh_token,
                scopes,
                // In range (see `MAX_EXPIRES_IN_SECS`), so no date overflows.
                ..IssuedTokens::access(
                    access_token,
                    expires_in.map(|secs| at.plus(chrono::Duration::seconds(secs))),
                )
            };
            // Tokens are kept even when scopes are missing: a rotated refresh token is never lost.
            let (status, reason) = if missing.is_empty() {
                (
                    CredentialStatus::Ok,
                    "the provider issued a new access token".to_owned(),
                )
            } else {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                (
                    CredentialStatus::MissingPermission,
                    format!("missing scopes: {}", names.join(" ")),
                )
            };
            CheckResult {
                status,
                tokens: Some(tokens),
                reason,
            }
        }
        429 | 500..=599 => result(
            CredentialStatus::TemporarilyUnavailable,
            format!("the provider answered HTTP {code}; checks go on"),
        ),
        400..=499 => {
            let said = |what: &str| match &error {
                Some(error) => format!("{what} (HTTP {code}, {error})"),
                None => format!("{what} (HTTP {code})"),
            };
            match error.as_deref() {
                Some("invalid_grant") => result(
                    CredentialStatus::Unauthenticated,
                    said("the provider no longer accepts the refresh token"),
                ),
                Some("invalid_client") => result(
                    CredentialStatus::Unauthenticated,
                    said("the provider refused the application's client id or secret"),
                ),
                Some("invalid_scope" | "unauthorized_client") => result(
                    CredentialStatus::MissingPermission,
                    said("the application is not allowed the access it asked for"),
                ),
                Some("invalid_request" | "unsupported_grant_type") => result(
                    current_status,
                    said("the provider called this service's request malformed; status kept"),
                ),
                // The provider's own trouble, whatever the status code says.
                Some("temporarily_unavailable" | "server_error") => result(
                    CredentialStatus::TemporarilyUnavailable,
                    said("the provider is in trouble; checks go on"),
                ),
                _ if code == 403 => result(
                    CredentialStatus::MissingPermission,
                    said("the provider refused access"),
                ),
                _ if code == 400 || code == 401 => result(
                    CredentialStatus::Unauthenticated,
                    said("the provider refused the credential"),
                ),
                // A 404 or 405 says more about the endpoint configured than the credential.
                _ => result(
                    CredentialStatus::TemporarilyUnavailable,
                    said("the token endpoint answered unexpectedly; checks go on"),
                ),
            }
        }
        _ => result(
            CredentialStatus::TemporarilyUnavailable,
            format!("the provider answered HTTP {code}; checks go on"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::parse("2026-11-01T00:00:00Z").unwrap()
    }

    fn answer(json: &str) -> Option<TokenResponse> {
        TokenResponse::parse(json)
    }

    #[test]
    fn answers_map_to_statuses() {
        let ok = classify(
            200,
            answer(r#"{"access_token":"a","expires_in":60,"scope":"x y"}"#),
            CredentialStatus::Ok,
            &[],
            at(),
        );
        assert_eq!(ok.status, CredentialStatus::Ok);
        assert_eq!(ok.tokens.unwrap().scopes, ["x", "y"]);
        let scoped = classify(
            200,
            answer(r#"{"access_token":"a","scope":"x"}"#),
            CredentialStatus::Ok,
            &["y".into()],
            at(),
        );
        assert_eq!(
            (scoped.status, scoped.reason.as_str()),
            (CredentialStatus::MissingPermission, "missing scopes: y")
        );
        assert!(scoped.tokens.is_some(), "tokens are kept");
        let by_error = |code: u16, error: &str| {
            let text = format!(r#"{{"error":"{error}"}}"#);
            let was = CredentialStatus::MissingPermission;
            classify(code, answer(&text), was, &[], at())
        };
        for code in [400, 401, 403] {
            let revoked = by_error(code, "invalid_grant");
            assert_eq!(
                (revoked.status, revoked.reason),
                (
                    CredentialStatus::Unauthenticated,
                    format!("the provider no longer accepts the refresh token (HTTP {code}, invalid_grant)")
                ),
                "{code}"
            );
            assert_eq!(
                by_error(code, "invalid_client").status,
                CredentialStatus::Unauthenticated
            );
            for scope in ["invalid_scope", "unauthorized_client"] {
                assert_eq!(
                    by_error(code, scope).status,
                    CredentialStatus::MissingPermission
                );
            }
            for ours in ["invalid_request", "unsupported_grant_type"] {
                let kept = by_error(code, ours);
                assert_eq!(
                    kept.status,
                    CredentialStatus::MissingPermission,
                    "kept: {ours}"
                );
                assert!(kept.reason.contains("status kept"), "{}", kept.reason);
            }
        }
        for trouble in ["temporarily_unavailable", "server_error"] {
            assert_eq!(
                by_error(400, trouble).status,
                CredentialStatus::TemporarilyUnavailable,
                "{trouble}"
            );
        }
        assert_eq!(
            classify(404, None, CredentialStatus::Ok, &[], at()).status,
            CredentialStatus::TemporarilyUnavailable,
            "a wrong endpoint is not a revoked credential"
        );
        assert_eq!(
            by_error(503, "invalid_grant").status,
            CredentialStatus::TemporarilyUnavailable,
            "a 5xx is the provider's trouble, whatever it says"
        );
        assert_eq!(
            classify(401, None, CredentialStatus::Ok, &[], at()).status,
            CredentialStatus::Unauthenticated
        );
        assert_eq!(
            classify(403, None, CredentialStatus::Ok, &[], at()).status,
            CredentialStatus::MissingPermission
        );
        for code in [429, 500, 502, 503] {
            assert_eq!(
                classify(code, None, CredentialStatus::Ok, &[], at()).status,
                CredentialStatus::TemporarilyUnavailable
            );
        }
        assert_eq!(
            classify(200, answer("{}"), CredentialStatus::Ok, &[], at()).status,
            CredentialStatus::TemporarilyUnavailable
        );
    }

    #[test]
    fn answers_are_read_as_json_or_forms_with_numbers_as_strings_and_absurd_lifetimes_ignored() {
        let expected = TokenResponse {
            access_token: Some("a".into()),
            refresh_token: Some("r2".into()),
            expires_in: Some(3600),
            scope: Some("x y".into()),
            error: None,
        };
        for text in [
            r#"{"access_token":"a","refresh_token":"r2","expires_in":3600,"scope":"x y"}"#,
            r#"{"access_token":"a","refresh_token":"r2","expires_in":"3600","scope":"x y"}"#,
            "access_token=a&refresh_token=r2&expires_in=3600&scope=x+y",
        ] {
            assert_eq!(answer(text).as_ref(), Some(&expected), "{text}");
        }
        for absurd in ["9223372036854775807", "1e300", "-5", "\"99999999999999\""] {
            let text = format!(r#"{{"access_token":"a","expires_in":{absurd}}}"#);
            let parsed = answer(&text).unwrap();
            assert_eq!(parsed.expires_in, None, "{absurd}");
            let ok = classify(200, Some(parsed), CredentialStatus::Ok, &[], at());
            assert_eq!(ok.status, CredentialStatus::Ok);
            assert_eq!(ok.tokens.unwrap().expires_at, None);
        }
        // A rotated refresh token without an access token is still kept.
        let rotated = classify(
            200,
            answer(r#"{"refresh_token":"r3"}"#),
            CredentialStatus::Ok,
            &[],
            at(),
        );
        assert_eq!(rotated.status, CredentialStatus::TemporarilyUnavailable);
        let tokens = rotated.tokens.unwrap();
        assert_eq!(
            (
                tokens.access_token.as_deref(),
                tokens.refresh_token.as_deref()
            ),
            (None, Some("r3"))
        );
    }
}
