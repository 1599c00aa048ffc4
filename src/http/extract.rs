//! Extractors that turn every client mistake into an `ApiError` (and so into problem+json).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::future::{ready, Ready};

use super::ApiError;
use crate::app::Service;
use crate::domain::{OwnerId, UserId};

/// The API owner a valid bearer token belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Owner(pub OwnerId);

impl FromRequest for Owner {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let service = req.app_data::<Data<Service>>().cloned();
        let limits = req.app_data::<Data<super::limits::Limiters>>().cloned();
        Box::pin(async move {
            let service = service
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no service configured")))?;
            let token = token.ok_or_else(|| {
                ApiError::Unauthorized(
                    "an `Authorization: Bearer <token>` header is required".into(),
                )
            })?;
            match service.authenticate(&token).await? {
                Some(owner) => {
                    if let Some(limits) = &limits {
                        limits.check_owner(owner)?;
                    }
                    Ok(Owner(owner))
                }
                None => Err(ApiError::Unauthorized(
                    "the bearer token is unknown or expired".into(),
                )),
            }
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The Leaf user id in the path (`{leafUserId}` or `{id}`).
#[derive(Clone, Copy, Debug)]
pub struct LeafUserId(pub UserId);

impl FromRequest for LeafUserId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let info = req.match_info();
        let (name, raw) = match (info.get("leafUserId"), info.get("id")) {
            (Some(raw), _) => ("leafUserId", raw),
            (None, Some(raw)) => ("id", raw),
            (None, None) => {
                return ready(Err(ApiError::Internal(anyhow::anyhow!(
                    "route has no user id"
                ))))
            }
        };
        ready(
            raw.parse().map(LeafUserId).map_err(|_| {
                ApiError::BadRequest(format!("path parameter `{name}` must be a UUID"))
            }),
        )
    }
}

/// How long a client may take to send a body (`ConnectionLimits::request_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub std::time::Duration);

/// A JSON request body, not yet validated. Accepts `application/json` and `+json` types; a
/// missing content type; and, for curl's `-d` without `-H 'Content-Type: …'` (as in Leaf's own
/// examples), a form content type whose body is JSON. Anything else is 415.
#[derive(Debug)]
pub struct JsonBody(pub serde_json::Value);

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        // actix-web decodes gzip (the one coding it is built with); any other would be read
        // as if it were plain.
        let coding = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let bytes = Bytes::from_request(req, payload);
        let timeout = req
            .app_data::<Data<BodyTimeout>>()
            .map_or(std::time::Duration::from_secs(10), |t| t.0);
        Box::pin(async move {
            if let Some(coding) =
                coding.filter(|c| !matches!(c.as_str(), "identity" | "gzip" | "x-gzip"))
            {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body's Content-Encoding `{coding}` is not supported (gzip or identity)"
                )));
            }
            // A body that stalls would hold its connection (a file descriptor) for ever.
            let bytes = tokio::time::timeout(timeout, bytes).await.map_err(|_| {
                ApiError::Other(
                    actix_web::http::StatusCode::REQUEST_TIMEOUT,
                    format!("the body did not arrive within {} s", timeout.as_secs_f32()),
                )
            })?;
            let bytes = bytes.map_err(|e| match ApiError::from_actix(&e) {
                ApiError::PayloadTooLarge(_) => ApiError::PayloadTooLarge(format!(
                    "the body is larger than {} bytes",
                    crate::config::MAX_BODY_BYTES
                )),
                other => other,
            })?;
            let essence = content_type.as_deref().map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
            let acceptable = match essence.as_deref() {
                None | Some("application/json") => true,
                Some(ct) if ct.starts_with("application/") && ct.ends_with("+json") => true,
                Some("application/x-www-form-urlencoded") => {
                    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
                }
                _ => false,
            };
            if !acceptable {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body must be application/json, not {}",
                    content_type.as_deref().unwrap_or("?")
                )));
            }
            serde_json::from_slice::<Strict>(&bytes)
                .map(|Strict(value)| JsonBody(value))
                .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
        })
    }
}

/// JSON as `serde_json::Value`, except that an object naming a member twice is refused rather
/// than keeping the last one (which one a client meant is anyone's guess).
struct Strict(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the member `{key}` appears twice"
                )));
            }
            object.insert(key, value);
        }
        Ok(object.into())
    }
}
