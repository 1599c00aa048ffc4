//! What every kind of check shares: one HTTP exchange with a provider, read within bounds and
//! recorded redacted, and the statuses every provider's silence or trouble means.

use serde_json::{Map, Value};

use super::redact;
use crate::app::secrets::is_secret;
use crate::domain::event::{ExchangeMeta, IssuedTokens, ProviderExchange};
use crate::domain::user::CheckResult;
use crate::domain::{CredentialStatus, ExchangeId, Timestamp};
use crate::store::CredentialView;

/// The most of a provider's answer read: twice what is kept, so that redaction sees a whole
/// secret near the cut before the stored text is cut to `redact::MAX_BODY`. The rest is never
/// read (an endless answer costs this much memory and no more).
const READ_LIMIT: usize = 2 * redact::MAX_BODY;

/// The longest token lifetime believed: ten years. A larger (or negative) lifetime is ignored,
/// as if absent, rather than overflowing a date.
pub const MAX_EXPIRES_IN_SECS: i64 = 10 * 365 * 24 * 3600;

/// A credential field's text ("" when absent).
pub fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a str {
    fields.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Every secret an exchange about `credential` could echo: its secret fields and the tokens its
/// checks stored.
pub fn credential_secrets(credential: &CredentialView) -> redact::Secrets {
    redact::Secrets::new(
        credential
            .fields
            .iter()
            .filter(|(name, _)| is_secret(credential.provider, name))
            .filter_map(|(_, value)| value.as_str()),
    )
}

/// Adds every token `tokens` carries to `secrets`.
pub fn add_tokens(secrets: &mut redact::Secrets, tokens: &IssuedTokens) {
    for token in [&tokens.access_token, &tokens.refresh_token]
        .into_iter()
        .flatten()
        .chain(tokens.fields.values())
    {
        secrets.add(token);
    }
}

/// A lifetime in seconds, as a number or a string, if it is believable.
pub fn lifetime(value: Option<&Value>) -> Option<i64> {
    let secs = match value? {
        Value::Number(n) => n.as_i64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    (0..=MAX_EXPIRES_IN_SECS).contains(&secs).then_some(secs)
}

/// The end of every check: the tokens its result carries join `secrets`, and the reason and
/// every exchange are redacted of them before anything is stored or logged.
pub fn finish(
    mut result: CheckResult,
    sent: Vec<Sent>,
    mut secrets: redact::Secrets,
) -> (CheckResult, Vec<ProviderExchange>) {
    if let Some(tokens) = &result.tokens {
        add_tokens(&mut secrets, tokens);
    }
    result.reason = redact::reason(&result.reason, &secrets);
    let exchanges = sent.into_iter().map(|s| s.record(&secrets)).collect();
    (result, exchanges)
}

/// A result without tokens.
pub fn verdict(status: CredentialStatus, reason: impl Into<String>) -> CheckResult {
    CheckResult {
        status,
        tokens: None,
        reason: reason.into(),
    }
}

/// One exchange with a provider, as answered (not yet redacted).
pub struct Sent {
    meta: ExchangeMeta,
    /// The HTTP status; 0 when no answer came.
    pub code: u16,
    headers: Vec<(String, String)>,
    /// The answer's body (at most `READ_LIMIT` bytes of it), or what went wrong instead.
    pub text: String,
    /// Why no answer came (timeout, connection failed), if none did.
    pub failure: Option<&'static str>,
}

impl Sent {
    /// Sends `request` (a `method` to `url`, about `credential`) and reads the answer.
    pub async fn send(
        request: reqwest::RequestBuilder,
        method: &str,
        url: &str,
        credential: &CredentialView,
        now: Timestamp,
    ) -> Sent {
        let meta = ExchangeMeta {
            exchange_id: ExchangeId::new(),
            user_id: credential.user_id,
            credential_id: credential.id,
            provider: credential.provider,
            request_method: method.to_owned(),
            request_url: url.to_owned(),
            status_code: 0,
            recorded_at: now,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let failure = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                return Sent {
                    meta,
                    code: 0,
                    headers: vec![],
                    text: format!("no response: {failure}"),
                    failure: Some(failure),
                };
            }
        };
        let code = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        let text = String::from_utf8_lossy(&read_bounded(response).await).into_owned();
        Sent {
            meta: ExchangeMeta {
                status_code: code,
                ..meta
            },
            code,
            headers,
            text,
            failure: None,
        }
    }

    /// The answer as a JSON object, if it is one.
    pub fn json(&self) -> Option<Map<String, Value>> {
        match serde_json::from_str(&self.text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// What the provider's silence, or trouble on its side (429, 5xx), means; `None` when it
    /// answered something else, which each kind reads for itself.
    pub fn trouble(&self) -> Option<CheckResult> {
        if let Some(failure) = self.failure {
            return Some(verdict(CredentialStatus::TemporarilyUnavailable, failure));
        }
        matches!(self.code, 429 | 500..=599).then(|| {
            verdict(
                CredentialStatus::TemporarilyUnavailable,
                format!("the provider answered HTTP {}; checks go on", self.code),
            )
        })
    }

    /// The exchange as the ledger records it: headers and body redacted of `secrets` and of
    /// anything secret-looking.
    pub fn record(self, secrets: &redact::Secrets) -> ProviderExchange {
        let headers = if self.failure.is_some() {
            "{}".to_owned()
        } else {
            redact::headers(
                self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                secrets,
            )
        };
        ProviderExchange {
            meta: self.meta,
            headers,
            body: redact::body(&self.text, secrets),
        }
    }
}

/// Reads at most `READ_LIMIT` bytes of the answer's body, then stops.
async fn read_bounded(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = READ_LIMIT - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}
