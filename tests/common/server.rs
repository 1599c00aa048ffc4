//! A `serve` process as a test starts it: on a free loopback port, its output collected,
//! every provider endpoint pointed at a loopback port where nothing listens.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_credential-ledger");

/// A running `serve`, killed when dropped. Its stdout and stderr (logs) are collected.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's output lines on a thread, calling `each` on every line.
fn collect(
    output: impl std::io::Read + Send + 'static,
    mut each: impl FnMut(&str) + Send + 'static,
) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            each(&line);
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Every provider whose credentials can be checked, at a loopback port where nothing listens:
/// a test's server never calls out to a provider's published endpoint.
pub fn loopback_token_urls() -> String {
    credential_ledger::domain::Provider::ALL
        .iter()
        .filter(|p| p.spec().check.endpoints().is_some())
        .map(|p| {
            let name = credential_ledger::config::short_name(*p);
            format!("{name}=http://127.0.0.1:9/token")
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Server {
    /// Starts `serve` on a free port and waits (bounded) until it listens.
    pub fn start(database: &std::path::Path) -> Server {
        Server::start_with(database, &[], &[])
    }

    pub fn start_with(database: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_on(database.to_str().unwrap(), args, env)
    }

    /// Starts `serve` on `database` (a path or a PostgreSQL conninfo).
    pub fn start_on(database: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args(["--database", database, "serve", "--bind", "127.0.0.1:0"])
            .args(args)
            // The crash test reads a thousand users back at full speed.
            .env("CREDENTIAL_LEDGER_OWNER_RATE", "1000000")
            .env("CREDENTIAL_LEDGER_LOGIN_RATE", "1000000")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("CREDENTIAL_LEDGER_TOKEN_URLS", loopback_token_urls())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap(), |_| {});
        let (ports, port) = mpsc::channel();
        let logs = collect(child.stderr.take().unwrap(), move |line| {
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = ports.send(digits.parse::<u16>().unwrap());
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(30))
            .expect("the server starts and prints its port");
        Server {
            child,
            port,
            stdout,
            logs,
        }
    }

    /// A line of stdout starting with `prefix` (after trimming), waiting up to 10 s for it.
    pub fn printed(&self, prefix: &str) -> Option<String> {
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

    pub fn all_printed(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}
