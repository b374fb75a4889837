//! The plugin configuration: parsed and validated once per plugin (re)configure, so a typo stops
//! Envoy at start-up with a message naming the field instead of running a phone line on a guess.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use twiml::{RewriteAction as CoreAction, RewriteOptions};

/// Largest `max_body_bytes` accepted. Envoy's own buffer limit
/// (`per_connection_buffer_limit_bytes`, 1 MiB by default) must stay above the value chosen.
pub const MAX_BODY_BYTES_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Rewrite,
    Strict,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewriteAction {
    Strip,
    StartRecording,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Pass,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectStyle {
    /// A local reply with `reject_status` and a JSON body. Needs response headers held
    /// (`allow_on_headers_stop_iteration: true`).
    Status,
    /// The body becomes `fallback_twiml`, status unchanged: works where headers cannot be held.
    Twiml,
}

/// The configuration as written, with the documented defaults. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub mode: Mode,
    pub rewrite_action: RewriteAction,
    pub recording_status_callback: Option<String>,
    pub paths: Vec<String>,
    pub content_types: Vec<String>,
    pub max_body_bytes: u64,
    pub on_oversize: Policy,
    pub on_malformed: Policy,
    pub reject_status: u32,
    pub reject_style: RejectStyle,
    pub fallback_twiml: String,
    pub media_path: String,
    pub log_twiml: bool,
    pub signature: Option<crate::signature::RawSignatureConfig>,
}

pub const DEFAULT_FALLBACK_TWIML: &str =
    "<Response><Say>We are sorry, this line is not available.</Say><Hangup/></Response>";

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            mode: Mode::Rewrite,
            rewrite_action: RewriteAction::Strip,
            recording_status_callback: None,
            paths: Vec::new(),
            content_types: vec!["text/xml".into(), "application/xml".into()],
            max_body_bytes: 262_144,
            on_oversize: Policy::Pass,
            on_malformed: Policy::Pass,
            reject_status: 502,
            reject_style: RejectStyle::Status,
            fallback_twiml: DEFAULT_FALLBACK_TWIML.into(),
            media_path: "/ws/twilio-media".into(),
            log_twiml: false,
            signature: None,
        }
    }
}

/// The validated configuration the filter runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub rewrite: RewriteOptions,
    pub paths: Vec<String>,
    /// Lowercase media types (no parameters).
    pub content_types: Vec<String>,
    pub max_body_bytes: usize,
    pub on_oversize: Policy,
    pub on_malformed: Policy,
    pub reject_status: u32,
    pub reject_style: RejectStyle,
    pub fallback_twiml: String,
    pub media_path: String,
    pub log_twiml: bool,
    /// Twilio request-signature checks; `None` when the `signature` key is absent.
    pub signature: Option<crate::signature::SignatureConfig>,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction; `parse(b"")` is tested to agree.
        let raw = RawConfig::default();
        Config {
            mode: raw.mode,
            rewrite: RewriteOptions {
                action: CoreAction::Strip,
                recording_status_callback: None,
            },
            paths: raw.paths,
            content_types: raw.content_types,
            max_body_bytes: 262_144,
            on_oversize: raw.on_oversize,
            on_malformed: raw.on_malformed,
            reject_status: raw.reject_status,
            reject_style: raw.reject_style,
            fallback_twiml: raw.fallback_twiml,
            media_path: raw.media_path,
            log_twiml: raw.log_twiml,
            signature: None,
        }
    }
}

impl Config {
    /// Response headers are held until the verdict (so `x-twiml-guard` and status rejects work)
    /// only with `reject_style: status`; `twiml` is the style for hosts that cannot hold them
    /// (Istio WasmPlugin, Envoy Gateway), where a paused header callback would hang the request.
    pub fn holds_headers(&self) -> bool {
        self.reject_style == RejectStyle::Status
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugin configuration is not valid JSON: {0}")]
    Json(String),
    #[error("plugin configuration must be a JSON object")]
    NotObject,
    #[error("unknown field `{0}` (known fields: {known})", known = KNOWN_FIELDS.join(", "))]
    UnknownField(String),
    #[error("field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// The offending key, when the problem is one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField(f) => Some(f),
            ConfigError::Field { field, .. } => Some(field),
            ConfigError::Json(_) | ConfigError::NotObject => None,
        }
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "mode",
    "rewrite_action",
    "recording_status_callback",
    "paths",
    "content_types",
    "max_body_bytes",
    "on_oversize",
    "on_malformed",
    "reject_status",
    "reject_style",
    "fallback_twiml",
    "media_path",
    "log_twiml",
    "signature",
];

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        message: message.into(),
    }
}

fn typed<T: DeserializeOwned>(field: &'static str, v: &Value) -> Result<(), ConfigError> {
    T::deserialize(v)
        .map(|_| ())
        .map_err(|e| bad(field, e.to_string()))
}

/// serde's messages for a wrong type or an unknown variant do not say which key held it, so each
/// key is first checked on its own; the derived `RawConfig` then does the real deserializing.
fn check_each_field(map: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, v) in map {
        match key.as_str() {
            "mode" => typed::<Mode>("mode", v)?,
            "rewrite_action" => typed::<RewriteAction>("rewrite_action", v)?,
            "recording_status_callback" => typed::<Option<String>>("recording_status_callback", v)?,
            "paths" => typed::<Vec<String>>("paths", v)?,
            "content_types" => typed::<Vec<String>>("content_types", v)?,
            "max_body_bytes" => typed::<u64>("max_body_bytes", v)?,
            "on_oversize" => typed::<Policy>("on_oversize", v)?,
            "on_malformed" => typed::<Policy>("on_malformed", v)?,
            "reject_status" => typed::<u32>("reject_status", v)?,
            "reject_style" => typed::<RejectStyle>("reject_style", v)?,
            "fallback_twiml" => typed::<String>("fallback_twiml", v)?,
            "media_path" => typed::<String>("media_path", v)?,
            "log_twiml" => typed::<bool>("log_twiml", v)?,
            "signature" => {
                typed::<Option<crate::signature::RawSignatureConfig>>("signature", v)?;
            }
            other => return Err(ConfigError::UnknownField(other.to_string())),
        }
    }
    Ok(())
}

/// Parse and validate the plugin configuration. Empty (or whitespace-only) means all defaults.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return validate(RawConfig::default());
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ConfigError::NotObject);
    };
    check_each_field(&map)?;
    // From the bytes again, not the map: the derive also refuses a duplicated key, which the map
    // would have resolved silently to its last value.
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
    validate(raw)
}

/// An absolute http(s) URL with a host and no whitespace: Twilio will call it, so a relative or
/// mistyped URL must be caught here, not on a live call.
pub fn is_absolute_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn valid_path(p: &str) -> bool {
    p.starts_with('/') && !p.contains(['?', '#']) && !p.chars().any(|c| c.is_whitespace())
}

fn valid_media_type(t: &str) -> bool {
    let mut parts = t.split('/');
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if token(a) && token(b))
}

/// The fallback is sent in place of refused TwiML, so it must itself be a well-formed, clean
/// `<Response>`. `twiml::inspect` always parses (the verdict's fast path would call any body
/// without `<Record` clean, garbage included).
pub fn check_fallback_twiml(doc: &str) -> Result<(), String> {
    let body = doc.as_bytes();
    match twiml::inspect(body) {
        Err(m) => Err(m.to_string()),
        Ok(i) if !i.root_is_response => Err("must be one <Response> element".into()),
        Ok(i) => match i.verdict(body) {
            twiml::Verdict::Clean => Ok(()),
            other => Err(format!(
                "must be clean TwiML (a <Response> without a blocking <Record>), got {}",
                other.name()
            )),
        },
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    if let Some(url) = &raw.recording_status_callback {
        if !is_absolute_url(url) {
            return Err(bad(
                "recording_status_callback",
                format!("{url:?} is not an absolute http(s) URL"),
            ));
        }
    }
    for p in &raw.paths {
        if !valid_path(p) {
            return Err(bad(
                "paths",
                format!("{p:?} is not a path prefix (must start with '/', no query)"),
            ));
        }
    }
    if raw.content_types.is_empty() {
        return Err(bad(
            "content_types",
            "must list at least one media type, or nothing would be inspected",
        ));
    }
    let mut content_types = Vec::with_capacity(raw.content_types.len());
    for t in &raw.content_types {
        let lower = t.trim().to_ascii_lowercase();
        if !valid_media_type(&lower) {
            return Err(bad(
                "content_types",
                format!("{t:?} is not a media type like \"text/xml\" (no parameters)"),
            ));
        }
        content_types.push(lower);
    }
    if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_BODY_BYTES_LIMIT {
        return Err(bad(
            "max_body_bytes",
            format!(
                "{} is outside 1..={MAX_BODY_BYTES_LIMIT}",
                raw.max_body_bytes
            ),
        ));
    }
    let max_body_bytes = usize::try_from(raw.max_body_bytes)
        .map_err(|_| bad("max_body_bytes", "does not fit this platform"))?;
    if !(100..=599).contains(&raw.reject_status) {
        return Err(bad(
            "reject_status",
            format!("{} is not an HTTP status (100-599)", raw.reject_status),
        ));
    }
    if let Err(why) = check_fallback_twiml(&raw.fallback_twiml) {
        return Err(bad("fallback_twiml", why));
    }
    if !valid_path(&raw.media_path) {
        return Err(bad(
            "media_path",
            format!(
                "{:?} is not a path (must start with '/', no query)",
                raw.media_path
            ),
        ));
    }
    Ok(Config {
        mode: raw.mode,
        rewrite: RewriteOptions {
            action: match raw.rewrite_action {
                RewriteAction::Strip => CoreAction::Strip,
                RewriteAction::StartRecording => CoreAction::StartRecording,
            },
            recording_status_callback: raw.recording_status_callback,
        },
        paths: raw.paths,
        content_types,
        max_body_bytes,
        on_oversize: raw.on_oversize,
        on_malformed: raw.on_malformed,
        reject_status: raw.reject_status,
        reject_style: raw.reject_style,
        fallback_twiml: raw.fallback_twiml,
        media_path: raw.media_path,
        log_twiml: raw.log_twiml,
        signature: crate::signature::validate(raw.signature)?,
    })
}

#[cfg(test)]
mod tests;
