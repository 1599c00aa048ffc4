use crate::helpers::{problem, spawn_app, BASE};
use crate::snapshot;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn logging_in_returns_a_bearer_token_that_opens_the_api() {
    let app = spawn_app().await;
    app.service
        .create_owner("bob", "bobs password")
        .await
        .unwrap();
    let response = app
        .login(json!({"username": "bob", "password": "bobs password"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = response.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let token = body["id_token"].as_str().unwrap();
    assert_eq!(header, format!("Bearer {token}"));
    snapshot!("authenticate_ok", body.clone());
    let users = app
        .send(Method::GET, &format!("{BASE}/users"), Some(token), None)
        .await;
    assert_eq!(users.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_401() {
    let app = spawn_app().await;
    let wrong = app
        .login(json!({"username": "alice", "password": "not it"}))
        .await;
    snapshot!("authenticate_wrong_password", problem(wrong, 401).await);
    let unknown = app
        .login(json!({"username": "nobody", "password": "whatever"}))
        .await;
    problem(unknown, 401).await;
}

#[tokio::test]
async fn a_login_without_fields_lists_each_missing_one() {
    let app = spawn_app().await;
    let before = app.event_count();
    let response = app.login(json!({"rememberMe": "yes"})).await;
    let body = problem(response, 400).await;
    snapshot!("authenticate_missing_fields", body);
    assert_eq!(app.event_count(), before, "nothing is written on a 4xx");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let app = spawn_app().await;
    let path = format!("{BASE}/users");
    let missing = app.send(Method::GET, &path, None, None).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    snapshot!("unauthorized_no_token", problem(missing, 401).await);
    let wrong = app
        .send(Method::GET, &path, Some("not-a-token"), None)
        .await;
    problem(wrong, 401).await;
    let basic = app
        .client
        .get(app.url(&path))
        .header("Authorization", format!("Basic {}", app.token))
        .send()
        .await
        .unwrap();
    problem(basic, 401).await;
}

#[tokio::test]
async fn a_token_expires_after_24_hours_and_after_30_days_with_remember_me() {
    let app = spawn_app().await;
    let login = |remember: bool| {
        app.login(json!({"username": "alice", "password": "correct horse battery", "rememberMe": remember}))
    };
    let short: Value = login(false).await.json().await.unwrap();
    let long: Value = login(true).await.json().await.unwrap();
    let (short, long) = (
        short["id_token"].as_str().unwrap(),
        long["id_token"].as_str().unwrap(),
    );
    let path = format!("{BASE}/users");

    app.clock.advance(chrono::Duration::hours(23));
    assert_eq!(
        app.send(Method::GET, &path, Some(short), None)
            .await
            .status(),
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::hours(2));
    problem(app.send(Method::GET, &path, Some(short), None).await, 401).await;
    assert_eq!(
        app.send(Method::GET, &path, Some(long), None)
            .await
            .status(),
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::days(30));
    problem(app.send(Method::GET, &path, Some(long), None).await, 401).await;
}

#[tokio::test]
async fn tokens_and_passwords_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let stored: Vec<String> = app
        .select("SELECT payload AS text FROM events UNION ALL SELECT token_hash FROM owner_tokens UNION ALL SELECT password_hash FROM owners")
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    assert!(!stored.is_empty());
    for text in stored {
        assert!(
            !text.contains(&app.token),
            "the bearer token is stored in clear"
        );
        assert!(
            !text.contains("correct horse battery"),
            "the password is stored in clear"
        );
    }
}

#[tokio::test]
async fn owners_see_only_their_own_users_and_credentials() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = crate::helpers::providers().remove(2);
    assert_eq!(
        app.post_credentials(&user, slug, &body).await.status(),
        StatusCode::CREATED
    );
    let mallory = app.owner_token("mallory").await;
    let before = app.event_count();

    let stranger_user = problem(app.get_user_as(&mallory, &user).await, 404).await;
    let missing_user = problem(
        app.get_user_as(&mallory, &uuid::Uuid::new_v4().to_string())
            .await,
        404,
    )
    .await;
    assert_eq!(
        stranger_user["detail"], missing_user["detail"],
        "no existence oracle"
    );

    problem(app.get_credentials_as(&mallory, &user, slug).await, 404).await;
    problem(app.get_status_as(&mallory, &user, slug).await, 404).await;
    problem(app.get_events_as(&mallory, &user, slug).await, 404).await;
    problem(
        app.post_credentials_as(&mallory, &user, slug, &body).await,
        404,
    )
    .await;
    problem(app.delete_credentials_as(&mallory, &user, slug).await, 404).await;
    problem(app.delete_user_as(&mallory, &user).await, 404).await;
    let update = app
        .send(
            Method::PUT,
            &format!("{BASE}/users"),
            Some(&mallory),
            Some(&json!({"id": user, "name": "Mallory"})),
        )
        .await;
    problem(update, 404).await;
    let listed: Value = app
        .send(Method::GET, &format!("{BASE}/users"), Some(&mallory), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));

    assert_eq!(
        app.event_count(),
        before,
        "nothing was written across owners"
    );
    assert_eq!(
        app.get_credentials(&user, slug).await.status(),
        StatusCode::OK
    );
}
