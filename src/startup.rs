//! Builds the HTTP server around the application. `build` binds the listener itself, so tests ask for
//! port 0 and read `port()`.

use actix_web::dev::Server;
use actix_web::web::{self, Data};
use actix_web::{middleware, App, HttpResponse, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::crypto::{KeySource, Keyring};
use crate::app::{Secrets, Service};
use crate::config::Database;
use crate::config::{Settings, MAX_BODY_BYTES};
use crate::domain::{Clock, SystemClock};
use crate::http::{self, ApiError, RouteTable};
use crate::store::{PostgresStore, SharedStore, SqliteStore};

pub struct Application {
    port: u16,
    server: Server,
    service: Service,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let (store, service) = open_service(
            &settings.database,
            settings.store,
            settings.master_key.clone(),
            clock,
            settings.mask_secrets,
        )
        .await?;
        let service = service.with_unchecked(crate::checks::unchecked_reasons(&settings.checks));
        if let Opened::Sqlite(store) = &store {
            // One server per file; on PostgreSQL any number of nodes serve one database.
            store.claim_serving()?;
        }
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let limits = http::limits::Limiters::new(settings.rate_limits);
        raise_open_file_limit();
        let server = server(
            listener,
            service.clone(),
            limits,
            settings.workers,
            settings.connections,
        )?;
        let worker = crate::checks::spawn(service.clone(), settings.checks.clone())?;
        Ok(Application {
            port,
            server,
            service,
            worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Stops the server (and so the worker) from elsewhere.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; the check worker stops with the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(worker) = self.worker {
            worker.abort();
        }
        result
    }
}

/// An opened store, as the backend it is.
pub enum Opened {
    Sqlite(SqliteStore),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    /// Opens `database`: a SQLite file with `options`, or a PostgreSQL database (its schema
    /// brought up to date under a lock, one node at a time).
    pub async fn open(
        database: &Database,
        options: crate::store::StoreOptions,
    ) -> anyhow::Result<Opened> {
        Ok(match database {
            Database::Sqlite(path) => Opened::Sqlite(SqliteStore::open(path, options)?),
            Database::Postgres(conninfo) => {
                Opened::Postgres(Arc::new(PostgresStore::open(conninfo).await.map_err(
                    |e| anyhow::anyhow!("cannot open {}: {e}", database.describe()),
                )?))
            }
        })
    }

    pub fn shared(&self) -> SharedStore {
        match self {
            Opened::Sqlite(store) => Arc::new(store.clone()),
            Opened::Postgres(store) => store.clone(),
        }
    }
}

/// Opens the database and its master keys as every command does: refuses an emptied database
/// beside an existing key file, a key file that cannot open the database's data keys, and, on
/// PostgreSQL, a master key that is not given (every node must use the same one, so none is
/// ever generated there).
pub async fn open_service(
    database: &Database,
    options: crate::store::StoreOptions,
    master_key: KeySource,
    clock: Arc<dyn Clock>,
    mask_secrets: bool,
) -> anyhow::Result<(Opened, Service)> {
    let store = Opened::open(database, options).await?;
    match (&store, &master_key) {
        (Opened::Sqlite(sqlite), KeySource::File(key_file)) => anyhow::ensure!(
            !(sqlite.found_empty() && key_file.exists()),
            "{} is empty, but the master key file {} exists: the database was emptied or \
             replaced. Restore it from a backup; for a fresh start, delete both files",
            database.describe(),
            key_file.display()
        ),
        (Opened::Postgres(_), KeySource::File(key_file)) => anyhow::ensure!(
            key_file.exists(),
            "the master key file {} does not exist, and on PostgreSQL none is generated: every \
             node must use the same key. Make one once (`openssl rand -base64 32`) and give it \
             to every node as CREDENTIAL_LEDGER_MASTER_KEY, or in a file named with \
             --master-key-file",
            key_file.display()
        ),
        _ => {}
    }
    let shared = store.shared();
    let in_use = shared.data_key_ids().await?;
    let keyring = Keyring::open_for(master_key, &in_use)?;
    let secrets = Secrets::new(Arc::new(keyring), mask_secrets);
    let service = Service::new(shared, clock, secrets);
    Ok((store, service))
}

/// Bounds glibc's malloc to one arena per core. By default it makes up to eight per core as
/// threads contend, and each keeps the memory it once held: the benchmark's mixed load (64
/// connections) measures the difference (README, "Memory"). Call it before any thread
/// starts: glibc fixes the limit when it first makes a second arena. An operator's own
/// `MALLOC_ARENA_MAX` (or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) is left as it is.
pub fn bound_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || tunables.contains("glibc.malloc.arena_max")
        {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only sets a parameter of the allocator; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Raises this process's open-file limit to the most it may have (the soft limit is often 1024,
/// the hard one far more): each connection is a file descriptor.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::debug!(open_files = ?limit.current, "raised the open-file limit"),
            Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
        }
    }
}

fn server(
    listener: TcpListener,
    service: Service,
    limits: http::limits::Limiters,
    workers: usize,
    connections: crate::config::ConnectionLimits,
) -> anyhow::Result<Server> {
    let limits = Data::new(limits);
    // The document once for all workers: its route table, and its bytes as served.
    let document = http::openapi::document();
    let routes = Data::new(RouteTable::from_openapi(&document));
    let document = web::Bytes::from(serde_json::to_vec(&document)?);
    let service = Data::new(service);
    let mut server =
        HttpServer::new(move || {
            let app = App::new()
                .app_data(service.clone())
                .app_data(routes.clone())
                .app_data(limits.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .app_data(Data::new(http::extract::BodyTimeout(
                    connections.request_timeout,
                )))
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError::BadRequest(format!("bad query parameters: {error}")).into()
                }));
            let document = document.clone();
            let served = move || {
                let body = document.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type(actix_web::http::header::ContentType::json())
                        .body(body)
                }
            };
            http::openapi::routes(app)
                .route(http::openapi::DOCUMENT_PATH, web::get().to(served))
                .service(SwaggerUi::new("/swagger-ui/{_:.*}").config(
                    utoipa_swagger_ui::Config::new([http::openapi::DOCUMENT_PATH]),
                ))
                .default_service(web::to(http::not_routed))
                .wrap(middleware::from_fn(http::problem_details))
                .wrap(middleware::from_fn(http::trim_trailing_slash))
                .wrap(tracing_actix_web::TracingLogger::<
                    crate::telemetry::RequestSpan,
                >::new())
        })
        .listen(listener)?
        .client_request_timeout(connections.request_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .max_connections(connections.max_per_worker)
        .shutdown_timeout(5);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
