//! Every fact the ledger records. Events are past tense and carry what projections need.

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{DeserializeSeed, MapAccess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::{CredentialId, CredentialStatus, ExchangeId, OwnerId, Provider, Timestamp, UserId};

/// Calls `$callback!` (a macro of this module, or any by its path) with `{ $args }` followed by
/// the fields of a Leaf user's profile, each with its doc: spelled here once for the event, the
/// answers and requests that carry them (`profile_struct!`), their validation
/// (`profile_specs!`) and their columns in storage.
macro_rules! with_profile_fields {
    ($callback:ident ! { $($args:tt)* }) => {
        $crate::domain::event::with_profile_fields! { $crate::domain::event::$callback! { $($args)* } }
    };
    ($($callback:ident)::+ ! { $($args:tt)* }) => {
        $($callback)::+! { $($args)*
            /// The user's name.
            name,
            /// The user's email address.
            email,
            /// The user's phone number.
            phone,
            /// The user's postal address.
            address,
            /// Your own id for this user.
            external_id,
        }
    };
}
pub(crate) use with_profile_fields;

/// A struct with `{ before }` fields, then the profile's (each an optional string), then
/// `{ after }` fields: `with_profile_fields!(profile_struct! { #[attrs] pub struct Name { … } { … } })`.
macro_rules! profile_struct {
    (
        $(#[$meta:meta])* pub struct $name:ident { $($before:tt)* } { $($after:tt)* }
        $( $(#[doc = $doc:literal])* $field:ident, )*
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($before)*
            $( $(#[doc = $doc])* pub $field: Option<String>, )*
            $($after)*
        }
    };
}
pub(crate) use profile_struct;

/// `pub const $name: &[FieldSpec]`: the profile's fields, all optional plain text.
macro_rules! profile_specs {
    ($(#[$meta:meta])* $name:ident $( $(#[doc = $doc:literal])* $field:ident, )*) => {
        $(#[$meta])*
        pub const $name: &[$crate::domain::fields::FieldSpec] = &[$(
            $crate::domain::fields::FieldSpec::new(
                stringify!($field),
                false,
                $crate::domain::fields::FieldKind::Plain,
            ),
        )*];
    };
}
pub(crate) use profile_specs;

with_profile_fields!(profile_struct! {
    /// The editable fields of a Leaf user.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct UserProfile {} {}
});

with_profile_fields!(profile_specs! {
    /// How a profile in a request body is validated.
    PROFILE
});

/// One HTTP exchange between the service and a provider, secrets already redacted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderExchange {
    #[serde(flatten)]
    pub meta: ExchangeMeta,
    /// The response headers, as a JSON object in a string.
    pub headers: String,
    /// The response body.
    pub body: String,
}

/// What the ledger keeps of an exchange. Headers and body live beside the ledger (see
/// `exchange_contents`), so that they can be reclaimed after 30 days without touching events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeMeta {
    pub exchange_id: ExchangeId,
    pub user_id: UserId,
    pub credential_id: CredentialId,
    pub provider: Provider,
    pub request_method: String,
    pub request_url: String,
    /// 0 when no response came (timeout, connection refused).
    pub status_code: u16,
    pub recorded_at: Timestamp,
}

/// The fields in which a credential keeps the tokens its checks obtain (beside the fields of
/// its request, whose own `refreshToken`, where it has one, a rotated token replaces).
pub mod token_fields {
    pub const ACCESS_TOKEN: &str = "accessToken";
    pub const REFRESH_TOKEN: &str = "refreshToken";
    pub const ACCESS_TOKEN_EXPIRES_AT: &str = "accessTokenExpiresAt";
    pub const SCOPES: &str = "scopes";
    /// Sentera's session token.
    pub const AUTH_TOKEN: &str = "authToken";
    /// AgVance's session id.
    pub const SESSION_ID: &str = "sessionId";
    /// Stara's client access token, which its re-mint rotates.
    pub const ACCESS_TOKEN_CLIENT: &str = "accessTokenClient";
    /// The grower's organization at Sentera, found by name.
    pub const ORGANIZATION_ID: &str = "organizationId";
    /// Issued fields the next check sends: a new one lost means the credential may be dead.
    pub const ROTATED: &[&str] = &[REFRESH_TOKEN, ACCESS_TOKEN_CLIENT];
    /// Tokens a check may store under names no request field has: secrets, sealed at rest
    /// and masked like the request's secret fields.
    pub const ISSUED_SECRETS: &[&str] = &[ACCESS_TOKEN, REFRESH_TOKEN, AUTH_TOKEN, SESSION_ID];
}

/// Tokens a provider issued in a successful check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedTokens {
    /// A new access token; absent for providers whose checks issue none (a session instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// A rotated refresh token, when the provider sent one.
    pub refresh_token: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub scopes: Vec<String>,
    /// Other fields the provider issued, by their name in the credential (`authToken`,
    /// `sessionId`, `accessTokenClient`, `organizationId`); secret ones are sealed at rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl IssuedTokens {
    /// Whether these tokens replace one the next check sends (a rotated refresh token, Stara's
    /// client token): the old one may be dead at the provider now, so these must be stored.
    pub fn rotates(&self) -> bool {
        self.refresh_token.is_some()
            || self
                .fields
                .keys()
                .any(|name| token_fields::ROTATED.contains(&name.as_str()))
    }

    /// Tokens with only an access token and its lifetime.
    pub fn access(access_token: String, expires_at: Option<Timestamp>) -> Self {
        Self {
            access_token: Some(access_token),
            refresh_token: None,
            expires_at,
            scopes: vec![],
            fields: BTreeMap::new(),
        }
    }
}

/// The layout of every event's payload, stored with each event (`event_version`): a build reads
/// the versions up to its own and refuses a ledger written by a newer one. 2: issued tokens may
/// lack `accessToken` and carry `fields` (an older build would drop them).
pub const PAYLOAD_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum DomainEvent {
    OwnerCreated {
        owner_id: OwnerId,
        username: String,
        /// argon2 PHC string; the password itself is never stored.
        password_hash: String,
        created_at: Timestamp,
    },
    OwnerTokenIssued {
        owner_id: OwnerId,
        /// SHA-256 of the bearer token; the token itself is never stored.
        token_hash: String,
        expires_at: Timestamp,
    },
    UserCreated {
        user_id: UserId,
        owner_id: OwnerId,
        profile: UserProfile,
        created_at: Timestamp,
    },
    UserUpdated {
        user_id: UserId,
        profile: UserProfile,
    },
    /// The user and all its credentials are gone.
    UserDeleted {
        user_id: UserId,
    },
    CredentialCreated {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        fields: Map<String, Value>,
        created_at: Timestamp,
    },
    /// A POST over an existing credential: the old one and its exchange log are gone.
    CredentialReplaced {
        user_id: UserId,
        replaced_credential_id: CredentialId,
        credential_id: CredentialId,
        provider: Provider,
        fields: Map<String, Value>,
        created_at: Timestamp,
    },
    CredentialDeleted {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
    },
    CredentialStatusChanged {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        status: CredentialStatus,
        reason: Option<String>,
    },
    /// A check found the provider issuing fresh tokens; a rotated refresh token replaces the old.
    CredentialTokensRotated {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        tokens: IssuedTokens,
    },
    /// A check ran; the next one is due at `next_check_at` (none: wait for a replacement or a
    /// requested check).
    CredentialChecked {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        next_check_at: Option<Timestamp>,
        consecutive_failures: u32,
        /// Why the check reached its status (secrets redacted); absent in events written
        /// before checks recorded it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The worker cannot check the credential with this configuration (no endpoint for its
    /// environment): no check is due until it is replaced or a check is asked for.
    CredentialCheckParked {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        reason: String,
    },
    /// Someone asked for a check now.
    CredentialCheckRequested {
        user_id: UserId,
        credential_id: CredentialId,
        provider: Provider,
        at: Timestamp,
    },
    ProviderExchangeRecorded {
        exchange: ExchangeMeta,
    },
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OwnerCreated { .. } => "OwnerCreated",
            Self::OwnerTokenIssued { .. } => "OwnerTokenIssued",
            Self::UserCreated { .. } => "UserCreated",
            Self::UserUpdated { .. } => "UserUpdated",
            Self::UserDeleted { .. } => "UserDeleted",
            Self::CredentialCreated { .. } => "CredentialCreated",
            Self::CredentialReplaced { .. } => "CredentialReplaced",
            Self::CredentialDeleted { .. } => "CredentialDeleted",
            Self::CredentialStatusChanged { .. } => "CredentialStatusChanged",
            Self::CredentialTokensRotated { .. } => "CredentialTokensRotated",
            Self::CredentialChecked { .. } => "CredentialChecked",
            Self::CredentialCheckParked { .. } => "CredentialCheckParked",
            Self::CredentialCheckRequested { .. } => "CredentialCheckRequested",
            Self::ProviderExchangeRecorded { .. } => "ProviderExchangeRecorded",
        }
    }

    /// The event's payload without its type tag, as stored in the ledger.
    pub fn payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Rebuilds an event from its stored type and payload (JSON text). The tag is handed to serde
    /// first, so it reads the payload straight into the event, with no intermediate `Value` and
    /// no copy of the payload.
    pub fn from_stored(event_type: &str, payload: &str) -> serde_json::Result<Self> {
        let mut data = serde_json::Deserializer::from_str(payload);
        let event = Self::deserialize(MapAccessDeserializer::new(Stored {
            event_type,
            data: &mut data,
            next: 0,
        }))?;
        data.end()?;
        Ok(event)
    }
}

/// A stored event as the map `{"type": event_type, "data": payload}` that the adjacently
/// tagged `DomainEvent` reads, without copying the payload into such a document first.
struct Stored<'a, 'de> {
    event_type: &'a str,
    data: &'a mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
    next: u8,
}

impl<'de> MapAccess<'de> for Stored<'_, 'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        seed.deserialize(StrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.next += 1;
        match self.next {
            1 => seed.deserialize(StrDeserializer::new(self.event_type)),
            _ => seed.deserialize(&mut *self.data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_through_type_and_payload() {
        let event = DomainEvent::CredentialStatusChanged {
            user_id: UserId::new(),
            credential_id: CredentialId::new(),
            provider: Provider::Raven,
            status: CredentialStatus::Unauthenticated,
            reason: Some("invalid_grant".into()),
        };
        let back =
            DomainEvent::from_stored(event.event_type(), &event.payload().to_string()).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.payload()["status"], "UNAUTHENTICATED");
    }

    /// A `CredentialTokensRotated` payload as version 1 wrote it (always an `accessToken`, no
    /// `fields`) still reads; version 2 writes an absent access token as absent.
    #[test]
    fn a_version_1_token_rotation_still_reads_and_version_2_writes_what_is_new() {
        let user_id = "0190a8c2-5a5e-7b3e-8f00-000000000001";
        let credential_id = "0190a8c2-5a5e-7b3e-8f00-000000000002";
        let v1 = format!(
            r#"{{"userId":"{user_id}","credentialId":"{credential_id}","provider":"Raven",
                "tokens":{{"accessToken":"v1:at","refreshToken":"v1:rt",
                           "expiresAt":"2026-11-01T00:00:00Z","scopes":["ag1"]}}}}"#
        );
        let DomainEvent::CredentialTokensRotated { tokens, .. } =
            DomainEvent::from_stored("CredentialTokensRotated", &v1).unwrap()
        else {
            panic!("not a rotation");
        };
        assert_eq!(tokens.access_token.as_deref(), Some("v1:at"));
        assert_eq!(tokens.refresh_token.as_deref(), Some("v1:rt"));
        assert!(tokens.fields.is_empty());
        let mut session = IssuedTokens::default();
        session.fields.insert("sessionId".into(), "s".into());
        let written = serde_json::to_value(&session).unwrap();
        assert!(written.get("accessToken").is_none(), "{written}");
        assert_eq!(written["fields"]["sessionId"], "s");
        assert!(!session.rotates() && tokens.rotates());
    }
}
