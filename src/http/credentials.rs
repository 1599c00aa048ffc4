//! The six endpoints under `/users/{leafUserId}/{slug}`, written once over a provider's spec.
//! `credential_endpoints!` emits, per provider, only the annotated wrappers that give each
//! operation its own typed body in the OpenAPI document; each calls the generic handler here.

use actix_web::http::header;
use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{JsonBody, LeafUserId, Owner};
use super::ApiError;
use crate::app::Service;
use crate::config::EVENTS_WINDOW_DAYS;
use crate::domain::provider::{for_each_provider, ProviderSpec};
use crate::domain::user::UserCommand;
use crate::domain::{CredentialStatus, ExchangeId, Provider, Timestamp};
use crate::store::CredentialView;

/// The health of a credential.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "OK"}))]
pub struct CredentialStatusBody {
    /// `OK`, `UNAUTHENTICATED`, `MISSING_PERMISSION` or `TEMPORARILY_UNAVAILABLE`.
    pub status: CredentialStatus,
}

/// One exchange between the service and the provider.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "0b8e6c1a-4f2d-4c8e-9d1b-7a5e3f2c1d0e",
    "body": "{\"access_token\":\"[redacted]\",\"expires_in\":43199,\"scope\":\"ag1 eq1 org1\"}",
    "headers": "{\"content-type\":\"application/json\"}",
    "statusCode": 200,
    "createdDate": "2026-11-22T14:03:07.123456Z"
}))]
pub struct ProviderEvent {
    /// The exchange's id.
    pub id: ExchangeId,
    /// The provider's response body, secrets redacted.
    pub body: String,
    /// The provider's response headers, secrets redacted.
    pub headers: String,
    /// The provider's HTTP status code.
    pub status_code: u16,
    /// When the exchange happened.
    pub created_date: Timestamp,
}

/// The typed answer of a stored credential, as its provider's answer type says.
pub fn body(view: &CredentialView) -> Result<serde_json::Value, ApiError> {
    let answer = view.provider.spec().answer;
    // The fields are decrypted here: serde's message, which may quote a value, is not kept.
    let facts = crate::domain::providers::CredentialFacts {
        id: view.id,
        status: view.status,
        created_at: view.created_at,
        last_checked_at: view.last_checked_at,
        status_reason: view.status_reason.as_deref(),
    };
    answer(&facts, &view.fields).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored {:?} credential {} does not fit its schema ({:?} error)",
            view.provider,
            view.id,
            e.classify()
        ))
    })
}

/// Whether the request asked to create only (`If-None-Match: *`). No entity tags are issued, so
/// any other value is a client mistake.
pub fn create_only(request: &HttpRequest) -> Result<bool, ApiError> {
    let mut values = request.headers().get_all(header::IF_NONE_MATCH);
    match (values.next(), values.next()) {
        (None, _) => Ok(false),
        (Some(value), None) if value.to_str().is_ok_and(|v| v.trim() == "*") => Ok(true),
        _ => Err(ApiError::BadRequest(
            "`If-None-Match` may only be `*` (create only, never replace)".into(),
        )),
    }
}

fn no_credential(provider: Provider) -> ApiError {
    ApiError::NotFound(format!(
        "the user has no {} credentials",
        provider.spec().name
    ))
}

/// The credential, its secrets still sealed.
pub async fn get(
    service: &Service,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    provider: Provider,
) -> Result<CredentialView, ApiError> {
    service
        .credential(owner, user, provider)
        .await?
        .ok_or_else(|| no_credential(provider))
}

/// The credential as an answer shows it.
pub async fn get_open(
    service: &Service,
    owner: Owner,
    user: LeafUserId,
    provider: Provider,
) -> Result<CredentialView, ApiError> {
    let view = get(service, owner, user, provider).await?;
    Ok(service.reveal(view)?)
}

pub async fn save(
    service: &Service,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    spec: &'static ProviderSpec,
    JsonBody(body): JsonBody,
    create_only: bool,
) -> Result<CredentialView, ApiError> {
    let fields = spec.validate(&body).map_err(ApiError::Validation)?;
    Ok(service
        .save_credential(owner, user, spec.provider, fields, create_only)
        .await?)
}

pub async fn delete(
    service: &Service,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    provider: Provider,
) -> Result<(), ApiError> {
    let command = UserCommand::DeleteCredential {
        owner_id: owner,
        provider,
    };
    service.execute(user, command).await?;
    Ok(())
}

pub async fn events(
    service: &Service,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    provider: Provider,
) -> Result<Vec<ProviderEvent>, ApiError> {
    let since = service
        .now()
        .minus(chrono::Duration::days(EVENTS_WINDOW_DAYS));
    let exchanges = service
        .exchanges(owner, user, provider, since)
        .await?
        .ok_or_else(|| no_credential(provider))?;
    Ok(exchanges
        .into_iter()
        .map(|x| ProviderEvent {
            id: x.id,
            body: x.body,
            headers: x.headers,
            status_code: x.status_code,
            created_date: x.recorded_at,
        })
        .collect())
}

/// Records that a check is wanted now; returns the credential's current status.
pub async fn request_check(
    service: &Service,
    owner: Owner,
    user: LeafUserId,
    provider: Provider,
) -> Result<CredentialStatus, ApiError> {
    let command = UserCommand::RequestCheck {
        owner_id: owner.0,
        provider,
        now: service.now(),
    };
    service.execute(user.0, command).await?;
    Ok(get(service, owner, user, provider).await?.status)
}

/// The annotated wrappers of one provider's endpoints, in a module named after it.
macro_rules! credential_endpoints {
    ($($variant:ident $module:ident),* $(,)?) => {
        /// Registers every provider's endpoints, in one scope for the user (so a request
        /// matches the path's one parameter once, not once per provider) with a static one
        /// per provider inside it. Registered after the user's own routes: a scope that
        /// matches takes the request even when nothing inside it does.
        pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
            cfg.service(
                utoipa_actix_web::scope("/users/{leafUserId}")
                    $(.service(
                        utoipa_actix_web::scope(format!("/{}", crate::domain::providers::$module::SPEC.slug).as_str())
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
        pub mod $module {
            use super::*;
            use crate::domain::providers::$module::{Request, Response, SPEC};
            use crate::http::{CreateErrors, DeleteErrors, ReadErrors};
            use actix_web::{delete, get, post, web::Data, HttpRequest, HttpResponse};

            const PROVIDER: Provider = Provider::$variant;

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("get_{}_credentials", SPEC.operation),
                summary = format!("Get the {} credentials", SPEC.name),
                description = format!("The Leaf user's {} credentials. If background \
                    processing finds that they are no longer valid, `status` changes.", SPEC.name),
                params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                responses(
                    (status = 200, description = "The credentials", body = Response),
                    ReadErrors,
                ),
                security(("bearer" = [])),
            )]
            #[get("")]
            pub async fn get_credentials(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
            ) -> Result<HttpResponse, ApiError> {
                let view = get_open(&service, owner, user, PROVIDER).await?;
                Ok(HttpResponse::Ok().json(body(&view)?))
            }

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("create_{}_credentials", SPEC.operation),
                summary = format!("Create (or replace) the {} credentials", SPEC.name),
                description = format!("Attaches {} credentials to the Leaf user. A user \
                    holds at most one set per provider: posting again replaces them (the old \
                    credential and its events are gone). With `If-None-Match: *` the request \
                    only creates, and answers 412 when credentials exist.", SPEC.name),
                params(
                    ("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id"),
                    ("If-None-Match" = Option<String>, Header,
                        description = "`*` to create only, never replace"),
                ),
                request_body = Request,
                responses(
                    (status = 201, description = "The stored credentials", body = Response),
                    CreateErrors,
                ),
                security(("bearer" = [])),
            )]
            #[post("")]
            pub async fn post_credentials(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
                request: HttpRequest,
                json: JsonBody,
            ) -> Result<HttpResponse, ApiError> {
                let create_only = create_only(&request)?;
                let view = save(&service, owner, user, &SPEC, json, create_only).await?;
                Ok(HttpResponse::Created().json(body(&view)?))
            }

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("delete_{}_credentials", SPEC.operation),
                summary = format!("Delete the {} credentials", SPEC.name),
                description = format!("Deletes the Leaf user's {} credentials and their events.",
                    SPEC.name),
                params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                responses((status = 204, description = "Deleted"), DeleteErrors),
                security(("bearer" = [])),
            )]
            #[delete("")]
            pub async fn delete_credentials(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
            ) -> Result<HttpResponse, ApiError> {
                delete(&service, owner, user, PROVIDER).await?;
                Ok(HttpResponse::NoContent().finish())
            }

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("get_{}_credentials_status", SPEC.operation),
                summary = format!("Get the {} credentials' status", SPEC.name),
                description = "`OK`, `UNAUTHENTICATED` (no longer valid), `MISSING_PERMISSION` \
                    (valid but lacking permissions) or `TEMPORARILY_UNAVAILABLE` (the provider failed).",
                params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                responses(
                    (status = 200, description = "The status", body = CredentialStatusBody),
                    ReadErrors,
                ),
                security(("bearer" = [])),
            )]
            #[get("/status")]
            pub async fn get_status(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
            ) -> Result<HttpResponse, ApiError> {
                let view = get(&service, owner, user, PROVIDER).await?;
                Ok(HttpResponse::Ok().json(CredentialStatusBody { status: view.status }))
            }

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("check_{}_credentials", SPEC.operation),
                summary = format!("Check the {} credentials now", SPEC.name),
                description = "Asks the background worker to check the credentials at the \
                    provider now (a refresh-token exchange). Answers at once with the current \
                    status; read `status` and `events` for the outcome. A check already due or \
                    running is not repeated. This is how an `UNAUTHENTICATED` credential, which \
                    is otherwise left alone until it is replaced, gets checked again.",
                params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                responses(
                    (status = 202, description = "A check is due; the current status",
                        body = CredentialStatusBody),
                    DeleteErrors,
                ),
                security(("bearer" = [])),
            )]
            #[post("/check")]
            pub async fn post_check(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
            ) -> Result<HttpResponse, ApiError> {
                let status = request_check(&service, owner, user, PROVIDER).await?;
                Ok(HttpResponse::Accepted().json(CredentialStatusBody { status }))
            }

            #[utoipa::path(
                tag = SPEC.name,
                operation_id = format!("get_{}_credentials_events", SPEC.operation),
                summary = format!("Get the {} credentials' events", SPEC.name),
                description = "The exchanges with the provider over the last 30 days, newest \
                    first, secrets redacted. Nothing is shown for a deleted or replaced credential.",
                params(("leafUserId" = uuid::Uuid, Path, description = "The Leaf user's id")),
                responses(
                    (status = 200, description = "The exchanges", body = Vec<ProviderEvent>),
                    ReadErrors,
                ),
                security(("bearer" = [])),
            )]
            #[get("/events")]
            pub async fn get_events(
                owner: Owner,
                user: LeafUserId,
                service: Data<Service>,
            ) -> Result<HttpResponse, ApiError> {
                Ok(HttpResponse::Ok().json(events(&service, owner, user, PROVIDER).await?))
            }
        }
        )*
    };
}
for_each_provider!(credential_endpoints);
