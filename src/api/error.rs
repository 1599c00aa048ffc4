//! The one error type every route answers with, rendered as Leaf's (JHipster's) problem+json.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use crate::domain::owner::OwnerError;
use crate::domain::user::UserError;
use crate::domain::FieldError;
use crate::ledger::LedgerError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";
const WITH_MESSAGE: &str = "https://www.jhipster.tech/problem/problem-with-message";
const CONSTRAINT_VIOLATION: &str = "https://www.jhipster.tech/problem/constraint-violation";

/// An error, as `application/problem+json` (RFC 7807 in JHipster's form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "https://www.jhipster.tech/problem/problem-with-message",
    "title": "Not Found",
    "status": 404,
    "detail": "the user has no Raven credentials",
    "path": "/services/usermanagement/api/users/3fa85f64-5717-4562-b3fc-2c963f66afa6/raven-credentials",
    "message": "error.http.404"
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A message key: `error.http.<status>` or `error.validation`.
    pub message: String,
    /// One entry per bad or missing field (validation errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid request body")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: Method, allow: Vec<Method> },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many {what}; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64, what: String },
    #[error("storage is unavailable, try again")]
    Unavailable,
    /// Our fault. The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
    /// Any other status an actix-web extractor or middleware produced.
    #[error("{1}")]
    Other(StatusCode, String),
}

impl ApiError {
    /// Wraps an error that actix-web itself produced, keeping its status.
    pub fn from_actix(error: &actix_web::Error) -> ApiError {
        let status = error.as_response_error().status_code();
        let text = error.to_string();
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
            StatusCode::NOT_FOUND => ApiError::NotFound(text),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
            s if s.is_server_error() => ApiError::Internal(text),
            s => ApiError::Other(s, text),
        }
    }

    pub fn problem(&self, path: Option<&str>) -> Problem {
        let status = self.status_code();
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let detail = match self {
            ApiError::Internal(_) => Some("internal error".to_owned()),
            ApiError::Validation(errors) => Some(
                errors
                    .iter()
                    .map(|e| format!("{}.{}: {}", e.object_name, e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => Some(other.to_string()),
        };
        let path = path.map(str::to_owned);
        match self {
            ApiError::Validation(errors) => Problem {
                problem_type: CONSTRAINT_VIOLATION.to_owned(),
                title: "Method argument not valid".to_owned(),
                status: status.as_u16(),
                detail,
                path,
                message: "error.validation".to_owned(),
                field_errors: Some(errors.clone()),
            },
            _ => Problem {
                problem_type: WITH_MESSAGE.to_owned(),
                title,
                status: status.as_u16(),
                detail,
                path,
                message: format!("error.http.{}", status.as_u16()),
                field_errors: None,
            },
        }
    }

    /// The response, with the request path when it is known.
    pub fn render(&self, path: Option<&str>) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(cause = %cause, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                let allow: Vec<&str> = allow.iter().map(Method::as_str).collect();
                response.insert_header((header::ALLOW, allow.join(", ")));
            }
            ApiError::Unavailable => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.problem(path)).unwrap_or_default())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Other(status, _) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.render(None)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => {
                ApiError::Conflict("a concurrent request changed this resource first; retry".into())
            }
            StoreError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "storage unavailable");
                ApiError::Unavailable
            }
            StoreError::Corrupt(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        let text = error.to_string();
        match error {
            UserError::UserNotFound | UserError::NoCredential(_) => ApiError::NotFound(text),
            UserError::CredentialExists(_) => ApiError::PreconditionFailed(text),
            UserError::UserExists | UserError::StaleCredential => ApiError::Conflict(text),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::User(e) => e.into(),
            LedgerError::Store(e) => e.into(),
            LedgerError::Owner(OwnerError::Exists) => ApiError::Conflict("username taken".into()),
            LedgerError::Owner(OwnerError::Unknown) => {
                ApiError::Unauthorized("unknown owner".into())
            }
            LedgerError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// Example problems for the OpenAPI document, rendered by `ApiError` itself.
pub mod examples {
    use super::ApiError;
    use crate::domain::FieldError;
    use serde_json::Value;

    const PATH: &str =
        "/services/usermanagement/api/users/3fa85f64-5717-4562-b3fc-2c963f66afa6/john-deere-credentials";

    fn render(error: ApiError) -> Value {
        serde_json::to_value(error.problem(Some(PATH))).unwrap_or_default()
    }

    pub fn bad_request() -> Value {
        render(ApiError::Validation(vec![
            FieldError::new("johnDeereCredentials", "clientKey", "NotNull"),
            FieldError::new("johnDeereCredentials", "clientEnvironment", "Pattern"),
        ]))
    }
    pub fn bad_parameter() -> Value {
        render(ApiError::BadRequest(
            "path parameter `leafUserId` must be a UUID".into(),
        ))
    }
    pub fn unauthorized() -> Value {
        render(ApiError::Unauthorized(
            "the bearer token is unknown or expired".into(),
        ))
    }
    pub fn not_found() -> Value {
        render(ApiError::NotFound(
            "the user has no John Deere credentials".into(),
        ))
    }
    pub fn conflict() -> Value {
        render(ApiError::Conflict(
            "a concurrent request changed this resource first; retry".into(),
        ))
    }
    pub fn precondition_failed() -> Value {
        render(ApiError::PreconditionFailed(
            "the user already has John Deere credentials".into(),
        ))
    }
    pub fn payload_too_large() -> Value {
        render(ApiError::PayloadTooLarge(
            "the body is larger than 65536 bytes".into(),
        ))
    }
    pub fn unsupported_media_type() -> Value {
        render(ApiError::UnsupportedMediaType(
            "the body must be application/json, not text/plain".into(),
        ))
    }
    pub fn too_many_requests() -> Value {
        render(ApiError::TooManyRequests {
            retry_after_secs: 1,
            what: "requests".into(),
        })
    }
    pub fn unavailable() -> Value {
        render(ApiError::Unavailable)
    }
}

// The error answers each kind of route can give, for the OpenAPI document.

#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ReadErrors {
    /// A path or query parameter is malformed (e.g. not a UUID).
    #[response(status = 400, content_type = "application/problem+json", example = json!(examples::bad_parameter()))]
    BadRequest(Problem),
    /// The bearer token is missing, unknown or expired.
    #[response(status = 401, content_type = "application/problem+json", example = json!(examples::unauthorized()))]
    Unauthorized(Problem),
    /// No such user or credentials (another owner's ids answer the same).
    #[response(status = 404, content_type = "application/problem+json", example = json!(examples::not_found()))]
    NotFound(Problem),
    /// Too many requests from this owner; retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", example = json!(examples::too_many_requests()))]
    TooManyRequests(Problem),
    /// Storage is unavailable; retry.
    #[response(status = 503, content_type = "application/problem+json", example = json!(examples::unavailable()))]
    Unavailable(Problem),
}

#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum DeleteErrors {
    /// A path parameter is malformed (e.g. not a UUID).
    #[response(status = 400, content_type = "application/problem+json", example = json!(examples::bad_parameter()))]
    BadRequest(Problem),
    /// The bearer token is missing, unknown or expired.
    #[response(status = 401, content_type = "application/problem+json", example = json!(examples::unauthorized()))]
    Unauthorized(Problem),
    /// No such user or credentials (another owner's ids answer the same).
    #[response(status = 404, content_type = "application/problem+json", example = json!(examples::not_found()))]
    NotFound(Problem),
    /// A concurrent request changed the same user first; retry.
    #[response(status = 409, content_type = "application/problem+json", example = json!(examples::conflict()))]
    Conflict(Problem),
    /// Too many requests from this owner; retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", example = json!(examples::too_many_requests()))]
    TooManyRequests(Problem),
    /// Storage is unavailable; retry.
    #[response(status = 503, content_type = "application/problem+json", example = json!(examples::unavailable()))]
    Unavailable(Problem),
}

#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// Malformed JSON or parameters, or invalid fields (listed in `fieldErrors`).
    #[response(status = 400, content_type = "application/problem+json", example = json!(examples::bad_request()))]
    BadRequest(Problem),
    /// The bearer token is missing, unknown or expired.
    #[response(status = 401, content_type = "application/problem+json", example = json!(examples::unauthorized()))]
    Unauthorized(Problem),
    /// No such user (another owner's ids answer the same).
    #[response(status = 404, content_type = "application/problem+json", example = json!(examples::not_found()))]
    NotFound(Problem),
    /// A concurrent request changed the same user first; retry.
    #[response(status = 409, content_type = "application/problem+json", example = json!(examples::conflict()))]
    Conflict(Problem),
    /// The body is larger than the limit.
    #[response(status = 413, content_type = "application/problem+json", example = json!(examples::payload_too_large()))]
    PayloadTooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json", example = json!(examples::unsupported_media_type()))]
    UnsupportedMediaType(Problem),
    /// Too many requests from this owner; retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", example = json!(examples::too_many_requests()))]
    TooManyRequests(Problem),
    /// Storage is unavailable; retry.
    #[response(status = 503, content_type = "application/problem+json", example = json!(examples::unavailable()))]
    Unavailable(Problem),
}

#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum CreateErrors {
    /// Malformed JSON or parameters, or invalid fields (listed in `fieldErrors`).
    #[response(status = 400, content_type = "application/problem+json", example = json!(examples::bad_request()))]
    BadRequest(Problem),
    /// The bearer token is missing, unknown or expired.
    #[response(status = 401, content_type = "application/problem+json", example = json!(examples::unauthorized()))]
    Unauthorized(Problem),
    /// No such user (another owner's ids answer the same).
    #[response(status = 404, content_type = "application/problem+json", example = json!(examples::not_found()))]
    NotFound(Problem),
    /// A concurrent request changed the same user first; retry.
    #[response(status = 409, content_type = "application/problem+json", example = json!(examples::conflict()))]
    Conflict(Problem),
    /// `If-None-Match: *` was sent and credentials already exist.
    #[response(status = 412, content_type = "application/problem+json", example = json!(examples::precondition_failed()))]
    PreconditionFailed(Problem),
    /// The body is larger than the limit.
    #[response(status = 413, content_type = "application/problem+json", example = json!(examples::payload_too_large()))]
    PayloadTooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json", example = json!(examples::unsupported_media_type()))]
    UnsupportedMediaType(Problem),
    /// Too many requests from this owner; retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", example = json!(examples::too_many_requests()))]
    TooManyRequests(Problem),
    /// Storage is unavailable; retry.
    #[response(status = 503, content_type = "application/problem+json", example = json!(examples::unavailable()))]
    Unavailable(Problem),
}
