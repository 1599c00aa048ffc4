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
            &database,
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
        !said.contains("password="),
        "no connection secret in the message"
    );
}
