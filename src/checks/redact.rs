//! Redaction of provider exchanges before they are stored: secret-looking JSON fields,
//! credential-carrying headers, and every known secret value wherever it appears.

use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace(['_', '-'], "");
    [
        "token",
        "secret",
        "password",
        "privatekey",
        "apikey",
        "assertion",
        "code",
        "key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Removes `secrets` (exact values) from `text`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        text = text.replace(secret.as_str(), REDACTED);
    }
    text
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// A response body as stored: JSON with secret fields masked, and known secrets scrubbed.
pub fn body(text: &str, secrets: &[String]) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut json) => {
            redact_value(&mut json);
            scrub(&json.to_string(), secrets)
        }
        Err(_) => scrub(text, secrets),
    }
}

/// Response headers as stored: a JSON object in a string, credential headers masked.
pub fn headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, secrets: &[String]) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in pairs {
        let name = name.to_ascii_lowercase();
        let value = if SECRET_HEADERS.contains(&name.as_str()) {
            REDACTED.to_owned()
        } else {
            value.to_owned()
        };
        map.insert(name, Value::String(value));
    }
    scrub(&Value::Object(map).to_string(), secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_known_secrets_are_masked_everywhere() {
        let secrets = vec!["client-secret-123".to_owned()];
        let stored = body(
            r#"{"access_token":"at","refresh_token":"rt","expires_in":3600,"scope":"a b","note":"client-secret-123"}"#,
            &secrets,
        );
        assert_eq!(
            stored,
            r#"{"access_token":"[redacted]","refresh_token":"[redacted]","expires_in":3600,"scope":"a b","note":"[redacted]"}"#
        );
        assert_eq!(
            body("oops client-secret-123 leaked", &secrets),
            "oops [redacted] leaked"
        );
        let h = headers(
            [("Set-Cookie", "s=1"), ("Content-Type", "application/json")].into_iter(),
            &secrets,
        );
        assert_eq!(
            h,
            r#"{"set-cookie":"[redacted]","content-type":"application/json"}"#
        );
    }
}
