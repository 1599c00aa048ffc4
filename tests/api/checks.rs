//! The check worker against a real (fake) OAuth2 token endpoint on loopback, observed through
//! the HTTP API, with the clock under the test's control.

use crate::fake_provider::{FakeProvider, Reply};
use crate::helpers::{problem, spawn_app_with, TestApp};
use credential_ledger::config::{CheckSettings, RequiredScopes, TokenUrl};
use credential_ledger::domain::Provider;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const RAVEN: &str = "raven-credentials";

/// Raven and John Deere checked at `token_url`; every other provider that publishes an
/// endpoint at a loopback port where nothing listens, so that no test calls out.
fn settings(token_url: &str) -> CheckSettings {
    let mut token_urls = vec![
        format!("raven={token_url}").parse::<TokenUrl>().unwrap(),
        format!("john-deere={token_url}")
            .parse::<TokenUrl>()
            .unwrap(),
    ];
    for provider in Provider::ALL {
        let published = provider.spec().check.endpoints();
        if published.is_some_and(|e| e.production.is_some())
            && !matches!(provider, Provider::Raven | Provider::JohnDeere)
        {
            let name = credential_ledger::config::short_name(*provider);
            token_urls.push(format!("{name}=http://127.0.0.1:9/").parse().unwrap());
        }
    }
    CheckSettings {
        enabled: true,
        tick: Duration::from_millis(25),
        concurrency: 4,
        timeout: Duration::from_millis(400),
        token_urls,
        required_scopes: vec![],
        client_auth: vec![],
        retention_every: Duration::from_secs(3600),
    }
}

fn ok_reply() -> Reply {
    Reply::json(
        200,
        json!({"access_token": "at-{refresh_token}", "refresh_token": "rotated-{refresh_token}",
               "expires_in": 3600, "scope": "read write", "token_type": "Bearer"}),
    )
}

fn raven_body(refresh: &str) -> Value {
    json!({"clientId": "raven-client", "clientSecret": "raven-client-secret", "refreshToken": refresh})
}

/// Polls `probe` until it holds, for at most 5 seconds.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn events(app: &TestApp, user: &str) -> Vec<Value> {
    app.get_events(user, RAVEN).await.json().await.unwrap()
}

async fn raven(app: &TestApp, user: &str) -> Value {
    app.credentials_json(user, RAVEN).await
}

async fn check_now(app: &TestApp, user: &str) -> reqwest::Response {
    let path = format!("{}/check", TestApp::credential_path(user, RAVEN));
    app.send(Method::POST, &path, Some(&app.token), None).await
}

/// Exchanges the ledger has recorded (committed with each check's schedule).
fn recorded_exchanges(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM events WHERE event_type = 'ProviderExchangeRecorded'")
}

/// The payload of the last `CredentialTokensRotated` event.
fn last_rotation(app: &TestApp) -> Value {
    let payload = app.select(
        "SELECT payload FROM events WHERE event_type = 'CredentialTokensRotated'
         ORDER BY position DESC LIMIT 1",
    );
    serde_json::from_str(payload[0][0].as_deref().unwrap()).unwrap()
}

/// Lets the worker run a few ticks.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_new_credential_is_checked_at_once_and_its_rotated_tokens_are_kept() {
    let provider = FakeProvider::start(ok_reply()).await;
    let mut app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    let created: Value = app
        .post_credentials(&user, RAVEN, &raven_body("rt-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&created["lastCheckedTime"], &created["statusReason"]),
        (
            &Value::Null,
            &json!("not checked yet: the status is the one every new credential starts with")
        )
    );

    eventually("the new credential was checked", || async {
        events(&app, &user).await.len() == 1
    })
    .await;
    let seen = &provider.seen()[0];
    assert_eq!(seen.form["grant_type"], "refresh_token");
    assert_eq!(seen.form["refresh_token"], "rt-1");
    assert_eq!(seen.form["client_id"], "raven-client");
    assert_eq!(seen.form["client_secret"], "raven-client-secret");
    let credential = raven(&app, &user).await;
    assert_eq!(credential["status"], "OK");
    assert_eq!(
        credential["statusReason"],
        "the provider issued a new access token"
    );
    assert_eq!(
        credential["lastCheckedTime"],
        json!(app.service.now()),
        "checked at the (test) clock's time"
    );
    assert_eq!(credential["accessToken"], "at-rt-1");
    assert_eq!(
        credential["refreshToken"], "rotated-rt-1",
        "the rotated refresh token replaced the old one"
    );
    assert_eq!(
        credential["tokenMetadata"]["scopes"],
        json!(["read", "write"])
    );

    let logged = &events(&app, &user).await[0];
    assert_eq!(logged["statusCode"], 200);
    let text = logged.to_string();
    for secret in [
        "at-rt-1",
        "rotated-rt-1",
        "rt-1",
        "raven-client-secret",
        "provider-session-secret",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the exchange log: {text}"
        );
    }
    assert!(text.contains("[redacted]"));

    // The token expires in an hour: the next check comes 5 minutes before, with the new token.
    app.advance_clock(chrono::Duration::minutes(50)).await;
    settle().await;
    assert_eq!(provider.seen().len(), 1, "not due yet");
    app.advance_clock(chrono::Duration::minutes(6)).await;
    eventually("the credential was checked again", || async {
        provider.seen().len() == 2
    })
    .await;
    assert_eq!(provider.seen()[1].form["refresh_token"], "rotated-rt-1");
    eventually("the second rotation is stored", || async {
        raven(&app, &user).await["refreshToken"] == "rotated-rotated-rt-1"
    })
    .await;
}

#[tokio::test]
async fn john_deere_authenticates_with_basic_auth_and_its_environment() {
    let provider = FakeProvider::start(ok_reply()).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    let body = json!({"clientKey": "jd-key", "clientSecret": "jd-secret", "refreshToken": "jd-rt",
                      "clientEnvironment": "STAGE"});
    app.post_credentials(&user, "john-deere-credentials", &body)
        .await;
    eventually("John Deere was checked", || async {
        provider.seen().len() == 1
    })
    .await;
    // base64("jd-key:jd-secret")
    assert_eq!(
        provider.seen()[0].authorization.as_deref(),
        Some("Basic amQta2V5OmpkLXNlY3JldA==")
    );
    assert!(!provider.seen()[0].form.contains_key("client_secret"));
    eventually("the scopes are stored", || async {
        let jd: Value = app.credentials_json(&user, "john-deere-credentials").await;
        jd["scopes"] == json!(["read", "write"])
            && jd["tokenMetadata"]["scopes"] == json!(["read", "write"])
    })
    .await;
}

#[tokio::test]
async fn a_revoked_credential_is_unauthenticated_and_left_alone_until_a_check_is_asked_for() {
    let provider = FakeProvider::start(Reply::json(400, json!({"error": "invalid_grant"}))).await;
    let mut app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("revoked"))
        .await;
    eventually("the credential is UNAUTHENTICATED", || async {
        raven(&app, &user).await["status"] == "UNAUTHENTICATED"
    })
    .await;
    let status: Value = app.get_status(&user, RAVEN).await.json().await.unwrap();
    assert_eq!(status, json!({"status": "UNAUTHENTICATED"}));
    assert_eq!(
        raven(&app, &user).await["statusReason"],
        "the provider no longer accepts the refresh token (HTTP 400, invalid_grant)"
    );

    // Re-checked slowly (a verdict after a lost answer may recover): after 1 h, 6 h, then
    // daily for a week, then never again until asked.
    app.advance_clock(chrono::Duration::minutes(50)).await;
    settle().await;
    assert_eq!(provider.seen().len(), 1, "not hammered");
    let mut calls = 1;
    for hours in [1, 6, 24, 24, 24, 24, 24, 24, 24, 24] {
        app.advance_clock(chrono::Duration::hours(hours)).await;
        calls += 1;
        // Recorded, not just sent: the next wait counts from the clock when it is recorded.
        eventually("a slow re-check", || async {
            provider.seen().len() == calls && recorded_exchanges(&app) == calls as i64
        })
        .await;
    }
    app.advance_clock(chrono::Duration::days(30)).await;
    settle().await;
    assert_eq!(provider.seen().len(), calls, "left alone after a week");

    provider.set_default(ok_reply());
    let asked = check_now(&app, &user).await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    crate::snapshot!(
        "raven-credentials_check_accepted",
        asked.json::<Value>().await.unwrap()
    );
    eventually("the requested check passed", || async {
        raven(&app, &user).await["status"] == "OK"
    })
    .await;
    assert_eq!(provider.seen().len(), calls + 1);

    let unknown = uuid::Uuid::new_v4().to_string();
    problem(check_now(&app, &unknown).await, 404).await;
}

#[tokio::test]
async fn forbidden_or_missing_scopes_are_missing_permission() {
    let provider = FakeProvider::start(Reply::json(403, json!({"error": "access_denied"}))).await;
    let mut health = settings(&provider.url);
    health.required_scopes = vec!["raven=read admin".parse::<RequiredScopes>().unwrap()];
    let mut app = spawn_app_with(health, None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually("403 is MISSING_PERMISSION", || async {
        raven(&app, &user).await["status"] == "MISSING_PERMISSION"
    })
    .await;

    provider.set_default(ok_reply()); // grants "read write", not "admin"
    app.advance_clock(chrono::Duration::hours(25)).await;
    eventually("the daily check ran", || async {
        provider.seen().len() == 2
    })
    .await;
    eventually("the rotated token is kept", || async {
        raven(&app, &user).await["refreshToken"] == "rotated-rt"
    })
    .await;
    assert_eq!(
        raven(&app, &user).await["status"],
        "MISSING_PERMISSION",
        "admin scope is missing"
    );
}

#[tokio::test]
async fn provider_failures_back_off_and_recover() {
    let provider = FakeProvider::start(ok_reply()).await;
    provider.then(Reply::json(503, json!({"error": "unavailable"})));
    provider.then(Reply::json(429, json!({"error": "slow down"})));
    let mut app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually("503 is TEMPORARILY_UNAVAILABLE", || async {
        raven(&app, &user).await["status"] == "TEMPORARILY_UNAVAILABLE"
    })
    .await;

    app.advance_clock(chrono::Duration::seconds(30)).await;
    settle().await;
    assert_eq!(
        provider.seen().len(),
        1,
        "backs off a minute after the first failure"
    );
    app.advance_clock(chrono::Duration::seconds(31)).await;
    // Recorded, not just sent: the backoff is computed when the result is appended.
    eventually("the second check was recorded", || async {
        events(&app, &user).await.len() == 2
    })
    .await;
    app.advance_clock(chrono::Duration::seconds(90)).await;
    settle().await;
    assert_eq!(provider.seen().len(), 2, "then two minutes");
    app.advance_clock(chrono::Duration::seconds(31)).await;
    eventually("back to OK", || async {
        raven(&app, &user).await["status"] == "OK"
    })
    .await;
    let codes: Vec<Value> = events(&app, &user)
        .await
        .iter()
        .map(|e| e["statusCode"].clone())
        .collect();
    assert_eq!(codes, [json!(200), json!(429), json!(503)], "newest first");
}

#[tokio::test]
async fn a_hanging_or_absent_provider_is_temporarily_unavailable() {
    let provider = FakeProvider::start(ok_reply().after(Duration::from_secs(3))).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually("the hanging provider timed out", || async {
        raven(&app, &user).await["status"] == "TEMPORARILY_UNAVAILABLE"
    })
    .await;
    let logged = &events(&app, &user).await[0];
    assert_eq!(logged["statusCode"], 0);
    assert_eq!(logged["body"], "no response: timeout");

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(settings(&format!("http://127.0.0.1:{closed}/token")), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually(
        "a refused connection is TEMPORARILY_UNAVAILABLE",
        || async { raven(&app, &user).await["status"] == "TEMPORARILY_UNAVAILABLE" },
    )
    .await;
    assert_eq!(
        events(&app, &user).await[0]["body"],
        "no response: connection failed"
    );
}

#[tokio::test]
async fn concurrent_check_requests_make_one_exchange() {
    let provider = FakeProvider::start(Reply::json(400, json!({"error": "invalid_grant"}))).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually("UNAUTHENTICATED", || async {
        raven(&app, &user).await["status"] == "UNAUTHENTICATED"
    })
    .await;

    provider.set_default(ok_reply().after(Duration::from_millis(200)));
    let asks = (0..10).map(|_| check_now(&app, &user));
    for response in futures::future::join_all(asks).await {
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{}",
            response.text().await.unwrap()
        );
    }
    eventually("the requested check passed", || async {
        raven(&app, &user).await["status"] == "OK"
    })
    .await;
    settle().await;
    assert_eq!(
        provider.seen().len(),
        2,
        "one check for the creation, one for ten requests"
    );
    assert_eq!(events(&app, &user).await.len(), 2);
}

#[tokio::test]
async fn a_late_result_for_a_replaced_credential_is_discarded() {
    crate::sqlite_only!();
    let provider = FakeProvider::start(ok_reply().after(Duration::from_millis(300))).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    let old: Value = app
        .post_credentials(&user, RAVEN, &raven_body("old-rt"))
        .await
        .json()
        .await
        .unwrap();
    eventually("the old credential's check is under way", || async {
        provider.seen().len() == 1
    })
    .await;
    let new: Value = app
        .post_credentials(&user, RAVEN, &raven_body("new-rt"))
        .await
        .json()
        .await
        .unwrap();

    eventually("the new credential was checked", || async {
        raven(&app, &user).await["refreshToken"] == "rotated-new-rt"
    })
    .await;
    settle().await;
    assert_eq!(raven(&app, &user).await["id"], new["id"]);
    let old_id = old["id"].as_str().unwrap();
    let applied: i64 = app
        .sqlite()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE payload ->> 'credentialId' = ?1
             AND event_type IN ('CredentialTokensRotated', 'CredentialChecked', 'ProviderExchangeRecorded')",
            [old_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        applied, 0,
        "nothing of the old credential's late check was applied"
    );
    assert_eq!(
        events(&app, &user).await.len(),
        1,
        "only the new credential's exchange"
    );
}

#[tokio::test]
async fn after_a_restart_the_worker_resumes_from_the_ledger_without_a_burst() {
    let provider = FakeProvider::start(Reply::json(
        200,
        json!({"access_token": "at", "scope": "read"}),
    ))
    .await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let mut users = Vec::new();
    for i in 0..3 {
        let user = app.new_user().await;
        app.post_credentials(&user, RAVEN, &raven_body(&format!("rt-{i}")))
            .await;
        users.push(user);
    }
    eventually("each check was recorded", || async {
        recorded_exchanges(&app) == 3
    })
    .await;
    assert_eq!(provider.seen().len(), 3);

    let mut app = app.restart(settings(&provider.url)).await;
    settle().await;
    assert_eq!(
        provider.seen().len(),
        3,
        "no burst of checks after the restart"
    );
    app.advance_clock(chrono::Duration::hours(24)).await;
    eventually("the daily checks ran", || async {
        provider.seen().len() == 6
    })
    .await;
    settle().await;
    assert_eq!(provider.seen().len(), 6);
    assert_eq!(events(&app, &users[0]).await.len(), 2);
}

#[tokio::test]
async fn exchanges_older_than_30_days_are_hidden_then_reclaimed_and_the_ledger_keeps_its_events() {
    let provider = FakeProvider::start(ok_reply()).await;
    let mut health = settings(&provider.url);
    health.retention_every = Duration::from_millis(50);
    let mut app = spawn_app_with(health, None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt")).await;
    eventually("checked", || async { events(&app, &user).await.len() == 1 }).await;
    let contents = |app: &TestApp| -> i64 { app.count("SELECT COUNT(*) FROM exchange_contents") };
    let recorded = |app: &TestApp| -> i64 {
        app.count("SELECT COUNT(*) FROM events WHERE event_type = 'ProviderExchangeRecorded'")
    };

    let first = events(&app, &user).await[0]["id"].clone();
    // 31 days on, the daily check runs again and retention reclaims the first exchange.
    app.advance_clock(chrono::Duration::days(31)).await;
    eventually(
        "the new check ran and the old contents were reclaimed",
        || async { recorded(&app) == 2 && contents(&app) == 1 },
    )
    .await;
    let shown = events(&app, &user).await;
    assert_eq!(shown.len(), 1, "older than 30 days: not shown");
    assert_ne!(shown[0]["id"], first);
    assert_eq!(recorded(&app), 2, "the ledger keeps both events");
    let log_rows: i64 = app.count("SELECT COUNT(*) FROM provider_exchanges");
    assert_eq!(
        log_rows, 1,
        "the old exchange's log row is reclaimed with its contents"
    );
}

#[tokio::test]
async fn the_exchange_log_never_holds_a_secret() {
    crate::sqlite_only!();
    let provider = FakeProvider::start(ok_reply()).await;
    // A provider that quotes the refresh token in `error`, which becomes the status reason.
    provider.then(Reply::json(
        400,
        json!({"error": "bad token {refresh_token}", "refresh_token": "{refresh_token}"}),
    ));
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("secret-refresh-1"))
        .await;
    eventually("UNAUTHENTICATED", || async {
        raven(&app, &user).await["status"] == "UNAUTHENTICATED"
    })
    .await;
    check_now(&app, &user).await;
    eventually("OK", || async {
        raven(&app, &user).await["status"] == "OK"
    })
    .await;
    let conn = app.sqlite();
    let stored: Vec<String> = conn
        .prepare(
            "SELECT headers || body FROM exchange_contents
             UNION ALL SELECT payload FROM events WHERE event_type = 'ProviderExchangeRecorded'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 4);
    let reasons: Vec<String> = conn
        .prepare("SELECT payload FROM events WHERE event_type = 'CredentialStatusChanged'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("bad token [redacted]")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|r| !r.contains("secret-refresh-1")),
        "{reasons:?}"
    );
    for text in stored {
        for secret in [
            "secret-refresh-1",
            "raven-client-secret",
            "at-secret-refresh-1",
            "provider-session-secret",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} is in the exchange log: {text}"
            );
        }
    }
}

// Hostile or careless providers: every number range-checked, every answer read only so far,
// every secret kept out of what is stored and logged, however it is encoded.

#[tokio::test]
async fn an_absurd_expires_in_is_ignored_and_never_stops_the_checks() {
    // i64::MAX seconds overflowed the date (a panic that never freed the check's slot).
    let provider = FakeProvider::start(Reply::json(
        200,
        json!({"access_token": "at-{refresh_token}", "refresh_token": "r2-{refresh_token}",
               "expires_in": 9223372036854775807_i64}),
    ))
    .await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    // More such credentials than the worker runs checks at once (4).
    let mut users = Vec::new();
    for i in 0..12 {
        let user = app.new_user().await;
        app.post_credentials(&user, RAVEN, &raven_body(&format!("rt-{i}")))
            .await;
        users.push(user);
    }
    for (i, user) in users.iter().enumerate() {
        eventually("every credential was checked and rotated", || async {
            raven(&app, user).await["refreshToken"] == format!("r2-rt-{i}")
        })
        .await;
        assert_eq!(raven(&app, user).await["status"], "OK");
    }
    assert!(
        last_rotation(&app)["tokens"]["expiresAt"].is_null(),
        "the lifetime was ignored: {}",
        last_rotation(&app)
    );
    provider.set_default(ok_reply());
    let late = app.new_user().await;
    app.post_credentials(&late, RAVEN, &raven_body("rt-late"))
        .await;
    eventually("a later credential is still checked", || async {
        raven(&app, &late).await["refreshToken"] == "rotated-rt-late"
    })
    .await;
}

#[tokio::test]
async fn an_endless_answer_is_read_only_up_to_a_cap() {
    let provider = FakeProvider::start(Reply::endless()).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt-1"))
        .await;
    eventually("the endless answer was recorded", || async {
        !events(&app, &user).await.is_empty()
    })
    .await;
    let logged = &events(&app, &user).await[0];
    let body = logged["body"].as_str().unwrap_or_default();
    assert!(body.len() <= 64 * 1024, "{} bytes kept", body.len());
    settle().await;
    let sent = provider.endless_sent();
    eprintln!("an endless answer: {sent} bytes sent before the worker hung up");
    // The worker reads 128 KiB; the rest is what the sockets' buffers took.
    assert!(sent < 16 * 1024 * 1024, "{sent} bytes were read");
    assert_eq!(
        raven(&app, &user).await["status"],
        "TEMPORARILY_UNAVAILABLE"
    );
}

/// A client secret with every character that changes under an encoding.
const AWKWARD_SECRET: &str = r#"Sec"ret\with/plus+amp&eq=pct%-raven-9f"#;

#[tokio::test]
async fn a_secret_echoed_in_any_encoding_reaches_neither_the_log_nor_events_nor_the_reason() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let form: String = serde_urlencoded::to_string([("client_secret", AWKWARD_SECRET)]).unwrap();
    let basic = format!(
        "Basic {}",
        b64.encode(format!("raven-client:{AWKWARD_SECRET}"))
    );
    let quoted = b64.encode(format!("cannot refresh for {AWKWARD_SECRET}"));
    let provider = FakeProvider::start(ok_reply()).await;
    // The provider quotes the secret in an `error` (base64, then a forged log line), in a
    // JSON string, form-encoded and as a Basic value.
    provider.then(Reply::json(
        400,
        json!({"error": format!("{quoted}\n2026-12-01T00:00:00.000000Z  INFO forged line \u{1b}[31mred"),
               "echo": AWKWARD_SECRET, "request": form, "auth": basic}),
    ));
    provider.then(Reply::raw(
        401,
        "text/plain",
        format!("unauthorized: {form} with {basic}"),
    ));
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    let mut body = raven_body("rt-1");
    body["clientSecret"] = json!(AWKWARD_SECRET);
    app.post_credentials(&user, RAVEN, &body).await;
    eventually("UNAUTHENTICATED", || async {
        raven(&app, &user).await["status"] == "UNAUTHENTICATED"
    })
    .await;
    check_now(&app, &user).await;
    eventually("two exchanges", || async {
        events(&app, &user).await.len() == 2
    })
    .await;
    let credential_id = raven(&app, &user).await["id"].as_str().unwrap().to_owned();
    let ledger: Vec<String> = app
        .select(
            "SELECT headers || body AS text FROM exchange_contents
             UNION ALL SELECT payload FROM events",
        )
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    let shown = events(&app, &user).await;
    let our_log: Vec<String> = crate::helpers::logs()
        .lines()
        .filter(|line| line.contains(&credential_id))
        .map(str::to_owned)
        .collect();
    assert!(!our_log.is_empty(), "the checks were logged");
    let pieces = [
        &AWKWARD_SECRET[..12],
        &AWKWARD_SECRET[12..24],
        &AWKWARD_SECRET[24..],
    ];
    let encodings = [form.clone(), basic.clone(), quoted.clone()];
    for text in ledger
        .iter()
        .chain(our_log.iter())
        .chain(std::iter::once(&serde_json::to_string(&shown).unwrap()))
    {
        for piece in pieces
            .iter()
            .map(|p| p.to_string())
            .chain(encodings.iter().cloned())
        {
            assert!(!text.contains(&piece), "{piece} got through: {text}");
        }
        assert!(!text.contains("secret=Sec"), "{text}");
    }
    // The quoted `error` forged no line and repainted nothing.
    let all_logs = crate::helpers::logs();
    assert!(!all_logs
        .lines()
        .any(|l| l.starts_with("2026-12-01T00:00:00.000000Z")));
    assert!(
        !all_logs.contains('\u{1b}'),
        "an escape code reached the log"
    );
    let reasons: Vec<Value> = app
        .select("SELECT payload FROM events WHERE event_type = 'CredentialStatusChanged'")
        .into_iter()
        .map(|row| serde_json::from_str(row[0].as_deref().unwrap()).unwrap())
        .collect();
    for reason in &reasons {
        let text = reason["reason"].as_str().unwrap_or_default();
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_kept_from_a_form_a_string_lifetime_or_a_long_answer() {
    let provider = FakeProvider::start(ok_reply()).await;
    provider.then(Reply::raw(
        200,
        "application/x-www-form-urlencoded",
        "access_token=at-form&refresh_token=rt-form&expires_in=3600&scope=read",
    ));
    provider.then(Reply::json(
        200,
        json!({"access_token": "at-string", "refresh_token": "rt-string", "expires_in": "3600"}),
    ));
    provider.then(Reply::json(
        200,
        json!({"pad": "x".repeat(70 * 1024), "access_token": "at-long", "refresh_token": "rt-long",
               "expires_in": 60}),
    ));
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt-0"))
        .await;
    for expected in ["rt-form", "rt-string", "rt-long"] {
        eventually(expected, || async {
            raven(&app, &user).await["refreshToken"] == expected
        })
        .await;
        let credential = raven(&app, &user).await;
        assert_eq!(credential["status"], "OK", "{credential}");
        let rotation = last_rotation(&app);
        assert!(rotation["tokens"]["expiresAt"].is_string(), "{rotation}");
        check_now(&app, &user).await;
    }
    // Each answer was stored redacted, the long one cut to 64 KiB.
    let shown = events(&app, &user).await;
    assert_eq!(shown.len(), 3);
    for logged in &shown {
        let body = logged["body"].as_str().unwrap();
        assert!(body.len() <= 64 * 1024);
        for token in [
            "at-form",
            "rt-form",
            "at-string",
            "rt-string",
            "at-long",
            "rt-long",
        ] {
            assert!(!body.contains(token), "{token} in {body:.200}");
        }
    }
}

#[tokio::test]
async fn an_oauth_error_code_decides_before_the_http_status() {
    let provider = FakeProvider::start(Reply::json(403, json!({"error": "invalid_grant"}))).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("revoked-at-auth0"))
        .await;
    // Auth0 (CNH's identity server) answers a revoked refresh token with 403, not 400.
    eventually("a 403 invalid_grant is UNAUTHENTICATED", || async {
        raven(&app, &user).await["status"] == "UNAUTHENTICATED"
    })
    .await;
    for (error, status) in [
        ("invalid_client", "UNAUTHENTICATED"),
        ("invalid_scope", "MISSING_PERMISSION"),
        // Our request's fault, not the grower's: the status stays what it was (a 400 without
        // a known code would be UNAUTHENTICATED).
        ("invalid_request", "MISSING_PERMISSION"),
        ("unauthorized_client", "MISSING_PERMISSION"),
    ] {
        provider.set_default(Reply::json(400, json!({ "error": error })));
        let before = recorded_exchanges(&app);
        check_now(&app, &user).await;
        eventually("the check was recorded", || async {
            recorded_exchanges(&app) > before
        })
        .await;
        settle().await;
        let credential = raven(&app, &user).await;
        assert_eq!(credential["status"], status, "{error}");
        let reason = credential["statusReason"].as_str().unwrap();
        assert!(reason.contains(error), "{error}: {reason}");
    }
    let logs = crate::helpers::logs();
    assert!(
        logs.contains("invalid_client") && logs.contains("every credential of this application"),
        "an invalid_client is logged for the operator"
    );
    assert!(
        logs.contains("a bug in this service"),
        "an invalid_request is logged as ours"
    );
}

#[tokio::test]
async fn a_credential_that_cannot_be_checked_says_why_and_its_provider_is_never_called() {
    let provider = FakeProvider::start(ok_reply()).await;
    let app = spawn_app_with(settings(&provider.url), None).await;
    let user = app.new_user().await;
    let bodies = crate::helpers::providers();
    let body_of = |slug: &str| {
        bodies
            .iter()
            .find(|(s, _, _)| *s == slug)
            .unwrap()
            .2
            .clone()
    };
    let expected = [
        (
            "valley-credentials",
            "not checked: Valley publishes no way to check a credential: its status is the \
             starting value, not a verdict",
        ),
        (
            "claas-credentials",
            "not checked: no endpoint is configured for CLAAS (--token-url claas=URL)",
        ),
        (
            "agvance-credentials",
            "not checked: no endpoint is configured for AgVance (--token-url agvance=URL)",
        ),
    ];
    for (slug, _) in expected {
        let created = app.post_credentials(&user, slug, &body_of(slug)).await;
        assert_eq!(created.status(), StatusCode::CREATED, "{slug}");
    }
    // A checkable one beside them is checked, so the worker ran.
    app.post_credentials(&user, RAVEN, &raven_body("rt-1"))
        .await;
    eventually("the Raven credential was checked", || async {
        !raven(&app, &user).await["lastCheckedTime"].is_null()
    })
    .await;
    settle().await;
    assert_eq!(provider.seen().len(), 1, "only Raven was called");
    for (slug, reason) in expected {
        let credential = app.credentials_json(&user, slug).await;
        assert_eq!(credential["lastCheckedTime"], Value::Null, "{slug}");
        assert_eq!(credential["statusReason"], reason, "{slug}");
        assert_eq!(credential["status"], "OK", "{slug}: Leaf's starting status");
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_held_until_storage_takes_it() {
    crate::sqlite_only!();
    // The provider answers a moment after the request, so the test can take the write lock
    // between the two: the rotation happened at the provider, and storage refuses to take it.
    let provider = FakeProvider::start(ok_reply().after(Duration::from_millis(300))).await;
    let app = crate::helpers::spawn_configured(None, |s| {
        s.checks = settings(&provider.url);
        s.store.busy_timeout = Duration::from_millis(100);
    })
    .await;
    let user = app.new_user().await;
    app.post_credentials(&user, RAVEN, &raven_body("rt-1"))
        .await;
    eventually("the provider was asked", || async {
        provider.seen().len() == 1
    })
    .await;
    let lock = app.sqlite();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Longer than the few quick retries a result without a new refresh token gets (8.5 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let credential = raven(&app, &user).await;
    assert_eq!(credential["refreshToken"], "rt-1", "not stored yet");
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let mut stored = false;
    for _ in 0..60 {
        if raven(&app, &user).await["refreshToken"] == "rotated-rt-1" {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(stored, "the rotated refresh token was kept and stored");
    assert_eq!(raven(&app, &user).await["status"], "OK");
    assert_eq!(provider.seen().len(), 1, "the old token was not sent again");
}

#[tokio::test]
async fn a_credential_whose_environment_has_no_endpoint_is_parked_with_a_reason_not_retried() {
    let provider = FakeProvider::start(ok_reply()).await;
    let mut health = settings(&provider.url);
    health.token_urls = vec![format!("claas:stage={}", provider.url)
        .parse::<TokenUrl>()
        .unwrap()];
    let app = spawn_app_with(health, None).await;
    let (production, stage) = (app.new_user().await, app.new_user().await);
    let body = crate::helpers::providers()
        .into_iter()
        .find(|(slug, _, _)| *slug == "claas-credentials")
        .unwrap()
        .2;
    let mut staged = body.clone();
    staged["clientEnvironment"] = json!("STAGE");
    app.post_credentials(&production, "claas-credentials", &body)
        .await;
    app.post_credentials(&stage, "claas-credentials", &staged)
        .await;
    let claas = |user: String| {
        let app = &app;
        async move { app.credentials_json(&user, "claas-credentials").await }
    };
    eventually("the STAGE credential was checked", || async {
        !claas(stage.clone()).await["lastCheckedTime"].is_null()
    })
    .await;
    eventually("the PRODUCTION one was parked", || async {
        claas(production.clone()).await["statusReason"]
            == "not checked: no endpoint is configured for CLAAS PRODUCTION \
                (--token-url claas:production=URL, then ask for a check)"
    })
    .await;
    // Many ticks later: parked once, never sent, never due again.
    settle().await;
    settle().await;
    let parked: i64 =
        app.count("SELECT COUNT(*) FROM events WHERE event_type = 'CredentialCheckParked'");
    assert_eq!(parked, 1);
    assert_eq!(
        provider.seen().len(),
        1,
        "only the STAGE credential was sent"
    );
    assert_eq!(
        claas(production.clone()).await["lastCheckedTime"],
        Value::Null
    );
}

#[tokio::test]
async fn a_providers_client_authentication_can_be_chosen_where_it_is_not_published() {
    let provider = FakeProvider::start(ok_reply()).await;
    let claas = crate::helpers::providers()
        .into_iter()
        .find(|(slug, _, _)| *slug == "claas-credentials")
        .unwrap()
        .2;
    for (choice, basic) in [
        (None, true),
        (Some("claas=body"), false),
        (Some("claas=basic"), true),
    ] {
        let mut health = settings(&provider.url);
        health.token_urls = vec![format!("claas={}", provider.url).parse().unwrap()];
        health.client_auth = choice.into_iter().map(|c| c.parse().unwrap()).collect();
        let app = spawn_app_with(health, None).await;
        let user = app.new_user().await;
        let before = provider.seen().len();
        app.post_credentials(&user, "claas-credentials", &claas)
            .await;
        eventually("CLAAS was checked", || async {
            provider.seen().len() == before + 1
        })
        .await;
        let seen = &provider.seen()[before];
        // base64("claas-key:claas-secret")
        let expected = basic.then(|| "Basic Y2xhYXMta2V5OmNsYWFzLXNlY3JldA==".to_owned());
        assert_eq!(seen.authorization, expected, "{choice:?}");
        assert_eq!(
            seen.form.get("client_secret").map(String::as_str),
            (!basic).then_some("claas-secret"),
            "{choice:?}"
        );
    }
    assert!("claas=digest"
        .parse::<credential_ledger::config::ClientAuthChoice>()
        .is_err());
}
