//! Typed ids: a `UserId` cannot be passed where a `CredentialId` is expected.

macro_rules! id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NotAnId;
            /// Only the canonical form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case):
            /// an id has one spelling, so one id cannot pass for another in a log or a cache.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical_uuid(s).map(Self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Text that is not an id in its canonical (hyphenated) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID in its hyphenated form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct NotAnId;

/// Parses the hyphenated form only: `uuid` also accepts braced, `urn:uuid:` and bare-hex forms.
fn canonical_uuid(text: &str) -> Result<uuid::Uuid, NotAnId> {
    let bytes = text.as_bytes();
    let hyphenated = bytes.len() == 36 && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-');
    if !hyphenated {
        return Err(NotAnId);
    }
    uuid::Uuid::try_parse(text).map_err(|_| NotAnId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hyphenated_form_is_an_id() {
        let id = "01a23309-cd03-72f0-aec6-068e981cbb7e";
        assert_eq!(id.parse::<UserId>().unwrap().to_string(), id);
        assert!(id.to_uppercase().parse::<UserId>().is_ok());
        for other in [
            "urn:uuid:01a23309-cd03-72f0-aec6-068e981cbb7e",
            "{01a23309-cd03-72f0-aec6-068e981cbb7e}",
            "01a23309cd0372f0aec6068e981cbb7e",
            "01a23309-cd03-72f0-aec6-068e981cbb7",
            "01a23309+cd03-72f0-aec6-068e981cbb7e",
        ] {
            assert_eq!(other.parse::<UserId>(), Err(NotAnId), "{other}");
            assert!(serde_json::from_value::<UserId>(serde_json::json!(other)).is_err());
        }
        assert!(serde_json::from_value::<UserId>(serde_json::json!(id)).is_ok());
    }
}

id!(
    /// An API owner (a tenant).
    OwnerId
);
id!(
    /// A Leaf user, owned by one API owner.
    UserId
);
id!(
    /// One provider credential; a replaced credential gets a new id.
    CredentialId
);
id!(
    /// One recorded exchange with a provider.
    ExchangeId
);
