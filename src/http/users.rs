//! `/users`: the API owner's Leaf users.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{delete, get, patch, post, put, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::RefBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::extract::{JsonBody, LeafUserId, Owner};
use super::{ApiError, DeleteErrors, ReadErrors, WriteErrors};
use crate::app::Service;
use crate::domain::event::{with_profile_fields, UserProfile, PROFILE};
use crate::domain::fields::{validate_object, FieldError, FieldKind, FieldSpec};
use crate::domain::provider::ProviderSpec;
use crate::domain::user::UserCommand;
use crate::domain::{Provider, Timestamp, UserId};
use crate::store::{CredentialView, SortBy, UserQuery, UserSortKey, UserView};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
const OBJECT: &str = "leafUser";

/// The credentials a Leaf user holds, one object per provider it has: each provider's typed
/// answer under its object name (written once for every provider, from their specs).
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct UserCredentials(Map<String, Value>);

impl UserCredentials {
    pub fn from_views(views: &[CredentialView]) -> Result<Self, ApiError> {
        let mut all = Map::new();
        for view in views {
            let answer = super::credentials::body(view)?;
            all.insert(view.provider.spec().object_name.to_owned(), answer);
        }
        Ok(Self(all))
    }
}

/// Credentials to attach while creating a Leaf user, one object per provider (for the
/// document: `create_user` validates each against its provider's spec).
#[derive(Debug, Serialize)]
pub struct UserCredentialsRequest;

/// An object with one property per provider, named by its object name, made by `property`.
fn per_provider(
    description: &str,
    property: impl Fn(&ProviderSpec) -> RefOr<Schema>,
) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new().description(Some(description));
    for provider in Provider::ALL {
        object = object.property(provider.spec().object_name, property(provider.spec()));
    }
    object.into()
}

impl PartialSchema for UserCredentials {
    fn schema() -> RefOr<Schema> {
        per_provider(
            "The credentials a Leaf user holds, one object per provider it has.",
            |spec| {
                RefBuilder::new()
                    .ref_location_from_schema_name(spec.response_schema)
                    .description(Some(
                        "The user's credentials for this provider, if it has them.",
                    ))
                    .build()
                    .into()
            },
        )
    }
}

impl ToSchema for UserCredentials {}

impl PartialSchema for UserCredentialsRequest {
    fn schema() -> RefOr<Schema> {
        per_provider(
            "Credentials to attach while creating a Leaf user, one object per provider.",
            |spec| {
                OneOfBuilder::new()
                    .item(Ref::from_schema_name(spec.request_schema))
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .description(Some(
                        "Credentials for this provider, to attach with the new user.",
                    ))
                    .into()
            },
        )
    }
}

impl ToSchema for UserCredentialsRequest {}

with_profile_fields!(profile_struct! {
    /// A Leaf user, with the credentials it holds.
    #[derive(Debug, Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(example = example_user)]
    #[allow(dead_code)] // answers are built from the views (`leaf_user`); this is their schema
    pub struct LeafUser {
        /// The Leaf user's id.
        pub id: UserId,
    } {
        /// When the user was created.
        pub created_time: Timestamp,
        #[serde(flatten)]
        pub credentials: UserCredentials,
    }
});

with_profile_fields!(profile_struct! {
    /// A new Leaf user, optionally with credentials to attach at once.
    #[derive(Debug, Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(example = json!({"name": "Jane Grower", "email": "jane@example.com", "externalId": "grower-42"}))]
    #[allow(dead_code)] // `create_user` validates the body against the field specs
    pub struct CreateLeafUser {} {
        #[serde(flatten)]
        pub credentials: UserCredentialsRequest,
    }
});

with_profile_fields!(profile_struct! {
    /// Profile fields to change: a field given as text is set, one given as null is cleared,
    /// and those left out keep their values. Credentials change through their own endpoints.
    #[derive(Debug, Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(example = json!({"phone": "+1 555 0100", "address": null}))]
    #[allow(dead_code)] // `patch_user` validates the body against the field specs
    pub struct PatchLeafUser {} {}
});

with_profile_fields!(profile_struct! {
    /// A Leaf user's new profile. Fields left out become null. Credentials change through their
    /// own endpoints: credential objects and `createdTime` in the body are ignored, so a user read
    /// with GET can be sent back as it is.
    #[derive(Debug, Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(example = json!({"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "Jane Grower", "email": "jane@example.com"}))]
    #[allow(dead_code)] // `update_user` validates the body against the field specs
    pub struct UpdateLeafUser {
        /// The id of the user to update.
        pub id: UserId,
    } {}
});

/// Paging and filters of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct ListUsersParams {
    /// Page number, from 0.
    #[param(minimum = 0, maximum = 2147483647)]
    pub page: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<i64>,
    /// Only users with exactly this email (at most 256 characters).
    pub email: Option<String>,
    /// Only users with exactly this name (at most 256 characters).
    pub name: Option<String>,
    /// Only users with exactly this external id (at most 256 characters).
    pub external_id: Option<String>,
}

/// The longest filter value, in characters (also written into the OpenAPI document). The
/// filters are repeated in the four links of the `Link` header, percent-encoded: this keeps that
/// header under the 64 KiB line that common HTTP clients accept.
pub const MAX_FILTER_CHARS: usize = 256;
/// The user list's filters, by their query names.
pub const FILTERS: [&str; 3] = ["email", "name", "externalId"];

/// An example user holding John Deere credentials.
pub fn example_user() -> Value {
    serde_json::json!({
        "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "name": "Jane Grower",
        "email": "jane@example.com",
        "phone": "+1 555 0100",
        "address": "1 Farm Road, Ames, IA",
        "externalId": "grower-42",
        "createdTime": "2026-11-22T14:03:07.123456Z",
        "johnDeereCredentials": crate::domain::providers::john_deere::example(),
    })
}

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_user)
        .service(list_users)
        .service(get_user)
        .service(update_user)
        .service(patch_user)
        .service(delete_user);
}

/// A user as `LeafUser` shows it: its id, its profile, when it was created, its credentials.
fn leaf_user(view: UserView) -> Result<Value, ApiError> {
    let mut user = Map::new();
    user.insert("id".into(), serde_json::json!(view.id));
    match serde_json::to_value(&view.profile) {
        Ok(Value::Object(profile)) => user.extend(profile),
        _ => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a profile is not an object"
            )))
        }
    }
    user.insert("createdTime".into(), serde_json::json!(view.created_at));
    user.extend(UserCredentials::from_views(&view.credentials)?.0);
    Ok(Value::Object(user))
}

/// The fields of `PUT /users` (the id, then the profile) and those it ignores (read-only parts
/// of a user read with GET).
static UPDATE_FIELDS: std::sync::LazyLock<(Vec<FieldSpec>, Vec<&'static str>)> =
    std::sync::LazyLock::new(|| {
        let id = FieldSpec::new("id", true, FieldKind::Plain);
        let fields = std::iter::once(id).chain(PROFILE.iter().copied()).collect();
        let ignored = credential_objects()
            .map(|(_, name)| name)
            .chain(["createdTime"])
            .collect();
        (fields, ignored)
    });

fn credential_objects() -> impl Iterator<Item = (Provider, &'static str)> {
    Provider::ALL.iter().map(|p| (*p, p.spec().object_name))
}

fn profile(fields: serde_json::Map<String, Value>) -> Result<UserProfile, ApiError> {
    serde_json::from_value(Value::Object(fields)).map_err(|e| {
        ApiError::Internal(anyhow::Error::new(e).context("a validated profile does not parse"))
    })
}

async fn read_user(service: &Service, owner: Owner, user: UserId) -> Result<Value, ApiError> {
    let view = service
        .user(owner.0, user)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    leaf_user(view)
}

#[utoipa::path(
    tag = "Users",
    operation_id = "create_user",
    summary = "Create a Leaf user",
    description = "Creates a Leaf user, optionally with provider credentials \
        (`johnDeereCredentials`, `ravenCredentials`, …) attached at once.",
    request_body = CreateLeafUser,
    responses((status = 201, description = "The new user", body = LeafUser), WriteErrors),
    security(("bearer" = [])),
)]
#[post("/users")]
pub async fn create_user(
    owner: Owner,
    service: Data<Service>,
    request: HttpRequest,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let objects: Vec<&str> = credential_objects().map(|(_, name)| name).collect();
    let mut errors: Vec<FieldError> = Vec::new();
    let fields = validate_object(OBJECT, PROFILE, &body, &objects).unwrap_or_else(|e| {
        errors.extend(e);
        Default::default()
    });
    let mut credentials = Vec::new();
    for (provider, name) in credential_objects() {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(object) => match provider.spec().validate(object) {
                Ok(fields) => credentials.push((provider, fields)),
                Err(e) => errors.extend(e),
            },
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let user_id = service
        .create_user(owner.0, profile(fields)?, credentials)
        .await?;
    let user = read_user(&service, owner, user_id).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("{}/{}", request.path(), user_id)))
        .json(user))
}

#[utoipa::path(
    tag = "Users",
    operation_id = "list_users",
    summary = "List Leaf users",
    description = "The owner's Leaf users, oldest first unless `sort` says otherwise, one page at a \
        time. `X-Total-Count` holds the number of matching users and `Link` the first, previous, \
        next and last pages.",
    params(
        ListUsersParams,
        ("sort" = Option<Vec<String>>, Query, style = Form, explode,
            description = "Sort keys, most significant first, as `property` or \
            `property,asc|desc` (Spring's form; `property,property,desc` sorts both descending); \
            repeatable. Properties: `id`, `name`, `email`, `phone`, `address`, `externalId`, \
            `createdTime`. Creation order breaks ties."),
    ),
    responses(
        (status = 200, description = "One page of users", body = Vec<LeafUser>,
            headers(
                ("X-Total-Count" = i64, description = "Users matching the filters"),
                ("Link" = String, description = "RFC 8288 links to the first, prev, next and last pages"),
            )),
        ReadErrors,
    ),
    security(("bearer" = [])),
)]
#[get("/users")]
pub async fn list_users(
    owner: Owner,
    service: Data<Service>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // `sort` may be repeated, which the one-value-per-name query parser refuses: it is read on
    // its own, the rest as usual.
    let (sorts, rest): (Vec<_>, Vec<_>) = form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .partition(|(name, _)| name == "sort");
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let params: ListUsersParams = serde_urlencoded::from_str(&rest)
        .map_err(|error| ApiError::BadRequest(format!("bad query parameters: {error}")))?;
    let sort = sort_keys(sorts.iter().map(|(_, value)| value.as_str()))?;
    let page = params.page.unwrap_or(0);
    let size = params.size.unwrap_or(i64::from(DEFAULT_PAGE_SIZE));
    // The documented range is that of a Java int, as on Leaf.
    let page = i32::try_from(page)
        .ok()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::BadRequest("`page` must be a whole number from 0 to 2147483647".into())
        })?;
    let size = u32::try_from(size)
        .ok()
        .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
        .ok_or_else(|| ApiError::BadRequest(format!("`size` must be from 1 to {MAX_PAGE_SIZE}")))?;
    for (name, value) in FILTERS
        .into_iter()
        .zip([&params.email, &params.name, &params.external_id])
    {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(ApiError::BadRequest(format!(
                "`{name}` may be at most {MAX_FILTER_CHARS} characters"
            )));
        }
    }
    let query = UserQuery {
        email: params.email,
        name: params.name,
        external_id: params.external_id,
        sort,
        page,
        size,
    };
    let link_query = query.clone();
    let (users, total) = service.users(owner.0, query).await?;
    let users = users
        .into_iter()
        .map(leaf_user)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .insert_header((header::LINK, page_links(request.path(), &link_query, total)))
        .json(users))
}

/// The JSON Schema `pattern` of one `sort` value, as `sort_keys` reads it.
pub fn sort_pattern() -> String {
    let names: Vec<&str> = UserSortKey::ALL.iter().map(|(n, _)| *n).collect();
    let property = format!("({})", names.join("|"));
    format!("^{property}(,{property})*(,([aA][sS][cC]|[dD][eE][sS][cC]))?$")
}

/// The sort keys of `sort` values (`property` or `property,…,asc|desc`, the direction in any
/// case). An empty value is ignored, as is a property named again (its first place counts).
fn sort_keys<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<SortBy>, ApiError> {
    let mut keys: Vec<SortBy> = Vec::new();
    for value in values.filter(|v| !v.is_empty()) {
        let mut parts: Vec<&str> = value.split(',').collect();
        let descending = match parts.last().map(|p| p.to_ascii_lowercase()) {
            Some(direction) if direction == "desc" || direction == "asc" => {
                parts.pop();
                direction == "desc"
            }
            _ => false,
        };
        if parts.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "`sort={value}` names no property"
            )));
        }
        for part in parts {
            let key = UserSortKey::named(part).ok_or_else(|| {
                let known: Vec<&str> = UserSortKey::ALL.iter().map(|(n, _)| *n).collect();
                ApiError::BadRequest(format!(
                    "users cannot be sorted by `{part}` (known: {})",
                    known.join(", ")
                ))
            })?;
            if !keys.iter().any(|k| k.key == key) {
                keys.push(SortBy { key, descending });
            }
        }
    }
    Ok(keys)
}

/// JHipster's `Link` header: first, prev, next and last pages, filters and order kept.
fn page_links(path: &str, query: &UserQuery, total: u64) -> String {
    let last = total.div_ceil(u64::from(query.size)).saturating_sub(1);
    let url = |page: u64| {
        let mut pairs = vec![("page", page.to_string()), ("size", query.size.to_string())];
        for (key, value) in [
            ("email", &query.email),
            ("name", &query.name),
            ("externalId", &query.external_id),
        ] {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        for sort in &query.sort {
            let direction = if sort.descending { "desc" } else { "asc" };
            pairs.push(("sort", format!("{},{direction}", sort.key.name())));
        }
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let page = u64::from(query.page);
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
    }
    if page > 0 {
        links.push(format!("<{}>; rel=\"prev\"", url((page - 1).min(last))));
    }
    links.push(format!("<{}>; rel=\"last\"", url(last)));
    links.push(format!("<{}>; rel=\"first\"", url(0)));
    links.join(",")
}

#[utoipa::path(
    tag = "Users",
    operation_id = "get_user",
    summary = "Get a Leaf user",
    description = "The user, with one credential object per provider it has credentials for.",
    params(("id" = uuid::Uuid, Path, description = "The Leaf user's id")),
    responses((status = 200, description = "The user", body = LeafUser), ReadErrors),
    security(("bearer" = [])),
)]
#[get("/users/{id}")]
pub async fn get_user(
    owner: Owner,
    user: LeafUserId,
    service: Data<Service>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(read_user(&service, owner, user.0).await?))
}

#[utoipa::path(
    tag = "Users",
    operation_id = "update_user",
    summary = "Update a Leaf user",
    description = "Replaces the profile of the user whose `id` is in the body.",
    request_body = UpdateLeafUser,
    responses((status = 200, description = "The updated user", body = LeafUser), WriteErrors),
    security(("bearer" = [])),
)]
#[put("/users")]
pub async fn update_user(
    owner: Owner,
    service: Data<Service>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let (fields, ignored) = &*UPDATE_FIELDS;
    let mut accepted =
        validate_object(OBJECT, fields, &body, ignored).map_err(ApiError::Validation)?;
    let user_id = accepted
        .remove("id")
        .and_then(|id| id.as_str().and_then(|id| id.parse::<UserId>().ok()))
        .ok_or_else(|| ApiError::Validation(vec![FieldError::new(OBJECT, "id", "Pattern")]))?;
    let updated = service
        .update_user(owner.0, user_id, profile(accepted)?)
        .await?;
    Ok(HttpResponse::Ok().json(leaf_user(updated)?))
}

#[utoipa::path(
    tag = "Users",
    operation_id = "patch_user",
    summary = "Change some of a Leaf user's profile",
    description = "Sets the profile fields given as text, clears those given as null, and leaves \
        the others (and the credentials) as they are. Not in Leaf's API: a Leaf client never \
        sends it.",
    params(("id" = uuid::Uuid, Path, description = "The Leaf user's id")),
    request_body = PatchLeafUser,
    responses((status = 200, description = "The user after the change", body = LeafUser), WriteErrors),
    security(("bearer" = [])),
)]
#[patch("/users/{id}")]
pub async fn patch_user(
    owner: Owner,
    user: LeafUserId,
    service: Data<Service>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    // Types and sizes as everywhere; then every named field is a change, a blank one a clear.
    let mut accepted =
        validate_object(OBJECT, PROFILE, &body, &[]).map_err(ApiError::Validation)?;
    let named: Vec<String> = body
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys().cloned())
        .collect();
    let changes = named
        .into_iter()
        .map(|name| {
            let value = accepted.remove(&name).unwrap_or(Value::Null);
            (name, value)
        })
        .collect();
    let patched = service.patch_user(owner.0, user.0, changes).await?;
    Ok(HttpResponse::Ok().json(leaf_user(patched)?))
}

#[utoipa::path(
    tag = "Users",
    operation_id = "delete_user",
    summary = "Delete a Leaf user",
    description = "Deletes the user and all its credentials and their events.",
    params(("id" = uuid::Uuid, Path, description = "The Leaf user's id")),
    responses((status = 204, description = "Deleted"), DeleteErrors),
    security(("bearer" = [])),
)]
#[delete("/users/{id}")]
pub async fn delete_user(
    owner: Owner,
    user: LeafUserId,
    service: Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let command = UserCommand::Delete { owner_id: owner.0 };
    service.execute(user.0, command).await?;
    Ok(HttpResponse::NoContent().finish())
}
