//! Secrets at rest: sealed in the ledger and projections, shredded on delete, re-wrapped on
//! master key rotation. Checked by reading the SQLite file (and its WAL) as an attacker would.

use crate::helpers::{providers, spawn_app, spawn_configured, TestApp, NEVER_ECHOED};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The database file and its WAL, as bytes.
fn disk(app: &TestApp) -> Vec<u8> {
    let mut bytes = std::fs::read(&app.database).unwrap();
    let wal = app.database.with_extension("sqlite-wal");
    bytes.extend(std::fs::read(wal).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every secret field of some provider.
const SECRET_FIELDS: &[&str] = &[
    "refreshToken",
    "privateKey",
    "clientSecret",
    "accessToken",
    "apiKey",
    "subscriptionKey",
    "accessTokenClient",
    "accessKey",
    "sharedSecret",
    "password",
    "initializationVector",
    "key",
];

/// Distinct secrets for each provider's secret fields.
fn secret_bodies() -> Vec<(&'static str, Value, Vec<String>)> {
    providers()
        .into_iter()
        .enumerate()
        .map(|(i, (slug, _, mut body))| {
            let mut secrets = Vec::new();
            for field in SECRET_FIELDS {
                if body.get(field).is_some() {
                    let secret = format!("TOP-SECRET-{i}-{field}-7f3a9c");
                    body[field] = json!(secret);
                    secrets.push(secret);
                }
            }
            (slug, body, secrets)
        })
        .collect()
}

#[tokio::test]
async fn secrets_are_stored_only_encrypted_yet_read_back_in_clear() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut all = Vec::new();
    for (slug, body, secrets) in secret_bodies() {
        assert_eq!(
            app.post_credentials(&user, slug, &body).await.status(),
            StatusCode::CREATED
        );
        let read: Value = app.credentials_json(&user, slug).await;
        for (field, value) in body.as_object().unwrap() {
            if NEVER_ECHOED.contains(&(slug, field.as_str())) {
                assert!(read.get(field).is_none(), "{slug}.{field} is never shown");
            } else {
                assert_eq!(&read[field], value, "{slug}.{field} reads back in clear");
            }
        }
        all.extend(secrets);
    }
    // Inline credentials on user creation are sealed the same way.
    let (_, object, mut inline) = providers().remove(2);
    inline["clientSecret"] = json!("TOP-SECRET-inline-raven-7f3a9c");
    all.push("TOP-SECRET-inline-raven-7f3a9c".into());
    let created = app
        .create_user(&json!({"name": "inline", object: inline}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created[object]["clientSecret"],
        "TOP-SECRET-inline-raven-7f3a9c"
    );

    let bytes = disk(&app);
    for secret in &all {
        assert!(!contains(&bytes, secret), "{secret} is on disk in clear");
    }
    let sealed: String = app
        .sqlite()
        .query_row(
            "SELECT payload FROM events WHERE event_type = 'CredentialCreated' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        sealed.contains("enc:v1:"),
        "the ledger holds ciphertext: {sealed}"
    );
    assert!(
        contains(&bytes, "ag-public"),
        "non-secret fields stay readable (the test can see)"
    );
}

#[tokio::test]
async fn deleting_or_replacing_a_credential_or_its_user_shreds_its_data_key() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let user = app.new_user().await;
    let keys = |app: &TestApp| -> Vec<String> {
        app.sqlite()
            .prepare("SELECT credential_id FROM data_keys ORDER BY 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut ids = Vec::new();
    for (slug, body, _) in secret_bodies() {
        let created: Value = app
            .post_credentials(&user, slug, &body)
            .await
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys(&app).len(), ids.len(), "one data key per credential");

    app.delete_credentials(&user, "ag-leader-credentials").await;
    assert!(!keys(&app).contains(&ids[0]), "delete shreds the key");
    let (slug, body, _) = secret_bodies().remove(1);
    let replaced: Value = app
        .post_credentials(&user, slug, &body)
        .await
        .json()
        .await
        .unwrap();
    let now = keys(&app);
    assert!(
        !now.contains(&ids[1]) && now.contains(&replaced["id"].as_str().unwrap().to_owned()),
        "replace too"
    );

    // The shredded credentials' ciphertext is still in the append-only ledger, but no key
    // anywhere in the database opens it any more.
    let ledger_rows: i64 = app
        .sqlite()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE event_type = 'CredentialCreated' AND payload ->> 'credentialId' = ?1",
            [&ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ledger_rows, 1);
    app.delete_user(&user).await;
    assert_eq!(
        keys(&app),
        Vec::<String>::new(),
        "deleting the user shreds all its keys"
    );
    let bytes = disk(&app);
    for (_, _, secrets) in secret_bodies() {
        for secret in secrets {
            assert!(!contains(&bytes, &secret), "{secret} is on disk in clear");
        }
    }
}

#[tokio::test]
async fn rotate_key_rewraps_every_data_key_while_the_server_runs() {
    crate::sqlite_only!();
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, body, _) = secret_bodies().remove(2);
    app.post_credentials(&user, slug, &body).await;
    let key_ids = |app: &TestApp| -> Vec<String> {
        app.sqlite()
            .prepare("SELECT DISTINCT key_id FROM data_keys")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before = key_ids(&app);
    let key_file = app.dir.as_ref().unwrap().path().join("master.key");
    let printed = app.cli(&[
        "--master-key-file".as_ref(),
        key_file.as_os_str(),
        "rotate-key".as_ref(),
    ]);
    assert!(printed.contains("1 data keys re-wrapped"), "{printed}");
    let after = key_ids(&app);
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "wrapped with the new master key");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().lines().count(),
        2,
        "the old key is kept"
    );

    // The running server learns the new key from the file on first use.
    let read: Value = app.credentials_json(&user, slug).await;
    assert_eq!(read["clientSecret"], body["clientSecret"]);
    let (slug, body, _) = secret_bodies().remove(0);
    assert_eq!(
        app.post_credentials(&user, slug, &body).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_owner_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    use credential_ledger::config::RateLimits;
    let app = crate::helpers::spawn_configured(None, |s| {
        s.rate_limits = RateLimits {
            owner_per_second: 1,
            owner_burst: 5,
            logins_per_minute: 100,
            logins_per_client_per_minute: 100,
        };
    })
    .await;
    let bob = app.owner_token("bob").await;
    let statuses: Vec<u16> = futures::future::join_all((0..10).map(|_| app.list_users("")))
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "the burst passes: {statuses:?}"
    );
    let limited = app.list_users("").await;
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    crate::snapshot!("rate_limited", crate::helpers::problem(limited, 429).await);
    let other = app
        .send(
            reqwest::Method::GET,
            &format!("{}/users", crate::helpers::BASE),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another owner is not limited"
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_username_and_per_client_without_locking_the_owner_out() {
    use credential_ledger::config::RateLimits;
    let app = crate::helpers::spawn_configured(None, |s| {
        s.rate_limits = RateLimits {
            owner_per_second: 1000,
            owner_burst: 1000,
            logins_per_minute: 3,
            logins_per_client_per_minute: 6,
        };
    })
    .await; // alice logged in once already, from 127.0.0.1
    let attacker = [127, 0, 0, 2];
    for _ in 0..3 {
        let wrong = app
            .login_from(attacker, json!({"username": "alice", "password": "guess"}))
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let guess = app
        .login_from(
            attacker,
            json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await;
    assert!(guess.headers().contains_key("retry-after"));
    crate::helpers::problem(guess, 429).await;
    // The attacker keeps alice's username limited from its address only: alice, from hers,
    // still gets in.
    let alice = app
        .login(json!({"username": "alice", "password": "correct horse battery"}))
        .await;
    assert_eq!(
        alice.status(),
        StatusCode::OK,
        "the owner is not locked out"
    );
    // One address spraying usernames meets its own limit (6 a minute, 4 used).
    for name in ["x1", "x2"] {
        let wrong = app
            .login_from(attacker, json!({"username": name, "password": "guess"}))
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let sprayed = app
        .login_from(attacker, json!({"username": "x3", "password": "guess"}))
        .await;
    crate::helpers::problem(sprayed, 429).await;
}

#[tokio::test]
async fn every_route_answers_another_owners_ids_exactly_as_missing_ones_and_writes_nothing() {
    use reqwest::Method;
    let app = spawn_app().await;
    let alices = app.new_user().await;
    for (slug, body, _) in secret_bodies() {
        app.post_credentials(&alices, slug, &body).await;
    }
    let mallory = app.owner_token("mallory").await;
    let missing = uuid::Uuid::new_v4().to_string();
    let before = app.event_count();
    let base = crate::helpers::BASE;

    let mut probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/users/{{id}}"), None),
        (Method::DELETE, format!("{base}/users/{{id}}"), None),
        (
            Method::PUT,
            format!("{base}/users"),
            Some(json!({"id": "{id}", "name": "taken over"})),
        ),
    ];
    for (slug, body, _) in secret_bodies() {
        let path = format!("{base}/users/{{id}}/{slug}");
        probes.push((Method::GET, path.clone(), None));
        probes.push((Method::POST, path.clone(), Some(body)));
        probes.push((Method::DELETE, path.clone(), None));
        probes.push((Method::GET, format!("{path}/status"), None));
        probes.push((Method::GET, format!("{path}/events"), None));
        probes.push((Method::POST, format!("{path}/check"), None));
    }
    for (method, template, body) in probes {
        let mut answers = Vec::new();
        for id in [&alices, &missing] {
            let path = template.replace("{id}", id);
            let body = body.as_ref().map(|b| {
                serde_json::from_str::<Value>(&b.to_string().replace("{id}", id)).unwrap()
            });
            let response = app
                .send(method.clone(), &path, Some(&mallory), body.as_ref())
                .await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap().replace(id.as_str(), "{id}");
            answers.push((status, text));
        }
        assert_eq!(answers[0].0, 404, "{method} {template}");
        assert_eq!(
            answers[0], answers[1],
            "{method} {template}: another owner's id is told apart from a missing one"
        );
    }
    assert_eq!(
        app.event_count(),
        before,
        "nothing was written across owners"
    );
    let user: Value = app.get_user(&alices).await.json().await.unwrap();
    assert_eq!(user["name"], "Jane Grower");
    assert!(user["ravenCredentials"].is_object());
}

#[tokio::test]
async fn deeply_nested_or_oversized_json_is_a_clear_4xx() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let path = TestApp::credential_path(&user, "raven-credentials");
    let before = app.event_count();
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::problem(response, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{problem}"
    );
    assert_eq!(app.event_count(), before);
}

#[tokio::test]
async fn huge_or_too_many_headers_are_a_431_problem_and_nothing_is_written() {
    let app = spawn_app().await;
    let before = app.event_count();
    let user = json!({"name": "Jane"});
    let huge_header = app
        .client
        .post(app.url(&format!("{}/users", crate::helpers::BASE)))
        .bearer_auth(&app.token)
        .header("X-Padding", "x".repeat(64 * 1024))
        .json(&user)
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::problem(huge_header, 431).await;
    crate::snapshot!("huge_header", problem);
    let mut many = app
        .client
        .post(app.url(&format!("{}/users", crate::helpers::BASE)))
        .bearer_auth(&app.token);
    for n in 0..80 {
        many = many.header(format!("X-Header-{n}"), "v");
    }
    let many = many.json(&user).send().await.unwrap();
    crate::helpers::problem(many, 431).await;
    assert_eq!(app.event_count(), before);
    // Just under the limits the same request is served.
    let fine = app
        .client
        .post(app.url(&format!("{}/users", crate::helpers::BASE)))
        .bearer_auth(&app.token)
        .header("X-Padding", "x".repeat(8 * 1024))
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), StatusCode::CREATED);
}

/// The database, its WAL and its shared-memory index, each as bytes (missing: empty).
fn files(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let path = format!("{}{suffix}", app.database.display());
            let bytes = std::fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// An attacker with a copy of the files and `master.key`: the first 60-byte window of any file
/// that opens as credential `id`'s wrapped data key.
fn unwrappable(
    keyring: &credential_ledger::app::crypto::Keyring,
    key_id: &str,
    files: &[(String, Vec<u8>)],
    id: &str,
) -> Option<(String, usize)> {
    files.iter().find_map(|(path, bytes)| {
        bytes
            .windows(60)
            .position(|window| keyring.unwrap(key_id, window, id).is_ok())
            .map(|offset| (path.clone(), offset))
    })
}

#[tokio::test]
async fn a_shredded_data_key_leaves_no_copy_in_the_database_its_wal_or_its_index() {
    crate::sqlite_only!();
    use credential_ledger::app::crypto::{KeySource, Keyring};
    // Commits without fsync (the test writes 300 times); shredding does not depend on it.
    let app = spawn_configured(None, |s| s.store.synchronous_full = false).await;
    // Enough credentials that the key table spans several pages and splits as it grows.
    let mut users = Vec::new();
    for _ in 0..60 {
        let user = app.new_user().await;
        for (slug, body, _) in secret_bodies().into_iter().take(3) {
            assert_eq!(
                app.post_credentials(&user, slug, &body).await.status(),
                StatusCode::CREATED
            );
        }
        users.push(user);
    }
    let wrapped: Vec<(String, String, Vec<u8>)> = {
        let db = app.sqlite();
        let mut rows = db
            .prepare("SELECT credential_id, key_id, wrapped FROM data_keys")
            .unwrap();
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(wrapped.len(), 180);
    // Shred a third of the keys three ways: delete a credential, replace one, delete a user.
    for user in &users[0..20] {
        assert_eq!(
            app.delete_credentials(user, "ag-leader-credentials")
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    let (slug, body, _) = secret_bodies().remove(1);
    for user in &users[20..40] {
        assert_eq!(
            app.post_credentials(user, slug, &body).await.status(),
            StatusCode::CREATED
        );
    }
    for user in &users[40..60] {
        assert_eq!(app.delete_user(user).await.status(), StatusCode::NO_CONTENT);
    }
    let live: std::collections::HashSet<String> = {
        let db = app.sqlite();
        let mut rows = db.prepare("SELECT credential_id FROM data_keys").unwrap();
        rows.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let shredded: Vec<&(String, String, Vec<u8>)> = wrapped
        .iter()
        .filter(|(id, _, _)| !live.contains(id))
        .collect();
    assert_eq!(shredded.len(), 20 + 20 + 60);

    // Any copy of a wrapped key contains its nonce (first 12 bytes) or its tag (last 16). The
    // writer overwrites them within a second; give it a bounded while.
    let surviving = |files: &[(String, Vec<u8>)]| -> Vec<String> {
        let mut survivors = Vec::new();
        for (id, _, bytes) in &shredded {
            for part in [&bytes[..12], &bytes[bytes.len() - 16..]] {
                for (path, content) in files {
                    if let Some(at) = find(content, part) {
                        survivors.push(format!("{id} in {path} at {at}"));
                    }
                }
            }
        }
        survivors
    };
    let mut left = Vec::new();
    for _ in 0..50 {
        left = surviving(&files(&app));
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        left.is_empty(),
        "{} copies survive: {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );

    // The attacker's way: the master key against every window of every file.
    let keyring = Keyring::open(KeySource::File(
        app.dir.as_ref().unwrap().path().join("master.key"),
    ))
    .unwrap();
    let files = files(&app);
    for (id, key_id, _) in [shredded[0], shredded[shredded.len() - 1]] {
        assert_eq!(
            unwrappable(&keyring, key_id, &files, id),
            None,
            "the shredded key of {id} opens"
        );
    }
    // The scan sees what is there: a live credential's key is found, and opens.
    let (id, key_id, bytes) = wrapped.iter().find(|(id, _, _)| live.contains(id)).unwrap();
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(find(&all, &bytes[..12]).is_some());
    assert!(unwrappable(&keyring, key_id, &files, id).is_some());
}

#[tokio::test]
async fn query_strings_never_reach_the_request_log() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let marker = "QUERYLEAK-7c1d";
    let path = format!(
        "{}/users/{user}?access_token={marker}-token&email={marker}%40example.com",
        crate::helpers::BASE
    );
    let read = app
        .send(reqwest::Method::GET, &path, Some(&app.token), None)
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    // A span is written when it closes, just after the answer.
    let mut logged = false;
    for _ in 0..100 {
        logged = crate::helpers::logs()
            .lines()
            .any(|l| l.contains(&format!("/users/{user}")));
        if logged {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(logged, "the request was logged (the search can find it)");
    let logs = crate::helpers::logs();
    assert!(!logs.contains(marker), "a query string was logged");
}
