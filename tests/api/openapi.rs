use crate::helpers::spawn_app;
use serde_json::Value;

const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";

#[tokio::test]
async fn the_exported_openapi_json_is_the_live_document() {
    let app = spawn_app().await;
    let live: Value = app
        .client
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json exists");
    assert_eq!(
        file,
        credential_ledger::http::openapi::document_json(),
        "openapi/openapi.json is stale: run `{REGENERATE}`"
    );
    let exported: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(
        live, exported,
        "the served document differs from openapi/openapi.json: run `{REGENERATE}`"
    );
}

#[test]
fn every_operation_documents_its_errors_and_security() {
    let doc: Value = serde_json::to_value(credential_ledger::http::openapi::document()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(
                operation["summary"].is_string(),
                "{method} {path} has no summary"
            );
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
            let public = path == "/health" || path == "/api/authenticate";
            if !public {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                assert_eq!(
                    operation["security"][0]["bearer"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
            }
        }
    }
    for slug in [
        "ag-leader-credentials",
        "john-deere-credentials",
        "raven-credentials",
    ] {
        for suffix in ["", "/status", "/events"] {
            let path = format!("/services/usermanagement/api/users/{{leafUserId}}/{slug}{suffix}");
            assert!(doc["paths"][&path].is_object(), "{path} is documented");
        }
    }
    for schema in [
        "JohnDeereCredentials",
        "JohnDeereCredentialsRequest",
        "RavenCredentials",
        "AgLeaderCredentials",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is a named schema"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn each_providers_field_list_matches_its_request_schema() {
    use credential_ledger::domain::Provider;
    let doc: Value = serde_json::to_value(credential_ledger::http::openapi::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    for provider in Provider::ALL {
        let spec = provider.spec();
        let name = format!(
            "{}Request",
            schemas
                .as_object()
                .unwrap()
                .keys()
                .find(
                    |k| schemas[k.as_str()]["properties"]["createdTime"].is_object()
                        && k.to_lowercase().replace(' ', "")
                            == format!("{}credentials", spec.name.to_lowercase().replace(' ', ""))
                )
                .expect("response schema")
        );
        let schema = &schemas[&name];
        let mut documented: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut declared: Vec<String> = spec.fields.iter().map(|f| f.json_name()).collect();
        documented.sort();
        declared.sort();
        assert_eq!(documented, declared, "{name}");
        let mut required: Vec<String> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut declared_required: Vec<String> = spec
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.json_name())
            .collect();
        required.sort();
        declared_required.sort();
        assert_eq!(required, declared_required, "{name}");
    }
}

#[tokio::test]
async fn swagger_ui_and_health_are_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(app.url("/swagger-ui/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let config = app
        .client
        .get(app.url("/swagger-ui/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(config
        .text()
        .await
        .unwrap()
        .contains("/api-docs/openapi.json"));
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    crate::snapshot!("health_ok", health.json::<Value>().await.unwrap());
}

/// Every operation, parameter and field has a description, and every request and response body
/// an example, so Swagger UI and generated clients read as well as Leaf's pages.
#[test]
fn everything_is_described_and_every_body_has_an_example() {
    let doc: Value = serde_json::to_value(credential_ledger::http::openapi::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut missing = Vec::new();
    let has_example = |content: &Value| {
        let schema = &content["schema"];
        let named = schema["$ref"]
            .as_str()
            .map(|r| &schemas[r.trim_start_matches("#/components/schemas/")]);
        let item = schema["items"]["$ref"]
            .as_str()
            .map(|r| &schemas[r.trim_start_matches("#/components/schemas/")]);
        content.get("example").is_some()
            || schema.get("example").is_some()
            || named.is_some_and(|s| s.get("example").is_some())
            || item.is_some_and(|s| s.get("example").is_some())
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            if op["description"].as_str().is_none_or(str::is_empty) {
                missing.push(format!("{at}: operation description"));
            }
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(format!("{at}: parameter {}", param["name"]));
                }
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, body) in content {
                    if !has_example(body) {
                        missing.push(format!("{at}: request {media} example"));
                    }
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                for (media, body) in response["content"].as_object().into_iter().flatten() {
                    if !has_example(body) {
                        missing.push(format!("{at}: {status} {media} example"));
                    }
                }
            }
        }
    }
    fn properties<'a>(schema: &'a Value, out: &mut Vec<(&'a String, &'a Value)>) {
        out.extend(schema["properties"].as_object().into_iter().flatten());
        for part in schema["allOf"].as_array().into_iter().flatten() {
            properties(part, out);
        }
    }
    for (name, schema) in schemas.as_object().unwrap() {
        if schema["description"].as_str().is_none_or(str::is_empty) && schema["type"] == "object" {
            missing.push(format!("schema {name}: description"));
        }
        let mut props = Vec::new();
        properties(schema, &mut props);
        for (field, property) in props {
            if property["description"].as_str().is_none_or(str::is_empty) {
                missing.push(format!("schema {name}: field {field}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}
