//! The twiml-guard host service: terminates Twilio Media Streams behind Envoy, records each call,
//! answers the `<Connect action>` webhook and runs a durable post-call pipeline (recording ready,
//! transcription, extraction) on a SQLite job queue.
//!
//! Layout:
//! - `session` (the protocol as a state machine), `recording` (the two-channel WAV writer and
//!   crash repair), `voice` (the `VoiceApp` seam and the greeting app): pure, no sockets.
//! - `ws` (one socket, over any `Sink`/`Stream`), `http` (router, webhooks, API, auth).
//! - `db` (calls, streams and the job queue), `pipeline` (workers and stages),
//!   `twilio_api` (the REST calls of the `twilio` recording source).
//! - `config`, `metrics`, `error`, `sid`, `fsutil`, `clock`.
//!
//! Entry points: [`http::app`] builds the router from an [`AppState`]; [`run`] serves it on a
//! listener until a shutdown future resolves, then drains.

pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod recording;
pub mod session;
pub mod sid;
#[cfg(feature = "test-engines")]
pub mod test_engines;
pub mod twilio_api;
pub mod voice;
pub mod ws;

use clock::Clock;
use config::{AppKind, Config, RecordingSource};
use db::Store;
use metrics::Metrics;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use twilio_api::TwilioClient;
use voice::AppFactory;

/// Counts open sockets so shutdown can wait for their recordings to be finalized.
#[derive(Default)]
pub struct Tracker {
    open: AtomicUsize,
    changed: Notify,
}

pub struct TrackerGuard(Arc<Tracker>);

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.changed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub recordings_dir: PathBuf,
    pub app_factory: Option<AppFactory>,
    pub twilio: Option<TwilioClient>,
    pub tracker: Arc<Tracker>,
    /// Turns true when the service starts draining.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("data directory {path}: {error}")]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Greeting(#[from] voice::GreetingError),
    #[error(transparent)]
    Twilio(#[from] twilio_api::TwilioError),
    #[error(transparent)]
    Engines(#[from] postcall::EngineError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

impl AppState {
    /// Open the data directory and database, load the app, and repair recordings a crash left
    /// open.
    pub async fn open(
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<AppState, StartError> {
        let data = config.data_dir.clone();
        let recordings_dir = data.join("recordings");
        fsutil::create_private_dir(&recordings_dir).map_err(|error| StartError::DataDir {
            path: recordings_dir.clone(),
            error,
        })?;
        let store = Store::open(&data.join("host-service.db")).await?;
        let repaired = pipeline::repair_recordings(&store).await?;
        if repaired > 0 {
            tracing::warn!(repaired, "repaired recordings left open by a previous run");
        }
        let app_factory = match config.app.kind {
            AppKind::None => None,
            AppKind::Greeting => {
                let path = config.app.greeting_wav.clone().unwrap_or_default();
                let audio = Arc::new(voice::load_greeting(&path)?);
                tracing::info!(path = %path.display(), duration_ms = audio.len() / 8, "greeting loaded");
                Some(voice::Greeting::factory(
                    audio,
                    Duration::from_millis(config.app.mark_every_ms),
                ))
            }
        };
        let twilio = match &config.twilio.auth_token {
            Some(token) => Some(TwilioClient::new(
                &config.twilio.api_base,
                config.twilio.account_sid.clone(),
                token.clone(),
            )?),
            None => None,
        };
        Ok(AppState {
            config: Arc::new(config),
            store,
            metrics: Arc::new(Metrics::default()),
            clock: Clock::new(),
            recordings_dir,
            app_factory,
            twilio,
            tracker: Arc::new(Tracker::default()),
            shutdown,
        })
    }
}

/// The engines named by the configuration.
pub fn engines_from_config(config: &Config) -> Result<postcall::Engines, StartError> {
    #[cfg(feature = "test-engines")]
    if config.pipeline.engines == "test" {
        return Ok(test_engines::engines(&config.test_engines));
    }
    Ok(postcall::Engines::from_config(
        &config.transcription,
        &config.extraction,
    )?)
}

/// Serve on `listener` until `shutdown` resolves, then drain: stop accepting sockets, close the
/// open streams (finalizing their recordings), let running stages finish, and return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    engines: postcall::Engines,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::open(config, stop_rx.clone()).await?;
    let cfg = state.config.clone();
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(
        listen = %addr,
        data_dir = %cfg.data_dir.display(),
        recording_source = ws::source_name(cfg.recording.source),
        app = ?cfg.app.kind,
        workers = cfg.pipeline.workers,
        signatures = cfg.validate_signatures(),
        "listening"
    );
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
        recordings_dir: state.recordings_dir.clone(),
        twilio: state.twilio.clone(),
    });
    let workers = pipeline.spawn(stop_rx.clone());

    let tracker = state.tracker.clone();
    let store = state.store.clone();
    let router = http::app(state);
    let mut server_stop = stop_rx.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        let _ = stop_tx.send(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    })
    .await
    .map_err(StartError::Serve)?;

    // Sockets see the same signal; wait for their recordings to be finalized.
    tracker.wait_idle().await;
    let drain = Duration::from_millis(cfg.pipeline.drain_timeout_ms);
    let all = futures_util::future::join_all(workers);
    if tokio::time::timeout(drain, all).await.is_err() {
        tracing::warn!("stages still running at the drain timeout; they resume on the next start");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
