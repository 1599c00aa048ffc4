//! The providers. Each is one block in `declare_providers!` below: its names, its request
//! fields (required or optional; secret, plain or an environment) and what its responses add.
//! From that one block come the typed request and response schemas, the field validation,
//! the five annotated endpoints under `/users/{leafUserId}/{slug}`, and its place in a Leaf user.

use crate::api::credentials::{self as endpoints, TokenMetadata};
use crate::domain::provider::{ClientAuth, FieldKind, FieldSpec, OAuthCheck, ProviderSpec};
use crate::domain::{ClientEnvironment, CredentialId, CredentialStatus, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! required {
    (required) => {
        true
    };
    (optional) => {
        false
    };
}

macro_rules! field_kind {
    (secret) => {
        FieldKind::Secret
    };
    (plain) => {
        FieldKind::Plain
    };
    (environment) => {
        FieldKind::Environment
    };
}

macro_rules! declare_providers {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident {
            name: $name:tt,
            slug: $slug:tt,
            object: $object:tt,
            operation: $op:tt,
            module: $module:ident,
            request: $Req:ident,
            response: $Resp:ident,
            fields: { $( $(#[doc = $fdoc:literal])* $req:ident $kind:ident $field:ident : $fty:ty ),* $(,)? },
            extras: { $( $(#[doc = $xdoc:literal])* $xfield:ident : $xty:ty ),* $(,)? },
            check: $check:expr,
            example: $example:tt $(,)?
        }
    ),* $(,)?) => {
        /// A machine-data provider whose credentials the ledger keeps.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Provider { $($variant),* }

        impl Provider {
            pub const ALL: &'static [Provider] = &[$(Provider::$variant),*];

            pub fn spec(self) -> &'static ProviderSpec {
                match self { $(Provider::$variant => &$module::SPEC),* }
            }

            /// The stable name stored in the ledger.
            pub fn key(self) -> &'static str {
                match self { $(Provider::$variant => stringify!($variant)),* }
            }

            pub fn from_key(key: &str) -> Option<Provider> {
                Self::ALL.iter().copied().find(|p| p.key() == key)
            }
        }

        /// The credentials a Leaf user holds, one object per provider it has.
        #[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
        pub struct UserCredentials {
            $(
                #[serde(rename = $object, default, skip_serializing_if = "Option::is_none")]
                /// The user's credentials for this provider, if it has them.
                #[schema(nullable = false)]
                pub $module: Option<$Resp>,
            )*
        }

        impl UserCredentials {
            pub fn from_views(
                views: &[crate::store::views::CredentialView],
            ) -> Result<Self, crate::api::ApiError> {
                let mut all = Self::default();
                for view in views {
                    match view.provider {
                        $(Provider::$variant => all.$module = Some(endpoints::body(view)?),)*
                    }
                }
                Ok(all)
            }
        }

        /// Credentials to attach while creating a Leaf user, one object per provider.
        #[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
        pub struct UserCredentialsRequest {
            $(
                #[serde(rename = $object, default, skip_serializing_if = "Option::is_none")]
                /// Credentials for this provider, to attach with the new user.
                pub $module: Option<$Req>,
            )*
        }

        /// Registers every provider's endpoints, in one scope for the user (so a request
        /// matches the path's one parameter once, not once per provider) with a static one
        /// per provider inside it. Registered after the user's own routes: a scope that
        /// matches takes the request even when nothing inside it does.
        pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
            cfg.service(
                utoipa_actix_web::scope("/users/{leafUserId}")
                    $(.service(
                        utoipa_actix_web::scope(concat!("/", $slug))
                            .service($module::get_credentials)
                            .service($module::post_credentials)
                            .service($module::delete_credentials)
                            .service($module::get_status)
                            .service($module::get_events)
                            .service($module::post_check),
                    ))*
            );
        }

        $(
            $(#[doc = $doc])*
            #[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
            #[serde(rename_all = "camelCase")]
            #[schema(example = json!($example))]
            pub struct $Req {
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
            }

            #[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
            #[serde(rename_all = "camelCase")]
            #[schema(
                description = concat!("A Leaf user's ", $name, " credentials, with their status."),
                example = $module::example
            )]
            pub struct $Resp {
                /// The credential's id; a replaced credential gets a new one.
                pub id: CredentialId,
                /// The credential's health, kept up to date by background checks.
                pub status: CredentialStatus,
                /// When the credential was created.
                pub created_time: Timestamp,
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
                $( $(#[doc = $xdoc])* pub $xfield: $xty, )*
            }

            pub mod $module {
                use super::*;
                use crate::api::extract::{JsonBody, LeafUserId, Owner};
                use crate::api::{ApiError, CreateErrors, DeleteErrors, ReadErrors};
                use crate::ledger::Ledger;
                use actix_web::{delete, get, post, web::Data, HttpRequest, HttpResponse};

                /// An example answer, made by the code that makes real ones.
                pub fn example() -> serde_json::Value {
                    let fields = match serde_json::json!($example) {
                        serde_json::Value::Object(fields) => fields,
                        _ => Default::default(),
                    };
                    let view = crate::store::views::CredentialView {
                        id: CredentialId(uuid::uuid!("6f1c0e52-8d4b-4b8e-9a63-2f0a4c7d1e55")),
                        user_id: crate::domain::UserId(uuid::uuid!("3fa85f64-5717-4562-b3fc-2c963f66afa6")),
                        provider: Provider::$variant,
                        status: CredentialStatus::Ok,
                        data_key: None,
                        fields,
                        created_at: Timestamp::parse("2026-11-22T14:03:07.123456Z").unwrap_or_else(|| unreachable!()),
                    };
                    endpoints::body::<$Resp>(&view)
                        .ok()
                        .and_then(|body| serde_json::to_value(body).ok())
                        .unwrap_or_default()
                }

                pub static SPEC: ProviderSpec = ProviderSpec {
                    provider: Provider::$variant,
                    name: $name,
                    slug: $slug,
                    object_name: $object,
                    fields: &[$(FieldSpec {
                        rust_name: stringify!($field),
                        required: required!($req),
                        kind: field_kind!($kind),
                    }),*],
                    request_schema: stringify!($Req),
                    check: $check,
                };

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("get_", $op, "_credentials"),
                    summary = concat!("Get the ", $name, " credentials"),
                    description = concat!("The Leaf user's ", $name, " credentials. If background \
                        processing finds that they are no longer valid, `status` changes."),
                    params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                    responses(
                        (status = 200, description = "The credentials", body = $Resp),
                        ReadErrors,
                    ),
                    security(("bearer" = [])),
                )]
                #[get("")]
                pub async fn get_credentials(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                ) -> Result<HttpResponse, ApiError> {
                    let view = endpoints::get_open(&ledger, owner, user, Provider::$variant).await?;
                    Ok(HttpResponse::Ok().json(endpoints::body::<$Resp>(&view)?))
                }

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("create_", $op, "_credentials"),
                    summary = concat!("Create (or replace) the ", $name, " credentials"),
                    description = concat!("Attaches ", $name, " credentials to the Leaf user. A user \
                        holds at most one set per provider: posting again replaces them (the old \
                        credential and its events are gone). With `If-None-Match: *` the request \
                        only creates, and answers 412 when credentials exist."),
                    params(
                        ("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id"),
                        ("If-None-Match" = Option<String>, Header,
                            description = "`*` to create only, never replace"),
                    ),
                    request_body = $Req,
                    responses(
                        (status = 201, description = "The stored credentials", body = $Resp),
                        CreateErrors,
                    ),
                    security(("bearer" = [])),
                )]
                #[post("")]
                pub async fn post_credentials(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                    request: HttpRequest,
                    body: JsonBody,
                ) -> Result<HttpResponse, ApiError> {
                    let create_only = endpoints::create_only(&request)?;
                    let view =
                        endpoints::save(&ledger, owner, user, &SPEC, body, create_only).await?;
                    Ok(HttpResponse::Created().json(endpoints::body::<$Resp>(&view)?))
                }

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("delete_", $op, "_credentials"),
                    summary = concat!("Delete the ", $name, " credentials"),
                    description = concat!("Deletes the Leaf user's ", $name,
                        " credentials and their events."),
                    params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                    responses((status = 204, description = "Deleted"), DeleteErrors),
                    security(("bearer" = [])),
                )]
                #[delete("")]
                pub async fn delete_credentials(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                ) -> Result<HttpResponse, ApiError> {
                    endpoints::delete(&ledger, owner, user, Provider::$variant).await?;
                    Ok(HttpResponse::NoContent().finish())
                }

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("get_", $op, "_credentials_status"),
                    summary = concat!("Get the ", $name, " credentials' status"),
                    description = "`OK`, `UNAUTHENTICATED` (no longer valid), `MISSING_PERMISSION` \
                        (valid but lacking permissions) or `TEMPORARILY_UNAVAILABLE` (the provider failed).",
                    params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                    responses(
                        (status = 200, description = "The status", body = endpoints::CredentialStatusBody),
                        ReadErrors,
                    ),
                    security(("bearer" = [])),
                )]
                #[get("/status")]
                pub async fn get_status(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                ) -> Result<HttpResponse, ApiError> {
                    let view = endpoints::get(&ledger, owner, user, Provider::$variant).await?;
                    Ok(HttpResponse::Ok().json(endpoints::CredentialStatusBody { status: view.status }))
                }

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("check_", $op, "_credentials"),
                    summary = concat!("Check the ", $name, " credentials now"),
                    description = "Asks the background worker to check the credentials at the \
                        provider now (a refresh-token exchange). Answers at once with the current \
                        status; read `status` and `events` for the outcome. A check already due or \
                        running is not repeated. This is how an `UNAUTHENTICATED` credential, which \
                        is otherwise left alone until it is replaced, gets checked again.",
                    params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                    responses(
                        (status = 202, description = "A check is due; the current status",
                            body = endpoints::CredentialStatusBody),
                        DeleteErrors,
                    ),
                    security(("bearer" = [])),
                )]
                #[post("/check")]
                pub async fn post_check(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                ) -> Result<HttpResponse, ApiError> {
                    let status = endpoints::request_check(&ledger, owner, user, Provider::$variant).await?;
                    Ok(HttpResponse::Accepted().json(endpoints::CredentialStatusBody { status }))
                }

                #[utoipa::path(
                    tag = $name,
                    operation_id = concat!("get_", $op, "_credentials_events"),
                    summary = concat!("Get the ", $name, " credentials' events"),
                    description = "The exchanges with the provider over the last 30 days, newest \
                        first, secrets redacted. Nothing is shown for a deleted or replaced credential.",
                    params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                    responses(
                        (status = 200, description = "The exchanges", body = Vec<endpoints::ProviderEvent>),
                        ReadErrors,
                    ),
                    security(("bearer" = [])),
                )]
                #[get("/events")]
                pub async fn get_events(
                    owner: Owner,
                    user: LeafUserId,
                    ledger: Data<Ledger>,
                ) -> Result<HttpResponse, ApiError> {
                    let events = endpoints::events(&ledger, owner, user, Provider::$variant).await?;
                    Ok(HttpResponse::Ok().json(events))
                }
            }
        )*
    };
}

declare_providers! {
    /// AgLeader AgFiniti credentials: the grower's refresh token and your application's key pair.
    AgLeader {
        name: "AgLeader",
        slug: "ag-leader-credentials",
        object: "agLeaderCredentials",
        operation: "ag_leader",
        module: ag_leader,
        request: AgLeaderCredentialsRequest,
        response: AgLeaderCredentials,
        fields: {
            /// The grower's refresh token, from AgLeader's OAuth consent flow.
            required secret refresh_token: String,
            /// Your application's public key from AgLeader.
            required plain public_key: String,
            /// Your application's private key from AgLeader.
            required secret private_key: String,
            /// An access token, if you already hold a valid one.
            optional secret access_token: Option<String>,
        },
        extras: {},
        // AgFiniti publishes no token endpoint: configure it (see the README).
        check: OAuthCheck {
            client_auth: ClientAuth::Body { id: "publicKey", secret: "privateKey" },
            production_token_url: None,
            stage_token_url: None,
        },
        example: {
            "refreshToken": "grower-refresh-token",
            "publicKey": "your-public-key",
            "privateKey": "your-private-key"
        },
    },
    /// John Deere Operations Center credentials: your application's key and secret and the
    /// grower's refresh token.
    JohnDeere {
        name: "John Deere",
        slug: "john-deere-credentials",
        object: "johnDeereCredentials",
        operation: "john_deere",
        module: john_deere,
        request: JohnDeereCredentialsRequest,
        response: JohnDeereCredentials,
        fields: {
            /// Your application's key (client id) from developer.deere.com.
            required plain client_key: String,
            /// Your application's secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which John Deere environment the application is registered in.
            required environment client_environment: ClientEnvironment,
            /// An access token, if you already hold a valid one.
            optional secret access_token: Option<String>,
        },
        extras: {
            /// The scopes granted (legacy copy of `tokenMetadata.scopes`).
            scopes: Vec<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
            /// OAuth 1 token id (legacy credentials only; otherwise null).
            token_id: Option<String>,
            /// OAuth 1 token secret (legacy credentials only; otherwise null).
            token_secret_key: Option<String>,
        },
        check: OAuthCheck {
            client_auth: ClientAuth::Basic { id: "clientKey", secret: "clientSecret" },
            production_token_url: Some("https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7/v1/token"),
            stage_token_url: Some("https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7/v1/token"),
        },
        example: {
            "clientKey": "your-client-key",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "PRODUCTION"
        },
    },
    /// Raven credentials: your application's client id and secret and the grower's refresh token.
    Raven {
        name: "Raven",
        slug: "raven-credentials",
        object: "ravenCredentials",
        operation: "raven",
        module: raven,
        request: RavenCredentialsRequest,
        response: RavenCredentials,
        fields: {
            /// Your application's client id from Raven.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
        },
        // Raven publishes no token endpoint: configure it (see the README).
        check: OAuthCheck {
            client_auth: ClientAuth::Body { id: "clientId", secret: "clientSecret" },
            production_token_url: None,
            stage_token_url: None,
        },
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token"
        },
    },
}
