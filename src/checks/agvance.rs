//! AgVance: the grower's login at the configured login URL (AgVance publishes its host, not
//! the path), answered with a session id. AgVance may answer an error with HTTP 200: its body's
//! `Status` decides (0 success, 1 and 2 errors, 3 informational).

use serde_json::{json, Map, Value};

use super::exchange::{credential_secrets, field, finish, verdict, Sent};
use super::CheckAdapter;
use crate::config::CheckSettings;
use crate::domain::event::token_fields::SESSION_ID;
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus};
use crate::store::CredentialView;

/// The `CheckKind::AgvanceLogin` adapter.
pub struct Login<'a> {
    pub client: &'a reqwest::Client,
}

#[async_trait::async_trait]
impl CheckAdapter for Login<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        _settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let fields = &credential.fields;
        // The member names are this service's reading of AgVance's conventions (its answers
        // are PascalCase); the README says so.
        let body = json!({
            "ApiKey": field(fields, "apiKey"),
            "DatabaseId": field(fields, "databaseId"),
            "Username": field(fields, "username"),
            "Password": field(fields, "password"),
        });
        let request = self
            .client
            .post(endpoint)
            .header("Accept", "application/json")
            .json(&body);
        let sent = Sent::send(request, "POST", endpoint, credential, clock.now()).await;
        let result = sent
            .trouble()
            .unwrap_or_else(|| classify(sent.code, sent.json()));
        finish(result, vec![sent], credential_secrets(credential))
    }
}

/// A member of `answer` by name, whatever its case (`Status` or `status`).
fn member<'a>(answer: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    answer
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// The status an answer means: its body's `Status` first, at any HTTP status (AgVance answers
/// errors with 200 too), then the HTTP status.
fn classify(code: u16, answer: Option<Map<String, Value>>) -> CheckResult {
    let status = answer.as_ref().and_then(|answer| {
        member(answer, "Status").and_then(|s| match s {
            Value::Number(n) => n.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        })
    });
    if let (Some(error @ (1 | 2)), Some(answer)) = (status, &answer) {
        let message = member(answer, "Message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return verdict(
            CredentialStatus::Unauthenticated,
            format!("AgVance refused the login (HTTP {code}, Status {error}: {message})"),
        );
    }
    match code {
        200..=299 => {
            let Some(answer) = answer else {
                return verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    "AgVance's answer was not JSON",
                );
            };
            let session = member(&answer, "SessionId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match (status, session) {
                (Some(0 | 3) | None, Some(session)) => {
                    let mut tokens = IssuedTokens::default();
                    tokens.fields.insert(SESSION_ID.into(), session.to_owned());
                    CheckResult {
                        status: CredentialStatus::Ok,
                        tokens: Some(tokens),
                        reason: "AgVance accepted the login and issued a session".into(),
                    }
                }
                (Some(other), _) if !matches!(other, 0 | 3) => verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    format!("AgVance answered an unknown Status {other}; checks go on"),
                ),
                _ => verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    "no SessionId in AgVance's answer",
                ),
            }
        }
        401 | 403 => verdict(
            CredentialStatus::Unauthenticated,
            format!("AgVance refused the login (HTTP {code})"),
        ),
        _ => verdict(
            CredentialStatus::TemporarilyUnavailable,
            format!("AgVance's login answered HTTP {code}; checks go on"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(code: u16, json: &str) -> CredentialStatus {
        classify(code, serde_json::from_str(json).ok()).status
    }

    #[test]
    fn the_body_status_decides_even_at_http_200() {
        assert_eq!(
            status_of(200, r#"{"Status":0,"SessionId":"s-1"}"#),
            CredentialStatus::Ok
        );
        assert_eq!(
            status_of(200, r#"{"status":"3","sessionId":"s-1","message":"note"}"#),
            CredentialStatus::Ok
        );
        for error in ["1", "2"] {
            let text = format!(r#"{{"Status":{error},"Message":"Invalid login"}}"#);
            assert_eq!(status_of(200, &text), CredentialStatus::Unauthenticated);
        }
        assert_eq!(
            status_of(200, r#"{"Status":0}"#),
            CredentialStatus::TemporarilyUnavailable
        );
        assert_eq!(
            status_of(200, r#"{"Status":7,"SessionId":"s"}"#),
            CredentialStatus::TemporarilyUnavailable
        );
        assert_eq!(
            status_of(200, "<html>"),
            CredentialStatus::TemporarilyUnavailable
        );
        assert_eq!(status_of(401, "{}"), CredentialStatus::Unauthenticated);
        assert_eq!(
            status_of(400, r#"{"Status":1,"Message":"Invalid login"}"#),
            CredentialStatus::Unauthenticated,
            "the body's Status decides at any HTTP status"
        );
        assert_eq!(
            status_of(200, r#"{"SessionId":"s-1"}"#),
            CredentialStatus::Ok,
            "a session id without a Status is a login"
        );
        assert_eq!(
            status_of(404, "{}"),
            CredentialStatus::TemporarilyUnavailable
        );
    }
}
