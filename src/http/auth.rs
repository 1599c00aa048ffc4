//! `POST /api/authenticate`: an API owner logs in and gets a bearer token.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::limits::Limiters;
use super::{ApiError, Problem};
use crate::app::Service;
use crate::domain::fields::{validate_object, FieldKind, FieldSpec};

pub const LOGIN_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("username", true, FieldKind::Plain),
    FieldSpec::new("password", true, FieldKind::Secret),
    FieldSpec::new("remember_me", false, FieldKind::Boolean),
];

/// An API owner's login.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"username": "admin", "password": "your-password", "rememberMe": false}))]
pub struct LoginRequest {
    /// The API owner's username.
    pub username: String,
    /// The API owner's password.
    pub password: String,
    /// Keep the token for 30 days instead of 24 hours.
    #[serde(default)]
    pub remember_me: Option<bool>,
}

/// A bearer token for `Authorization: Bearer <id_token>`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id_token": "6f1c0e…"}))]
pub struct IdToken {
    /// The bearer token; send it as `Authorization: Bearer <id_token>`.
    pub id_token: String,
}

#[utoipa::path(
    tag = "Authentication",
    operation_id = "authenticate",
    summary = "Log in",
    description = "Checks an API owner's username and password and returns a bearer token that \
        lives 24 hours (30 days with `rememberMe`). The token is also in the `Authorization` header.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = IdToken),
        (status = 400, description = "Malformed JSON or missing fields", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = Problem,
            content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Too many login attempts from this client (for this username, or in all), or too many password checks waiting; retry after `Retry-After` seconds",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage is unavailable; retry", body = Problem,
            content_type = "application/problem+json"),
    ),
)]
#[post("/api/authenticate")]
pub async fn authenticate(
    request: actix_web::HttpRequest,
    limits: Data<Limiters>,
    service: Data<Service>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let fields =
        validate_object("loginVM", LOGIN_FIELDS, &body, &[]).map_err(ApiError::Validation)?;
    let login: LoginRequest =
        // Not serde's message: it may quote the password.
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "a validated login does not parse ({:?} error)",
                e.classify()
            ))
        })?;
    // The connection's own address (a proxy in front makes every client one address: raise
    // `--login-client-rate` then).
    let client = request
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    limits.check_login(client, &login.username)?;
    let token = service
        .login(
            &login.username,
            &login.password,
            login.remember_me.unwrap_or(false),
        )
        .await?
        .ok_or_else(|| ApiError::Unauthorized("bad credentials".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
        .json(IdToken { id_token: token }))
}
