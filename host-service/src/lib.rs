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
//! - `api`: the router, webhooks, the calls API, its access rule (`api::auth`) and errors.
//! - `dashboard`: the browser UI under `/dashboard/`, its live feed, the edge panel and the
//!   playground's lint.
//! - `config`, `server` (the accept loop with header-read timeout and shutdown deadline),
//!   `retention`, `state` (`AppState`, `Tracker`), `shutdown`, `metrics`, `sid`, `random`,
//!   `fsutil`, `clock`.
//!
//! Entry points: [`api::app`] builds the router from an [`AppState`]; [`run`] serves it on a
//! listener until a shutdown future resolves, then drains.

pub mod api;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod fsutil;
pub mod metrics;
pub mod pipeline;
pub mod random;
pub mod recording;
pub mod replica;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod sid;
pub mod socket;
pub mod state;
pub mod store;
#[cfg(feature = "test-engines")]
pub mod test_engines;

use config::{Config, RecordingSource};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::{AppState, Tracker, TrackerGuard};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("data directory {path}: {error}")]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Greeting(#[from] socket::voice::GreetingError),
    #[error(transparent)]
    Twilio(#[from] recording::twilio::TwilioError),
    #[error(transparent)]
    Engines(#[from] postcall::EngineError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// The engines named by the configuration.
pub fn engines_from_config(config: &Config) -> Result<postcall::Engines, StartError> {
    #[cfg(feature = "test-engines")]
    if config.pipeline.engines == config::PipelineEngines::Test {
        return Ok(test_engines::engines(&config.test_engines));
    }
    Ok(postcall::Engines::from_config(
        &config.transcription,
        &config.extraction,
    )?)
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
    let state = AppState::open(config, stop_rx.clone()).await?;
    let cfg = state.config.clone();
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(
        listen = %addr,
        data_dir = %cfg.data_dir.display(),
        recording_source = socket::source_name(cfg.recording.source),
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
    if cfg.recording.source == RecordingSource::Twilio && state.twilio.is_none() {
        tracing::warn!("recording.source is twilio but no credentials are configured");
    }
    let pipeline = Arc::new(pipeline::Pipeline {
        store: state.store.clone(),
        engines,
        clock: state.clock.clone(),
        metrics: state.metrics.clone(),
        config: cfg.pipeline.clone(),
        source: cfg.recording.source,
        twilio_deadline_ms: cfg.recording.twilio_deadline_s.saturating_mul(1000),
        recordings_dir: state.recordings_dir.clone(),
        twilio: state.twilio.clone(),
    });
    let workers = pipeline.spawn(stop_rx.clone());
    let replica = tokio::spawn(replica::run(
        state.store.clone(),
        state.clock.clone(),
        cfg.database.replica_timeout_ms,
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
    let store = state.store.clone();
    let router = api::app(state);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        let _ = stop_tx.send(true);
    });
    let conns = server::serve(
        listener,
        router,
        Duration::from_millis(cfg.http.header_read_timeout_ms),
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
