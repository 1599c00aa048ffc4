//! The providers, as data: one file each, holding one `credential_provider!` block (its names,
//! its request fields, what its answers add, how its credentials are checked, an example).
//! From that block come its typed request and answer (with their schemas) and its
//! [`ProviderSpec`](super::provider::ProviderSpec); `for_each_provider!` in `provider.rs` lists
//! the files, and everything else (validation, the endpoints, its place in a Leaf user, its
//! checks) is generic over the spec.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::event::token_fields::SCOPES;
use super::{CredentialId, CredentialStatus, Timestamp};

/// What the provider said about the current token.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenMetadata {
    /// The scopes granted to the token.
    pub scopes: Vec<String>,
}

/// What every credential answer says besides its provider's fields.
#[derive(Clone, Copy, Debug)]
pub struct CredentialFacts<'a> {
    pub id: CredentialId,
    pub status: CredentialStatus,
    pub created_at: Timestamp,
    pub last_checked_at: Option<Timestamp>,
    pub status_reason: Option<&'a str>,
}

/// A stored credential as its provider's typed answer: its id, status, creation time and last
/// check, the fields it holds, and the token metadata its checks recorded.
pub fn credential_answer<R: DeserializeOwned>(
    facts: &CredentialFacts<'_>,
    fields: &Map<String, Value>,
) -> serde_json::Result<R> {
    let scopes = fields.get(SCOPES).cloned().unwrap_or_else(|| json!([]));
    let mut object = Map::new();
    object.insert("id".into(), json!(facts.id));
    object.insert("status".into(), json!(facts.status));
    object.insert("createdTime".into(), json!(facts.created_at));
    object.insert("lastCheckedTime".into(), json!(facts.last_checked_at));
    object.insert("statusReason".into(), json!(facts.status_reason));
    object.insert("tokenMetadata".into(), json!({ "scopes": scopes }));
    object.insert(SCOPES.into(), scopes);
    object.extend(fields.clone());
    serde_json::from_value(Value::Object(object))
}

/// `required` or `optional`, as a field spec's `required`.
macro_rules! required {
    (required) => {
        true
    };
    (optional) => {
        false
    };
}

/// `secret`, `plain` or `environment`, as a field spec's kind.
macro_rules! field_kind {
    (secret) => {
        $crate::domain::fields::FieldKind::Secret
    };
    (plain) => {
        $crate::domain::fields::FieldKind::Plain
    };
    (environment) => {
        $crate::domain::fields::FieldKind::Environment
    };
}

/// `Some(default)` when a field declares `= "DEFAULT"`, else `None`.
macro_rules! default_of {
    () => {
        None
    };
    ($default:literal) => {
        Some($default)
    };
}

/// One provider's declaration: see `raven.rs` for the shape, and `sentera.rs` for fields that
/// answers never show (`write_only`) and a default (`= "STAGE"`).
macro_rules! credential_provider {
    (
        $(#[doc = $doc:literal])*
        $variant:ident {
            name: $name:tt,
            title: $title:tt,
            slug: $slug:tt,
            object: $object:tt,
            operation: $op:tt,
            request: $Req:ident,
            response: $Resp:ident,
            fields: { $( $(#[doc = $fdoc:literal])* $req:ident $kind:ident $field:ident : $fty:ty $(= $default:literal)? ),* $(,)? },
            $(write_only: { $( $(#[doc = $wdoc:literal])* $wreq:ident $wkind:ident $wfield:ident : $wty:ty ),* $(,)? },)?
            extras: { $( $(#[doc = $xdoc:literal])* $xfield:ident : $xty:ty ),* $(,)? },
            check: $check:expr,
            example: $example:tt $(,)?
        }
    ) => {
        use serde::{Deserialize, Serialize};
        use utoipa::ToSchema;
        #[allow(unused_imports)]
        use $crate::domain::providers::TokenMetadata;
        #[allow(unused_imports)]
        use $crate::domain::provider::{ClientAuth, ClientEnvironment, Endpoints, OAuthCheck};
        use $crate::domain::provider::{CheckKind, Provider, ProviderSpec};
        use $crate::domain::fields::FieldSpec;
        use $crate::domain::{CredentialId, CredentialStatus, Timestamp};

        $(#[doc = $doc])*
        #[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        #[schema(example = json!($example))]
        pub struct $Req {
            $( $(#[doc = $fdoc])* $(#[schema(default = $default)])? pub $field: $fty, )*
            $($( $(#[doc = $wdoc])* pub $wfield: $wty, )*)?
        }

        #[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        #[schema(
            description = concat!("A Leaf user's ", $name, " credentials, with their status."),
            example = example
        )]
        pub struct $Resp {
            /// The credential's id; a replaced credential gets a new one.
            pub id: CredentialId,
            /// The credential's health, kept up to date by background checks.
            pub status: CredentialStatus,
            /// When the credential was created.
            pub created_time: Timestamp,
            /// When a background check last ran (null until one has).
            pub last_checked_time: Option<Timestamp>,
            /// Why the status is what it is: what the last check found (secrets redacted), or
            /// why no check has run.
            pub status_reason: Option<String>,
            $( $(#[doc = $fdoc])* pub $field: $fty, )*
            $( $(#[doc = $xdoc])* pub $xfield: $xty, )*
        }

        /// This provider's request body.
        pub type Request = $Req;
        /// This provider's stored credentials, as answers show them.
        pub type Response = $Resp;

        /// An example answer, made by the code that makes real ones.
        pub fn example() -> serde_json::Value {
            let fields = match serde_json::json!($example) {
                serde_json::Value::Object(fields) => fields,
                _ => Default::default(),
            };
            let at = Timestamp::parse("2026-11-22T14:03:07.123456Z").unwrap_or_else(|| unreachable!());
            let facts = $crate::domain::providers::CredentialFacts {
                id: CredentialId(uuid::uuid!("6f1c0e52-8d4b-4b8e-9a63-2f0a4c7d1e55")),
                status: CredentialStatus::Ok,
                created_at: at,
                last_checked_at: Some(at),
                status_reason: Some("the provider issued a new access token"),
            };
            $crate::domain::providers::credential_answer::<$Resp>(&facts, &fields)
            .ok()
            .and_then(|answer| serde_json::to_value(answer).ok())
            .unwrap_or_default()
        }

        pub static SPEC: ProviderSpec = ProviderSpec {
            provider: Provider::$variant,
            name: $name,
            title: $title,
            slug: $slug,
            object_name: $object,
            operation: $op,
            fields: &[
                $(FieldSpec {
                    default: default_of!($($default)?),
                    ..FieldSpec::new(stringify!($field), required!($req), field_kind!($kind))
                },)*
                $($(FieldSpec {
                    echoed: false,
                    ..FieldSpec::new(stringify!($wfield), required!($wreq), field_kind!($wkind))
                },)*)?
            ],
            request_schema: stringify!($Req),
            response_schema: stringify!($Resp),
            check: $check,
            answer: |facts, fields| {
                let answer: $Resp = $crate::domain::providers::credential_answer(facts, fields)?;
                serde_json::to_value(answer)
            },
        };
    };
}

// After the macros: a `macro_rules!` is seen only below its definition.
pub mod ag_leader;
pub mod agvance;
pub mod claas;
pub mod climate_field_view;
pub mod cnhi;
pub mod cnhi_field_ops;
pub mod john_deere;
pub mod lindsay;
pub mod panorama;
pub mod raven;
pub mod raven_slingshot;
pub mod sentera;
pub mod stara;
pub mod trimble;
pub mod valley;
