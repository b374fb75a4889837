//! The rules between keys that types alone cannot say: each section checks its own keys, and
//! `Config::validate` adds the rules that span sections. The first broken rule is reported,
//! naming its key.

use super::*;

type Checked = Result<(), ConfigError>;

fn invalid(key: &'static str, message: &str) -> Checked {
    Err(ConfigError::Invalid {
        key,
        message: message.to_owned(),
    })
}

/// `key` must be at least 1 (a count, or a timer for which 0 would mean "never").
fn at_least_one(key: &'static str, value: u64) -> Checked {
    if value == 0 {
        return invalid(key, "must be at least 1");
    }
    Ok(())
}

impl Config {
    /// Check the keys that depend on each other; `run` calls it again for configs built in code.
    pub fn validate(&self) -> Checked {
        self.pipeline.validate()?;
        self.app.validate()?;
        self.recording_source_needs()?;
        if let Some(base) = &self.public_base_url {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return invalid("public_base_url", "must start with https:// or http://");
            }
        }
        self.signatures_need()?;
        if let Some(key) = &self.twilio.media_key {
            if key.len() < 16 {
                return invalid("twilio.media_key", "must be at least 16 characters");
            }
        }
        self.database.validate()?;
        self.websocket.validate()?;
        self.http.validate()?;
        at_least_one("retention.interval_s", self.retention.interval_s)?;
        self.dashboard.validate()?;
        self.edge.validate()?;
        self.openai.validate()?;
        self.transcription.validate()?;
        self.extraction.validate()?;
        at_least_one(
            "recording.twilio_deadline_s",
            self.recording.twilio_deadline_s,
        )?;
        if let Some(token) = &self.api_token {
            if token.len() < 16 {
                return invalid("api_token", "must be at least 16 characters");
            }
        }
        if self.http.max_connections <= self.websocket.max_sockets {
            return invalid(
                "http.max_connections",
                "must be greater than websocket.max_sockets (every media socket is a connection)",
            );
        }
        listen_needs_token(self.listen, self.api_token.as_deref())
    }

    /// The `twilio` source asks Twilio to record (credentials) with a status callback (a public
    /// URL).
    fn recording_source_needs(&self) -> Checked {
        if self.recording.source != RecordingSource::Twilio {
            return Ok(());
        }
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
        Ok(())
    }

    /// Checking signatures needs a key and the URL Twilio signed.
    fn signatures_need(&self) -> Checked {
        if !self.validate_signatures() {
            return Ok(());
        }
        if !self.twilio.has_signing_key() {
            return invalid(
                "twilio.validate_signatures",
                "is on but no key is set: set twilio.auth_token (HOST_SERVICE_TWILIO_AUTH_TOKEN) \
                 or twilio.shared_key (HOST_SERVICE_TWILIO_SHARED_KEY), or accept unsigned \
                 requests with twilio.validate_signatures = false \
                 (HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES=false)",
            );
        }
        if self.public_base_url.is_none() {
            return invalid(
                "public_base_url",
                "required to check webhook signatures (the URL Twilio signed)",
            );
        }
        Ok(())
    }

    /// Whether webhooks and the media handshake must carry a valid `X-Twilio-Signature`.
    pub fn validate_signatures(&self) -> bool {
        self.twilio.validate_signatures
    }
}

impl TwilioConfig {
    fn has_signing_key(&self) -> bool {
        let set = |k: &Option<String>| k.as_deref().is_some_and(|k| !k.is_empty());
        set(&self.auth_token) || set(&self.shared_key)
    }
}

impl PipelineConfig {
    fn validate(&self) -> Checked {
        at_least_one("pipeline.workers", self.workers as u64)?;
        at_least_one("pipeline.max_attempts", self.max_attempts.into())?;
        at_least_one(
            "pipeline.stream_wait_timeout_ms",
            self.stream_wait_timeout_ms,
        )?;
        if self.lease_ms < 100 {
            return invalid("pipeline.lease_ms", "must be at least 100");
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return invalid(
                "pipeline.backoff_cap_ms",
                "must not be below backoff_base_ms",
            );
        }
        Ok(())
    }
}

impl AppConfig {
    fn validate(&self) -> Checked {
        if self.kind == AppKind::Greeting && self.greeting_wav.is_none() {
            return invalid("app.greeting_wav", "required when app.kind = \"greeting\"");
        }
        at_least_one("app.mark_every_ms", self.mark_every_ms)
    }
}

impl DatabaseConfig {
    fn validate(&self) -> Checked {
        if let Some(url) = &self.url {
            if let Err(message) = crate::store::Location::parse(url) {
                return invalid("database.url", &message);
            }
        }
        at_least_one("database.max_connections", self.max_connections.into())?;
        if self.replica_timeout_ms < 3_000 {
            return invalid(
                "database.replica_timeout_ms",
                "must be at least 3000 (replicas say they are alive every third of it)",
            );
        }
        at_least_one("database.ready_timeout_ms", self.ready_timeout_ms)?;
        at_least_one("database.write_timeout_ms", self.write_timeout_ms)?;
        at_least_one("database.retry_queue_max", self.retry_queue_max as u64)?;
        at_least_one("database.read_timeout_ms", self.read_timeout_ms)
    }
}

impl WebSocketConfig {
    fn validate(&self) -> Checked {
        at_least_one("websocket.max_sockets", self.max_sockets as u64)?;
        at_least_one("websocket.idle_timeout_ms", self.idle_timeout_ms)?;
        at_least_one("websocket.max_lifetime_s", self.max_lifetime_s)?;
        at_least_one(
            "websocket.max_streams_per_call",
            self.max_streams_per_call as u64,
        )?;
        at_least_one("websocket.max_frames_per_s", self.max_frames_per_s.into())
    }
}

impl HttpConfig {
    fn validate(&self) -> Checked {
        at_least_one("http.header_read_timeout_ms", self.header_read_timeout_ms)?;
        at_least_one("http.body_read_timeout_ms", self.body_read_timeout_ms)?;
        if self.request_timeout_ms <= self.body_read_timeout_ms {
            return invalid(
                "http.request_timeout_ms",
                "must be longer than http.body_read_timeout_ms (a webhook's body is read within it)",
            );
        }
        at_least_one("http.max_connections", self.max_connections as u64)
    }
}

impl DashboardConfig {
    fn validate(&self) -> Checked {
        at_least_one("dashboard.session_ttl_s", self.session_ttl_s)?;
        at_least_one("dashboard.max_sessions", self.max_sessions as u64)
    }
}

impl EdgeConfig {
    fn validate(&self) -> Checked {
        at_least_one("edge.timeout_ms", self.timeout_ms)?;
        if let Some(admin) = &self.envoy_admin_url {
            let ok = url::Url::parse(admin)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return invalid(
                    "edge.envoy_admin_url",
                    "must be an http:// or https:// URL (Envoy's admin, e.g. http://127.0.0.1:9901)",
                );
            }
        }
        Ok(())
    }
}

/// Without `api_token` the API trusts loopback peers only, which is safe only while nothing
/// beyond this machine can connect: listening anywhere else needs a token.
pub fn listen_needs_token(listen: std::net::SocketAddr, api_token: Option<&str>) -> Checked {
    if api_token.is_none() && !listen.ip().is_loopback() {
        return invalid(
            "api_token",
            &format!(
                "required to listen on {listen}, which is not a loopback address (without a token the API trusts loopback peers only)"
            ),
        );
    }
    Ok(())
}
