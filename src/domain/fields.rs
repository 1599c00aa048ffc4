//! Request fields: what each holds, and validation of a JSON body against a field list
//! (provider credentials, a Leaf user's profile, a login).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Which of the provider's environments the credential belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientEnvironment {
    Stage,
    Production,
}

/// Longest string, in characters, accepted in any field (a PEM private key fits easily).
pub const MAX_FIELD_LEN: usize = 16 * 1024;

/// One bad or missing field of a request body (JHipster's `fieldErrors` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// The object the field belongs to, e.g. `johnDeereCredentials`.
    #[schema(example = "johnDeereCredentials")]
    pub object_name: String,
    /// The field's JSON name.
    #[schema(example = "clientKey")]
    pub field: String,
    /// The violated constraint: `NotNull`, `NotBlank`, `Size`, `Pattern`, `TypeMismatch` or `Unknown`.
    #[schema(example = "NotNull")]
    pub message: String,
}

impl FieldError {
    pub fn new(object_name: &str, field: &str, message: &str) -> Self {
        Self {
            object_name: object_name.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// What a field holds, which decides how it is validated (and, later, protected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Ordinary text.
    Plain,
    /// A secret: token, client secret, private key, password.
    Secret,
    /// `STAGE` or `PRODUCTION`.
    Environment,
    /// `true` or `false`.
    Boolean,
}

/// One field of a request body.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    /// The Rust name; the JSON name is its camelCase form.
    pub rust_name: &'static str,
    pub required: bool,
    pub kind: FieldKind,
    /// The value an absent (or blank) optional field takes, as JSON text's string content.
    pub default: Option<&'static str>,
    /// Whether answers show the field; a write-only one (a password the provider never
    /// echoes) is kept, sealed, but never shown.
    pub echoed: bool,
}

impl FieldSpec {
    /// A field shown in answers, with no default.
    pub const fn new(rust_name: &'static str, required: bool, kind: FieldKind) -> Self {
        Self {
            rust_name,
            required,
            kind,
            default: None,
            echoed: true,
        }
    }

    pub fn json_name(&self) -> String {
        let mut out = String::with_capacity(self.rust_name.len());
        let mut upper = false;
        for c in self.rust_name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// The JSON Schema `pattern` of a required string: at least one character that `str::trim`
/// keeps. The whitespace is spelled out as `\uXXXX` escapes rather than `\s`, whose meaning
/// differs between regex engines (ECMA-262, Python's `re` with or without `re.ASCII`, Rust's
/// `regex`): schemathesis reads `\S` in ASCII mode, where U+00A0 or U+3000 is "not a space",
/// and the server then refused the value as blank. Built once (it scans every `char`); the
/// document is built at start-up and by each server worker.
pub fn not_blank_pattern() -> &'static str {
    static PATTERN: std::sync::LazyLock<String> = std::sync::LazyLock::new(whitespace_excluded);
    &PATTERN
}

/// `[^…]` of every character for which `char::is_whitespace` holds, in runs.
fn whitespace_excluded() -> String {
    let mut class = String::from("[^");
    let mut run: Option<(char, char)> = None;
    for c in (char::MIN..=char::MAX).filter(|c| c.is_whitespace()) {
        run = match run {
            Some((first, last)) if u32::from(last) + 1 == u32::from(c) => Some((first, c)),
            Some(done) => {
                push_run(&mut class, done);
                Some((c, c))
            }
            None => Some((c, c)),
        };
    }
    if let Some(done) = run {
        push_run(&mut class, done);
    }
    class.push(']');
    class
}

/// Appends a run of characters to a regex class as `\uXXXX` or `\uXXXX-\uXXXX`.
fn push_run(class: &mut String, (first, last): (char, char)) {
    use std::fmt::Write;
    let _ = write!(class, "\\u{:04X}", u32::from(first));
    if last != first {
        let _ = write!(class, "-\\u{:04X}", u32::from(last));
    }
}

/// Checks a JSON object against a field list and returns the accepted fields, or one
/// `FieldError` per bad, missing or unknown field. Blank optional strings count as absent.
pub fn validate_object(
    object_name: &str,
    fields: &[FieldSpec],
    body: &Value,
    ignored: &[&str],
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new(object_name, "", "TypeMismatch")]);
    };
    let names: Vec<String> = fields.iter().map(FieldSpec::json_name).collect();
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|key| !names.iter().any(|n| n == *key) && !ignored.contains(&key.as_str()))
        .map(|key| FieldError::new(object_name, key, "Unknown"))
        .collect();
    let mut accepted = Map::new();
    for (spec, name) in fields.iter().zip(names) {
        let value = object.get(&name).unwrap_or(&Value::Null);
        let problem = match (value, spec.kind) {
            (Value::Null, _) => spec.required.then_some("NotNull"),
            (Value::Bool(_), FieldKind::Boolean) => None,
            (_, FieldKind::Boolean) => Some("TypeMismatch"),
            (Value::String(text), kind) => {
                if text.trim().is_empty() {
                    spec.required.then_some("NotBlank")
                } else if text.chars().count() > MAX_FIELD_LEN {
                    Some("Size")
                } else if kind == FieldKind::Environment
                    && serde_json::from_value::<ClientEnvironment>(value.clone()).is_err()
                {
                    Some("Pattern")
                } else {
                    None
                }
            }
            _ => Some("TypeMismatch"),
        };
        match problem {
            Some(message) => errors.push(FieldError::new(object_name, &name, message)),
            None if value.is_null() || value.as_str().is_some_and(|t| t.trim().is_empty()) => {
                if let Some(default) = spec.default {
                    accepted.insert(name, Value::String(default.to_owned()));
                }
            }
            None => {
                accepted.insert(name, value.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The schema's pattern, under Rust's Unicode reading (as jsonschema-rs reads it), accepts
    /// a one-character string exactly when the validator does not call it blank, for every char.
    /// Its only escapes are `\uXXXX`, which ECMA-262 and Python's `re` read the same way.
    #[test]
    fn not_blank_pattern_agrees_with_the_validator_on_every_character() {
        let pattern = not_blank_pattern();
        assert!(
            !pattern.contains("\\s") && !pattern.contains("\\S"),
            "{pattern}"
        );
        let regex = regex::Regex::new(pattern).unwrap();
        let fields = &FIELDS[..1];
        let mut blank = 0;
        for c in char::MIN..=char::MAX {
            let text = c.to_string();
            let accepted = validate_object("o", fields, &json!({ "clientKey": text }), &[]).is_ok();
            assert_eq!(regex.is_match(&text), accepted, "U+{:04X}", u32::from(c));
            assert!(regex.is_match(&format!("{c}{c}x{c}")));
            blank += usize::from(!accepted);
        }
        // Rust's White_Space set: 25 characters, U+00A0 and U+3000 among them.
        assert_eq!(blank, 25);
        assert!(!regex.is_match("\u{a0}\u{3000}\u{85}\t"));
    }

    const FIELDS: &[FieldSpec] = &[
        FieldSpec::new("client_key", true, FieldKind::Plain),
        FieldSpec::new("refresh_token", true, FieldKind::Secret),
        FieldSpec::new("access_token", false, FieldKind::Secret),
        FieldSpec::new("client_environment", true, FieldKind::Environment),
    ];

    #[test]
    fn json_names_are_camel_case() {
        assert_eq!(FIELDS[3].json_name(), "clientEnvironment");
        assert_eq!(FIELDS[0].json_name(), "clientKey");
    }

    #[test]
    fn every_bad_field_is_reported_once() {
        let body =
            json!({"clientKey": " ", "refreshToken": 3, "clientEnvironment": "DEV", "extra": 1});
        let errors = validate_object("x", FIELDS, &body, &[]).unwrap_err();
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("extra", "Unknown"),
                ("clientKey", "NotBlank"),
                ("refreshToken", "TypeMismatch"),
                ("clientEnvironment", "Pattern")
            ]
        );
    }

    #[test]
    fn blank_optional_fields_are_dropped_and_the_rest_kept() {
        let body = json!({"clientKey": "k", "refreshToken": "r", "accessToken": "", "clientEnvironment": "STAGE"});
        let accepted = validate_object("x", FIELDS, &body, &[]).unwrap();
        assert_eq!(
            Value::Object(accepted),
            json!({"clientKey": "k", "refreshToken": "r", "clientEnvironment": "STAGE"})
        );
    }

    #[test]
    fn missing_required_fields_are_not_null_errors() {
        let errors = validate_object("x", FIELDS, &json!({}), &[]).unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.message == "NotNull"));
    }
}
