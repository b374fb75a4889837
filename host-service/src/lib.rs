//! The twiml-guard host service: terminates Twilio Media Streams behind Envoy, records each call,
//! answers the `<Connect action>` webhook and runs a durable post-call pipeline (recording ready,
//! transcription, extraction) on a job queue in SQLite, or in PostgreSQL shared by several replicas.
//!
//! Layout, one room per job:
//! - `socket`: one Media Streams socket (`session`, the protocol as a state machine; `voice`, the
//!   `VoiceApp` seam and the greeting app).
//! - `recording`: the recorder, its writer thread, and the `twilio` source's REST calls.
//! - `store`: calls, streams and the job queue in SQLite or PostgreSQL.
//! - `pipeline`: the post-call workers and stages.
//! - `replica`: alive replicas, taking over a dead one's streams, job notifications.
//! - `api`: the router, webhooks, the calls API, its access rule (`api::auth`) and errors, and
//!   `api::dashboard`, which mounts the dashboard crate on the read side with the store and the
//!   rule behind its traits.
//! - `cli`: the command line, logging and signals around [`run`].
//! - `config`, `server` (the accept loop with header-read timeout and shutdown deadline),
//!   `retention`, `state` (`AppState`, `Tracker`), `shutdown`, `metrics`, `random`,
//!   `fsutil`, `clock`, `writes` (stream and call ends retried until the database takes them).
//!
//! Entry points: [`app`] builds the router from an [`AppState`]; [`run`] serves it on a
//! listener until a shutdown future resolves, then drains; [`cli::main`] is the binary (flags,
//! logging, signals) given how to build the engines.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod pipeline;
pub mod random;
pub mod recording;
pub mod replica;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod socket;
pub mod state;
pub mod store;
pub mod writes;

use clock::Clock;
use config::{Config, RecordingSource};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::{Location, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::StartError;
pub use shutdown::{Tracker, TrackerGuard};
pub use state::AppState;

/// The engines named by the configuration.
pub fn engines_from_config(config: &Config) -> Result<postcall::Engines, StartError> {
    Ok(postcall::Engines::from_config(
        &config.openai,
        &config.transcription,
        &config.extraction,
    )?)
}

/// The router: the API, with the dashboard mounted on its read side (its `/api/*` routes behind
/// the API's access rule) and its pages. Tests drive it with `oneshot`; `run` serves it.
pub fn app(state: AppState) -> axum::Router {
    let access = Arc::new(api::auth::Access::from_config(&state.config));
    let dashboard = api::dashboard::new(&state, access.clone());
    let pages = dashboard
        .page_routes()
        .layer(axum::middleware::from_fn_with_state(
            access.clone(),
            api::auth::require_allowed_host,
        ));
    api::routes(state, access, dashboard.api_routes()).merge(pages)
}

/// Check the configuration, open the data directory and the store, take over what earlier runs
/// (or dead replicas) left open, then build the state the handlers share.
pub async fn open(config: Config, shutdown: watch::Receiver<bool>) -> Result<AppState, StartError> {
    config.validate()?;
    let store = open_store(&config).await?;
    let clock = Clock::new();
    let repaired = replica::start(&store, &clock, config.database.replica_timeout_ms).await?;
    if repaired > 0 {
        tracing::warn!(repaired, "repaired recordings left open by a previous run");
    }
    AppState::new(config, store, clock, shutdown)
}

/// The recordings directory (created private) and the database `database.url` names.
async fn open_store(config: &Config) -> Result<Store, StartError> {
    let recordings_dir = config.recordings_dir();
    fsutil::create_private_dir(&recordings_dir).map_err(|error| StartError::DataDir {
        path: recordings_dir.clone(),
        error,
    })?;
    let location = Location::from_config(config.database.url.as_deref(), &config.data_dir)
        .map_err(|message| config::ConfigError::Invalid {
            key: "database.url",
            message,
        })?;
    let store = Store::connect(
        &location,
        &StoreOptions {
            max_connections: config.database.max_connections,
        },
    )
    .await?;
    store.check_shared_dir(&recordings_dir).await?;
    tracing::info!(database = %location.redacted(), replica = store.replica(), "database open");
    Ok(store)
}

/// Serve on `listener` until `shutdown` resolves, then drain: stop accepting, close the open
/// streams (finalizing their recordings), let requests and running stages finish, and return.
/// Past `http.shutdown_timeout_ms` whatever is still open is dropped.
pub async fn run(
    listener: TcpListener,
    config: Config,
    engines: postcall::Engines,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (force_tx, force_rx) = watch::channel(false);
    let state = open(config, stop_rx.clone()).await?;
    let cfg = state.config.clone();
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    config::listen_needs_token(addr, cfg.api_token.as_deref())?;
    tracing::info!(
        listen = %addr,
        data_dir = %cfg.data_dir.display(),
        recording_source = state.recording.name(),
        app = ?cfg.app.kind,
        workers = cfg.pipeline.workers,
        signatures = cfg.validate_signatures(),
        max_sockets = cfg.websocket.max_sockets,
        retention_days = cfg.retention.days,
        "listening"
    );
    if !cfg.validate_signatures() {
        // Said on every start: this setting is for local development only.
        tracing::error!(
            setting = "twilio.validate_signatures = false",
            "signatures_off: unsigned webhooks and media sockets are accepted; anyone who can reach this service can end calls and stream audio into them"
        );
    }
    if cfg.api_token.is_none() {
        tracing::warn!("no api_token configured: the API answers loopback clients only");
    }
    if cfg.recording.source == RecordingSource::Twilio && !state.twilio_credentials {
        tracing::warn!("recording.source is twilio but no credentials are configured");
    }
    let pipeline = Arc::new(pipeline::Pipeline {
        store: state.store.clone(),
        engines,
        clock: state.clock.clone(),
        metrics: state.metrics.clone(),
        config: cfg.pipeline.clone(),
        source: state.recording.clone(),
    });
    let workers = pipeline.spawn(stop_rx.clone());
    let replica = tokio::spawn(replica::run(
        state.store.clone(),
        state.clock.clone(),
        cfg.database.replica_timeout_ms,
        stop_rx.clone(),
    ));
    tokio::spawn(recording::space::watch(
        state.space.clone(),
        state.metrics.clone(),
        stop_rx.clone(),
    ));
    if cfg.retention.days > 0 {
        tokio::spawn(retention::run(
            state.store.clone(),
            state.metrics.clone(),
            state.clock.clone(),
            cfg.retention.clone(),
            stop_rx.clone(),
        ));
    }

    let tracker = state.tracker.clone();
    let writes = state.writes.clone();
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let router = app(state);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        let _ = stop_tx.send(true);
    });
    let conns = server::serve(
        listener,
        router,
        server::Limits {
            header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
            request_timeout: Duration::from_millis(cfg.http.request_timeout_ms),
            max_connections: cfg.http.max_connections,
        },
        metrics,
        stop_rx,
        force_rx,
    )
    .await;

    // Requests in flight finish and sockets finalize their recordings, up to the deadline.
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(cfg.http.shutdown_timeout_ms);
    let drained = tokio::time::timeout_at(deadline, async {
        conns.wait_idle().await;
        tracker.wait_idle().await;
        writes.wait_idle().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.open(),
            sockets = tracker.open(),
            "shutdown_deadline: closing what is still open"
        );
        let _ = force_tx.send(true);
    }
    if writes.pending() > 0 {
        tracing::error!(
            pending = writes.pending(),
            "db_writes_lost: stream or call ends the database never took before the deadline"
        );
    }
    let drain = Duration::from_millis(cfg.pipeline.drain_timeout_ms);
    let all = futures_util::future::join_all(workers);
    if tokio::time::timeout(drain, all).await.is_err() {
        tracing::warn!("stages still running at the drain timeout; they resume on the next start");
    }
    let _ = replica.await;
    replica::leave(&store).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
