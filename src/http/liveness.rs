//! `GET /health`: liveness and readiness, no authentication.

use actix_web::web::Data;
use actix_web::{get, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Problem};
use crate::app::{AppError, Service};
use crate::store::StoreError;

/// The service is up and its database answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "UP"}))]
pub struct Health {
    /// `UP`.
    pub status: String,
}

#[utoipa::path(
    tag = "Health",
    operation_id = "health",
    summary = "Liveness and readiness",
    description = "200 while the service runs and its database answers; no authentication. 503 \
        when the database does not answer, or when a read has found it damaged.",
    responses(
        (status = 200, description = "Up, and the database answers", body = Health),
        (status = 503, description = "The database does not answer, or a read found it damaged",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/health")]
pub async fn health(service: Data<Service>) -> Result<HttpResponse, ApiError> {
    service.ping().await.map_err(|error| match error {
        AppError::Store(StoreError::Corrupt(what)) => {
            tracing::error!(%what, "the database is damaged");
            ApiError::Other(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("the database is damaged: {what}"),
            )
        }
        other => other.into(),
    })?;
    Ok(HttpResponse::Ok().json(Health {
        status: "UP".into(),
    }))
}
