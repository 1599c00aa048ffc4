//! The `credential-ledger` command line.

use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::app::crypto::KeySource;
use crate::app::Service;
use crate::config::Database;
use crate::config::Settings;
use crate::domain::SystemClock;
use crate::startup::Application;
use crate::store::StoreOptions;

#[derive(Debug, Parser)]
#[command(
    name = "credential-ledger",
    version,
    about = "A self-hosted, Leaf-compatible provider-credential ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// The SQLite file (its folder is created on first start), or a PostgreSQL database
    /// (`postgres://user@host/db` or `host=… dbname=…`) shared by several nodes.
    #[arg(
        long,
        global = true,
        env = "CREDENTIAL_LEDGER_DATABASE",
        default_value = "./data/ledger.sqlite"
    )]
    database: PathBuf,
    /// Commit with synchronous=NORMAL instead of FULL: faster, but a power cut may lose the
    /// last commits (never corrupts the database).
    #[arg(long, global = true, env = "CREDENTIAL_LEDGER_RELAXED_DURABILITY")]
    relaxed_durability: bool,
    /// Most writes committed together in one transaction (group commit: one fsync for all of
    /// them, each acknowledged only after it). 1 commits every write on its own.
    #[arg(long, global = true, env = "CREDENTIAL_LEDGER_WRITE_BATCH",
          default_value_t = crate::store::DEFAULT_MAX_BATCH,
          value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..), usize::from))]
    write_batch: usize,
    /// The master key file (`ID BASE64KEY` lines, newest last), generated with mode 0600 on
    /// first start; by default `master.key` beside the database. It wraps every credential's
    /// data key: keep it out of database backups. `CREDENTIAL_LEDGER_MASTER_KEY` (one base64
    /// key) overrides it.
    #[arg(long, global = true, env = "CREDENTIAL_LEDGER_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Do not run SQLite's integrity check (`quick_check`, about a second per GB) when opening
    /// the database; by default a damaged database is refused.
    #[arg(long, global = true, env = "CREDENTIAL_LEDGER_SKIP_INTEGRITY_CHECK")]
    skip_integrity_check: bool,
}

impl DatabaseArgs {
    fn database(&self) -> Database {
        Database::named(&self.database.to_string_lossy())
    }

    async fn open(&self) -> anyhow::Result<crate::store::SharedStore> {
        Ok(
            crate::startup::Opened::open(&self.database(), self.options())
                .await?
                .shared(),
        )
    }

    /// The master key: `CREDENTIAL_LEDGER_MASTER_KEY`, else the key file (by default
    /// `master.key` beside a SQLite database; on PostgreSQL it must be named).
    fn key_source(&self) -> KeySource {
        match std::env::var("CREDENTIAL_LEDGER_MASTER_KEY") {
            Ok(key) if !key.trim().is_empty() => KeySource::Inline(key),
            _ => KeySource::File(self.master_key_file.clone().unwrap_or_else(|| {
                match self.database() {
                    Database::Sqlite(path) => path
                        .parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join("master.key"),
                    // Never generated there: `open_service` refuses a missing one.
                    Database::Postgres(_) => PathBuf::from("./master.key"),
                }
            })),
        }
    }

    async fn service(&self) -> anyhow::Result<Service> {
        let (_, service) = crate::startup::open_service(
            &self.database(),
            self.options(),
            self.key_source(),
            Arc::new(SystemClock),
            false,
        )
        .await?;
        Ok(service)
    }

    fn options(&self) -> StoreOptions {
        StoreOptions {
            synchronous_full: !self.relaxed_durability,
            max_batch: self.write_batch,
            integrity_check: !self.skip_integrity_check,
            ..StoreOptions::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Manage API owners.
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Print the OpenAPI document that `serve` serves.
    Openapi,
    /// Drop every projection and rebuild it from the ledger.
    Rebuild,
    /// Add a new master key and re-wrap every data key with it (the server keeps running).
    RotateKey,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CREDENTIAL_LEDGER_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "CREDENTIAL_LEDGER_WORKERS", default_value_t = 0)]
    workers: usize,
    /// A provider's endpoint: `PROVIDER[:stage|production]=URL`, e.g.
    /// `raven=https://…/token` (repeat, or comma-separate in the variable): the token URL, or
    /// the API's base URL for Raven Slingshot and Sentera, the login URL for AgVance, the
    /// Cognito URL for Panorama. Overrides a provider's published endpoint; CLAAS, Lindsay,
    /// AgVance and Panorama publish none, so set theirs.
    #[arg(
        long = "token-url",
        env = "CREDENTIAL_LEDGER_TOKEN_URLS",
        value_delimiter = ','
    )]
    token_urls: Vec<crate::config::TokenUrl>,
    /// Scopes a provider's tokens must carry, `PROVIDER=SCOPE SCOPE…` (missing: MISSING_PERMISSION).
    #[arg(
        long = "required-scopes",
        env = "CREDENTIAL_LEDGER_REQUIRED_SCOPES",
        value_delimiter = ','
    )]
    required_scopes: Vec<crate::config::RequiredScopes>,
    /// How a provider's OAuth client authenticates, `PROVIDER=basic|body`, for providers whose
    /// documentation does not say (CLAAS and Lindsay default to HTTP Basic).
    #[arg(
        long = "client-auth",
        env = "CREDENTIAL_LEDGER_CLIENT_AUTH",
        value_delimiter = ','
    )]
    client_auth: Vec<crate::config::ClientAuthChoice>,
    /// How many credential checks run at once.
    #[arg(long, env = "CREDENTIAL_LEDGER_CHECK_CONCURRENCY", default_value_t = 8)]
    check_concurrency: usize,
    /// Timeout of one exchange with a provider, in seconds.
    #[arg(
        long,
        env = "CREDENTIAL_LEDGER_CHECK_TIMEOUT_SECS",
        default_value_t = 10
    )]
    check_timeout_secs: u64,
    /// Show `********` instead of secret fields in every answer (by default, as Leaf does, an
    /// owner reads its own credentials' secrets back).
    #[arg(long, env = "CREDENTIAL_LEDGER_MASK_SECRETS")]
    mask_secrets: bool,
    /// Requests per second each API owner may send (all its tokens together); bursts up to
    /// twice that. Over it: 429 with `Retry-After`.
    #[arg(long, env = "CREDENTIAL_LEDGER_OWNER_RATE", default_value_t = 1000)]
    owner_rate: u32,
    /// Login attempts per minute for one username from one client address.
    #[arg(long, env = "CREDENTIAL_LEDGER_LOGIN_RATE", default_value_t = 10)]
    login_rate: u32,
    /// Login attempts per minute from one client address, whatever the usernames.
    #[arg(
        long,
        env = "CREDENTIAL_LEDGER_LOGIN_CLIENT_RATE",
        default_value_t = 30
    )]
    login_client_rate: u32,
    /// Do not check credentials in the background.
    #[arg(long, env = "CREDENTIAL_LEDGER_NO_HEALTH_CHECKS")]
    no_health_checks: bool,
}

#[derive(Debug, Subcommand)]
enum OwnerCommand {
    /// Add an API owner; the password is read from stdin.
    Create {
        #[arg(long)]
        username: String,
        /// Read the password from stdin (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            None => serve(&self.database, ServeArgs::parse_env()?).await,
            Some(Command::Serve(args)) => serve(&self.database, args).await,
            Some(Command::Owner(OwnerCommand::Create { username, .. })) => {
                let mut input = String::new();
                std::io::stdin().read_to_string(&mut input)?;
                let password = input.lines().next().unwrap_or("").to_owned();
                anyhow::ensure!(
                    !username.trim().is_empty(),
                    "the username must not be blank"
                );
                anyhow::ensure!(
                    password.len() >= 8,
                    "the password must have at least 8 characters"
                );
                let service = self.database.service().await?;
                let id = service.create_owner(&username, &password).await?;
                println!("created owner {username} ({id})");
                Ok(())
            }
            Some(Command::Openapi) => {
                print!("{}", crate::http::openapi::document_json());
                Ok(())
            }
            Some(Command::RotateKey) => {
                anyhow::ensure!(
                    matches!(self.database.database(), Database::Sqlite(_)),
                    "rotate-key is not supported on PostgreSQL: it would add a key on this node \
                     only, and every other node would then fail to open the credentials it \
                     re-wrapped"
                );
                let (new_id, count) = self.database.service().await?.rotate_master_key().await?;
                println!("master key {new_id} is active; {count} data keys re-wrapped with it");
                Ok(())
            }
            Some(Command::Rebuild) => {
                let store = self.database.open().await?;
                let started = std::time::Instant::now();
                let progress = |done, total| eprintln!("rebuild: {done}/{total} events applied");
                let done = store.rebuild(Box::new(progress)).await?;
                println!(
                    "rebuilt every projection from {done} events in {:.2?}",
                    started.elapsed()
                );
                Ok(())
            }
        }
    }
}

impl ServeArgs {
    /// `serve`'s settings when no subcommand was given (flags then come from the environment).
    fn parse_env() -> anyhow::Result<ServeArgs> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Ok(Only::try_parse_from(["credential-ledger"]).map(|o| o.serve)?)
    }
}

async fn serve(database: &DatabaseArgs, args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings {
        bind: args.bind,
        database: database.database(),
        store: database.options(),
        master_key: database.key_source(),
        mask_secrets: args.mask_secrets,
        rate_limits: crate::config::RateLimits {
            owner_per_second: args.owner_rate,
            owner_burst: args.owner_rate.saturating_mul(2),
            logins_per_minute: args.login_rate,
            logins_per_client_per_minute: args.login_client_rate,
        },
        workers: args.workers,
        connections: crate::config::ConnectionLimits::default(),
        checks: crate::config::CheckSettings {
            enabled: !args.no_health_checks,
            concurrency: args.check_concurrency,
            timeout: std::time::Duration::from_secs(args.check_timeout_secs),
            token_urls: args.token_urls,
            required_scopes: args.required_scopes,
            client_auth: args.client_auth,
            ..Default::default()
        },
    };
    let app = Application::build(settings.clone()).await?;
    if let Some((username, password)) = app.service().bootstrap_owner().await? {
        // Shown once, on the terminal only: never logged.
        println!("No API owner existed, so one was created. Log in with:");
        println!("  username: {username}");
        println!("  password: {password}");
        println!("This password is not stored and will not be shown again.");
    }
    tracing::info!(
        database = %settings.database.describe(),
        "listening on http://127.0.0.1:{} (Swagger UI at /swagger-ui/)",
        app.port()
    );
    app.run_until_stopped().await?;
    Ok(())
}
