//! Each kind of check beside the OAuth refresh grant, against a scripted provider on loopback:
//! Slingshot's signed probe, Stara's re-mint, Panorama's Cognito refresh (with its partner
//! login), Sentera's session and AgVance's login. For each: success, revoked, missing
//! permission where the provider can say it, provider trouble and garbage, with the status,
//! `statusReason`, `lastCheckedTime` and a redacted `/events` entry.

use crate::fake_provider::{FakeProvider, Reply};
use crate::helpers::{spawn_app_with, TestApp};
use credential_ledger::config::{CheckSettings, TokenUrl};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn settings(short_name: &str, url: &str) -> CheckSettings {
    CheckSettings {
        enabled: true,
        tick: Duration::from_millis(25),
        concurrency: 4,
        timeout: Duration::from_millis(400),
        token_urls: vec![format!("{short_name}={url}").parse::<TokenUrl>().unwrap()],
        required_scopes: vec![],
        client_auth: vec![],
        retention_every: Duration::from_secs(3600),
    }
}

fn body_of(slug: &str) -> Value {
    crate::helpers::providers()
        .into_iter()
        .find(|(s, _, _)| *s == slug)
        .unwrap()
        .2
}

fn recorded_exchanges(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM events WHERE event_type = 'ProviderExchangeRecorded'")
}

fn recorded_checks(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM events WHERE event_type = 'CredentialChecked'")
}

/// Waits (bounded) until one more check than `before` is recorded.
async fn until_checked(app: &TestApp, before: i64) {
    for _ in 0..200 {
        if recorded_checks(app) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for a check");
}

/// One scripted round: the provider's answers, then the status and a piece of the reason the
/// credential must show.
struct Round {
    replies: Vec<Reply>,
    status: &'static str,
    reason: &'static str,
}

fn round(replies: Vec<Reply>, status: &'static str, reason: &'static str) -> Round {
    Round {
        replies,
        status,
        reason,
    }
}

/// Posts `slug`'s credential against `provider` (configured as `endpoint`), then plays each
/// round: the first on creation, the next ones on `POST …/check`, the clock 30 s later each
/// time (less than any schedule's shortest wait). After each, the status and reason are the
/// round's, `lastCheckedTime` is the round's time, the exchanges are in `/events`, and no
/// secret of the credential or of the provider's answers is in `/events` or the reason.
async fn play(
    slug: &str,
    short_name: &str,
    endpoint: &str,
    provider: &FakeProvider,
    rounds: Vec<Round>,
    secrets: &[&str],
) -> (TestApp, String) {
    let mut app = spawn_app_with(settings(short_name, endpoint), None).await;
    let user = app.new_user().await;
    let body = body_of(slug);
    let mut all_secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    for (name, value) in body.as_object().unwrap() {
        if credential_ledger::app::secrets::is_secret(provider_of(slug), name) {
            all_secrets.push(value.as_str().unwrap().to_owned());
        }
    }
    for (i, round) in rounds.into_iter().enumerate() {
        app.advance_clock(chrono::Duration::seconds(30)).await;
        for reply in round.replies {
            provider.then(reply);
        }
        let (checks, exchanges) = (recorded_checks(&app), recorded_exchanges(&app));
        if i == 0 {
            let created = app.post_credentials(&user, slug, &body).await;
            assert_eq!(created.status(), 201, "{slug}");
        } else {
            let path = format!("{}/check", TestApp::credential_path(&user, slug));
            let asked = app.send(Method::POST, &path, Some(&app.token), None).await;
            assert_eq!(asked.status(), 202, "{slug}");
        }
        until_checked(&app, checks).await;
        let credential = app.credentials_json(&user, slug).await;
        let reason = credential["statusReason"].as_str().unwrap_or_default();
        assert_eq!(
            credential["status"], round.status,
            "{slug} round {i}: {reason}"
        );
        assert!(reason.contains(round.reason), "{slug} round {i}: {reason}");
        assert_eq!(
            credential["lastCheckedTime"],
            json!(app.service.now()),
            "{slug} round {i}"
        );
        assert!(
            recorded_exchanges(&app) > exchanges,
            "{slug} round {i}: exchanges recorded"
        );
        let events: Vec<Value> = app.get_events(&user, slug).await.json().await.unwrap();
        assert!(!events.is_empty());
        let logged = serde_json::to_string(&events).unwrap();
        for secret in &all_secrets {
            assert!(
                !logged.contains(secret.as_str()),
                "{slug} round {i}: {secret} in /events: {logged}"
            );
            assert!(
                !reason.contains(secret.as_str()),
                "{slug} round {i}: {secret} in the reason"
            );
        }
    }
    (app, user)
}

fn provider_of(slug: &str) -> credential_ledger::domain::Provider {
    *credential_ledger::domain::Provider::ALL
        .iter()
        .find(|p| p.spec().slug == slug)
        .unwrap()
}

/// The answer a provider in trouble gives, and one nobody can read.
fn trouble() -> Reply {
    Reply::json(503, json!({"message": "maintenance"}))
}

fn garbage() -> Reply {
    Reply::raw(200, "text/html", "<html>gateway</html>")
}

fn base(provider: &FakeProvider) -> String {
    provider.url.trim_end_matches("/token").to_owned()
}

#[tokio::test]
async fn slingshot_signs_its_access_key_probe_and_reads_is_active() {
    let provider = FakeProvider::start(trouble()).await;
    let active = Reply::json(
        200,
        json!({"AccessKey": "slingshot-access-key", "IsActive": true,
        "ExpirationDateTime": "2099-11-17T06:00:00Z"}),
    );
    let rounds = vec![
        round(vec![active], "OK", "active until 2099-11-17"),
        // A refused signature is this service's fault, not the grower's: the status stays.
        round(
            vec![Reply::raw(401, "text/plain", "Invalid signature")],
            "OK",
            "signature or clock (HTTP 401); status kept",
        ),
        round(
            vec![Reply::json(
                200,
                json!({"IsActive": false, "ExpirationDateTime": "2099-01-01T00:00:00Z"}),
            )],
            "UNAUTHENTICATED",
            "not active",
        ),
        round(
            vec![Reply::json(
                200,
                json!({"IsActive": true, "ExpirationDateTime": "2001-01-01T00:00:00"}),
            )],
            "UNAUTHENTICATED",
            "expired",
        ),
        round(
            vec![Reply::raw(
                401,
                "text/plain",
                "Access key revoked (sharedSecret slingshot-shared-secret)",
            )],
            "UNAUTHENTICATED",
            "refused the access key (HTTP 401)",
        ),
        round(
            vec![Reply::json(403, json!({}))],
            "MISSING_PERMISSION",
            "HTTP 403",
        ),
        round(vec![trouble()], "TEMPORARILY_UNAVAILABLE", "HTTP 503"),
        round(vec![garbage()], "TEMPORARILY_UNAVAILABLE", "not JSON"),
    ];
    let (app, user) = play(
        "raven-slingshot-credentials",
        "raven-slingshot",
        &base(&provider),
        &provider,
        rounds,
        &[],
    )
    .await;

    // Every probe is a signed GET /accesskey; the signature is checked here with the layout
    // Slingshot documents, independently of the service's code.
    let port = base(&provider).rsplit(':').next().unwrap().to_owned();
    let seen = provider.seen();
    assert_eq!(seen.len(), 8);
    let last = app.service.now().datetime().timestamp();
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/accesskey")
        );
        let h = &request.headers;
        assert_eq!(h["x-ss-apikey"], "slingshot-api-key");
        assert_eq!(h["x-ss-accesskey"], "slingshot-access-key");
        // Round i ran 30 s per round before the last one.
        let timestamp = &h["x-ss-timestamp"];
        assert_eq!(timestamp, &(last - 30 * (7 - i as i64)).to_string());
        let text = format!(
            "GET\r\n127.0.0.1\r\n/accesskey\r\n{timestamp}\r\nslingshot-api-key\r\nslingshot-access-key\r\n"
        );
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"slingshot-shared-secret").unwrap();
        mac.update(text.as_bytes());
        use base64::Engine;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(h["x-ss-signature"], expected, "port {port}");
    }
    // Both 401s are logged for the operator with this credential's id, the body redacted.
    let id = app
        .credentials_json(&user, "raven-slingshot-credentials")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = crate::helpers::logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&id)).collect();
    let signature = lines
        .iter()
        .find(|l| l.contains("request signature or clock (401)"))
        .expect("the refused signature is logged as an error");
    assert!(signature.contains("ERROR"), "{signature}");
    let revoked = lines
        .iter()
        .find(|l| l.contains("Slingshot refused the access key (401)"))
        .expect("the refused access key is logged");
    assert!(
        revoked.contains("Access key revoked") && revoked.contains("[redacted]"),
        "{revoked}"
    );
    assert!(
        !logs.contains("slingshot-shared-secret"),
        "the secret never reaches the log"
    );
}

#[tokio::test]
async fn stara_re_mints_its_tokens_and_keeps_the_new_ones() {
    let provider = FakeProvider::start(trouble()).await;
    let minted = Reply::json(
        200,
        json!({"accessToken": "stara-new-access", "accessTokenClient": "stara-new-client",
        "refreshToken": "stara-new-refresh", "expiresIn": 3600}),
    );
    let rounds = vec![
        round(vec![minted], "OK", "Stara issued new tokens"),
        round(
            vec![Reply::json(401, json!({"message": "invalid api key"}))],
            "UNAUTHENTICATED",
            "HTTP 401",
        ),
        round(
            vec![Reply::json(403, json!({}))],
            "UNAUTHENTICATED",
            "HTTP 403",
        ),
        round(vec![trouble()], "TEMPORARILY_UNAVAILABLE", "HTTP 503"),
        // Tokens rotated without an access token are still kept.
        round(
            vec![Reply::json(200, json!({"refreshToken": "stara-refresh-3"}))],
            "TEMPORARILY_UNAVAILABLE",
            "no accessToken",
        ),
        round(vec![garbage()], "TEMPORARILY_UNAVAILABLE", "no accessToken"),
    ];
    let secrets = [
        "stara-new-access",
        "stara-new-client",
        "stara-new-refresh",
        "stara-refresh-3",
    ];
    let (app, user) = play(
        "stara-credentials",
        "stara",
        &provider.url,
        &provider,
        rounds,
        &secrets,
    )
    .await;
    let seen = provider.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].json,
        Some(json!({"apiKey": "stara-api-key", "accessTokenClient": "stara-access-client"}))
    );
    assert_eq!(
        seen[1].json.as_ref().unwrap()["accessTokenClient"],
        "stara-new-client",
        "the re-minted client token is the one sent next"
    );
    let credential = app.credentials_json(&user, "stara-credentials").await;
    assert_eq!(
        (
            &credential["accessToken"],
            &credential["accessTokenClient"],
            &credential["refreshToken"]
        ),
        (
            &json!("stara-new-access"),
            &json!("stara-new-client"),
            &json!("stara-refresh-3")
        )
    );
}

#[tokio::test]
async fn panorama_refreshes_at_cognito_and_falls_back_to_the_partner_login() {
    let provider = FakeProvider::start(trouble()).await;
    let issued = |access: &str, refresh: Option<&str>| {
        let mut result = json!({"AccessToken": access, "ExpiresIn": 3600, "IdToken": "panorama-id-token", "TokenType": "Bearer"});
        if let Some(refresh) = refresh {
            result["RefreshToken"] = json!(refresh);
        }
        Reply::json(
            200,
            json!({"AuthenticationResult": result, "ChallengeParameters": {}}),
        )
    };
    let refused = || {
        Reply::json(
            400,
            json!({"__type": "NotAuthorizedException", "message": "Refresh Token has expired"}),
        )
    };
    let rounds = vec![
        round(
            vec![issued("panorama-access-1", None)],
            "OK",
            "Cognito issued a new access token",
        ),
        // The refresh token is refused; the partner login issues a new pair.
        round(
            vec![
                refused(),
                issued("panorama-access-2", Some("panorama-refresh-2")),
            ],
            "OK",
            "the partner login issued new tokens",
        ),
        round(
            vec![refused(), refused()],
            "UNAUTHENTICATED",
            "refused the refresh token and the partner login",
        ),
        // The partner login asks for a new password: its challenge session is a secret.
        round(
            vec![
                refused(),
                Reply::json(
                    200,
                    json!({"ChallengeName": "NEW_PASSWORD_REQUIRED",
                           "Session": "cognito-challenge-session", "ChallengeParameters": {}}),
                ),
            ],
            "UNAUTHENTICATED",
            "challenge (NEW_PASSWORD_REQUIRED)",
        ),
        round(
            vec![Reply::json(
                400,
                json!({"__type": "com.amazon.coral#TooManyRequestsException"}),
            )],
            "TEMPORARILY_UNAVAILABLE",
            "TooManyRequestsException",
        ),
        round(vec![trouble()], "TEMPORARILY_UNAVAILABLE", "HTTP 503"),
        round(vec![garbage()], "TEMPORARILY_UNAVAILABLE", "no AccessToken"),
    ];
    let secrets = [
        "panorama-access-1",
        "panorama-access-2",
        "panorama-refresh-2",
        "panorama-id-token",
        "cognito-challenge-session",
    ];
    let _ = play(
        "panorama-credentials",
        "panorama",
        &provider.url,
        &provider,
        rounds,
        &secrets,
    )
    .await;
    let seen = provider.seen();
    assert_eq!(seen.len(), 10);
    assert_eq!(
        seen[0].headers["x-amz-target"],
        "AWSCognitoIdentityProviderService.InitiateAuth"
    );
    assert_eq!(
        seen[0].headers["content-type"],
        "application/x-amz-json-1.1"
    );
    assert_eq!(
        seen[0].json,
        Some(
            json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": "panorama-id",
                    "AuthParameters": {"REFRESH_TOKEN": "panorama-refresh"}})
        )
    );
    assert_eq!(
        seen[2].json,
        Some(
            json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": "panorama-id",
                    "AuthParameters": {"USERNAME": "panorama-user", "PASSWORD": "panorama-password"}})
        )
    );
    assert_eq!(
        seen[3].json.as_ref().unwrap()["AuthParameters"]["REFRESH_TOKEN"],
        "panorama-refresh-2",
        "the refresh token the partner login issued is the one used next"
    );
}

#[tokio::test]
async fn sentera_logs_in_once_reuses_its_session_and_finds_the_organization() {
    let provider = FakeProvider::start(trouble()).await;
    let session = |token: &str| {
        Reply::json(
            200,
            json!({"auth_token": token, "user_email": "grower@example.com", "status": "active"}),
        )
    };
    let organizations = |names: &[&str]| {
        let results: Vec<Value> = names
            .iter()
            .map(|n| json!({"sentera_id": format!("id-{n}"), "name": n}))
            .collect();
        Reply::json(
            200,
            json!({"data": {"organizations": {"results": results}}}),
        )
    };
    let rounds = vec![
        // No session yet: a login, then the query.
        round(
            vec![
                session("sentera-token-1"),
                organizations(&["Other", "Grower Farms"]),
            ],
            "OK",
            "sees the organization Grower Farms",
        ),
        // The stored session works: no login.
        round(
            vec![organizations(&["Other"])],
            "MISSING_PERMISSION",
            "does not see an organization named Grower Farms",
        ),
        // The session is refused: a new login, then the query.
        round(
            vec![
                Reply::json(401, json!({})),
                session("sentera-token-2"),
                organizations(&["Grower Farms"]),
            ],
            "OK",
            "sees the organization",
        ),
        // Refused, and the login too: revoked.
        round(
            vec![
                Reply::json(401, json!({})),
                Reply::json(401, json!({"error": "invalid email or password"})),
            ],
            "UNAUTHENTICATED",
            "refused the grower's login",
        ),
        // A new login, then Sentera in trouble: the new session is kept all the same.
        round(
            vec![
                Reply::json(401, json!({})),
                session("sentera-token-3"),
                trouble(),
            ],
            "TEMPORARILY_UNAVAILABLE",
            "HTTP 503",
        ),
        round(
            vec![
                Reply::json(401, json!({})),
                Reply::json(422, json!({"errors": ["invalid"]})),
            ],
            "UNAUTHENTICATED",
            "refused the grower's login (HTTP 422)",
        ),
        round(
            vec![garbage()],
            "TEMPORARILY_UNAVAILABLE",
            "no organizations",
        ),
    ];
    let (app, user) = play(
        "sentera-credentials",
        "sentera",
        &base(&provider),
        &provider,
        rounds,
        &["sentera-token-1", "sentera-token-2", "sentera-token-3"],
    )
    .await;
    let seen = provider.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/sessions",
            "/graphql",
            "/graphql",
            "/graphql",
            "/v1/sessions",
            "/graphql",
            "/graphql",
            "/v1/sessions",
            "/graphql",
            "/v1/sessions",
            "/graphql",
            "/graphql",
            "/v1/sessions",
            "/graphql"
        ]
    );
    assert_eq!(
        seen[0].json,
        Some(
            json!({"session": {"email": "grower@example.com", "password": "sentera-password",
                                "platform_id": "API", "version_id": "1.0.0"}})
        )
    );
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some("Bearer sentera-token-1")
    );
    assert_eq!(
        seen[2].authorization.as_deref(),
        Some("Bearer sentera-token-1"),
        "the stored session is reused"
    );
    assert_eq!(
        seen[5].authorization.as_deref(),
        Some("Bearer sentera-token-2")
    );
    let credential = app.credentials_json(&user, "sentera-credentials").await;
    assert_eq!(credential["organizationId"], "id-Grower Farms");
    assert_eq!(
        credential["authToken"], "sentera-token-3",
        "the session issued before the provider's trouble was kept"
    );
    assert_eq!(
        seen[13].authorization.as_deref(),
        Some("Bearer sentera-token-3")
    );
    assert!(credential.get("password").is_none(), "never shown");
}

#[tokio::test]
async fn agvance_reads_the_body_status_of_an_http_200() {
    let provider = FakeProvider::start(trouble()).await;
    let rounds = vec![
        round(
            vec![Reply::json(
                200,
                json!({"Status": 0, "SessionId": "agvance-session-1"}),
            )],
            "OK",
            "issued a session",
        ),
        // An error as HTTP 200: the body says it.
        round(
            vec![Reply::json(
                200,
                json!({"Status": 1, "Message": "Invalid username or password agvance-password"}),
            )],
            "UNAUTHENTICATED",
            "Invalid username or password",
        ),
        round(
            vec![Reply::json(
                200,
                json!({"Status": 2, "Message": "Key revoked"}),
            )],
            "UNAUTHENTICATED",
            "Status 2",
        ),
        round(
            vec![Reply::json(403, json!({}))],
            "UNAUTHENTICATED",
            "HTTP 403",
        ),
        round(vec![trouble()], "TEMPORARILY_UNAVAILABLE", "HTTP 503"),
        round(vec![garbage()], "TEMPORARILY_UNAVAILABLE", "not JSON"),
    ];
    let (app, user) = play(
        "agvance-credentials",
        "agvance",
        &provider.url,
        &provider,
        rounds,
        &["agvance-session-1"],
    )
    .await;
    let seen = provider.seen();
    assert_eq!(
        seen[0].json,
        Some(
            json!({"ApiKey": "agvance-api-key", "DatabaseId": "agvance-db",
                    "Username": "agvance-user", "Password": "agvance-password"})
        )
    );
    let credential = app.credentials_json(&user, "agvance-credentials").await;
    assert_eq!(
        credential["sessionId"], "agvance-session-1",
        "the last session issued is kept"
    );
}
