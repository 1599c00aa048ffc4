//! The binary as a newcomer runs it: first start, owner creation, the OpenAPI export.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_credential-ledger");

/// A running `serve`, killed when dropped. Its stdout is collected line by line.
struct Server {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `serve` on a free port and waits (bounded) until it listens.
    fn start(database: &std::path::Path) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "--database",
                database.to_str().unwrap(),
                "serve",
                "--bind",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (ports, port) = mpsc::channel();
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = ports.send(digits.parse::<u16>().unwrap());
                }
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(30))
            .expect("the server starts and prints its port");
        Server {
            child,
            port,
            stdout,
        }
    }

    /// A line of stdout starting with `prefix` (after trimming), waiting up to 10 s for it.
    fn printed(&self, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let lines = self.stdout.lock().unwrap();
            if let Some(found) = lines.iter().find_map(|l| l.trim().strip_prefix(prefix)) {
                return Some(found.to_owned());
            }
            drop(lines);
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn all_printed(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
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

#[test]
fn owner_create_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.sqlite");
    let mut child = Command::new(BIN)
        .args([
            "--database",
            database.to_str().unwrap(),
            "owner",
            "create",
            "--username",
            "carol",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carols long password\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("carols long password"));

    let again = Command::new(BIN)
        .args([
            "--database",
            database.to_str().unwrap(),
            "owner",
            "create",
            "--username",
            "carol",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
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
