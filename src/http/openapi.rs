//! The OpenAPI document: collected from the handlers' annotations by the same registration
//! the server uses, so the live document, `credential-ledger openapi` and
//! `openapi/openapi.json` cannot disagree.

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::App;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;

use crate::domain::event::PROFILE;
use crate::domain::fields::{not_blank_pattern, FieldKind, FieldSpec, MAX_FIELD_LEN};
use crate::domain::Provider;
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "credential-ledger",
        description = "A self-hosted, Leaf-compatible provider-credential service: API owners log \
            in, create Leaf users and attach growers' machine-data credentials (John Deere, \
            AgLeader, Raven, …). Every change is an event in an append-only ledger.\n\n\
            Log in with `POST /api/authenticate`, then send `Authorization: Bearer <id_token>`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/", description = "This server")),
    modifiers(&BearerScheme, &ProviderTags),
    tags(
        (name = "Authentication", description = "API owners log in here"),
        (name = "Users", description = "Leaf users, each holding at most one credential per provider"),
        (name = "Health", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

struct BearerScheme;

/// One tag per provider, after `Users`, described from its spec.
struct ProviderTags;

impl Modify for ProviderTags {
    fn modify(&self, openapi: &mut Document) {
        let tags = openapi.tags.get_or_insert_with(Vec::new);
        let at = tags
            .iter()
            .position(|t| t.name == "Users")
            .map_or(0, |i| i + 1);
        let providers = Provider::ALL.iter().map(|p| {
            let spec = p.spec();
            TagBuilder::new()
                .name(spec.name)
                .description(Some(format!("{} credentials", spec.title)))
                .build()
        });
        tags.splice(at..at, providers);
    }
}

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `id_token` from `POST /api/authenticate`"))
                    .build(),
            ),
        );
    }
}

/// Registers every endpoint on `app` and returns it with the document collected from them.
pub fn register<T>(app: App<T>) -> (App<T>, Document)
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    let (app, mut document) = app
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::configure)
        .split_for_parts();
    // After collection: the request schemas exist only once the handlers are registered.
    Constraints.modify(&mut document);
    Links.modify(&mut document);
    (app, document)
}

/// Registers every endpoint on `app`, without building the document (built once at start,
/// rather than by every server worker: with fifteen providers it is over half a megabyte).
pub fn routes<T>(app: App<T>) -> App<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    app.into_utoipa_app()
        .configure(super::configure)
        .split_for_parts()
        .0
}

/// Where `serve` serves the document.
pub const DOCUMENT_PATH: &str = "/api-docs/openapi.json";

/// The document `serve` serves at `DOCUMENT_PATH`.
pub fn document() -> Document {
    register(App::new()).1
}

/// The document as written to `openapi/openapi.json`.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the validation rules of each request body (from the same field specs that validate
/// it) into its schema: required strings are non-blank, every string is bounded, and unknown
/// fields are refused. Clients and fuzzers then agree with the server on what is valid.
struct Constraints;

fn constrain(schema: &mut Value, fields: &[FieldSpec]) {
    for field in fields {
        let Some(property) = schema["properties"].get_mut(field.json_name()) else {
            continue;
        };
        if !field.echoed {
            property["writeOnly"] = json!(true);
        }
        if matches!(field.kind, FieldKind::Plain | FieldKind::Secret) {
            property["maxLength"] = json!(MAX_FIELD_LEN);
            if field.required {
                property["minLength"] = json!(1);
                property["pattern"] = json!(not_blank_pattern());
            }
        }
    }
    schema["additionalProperties"] = json!(false);
}

/// `allOf` of objects into one object, so `additionalProperties: false` can apply.
fn flatten_all_of(schema: &mut Value, schemas: &Value) {
    let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else {
        return;
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = match part["$ref"].as_str() {
            Some(reference) => {
                schemas[reference.trim_start_matches("#/components/schemas/")].clone()
            }
            None => part,
        };
        properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
        required.extend(part["required"].as_array().cloned().unwrap_or_default());
    }
    let object = schema.as_object_mut().expect("a schema is an object");
    object.remove("allOf");
    object.insert("type".into(), json!("object"));
    object.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        object.insert("required".into(), Value::Array(required));
    }
}

/// utoipa puts a nullable reference's description inside its `oneOf`, where Swagger UI and the
/// client generators do not look: lift it to the property.
fn lift_nullable_descriptions(schema: &mut Value) {
    for property in schema["properties"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        let description = property["oneOf"]
            .as_array_mut()
            .and_then(|choices| choices.first_mut())
            .and_then(Value::as_object_mut)
            .and_then(|reference| reference.remove("description"));
        if let Some(description) = description {
            property["description"] = description;
        }
    }
}

impl Modify for Constraints {
    fn modify(&self, openapi: &mut Document) {
        let Ok(mut doc) = serde_json::to_value(&*openapi) else {
            return;
        };
        lift_nullable_descriptions(&mut doc["components"]["schemas"]["UserCredentialsRequest"]);
        let schemas = doc["components"]["schemas"].clone();
        let all = &mut doc["components"]["schemas"];
        for provider in Provider::ALL {
            let spec = provider.spec();
            lift_nullable_descriptions(&mut all[spec.request_schema]);
            lift_nullable_descriptions(&mut all[spec.response_schema]);
            constrain(&mut all[spec.request_schema], spec.fields);
        }
        constrain(&mut all["LoginRequest"], super::auth::LOGIN_FIELDS);
        flatten_all_of(&mut all["CreateLeafUser"], &schemas);
        constrain(&mut all["CreateLeafUser"], PROFILE);
        // A user read with GET may be sent back: its read-only parts are accepted and ignored.
        let update = &mut all["UpdateLeafUser"];
        update["properties"]["createdTime"] =
            json!({"type": "string", "description": "Ignored (read-only)."});
        for provider in Provider::ALL {
            update["properties"][provider.spec().object_name] = json!({"type": "object", "description": "Ignored: credentials change through their own endpoints."});
        }
        constrain(update, PROFILE);
        constrain(&mut all["PatchLeafUser"], PROFILE);
        // `If-None-Match` means something only as `*`.
        for item in doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
        {
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                for parameter in operation["parameters"].as_array_mut().into_iter().flatten() {
                    if parameter["name"] == "If-None-Match" {
                        parameter["schema"] = json!({"type": "string", "enum": ["*"]});
                    }
                }
            }
        }
        // The user list's filters are bounded as `list_users` checks them.
        let list = &mut doc["paths"][format!("{}/users", super::BASE)]["get"];
        for parameter in list["parameters"].as_array_mut().into_iter().flatten() {
            if super::users::FILTERS.contains(&parameter["name"].as_str().unwrap_or("")) {
                parameter["schema"]["maxLength"] = json!(super::users::MAX_FILTER_CHARS);
            }
            if parameter["name"] == "sort" {
                parameter["schema"]["items"]["pattern"] = json!(super::users::sort_pattern());
            }
        }
        // Only this function's edits can fail to parse back: a bug that every test would hit.
        *openapi = serde_json::from_value(doc).expect("the constrained document is still OpenAPI");
    }
}

/// OpenAPI links from a new user to what can be done with it next: reading, updating and
/// deleting it, and attaching each provider's credentials. Swagger UI shows them, and stateful
/// fuzzers follow them. (A credential's answer holds no user id to link on: with links through
/// `$request.path.leafUserId`, schemathesis 4.32.5 followed none of the links at all.)
struct Links;

impl Links {
    fn operation_id(doc: &Value, path: &str, method: &str) -> String {
        doc["paths"][path][method]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has an operationId"))
            .to_owned()
    }

    fn link(operation_id: String, description: &str, parameters: Option<(&str, &str)>) -> Value {
        // utoipa reads `parameters` back only when present, even empty.
        let parameters = parameters.map_or(json!({}), |(name, value)| json!({name: value}));
        json!({"operationId": operation_id, "description": description, "parameters": parameters})
    }
}

impl Modify for Links {
    fn modify(&self, openapi: &mut Document) {
        let Ok(mut doc) = serde_json::to_value(&*openapi) else {
            return;
        };
        let users = &format!("{}/users", super::BASE);
        let user = format!("{users}/{{id}}");
        let new_user = ("id", "$response.body#/id");
        let mut from_user = json!({
            "GetUser": Self::link(Self::operation_id(&doc, &user, "get"), "Read the new user", Some(new_user)),
            "DeleteUser": Self::link(Self::operation_id(&doc, &user, "delete"), "Delete the new user", Some(new_user)),
        });
        let mut update = Self::link(
            Self::operation_id(&doc, users, "put"),
            "Update the new user (its id goes in the body)",
            None,
        );
        update["requestBody"] = json!({"id": "$response.body#/id"});
        from_user["UpdateUser"] = update;
        for provider in Provider::ALL {
            let spec = provider.spec();
            let credentials = format!("{users}/{{leafUserId}}/{}", spec.slug);
            let object = spec.object_name;
            let name = object[..1].to_uppercase() + &object[1..];
            from_user[format!("Create{name}")] = Self::link(
                Self::operation_id(&doc, &credentials, "post"),
                &format!("Attach {} credentials to the new user", spec.name),
                Some(("leafUserId", "$response.body#/id")),
            );
        }
        doc["paths"][users]["post"]["responses"]["201"]["links"] = from_user;
        // Only this function's edits can fail to parse back: a bug that every test would hit.
        *openapi = serde_json::from_value(doc).expect("the linked document is still OpenAPI");
    }
}
