//! HTTP: handlers, DTOs and the plumbing that makes every answer Leaf-shaped.

pub mod auth;
pub mod credentials;
pub mod error;
pub mod extract;
pub mod limits;
pub mod liveness;
pub mod openapi;
pub mod users;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use utoipa::openapi::OpenApi;

pub use error::{ApiError, CreateErrors, DeleteErrors, Problem, ReadErrors, WriteErrors};

/// Where Leaf's `usermanagement` API lives.
pub const BASE: &str = "/services/usermanagement/api";

/// Registers every endpoint; the OpenAPI document is collected from the same calls.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(auth::authenticate)
        .service(liveness::health)
        .service(
            utoipa_actix_web::scope(BASE)
                .configure(users::configure)
                .configure(credentials::configure),
        );
}

/// Every documented path and its methods, to tell 405 from 404.
pub struct RouteTable(Vec<(ResourceDef, Vec<Method>)>);

impl RouteTable {
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (Method::GET, item.get.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                ];
                let methods = methods
                    .into_iter()
                    .filter(|(_, has)| *has)
                    .map(|(m, _)| m)
                    .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(routes)
    }
}

/// Answers requests no route took: 405 with `Allow` when the path exists, else 404.
pub async fn not_routed(
    request: HttpRequest,
    routes: Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let path = request.path();
    Err(match routes.0.iter().find(|(def, _)| def.is_match(path)) {
        Some((_, allow)) => ApiError::MethodNotAllowed {
            method: request.method().clone(),
            allow: allow.clone(),
        },
        None => ApiError::NotFound(format!("no route for {path}")),
    })
}

/// Routes a path under the API base (or the login's) that ends in `/` as the same path
/// without it: Leaf's own published examples call `POST /users/` and `GET /users/`. Other
/// paths keep their slash (Swagger UI lives at `/swagger-ui/`).
pub async fn trim_trailing_slash(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use actix_web::http::uri::{PathAndQuery, Uri};
    let path = request.path();
    let trimmed = path.trim_end_matches('/');
    let under_base = trimmed
        .strip_prefix(BASE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let ours = under_base || trimmed == "/api/authenticate";
    if trimmed.len() < path.len() && ours {
        let mut parts = request.head().uri.clone().into_parts();
        let target = match parts.path_and_query.as_ref().and_then(|pq| pq.query()) {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(path_and_query) = PathAndQuery::try_from(target) {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                request.match_info_mut().get_mut().update(&uri);
                request.head_mut().uri = uri;
            }
        }
    }
    next.call(request).await
}

/// Most request headers accepted, and most bytes in all of them together (names and values).
/// Over either: 431 problem+json before any handler runs. actix-web's own parser answers a bare
/// 431 (no body) only beyond its limits: more than 96 headers, or a head over its buffer.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

fn oversized_headers(request: &ServiceRequest) -> Option<ApiError> {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES).then(|| {
        ApiError::Other(
            actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers are limited to {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes \
                 (this request: {} headers, {bytes} bytes)",
                headers.len()
            ),
        )
    })
}

/// Makes every error response, ours or the framework's, problem+json with the request path.
pub async fn problem_details(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = request.path().to_owned();
    if let Some(error) = oversized_headers(&request) {
        return Ok(request.into_response(error.render(Some(&path))));
    }
    let response = match next.call(request).await {
        Ok(response) => response,
        // Only a middleware fails this way; actix renders the error with `ApiError`'s
        // `error_response`, so it is still problem+json (without `path`).
        Err(error) if error.as_error::<ApiError>().is_some() => return Err(error),
        Err(error) => return Err(ApiError::from_actix(&error).into()),
    };
    let rendered = response
        .response()
        .error()
        .map(|error| match error.as_error::<ApiError>() {
            Some(api) => api.render(Some(&path)),
            None => ApiError::from_actix(error).render(Some(&path)),
        });
    Ok(match rendered {
        Some(problem) => response.into_response(problem),
        None => response.map_into_boxed_body(),
    })
}
