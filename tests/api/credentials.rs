use crate::helpers::{problem, providers, spawn_app, TestApp, NEVER_ECHOED};
use crate::snapshot;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn each_provider_stores_returns_and_deletes_its_credentials() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for (slug, object, body) in providers() {
        problem(app.get_credentials(&user, slug).await, 404).await;

        let created = app.post_credentials(&user, slug, &body).await;
        assert_eq!(created.status(), StatusCode::CREATED, "{slug}");
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["status"], "OK");
        for (field, value) in body.as_object().unwrap() {
            if NEVER_ECHOED.contains(&(slug, field.as_str())) {
                assert!(created.get(field).is_none(), "{slug} never shows {field}");
            } else {
                assert_eq!(&created[field], value, "{slug} echoes {field}");
            }
        }
        let user_read: Value = app.get_user(&user).await.json().await.unwrap();
        assert_eq!(user_read[object], created, "{slug}: the user carries it");
        snapshot!(format!("{slug}_created"), created.clone());

        let read: Value = app.get_credentials(&user, slug).await.json().await.unwrap();
        assert_eq!(read, created);
        let status: Value = app.get_status(&user, slug).await.json().await.unwrap();
        assert_eq!(status, json!({"status": "OK"}));
        snapshot!(format!("{slug}_status"), status);
        let events: Value = app.get_events(&user, slug).await.json().await.unwrap();
        assert_eq!(events, json!([]));

        assert_eq!(
            app.delete_credentials(&user, slug).await.status(),
            StatusCode::NO_CONTENT
        );
        snapshot!(
            format!("{slug}_not_found"),
            problem(app.get_credentials(&user, slug).await, 404).await
        );
        problem(app.get_status(&user, slug).await, 404).await;
        problem(app.get_events(&user, slug).await, 404).await;
        problem(app.delete_credentials(&user, slug).await, 404).await;
    }
}

#[tokio::test]
async fn posting_again_replaces_the_credentials_unless_create_only() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for (slug, _, body) in providers() {
        let first: Value = app
            .post_credentials(&user, slug, &body)
            .await
            .json()
            .await
            .unwrap();
        // A field that answers show, changed.
        let field = body
            .as_object()
            .unwrap()
            .keys()
            .find(|f| !NEVER_ECHOED.contains(&(slug, f.as_str())) && *f != "clientEnvironment")
            .unwrap()
            .clone();
        let mut changed = body.clone();
        changed[&field] = json!("a newer value");
        let second = app.post_credentials(&user, slug, &changed).await;
        assert_eq!(second.status(), StatusCode::CREATED);
        let second: Value = second.json().await.unwrap();
        assert_ne!(
            first["id"], second["id"],
            "a replaced credential gets a new id"
        );
        let read: Value = app.get_credentials(&user, slug).await.json().await.unwrap();
        assert_eq!(read[&field], "a newer value", "{slug}");

        let before = app.event_count();
        let refused = app.create_credentials_only(&user, slug, &body).await;
        snapshot!(
            format!("{slug}_create_only_exists"),
            problem(refused, 412).await
        );
        assert_eq!(app.event_count(), before);
    }
    let fresh = app.new_user().await;
    let (slug, _, body) = providers().remove(1);
    assert_eq!(
        app.create_credentials_only(&fresh, slug, &body)
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn if_none_match_other_than_a_star_is_a_400_and_nothing_is_written() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before = app.event_count();
    for (slug, _, body) in providers() {
        for value in ["AAA", "\"etag\"", "*, \"etag\""] {
            let refused = app
                .post_credentials_if_none_match(&user, slug, &body, value)
                .await;
            let problem = problem(refused, 400).await;
            if slug == "john-deere-credentials" && value == "AAA" {
                snapshot!("if_none_match_not_star", problem);
            }
        }
        problem(app.get_credentials(&user, slug).await, 404).await;
    }
    assert_eq!(app.event_count(), before);
}

#[tokio::test]
async fn missing_or_wrong_fields_are_listed_and_nothing_is_written() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before = app.event_count();
    for (slug, _, _) in providers() {
        let empty = problem(app.post_credentials(&user, slug, &json!({})).await, 400).await;
        snapshot!(format!("{slug}_missing_fields"), empty);
    }
    let (slug, _, mut body) = providers().remove(1);
    body["clientEnvironment"] = json!("STAGE or PRODUCTION");
    body["clientSecret"] = json!(42);
    body["colour"] = json!("green");
    let wrong = problem(app.post_credentials(&user, slug, &body).await, 400).await;
    snapshot!("john-deere-credentials_wrong_fields", wrong);
    assert_eq!(app.event_count(), before);
    let unknown_user = uuid::Uuid::new_v4().to_string();
    let (slug, _, body) = providers().remove(2);
    snapshot!(
        "raven-credentials_unknown_user",
        problem(app.post_credentials(&unknown_user, slug, &body).await, 404).await
    );
}

async fn record(app: &TestApp, user: &str, credential: &str, slug: &str, code: u16, days_ago: i64) {
    let at = app.service.now().minus(chrono::Duration::days(days_ago));
    let body = format!("{{\"days_ago\":{days_ago},\"access_token\":\"[redacted]\"}}");
    let exchange = crate::helpers::exchange(user, credential, slug, code, at, &body);
    crate::helpers::record_exchange(app, exchange)
        .await
        .expect("exchange recorded");
}

#[tokio::test]
async fn events_show_the_last_30_days_newest_first_and_vanish_on_replace_and_delete() {
    let mut app = spawn_app().await;
    let user = app.new_user().await;
    for (slug, _, body) in providers() {
        let created: Value = app
            .post_credentials(&user, slug, &body)
            .await
            .json()
            .await
            .unwrap();
        let credential = created["id"].as_str().unwrap();
        record(&app, &user, credential, slug, 200, 31).await;
        record(&app, &user, credential, slug, 401, 2).await;
        record(&app, &user, credential, slug, 200, 10).await;

        let events: Vec<Value> = app.get_events(&user, slug).await.json().await.unwrap();
        let ages: Vec<&Value> = events.iter().map(|e| &e["statusCode"]).collect();
        assert_eq!(
            ages,
            [&json!(401), &json!(200)],
            "31 days old is gone; newest first"
        );
        assert!(events[0]["body"]
            .as_str()
            .unwrap()
            .contains("\"days_ago\":2"));
        snapshot!(format!("{slug}_events"), json!(events));

        // 19 days later the 10-day-old exchange is 29 days old; 2 days after that it is gone.
        app.advance_clock(chrono::Duration::days(19)).await;
        assert_eq!(
            app.get_events(&user, slug)
                .await
                .json::<Vec<Value>>()
                .await
                .unwrap()
                .len(),
            2
        );
        app.advance_clock(chrono::Duration::days(2)).await;
        assert_eq!(
            app.get_events(&user, slug)
                .await
                .json::<Vec<Value>>()
                .await
                .unwrap()
                .len(),
            1
        );

        let replaced: Value = app
            .post_credentials(&user, slug, &body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            app.get_events(&user, slug)
                .await
                .json::<Value>()
                .await
                .unwrap(),
            json!([])
        );
        record(&app, &user, replaced["id"].as_str().unwrap(), slug, 200, 0).await;
        assert_eq!(
            app.get_events(&user, slug)
                .await
                .json::<Vec<Value>>()
                .await
                .unwrap()
                .len(),
            1
        );

        // An exchange for the replaced credential is refused: its log is gone for good.
        let late = crate::helpers::exchange(&user, credential, slug, 200, app.service.now(), "");
        assert!(crate::helpers::record_exchange(&app, late).await.is_err());

        app.delete_credentials(&user, slug).await;
        problem(app.get_events(&user, slug).await, 404).await;
    }
    let rows: i64 = app.count("SELECT COUNT(*) FROM provider_exchanges");
    assert_eq!(rows, 0, "no exchange rows outlive their credential");
}

#[tokio::test]
async fn a_wrong_or_missing_field_for_any_provider_is_a_400_and_nothing_is_written() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before = app.event_count();
    for (slug, object, body) in providers() {
        let mut wrong = body.clone();
        wrong["colour"] = json!("green");
        let first = body.as_object().unwrap().keys().next().unwrap().clone();
        wrong.as_object_mut().unwrap().remove(&first);
        let refused = problem(app.post_credentials(&user, slug, &wrong).await, 400).await;
        let errors: Vec<(&str, &str, &str)> = refused["fieldErrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["objectName"].as_str().unwrap(),
                    e["field"].as_str().unwrap(),
                    e["message"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            errors,
            [
                (object, "colour", "Unknown"),
                (object, first.as_str(), "NotNull")
            ],
            "{slug}"
        );
        problem(app.get_credentials(&user, slug).await, 404).await;
    }
    assert_eq!(app.event_count(), before);
}

#[tokio::test]
async fn an_absent_client_environment_is_stage_where_leaf_defaults_it() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let defaulted = [
        "claas-credentials",
        "cnhi-field-ops-credentials",
        "agvance-credentials",
    ];
    for (slug, _, mut body) in providers() {
        if body.get("clientEnvironment").is_none() {
            continue;
        }
        body.as_object_mut().unwrap().remove("clientEnvironment");
        let answer = app.post_credentials(&user, slug, &body).await;
        if defaulted.contains(&slug) {
            assert_eq!(answer.status(), StatusCode::CREATED, "{slug}");
            let created: Value = answer.json().await.unwrap();
            assert_eq!(created["clientEnvironment"], "STAGE", "{slug}");
        } else {
            let refused = problem(answer, 400).await;
            assert_eq!(
                refused["fieldErrors"][0]["field"], "clientEnvironment",
                "{slug}"
            );
        }
    }
}
