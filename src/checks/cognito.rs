//! Panorama, on AWS Cognito: `InitiateAuth` with `REFRESH_TOKEN_AUTH` and the stored refresh
//! token; when Cognito refuses it (`NotAuthorizedException`), the partner login
//! (`USER_PASSWORD_AUTH`) with the stored username and password issues a new one.

use serde_json::{json, Map, Value};

use super::exchange::{add_tokens, credential_secrets, field, lifetime, verdict, Sent};
use super::{redact, CheckAdapter};
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
        let mut secrets = credential_secrets(credential);
        let client_id = field(fields, "clientId");
        let refresh = json!({
            "AuthFlow": "REFRESH_TOKEN_AUTH",
            "ClientId": client_id,
            "AuthParameters": { "REFRESH_TOKEN": field(fields, REFRESH_TOKEN) },
        });
        let (answer, first) = self
            .initiate(credential, endpoint, &refresh, clock.now())
            .await;
        let (mut result, exchanges) = match answer {
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
        if let Some(tokens) = &result.tokens {
            add_tokens(&mut secrets, tokens);
        }
        result.reason = redact::reason(&result.reason, &secrets);
        let exchanges = exchanges.into_iter().map(|s| s.record(&secrets)).collect();
        (result, exchanges)
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
            None => classify(sent.code, sent.json(), now),
        };
        if let Answer::Other(result) = &answer {
            if result.reason.contains("ResourceNotFoundException")
                || result.reason.contains("InvalidParameterException")
            {
                tracing::error!(
                    credential = %credential.id,
                    reason = %result.reason,
                    "Cognito calls the request wrong: check Panorama's app client id and the configured endpoint's region"
                );
            }
        }
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
