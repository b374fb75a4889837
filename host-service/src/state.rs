//! What the handlers share (`AppState`) and the open-socket counter (`Tracker`), in one place so
//! the socket, HTTP and pipeline modules depend on it and not on each other.

use crate::clock::Clock;
use crate::config::{AppKind, Config};
use crate::metrics::Metrics;
use crate::recording::twilio::TwilioClient;
use crate::socket::voice::{self, AppFactory};
use crate::store::{Location, Store, StoreOptions};
use crate::{fsutil, StartError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};

/// Counts open sockets (or connections) so shutdown can wait for them.
#[derive(Default)]
pub struct Tracker {
    open: AtomicUsize,
    changed: Notify,
}

/// Held while one socket is open: dropping it (on every way out, a panic included) counts it
/// closed.
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
    /// One permit per media socket allowed at once (`websocket.max_sockets`).
    pub socket_slots: Arc<Semaphore>,
    /// Turns true when the service starts draining.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Check the configuration, open the data directory and database, load the app, and repair
    /// recordings a crash left open.
    pub async fn open(
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<AppState, StartError> {
        config.validate()?;
        let data = config.data_dir.clone();
        let recordings_dir = data.join("recordings");
        fsutil::create_private_dir(&recordings_dir).map_err(|error| StartError::DataDir {
            path: recordings_dir.clone(),
            error,
        })?;
        let location =
            Location::from_config(config.database.url.as_deref(), &data).map_err(|message| {
                crate::config::ConfigError::Invalid {
                    key: "database.url",
                    message,
                }
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
        let repaired =
            crate::replica::start(&store, &Clock::new(), config.database.replica_timeout_ms)
                .await?;
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
            socket_slots: Arc::new(Semaphore::new(config.websocket.max_sockets)),
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
