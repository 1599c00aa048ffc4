//! The one error type every route answers with, rendered as Leaf's (JHipster's) problem+json.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use crate::app::AppError;
use crate::domain::owner::OwnerError;
use crate::domain::user::UserError;
use crate::domain::FieldError;
use crate::store::StoreError;
use crate::telemetry::chain;

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
    /// Our fault. The cause is logged with its chain, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
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
            s if s.is_server_error() => ApiError::Internal(anyhow::anyhow!(text)),
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
            tracing::error!(cause = format!("{cause:#}"), "internal error");
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
            // Only a precondition the client stated can lose a race for good; commands decide
            // again after a lost one (`app::commands`), so this is not reached by them.
            StoreError::Conflict { .. } => {
                ApiError::Conflict("a concurrent request changed this resource first; retry".into())
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(cause = %chain(&error), "storage unavailable");
                ApiError::Unavailable
            }
            StoreError::Corrupt(_)
            | StoreError::Failed(_)
            | StoreError::InUse(_)
            | StoreError::Fenced => ApiError::Internal(anyhow::Error::new(error)),
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
            UserError::InvalidProfile => ApiError::BadRequest(text),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::User(e) => e.into(),
            AppError::Store(e) => e.into(),
            AppError::Owner(OwnerError::Exists) => ApiError::Conflict("username taken".into()),
            AppError::Owner(OwnerError::Unknown) => ApiError::Unauthorized("unknown owner".into()),
            AppError::Internal(cause) => ApiError::Internal(cause),
            AppError::Busy(what) => ApiError::TooManyRequests {
                retry_after_secs: 1,
                what: what.to_owned(),
            },
        }
    }
}

/// The error answers routes document, each once: its status, what it means there, and an
/// example problem rendered by `ApiError` itself.
struct Documented {
    status: u16,
    description: &'static str,
    example: fn() -> ApiError,
}

const PATH: &str =
    "/services/usermanagement/api/users/3fa85f64-5717-4562-b3fc-2c963f66afa6/john-deere-credentials";

const BAD_PARAMETER: Documented = Documented {
    status: 400,
    description: "A path or query parameter is malformed (e.g. not a UUID).",
    example: || ApiError::BadRequest("path parameter `leafUserId` must be a UUID".into()),
};
const BAD_PATH_PARAMETER: Documented = Documented {
    description: "A path parameter is malformed (e.g. not a UUID).",
    ..BAD_PARAMETER
};
const BAD_REQUEST: Documented = Documented {
    status: 400,
    description: "Malformed JSON or parameters, or invalid fields (listed in `fieldErrors`).",
    example: || {
        ApiError::Validation(vec![
            FieldError::new("johnDeereCredentials", "clientKey", "NotNull"),
            FieldError::new("johnDeereCredentials", "clientEnvironment", "Pattern"),
        ])
    },
};
const UNAUTHORIZED: Documented = Documented {
    status: 401,
    description: "The bearer token is missing, unknown or expired.",
    example: || ApiError::Unauthorized("the bearer token is unknown or expired".into()),
};
const NOT_FOUND: Documented = Documented {
    status: 404,
    description: "No such user or credentials (another owner's ids answer the same).",
    example: || ApiError::NotFound("the user has no John Deere credentials".into()),
};
const NO_USER: Documented = Documented {
    description: "No such user (another owner's ids answer the same).",
    ..NOT_FOUND
};
const PRECONDITION_FAILED: Documented = Documented {
    status: 412,
    description: "`If-None-Match: *` was sent and credentials already exist.",
    example: || ApiError::PreconditionFailed("the user already has John Deere credentials".into()),
};
const PAYLOAD_TOO_LARGE: Documented = Documented {
    status: 413,
    description: "The body is larger than the limit.",
    example: || ApiError::PayloadTooLarge("the body is larger than 65536 bytes".into()),
};
const UNSUPPORTED_MEDIA_TYPE: Documented = Documented {
    status: 415,
    description: "The body is not JSON.",
    example: || {
        ApiError::UnsupportedMediaType("the body must be application/json, not text/plain".into())
    },
};
const TOO_MANY_REQUESTS: Documented = Documented {
    status: 429,
    description: "Too many requests from this owner; retry after `Retry-After` seconds.",
    example: || ApiError::TooManyRequests {
        retry_after_secs: 1,
        what: "requests".into(),
    },
};
const UNAVAILABLE: Documented = Documented {
    status: 503,
    description: "Storage is unavailable; retry.",
    example: || ApiError::Unavailable,
};

fn responses(documented: &[Documented]) -> BTreeMap<String, RefOr<Response>> {
    documented
        .iter()
        .map(|d| {
            let example = serde_json::to_value((d.example)().problem(Some(PATH))).ok();
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .example(example)
                .build();
            let response = ResponseBuilder::new()
                .description(d.description)
                .content(PROBLEM_JSON, content)
                .build();
            (d.status.to_string(), response.into())
        })
        .collect()
}

/// Declares a set of documented error answers for the OpenAPI document.
macro_rules! error_answers {
    ($($(#[doc = $doc:literal])* $name:ident: [$($documented:ident),* $(,)?];)*) => {$(
        $(#[doc = $doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                responses(&[$($documented),*])
            }
        }
    )*};
}

error_answers! {
    /// What a read can answer besides its success.
    ReadErrors: [BAD_PARAMETER, UNAUTHORIZED, NOT_FOUND, TOO_MANY_REQUESTS, UNAVAILABLE];
    /// What a delete (or a body-less write) can answer besides its success.
    DeleteErrors: [BAD_PATH_PARAMETER, UNAUTHORIZED, NOT_FOUND, TOO_MANY_REQUESTS, UNAVAILABLE];
    /// What a write with a body can answer besides its success.
    WriteErrors: [
        BAD_REQUEST, UNAUTHORIZED, NO_USER, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE,
        TOO_MANY_REQUESTS, UNAVAILABLE,
    ];
    /// What a credential's creation can answer besides its success.
    CreateErrors: [
        BAD_REQUEST, UNAUTHORIZED, NO_USER, PRECONDITION_FAILED, PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE, TOO_MANY_REQUESTS, UNAVAILABLE,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_is_a_500_with_its_cause_and_an_unavailable_store_a_503_to_retry() {
        let cause = std::io::Error::other("UNIQUE constraint failed: data_keys.credential_id");
        let failed = ApiError::from(StoreError::Failed(std::sync::Arc::new(cause)));
        assert_eq!(failed.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let chain = match &failed {
            ApiError::Internal(cause) => format!("{cause:#}"),
            other => panic!("{other:?}"),
        };
        assert!(chain.contains("UNIQUE constraint failed"), "{chain}");
        let response = failed.render(None);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());

        let busy = ApiError::from(StoreError::unavailable("database is locked"));
        assert_eq!(busy.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let retry = busy
            .render(None)
            .headers()
            .get(header::RETRY_AFTER)
            .cloned();
        assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    }
}
