//! Raven Slingshot: no OAuth. Every request is signed with HMAC-SHA1 over its method, host,
//! path, time and keys, keyed with the shared secret; `GET /accesskey` says whether the
//! grower's access key is active and when it expires.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;

use super::exchange::{credential_secrets, field, finish, verdict, Sent};
use super::{redact, CheckAdapter};
use crate::config::CheckSettings;
use crate::domain::event::ProviderExchange;
use crate::domain::user::CheckResult;
use crate::domain::{Clock, CredentialStatus, Timestamp};
use crate::store::CredentialView;

/// The `CheckKind::SignedAccessKey` adapter: a signed `GET {endpoint}/accesskey`.
pub struct AccessKeyProbe<'a> {
    pub client: &'a reqwest::Client,
}

/// What Slingshot signs: each part followed by CR LF, the host and path in lower case, the
/// keys in the case they were issued in ("Generating a Signature" in Slingshot's developer
/// documentation).
pub fn string_to_sign(
    method: &str,
    host: &str,
    path: &str,
    timestamp: i64,
    api_key: &str,
    access_key: &str,
) -> String {
    format!(
        "{}\r\n{}\r\n{}\r\n{timestamp}\r\n{api_key}\r\n{access_key}\r\n",
        method.to_ascii_uppercase(),
        host.to_ascii_lowercase(),
        path.to_ascii_lowercase(),
    )
}

/// The `X-SS-Signature` of `text`: HMAC-SHA1 keyed with the shared secret's UTF-8 bytes, in
/// base64.
pub fn signature(shared_secret: &str, text: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(shared_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(text.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

#[async_trait::async_trait]
impl CheckAdapter for AccessKeyProbe<'_> {
    async fn check(
        &self,
        credential: &CredentialView,
        endpoint: &str,
        _settings: &CheckSettings,
        clock: &dyn Clock,
    ) -> (CheckResult, Vec<ProviderExchange>) {
        let fields = &credential.fields;
        let (api_key, access_key) = (field(fields, "apiKey"), field(fields, "accessKey"));
        let mut secrets = credential_secrets(credential);
        let url = format!("{}/accesskey", endpoint.trim_end_matches('/'));
        let now = clock.now();
        let timestamp = now.datetime().timestamp();
        let mut request = self
            .client
            .get(&url)
            .header("Accept", "application/json")
            .header("X-SS-APIKey", api_key)
            .header("X-SS-AccessKey", access_key)
            .header("X-SS-TimeStamp", timestamp.to_string());
        if let Ok(parsed) = reqwest::Url::parse(&url) {
            let text = string_to_sign(
                "GET",
                parsed.host_str().unwrap_or_default(),
                parsed.path(),
                timestamp,
                api_key,
                access_key,
            );
            let signed = signature(field(fields, "sharedSecret"), &text);
            secrets.add(&signed);
            request = request.header("X-SS-Signature", signed);
        }
        let sent = Sent::send(request, "GET", &url, credential, now).await;
        let mut result = sent
            .trouble()
            .unwrap_or_else(|| classify(sent.code, sent.json().map(Value::Object), now));
        if sent.code == 401 {
            // Slingshot answers 401 for a bad signature or a clock off by more than 120 s too,
            // and its body may say which: those are ours, not the grower's.
            let answer = redact::reason(&redact::body(&sent.text, &secrets), &secrets);
            let lower = sent.text.to_ascii_lowercase();
            if ["signature", "timestamp", "time stamp"]
                .iter()
                .any(|word| lower.contains(word))
            {
                tracing::error!(
                    credential = %credential.id,
                    %answer,
                    "Slingshot refused this server's request signature or clock (401): a bug or a clock off by more than 120 s here, not the grower's access key; its status is kept"
                );
                result = verdict(
                    credential.status,
                    "Slingshot refused this service's request signature or clock (HTTP 401); status kept",
                );
            } else {
                tracing::warn!(
                    credential = %credential.id,
                    %answer,
                    "Slingshot refused the access key (401)"
                );
            }
        }
        finish(result, vec![sent], secrets)
    }
}

/// The status Slingshot's answer to `GET /accesskey` means at `now`.
fn classify(code: u16, answer: Option<Value>, now: Timestamp) -> CheckResult {
    match code {
        200..=299 => {
            let Some(answer) = answer else {
                return verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    "Slingshot's answer was not JSON",
                );
            };
            let active = match answer.get("IsActive") {
                Some(Value::Bool(active)) => Some(*active),
                Some(Value::String(text)) => text.parse::<bool>().ok(),
                _ => None,
            };
            let expires = answer
                .get("ExpirationDateTime")
                .and_then(Value::as_str)
                .and_then(parse_expiry);
            match (active, expires) {
                (None, _) => verdict(
                    CredentialStatus::TemporarilyUnavailable,
                    "Slingshot's answer has no IsActive",
                ),
                (Some(false), _) => verdict(
                    CredentialStatus::Unauthenticated,
                    "Slingshot says the access key is not active",
                ),
                (Some(true), Some(at)) if at <= now => verdict(
                    CredentialStatus::Unauthenticated,
                    format!("Slingshot says the access key expired at {at}"),
                ),
                (Some(true), Some(at)) => verdict(
                    CredentialStatus::Ok,
                    format!("Slingshot says the access key is active until {at}"),
                ),
                (Some(true), None) => verdict(
                    CredentialStatus::Ok,
                    "Slingshot says the access key is active",
                ),
            }
        }
        401 => verdict(
            CredentialStatus::Unauthenticated,
            "Slingshot refused the access key (HTTP 401)",
        ),
        403 => verdict(
            CredentialStatus::MissingPermission,
            "Slingshot refused access (HTTP 403)",
        ),
        _ => verdict(
            CredentialStatus::TemporarilyUnavailable,
            format!("Slingshot answered HTTP {code}; checks go on"),
        ),
    }
}

/// An expiry as Slingshot writes it: RFC 3339, or without an offset (UTC).
fn parse_expiry(text: &str) -> Option<Timestamp> {
    Timestamp::parse(text).or_else(|| {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|at| Timestamp::from_datetime(at.and_utc()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2202, test cases 1 and 2: the HMAC-SHA1 underneath is the standard one.
    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let hex = |text: String| {
            B64.decode(text)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(signature("Jefe", "what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let key = String::from_utf8(vec![0x0b; 20]).unwrap();
        assert_eq!(
            hex(signature(&key, "Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
    }

    #[test]
    fn the_string_to_sign_follows_slingshots_layout() {
        assert_eq!(
            string_to_sign(
                "get",
                "API.RavenSlingshot.com",
                "/FieldComputers/460/PrescriptionMaps",
                1234567890,
                "ApiKeyCase",
                "AccessKeyCase",
            ),
            "GET\r\napi.ravenslingshot.com\r\n/fieldcomputers/460/prescriptionmaps\r\n\
             1234567890\r\nApiKeyCase\r\nAccessKeyCase\r\n"
        );
    }

    #[test]
    fn answers_map_to_statuses() {
        let now = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
        let answer = |json: &str| classify(200, Some(serde_json::from_str(json).unwrap()), now);
        let ok = answer(r#"{"IsActive":true,"ExpirationDateTime":"2027-01-01T06:00:00Z"}"#);
        assert_eq!(ok.status, CredentialStatus::Ok);
        assert!(ok.reason.contains("2027-01-01"), "{}", ok.reason);
        let expired = answer(r#"{"IsActive":true,"ExpirationDateTime":"2010-11-17T06:00:00"}"#);
        assert_eq!(expired.status, CredentialStatus::Unauthenticated);
        assert_eq!(
            answer(r#"{"IsActive":"false"}"#).status,
            CredentialStatus::Unauthenticated
        );
        assert_eq!(
            answer(r#"{"AccessKey":"x"}"#).status,
            CredentialStatus::TemporarilyUnavailable
        );
        assert_eq!(
            classify(200, None, now).status,
            CredentialStatus::TemporarilyUnavailable
        );
        assert_eq!(
            classify(401, None, now).status,
            CredentialStatus::Unauthenticated
        );
        assert_eq!(
            classify(403, None, now).status,
            CredentialStatus::MissingPermission
        );
        assert_eq!(
            classify(404, None, now).status,
            CredentialStatus::TemporarilyUnavailable
        );
    }
}
