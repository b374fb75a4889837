//! The host service's configuration: a TOML file (`--config`), then environment variables
//! (`HOST_SERVICE_<SECTION>_<KEY>`, one rule for every key: `env`) on top, then each section's
//! rules (`validate`). Defaults run with no file at all; an unknown key in
//! the file or an unknown `HOST_SERVICE_*` variable is an error naming it, so a typo never
//! silently falls back to a default.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

mod env;
mod validate;
pub use validate::listen_needs_token;

use env::{apply_env, ENV_NOT_KEYS};
pub use env::{env_name, env_names, ENV_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: key {key}: {message}")]
    Key {
        path: String,
        key: String,
        message: String,
    },
    #[error("unknown environment variable {0} (no such config key)")]
    UnknownEnv(String),
    #[error("environment variable {name}: {message}")]
    BadEnv { name: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The engines' sections break their rules with the same words as the host's own.
impl From<postcall::Invalid> for ConfigError {
    fn from(e: postcall::Invalid) -> Self {
        ConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Recordings live here (and the SQLite database, unless `database.url` says otherwise).
    /// With several replicas on PostgreSQL, every replica mounts the same shared directory.
    pub data_dir: PathBuf,
    /// The public base URL Twilio uses (e.g. `https://voice.example.com`): webhook signatures are
    /// checked against it and the recording status callback is built from it.
    pub public_base_url: Option<String>,
    /// Bearer token for `/api/*`. Without one the API answers loopback clients only.
    pub api_token: Option<String>,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub websocket: WebSocketConfig,
    pub recording: RecordingConfig,
    pub twilio: TwilioConfig,
    pub app: AppConfig,
    pub pipeline: PipelineConfig,
    pub retention: RetentionConfig,
    pub dashboard: DashboardConfig,
    pub edge: EdgeConfig,
    /// The client of every OpenAI-compatible engine; each engine's `model` is in its own section.
    pub openai: postcall::OpenAiConfig,
    pub transcription: postcall::TranscriptionConfig,
    pub extraction: postcall::ExtractionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            data_dir: PathBuf::from("./data"),
            public_base_url: None,
            api_token: None,
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            websocket: WebSocketConfig::default(),
            recording: RecordingConfig::default(),
            twilio: TwilioConfig::default(),
            app: AppConfig::default(),
            pipeline: PipelineConfig::default(),
            retention: RetentionConfig::default(),
            dashboard: DashboardConfig::default(),
            edge: EdgeConfig::default(),
            openai: Default::default(),
            transcription: Default::default(),
            extraction: Default::default(),
        }
    }
}

/// Where the durable state lives: SQLite in `data_dir` (one replica), or PostgreSQL shared by
/// several replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/NAME`; unset: SQLite at
    /// `data_dir/host-service.db`.
    pub url: Option<String>,
    /// PostgreSQL: connections per replica.
    pub max_connections: u32,
    /// PostgreSQL: a replica that has not said it is alive for this long (by the database's
    /// clock) is dead; the streams it was recording are finished (repaired) by another replica
    /// that has itself been heard from without a break for as long.
    pub replica_timeout_ms: u64,
    /// `/readyz` answers 503 when the database does not answer `SELECT 1` within this long.
    pub ready_timeout_ms: u64,
    /// One attempt of a write a socket or a webhook makes (a stream's end, a call's end); past
    /// it, or on an error, the write is kept in memory and retried until it sticks.
    pub write_timeout_ms: u64,
    /// Writes kept for retry at once; past it a failed write is dropped with an error.
    pub retry_queue_max: usize,
    /// A request's read (the calls API, the live feed, `/metrics`' job counts, a recording
    /// callback) and the `twilio` source's own database calls wait at most this long; past it
    /// the answer is 503 `database_unavailable`.
    pub read_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            replica_timeout_ms: 15_000,
            ready_timeout_ms: 500,
            write_timeout_ms: 2_000,
            retry_queue_max: 10_000,
            read_timeout_ms: 2_000,
        }
    }
}

/// Timers of the HTTP server: a peer that trickles its headers or body, or never closes, must
/// not hold a connection (or the shutdown) forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request whose headers are not complete by then gets its connection closed.
    pub header_read_timeout_ms: u64,
    /// A webhook body not fully read by then is answered 408.
    pub body_read_timeout_ms: u64,
    /// Any request not answered by then (its body read included: a sign-in form, a lint
    /// request) is answered 408. Media sockets are timed by `websocket.*` once upgraded.
    pub request_timeout_ms: u64,
    /// Connections open at once (media sockets included); past it a new one is closed as soon
    /// as it is accepted.
    pub max_connections: usize,
    /// Comma-separated host names the API and the dashboard answer for (`Host` header, port
    /// ignored), against DNS rebinding. Empty: with `api_token`, any; without one, only
    /// `localhost`, `127.0.0.1` and `[::1]`.
    pub allowed_hosts: String,
    /// On shutdown, how long open connections and sockets get to finish before they are closed
    /// anyway.
    pub shutdown_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 1_024,
            allowed_hosts: String::new(),
            shutdown_timeout_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// A socket that sends no `start` within this long is closed.
    pub start_timeout_ms: u64,
    /// Larger text frames close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Media sockets open at once; past it the upgrade is answered 503.
    pub max_sockets: usize,
    /// After `start`, a socket silent for this long is closed (Twilio sends a frame every 20 ms).
    /// Pings and refused frames are not activity.
    pub idle_timeout_ms: u64,
    /// A socket open this long is closed, whatever it sends.
    pub max_lifetime_s: u64,
    /// Streams of one call open at once (on PostgreSQL counted in the database, across
    /// replicas); the next `start` is refused (1008).
    pub max_streams_per_call: usize,
    /// Frames of any kind (pings included) a socket may send in one second; past it the socket
    /// is closed (1008).
    pub max_frames_per_s: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            start_timeout_ms: 10_000,
            max_frame_bytes: 64 * 1024,
            max_sockets: 256,
            idle_timeout_ms: 15_000,
            max_lifetime_s: 4 * 3600 + 60,
            max_streams_per_call: 5,
            max_frames_per_s: 250,
        }
    }
}

/// How long call data is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Calls (rows, stage results, errors and recordings) older than this are deleted; 0 keeps
    /// everything.
    pub days: u64,
    /// How often the deletion runs.
    pub interval_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            days: 30,
            interval_s: 3600,
        }
    }
}

/// The dashboard's sign-in sessions (used only with `api_token`): bounded in number and in time,
/// so a flood of sign-ins cannot grow memory and a stolen cookie stops working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// A session ends this long after sign-in.
    pub session_ttl_s: u64,
    /// Sessions kept at once; one more sign-in ends the oldest.
    pub max_sessions: usize,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_ttl_s: 12 * 3600,
            max_sessions: 1000,
        }
    }
}

/// Where the dashboard's edge panel reads the guard's counters: Envoy's admin API, over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Envoy's admin base URL (`http://127.0.0.1:9901`); unset: the panel says so.
    pub envoy_admin_url: Option<String>,
    /// How long one read of the admin's stats may take.
    pub timeout_ms: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            envoy_admin_url: None,
            timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingSource {
    /// Built from the media stream by this service.
    Stream,
    /// Twilio records the call (REST API) and the service downloads the file.
    Twilio,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    pub source: RecordingSource,
    /// Audio placed past this many seconds is refused (a bogus timestamp cannot fill the disk).
    pub max_duration_s: u64,
    /// How far behind the caller's newest audio frames are kept in memory for reordering.
    pub reorder_window_ms: u64,
    /// A frame whose timestamp is further than this ahead of the time since `start` is refused
    /// (it would make the file grow by silence up to it).
    pub max_timestamp_jump_ms: u64,
    /// `twilio` source: a recording not `completed` this long after the call ended fails the
    /// call.
    pub twilio_deadline_s: u64,
    /// `stream` source: below this much free space under the recordings directory no new
    /// recording starts (calls go on without one); a warning comes at twice it. 0: no floor.
    pub min_free_mb: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            source: RecordingSource::Stream,
            max_duration_s: 4 * 3600,
            reorder_window_ms: 1000,
            max_timestamp_jump_ms: 10_000,
            twilio_deadline_s: 3600,
            min_free_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    pub account_sid: Option<String>,
    /// Signs webhooks (HMAC-SHA1) and authenticates REST calls and recording downloads.
    pub auth_token: Option<String>,
    /// Secret for HMAC-SHA256 signed webhooks.
    pub shared_key: Option<String>,
    pub api_base: String,
    /// Check `X-Twilio-Signature` on webhooks and the media handshake. On unless explicitly
    /// turned off; needs `auth_token` or `shared_key`.
    pub validate_signatures: bool,
    /// The media key shared with the edge filter (its `signature.media_key_env`): when set, a
    /// stream's `start` needs the filter's per-call token for that call.
    pub media_key: Option<String>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            account_sid: None,
            auth_token: None,
            shared_key: None,
            api_base: "https://api.twilio.com".into(),
            validate_signatures: true,
            media_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Listen only.
    None,
    /// Play `app.greeting_wav` to the caller; a key press stops it.
    Greeting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub kind: AppKind,
    pub greeting_wav: Option<PathBuf>,
    /// A mark is sent after every this much greeting audio.
    pub mark_every_ms: u64,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            kind: AppKind::None,
            greeting_wav: None,
            mark_every_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub workers: usize,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// A running job whose lease is older than this is taken over by another worker.
    pub lease_ms: u64,
    /// How often idle workers look for due jobs.
    pub poll_ms: u64,
    /// On SIGTERM, how long running stages may take to finish before the process exits anyway
    /// (their leases expire and the next start picks them up).
    pub drain_timeout_ms: u64,
    /// How long after a call ended the recording stage waits for its streams to finish (a
    /// stream whose end never reached the database, or a dead replica's not yet taken over);
    /// past it the call fails naming the open stream.
    pub stream_wait_timeout_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 2,
            max_attempts: 8,
            backoff_base_ms: 1000,
            backoff_cap_ms: 60_000,
            lease_ms: 60_000,
            poll_ms: 500,
            drain_timeout_ms: 10_000,
            stream_wait_timeout_ms: 600_000,
        }
    }
}

impl Config {
    /// Read the file (when given), apply `env` on top, and validate.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, label) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
                    path: p.to_owned(),
                    error,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<none>".to_string()),
        };
        Config::from_parts(&text, &label, env)
    }

    pub fn from_parts(
        text: &str,
        label: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: label.to_owned(),
            message: e.to_string(),
        })?;
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&k.as_str()))
            .collect();
        env.sort();
        // Which variable set which key, so a bad value is reported where it came from.
        let mut from_env = Vec::with_capacity(env.len());
        for (name, value) in env {
            let key = apply_env(&mut table, &name, &value)?;
            from_env.push((key, name));
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.inner().message().to_owned();
                match from_env.into_iter().find(|(k, _)| *k == key) {
                    Some((_, name)) => ConfigError::BadEnv { name, message },
                    None => ConfigError::Key {
                        path: label.to_owned(),
                        key,
                        message,
                    },
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Where recordings are written: `recordings/` under `data_dir`.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }
}

#[cfg(test)]
mod tests;
