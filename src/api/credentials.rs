//! What every provider's endpoints do; `crate::providers` wires each provider's typed
//! handlers to these.

use actix_web::http::header;
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::extract::{JsonBody, LeafUserId, Owner};
use super::ApiError;
use crate::domain::provider::ProviderSpec;
use crate::domain::user::{NewCredential, UserCommand};
use crate::domain::{CredentialId, CredentialStatus, DomainEvent, ExchangeId, Provider, Timestamp};
use crate::ledger::Ledger;
use crate::store::views::{self, CredentialView};

/// How long exchanges stay visible.
pub const EVENTS_WINDOW_DAYS: i64 = 30;

/// What the provider said about the current token.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenMetadata {
    /// The scopes granted to the token.
    pub scopes: Vec<String>,
}

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

/// The typed response body of a stored credential.
pub fn body<R: DeserializeOwned>(view: &CredentialView) -> Result<R, ApiError> {
    let scopes = view
        .fields
        .get("scopes")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let mut object = Map::new();
    object.insert("id".into(), json!(view.id));
    object.insert("status".into(), json!(view.status));
    object.insert("createdTime".into(), json!(view.created_at));
    object.insert("tokenMetadata".into(), json!({ "scopes": scopes }));
    object.insert("scopes".into(), scopes);
    object.extend(view.fields.clone());
    serde_json::from_value(Value::Object(object)).map_err(|e| {
        ApiError::Internal(format!(
            "stored {:?} credential does not fit its schema: {e}",
            view.provider
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

pub async fn get(
    ledger: &Ledger,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    provider: Provider,
) -> Result<CredentialView, ApiError> {
    ledger
        .store()
        .read(move |conn| views::credential_of(conn, owner, user, provider))
        .await?
        .ok_or_else(|| no_credential(provider))
}

/// `get`, with the secret fields decrypted (for answers that show them).
pub async fn get_open(
    ledger: &Ledger,
    owner: Owner,
    user: LeafUserId,
    provider: Provider,
) -> Result<CredentialView, ApiError> {
    let view = get(ledger, owner, user, provider).await?;
    Ok(ledger.reveal(view)?)
}

pub async fn save(
    ledger: &Ledger,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    spec: &'static ProviderSpec,
    JsonBody(body): JsonBody,
    create_only: bool,
) -> Result<CredentialView, ApiError> {
    let fields = spec.validate(&body).map_err(ApiError::Validation)?;
    let mut credential = NewCredential {
        id: CredentialId::new(),
        provider: spec.provider,
        fields,
    };
    let data_key = ledger.seal_credential(&mut credential)?;
    let at = ledger.now();
    let recorded = ledger
        .execute_with_keys(
            user,
            UserCommand::SaveCredential {
                owner_id: owner,
                credential,
                create_only,
                at,
            },
            vec![data_key.clone()],
        )
        .await?;
    // Answer with what this request stored, even if a later one has replaced it since.
    let view = recorded
        .iter()
        .find_map(|r| match &r.event {
            DomainEvent::CredentialCreated {
                credential_id,
                provider,
                fields,
                created_at,
                ..
            }
            | DomainEvent::CredentialReplaced {
                credential_id,
                provider,
                fields,
                created_at,
                ..
            } => Some(CredentialView {
                id: *credential_id,
                user_id: user,
                provider: *provider,
                status: CredentialStatus::Ok,
                fields: fields.clone(),
                created_at: *created_at,
                data_key: Some(data_key.clone()),
            }),
            _ => None,
        })
        .ok_or_else(|| ApiError::Internal("saving a credential recorded no credential".into()))?;
    Ok(ledger.reveal(view)?)
}

pub async fn delete(
    ledger: &Ledger,
    Owner(owner): Owner,
    LeafUserId(user): LeafUserId,
    provider: Provider,
) -> Result<(), ApiError> {
    ledger
        .execute(
            user,
            UserCommand::DeleteCredential {
                owner_id: owner,
                provider,
            },
        )
        .await?;
    Ok(())
}

pub async fn events(
    ledger: &Ledger,
    owner: Owner,
    user: LeafUserId,
    provider: Provider,
) -> Result<Vec<ProviderEvent>, ApiError> {
    let (Owner(owner), LeafUserId(user)) = (owner, user);
    let since = ledger
        .now()
        .minus(chrono::Duration::days(EVENTS_WINDOW_DAYS));
    // One read: the credential and its log come from the same snapshot.
    let exchanges = ledger
        .store()
        .read(move |conn| {
            views::credential_of(conn, owner, user, provider)?
                .map(|credential| views::exchanges_of(conn, credential.id, since))
                .transpose()
        })
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
    ledger: &Ledger,
    owner: Owner,
    user: LeafUserId,
    provider: Provider,
) -> Result<CredentialStatus, ApiError> {
    let now = ledger.now();
    // Concurrent requests all want the same thing: a lost race is decided again, not a 409.
    ledger
        .execute_idempotent(
            user.0,
            UserCommand::RequestCheck {
                owner_id: owner.0,
                provider,
                now,
            },
        )
        .await?;
    Ok(get(ledger, owner, user, provider).await?.status)
}
