//! The host service's configuration: a TOML file (`--config`), then environment variables
//! (`HOST_SERVICE_<SECTION>_<KEY>`) on top. Defaults run with no file at all; an unknown key in
//! the file or an unknown `HOST_SERVICE_*` variable is an error naming it, so a typo never
//! silently falls back to a default.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const ENV_PREFIX: &str = "HOST_SERVICE_";
/// Variables with the prefix that are not configuration keys (read by the CLI itself).
const ENV_NOT_KEYS: [&str; 2] = ["HOST_SERVICE_CONFIG", "HOST_SERVICE_LOG"];

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
    pub transcription: postcall::TranscriptionConfig,
    pub extraction: postcall::ExtractionConfig,
    #[cfg(feature = "test-engines")]
    pub test_engines: crate::test_engines::TestEnginesConfig,
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
            transcription: Default::default(),
            extraction: Default::default(),
            #[cfg(feature = "test-engines")]
            test_engines: Default::default(),
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
    /// PostgreSQL: a replica that has not said it is alive for this long is dead; the streams
    /// it was recording are finished (repaired) by another replica.
    pub replica_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            replica_timeout_ms: 15_000,
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
    /// On shutdown, how long open connections and sockets get to finish before they are closed
    /// anyway.
    pub shutdown_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
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
    pub idle_timeout_ms: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            start_timeout_ms: 10_000,
            max_frame_bytes: 64 * 1024,
            max_sockets: 256,
            idle_timeout_ms: 15_000,
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
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            source: RecordingSource::Stream,
            max_duration_s: 4 * 3600,
            reorder_window_ms: 1000,
            max_timestamp_jump_ms: 10_000,
            twilio_deadline_s: 3600,
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
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            account_sid: None,
            auth_token: None,
            shared_key: None,
            api_base: "https://api.twilio.com".into(),
            validate_signatures: true,
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

/// Where the pipeline's engines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineEngines {
    /// `postcall`: the engines of `[transcription]` and `[extraction]`.
    Postcall,
    /// The deterministic engines of the process tests (`test_engines`).
    #[cfg(feature = "test-engines")]
    Test,
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
    pub engines: PipelineEngines,
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
            engines: PipelineEngines::Postcall,
        }
    }
}

/// What an environment variable's text must parse as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Every key of the host's own sections with its kind, read off the type itself (the defaults,
/// serialized): a new field gets its variable without being listed anywhere. An optional key
/// serializes as `null`; every optional key of the host is text (a path, a URL, a secret), which
/// `optional_keys_are_text` checks.
fn keys() -> Vec<(String, Kind)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, Kind)>) {
        let serde_json::Value::Object(map) = value else {
            return;
        };
        for (name, v) in map {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match v {
                serde_json::Value::Object(_) if !OPEN_SECTIONS.contains(&key.as_str()) => {
                    walk(&key, v, out)
                }
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {}
                serde_json::Value::Number(_) => out.push((key, Kind::Int)),
                serde_json::Value::Bool(_) => out.push((key, Kind::Bool)),
                serde_json::Value::String(_) | serde_json::Value::Null => {
                    out.push((key, Kind::Str))
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(defaults) = serde_json::to_value(Config::default()) {
        walk("", &defaults, &mut out);
    }
    out
}

/// Sections owned by the engines: their keys are passed through and checked by the engines'
/// own config types.
const OPEN_SECTIONS: [&str; 2] = ["transcription", "extraction"];

/// The environment variable for a key: `pipeline.lease_ms` -> `HOST_SERVICE_PIPELINE_LEASE_MS`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every documented key and its variable (for `--print-keys` and the README).
pub fn env_names() -> Vec<(String, String)> {
    keys()
        .into_iter()
        .map(|(k, _)| {
            let env = env_name(&k);
            (k, env)
        })
        .collect()
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

    /// Check the keys that depend on each other; `run` calls it again for configs built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.pipeline.workers == 0 {
            return invalid("pipeline.workers", "must be at least 1");
        }
        if self.pipeline.max_attempts == 0 {
            return invalid("pipeline.max_attempts", "must be at least 1");
        }
        if self.pipeline.lease_ms < 100 {
            return invalid("pipeline.lease_ms", "must be at least 100");
        }
        if self.pipeline.backoff_cap_ms < self.pipeline.backoff_base_ms {
            return invalid(
                "pipeline.backoff_cap_ms",
                "must not be below backoff_base_ms",
            );
        }
        if self.app.kind == AppKind::Greeting && self.app.greeting_wav.is_none() {
            return invalid("app.greeting_wav", "required when app.kind = \"greeting\"");
        }
        if self.app.mark_every_ms == 0 {
            return invalid("app.mark_every_ms", "must be at least 1");
        }
        if self.recording.source == RecordingSource::Twilio {
            if self.twilio.auth_token.is_none() {
                return invalid(
                    "twilio.auth_token",
                    "required when recording.source = \"twilio\"",
                );
            }
            if self.public_base_url.is_none() {
                return invalid(
                    "public_base_url",
                    "required when recording.source = \"twilio\" (the status callback URL)",
                );
            }
        }
        if let Some(base) = &self.public_base_url {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return invalid("public_base_url", "must start with https:// or http://");
            }
        }
        if self.validate_signatures() && !self.has_signing_key() {
            return invalid(
                "twilio.validate_signatures",
                "is on but no key is set: set twilio.auth_token (HOST_SERVICE_TWILIO_AUTH_TOKEN) \
                 or twilio.shared_key (HOST_SERVICE_TWILIO_SHARED_KEY), or accept unsigned \
                 requests with twilio.validate_signatures = false \
                 (HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES=false)",
            );
        }
        if self.validate_signatures() && self.public_base_url.is_none() {
            return invalid(
                "public_base_url",
                "required to check webhook signatures (the URL Twilio signed)",
            );
        }
        if let Some(url) = &self.database.url {
            if let Err(message) = crate::store::Location::parse(url) {
                return invalid("database.url", &message);
            }
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.database.replica_timeout_ms < 3_000 {
            return invalid(
                "database.replica_timeout_ms",
                "must be at least 3000 (replicas say they are alive every third of it)",
            );
        }
        if self.websocket.max_sockets == 0 {
            return invalid("websocket.max_sockets", "must be at least 1");
        }
        for (key, ms) in [
            ("websocket.idle_timeout_ms", self.websocket.idle_timeout_ms),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.body_read_timeout_ms", self.http.body_read_timeout_ms),
            ("retention.interval_s", self.retention.interval_s),
            ("dashboard.session_ttl_s", self.dashboard.session_ttl_s),
            ("edge.timeout_ms", self.edge.timeout_ms),
            (
                "recording.twilio_deadline_s",
                self.recording.twilio_deadline_s,
            ),
        ] {
            if ms == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.dashboard.max_sessions == 0 {
            return invalid("dashboard.max_sessions", "must be at least 1");
        }
        if let Some(admin) = &self.edge.envoy_admin_url {
            let ok = url::Url::parse(admin)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return invalid(
                    "edge.envoy_admin_url",
                    "must be an http:// or https:// URL (Envoy's admin, e.g. http://127.0.0.1:9901)",
                );
            }
        }
        if let Some(token) = &self.api_token {
            if token.len() < 16 {
                return invalid("api_token", "must be at least 16 characters");
            }
        }
        Ok(())
    }

    /// Whether webhooks and the media handshake must carry a valid `X-Twilio-Signature`.
    pub fn validate_signatures(&self) -> bool {
        self.twilio.validate_signatures
    }

    fn has_signing_key(&self) -> bool {
        let set = |k: &Option<String>| k.as_deref().is_some_and(|k| !k.is_empty());
        set(&self.twilio.auth_token) || set(&self.twilio.shared_key)
    }
}

/// The engines' default configuration as TOML, to learn the shape of their sections.
fn engine_defaults(section: &str) -> toml::Table {
    let value = match section {
        "transcription" => toml::Value::try_from(postcall::TranscriptionConfig::default()),
        _ => toml::Value::try_from(postcall::ExtractionConfig::default()),
    };
    match value {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// A variable's text as the type of the value it replaces; for a key with no default (unset
/// options), as TOML would read a bare value.
fn typed_like(default: Option<&toml::Value>, value: &str) -> toml::Value {
    match default {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        Some(toml::Value::Integer(_)) => value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        Some(toml::Value::Float(_)) => value
            .parse::<f64>()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        Some(toml::Value::Boolean(_)) => value
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        _ => {
            if let Ok(i) = value.parse::<i64>() {
                toml::Value::Integer(i)
            } else if let Ok(b) = value.parse::<bool>() {
                toml::Value::Boolean(b)
            } else {
                toml::Value::String(value.to_owned())
            }
        }
    }
}

/// Set the key `name` stands for; returns that key, dotted.
fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<String, ConfigError> {
    let bad = |message: String| ConfigError::BadEnv {
        name: name.to_owned(),
        message,
    };
    let known = keys().into_iter().find(|(k, _)| env_name(k) == name);
    let (path, value) = match known {
        Some((key, kind)) => {
            let v = match kind {
                Kind::Str => toml::Value::String(value.to_owned()),
                Kind::Int => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not an integer")))?,
                ),
                Kind::Bool => toml::Value::Boolean(match value.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("{value:?} is not true or false"))),
                }),
            };
            (key.split('.').map(str::to_owned).collect::<Vec<_>>(), v)
        }
        None => {
            let rest = &name[ENV_PREFIX.len()..];
            let section = OPEN_SECTIONS
                .iter()
                .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))
                .ok_or_else(|| ConfigError::UnknownEnv(name.to_owned()))?;
            let key = rest[section.len() + 1..].to_ascii_lowercase();
            // The engines' keys are not listed here: their shape comes from their defaults
            // (`HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL_DIR` is `transcription.whisper.model_dir`)
            // and a value takes the type of the default it replaces.
            let defaults = engine_defaults(section);
            let sub = defaults
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, _)| k)
                .find(|k| key.starts_with(&format!("{k}_")));
            let (path, default) = match sub {
                Some(sub) => {
                    let leaf = key[sub.len() + 1..].to_owned();
                    let default = defaults.get(sub).and_then(|t| t.get(&leaf)).cloned();
                    (vec![section.to_string(), sub.clone(), leaf], default)
                }
                None => {
                    let default = defaults.get(&key).cloned();
                    (vec![section.to_string(), key], default)
                }
            };
            (path, typed_like(default.as_ref(), value))
        }
    };
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| bad(format!("{part} is not a table in the config file")))?;
    }
    node.insert(path[path.len() - 1].clone(), value);
    Ok(path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const UNSIGNED: (&str, &str) = ("HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES", "false");

    #[test]
    fn defaults_need_no_file_but_a_key_or_an_explicit_opt_out() {
        let err = Config::from_parts("", "-", env(&[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config key twilio.validate_signatures: is on but no key is set: set \
             twilio.auth_token (HOST_SERVICE_TWILIO_AUTH_TOKEN) or twilio.shared_key \
             (HOST_SERVICE_TWILIO_SHARED_KEY), or accept unsigned requests with \
             twilio.validate_signatures = false (HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES=false)"
        );
        assert!(!err.contains('\n'));
        let c = Config::from_parts("", "-", env(&[UNSIGNED])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.recording.source, RecordingSource::Stream);
        assert_eq!(c.app.kind, AppKind::None);
        assert!(!c.validate_signatures());
        assert_eq!(c.websocket.max_sockets, 256);
        assert_eq!(c.websocket.idle_timeout_ms, 15_000);
        assert_eq!(c.recording.max_timestamp_jump_ms, 10_000);
        assert_eq!(c.http.shutdown_timeout_ms, 15_000);
        assert_eq!(c.retention.days, 30);
    }

    #[test]
    fn a_shared_key_alone_turns_checking_on() {
        let base = ("HOST_SERVICE_PUBLIC_BASE_URL", "https://voice.example.com");
        let c = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_TWILIO_SHARED_KEY", "k"), base]),
        )
        .unwrap();
        assert!(c.validate_signatures());
        assert_eq!(c.twilio.auth_token, None);
        let c = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_TWILIO_AUTH_TOKEN", "t"), base]),
        )
        .unwrap();
        assert!(c.validate_signatures());
        // A key without the public URL cannot be checked either.
        let err = Config::from_parts("", "-", env(&[("HOST_SERVICE_TWILIO_SHARED_KEY", "k")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config key public_base_url:"), "{err}");
        // An empty key is no key.
        let err = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_TWILIO_AUTH_TOKEN", ""), base]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("config key twilio.validate_signatures:"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_file_and_every_key_has_a_variable() {
        let c = Config::from_parts(
            "listen = \"0.0.0.0:1\"\n[pipeline]\nworkers = 3\n",
            "-",
            env(&[
                ("HOST_SERVICE_LISTEN", "127.0.0.1:9"),
                ("HOST_SERVICE_PIPELINE_LEASE_MS", "1500"),
                ("HOST_SERVICE_TRANSCRIPTION_ENGINE", "none"),
                ("HOST_SERVICE_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
                UNSIGNED,
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9");
        assert_eq!(c.pipeline.workers, 3);
        assert_eq!(c.pipeline.lease_ms, 1500);
        assert_eq!(c.transcription.engine, postcall::TranscriptionEngine::Off);
        assert_eq!(
            env_name("pipeline.lease_ms"),
            "HOST_SERVICE_PIPELINE_LEASE_MS"
        );
    }

    #[test]
    fn engine_keys_nest_and_take_their_defaults_type() {
        let c = Config::from_parts(
            "",
            "-",
            env(&[
                (
                    "HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL_DIR",
                    "/models/123",
                ),
                ("HOST_SERVICE_TRANSCRIPTION_WHISPER_BEAM_SIZE", "1"),
                ("HOST_SERVICE_TRANSCRIPTION_WHISPER_LANGUAGE", "he"),
                ("HOST_SERVICE_EXTRACTION_LOCAL_DEFAULT_REGION", "IL"),
                UNSIGNED,
            ]),
        )
        .unwrap();
        assert_eq!(
            c.transcription.whisper.model_dir,
            PathBuf::from("/models/123")
        );
        assert_eq!(c.transcription.whisper.beam_size, 1);
        assert_eq!(c.transcription.whisper.language.as_deref(), Some("he"));
        assert_eq!(c.extraction.local.default_region, "IL");
        let err = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL", "x")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
    }

    #[test]
    fn unknown_keys_and_variables_are_errors_that_name_them() {
        let err = Config::from_parts("[pipeline]\nworker = 3\n", "x.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("worker"), "{err}");
        let err = Config::from_parts("", "-", env(&[("HOST_SERVICE_LISTN", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment variable HOST_SERVICE_LISTN (no such config key)"
        );
        let err = Config::from_parts("", "-", env(&[("HOST_SERVICE_PIPELINE_WORKERS", "two")]))
            .unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
        let err =
            Config::from_parts("[recording]\nsource = \"tape\"\n", "-", env(&[])).unwrap_err();
        assert!(err.to_string().contains("tape"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_dotted_key() {
        let err = Config::from_parts(
            "[pipeline]\nworkers = \"two\"\n",
            "x.toml",
            env(&[UNSIGNED]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config file x.toml: key pipeline.workers: invalid type: string \"two\", expected usize"
        );
        let err = Config::from_parts("[twilio]\nvalidate_signatures = 1\n", "x.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file x.toml: key twilio.validate_signatures: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it() {
        let err = Config::from_parts("[websocket]\nmax_socket = 3\n", "x.toml", env(&[UNSIGNED]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Key { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.starts_with("config file x.toml: key websocket"),
            "{err}"
        );
        assert!(err.contains("unknown field `max_socket`"), "{err}");
        let err = Config::from_parts("lisen = \"x\"\n", "x.toml", env(&[UNSIGNED]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `lisen`"), "{err}");
    }

    #[test]
    fn an_env_override_wins_over_the_file() {
        let file = "[pipeline]\nworkers = 3\n[twilio]\nvalidate_signatures = true\n";
        let c = Config::from_parts(
            file,
            "-",
            env(&[("HOST_SERVICE_PIPELINE_WORKERS", "5"), UNSIGNED]),
        )
        .unwrap();
        assert_eq!(c.pipeline.workers, 5);
        assert!(!c.validate_signatures());
    }

    /// The documented table and the type agree: every key and variable in
    /// docs/host-service.md exists, and every key of the type is documented.
    #[test]
    fn every_documented_key_and_variable_and_only_those() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/host-service.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let mut documented: Vec<(String, String)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split('|');
                let key = cells.next()?.trim().trim_matches('`');
                let env = cells.next()?.trim().trim_matches('`');
                (!key.contains('*') && env.starts_with(ENV_PREFIX))
                    .then(|| (key.to_owned(), env.to_owned()))
            })
            .collect();
        documented.sort();
        let mut ours: Vec<(String, String)> = env_names()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("test_engines."))
            .collect();
        ours.sort();
        assert_eq!(ours, documented);
        assert_eq!(ours.len(), 41);
    }

    /// Variables for optional keys are taken as text: a digits-only token stays a string.
    #[test]
    fn optional_keys_are_text() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        for (key, kind) in keys() {
            let mut node = &defaults;
            for part in key.split('.') {
                node = &node[part];
            }
            if !node.is_null() {
                continue;
            }
            assert_eq!(kind, Kind::Str, "{key}");
            let digits = "1234567890123456";
            let loaded = Config::from_parts("", "-", env(&[(&env_name(&key), digits), UNSIGNED]));
            if let Err(e @ ConfigError::Key { .. }) = loaded {
                panic!("{key}: {e}");
            }
        }
        let c = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_API_TOKEN", "1234567890123456"), UNSIGNED]),
        )
        .unwrap();
        assert_eq!(c.api_token.as_deref(), Some("1234567890123456"));
    }

    #[test]
    fn pipeline_engines_is_a_closed_set() {
        let c = Config::from_parts(
            "[pipeline]\nengines = \"postcall\"\n",
            "-",
            env(&[UNSIGNED]),
        )
        .unwrap();
        assert_eq!(c.pipeline.engines, PipelineEngines::Postcall);
        let err = Config::from_parts(
            "",
            "-",
            env(&[("HOST_SERVICE_PIPELINE_ENGINES", "openai"), UNSIGNED]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "environment variable HOST_SERVICE_PIPELINE_ENGINES: unknown variant `openai`"
            ),
            "{err}"
        );
        let err = Config::from_parts("[pipeline]\nengines = \"openai\"\n", "x.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file x.toml: key pipeline.engines: unknown variant `openai`"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host-service.toml");
        let c = Config::load(Some(&path), env(&[UNSIGNED])).unwrap();
        assert_eq!(c, {
            let mut d = Config::default();
            d.transcription.engine = postcall::TranscriptionEngine::Off;
            d.twilio.validate_signatures = false;
            d
        });
    }

    #[test]
    fn dependent_keys_are_checked() {
        let err = Config::from_parts("[recording]\nsource = \"twilio\"\n", "-", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twilio.auth_token"), "{err}");
        let err = Config::from_parts("[twilio]\nauth_token = \"t\"\n", "-", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("public_base_url"), "{err}");
        let err = Config::from_parts(
            "[edge]\nenvoy_admin_url = \"127.0.0.1:9901\"\n",
            "-",
            env(&[UNSIGNED]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("config key edge.envoy_admin_url:"), "{err}");
        let c = Config::from_parts(
            "",
            "-",
            env(&[
                ("HOST_SERVICE_EDGE_ENVOY_ADMIN_URL", "http://127.0.0.1:9901"),
                UNSIGNED,
            ]),
        )
        .unwrap();
        assert_eq!(
            c.edge.envoy_admin_url.as_deref(),
            Some("http://127.0.0.1:9901")
        );
        let err = Config::from_parts("[dashboard]\nmax_sessions = 0\n", "-", env(&[UNSIGNED]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dashboard.max_sessions"), "{err}");
        let err = Config::from_parts("api_token = \"short\"\n", "-", env(&[UNSIGNED]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_token"), "{err}");
    }
}
