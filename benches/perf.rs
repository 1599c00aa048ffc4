//! `cargo bench --bench perf`: loads the release server over HTTP on loopback with `wrk` and
//! prints every figure of the performance targets beside its baseline from the same run, and
//! the ratio. Creates and credential reads run in three rounds alternating with their
//! baselines, half of BENCH_SECONDS each. Scale with BENCH_SECONDS (per load, default 8),
//! BENCH_EVENTS (ledger size for the replay phase, default 1 000 000), BENCH_CREDENTIALS and
//! BENCH_EXCHANGES (the exchange-log phase, default 100 000 and 10 000 000). BENCH_SERVER runs the load phases
//! against another build of the server (to compare two versions on the same ledgers).
//! BENCH_PHASES picks phases (a comma list of writes, attach, reads, mixed, postgres, replay,
//! exchanges; postgres needs BENCH_POSTGRES, a cluster's conninfo;
//! reads needs writes; mixed runs two loads of BENCH_MIXED_SECONDS, default 60), and BENCH_KEEP=1 keeps the ledgers under target/tmp/perf for a closer look. Needs
//! `wrk` (apt install wrk).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_ledger::app::crypto::{KeySource, Keyring};
use credential_ledger::app::{Secrets, Service};
use credential_ledger::domain::event::{ExchangeMeta, IssuedTokens, UserProfile};
use credential_ledger::domain::{
    Clock, CredentialId, CredentialStatus, DomainEvent, ExchangeId, OwnerId, Provider, SystemClock,
    UserId,
};
use credential_ledger::store::{
    ExchangeContent, PostgresStore, SharedStore, SideWrites, SqliteStore, StoreOptions,
    StreamAppend,
};

/// The server under test: this build, or `BENCH_SERVER`.
fn server_binary() -> PathBuf {
    std::env::var_os("BENCH_SERVER")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credential-ledger")))
}
const PASSWORD: &str = "bench-password-not-secret";
const CONNECTIONS: u32 = 64;
const CREDENTIAL_BODY: &str = r#"{"clientKey":"key","clientSecret":"secret","refreshToken":"refresh","clientEnvironment":"PRODUCTION"}"#;
const USER_BODY: &str =
    r#"{"name":"Jane Grower","email":"jane@example.com","externalId":"grower-42"}"#;
/// Users whose credentials the attach phase replaces, all at once.
const ATTACH_USERS: u64 = 500;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the release server on `database` and waits until `/health` answers; returns it
    /// and how long that took.
    fn start(database: &Path, extra: &[&str]) -> (Server, Duration) {
        Server::start_env(database, extra, &[])
    }

    /// As `start`, with `env` set for the server.
    fn start_env(database: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Server, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let child = Command::new(server_binary())
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--no-health-checks",
            ])
            .args(["--owner-rate", "1000000000", "--database"])
            .arg(database)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::blocking::Client::new();
        for _ in 0..20_000 {
            if let Ok(r) = client.get(format!("{}/health", server.base)).send() {
                if r.status().is_success() {
                    return (server, started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the server did not start");
    }

    /// Peak resident set size so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// A size from `/proc/PID/status` (`VmRSS:`, `RssAnon:`, …), in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// The resident set now: `total (anonymous + file-backed)`, in MiB.
    fn rss_now(&self) -> String {
        format!(
            "{:.1} ({:.1} + {:.1})",
            self.status_mib("VmRSS:"),
            self.status_mib("RssAnon:"),
            self.status_mib("RssFile:")
        )
    }

    /// Posts a John Deere credential with real secrets to each of `users`, through the API.
    fn post_credentials(&self, token: &str, users: &[String]) {
        let client = reqwest::blocking::Client::new();
        for user in users {
            let answer = client
                .post(format!(
                    "{}/services/usermanagement/api/users/{user}/john-deere-credentials",
                    self.base
                ))
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .body(CREDENTIAL_BODY)
                .send()
                .unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        }
    }

    fn login(&self) -> String {
        let answer: serde_json::Value = reqwest::blocking::Client::new()
            .post(format!("{}/api/authenticate", self.base))
            .json(&serde_json::json!({"username": "bench", "password": PASSWORD}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["id_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What wrk measured.
#[derive(Debug)]
struct Load {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

const WRK_SCRIPT: &str = r#"
local ids, n, counter = {}, 0, 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do n = n + 1; ids[n] = line end
  tid = tonumber(tid) or 0
  wrk.method = os.getenv("BENCH_METHOD")
  wrk.body = os.getenv("BENCH_BODY") ~= "" and os.getenv("BENCH_BODY") or nil
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
  prefix, suffix = os.getenv("BENCH_PREFIX"), os.getenv("BENCH_SUFFIX")
  random_ids = os.getenv("BENCH_RANDOM_IDS") == "1"
  math.randomseed(1234 + tid)
end
function request()
  counter = counter + 1
  -- thread t takes ids t+1, t+3, …: no two connections work on the same user at once; or,
  -- with BENCH_RANDOM_IDS, any id, so that concurrent requests meet on the same user
  local i = ((counter * 2 + tid) % n) + 1
  if random_ids then i = math.random(n) end
  return wrk.format(nil, prefix .. ids[i] .. suffix)
end
"#;

/// Runs wrk: `method` on `prefix + id + suffix` for ids from `ids` in turn (or, with
/// `random_ids`, at random).
#[allow(clippy::too_many_arguments)]
fn wrk(
    dir: &Path,
    base: &str,
    token: &str,
    method: &str,
    prefix: &str,
    ids: &[String],
    suffix: &str,
    body: &str,
    connections: u32,
    seconds: u64,
    random_ids: bool,
) -> Load {
    let script = dir.join("bench.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join("\n") + "\n").unwrap();
    let out = Command::new("wrk")
        .args([
            &format!("-t{}", connections.min(2)),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .env("BENCH_IDS", &ids_file)
        .env("BENCH_METHOD", method)
        .env("BENCH_PREFIX", prefix)
        .env("BENCH_SUFFIX", suffix)
        .env("BENCH_BODY", body)
        .env("BENCH_TOKEN", token)
        .env("BENCH_RANDOM_IDS", if random_ids { "1" } else { "0" })
        .output()
        .expect("run wrk (apt install wrk)");
    parse_wrk(&out)
}

/// The rate, p99 and non-2xx count that wrk printed.
fn parse_wrk(out: &std::process::Output) -> Load {
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.trim_start()[prefix.len()..].split_whitespace().next())
            .map(str::to_owned)
    };
    let rps = number("Requests/sec:").and_then(|v| v.parse().ok());
    let Some(rps) = rps else {
        panic!(
            "wrk printed no rate:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p99_ms = number("99%").map_or(f64::NAN, |v| {
        let (num, factor) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (v.as_str(), f64::NAN)
        };
        num.parse::<f64>().unwrap_or(f64::NAN) * factor
    });
    let errors = number("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Load {
        rps,
        p99_ms,
        errors,
    }
}

/// A mix of reads and writes over `BENCH_IDS` users at random, per 100 requests: 20 credential
/// replacements, 10 user creates, 2 user list pages of 100, 18 user reads, 50 credential reads.
const MIXED_SCRIPT: &str = r#"
local ids, n = {}, 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do n = n + 1; ids[n] = line end
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
  credential, user = os.getenv("BENCH_CREDENTIAL"), os.getenv("BENCH_USER")
  math.randomseed(4321 + (tonumber(tid) or 0))
end
function request()
  local r, users = math.random(100), "/services/usermanagement/api/users"
  local one = users .. "/" .. ids[math.random(n)]
  if r <= 20 then return wrk.format("POST", one .. "/john-deere-credentials", nil, credential)
  elseif r <= 30 then return wrk.format("POST", users, nil, user)
  elseif r <= 32 then return wrk.format("GET", users .. "?size=100&page=" .. math.random(0, 20))
  elseif r <= 50 then return wrk.format("GET", one)
  else return wrk.format("GET", one .. "/john-deere-credentials") end
end
"#;

/// wrk running `MIXED_SCRIPT` over `users`.
fn mixed_load(dir: &Path, base: &str, token: &str, users: &[String], seconds: u64) -> Load {
    let script = dir.join("mixed.lua");
    std::fs::write(&script, MIXED_SCRIPT).unwrap();
    let ids_file = dir.join("mixed-ids.txt");
    std::fs::write(&ids_file, users.join("\n") + "\n").unwrap();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .env("BENCH_IDS", &ids_file)
        .env("BENCH_TOKEN", token)
        .env("BENCH_CREDENTIAL", CREDENTIAL_BODY)
        .env("BENCH_USER", USER_BODY)
        .output()
        .expect("run wrk (apt install wrk)");
    parse_wrk(&out)
}

/// wrk on the server's own `GET /health`: the baseline of the read figures.
fn health_load(dir: &Path, base: &str, token: &str, connections: u32, seconds: u64) -> Load {
    wrk(
        dir,
        base,
        token,
        "GET",
        "/health",
        &[String::new()],
        "",
        "",
        connections,
        seconds,
        false,
    )
}

/// wrk on `GET` of a John Deere credential's `path` (`""`, `/events`, …) of `users` in turn.
fn john_deere_load(
    dir: &Path,
    base: &str,
    token: &str,
    users: &[String],
    path: &str,
    connections: u32,
    seconds: u64,
) -> Load {
    wrk(
        dir,
        base,
        token,
        "GET",
        "/services/usermanagement/api/users/",
        users,
        &format!("/john-deere-credentials{path}"),
        "",
        connections,
        seconds,
        false,
    )
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn report(what: &str, value: f64, unit: &str, baseline: &str, base: f64, target: &str) {
    report_ratio(what, value, unit, baseline, base, value / base, target);
}

fn report_ratio(
    what: &str,
    value: f64,
    unit: &str,
    baseline: &str,
    base: f64,
    ratio: f64,
    target: &str,
) {
    println!(
        "{what:<44} {value:>12.1} {unit:<9} | {baseline:<34} {base:>12.1} | ratio {ratio:>7.2} | target {target}"
    );
}

/// Rounds of a load and its baseline, run in turn.
const ROUNDS: usize = 3;

/// Runs the baseline and the measured load in turn, `ROUNDS` times, so that a machine whose
/// speed drifts (a shared one does, by a third over a day) weighs on both alike; prints every
/// round and reports the medians: of each side's rate, and of the rounds' ratios.
fn alternate(
    what: &str,
    baseline: &str,
    target: &str,
    mut base: impl FnMut(usize) -> Load,
    mut measured: impl FnMut(usize) -> Load,
) -> Vec<(Load, Load)> {
    let rounds: Vec<(Load, Load)> = (0..ROUNDS)
        .map(|round| {
            let b = base(round);
            (measured(round), b)
        })
        .collect();
    let line: Vec<String> = rounds
        .iter()
        .map(|(m, b)| format!("{:.0} vs {:.0} ({:.2})", m.rps, b.rps, m.rps / b.rps))
        .collect();
    println!("    rounds, measured vs baseline: {}", line.join(", "));
    let median_of = |f: &dyn Fn(&(Load, Load)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    report_ratio(
        what,
        median_of(&|(m, _)| m.rps),
        "req/s",
        baseline,
        median_of(&|(_, b)| b.rps),
        median_of(&|(m, b)| m.rps / b.rps),
        target,
    );
    rounds
}

/// A new ledger at `path` with `users` users, each with a John Deere credential (sealed
/// placeholders for secrets); their ids.
fn seed_users(path: &Path, users: u64) -> Vec<String> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (rt, ledger, owner) = new_ledger(path);
    seed(&rt, ledger.store(), owner, users, 0, 0)
        .iter()
        .map(|u| u.to_string())
        .collect()
}

/// A ledger with an owner `bench`, whose id is returned.
fn new_ledger(path: &Path) -> (tokio::runtime::Runtime, Service, OwnerId) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = SqliteStore::open(path, StoreOptions::default()).unwrap();
    let keyring = Keyring::open(KeySource::File(path.with_file_name("master.key"))).unwrap();
    let secrets = Secrets::new(Arc::new(keyring), false);
    let ledger = Service::new(Arc::new(store), Arc::new(SystemClock), secrets);
    let owner = rt.block_on(ledger.create_owner("bench", PASSWORD)).unwrap();
    (rt, ledger, owner)
}

/// The master key of the PostgreSQL ledgers (given, as on PostgreSQL it must be).
const PG_MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A new database on the PostgreSQL cluster `cluster` (a conninfo), with the owner `bench`:
/// its conninfo, and a service over it for seeding.
fn new_pg_ledger(cluster: &str) -> (tokio::runtime::Runtime, Service, OwnerId, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let database = format!("{cluster} dbname={name}");
    let store = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(cluster, tokio_postgres::NoTls)
            .await
            .expect("BENCH_POSTGRES answers");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        PostgresStore::open(&database).await.unwrap()
    });
    let keyring = Keyring::open(KeySource::Inline(PG_MASTER_KEY.into())).unwrap();
    let secrets = Secrets::new(Arc::new(keyring), false);
    let ledger = Service::new(Arc::new(store), Arc::new(SystemClock), secrets);
    let owner = rt.block_on(ledger.create_owner("bench", PASSWORD)).unwrap();
    (rt, ledger, owner, database)
}

/// CPU seconds (user + system) used so far by every process named `name`.
fn cpu_seconds_of(name: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| {
            let (comm, rest) = stat.split_once(") ")?;
            let comm = comm.split_once(" (")?.1;
            (comm == name).then_some(())?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

/// Exchanges per credential written together while seeding the exchange log.
const EXCHANGE_RUN: u64 = 10;

/// Appends, straight through the store, `users` users with one John Deere-style credential
/// each, `checks` health-check rounds per credential (checked, status, rotated tokens) and
/// `exchanges` recorded exchanges per credential, a minute apart and written in rounds over all
/// credentials (see `EXCHANGE_RUN`). Returns the user ids.
fn seed(
    rt: &tokio::runtime::Runtime,
    store: &SharedStore,
    owner: OwnerId,
    users: u64,
    checks: u64,
    exchanges: u64,
) -> Vec<UserId> {
    let now = SystemClock.now();
    let provider = Provider::JohnDeere;
    let mut ids = Vec::with_capacity(users as usize);
    let mut appends = Vec::new();
    let mut side = SideWrites::default();
    let mut pending = 0;
    let mut credentials = Vec::with_capacity(users as usize);
    let flush = |appends: &mut Vec<StreamAppend>, side: &mut SideWrites| {
        rt.block_on(store.append(std::mem::take(appends), std::mem::take(side), now))
            .unwrap();
    };
    for n in 0..users {
        let user_id = UserId::new();
        ids.push(user_id);
        let credential_id = CredentialId::new();
        let mut events = vec![
            DomainEvent::UserCreated {
                user_id,
                owner_id: owner,
                profile: UserProfile {
                    name: Some(format!("Grower {n}")),
                    email: Some(format!("grower{n}@example.com")),
                    ..UserProfile::default()
                },
                created_at: now,
            },
            DomainEvent::CredentialCreated {
                user_id,
                credential_id,
                provider,
                fields: serde_json::from_value(serde_json::json!({
                    "clientKey": "client-key", "clientSecret": "v1:sealed-secret-placeholder",
                    "refreshToken": "v1:sealed-refresh-placeholder", "clientEnvironment": "PRODUCTION"
                }))
                .unwrap(),
                created_at: now,
            },
        ];
        for round in 0..checks {
            events.push(DomainEvent::CredentialTokensRotated {
                user_id,
                credential_id,
                provider,
                tokens: IssuedTokens {
                    access_token: Some(format!("v1:sealed-access-{round}")),
                    refresh_token: Some(format!("v1:sealed-refresh-{round}")),
                    expires_at: Some(now),
                    scopes: vec!["ag1".into(), "eq1".into()],
                    fields: Default::default(),
                },
            });
            events.push(DomainEvent::CredentialStatusChanged {
                user_id,
                credential_id,
                provider,
                status: if round % 2 == 0 {
                    CredentialStatus::TemporarilyUnavailable
                } else {
                    CredentialStatus::Ok
                },
                reason: None,
            });
            events.push(DomainEvent::CredentialChecked {
                user_id,
                credential_id,
                provider,
                next_check_at: Some(now),
                consecutive_failures: 0,
                reason: Some("the provider issued a new access token".into()),
            });
        }
        pending += events.len();
        appends.push(StreamAppend {
            stream_id: format!("user:{user_id}"),
            expected_version: 0,
            owner_id: Some(owner),
            events,
        });
        credentials.push((user_id, credential_id));
        if pending >= 20_000 || n + 1 == users {
            flush(&mut appends, &mut side);
            pending = 0;
        }
    }
    // The exchange log much as a running service writes it: in rounds over every credential,
    // oldest first, so that one credential's rows are spread over the whole table rather than
    // side by side. Each round writes EXCHANGE_RUN exchanges per credential (one append each
    // would take a quarter of an hour to seed 10M rows).
    for first in (0..exchanges).step_by(EXCHANGE_RUN as usize) {
        let rounds = first..(first + EXCHANGE_RUN).min(exchanges);
        for (n, &(user_id, credential_id)) in credentials.iter().enumerate() {
            let mut log = Vec::new();
            for round in rounds.clone() {
                let exchange_id = ExchangeId::new();
                let recorded_at = now.minus(chrono::Duration::minutes((exchanges - round) as i64));
                side.contents.push(ExchangeContent {
                    exchange_id,
                    credential_id,
                    recorded_at,
                    headers: r#"{"content-type":"application/json","cache-control":"no-store"}"#.into(),
                    body: r#"{"access_token":"[redacted]","token_type":"bearer","expires_in":43199,"scope":"ag1 eq1"}"#.into(),
                });
                log.push(DomainEvent::ProviderExchangeRecorded {
                    exchange: ExchangeMeta {
                        exchange_id,
                        user_id,
                        credential_id,
                        provider,
                        request_method: "POST".into(),
                        request_url:
                            "https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7/v1/token"
                                .into(),
                        status_code: 200,
                        recorded_at,
                    },
                });
            }
            appends.push(StreamAppend {
                stream_id: format!("exchanges:{credential_id}"),
                expected_version: first,
                owner_id: Some(owner),
                events: log,
            });
            if side.contents.len() >= 20_000 || n + 1 == credentials.len() {
                flush(&mut appends, &mut side);
            }
        }
    }
    ids
}

/// How many 16 KiB writes, each followed by `fdatasync`, one file takes per second: the most
/// commits per second anything durable can make on this disk, one at a time.
fn synced_writes_per_second(path: &Path) -> f64 {
    use std::io::{Seek, Write};
    let mut file = std::fs::File::create(path).unwrap();
    let page = [7u8; 16 * 1024];
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        // Appends, like WAL frames, wrapping at 64 MiB.
        if writes.is_multiple_of(4096) {
            file.rewind().unwrap();
        }
        file.write_all(&page).unwrap();
        file.sync_data().unwrap();
        writes += 1;
    }
    let rate = writes as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    rate
}

fn raw_scan(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT position, stream_id, version, event_type, payload, owner_id, recorded_at FROM events ORDER BY position")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.next().unwrap() {
        let payload: String = row.get(4).unwrap();
        let stream: String = row.get(1).unwrap();
        bytes += payload.len() + stream.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    n
}

fn events_in(path: &Path) -> u64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe harness-less benches
    }
    let seconds = env_or("BENCH_SECONDS", 8);
    // The alternated loads run in rounds of half that each.
    let round_seconds = seconds.div_ceil(2).max(1);
    let target_events = env_or("BENCH_EVENTS", 1_000_000);
    let credentials = env_or("BENCH_CREDENTIALS", 100_000);
    let exchanges = env_or("BENCH_EXCHANGES", 10_000_000);
    let root: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perf");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "credential-ledger performance, {cpus} cores, {CONNECTIONS} wrk connections, {seconds} s per load \
         ({ROUNDS} alternated rounds of {round_seconds} s for creates and credential reads)"
    );
    println!();
    let mut peak_rss: f64 = 0.0;
    let phases = std::env::var("BENCH_PHASES")
        .unwrap_or_else(|_| "writes,attach,reads,mixed,postgres,replay,exchanges".into());
    let phase = |name: &str| phases.split(',').any(|p| p.trim() == name);
    assert!(
        phase("writes") || !phase("reads"),
        "the reads phase reads what the writes phase wrote"
    );

    let mut read_users: Vec<String> = Vec::new();
    // 1. Group commit: durable credential creates, one fsync per request vs batched.
    if phase("writes") {
        let db = root.join("writes/ledger.sqlite");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let (rt, ledger, owner) = new_ledger(&db);
        let users: Vec<String> = seed(&rt, ledger.store(), owner, 200_000, 0, 0)
            .iter()
            .map(|u| u.to_string())
            .collect();
        drop(ledger);
        drop(rt);
        let peak = std::cell::Cell::new(peak_rss);
        let run = |batch: &str, ids: &[String]| {
            let (server, _) = Server::start(&db, &["--write-batch", batch]);
            let token = server.login();
            let load = wrk(
                &root,
                &server.base,
                &token,
                "POST",
                "/services/usermanagement/api/users/",
                ids,
                "/john-deere-credentials",
                CREDENTIAL_BODY,
                CONNECTIONS,
                round_seconds,
                false,
            );
            peak.set(peak.get().max(server.peak_rss_mib()));
            load
        };
        read_users = users[..1000].to_vec();
        // Each round of each side posts to users of its own.
        let slices: Vec<&[String]> = users[1000..]
            .chunks((users.len() - 1000).div_ceil(2 * ROUNDS))
            .collect();
        let rounds = alternate(
            "credential POST, group commit (req/s)",
            "one commit per request (req/s)",
            ">= 10",
            |round| run("1", slices[2 * round]),
            |round| run("256", slices[2 * round + 1]),
        );
        peak_rss = peak.get();
        println!(
            "    non-2xx answers: {} grouped, {} one-per-request",
            rounds.iter().map(|(m, _)| m.errors).sum::<u64>(),
            rounds.iter().map(|(_, b)| b.errors).sum::<u64>()
        );
        println!(
            "    this disk alone: {:.0} synced 16 KiB writes/s (write + fdatasync, one file, 2 s)",
            synced_writes_per_second(&root.join("writes/fsync.probe"))
        );
    }

    // 1b. Attaching credentials to a few users at once (an onboarding flow), against creating
    // users, both durable and grouped: every POST replaces a credential of one of 500 users, so
    // concurrent POSTs meet on the same streams and a lost race must be decided again, never
    // answered 409.
    if phase("attach") {
        let db = root.join("attach/ledger.sqlite");
        let users = seed_users(&db, ATTACH_USERS);
        let (server, _) = Server::start(&db, &[]);
        let token = server.login();
        let post = |path: &str, ids: &[String], suffix: &str, body: &str, random_ids: bool| {
            let seconds = round_seconds;
            let (base, token) = (&server.base, &token);
            wrk(
                &root,
                base,
                token,
                "POST",
                path,
                ids,
                suffix,
                body,
                CONNECTIONS,
                seconds,
                random_ids,
            )
        };
        let random = std::env::var("BENCH_ATTACH_IN_TURN").is_err();
        let rounds = alternate(
            "credential POST over 500 users (req/s)",
            "POST /users (req/s)",
            ">= 0.5",
            |_| {
                post(
                    "/services/usermanagement/api/users",
                    &[String::new()],
                    "",
                    USER_BODY,
                    false,
                )
            },
            |_| {
                let path = "/services/usermanagement/api/users/";
                post(
                    path,
                    &users,
                    "/john-deere-credentials",
                    CREDENTIAL_BODY,
                    random,
                )
            },
        );
        println!(
            "    non-2xx answers: {} credential POST, {} POST /users",
            rounds.iter().map(|(m, _)| m.errors).sum::<u64>(),
            rounds.iter().map(|(_, b)| b.errors).sum::<u64>()
        );
        peak_rss = peak_rss.max(server.peak_rss_mib());
    }

    // 2. Read path: GET of a credential vs the server's own /health.
    if phase("reads") {
        let db = root.join("writes/ledger.sqlite");
        let (server, _) = Server::start(&db, &[]);
        let token = server.login();
        server.post_credentials(&token, &read_users);
        assert!(!read_users.is_empty(), "no credentials to read");
        let rounds = alternate(
            "credential GET (req/s)",
            "GET /health (req/s)",
            ">= 0.6",
            |_| health_load(&root, &server.base, &token, CONNECTIONS, round_seconds),
            |_| {
                john_deere_load(
                    &root,
                    &server.base,
                    &token,
                    &read_users,
                    "",
                    CONNECTIONS,
                    round_seconds,
                )
            },
        );
        println!(
            "    non-2xx answers: {} credential GET, {} health",
            rounds.iter().map(|(m, _)| m.errors).sum::<u64>(),
            rounds.iter().map(|(_, b)| b.errors).sum::<u64>()
        );
        peak_rss = peak_rss.max(server.peak_rss_mib());
    }

    // 2b. Memory under a mix of reads and writes, two loads of BENCH_MIXED_SECONDS (default 60)
    // each on one server: what it holds after a minute, and whether a second minute adds to it.
    if phase("mixed") {
        let mixed_seconds = env_or("BENCH_MIXED_SECONDS", 60);
        let db = root.join("mixed/ledger.sqlite");
        let users = seed_users(&db, ATTACH_USERS);
        let (server, _) = Server::start(&db, &[]);
        let token = server.login();
        // Real secrets in place of the seeding's placeholders, so that every read decrypts.
        server.post_credentials(&token, &users);
        let before = server.rss_now();
        let first = mixed_load(&root, &server.base, &token, &users, mixed_seconds);
        let after_first = server.status_mib("VmRSS:");
        let after_first_split = server.rss_now();
        let second = mixed_load(&root, &server.base, &token, &users, mixed_seconds);
        let after_second = server.status_mib("VmRSS:");
        println!(
            "    mixed load, {CONNECTIONS} connections: {:.0} then {:.0} req/s ({} non-2xx), p99 {:.1} then {:.1} ms",
            first.rps,
            second.rps,
            first.errors + second.errors,
            first.p99_ms,
            second.p99_ms
        );
        println!(
            "    RSS in MiB, total (anonymous + file): after the login {before}, after the first load {after_first_split}, after the second {}; peak {:.1}",
            server.rss_now(),
            server.peak_rss_mib()
        );
        report(
            &format!("RSS after 2 x {mixed_seconds} s of mixed load (MiB)"),
            after_second,
            "MiB",
            &format!("after the first {mixed_seconds} s (MiB)"),
            after_first,
            "< 64 MiB, ratio ~1",
        );
        peak_rss = peak_rss.max(server.peak_rss_mib());
    }

    // 3. Replay: rebuild vs a raw scan of the events table; startup on a large ledger.
    // 2c. PostgreSQL: one node against one SQLite node (durable creates, credential GETs),
    // then credential GETs through one, two and three nodes on one database. Needs
    // BENCH_POSTGRES, a conninfo of a cluster this may create databases on.
    if phase("postgres") {
        match std::env::var("BENCH_POSTGRES")
            .ok()
            .filter(|v| !v.is_empty())
        {
            None => println!(
                "postgres: skipped (set BENCH_POSTGRES to a cluster's conninfo; \
                 tests/e2e/postgres.sh starts a throwaway one)"
            ),
            Some(cluster) => {
                let sqlite_db = root.join("postgres/ledger.sqlite");
                let sqlite_users = seed_users(&sqlite_db, 1000);
                let (rt, ledger, owner, pg_db) = new_pg_ledger(&cluster);
                let pg_users: Vec<String> = seed(&rt, ledger.store(), owner, 1000, 0, 0)
                    .iter()
                    .map(|u| u.to_string())
                    .collect();
                drop(ledger);
                drop(rt);
                let pg_env = [("CREDENTIAL_LEDGER_MASTER_KEY", PG_MASTER_KEY)];
                let pg_path = PathBuf::from(&pg_db);
                let (sqlite, _) = Server::start(&sqlite_db, &[]);
                let (pg, _) = Server::start_env(&pg_path, &[], &pg_env);
                let (sqlite_token, pg_token) = (sqlite.login(), pg.login());
                let create = |server: &Server, token: &str| {
                    wrk(
                        &root,
                        &server.base,
                        token,
                        "POST",
                        "/services/usermanagement/api/users",
                        &[String::new()],
                        "",
                        USER_BODY,
                        CONNECTIONS,
                        round_seconds,
                        false,
                    )
                };
                alternate(
                    "POST /users, PostgreSQL node (req/s)",
                    "POST /users, SQLite node (req/s)",
                    "report",
                    |_| create(&sqlite, &sqlite_token),
                    |_| create(&pg, &pg_token),
                );
                let read = |server: &Server, token: &str, users: &[String]| {
                    john_deere_load(
                        &root,
                        &server.base,
                        token,
                        users,
                        "",
                        CONNECTIONS,
                        round_seconds,
                    )
                };
                alternate(
                    "credential GET, PostgreSQL node (req/s)",
                    "credential GET, SQLite node (req/s)",
                    "report",
                    |_| read(&sqlite, &sqlite_token, &sqlite_users),
                    |_| read(&pg, &pg_token, &pg_users),
                );
                drop(sqlite);
                // GETs spread over one, two and three nodes on the one database, 64
                // connections in all; where the cores go.
                let mut nodes = vec![pg];
                for _ in 0..2 {
                    nodes.push(Server::start_env(&pg_path, &[], &pg_env).0);
                }
                let mut one = 0.0;
                for count in 1..=3usize {
                    let (pg_before, nodes_before) = (
                        cpu_seconds_of("postgres"),
                        cpu_seconds_of("credential-ledg"),
                    );
                    let started = Instant::now();
                    let loads: Vec<Load> = std::thread::scope(|scope| {
                        let handles: Vec<_> = nodes[..count]
                            .iter()
                            .enumerate()
                            .map(|(i, node)| {
                                let dir = root.join(format!("postgres/node{i}"));
                                std::fs::create_dir_all(&dir).unwrap();
                                let (users, token) = (&pg_users, &pg_token);
                                scope.spawn(move || {
                                    john_deere_load(
                                        &dir,
                                        &node.base,
                                        token,
                                        users,
                                        "",
                                        CONNECTIONS / count as u32,
                                        seconds,
                                    )
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    let wall = started.elapsed().as_secs_f64();
                    let rps: f64 = loads.iter().map(|l| l.rps).sum();
                    let errors: u64 = loads.iter().map(|l| l.errors).sum();
                    if count == 1 {
                        one = rps;
                    }
                    report(
                        &format!("credential GET, {count} PostgreSQL node(s) (req/s)"),
                        rps,
                        "req/s",
                        "one node",
                        one,
                        "report",
                    );
                    println!(
                        "    non-2xx answers: {errors}; cores busy: postgres {:.2}, nodes {:.2} (of {cpus})",
                        (cpu_seconds_of("postgres") - pg_before) / wall,
                        (cpu_seconds_of("credential-ledg") - nodes_before) / wall,
                    );
                }
            }
        }
    }

    if phase("replay") {
        let db = root.join("replay/ledger.sqlite");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let (rt, ledger, owner) = new_ledger(&db);
        // 2 user events + 3 per check round + 5 exchanges per user: 22 events a user.
        seed(&rt, ledger.store(), owner, target_events.div_ceil(22), 5, 5);
        let total = events_in(&db);
        drop(ledger);
        drop(rt);
        // The seeding's writes reach the disk first: the kernel writing them back meanwhile
        // would be timed as part of whichever measurement it overlapped.
        std::fs::File::open(&db).unwrap().sync_all().unwrap();
        // Three rounds, each the server binary's own `rebuild` command (its allocator, its
        // settings) timed from spawning the process to its exit, then a raw scan; the medians
        // are reported (single runs on a shared machine swing by a third).
        let mut rebuilds = Vec::new();
        let mut scans = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let out = Command::new(server_binary())
                .args(["rebuild", "--database"])
                .arg(&db)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .output()
                .expect("run rebuild");
            rebuilds.push(started.elapsed());
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && said.contains(&format!("from {total} events")),
                "rebuild failed: {said}"
            );
            let started = Instant::now();
            let scanned = raw_scan(&db);
            scans.push(started.elapsed());
            assert_eq!(scanned, total);
        }
        println!("rebuild rounds: {rebuilds:.2?}; raw scans: {scans:.2?}");
        let (rebuild, scan) = (median(rebuilds), median(scans));
        let rebuild_rate = total as f64 / rebuild.as_secs_f64();
        let scan_rate = total as f64 / scan.as_secs_f64();
        report(
            &format!("rebuild of {total} events (events/s)"),
            rebuild_rate,
            "events/s",
            "raw scan of events (events/s)",
            scan_rate,
            ">= 0.3, and >= 500k/s",
        );

        let empty = root.join("empty/ledger.sqlite");
        std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
        let (rt, ledger, _) = new_ledger(&empty);
        drop(ledger);
        drop(rt);
        let (_, empty_start) = Server::start(&empty, &[]);
        let (_, full_start) = Server::start(&db, &[]);
        report(
            &format!("startup to /health 200, {total} events (ms)"),
            full_start.as_secs_f64() * 1000.0,
            "ms",
            "startup, empty ledger (ms)",
            empty_start.as_secs_f64() * 1000.0,
            "< 200 ms",
        );
    }

    // 4. The exchange log at scale: /events latency.
    if phase("exchanges") {
        let db = root.join("exchanges/ledger.sqlite");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let (rt, ledger, owner) = new_ledger(&db);
        let per_credential = (exchanges / credentials).max(1);
        let started = Instant::now();
        let users: Vec<String> = seed(&rt, ledger.store(), owner, credentials, 0, per_credential)
            .iter()
            .map(|u| u.to_string())
            .collect();
        let seeded = started.elapsed();
        drop(ledger);
        drop(rt);
        let rows: u64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM provider_exchanges", [], |r| r.get(0))
            .unwrap();
        println!(
            "    seeded {rows} exchange rows over {credentials} credentials in {:.0} s",
            seeded.as_secs_f64()
        );
        let (server, start) = Server::start(&db, &[]);
        let token = server.login();
        // Spread over the whole table: every 7th user.
        let sample: Vec<String> = users.iter().step_by(7).cloned().collect();
        let events_load = |connections, seconds| {
            john_deere_load(
                &root,
                &server.base,
                &token,
                &sample,
                "/events",
                connections,
                seconds,
            )
        };
        // The seeding has just written the whole file twice (WAL, then checkpoint), and the
        // sampled rows are not all in the OS page cache: one unmeasured pass, long enough to
        // read every sampled user from a cold cache, reads them in, so that the figures below
        // are of the server rather than of the disk.
        let cold = events_load(16, seconds.max(4) * 4);
        let health = health_load(&root, &server.base, &token, 16, seconds);
        let events = events_load(16, seconds);
        report(
            &format!("/events p99, {rows} rows, 16 conns (ms)"),
            events.p99_ms,
            "ms",
            "/health p99, 16 conns (ms)",
            health.p99_ms,
            "< 5 ms",
        );
        let alone = events_load(1, seconds);
        let health_alone = health_load(&root, &server.base, &token, 1, seconds);
        report(
            &format!("/events p99, {rows} rows, 1 conn (ms)"),
            alone.p99_ms,
            "ms",
            "/health p99, 1 conn (ms)",
            health_alone.p99_ms,
            "< 5 ms",
        );
        println!(
            "    /events {:.0} req/s ({} non-2xx, {per_credential} exchanges per answer); startup on {} events: {:.0} ms",
            events.rps, events.errors, events_in(&db), start.as_secs_f64() * 1000.0
        );
        println!(
            "    first, unmeasured pass from a cold page cache: {:.0} req/s, p99 {:.1} ms, about {:.0} requests for {} sampled users",
            cold.rps,
            cold.p99_ms,
            cold.rps * (seconds.max(4) * 4) as f64,
            sample.len()
        );
        peak_rss = peak_rss.max(server.peak_rss_mib());
    }

    println!(
        "{:<44} {peak_rss:>12.1} MiB       | target < 64 MiB",
        "server peak RSS under load"
    );
    let _ = std::io::stdout().flush();
    if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
        println!("kept {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
}
