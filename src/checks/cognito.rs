//! Panorama, on AWS Cognito: `InitiateAuth` with `REFRESH_TOKEN_AUTH` and the stored refresh
//! token; when Cognito refuses it (`NotAuthorizedException`), the partner login
//! (`USER_PASSWORD_AUTH`) with the stored username and password issues a new one.

use serde_json::{json, Map, Value};

use super::exchange::{credential_secrets, field, finish, lifetime, verdict, Sent};
use super::CheckAdapter;
use crate::config::CheckSettings;
use crate::domain::event::token_fields::REFRESH_TOKEN;
use crate::domain::event::{IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus, Timestamp};
use crate::store::CredentialView;

/// The `CheckKind::CognitoRefresh` adapter.
pub struct RefreshAuth<'a> {
    pub client: &'a reqwest::Client,
}

/// What one `InitiateAuth` answered.
enum Answer {
    /// Tokens were issued.
    Issued(CheckResult),
    /// Cognito refused the refresh token or the login (`NotAuthorizedException`).
    NotAuthorized(CheckResult),
    /// Anything else, final.
    Other(CheckResult),
}

#[async_trait::async_trait]
impl CheckAdapter for RefreshAuth<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        _settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let fields = &credential.fields;
        let client_id = field(fields, "clientId");
        let refresh = json!({
            "AuthFlow": "REFRESH_TOKEN_AUTH",
            "ClientId": client_id,
            "AuthParameters": { "REFRESH_TOKEN": field(fields, REFRESH_TOKEN) },
        });
        let (answer, first) = self
            .initiate(credential, endpoint, &refresh, clock.now())
            .await;
        let (result, exchanges) = match answer {
            Answer::NotAuthorized(_) => {
                let login = json!({
                    "AuthFlow": "USER_PASSWORD_AUTH",
                    "ClientId": client_id,
                    "AuthParameters": {
                        "USERNAME": field(fields, "username"),
                        "PASSWORD": field(fields, "password"),
                    },
                });
                let (answer, second) = self
                    .initiate(credential, endpoint, &login, clock.now())
                    .await;
                let result = match answer {
                    Answer::Issued(mut result) => {
                        result.reason = "Cognito refused the refresh token; the partner login \
                                         issued new tokens"
                            .into();
                        result
                    }
                    Answer::NotAuthorized(mut result) => {
                        result.reason = format!(
                            "Cognito refused the refresh token and the partner login ({})",
                            result.reason
                        );
                        result
                    }
                    Answer::Other(result) => result,
                };
                (result, vec![first, second])
            }
            Answer::Issued(result) | Answer::Other(result) => (result, vec![first]),
        };
        finish(result, exchanges, credential_secrets(credential))
    }
}

impl RefreshAuth<'_> {
    async fn initiate(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        body: &Value,
        now: Timestamp,
    ) -> (Answer, Sent) {
        let request = self
            .client
            .post(endpoint)
            .header(
                "X-Amz-Target",
                "AWSCognitoIdentityProviderService.InitiateAuth",
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string());
        let sent = Sent::send(request, "POST", endpoint, credential, now).await;
        let answer = match sent.trouble() {
            Some(trouble) => Answer::Other(trouble),
            None => {
                let answer = sent.json();
                let kind = answer.as_ref().and_then(error_type);
                if let Some(kind @ ("ResourceNotFoundException" | "InvalidParameterException")) =
                    kind
                {
                    tracing::error!(
                        credential = %credential.id,
                        error = kind,
                        "Cognito calls the request wrong: check Panorama's app client id and the configured endpoint's region"
                    );
                }
                classify(sent.code, answer, now)
            }
        };
        (answer, sent)
    }
}

/// Cognito's error type, without the namespace it may carry (`…#NotAuthorizedException`).
fn error_type(answer: &Map<String, Value>) -> Option<&str> {
    let full = answer.get("__type").and_then(Value::as_str)?;
    Some(full.rsplit('#').next().unwrap_or(full))
}

fn classify(code: u16, answer: Option<Map<String, Value>>, now: Timestamp) -> Answer {
    let answer = answer.unwrap_or_default();
    if (200..300).contains(&code) {
        let issued = answer
            .get("AuthenticationResult")
            .and_then(Value::as_object);
        let access = issued
            .and_then(|r| r.get("AccessToken"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let (Some(issued), Some(access)) = (issued, access) else {
            let reason = match answer.get("ChallengeName").and_then(Value::as_str) {
                Some(challenge) => {
                    return Answer::Other(verdict(
                        CredentialStatus::Unauthenticated,
                        format!("Cognito asks the partner login for a challenge ({challenge})"),
                    ))
                }
                None => "no AccessToken in Cognito's answer",
            };
            return Answer::Other(verdict(CredentialStatus::TemporarilyUnavailable, reason));
        };
        let expires_in = lifetime(issued.get("ExpiresIn"));
        let tokens = IssuedTokens {
            refresh_token: issued
                .get("RefreshToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            ..IssuedTokens::access(
                access.to_owned(),
                expires_in.map(|secs| now.plus(chrono::Duration::seconds(secs))),
            )
        };
        return Answer::Issued(CheckResult {
            status: CredentialStatus::Ok,
            tokens: Some(tokens),
            reason: "Cognito issued a new access token".into(),
        });
    }
    let kind = error_type(&answer).unwrap_or("no error type");
    let said = |what: &str| format!("{what} (HTTP {code}, {kind})");
    match kind {
        "NotAuthorizedException" => Answer::NotAuthorized(verdict(
            CredentialStatus::Unauthenticated,
            said("Cognito refused the credential"),
        )),
        "UserNotFoundException"
        | "PasswordResetRequiredException"
        | "UserNotConfirmedException" => Answer::Other(verdict(
            CredentialStatus::Unauthenticated,
            said("Cognito refused the partner login"),
        )),
        _ => Answer::Other(verdict(
            CredentialStatus::TemporarilyUnavailable,
            said("Cognito answered unexpectedly; checks go on"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(code: u16, json: &str) -> (&'static str, CredentialStatus) {
        let now = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
        match classify(code, serde_json::from_str(json).ok(), now) {
            Answer::Issued(r) => ("issued", r.status),
            Answer::NotAuthorized(r) => ("not authorized", r.status),
            Answer::Other(r) => ("other", r.status),
        }
    }

    #[test]
    fn cognito_answers_map_to_statuses() {
        use CredentialStatus as S;
        let issued = r#"{"AuthenticationResult":{"AccessToken":"a","ExpiresIn":3600}}"#;
        assert_eq!(status_of(200, issued), ("issued", S::Ok));
        let refused =
            r#"{"__type":"NotAuthorizedException","message":"Refresh Token has expired"}"#;
        assert_eq!(
            status_of(400, refused),
            ("not authorized", S::Unauthenticated)
        );
        for login in [
            "UserNotFoundException",
            "PasswordResetRequiredException",
            "UserNotConfirmedException",
        ] {
            let text = format!(r#"{{"__type":"com.amazonaws.cognito#{login}"}}"#);
            assert_eq!(
                status_of(400, &text),
                ("other", S::Unauthenticated),
                "{login}"
            );
        }
        for trouble in [
            "TooManyRequestsException",
            "InternalErrorException",
            "ResourceNotFoundException",
            "InvalidParameterException",
        ] {
            let text = format!(r#"{{"__type":"{trouble}"}}"#);
            assert_eq!(
                status_of(400, &text),
                ("other", S::TemporarilyUnavailable),
                "{trouble}"
            );
        }
        let challenge = r#"{"ChallengeName":"NEW_PASSWORD_REQUIRED","Session":"s"}"#;
        assert_eq!(status_of(200, challenge), ("other", S::Unauthenticated));
        assert_eq!(status_of(200, "{}"), ("other", S::TemporarilyUnavailable));
    }
}
