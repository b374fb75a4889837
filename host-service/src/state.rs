//! What the HTTP handlers share (`AppState`), built after the store is open and earlier runs'
//! streams are taken over: the configuration, the store, the recording source, and the context
//! each media socket is given.

use crate::clock::Clock;
use crate::config::{AppKind, Config};
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::recording::space::SpaceGuard;
use crate::recording::{self, twilio::rest::TwilioClient, Source};
use crate::shutdown::Tracker;
use crate::socket::voice::{self, AppFactory};
use crate::socket::{SocketCtx, SocketLimits};
use crate::store::Store;
use crate::writes::{WriteLimits, Writes};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub recordings_dir: PathBuf,
    /// Where calls' recordings come from (`recording.source`).
    pub recording: Arc<dyn Source>,
    /// The recordings volume's free space (`recording.min_free_mb`).
    pub space: Arc<SpaceGuard>,
    /// What each media socket is given.
    pub socket: Arc<SocketCtx>,
    /// Open media sockets, for `/healthz`, `/metrics` and the drain.
    pub tracker: Arc<Tracker>,
    /// One permit per media socket allowed at once (`websocket.max_sockets`).
    pub socket_slots: Arc<Semaphore>,
    /// Turns true when the service starts draining.
    pub shutdown: watch::Receiver<bool>,
    /// Stream and call ends, retried until the database takes them.
    pub writes: Writes,
    /// `true` when the `twilio` source has credentials to ask Twilio with.
    pub twilio_credentials: bool,
}

impl AppState {
    /// A request's database call, bounded by `database.read_timeout_ms`.
    pub async fn db<T>(
        &self,
        query: impl std::future::Future<Output = crate::store::Result<T>>,
    ) -> crate::store::Result<T> {
        let limit = Duration::from_millis(self.config.database.read_timeout_ms);
        crate::store::within(limit, query).await
    }

    /// Load the voice app and Twilio's client and build the socket context, over an open store
    /// and the clock every part of the process reads (the database's time on PostgreSQL).
    pub fn new(
        config: Config,
        store: Store,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
    ) -> Result<AppState, StartError> {
        let recordings_dir = config.recordings_dir();
        let app_factory = load_app(&config)?;
        let twilio = match &config.twilio.auth_token {
            Some(token) => Some(TwilioClient::new(
                &config.twilio.api_base,
                config.twilio.account_sid.clone(),
                token.clone(),
            )?),
            None => None,
        };
        let twilio_credentials = twilio.is_some();
        let metrics = Arc::new(Metrics::default());
        let tracker = Arc::new(Tracker::default());
        let space = Arc::new(SpaceGuard::new(
            recordings_dir.clone(),
            config.recording.min_free_mb,
        ));
        // Sampled once before the first socket, then every few seconds (`space::watch`).
        if let Ok(free) = space.sample() {
            metrics.recording_free_bytes(free);
        }
        let writes = Writes::new(
            store.clone(),
            metrics.clone(),
            clock.clone(),
            WriteLimits {
                attempt_timeout: Duration::from_millis(config.database.write_timeout_ms),
                max_pending: config.database.retry_queue_max,
                late_start_window_ms: config.pipeline.stream_wait_timeout_ms,
            },
        );
        let recording = recording::from_config(
            &config,
            store.clone(),
            clock.clone(),
            recordings_dir.clone(),
            twilio,
            space.clone(),
        );
        let socket = Arc::new(SocketCtx {
            limits: SocketLimits {
                start_timeout: Duration::from_millis(config.websocket.start_timeout_ms),
                idle_timeout: Duration::from_millis(config.websocket.idle_timeout_ms),
                close_timeout: Duration::from_millis(config.http.shutdown_timeout_ms),
                max_frame_bytes: config.websocket.max_frame_bytes,
                max_lifetime: Duration::from_secs(config.websocket.max_lifetime_s),
                max_streams_per_call: config.websocket.max_streams_per_call,
                max_frames_per_s: config.websocket.max_frames_per_s,
                max_timestamp_jump_ms: config.recording.max_timestamp_jump_ms,
            },
            account_sid: config.twilio.account_sid.clone(),
            media_key: config.twilio.media_key.clone(),
            call_streams: Default::default(),
            store: store.clone(),
            writes: writes.clone(),
            recording: recording.clone(),
            app_factory,
            metrics: metrics.clone(),
            clock: clock.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        });
        Ok(AppState {
            socket_slots: Arc::new(Semaphore::new(config.websocket.max_sockets)),
            config: Arc::new(config),
            store,
            metrics,
            clock,
            recordings_dir,
            recording,
            space,
            socket,
            tracker,
            shutdown,
            writes,
            twilio_credentials,
        })
    }
}

/// The voice app `app.kind` names.
fn load_app(config: &Config) -> Result<Option<AppFactory>, StartError> {
    Ok(match config.app.kind {
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
    })
}
