//! The OpenAPI document: collected from the handlers' annotations by the same registration
//! the server uses, so the live document, `credential-ledger openapi` and
//! `openapi/openapi.json` cannot disagree.

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::App;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    modifiers(&BearerScheme),
    tags(
        (name = "Authentication", description = "API owners log in here"),
        (name = "Users", description = "Leaf users, each holding at most one credential per provider"),
        (name = "AgLeader", description = "AgLeader AgFiniti credentials"),
        (name = "John Deere", description = "John Deere Operations Center credentials"),
        (name = "Raven", description = "Raven credentials"),
        (name = "Health", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

struct BearerScheme;

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
    app.into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::api::configure)
        .split_for_parts()
}

/// The document `serve` serves at `/api-docs/openapi.json`.
pub fn document() -> Document {
    register(App::new()).1
}

/// The document as written to `openapi/openapi.json`.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
