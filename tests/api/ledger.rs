use crate::helpers::{providers, seed_providers, spawn_app, TestApp};
use credential_ledger::domain::event::IssuedTokens;
use credential_ledger::domain::user::CheckResult;
use credential_ledger::domain::{CredentialStatus, Provider, UserId};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_events() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    app.new_user().await;
    let conn = app.sqlite();
    let update = conn.execute("UPDATE events SET payload = '{}' WHERE position = 1", []);
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = conn.execute("DELETE FROM events", []);
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn rebuild_reproduces_every_projection_row_for_row() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    app.owner_token("bob").await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(app.new_user().await);
    }
    for user in &users {
        for (slug, _, body) in providers() {
            app.post_credentials(user, slug, &body).await;
        }
    }
    let (slug, _, body) = providers().remove(1);
    app.post_credentials(&users[0], slug, &body).await; // replaced
                                                        // An exchange logged for a credential that is then deleted: its log row goes with it.
    let doomed: Value = app.credentials_json(&users[1], "raven-credentials").await;
    let logged = crate::helpers::exchange(
        &users[1],
        doomed["id"].as_str().unwrap(),
        "raven-credentials",
        200,
        app.service.now(),
        "{}",
    );
    crate::helpers::record_exchange(&app, logged).await.unwrap();
    app.delete_credentials(&users[1], "raven-credentials").await;
    app.update_user(&json!({"id": users[2], "name": "renamed"}))
        .await;
    app.delete_user(&users[3]).await;
    let raven: Value = app.credentials_json(&users[2], "raven-credentials").await;
    // A check at the provider that found the credential revoked, with its exchange.
    let raven_id = raven["id"].as_str().unwrap();
    let body = "{\"error\":\"invalid_grant\"}";
    let exchange = crate::helpers::exchange(
        &users[2],
        raven_id,
        "raven-credentials",
        400,
        app.service.now(),
        body,
    );
    let revoked = CheckResult {
        status: CredentialStatus::Unauthenticated,
        tokens: None,
        reason: "invalid_grant".into(),
    };
    app.service
        .record_check(
            users[2].parse::<UserId>().unwrap(),
            raven_id.parse().unwrap(),
            Provider::Raven,
            revoked,
            vec![exchange],
            None,
        )
        .await
        .unwrap();
    let status: Value = app
        .get_status(&users[2], "raven-credentials")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "UNAUTHENTICATED");
    // The check worker's events: a check that rotated tokens, then a check asked for.
    let john_deere: Value = app
        .credentials_json(&users[2], "john-deere-credentials")
        .await;
    let rotated = CheckResult {
        status: CredentialStatus::Ok,
        tokens: Some(IssuedTokens {
            access_token: Some("rotated-access".into()),
            refresh_token: Some("rotated-refresh".into()),
            expires_at: Some(app.service.now().plus(chrono::Duration::hours(1))),
            scopes: vec!["ag1".into()],
            fields: Default::default(),
        }),
        reason: "refreshed".into(),
    };
    app.service
        .record_check(
            users[2].parse().unwrap(),
            john_deere["id"].as_str().unwrap().parse().unwrap(),
            Provider::JohnDeere,
            rotated,
            vec![],
            None,
        )
        .await
        .unwrap();
    let asked = app
        .client
        .post(app.url(&format!(
            "{}/check",
            TestApp::credential_path(&users[2], "john-deere-credentials")
        )))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let types = app.event_types();
    for kind in [
        "CredentialTokensRotated",
        "CredentialChecked",
        "CredentialCheckRequested",
    ] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }

    let live = crate::projections::dump(&app.database);
    assert!(
        live.iter().all(|(_, rows)| !rows.is_empty()),
        "the workload touched every table"
    );
    let printed = app.cli(&["rebuild".as_ref()]);
    assert!(printed.contains("rebuilt every projection"));
    let rebuilt = crate::projections::dump(&app.database);
    for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(&rebuilt) {
        assert_eq!(
            live_rows, rebuilt_rows,
            "table {table} differs after rebuild"
        );
    }
    // The server goes on serving from the rebuilt projections.
    let read: Value = app.credentials_json(&users[2], "raven-credentials").await;
    assert_eq!(read["status"], "UNAUTHENTICATED");
}

/// The user's stream, every event of it.
async fn user_stream(app: &TestApp, user: &str) -> Vec<credential_ledger::store::RecordedEvent> {
    let stream = format!("user:{user}");
    app.service.store().read_stream(&stream, 0).await.unwrap()
}

/// Every version of the user's stream, and every global position, from 1 without a gap.
fn assert_gap_free(app: &TestApp, stream: &[credential_ledger::store::RecordedEvent]) {
    let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=stream.len() as u64).collect::<Vec<_>>(),
        "gap-free stream"
    );
    let positions: Vec<i64> = app
        .select("SELECT position FROM events ORDER BY position")
        .into_iter()
        .map(|row| row[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=positions.len() as i64).collect::<Vec<_>>(),
        "gap-free global positions"
    );
}

/// The projections, rebuilt from the ledger by the CLI, are row for row the live ones.
fn assert_rebuild_equals_live(app: &TestApp) {
    let live = crate::projections::dump(&app.database);
    app.cli(&["rebuild".as_ref()]);
    assert_eq!(crate::projections::dump(&app.database), live);
}

#[tokio::test]
async fn fifty_concurrent_posts_without_a_precondition_all_succeed_and_leave_one_credential() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = providers().remove(2);
    let posts = (0..50).map(|i| {
        let mut body = body.clone();
        body["refreshToken"] = json!(format!("refresh-{i}"));
        let app = &app;
        let user = &user;
        async move { app.post_credentials(user, slug, &body).await }
    });
    let responses = futures::future::join_all(posts).await;
    let mut created = Vec::new();
    for response in responses {
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "no lost race reaches the client"
        );
        created.push(response.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(created.len(), 50);

    let live: Vec<String> = app
        .select(&format!(
            "SELECT id FROM credentials WHERE user_id = '{user}'"
        ))
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    assert_eq!(live.len(), 1, "exactly one live credential");
    assert!(
        created.contains(&json!(live[0])),
        "the live one is one that was acknowledged"
    );
    let stream = user_stream(&app, &user).await;
    assert_eq!(
        stream.len(),
        1 + 50,
        "the user's creation, then one event per acknowledged POST"
    );
    assert_gap_free(&app, &stream);
    assert_rebuild_equals_live(&app);
}

#[tokio::test]
async fn thirty_users_each_attached_three_providers_at_once_all_succeed() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let mut users = Vec::new();
    for _ in 0..30 {
        users.push(app.new_user().await);
    }
    let posts = users.iter().flat_map(|user| {
        seed_providers()
            .into_iter()
            .map(move |(slug, _, body)| (user.clone(), slug, body))
    });
    let responses = futures::future::join_all(posts.map(|(user, slug, body)| {
        let app = &app;
        async move { app.post_credentials(&user, slug, &body).await.status() }
    }))
    .await;
    assert_eq!(responses.len(), 90);
    assert!(
        responses.iter().all(|s| *s == StatusCode::CREATED),
        "{responses:?}"
    );
    for user in &users {
        let read: Value = app.get_user(user).await.json().await.unwrap();
        for (_, object, _) in seed_providers() {
            assert!(read[object].is_object(), "{object} of {user}: {read}");
        }
        let stream = user_stream(&app, user).await;
        assert_eq!(stream.len(), 4, "created, then one event per provider");
    }
    assert_rebuild_equals_live(&app);
}

#[tokio::test]
async fn concurrent_create_only_posts_give_exactly_one_201_and_the_rest_412() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = providers().remove(1);
    let posts = (0..20).map(|i| {
        let mut body = body.clone();
        body["refreshToken"] = json!(format!("refresh-{i}"));
        let app = &app;
        let user = &user;
        async move { app.create_credentials_only(user, slug, &body).await }
    });
    let mut created = Vec::new();
    let mut refused = 0;
    for response in futures::future::join_all(posts).await {
        match response.status() {
            StatusCode::CREATED => created.push(response.json::<Value>().await.unwrap()),
            StatusCode::PRECONDITION_FAILED => {
                crate::helpers::problem(response, 412).await;
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created.len(), refused), (1, 19));
    let stored = app.credentials_json(&user, slug).await;
    assert_eq!(stored["id"], created[0]["id"]);
    assert_eq!(stored["refreshToken"], created[0]["refreshToken"]);
    let stream = user_stream(&app, &user).await;
    assert_eq!(
        stream.len(),
        2,
        "the user's creation and the one credential"
    );
    assert_gap_free(&app, &stream);
}

#[tokio::test]
async fn concurrent_profile_updates_each_answer_with_the_profile_they_wrote() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let puts = (0..40).map(|i| {
        let app = &app;
        let user = &user;
        async move {
            let name = format!("name {i}");
            let answer = app
                .update_user(&json!({"id": user, "name": name, "email": "jane@example.com"}))
                .await;
            (name, answer)
        }
    });
    for (name, answer) in futures::future::join_all(puts).await {
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["name"], json!(name), "an answer shows its own write");
        assert_eq!(body["id"], json!(user));
    }
    // What is stored is the last update the ledger recorded.
    let stream = user_stream(&app, &user).await;
    let last = stream.last().map(|e| e.event.payload());
    let read: Value = app.get_user(&user).await.json().await.unwrap();
    assert_eq!(
        last.map(|p| p["profile"]["name"].clone()),
        Some(read["name"].clone())
    );
    assert_gap_free(&app, &stream);
}

#[tokio::test]
async fn a_database_from_before_last_checked_times_gets_them_from_its_ledger() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = providers().remove(2);
    let created: Value = app
        .post_credentials(&user, slug, &body)
        .await
        .json()
        .await
        .unwrap();
    let credential = created["id"].as_str().unwrap().to_owned();
    let result = credential_ledger::domain::user::CheckResult {
        status: credential_ledger::domain::CredentialStatus::Unauthenticated,
        tokens: None,
        reason: "the provider no longer accepts the refresh token".into(),
    };
    app.service
        .record_check(
            user.parse().unwrap(),
            credential.parse().unwrap(),
            credential_ledger::domain::Provider::Raven,
            result,
            vec![],
            None,
        )
        .await
        .unwrap();
    let checked = app.credentials_json(&user, slug).await;
    assert!(checked["lastCheckedTime"].is_string(), "{checked}");
    // The credentials table's rows (a restart logs in again, so other tables change).
    let credentials = |app: &TestApp| {
        crate::projections::dump(&app.database)
            .into_iter()
            .find(|(table, _)| table == "credentials")
            .unwrap()
    };
    let live = credentials(&app);
    // The credentials table as an older build left it.
    app.sqlite()
        .execute_batch(
            "ALTER TABLE credentials DROP COLUMN last_checked_at;
             ALTER TABLE credentials DROP COLUMN status_reason;",
        )
        .unwrap();
    let app = app.restart(Default::default()).await;
    assert_eq!(app.credentials_json(&user, slug).await, checked);
    assert_eq!(credentials(&app), live);
}
