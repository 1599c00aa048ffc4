//! The binary as a newcomer runs it: first start, owner creation, the OpenAPI export.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/projections.rs"]
mod projections;
#[path = "common/server.rs"]
mod server;
use server::{loopback_token_urls, Server, BIN};

/// Logs in over HTTP and returns the bearer token.
async fn bearer(client: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let login: serde_json::Value = client
        .post(format!("{base}/api/authenticate"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["id_token"].as_str().expect("logged in").to_owned()
}

fn login(port: u16, username: &str, password: &str) -> u16 {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        client
            .post(format!("http://127.0.0.1:{port}/api/authenticate"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn the_first_start_creates_the_folder_and_an_owner_whose_login_works() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("fresh").join("ledger.sqlite");
    let server = Server::start(&database);
    assert!(database.exists(), "the folder and database were created");
    let username = server.printed("username: ").expect("username printed");
    let password = server.printed("password: ").expect("password printed");
    assert_eq!(login(server.port, &username, &password), 200);
    assert_eq!(login(server.port, &username, "wrong"), 401);
    drop(server);

    // A second start finds the owner and prints no password.
    let server = Server::start(&database);
    assert_eq!(login(server.port, &username, &password), 200);
    let printed = server.all_printed();
    assert!(
        printed.iter().all(|l| !l.contains("password:")),
        "{printed:?}"
    );
}

/// Runs `owner create`, writing `password` to its stdin.
fn create_owner(
    database: &std::path::Path,
    username: &str,
    password: &str,
) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args([
            "--database",
            database.to_str().unwrap(),
            "owner",
            "create",
            "--username",
            username,
        ])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn owner_create_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let output = create_owner(&database, "carol", "carols long password");
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("carols long password"));
    let again = create_owner(&database, "carol", "another long password");
    assert!(!again.status.success(), "a username is taken once");

    let server = Server::start(&database);
    assert_eq!(login(server.port, "carol", "carols long password"), 200);
    let printed = server.all_printed();
    assert!(
        printed.iter().all(|l| !l.contains("password:")),
        "an owner exists: no bootstrap"
    );
}

#[test]
fn the_openapi_subcommand_prints_the_exported_document() {
    let output = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(output.status.success());
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), file);
}

/// Runs a server with debug logging, posts known secrets through every endpoint that takes
/// them, and checks that neither its logs nor (with --mask-secrets) its answers carry them.
#[test]
fn secrets_never_reach_the_logs_and_mask_secrets_hides_them_from_answers() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let server = Server::start_with(
        &database,
        &["--mask-secrets", "--token-url", &loopback_token_urls()],
        &[("RUST_LOG", "debug")],
    );
    let (port, password) = (server.port, server.printed("password: ").unwrap());

    let secrets = [
        "LOGLEAK-refresh-91c2",
        "LOGLEAK-secret-91c2",
        "LOGLEAK-private-91c2",
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let token = bearer(&client, &base, "admin", &password).await;
        let api = format!("{base}/services/usermanagement/api");
        let user: serde_json::Value = client
            .post(format!("{api}/users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "log test"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = user["id"].as_str().unwrap();
        let mut answers = Vec::new();
        let raven = serde_json::json!({"clientId": "id", "clientSecret": secrets[1], "refreshToken": secrets[0]});
        let ag = serde_json::json!({"refreshToken": secrets[0], "publicKey": "pk", "privateKey": secrets[2]});
        for (slug, body) in [("raven-credentials", raven), ("ag-leader-credentials", ag)] {
            let url = format!("{api}/users/{user}/{slug}");
            let post = client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
            answers.push(post.text().await.unwrap());
            answers.push(client.get(&url).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
        }
        answers.push(client.get(format!("{api}/users/{user}")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
        // A bad body echoing a secret-like value, and a check against a closed port.
        let bad = serde_json::json!({"clientSecret": secrets[1], "bogus": secrets[0]});
        answers.push(client.post(format!("{api}/users/{user}/raven-credentials")).bearer_auth(&token).json(&bad).send().await.unwrap().text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        answers.push(client.get(format!("{api}/users/{user}/raven-credentials/events")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
        answers
    });
    let logs = server.logs.clone();
    drop(server); // killed: its logs are complete
    std::thread::sleep(Duration::from_millis(100));
    let logs = logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("/raven-credentials"),
        "the requests were logged (the grep can find things)"
    );
    assert!(
        logs.contains("checked") || logs.contains("check"),
        "the worker ran: {logs}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} is in the server's logs");
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "{secret} is in an answer despite --mask-secrets: {answer}"
            );
        }
    }
    assert!(answers[0].contains("********"), "{}", answers[0]);
}

/// Kills the server with SIGKILL five times while eight clients write, restarting it each
/// time; every acknowledged write must survive, and the projections must equal a rebuild.
#[test]
fn acknowledged_writes_survive_repeated_kill_9_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    assert!(create_owner(&database, "crash", "crash test password")
        .status
        .success());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // (user id, credential id) of every acknowledged write.
    let mut users: Vec<String> = Vec::new();
    let mut credentials: Vec<(String, String)> = Vec::new();
    for round in 0..5 {
        let mut server = Server::start(&database);
        let base = format!("http://127.0.0.1:{}", server.port);
        let acknowledged = runtime.block_on(async {
            let token = bearer(&client, &base, "crash", "crash test password").await;
            let writers = (0..8).map(|w| {
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                tokio::spawn(async move {
                    let api = format!("{base}/services/usermanagement/api");
                    let mut done = Vec::new();
                    for i in 0.. {
                        let user = client
                            .post(format!("{api}/users"))
                            .bearer_auth(&token)
                            .json(&serde_json::json!({"name": format!("r{round} w{w} #{i}")}))
                            .send()
                            .await;
                        let Ok(user) = user else { break };
                        if user.status() != 201 {
                            break;
                        }
                        let Ok(user) = user.json::<serde_json::Value>().await else { break };
                        let id = user["id"].as_str().unwrap().to_owned();
                        let body = serde_json::json!({"clientId": "c", "clientSecret": "s", "refreshToken": format!("r{i}")});
                        let credential = client
                            .post(format!("{api}/users/{id}/raven-credentials"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await;
                        let credential = match credential {
                            Ok(r) if r.status() == 201 => r.json::<serde_json::Value>().await.ok(),
                            _ => None,
                        };
                        done.push((id, credential.map(|c| c["id"].as_str().unwrap().to_owned())));
                        if credential_is_none(&done) {
                            break;
                        }
                    }
                    done
                })
            });
            let writers: Vec<_> = writers.collect();
            tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
            server.child.kill().unwrap(); // SIGKILL, mid-write
            let _ = server.child.wait();
            let mut acknowledged = Vec::new();
            for writer in writers {
                acknowledged.extend(writer.await.unwrap());
            }
            acknowledged
        });
        assert!(
            !acknowledged.is_empty(),
            "round {round} wrote something before the kill"
        );
        for (user, credential) in acknowledged {
            if let Some(credential) = credential {
                credentials.push((user.clone(), credential));
            }
            users.push(user);
        }
    }

    // Restart once more and look for every acknowledged write.
    let server = Server::start(&database);
    let base = format!("http://127.0.0.1:{}", server.port);
    runtime.block_on(async {
        let token = bearer(&client, &base, "crash", "crash test password").await;
        let api = format!("{base}/services/usermanagement/api");
        for user in &users {
            let status = client
                .get(format!("{api}/users/{user}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "acknowledged user {user} was lost");
        }
        for (user, credential) in &credentials {
            let read: serde_json::Value = client
                .get(format!("{api}/users/{user}/raven-credentials"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                read["id"],
                credential.as_str(),
                "acknowledged credential of {user} was lost"
            );
        }
    });
    drop(server);
    eprintln!(
        "kill -9 x5: {} users and {} credentials acknowledged, all present",
        users.len(),
        credentials.len()
    );

    let live = projections::dump(&database);
    let rebuild = Command::new(BIN)
        .args(["--database", database.to_str().unwrap(), "rebuild"])
        .output()
        .unwrap();
    assert!(rebuild.status.success());
    assert_eq!(
        projections::dump(&database),
        live,
        "the projections equal a rebuild from the ledger"
    );
}

/// A writer stops once a credential write failed (the server is gone).
fn credential_is_none(done: &[(String, Option<String>)]) -> bool {
    done.last()
        .is_some_and(|(_, credential)| credential.is_none())
}

/// Runs `serve` on `database`, which must refuse to start: waits (bounded) for it to exit with
/// a failure, and returns what it wrote on stderr.
fn refused(database: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["--database", database.to_str().unwrap()])
        .args(args)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not refuse to start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    assert!(!status.success(), "serve started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Creates a user with a Raven credential over HTTP; returns the credential's path.
fn user_with_credential(port: u16, password: &str, secret: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let token = bearer(&client, &base, "admin", password).await;
        let api = format!("{base}/services/usermanagement/api");
        let user: serde_json::Value = client
            .post(format!("{api}/users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "kept"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let path = format!(
            "/services/usermanagement/api/users/{}/raven-credentials",
            user["id"].as_str().unwrap()
        );
        let body =
            serde_json::json!({"clientId": "id", "clientSecret": secret, "refreshToken": "rt"});
        let created = client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        path
    })
}

/// The credential at `path` as the owner reads it (status code, body).
fn read_credential(port: u16, password: &str, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let token = bearer(&client, &base, "admin", password).await;
        let read = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (read.status().as_u16(), read.text().await.unwrap())
    })
}

#[test]
fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let first = Server::start(&database);
    let stderr = refused(&database, &[]);
    assert!(
        stderr.contains("already being served by another process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "{stderr}"
    );
    // The first goes on; once it is gone, the database can be served again.
    let password = first.printed("password: ").unwrap();
    assert_eq!(login(first.port, "admin", &password), 200);
    drop(first);
    let second = Server::start(&database);
    assert_eq!(login(second.port, "admin", &password), 200);
}

#[test]
fn a_missing_master_key_is_refused_while_the_database_holds_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let key = dir.path().join("master.key");
    let server = Server::start(&database);
    let password = server.printed("password: ").unwrap();
    let url = user_with_credential(server.port, &password, "kept-secret-5d1e");
    drop(server);

    let aside = dir.path().join("master.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let stderr = refused(&database, &[]);
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("missing, but the database holds data keys"),
        "{stderr}"
    );
    assert!(!key.exists(), "no new key file was made");
    // Another key file (say, a wrong one restored) is refused too.
    std::fs::write(
        &key,
        "0badc0de AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let stderr = refused(&database, &[]);
    assert!(stderr.contains("does not hold master key"), "{stderr}");

    std::fs::rename(&aside, &key).unwrap();
    let server = Server::start(&database);
    let (status, body) = read_credential(server.port, &password, &url);
    assert_eq!(status, 200);
    assert!(body.contains("kept-secret-5d1e"), "{body}");
}

#[test]
fn a_damaged_or_emptied_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let server = Server::start(&database);
    let password = server.printed("password: ").unwrap();
    for i in 0..20 {
        user_with_credential(server.port, &password, &format!("secret-{i}"));
    }
    drop(server);
    let users_page: usize = {
        // Everything into the main file, as after a clean shutdown.
        let conn = rusqlite::Connection::open(&database).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        conn.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'users'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    // Random-looking bytes over the page of the users table (16 KiB pages, numbered from 1).
    let mut damaged = std::fs::read(&database).unwrap();
    let page = 16 * 1024;
    let start = (users_page - 1) * page;
    let mut x: u32 = 0x9e37_79b9;
    for byte in &mut damaged[start..start + page] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    std::fs::write(&database, &damaged).unwrap();
    let stderr = refused(&database, &[]);
    assert!(stderr.contains("failed its integrity check"), "{stderr}");
    assert!(stderr.contains("restore it from a backup"), "{stderr}");
    // An operator may serve it as it is, knowingly; once a read meets the damage, /health says so.
    let server = Server::start_with(&database, &["--skip-integrity-check"], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (users, health) = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{}", server.port);
        let token = bearer(&client, &base, "admin", &password).await;
        let users = client
            .get(format!("{base}/services/usermanagement/api/users?size=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        (
            users,
            (health.status().as_u16(), health.text().await.unwrap()),
        )
    });
    assert_eq!(users, 500, "the damaged page is read");
    assert_eq!(health.0, 503, "{health:?}");
    assert!(health.1.contains("the database is damaged"), "{health:?}");
    drop(server);

    std::fs::write(&database, b"").unwrap();
    let _ = std::fs::remove_file(dir.path().join("ledger.sqlite-wal"));
    let stderr = refused(&database, &[]);
    assert!(
        stderr.contains("is empty, but the master key file"),
        "{stderr}"
    );
}

#[test]
fn data_files_are_private_and_a_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let database = folder.join("ledger.sqlite");
    let server = Server::start(&database);
    let password = server.printed("password: ").unwrap();
    user_with_credential(server.port, &password, "s");
    assert_eq!(mode(&folder), 0o700, "the data folder");
    for file in [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        "master.key",
    ] {
        assert_eq!(mode(&folder.join(file)), 0o600, "{file}");
    }
    drop(server);
    let key = folder.join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(&database);
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("the master key file can be read by other users"),
        "{logs}"
    );
    assert_eq!(
        mode(&database),
        0o600,
        "a database file others could read is made private"
    );
}

/// The server's peak resident memory (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

#[test]
fn a_password_spray_from_64_addresses_neither_exhausts_memory_nor_starves_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    // The default login limits; 64 addresses get 30 attempts a minute each.
    let server = Server::start_with(
        &database,
        &[],
        &[
            ("CREDENTIAL_LEDGER_LOGIN_RATE", "10"),
            ("RUST_LOG", "warn,credential_ledger=info"),
        ],
    );
    let (port, password) = (server.port, server.printed("password: ").unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let spray_for = Duration::from_secs(10);
    let (statuses, latencies) = runtime.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let owner = reqwest::Client::builder().no_proxy().build().unwrap();
        let token = bearer(&owner, &base, "admin", &password).await;
        let until = Instant::now() + spray_for;
        let sprayers = (0..64u8).map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .local_address(std::net::IpAddr::from([127, 0, 1, i + 2]))
                    .build()
                    .unwrap();
                let mut statuses = Vec::new();
                let mut n = 0u32;
                while Instant::now() < until {
                    n += 1;
                    let body = serde_json::json!({"username": format!("user-{i}-{n}"), "password": "guess-guess"});
                    if let Ok(r) = client.post(format!("{base}/api/authenticate")).json(&body).send().await {
                        statuses.push(r.status().as_u16());
                    }
                }
                statuses
            })
        });
        let sprayers: Vec<_> = sprayers.collect();
        let mut latencies = Vec::new();
        while Instant::now() < until {
            let started = Instant::now();
            let read = owner
                .get(format!("{base}/services/usermanagement/api/users"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), 200);
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut statuses = Vec::new();
        for sprayer in sprayers {
            statuses.extend(sprayer.await.unwrap());
        }
        (statuses, latencies)
    });
    let peak = peak_rss_mib(server.child.id());
    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    eprintln!(
        "spray of 64 addresses for {spray_for:?}: {} attempts ({} answered 401, {} 429), \
         server peak RSS {peak:.1} MiB, owner GET median {median:?} over {} reads",
        statuses.len(),
        count(401),
        count(429),
        latencies.len()
    );
    assert!(count(401) > 0, "passwords were checked");
    assert!(count(429) > 0, "and the rest refused");
    assert_eq!(
        statuses.len(),
        count(401) + count(429),
        "nothing else: {statuses:?}"
    );
    assert!(peak < 256.0, "peak RSS {peak:.1} MiB");
}
