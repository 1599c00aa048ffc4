//! Several `serve` nodes on one PostgreSQL database, as a team that outgrew SQLite runs them:
//! writes through every node, each readable at once from the others, one node killed with
//! SIGKILL mid-write. Needs `CREDENTIAL_LEDGER_TEST_POSTGRES` (the README's test command starts
//! a throwaway cluster and sets it); without it the tests say so and pass, except under
//! `CI=true`.

#[path = "common/server.rs"]
mod server;

use serde_json::{json, Value};
use server::{Server, BIN};
use std::process::Command;
use std::time::Duration;

/// Every node's master key: on PostgreSQL it is given, never generated.
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A fresh database on the test cluster, as a conninfo; `None` (said) without a cluster.
async fn fresh_database() -> Option<String> {
    let base = match std::env::var("CREDENTIAL_LEDGER_TEST_POSTGRES") {
        Ok(base) if !base.is_empty() => base,
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but CREDENTIAL_LEDGER_TEST_POSTGRES is not set: PostgreSQL tests cannot be skipped in CI")
        }
        _ => {
            eprintln!("CREDENTIAL_LEDGER_TEST_POSTGRES is not set: PostgreSQL test skipped");
            return None;
        }
    };
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(connection);
    let name = format!("nodes_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    Some(format!("{base} dbname={name}"))
}

async fn connect(database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn cli(database: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["--database", database])
        .args(args)
        .env("CREDENTIAL_LEDGER_MASTER_KEY", MASTER_KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn node(database: &str) -> Server {
    Server::start_on(
        database,
        &[],
        &[("CREDENTIAL_LEDGER_MASTER_KEY", MASTER_KEY)],
    )
}

/// Every projection table, ordered, as text: to compare the live views with a rebuild.
async fn projections(database: &str) -> Vec<String> {
    let client = connect(database).await;
    let mut dump = Vec::new();
    for table in credential_ledger::store::postgres::schema::PROJECTION_TABLES.split(", ") {
        let rows = client
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        dump.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<_, String>(0))),
        );
    }
    dump
}

async fn bearer(client: &reqwest::Client, port: u16) -> String {
    let login: Value = client
        .post(format!("http://127.0.0.1:{port}/api/authenticate"))
        .json(&json!({"username": "nodes", "password": "nodes test password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["id_token"].as_str().expect("logged in").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_database_and_a_killed_one_loses_no_acknowledged_write() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let created = cli(
        &database,
        &["owner", "create", "--username", "nodes", "--password-stdin"],
        Some("nodes test password\n"),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut nodes: Vec<Option<Server>> = (0..3).map(|_| Some(node(&database))).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.as_ref().unwrap().port).collect();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // One owner token works on every node: the token is in the shared ledger.
    let token = bearer(&client, ports[0]).await;

    // Six writers, each creating users through the nodes in turn and reading every one back at
    // once from the next node; 40 writes each (bounded).
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, token, ports) = (client.clone(), token.clone(), ports.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..40usize {
                    let (via, then) = (ports[(w + i) % 3], ports[(w + i + 1) % 3]);
                    let api =
                        |port: u16| format!("http://127.0.0.1:{port}/services/usermanagement/api");
                    let sent = client
                        .post(format!("{}/users", api(via)))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("w{w} #{i}")}))
                        .send()
                        .await;
                    let Ok(response) = sent else { continue };
                    if response.status() != 201 {
                        continue;
                    }
                    let user: Value = response.json().await.unwrap();
                    let id = user["id"].as_str().unwrap().to_owned();
                    // Read your write, from another node (which may be the killed one).
                    if let Ok(read) = client
                        .get(format!("{}/users/{id}", api(then)))
                        .bearer_auth(&token)
                        .send()
                        .await
                    {
                        assert_eq!(
                            read.status(),
                            200,
                            "user {id} written via {via} not readable at once via {then}"
                        );
                    }
                    acknowledged.push(id);
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // SIGKILL the second node mid-write.
    let mut killed = nodes[1].take().unwrap();
    killed.child.kill().unwrap();
    let _ = killed.child.wait();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 100,
        "{} writes acknowledged",
        acknowledged.len()
    );

    // Every acknowledged write is there, through each surviving node.
    for port in [ports[0], ports[2]] {
        let api = format!("http://127.0.0.1:{port}/services/usermanagement/api");
        for id in &acknowledged {
            let status = client
                .get(format!("{api}/users/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "acknowledged user {id} lost (read via {port})");
        }
    }

    // Positions are gap-free, and the views equal a rebuild from the ledger.
    let pg = connect(&database).await;
    let row = pg
        .query_one(
            "SELECT COUNT(*), COALESCE(MIN(position), 0), COALESCE(MAX(position), 0) FROM events",
            &[],
        )
        .await
        .unwrap();
    let (count, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((min, max), (1, count), "positions 1..{count} without a gap");
    drop(nodes);
    let live = projections(&database).await;
    let rebuilt = cli(&database, &["rebuild"], None);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        projections(&database).await,
        live,
        "the views equal a rebuild"
    );
    eprintln!(
        "3 nodes, one killed: {} users acknowledged, all present; {count} events, gap-free",
        acknowledged.len()
    );
}

#[tokio::test]
async fn on_postgresql_a_missing_master_key_is_refused_never_generated() {
    let Some(database) = fresh_database().await else {
        return;
    };
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--database",
            // Trust authentication ignores the password; the message must not show it.
            &format!("{database} password=conninfo-password-never-shown"),
            "owner",
            "create",
            "--username",
            "x",
            "--password-stdin",
        ])
        .env_remove("CREDENTIAL_LEDGER_MASTER_KEY")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no key file was written"
    );
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("on PostgreSQL none is generated"), "{said}");
    assert!(
        !said.contains("conninfo-password-never-shown"),
        "no connection secret in the message: {said}"
    );
}

/// A token endpoint whose refresh tokens are single-use (as Trimble's are): each is accepted
/// once and replaced; a reused or unknown one gets `invalid_grant`. Its answers can be held back
/// for a while. It rotates a token only if the caller is still connected once the answer is
/// ready, as a provider that commits a rotation with its answer does: a request whose node died
/// meanwhile leaves the token as it was. (One that rotates and then cannot deliver the answer
/// loses the token whatever the client does: the README says so.)
#[derive(Default)]
struct SingleUse {
    live: std::sync::Mutex<std::collections::HashSet<String>>,
    refreshed: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    abandoned: std::sync::atomic::AtomicUsize,
    waiting: std::sync::atomic::AtomicUsize,
    delay_ms: std::sync::atomic::AtomicU64,
}

impl SingleUse {
    async fn start() -> (std::sync::Arc<SingleUse>, String) {
        let state = std::sync::Arc::new(SingleUse::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/token",
            listener.local_addr().unwrap().port()
        );
        let serving = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serving.clone().answer(stream));
            }
        });
        (state, url)
    }

    /// Answers the requests of one connection, one at a time.
    async fn answer(self: std::sync::Arc<Self>, mut stream: tokio::net::TcpStream) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = Vec::new();
        loop {
            // One request: its head, then Content-Length bytes of form.
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&buffer[head_end..head_end + length])
                    .unwrap_or_default();
            buffer.drain(..head_end + length);
            self.waiting.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(self.delay_ms.load(SeqCst))).await;
            self.waiting.fetch_sub(1, SeqCst);
            // Still connected? A closed connection reads as 0 bytes (or an error).
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => {
                    self.abandoned.fetch_add(1, SeqCst);
                    return;
                }
            }
            let token = form.get("refresh_token").cloned().unwrap_or_default();
            let (status, body) = if self.live.lock().unwrap().remove(&token) {
                let next = format!("rt-{}", uuid::Uuid::new_v4().simple());
                self.live.lock().unwrap().insert(next.clone());
                self.refreshed.fetch_add(1, SeqCst);
                let body = json!({
                    "access_token": format!("at-{}", uuid::Uuid::new_v4().simple()),
                    "refresh_token": next, "expires_in": 86400, "token_type": "Bearer"
                });
                ("200 OK", body)
            } else {
                self.refused.fetch_add(1, SeqCst);
                ("400 Bad Request", json!({"error": "invalid_grant"}))
            };
            let body = body.to_string();
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn refreshed(&self) -> usize {
        self.refreshed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Events of `event_type` in the ledger.
async fn count_events(database: &str, event_type: &str) -> i64 {
    connect(database)
        .await
        .query_one(
            "SELECT COUNT(*) FROM events WHERE event_type = $1",
            &[&event_type],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits (at most 60 s) until the provider has refreshed `refreshes` tokens and the ledger
/// holds as many checks.
async fn until_refreshed(provider: &SingleUse, database: &str, refreshes: usize) {
    for _ in 0..600 {
        if provider.refreshed() >= refreshes
            && count_events(database, "CredentialChecked").await >= refreshes as i64
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out: {} of {refreshes} refreshes, {} refused",
        provider.refreshed(),
        provider.refused.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// Which of `nodes` has said it leads the checks (waiting up to 20 s).
fn leader(nodes: &[Option<Server>]) -> usize {
    for _ in 0..200 {
        let leading: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
            .filter(|(_, n)| {
                let logs = n.logs.lock().unwrap();
                let led = logs
                    .iter()
                    .rposition(|l| l.contains("now leads the credential checks"));
                let lost = logs.iter().rposition(|l| l.contains("no longer leads"));
                led.is_some() && led > lost
            })
            .map(|(i, _)| i)
            .collect();
        assert!(leading.len() <= 1, "two nodes lead at once: {leading:?}");
        if let [one] = leading[..] {
            return one;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no node leads the checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_refresh_each_single_use_token_once_and_a_killed_leader_is_replaced() {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(database) = fresh_database().await else {
        return;
    };
    let (provider, url) = SingleUse::start().await;
    let created = cli(
        &database,
        &["owner", "create", "--username", "nodes", "--password-stdin"],
        Some("nodes test password\n"),
    );
    assert!(created.status.success());
    let token_url = format!("raven={url}");
    let mut nodes: Vec<Option<Server>> = (0..3)
        .map(|_| {
            Some(Server::start_on(
                &database,
                &["--token-url", &token_url],
                &[("CREDENTIAL_LEDGER_MASTER_KEY", MASTER_KEY)],
            ))
        })
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.as_ref().unwrap().port).collect();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let token = bearer(&client, ports[0]).await;
    let api = |port: u16| format!("http://127.0.0.1:{port}/services/usermanagement/api");

    // 100 credentials, created through the three nodes; each is checked at once, by the leader.
    const CREDENTIALS: usize = 100;
    let mut paths = Vec::new();
    for i in 0..CREDENTIALS {
        let port = ports[i % 3];
        let user: Value = client
            .post(format!("{}/users", api(port)))
            .bearer_auth(&token)
            .json(&json!({"name": format!("grower {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let path = format!("users/{}/raven-credentials", user["id"].as_str().unwrap());
        provider
            .live
            .lock()
            .unwrap()
            .insert(format!("rt-first-{i}"));
        let posted = client
            .post(format!("{}/{path}", api(port)))
            .bearer_auth(&token)
            .json(&json!({"clientId": "c", "clientSecret": "s", "refreshToken": format!("rt-first-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 201);
        paths.push(path);
    }
    until_refreshed(&provider, &database, CREDENTIALS).await;

    let ask_all = |round: usize| {
        let (client, token, paths, ports) =
            (client.clone(), token.clone(), paths.clone(), ports.clone());
        async move {
            for (i, path) in paths.iter().enumerate() {
                // Through any node still up.
                for attempt in 0..3 {
                    let port = ports[(i + round + attempt) % 3];
                    let asked = client
                        .post(format!(
                            "http://127.0.0.1:{port}/services/usermanagement/api/{path}/check"
                        ))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    if asked.is_ok_and(|r| r.status() == 202) {
                        break;
                    }
                }
            }
        }
    };
    // Round 1: every credential asked for a check through the nodes in turn.
    ask_all(1).await;
    until_refreshed(&provider, &database, 2 * CREDENTIALS).await;

    // Round 2: the provider holds its answers back; the leader is killed mid-exchange.
    provider.delay_ms.store(1500, SeqCst);
    let first = leader(&nodes);
    ask_all(2).await;
    for _ in 0..100 {
        if provider.waiting.load(SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(provider.waiting.load(SeqCst) > 0, "exchanges in flight");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut killed = nodes[first].take().unwrap();
    killed.child.kill().unwrap();
    let _ = killed.child.wait();
    let next = leader(&nodes);
    assert_ne!(next, first);
    until_refreshed(&provider, &database, 3 * CREDENTIALS).await;

    // Round 3, on the new leader.
    provider.delay_ms.store(0, SeqCst);
    ask_all(3).await;
    until_refreshed(&provider, &database, 4 * CREDENTIALS).await;

    assert_eq!(
        provider.refused.load(SeqCst),
        0,
        "no refresh token was ever sent twice"
    );
    assert_eq!(
        provider.refreshed(),
        4 * CREDENTIALS,
        "each check refreshed exactly once"
    );
    let survivor = ports[next];
    for path in &paths {
        let credential: Value = client
            .get(format!("{}/{path}", api(survivor)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(credential["status"], "OK", "{path}: {credential}");
        let stored = credential["refreshToken"].as_str().unwrap();
        assert!(
            provider.live.lock().unwrap().contains(stored),
            "{path} holds the live token"
        );
    }
    eprintln!(
        "leader {first} killed mid-exchange ({} exchanges abandoned), {next} took over: {} refreshes, 0 refused",
        provider.abandoned.load(SeqCst),
        provider.refreshed()
    );
    assert!(
        provider.abandoned.load(SeqCst) > 0,
        "the kill interrupted exchanges"
    );
}

/// A node given another master key than the one that wrapped the database's data keys is
/// refused at start, naming the key it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_node_with_another_master_key_is_refused_once_credentials_exist() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let created = cli(
        &database,
        &["owner", "create", "--username", "nodes", "--password-stdin"],
        Some("nodes test password\n"),
    );
    assert!(created.status.success());
    let first = node(&database);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = bearer(&client, first.port).await;
    let api = format!(
        "http://127.0.0.1:{}/services/usermanagement/api",
        first.port
    );
    let user: Value = client
        .post(format!("{api}/users"))
        .bearer_auth(&token)
        .json(&json!({"name": "keyed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let posted = client
        .post(format!(
            "{api}/users/{}/raven-credentials",
            user["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .json(&json!({"clientId": "c", "clientSecret": "s", "refreshToken": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let other_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let mut other = Command::new(BIN)
        .args(["--database", &database, "serve", "--bind", "127.0.0.1:0"])
        .env("CREDENTIAL_LEDGER_MASTER_KEY", other_key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a node that started serving would never exit on its own.
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = other.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = exited else {
        other.kill().unwrap();
        panic!("a node with another master key started serving");
    };
    assert!(!status.success());
    let refused = other.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not hold master key"), "{said}");
    // Nor may one node rotate the key of all of them.
    let rotated = cli(&database, &["rotate-key"], None);
    assert!(!rotated.status.success());
    let said = String::from_utf8_lossy(&rotated.stderr);
    assert!(
        said.contains("rotate-key is not supported on PostgreSQL"),
        "{said}"
    );
}
