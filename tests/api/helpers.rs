//! `spawn_app()`: the real server on port 0 over a fresh SQLite file (or, with
//! `CREDENTIAL_LEDGER_TEST_BACKEND=postgres`, a fresh database on the PostgreSQL cluster that
//! `CREDENTIAL_LEDGER_TEST_POSTGRES` names), a clock the test moves, and one typed method per
//! endpoint.

use credential_ledger::app::Service;
use credential_ledger::config::CheckSettings;
use credential_ledger::config::RateLimits;
use credential_ledger::config::Settings;
use credential_ledger::domain::event::{ExchangeMeta, ProviderExchange};
use credential_ledger::domain::time::ManualClock;
use credential_ledger::domain::Clock;
use credential_ledger::domain::{ExchangeId, Provider, Timestamp};
use credential_ledger::startup::Application;
use credential_ledger::store::StoreOptions;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub const BASE: &str = "/services/usermanagement/api";

/// Whether this run's servers are on PostgreSQL (`CREDENTIAL_LEDGER_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("CREDENTIAL_LEDGER_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Ends a test that reads or damages the SQLite file itself (its bytes, its locks, its SQL)
/// when the run is on PostgreSQL, saying so.
#[macro_export]
macro_rules! sqlite_only {
    () => {
        if $crate::helpers::on_postgres() {
            eprintln!("this test reads the SQLite file itself: not run on PostgreSQL");
            return;
        }
    };
}

/// The master key of the PostgreSQL test servers (given there, never generated).
const POSTGRES_MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A fresh database on the test cluster, as a conninfo.
async fn fresh_postgres_database() -> String {
    let cluster = std::env::var("CREDENTIAL_LEDGER_TEST_POSTGRES")
        .expect("CREDENTIAL_LEDGER_TEST_BACKEND=postgres needs CREDENTIAL_LEDGER_TEST_POSTGRES");
    let (client, connection) = tokio_postgres::connect(&cluster, tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(connection);
    let name = format!("api_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{cluster} dbname={name}")
}

/// Every provider: slug, object name in a Leaf user, and a body with the fields Leaf
/// documents for it (`API.md`). The three of the seeds come first (tests pick them by index).
pub fn providers() -> Vec<(&'static str, &'static str, Value)> {
    let mut all = seed_providers();
    all.extend([
        (
            "claas-credentials",
            "claasCredentials",
            json!({"clientKey": "claas-key", "clientSecret": "claas-secret",
                   "refreshToken": "claas-refresh", "clientEnvironment": "PRODUCTION"}),
        ),
        (
            "climate-field-view-credentials",
            "climateFieldViewCredentials",
            json!({"clientId": "cfv-id", "clientSecret": "cfv-secret", "apiKey": "cfv-api-key",
                   "refreshToken": "cfv-refresh"}),
        ),
        (
            "cnhi-credentials",
            "cnhiCredentials",
            json!({"clientId": "cnhi-id", "clientSecret": "cnhi-secret",
                   "subscriptionKey": "cnhi-subscription", "refreshToken": "cnhi-refresh",
                   "clientEnvironment": "STAGE"}),
        ),
        (
            "cnhi-field-ops-credentials",
            "cnhiFieldOpsCredentials",
            json!({"clientId": "fieldops-id", "clientSecret": "fieldops-secret",
                   "subscriptionKey": "fieldops-subscription", "refreshToken": "fieldops-refresh",
                   "clientEnvironment": "PRODUCTION"}),
        ),
        (
            "trimble-credentials",
            "trimbleCredentials",
            json!({"clientId": "trimble-id", "clientSecret": "trimble-secret",
                   "refreshToken": "trimble-refresh"}),
        ),
        (
            "stara-credentials",
            "staraCredentials",
            json!({"apiKey": "stara-api-key", "accessToken": "stara-access",
                   "accessTokenClient": "stara-access-client", "refreshToken": "stara-refresh"}),
        ),
        (
            "raven-slingshot-credentials",
            "ravenSlingshotCredentials",
            json!({"apiKey": "slingshot-api-key", "accessKey": "slingshot-access-key",
                   "sharedSecret": "slingshot-shared-secret"}),
        ),
        (
            "sentera-credentials",
            "senteraCredentials",
            json!({"username": "grower@example.com", "password": "sentera-password",
                   "organizationName": "Grower Farms"}),
        ),
        (
            "agvance-credentials",
            "agvanceCredentials",
            json!({"apiKey": "agvance-api-key", "databaseId": "agvance-db",
                   "username": "agvance-user", "password": "agvance-password",
                   "clientEnvironment": "PRODUCTION"}),
        ),
        (
            "lindsay-credentials",
            "lindsayCredentials",
            json!({"clientId": "lindsay-id", "clientSecret": "lindsay-secret",
                   "refreshToken": "lindsay-refresh", "clientEnvironment": "STAGE"}),
        ),
        (
            "valley-credentials",
            "valleyCredentials",
            json!({"apid": "valley-apid", "initializationVector": "valley-iv", "key": "valley-key",
                   "username": "valley-user", "password": "valley-password"}),
        ),
        (
            "panorama-credentials",
            "panoramaCredentials",
            json!({"clientId": "panorama-id", "username": "panorama-user",
                   "password": "panorama-password", "organizationCode": "panorama-org",
                   "refreshToken": "panorama-refresh", "clientEnvironment": "STAGE"}),
        ),
    ]);
    all
}

/// Fields that a provider's answers never show (Leaf's Sentera and Valley never echo the
/// password): slug and field.
pub const NEVER_ECHOED: &[(&str, &str)] = &[
    ("sentera-credentials", "password"),
    ("valley-credentials", "password"),
];

/// The three providers of the seeds: slug, object name in a Leaf user, a valid body.
pub fn seed_providers() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "ag-leader-credentials",
            "agLeaderCredentials",
            json!({"refreshToken": "ag-refresh", "publicKey": "ag-public", "privateKey": "ag-private"}),
        ),
        (
            "john-deere-credentials",
            "johnDeereCredentials",
            json!({"clientKey": "jd-key", "clientSecret": "jd-secret", "accessToken": "jd-access",
                   "refreshToken": "jd-refresh", "clientEnvironment": "STAGE"}),
        ),
        (
            "raven-credentials",
            "ravenCredentials",
            json!({"clientId": "raven-id", "clientSecret": "raven-secret", "refreshToken": "raven-refresh"}),
        ),
    ]
}

/// An exchange with `slug`'s provider, as the check worker would record it.
pub fn exchange(
    user: &str,
    credential: &str,
    slug: &str,
    status_code: u16,
    recorded_at: Timestamp,
    body: &str,
) -> ProviderExchange {
    let provider = *Provider::ALL
        .iter()
        .find(|p| p.spec().slug == slug)
        .expect("a provider slug");
    ProviderExchange {
        meta: ExchangeMeta {
            exchange_id: ExchangeId::new(),
            user_id: user.parse().unwrap(),
            credential_id: credential.parse().unwrap(),
            provider,
            request_method: "POST".into(),
            request_url: "https://provider.example/oauth/token".into(),
            status_code,
            recorded_at,
        },
        headers: "{\"content-type\":\"application/json\"}".into(),
        body: body.into(),
    }
}

/// Everything the servers of this test binary logged, as the production subscriber writes it
/// (without colours). Tests find their own lines by an id only they know.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("NO_COLOR", "1");
        credential_ledger::telemetry::init_writing_to(|| LogWriter)
    });
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub service: Service,
    pub clock: Arc<ManualClock>,
    pub database: PathBuf,
    /// On PostgreSQL, the database's conninfo.
    pub postgres: Option<String>,
    /// A bearer token of the owner `alice`.
    pub token: String,
    /// The folder of the database; taken by `restart`.
    pub dir: Option<tempfile::TempDir>,
    server: actix_web::dev::ServerHandle,
}

/// Records `exchange` as a background check that found the credential `OK` would (status `OK`,
/// next check in a day); the credential must still be the user's live one.
pub async fn record_exchange(
    app: &TestApp,
    exchange: ProviderExchange,
) -> Result<(), credential_ledger::app::AppError> {
    let meta = exchange.meta.clone();
    let unchanged = credential_ledger::domain::user::CheckResult {
        status: credential_ledger::domain::CredentialStatus::Ok,
        tokens: None,
        reason: "recorded by a test".into(),
    };
    app.service
        .record_check(
            meta.user_id,
            meta.credential_id,
            meta.provider,
            unchanged,
            vec![exchange],
            None,
        )
        .await?;
    Ok(())
}

/// The app without background checks (tests that exercise them use `spawn_app_with`).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(
        CheckSettings {
            enabled: false,
            ..Default::default()
        },
        None,
    )
    .await
}

/// The app with these check settings, over `database` if given (else a fresh one).
pub async fn spawn_app_with(
    health: CheckSettings,
    database: Option<(tempfile::TempDir, PathBuf)>,
) -> TestApp {
    spawn_configured(database, |settings| settings.checks = health).await
}

/// The app with its settings adjusted by `configure`, over `database` if given.
pub async fn spawn_configured(
    database: Option<(tempfile::TempDir, PathBuf)>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_on(database, None, configure).await
}

/// As `spawn_configured`; on PostgreSQL over the database `postgres` if given (else a fresh one).
async fn spawn_on(
    database: Option<(tempfile::TempDir, PathBuf)>,
    postgres: Option<String>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    capture_logs();
    let (dir, database) = database.unwrap_or_else(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("data").join("ledger.sqlite");
        (dir, database)
    });
    let clock = Arc::new(ManualClock::new(
        Timestamp::parse("2026-11-01T12:00:00Z").unwrap(),
    ));
    let (store_at, master_key) = if on_postgres() {
        let conninfo = match postgres {
            Some(conninfo) => conninfo,
            None => fresh_postgres_database().await,
        };
        (
            credential_ledger::config::Database::Postgres(conninfo),
            credential_ledger::app::crypto::KeySource::Inline(POSTGRES_MASTER_KEY.into()),
        )
    } else {
        (
            credential_ledger::config::Database::Sqlite(database.clone()),
            credential_ledger::app::crypto::KeySource::File(dir.path().join("master.key")),
        )
    };
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database: store_at,
        store: StoreOptions::default(),
        workers: 2,
        checks: CheckSettings {
            enabled: false,
            ..Default::default()
        },
        master_key,
        mask_secrets: false,
        // Tests log in often; the rate-limit tests set their own limits.
        rate_limits: RateLimits {
            owner_per_second: 10_000,
            owner_burst: 10_000,
            logins_per_minute: 10_000,
            logins_per_client_per_minute: 10_000,
        },
        connections: Default::default(),
    };
    configure(&mut settings);
    let postgres = match &settings.database {
        credential_ledger::config::Database::Postgres(conninfo) => Some(conninfo.clone()),
        credential_ledger::config::Database::Sqlite(_) => None,
    };
    let app = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let service = app.service().clone();
    let server = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut test = TestApp {
        address,
        client,
        service,
        clock,
        database,
        postgres,
        token: String::new(),
        dir: Some(dir),
        server,
    };
    if test.service.store().count_owners().await.unwrap() == 0 {
        test.token = test.owner_token("alice").await;
    } else {
        test.relogin().await;
    }
    test
}

impl TestApp {
    /// Stops this server and its worker, and starts a new one over the same database (the
    /// clock carries on from where it was).
    pub async fn restart(mut self, health: CheckSettings) -> TestApp {
        self.server.stop(true).await;
        let now = self.clock.now();
        let (dir, database) = (self.dir.take().unwrap(), self.database.clone());
        let postgres = self.postgres.clone();
        drop(self);
        // The old server gives the database up once its last handle on the store is gone
        // (its worker stops a moment after the server).
        let lock = format!("{}.serve-lock", database.display());
        for _ in 0..250 {
            let Ok(file) = std::fs::File::open(&lock) else {
                break;
            };
            if file.try_lock().is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut next = spawn_on(Some((dir, database)), postgres, |settings| {
            settings.checks = health
        })
        .await;
        next.clock.set(now);
        next.relogin().await;
        next
    }

    /// Creates an owner and logs it in.
    pub async fn owner_token(&self, username: &str) -> String {
        self.service
            .create_owner(username, "correct horse battery")
            .await
            .expect("owner created");
        let response = self
            .login(json!({"username": username, "password": "correct horse battery"}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["id_token"].as_str().unwrap().to_owned()
    }

    /// Moves the clock and logs `alice` in again (her token lives 24 hours).
    pub async fn advance_clock(&mut self, by: chrono::Duration) {
        self.clock.advance(by);
        self.relogin().await;
    }

    /// Logs `alice` in again.
    pub async fn relogin(&mut self) {
        let response = self
            .login(json!({"username": "alice", "password": "correct horse battery"}))
            .await;
        let body: Value = response.json().await.unwrap();
        self.token = body["id_token"].as_str().unwrap().to_owned();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Any request, with a bearer token when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// Logs in from another loopback address (`127.0.0.N`), as another client would.
    pub async fn login_from(&self, address: [u8; 4], body: Value) -> Response {
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(address))
            .build()
            .unwrap();
        client
            .post(self.url("/api/authenticate"))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn login(&self, body: Value) -> Response {
        self.send(Method::POST, "/api/authenticate", None, Some(&body))
            .await
    }

    pub async fn create_user_as(&self, token: &str, body: &Value) -> Response {
        self.send(
            Method::POST,
            &format!("{BASE}/users"),
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn create_user(&self, body: &Value) -> Response {
        self.create_user_as(&self.token, body).await
    }

    /// Creates a user and returns its id.
    pub async fn new_user(&self) -> String {
        let response = self
            .create_user(&json!({"name": "Jane Grower", "email": "jane@example.com"}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn list_users(&self, query: &str) -> Response {
        self.send(
            Method::GET,
            &format!("{BASE}/users{query}"),
            Some(&self.token),
            None,
        )
        .await
    }

    pub async fn get_user_as(&self, token: &str, id: &str) -> Response {
        self.send(
            Method::GET,
            &format!("{BASE}/users/{id}"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn get_user(&self, id: &str) -> Response {
        self.get_user_as(&self.token, id).await
    }

    pub async fn update_user(&self, body: &Value) -> Response {
        self.send(
            Method::PUT,
            &format!("{BASE}/users"),
            Some(&self.token),
            Some(body),
        )
        .await
    }

    pub async fn delete_user_as(&self, token: &str, id: &str) -> Response {
        self.send(
            Method::DELETE,
            &format!("{BASE}/users/{id}"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn delete_user(&self, id: &str) -> Response {
        self.delete_user_as(&self.token, id).await
    }

    pub fn credential_path(user: &str, slug: &str) -> String {
        format!("{BASE}/users/{user}/{slug}")
    }

    pub async fn get_credentials_as(&self, token: &str, user: &str, slug: &str) -> Response {
        self.send(
            Method::GET,
            &Self::credential_path(user, slug),
            Some(token),
            None,
        )
        .await
    }

    pub async fn get_credentials(&self, user: &str, slug: &str) -> Response {
        self.get_credentials_as(&self.token, user, slug).await
    }

    /// The user's credentials for the provider at `slug`, which must answer 200.
    pub async fn credentials_json(&self, user: &str, slug: &str) -> serde_json::Value {
        let response = self.get_credentials(user, slug).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {slug} of {user}");
        response.json().await.unwrap()
    }

    pub async fn post_credentials_as(
        &self,
        token: &str,
        user: &str,
        slug: &str,
        body: &Value,
    ) -> Response {
        self.send(
            Method::POST,
            &Self::credential_path(user, slug),
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn post_credentials(&self, user: &str, slug: &str, body: &Value) -> Response {
        self.post_credentials_as(&self.token, user, slug, body)
            .await
    }

    /// POST with `If-None-Match: *` (create only).
    pub async fn create_credentials_only(&self, user: &str, slug: &str, body: &Value) -> Response {
        self.post_credentials_if_none_match(user, slug, body, "*")
            .await
    }

    pub async fn post_credentials_if_none_match(
        &self,
        user: &str,
        slug: &str,
        body: &Value,
        if_none_match: &str,
    ) -> Response {
        self.client
            .post(self.url(&Self::credential_path(user, slug)))
            .bearer_auth(&self.token)
            .header("If-None-Match", if_none_match)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_credentials_as(&self, token: &str, user: &str, slug: &str) -> Response {
        self.send(
            Method::DELETE,
            &Self::credential_path(user, slug),
            Some(token),
            None,
        )
        .await
    }

    pub async fn delete_credentials(&self, user: &str, slug: &str) -> Response {
        self.delete_credentials_as(&self.token, user, slug).await
    }

    pub async fn get_status_as(&self, token: &str, user: &str, slug: &str) -> Response {
        self.send(
            Method::GET,
            &format!("{}/status", Self::credential_path(user, slug)),
            Some(token),
            None,
        )
        .await
    }

    pub async fn get_status(&self, user: &str, slug: &str) -> Response {
        self.get_status_as(&self.token, user, slug).await
    }

    pub async fn get_events_as(&self, token: &str, user: &str, slug: &str) -> Response {
        self.send(
            Method::GET,
            &format!("{}/events", Self::credential_path(user, slug)),
            Some(token),
            None,
        )
        .await
    }

    pub async fn get_events(&self, user: &str, slug: &str) -> Response {
        self.get_events_as(&self.token, user, slug).await
    }

    /// Runs the `credential-ledger` binary on this app's database; asserts it succeeds and
    /// returns what it printed.
    pub fn cli(&self, args: &[&std::ffi::OsStr]) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_credential-ledger"))
            .arg("--database")
            .arg(&self.database)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Opens the SQLite file directly, as an outside reader would (tests that do say
    /// `sqlite_only!()`).
    pub fn sqlite(&self) -> rusqlite::Connection {
        assert!(
            !on_postgres(),
            "a test that reads the SQLite file must say sqlite_only!()"
        );
        rusqlite::Connection::open(&self.database).unwrap()
    }

    /// The rows `sql` (portable SQL, no parameters) selects, each column as text (`None` for
    /// NULL), from the test's database, SQLite or PostgreSQL.
    pub fn select(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let Some(conninfo) = &self.postgres else {
            let conn = self.sqlite();
            let mut stmt = conn.prepare(sql).unwrap();
            let columns = stmt.column_count();
            return stmt
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| {
                            let value: rusqlite::types::Value = row.get(i)?;
                            Ok(match value {
                                rusqlite::types::Value::Null => None,
                                rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                                rusqlite::types::Value::Real(x) => Some(x.to_string()),
                                rusqlite::types::Value::Text(t) => Some(t),
                                rusqlite::types::Value::Blob(b) => Some(format!("{b:?}")),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        };
        // Off the test's runtime: this is a plain function that blocks.
        let (conninfo, sql) = (
            conninfo.clone(),
            format!("SELECT row_to_json(q) FROM ({sql}) q"),
        );
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let rows = client.query(&sql, &[]).await.unwrap();
                rows.iter()
                    .map(|row| {
                        let object: Value = row.get(0);
                        object
                            .as_object()
                            .unwrap()
                            .values()
                            .map(|v| match v {
                                Value::Null => None,
                                Value::String(t) => Some(t.clone()),
                                other => Some(other.to_string()),
                            })
                            .collect()
                    })
                    .collect()
            })
        })
        .join()
        .unwrap()
    }

    /// The one number `sql` selects (a count, say), on either backend.
    pub fn count(&self, sql: &str) -> i64 {
        self.select(sql)[0][0].as_deref().unwrap().parse().unwrap()
    }

    pub fn event_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM events")
    }

    /// The type of every event in the ledger, in order.
    pub fn event_types(&self) -> Vec<String> {
        self.select("SELECT event_type FROM events ORDER BY position")
            .into_iter()
            .map(|row| row[0].clone().unwrap())
            .collect()
    }
}

/// Asserts a response is problem+json with `status` and returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(
        body["message"],
        if status == 400 && body.get("fieldErrors").is_some() {
            "error.validation".to_owned()
        } else {
            format!("error.http.{status}")
        }
    );
    body
}

/// Replaces ids and timestamps by their shape, wherever they appear, so snapshots are stable.
pub fn redact(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(redact_text(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k == "id_token" {
                        json!("[token]")
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn redact_text(text: &str) -> String {
    if Timestamp::parse(text).is_some() {
        return "[timestamp]".into();
    }
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() >= 36
            && rest.is_char_boundary(36)
            && uuid::Uuid::try_parse(&rest[..36]).is_ok()
        {
            out.push_str("[uuid]");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Snapshots `value` (redacted by shape) into the top-level `snapshots/` folder.
#[macro_export]
macro_rules! snapshot {
    ($name:expr, $value:expr) => {{
        let name: String = $name.into();
        let value = $crate::helpers::redact($value);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_json_snapshot!(name, value));
    }};
}
