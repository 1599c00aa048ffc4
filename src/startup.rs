//! Builds the HTTP server around a ledger. `build` binds the listener itself, so tests ask for
//! port 0 and read `port()`.

use actix_web::dev::Server;
use actix_web::web::{self, Data};
use actix_web::{middleware, App, HttpServer};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, ApiError, RouteTable};
use crate::domain::{Clock, SystemClock};
use crate::ledger::Ledger;
use crate::store::{Store, StoreOptions};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub bind: String,
    /// The SQLite file; its folder is created if missing.
    pub database: PathBuf,
    pub store: StoreOptions,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// The background credential checks.
    pub health: crate::health::HealthSettings,
    /// Where the master keys that wrap credential data keys come from.
    pub master_key: crate::crypto::KeySource,
    /// Never show secret fields in answers (they read `********`).
    pub mask_secrets: bool,
    pub rate_limits: crate::api::limits::RateLimits,
}

pub struct Application {
    port: u16,
    server: Server,
    ledger: Ledger,
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
        let store = Store::open(&settings.database, settings.store)?;
        let keyring = crate::crypto::Keyring::open(settings.master_key.clone())?;
        let ledger =
            Ledger::new(store, clock, Arc::new(keyring)).with_masked_secrets(settings.mask_secrets);
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let limits = crate::api::limits::Limiters::new(settings.rate_limits);
        let server = server(listener, ledger.clone(), limits, settings.workers)?;
        let worker = crate::health::spawn(ledger.clone(), settings.health.clone())?;
        Ok(Application {
            port,
            server,
            ledger,
            worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Stops the server (and so the worker) from elsewhere.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; the health worker stops with the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(worker) = self.worker {
            worker.abort();
        }
        result
    }
}

fn server(
    listener: TcpListener,
    ledger: Ledger,
    limits: crate::api::limits::Limiters,
    workers: usize,
) -> anyhow::Result<Server> {
    let limits = Data::new(limits);
    let routes = Data::new(RouteTable::from_openapi(&crate::openapi::document()));
    let ledger = Data::new(ledger);
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(ledger.clone())
            .app_data(routes.clone())
            .app_data(limits.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::BadRequest(format!("bad query parameters: {error}")).into()
            }));
        let (app, document) = crate::openapi::register(app);
        app.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/api-docs/openapi.json", document))
            .default_service(web::to(api::not_routed))
            .wrap(middleware::from_fn(api::problem_details))
            .wrap(tracing_actix_web::TracingLogger::default())
    })
    .listen(listener)?
    .shutdown_timeout(5);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
