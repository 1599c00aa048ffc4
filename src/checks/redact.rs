//! Redaction of provider exchanges before they are stored or logged: secret-looking fields (in
//! JSON, in a form, or in text that is neither), credential-carrying headers, and every known
//! secret value wherever it appears, in each encoding a provider may echo it in.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

pub const REDACTED: &str = "[redacted]";

/// The largest provider response body kept (after redaction).
pub const MAX_BODY: usize = 64 * 1024;

/// The longest status reason kept (quoted from a provider's `error`).
pub const MAX_REASON: usize = 256;

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];

/// Words that make a field name secret-looking.
/// `session` covers session ids and Cognito's challenge `Session`, which log a user in too.
const SECRET_WORDS: &str = "token|secret|password|privatekey|apikey|assertion|code|key|session";

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace(['_', '-'], "");
    SECRET_WORDS.split('|').any(|word| key.contains(word))
}

/// The secrets an exchange could echo, each in every form it may take in a body, a header or
/// an `error`: as is, JSON-escaped, form- and percent-encoded (either hex case), and in base64
/// (both alphabets) at each of the three alignments it can have inside a longer base64 text.
#[derive(Default)]
pub struct Secrets(Vec<String>);

/// Shortest secret (or base64 fragment of one) that is looked for: shorter ones would redact
/// ordinary words.
const MIN_SECRET: usize = 4;
const MIN_FRAGMENT: usize = 8;

impl Secrets {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Secrets {
        let mut all = Secrets::default();
        for secret in secrets {
            all.add(secret.as_ref());
        }
        all
    }

    /// Adds `secret` in each of its encodings.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET {
            return;
        }
        let mut forms = vec![secret.to_owned()];
        if let Ok(json) = serde_json::to_string(secret) {
            forms.push(json[1..json.len() - 1].to_owned());
        }
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = form.replace('+', "%20");
        for encoded in [form, percent] {
            forms.push(lower_hex(&encoded));
            forms.push(encoded);
        }
        for engine in [&STANDARD, &URL_SAFE] {
            for shift in 0..3 {
                // Inside a longer base64 text the secret starts at byte `shift` of a 3-byte
                // group: encode it so, and keep the characters that depend on it alone.
                let mut bytes = vec![0u8; shift];
                bytes.extend_from_slice(secret.as_bytes());
                let encoded = engine.encode(&bytes);
                let skip = (shift * 4).div_ceil(3);
                let end = (shift + secret.len()) / 3 * 4;
                if end > skip && end - skip >= MIN_FRAGMENT {
                    forms.push(encoded[skip..end].to_owned());
                }
            }
        }
        forms.push(STANDARD_NO_PAD.encode(secret));
        forms.push(URL_SAFE_NO_PAD.encode(secret));
        for form in forms {
            if form.len() >= MIN_SECRET && !self.0.contains(&form) {
                self.0.push(form);
            }
        }
        // Longest first, so that no shorter form leaves part of a longer one behind.
        self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every form of every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// `%2f` for `%2F`: percent-encoding with lower-case hex digits.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
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

/// A JSON member or a form pair whose name looks secret, in text that does not parse (cut off,
/// or not quite JSON).
static SECRET_IN_TEXT: LazyLock<[Regex; 2]> = LazyLock::new(|| {
    let json =
        format!(r#"(?i)("[^"]*(?:{SECRET_WORDS})[^"]*"\s*:\s*)(?:"(?:[^"\\]|\\.)*"?|[^,\s}}\]]+)"#);
    let pair = format!(r#"(?i)((?:^|[&?;\s])[^=&\s]*(?:{SECRET_WORDS})[^=&\s]*=)[^&\s]*"#);
    [json, pair].map(|pattern| Regex::new(&pattern).expect("a valid pattern"))
});

fn redact_text(text: &str) -> String {
    let [json, pair] = &*SECRET_IN_TEXT;
    let text = json.replace_all(text, format!("${{1}}\"{REDACTED}\""));
    pair.replace_all(&text, format!("${{1}}{REDACTED}"))
        .into_owned()
}

/// Whether `text` reads as a form (`a=1&b=2`): pairs, no spaces.
pub fn looks_like_form(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && !text.contains(char::is_whitespace)
        && text.split('&').all(|pair| pair.contains('='))
}

/// A response body as stored: secret fields masked (JSON, form or plain text), known secrets
/// scrubbed in every encoding, then cut to `MAX_BODY` (redaction comes first, so a cut never
/// leaves half a secret unrecognised).
pub fn body(text: &str, secrets: &Secrets) -> String {
    let redacted = if let Ok(mut json) = serde_json::from_str::<Value>(text) {
        redact_value(&mut json);
        json.to_string()
    } else if looks_like_form(text) {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(text.trim().as_bytes())
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    REDACTED.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    } else {
        redact_text(text)
    };
    // A provider's U+0000 is kept as U+FFFD: PostgreSQL's text cannot hold it.
    truncate(secrets.scrub(&redacted).replace('\0', "\u{FFFD}"), MAX_BODY)
}

/// Response headers as stored: a JSON object in a string, credential headers masked.
pub fn headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, secrets: &Secrets) -> String {
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
    secrets.scrub(&Value::Object(map).to_string())
}

/// A status reason quoted from a provider, as the ledger keeps it and the log writes it: known
/// secrets scrubbed, control characters (newlines, ANSI escapes) written as escapes so that it
/// cannot forge a log line or repaint a terminal, at most `MAX_REASON` characters.
pub fn reason(text: &str, secrets: &Secrets) -> String {
    let scrubbed = secrets.scrub(text);
    let mut clean = String::with_capacity(scrubbed.len());
    for c in scrubbed.chars() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    truncate(clean, MAX_REASON)
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_known_secrets_are_masked_everywhere() {
        let secrets = Secrets::new(["client-secret-123"]);
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

    /// Every encoding the outside attack got past redaction.
    #[test]
    fn a_secret_is_recognised_in_every_encoding_it_can_be_echoed_in() {
        let secret = r#"s3cr"et/with+odd&chars\"#;
        let secrets = Secrets::new([secret, "client-id:basic"]);
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let echoes = [
            serde_json::to_string(secret).unwrap(),
            form.clone(),
            lower_hex(&form),
            form.replace('+', "%20"),
            format!("Basic {}", STANDARD.encode(format!("user:{secret}"))),
            format!("Basic {}", STANDARD.encode(format!("us:{secret}"))),
            format!("Basic {}", STANDARD.encode(format!("u:{secret}"))),
            URL_SAFE_NO_PAD.encode(format!("error for {secret}, sorry")),
            STANDARD.encode(secret),
        ];
        for echo in echoes {
            let stored = secrets.scrub(&format!("before {echo} after"));
            assert!(stored.contains(REDACTED), "{echo} passed: {stored}");
            for piece in [&secret[..10], &secret[10..]] {
                assert!(
                    !stored.contains(piece),
                    "{piece} of {echo} passed: {stored}"
                );
            }
        }
    }

    #[test]
    fn form_encoded_cut_off_or_plain_text_replies_lose_their_secret_fields() {
        let none = Secrets::default();
        assert_eq!(
            body(
                "access_token=abc123&expires_in=60&refresh_token=r%2B1",
                &none
            ),
            "access_token=%5Bredacted%5D&expires_in=60&refresh_token=%5Bredacted%5D"
        );
        let cut = format!(
            r#"{{"refresh_token":"rt-1","access_token":"at-1","pad":"{}"#,
            "x".repeat(10)
        );
        let stored = body(&cut, &none);
        assert!(
            !stored.contains("rt-1") && !stored.contains("at-1"),
            "{stored}"
        );
        let long = format!(
            r#"{{"pad":"{}","access_token":"late-secret"}}"#,
            "x".repeat(MAX_BODY)
        );
        let stored = body(&long, &none);
        assert!(stored.len() <= MAX_BODY && !stored.contains("late-secret"));
    }

    #[test]
    fn a_reason_cannot_forge_a_log_line() {
        let reason = reason(
            "invalid_grant\n2026-12-01T00:00:00Z  INFO forged\u{1b}[31m",
            &Secrets::default(),
        );
        assert!(!reason.chars().any(char::is_control), "{reason}");
        assert_eq!(
            reason,
            "invalid_grant\\n2026-12-01T00:00:00Z  INFO forged\\u{1b}[31m"
        );
    }

    /// A provider's NUL never reaches storage as such (PostgreSQL's text refuses it).
    #[test]
    fn a_nul_in_a_providers_plain_answer_is_stored_as_a_replacement_character() {
        let stored = body("gate\u{0}way", &Secrets::default());
        assert_eq!(stored, "gate\u{FFFD}way");
        assert!(!body("{\"a\":\"x\u{0}\"}", &Secrets::default()).contains('\0'));
    }
}
