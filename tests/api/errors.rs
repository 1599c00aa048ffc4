use crate::helpers::{problem, providers, spawn_app, TestApp, BASE};
use crate::snapshot;
use reqwest::Method;

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn framework_errors_are_problem_json_and_write_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = providers().remove(2);
    let path = TestApp::credential_path(&user, slug);
    let before = app.event_count();

    let malformed = raw_post(
        &app,
        &path,
        Some("application/json"),
        b"{\"clientId\": ".to_vec(),
    )
    .await;
    snapshot!("error_malformed_json", problem(malformed, 400).await);

    let not_json = raw_post(
        &app,
        &path,
        Some("text/plain"),
        body.to_string().into_bytes(),
    )
    .await;
    snapshot!("error_wrong_content_type", problem(not_json, 415).await);
    let form = raw_post(
        &app,
        &path,
        Some("application/x-www-form-urlencoded"),
        b"clientId=x".to_vec(),
    )
    .await;
    problem(form, 415).await;

    let mut huge = body.clone();
    huge["clientId"] = serde_json::json!("x".repeat(100 * 1024));
    let oversized = raw_post(
        &app,
        &path,
        Some("application/json"),
        huge.to_string().into_bytes(),
    )
    .await;
    snapshot!("error_body_too_large", problem(oversized, 413).await);

    let mut long = body.clone();
    long["clientId"] = serde_json::json!("x".repeat(20 * 1024));
    problem(
        raw_post(
            &app,
            &path,
            Some("application/json"),
            long.to_string().into_bytes(),
        )
        .await,
        400,
    )
    .await;

    let not_an_object = raw_post(&app, &path, Some("application/json"), b"[1, 2]".to_vec()).await;
    problem(not_an_object, 400).await;

    let bad_uuid = app.get_credentials("not-a-uuid", slug).await;
    snapshot!("error_bad_uuid", problem(bad_uuid, 400).await);
    problem(app.get_user("12345").await, 400).await;

    let unknown = app
        .send(
            Method::GET,
            &format!("{BASE}/nothing-here"),
            Some(&app.token),
            None,
        )
        .await;
    snapshot!("error_unknown_route", problem(unknown, 404).await);

    let wrong_method = app.send(Method::PATCH, &path, Some(&app.token), None).await;
    assert_eq!(wrong_method.headers()["allow"], "GET, POST, DELETE");
    snapshot!("error_wrong_method", problem(wrong_method, 405).await);
    let users_put_only = app
        .send(
            Method::PATCH,
            &format!("{BASE}/users"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(users_put_only.headers()["allow"], "GET, POST, PUT");
    problem(users_put_only, 405).await;

    assert_eq!(app.event_count(), before, "nothing is written on a 4xx");
}

#[tokio::test]
async fn leafs_curl_without_a_content_type_still_works() {
    // John Deere's page posts with `curl -d` and no `Content-Type`: curl sends a form type.
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (slug, _, body) = providers().remove(1);
    let response = raw_post(
        &app,
        &TestApp::credential_path(&user, slug),
        Some("application/x-www-form-urlencoded"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 201);
    let no_type = raw_post(
        &app,
        &TestApp::credential_path(&user, slug),
        None,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(no_type.status(), 201);
}

#[tokio::test]
async fn no_client_mistake_gets_a_server_error() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let paths = [
        format!("{BASE}/users"),
        format!("{BASE}/users/{user}"),
        format!("{BASE}/users/{user}/raven-credentials"),
        format!("{BASE}/users/{user}/raven-credentials/status"),
        format!("{BASE}/users/%00/raven-credentials/events"),
        format!("{BASE}/users/{user}/unknown-credentials"),
        "/api/authenticate".to_owned(),
        "/health/".to_owned(),
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"null",
        b"\"text\"",
        b"{\"a\":{\"b\":[1,2,{}]}}",
        b"\xff\xfe",
        b"{}",
    ];
    for path in &paths {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
        ] {
            for body in bodies {
                let response = app
                    .client
                    .request(method.clone(), app.url(path))
                    .bearer_auth(&app.token)
                    .header("Content-Type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status().is_client_error() || response.status().is_success(),
                    "{method} {path} with {body:?} answered {}",
                    response.status()
                );
            }
        }
    }
}

#[tokio::test]
async fn only_canonical_ids_plain_or_gzip_bodies_and_json_without_repeated_members_are_accepted() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before = app.event_count();
    let simple = user.replace('-', "");
    for other in [
        format!("urn:uuid:{user}"),
        format!("{{{user}}}"),
        simple.clone(),
    ] {
        for method in [Method::DELETE, Method::GET] {
            let answer = app
                .send(
                    method,
                    &format!("{BASE}/users/{other}"),
                    Some(&app.token),
                    None,
                )
                .await;
            problem(answer, 400).await;
        }
    }
    let body = serde_json::json!({"id": format!("urn:uuid:{user}"), "name": "renamed"});
    let put = app
        .send(
            Method::PUT,
            &format!("{BASE}/users"),
            Some(&app.token),
            Some(&body),
        )
        .await;
    problem(put, 400).await;

    let repeated = br#"{"name": "first", "email": "a@example.com", "name": "second"}"#.to_vec();
    let answer = raw_post(
        &app,
        &format!("{BASE}/users"),
        Some("application/json"),
        repeated,
    )
    .await;
    let detail = problem(answer, 400).await;
    assert!(
        detail["detail"]
            .as_str()
            .unwrap()
            .contains("`name` appears twice"),
        "{detail}"
    );

    let brotli = app
        .client
        .post(app.url(&format!("{BASE}/users")))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "br")
        .body(r#"{"name": "compressed?"}"#)
        .send()
        .await
        .unwrap();
    problem(brotli, 415).await;
    assert_eq!(app.event_count(), before, "nothing was written");
    let still = app
        .send(
            Method::GET,
            &format!("{BASE}/users/{user}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(still.status(), 200, "the user is still there");
}

#[tokio::test]
async fn stalled_request_bodies_are_cut_off_and_do_not_pile_up() {
    use std::io::{Read, Write};
    let app = crate::helpers::spawn_configured(None, |s| {
        s.connections.request_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST {BASE}/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.token
    );
    // Stalled connections, each halfway through its body (and some that sent nothing).
    let stalled: Vec<std::net::TcpStream> = (0..200)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            if i % 2 == 0 {
                stream.write_all(head.as_bytes()).unwrap();
            }
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            stream
        })
        .collect();
    let answers = tokio::task::spawn_blocking(move || {
        stalled
            .into_iter()
            .map(|mut stream| {
                let mut answer = String::new();
                // Ends when the server closes the connection (or after 5 s, failing below).
                let closed = stream.read_to_string(&mut answer).is_ok();
                (closed, answer)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, (closed, answer)) in answers.iter().enumerate() {
        assert!(closed, "connection {i} is still open: {answer:?}");
        if i % 2 == 0 {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("application/problem+json"), "{answer}");
        }
    }
    assert_eq!(app.list_users("").await.status(), 200, "the server goes on");
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers[0], numbers[1],
        "the soft open-file limit was raised: {open_files}"
    );
}
