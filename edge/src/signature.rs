//! Twilio request signatures at the edge: webhooks on the signed paths and the media WebSocket
//! handshake are checked with `twiml::signature` before anything reaches a backend, so a forged
//! call never starts. The decisions are plain functions (tested natively); the shell reads
//! headers and bodies, applies the [`Gate`] and bumps the counters.
//!
//! Secrets never enter the plugin JSON: it names environment variables, which Envoy passes to
//! the VM through `vm_config.environment_variables`. No secret and no signature reaches a log.
//!
//! It knows the rest of the configuration only through [`Scope`] (which `config` builds), so
//! `config` can hold a [`SignatureConfig`] without the two importing each other.

use serde::Deserialize;
use twiml::signature::{self as sig, Body, Keys, Request, SignatureError};

pub use crate::route::normalize_path;
use crate::route::{path_only, under_any, RequestInfo, RequestRoute};
use crate::syntax::{is_absolute_url, valid_path, ConfigError};

pub const DEFAULT_AUTH_TOKEN_ENV: &str = "TWILIO_AUTH_TOKEN";

/// The body of a 403: says what is wrong, never why in detail (that is in the log).
pub const FORBIDDEN_BODY: &[u8] = b"invalid or missing X-Twilio-Signature\n";
pub const TOO_LARGE_BODY: &[u8] = b"signed request body over max_body_bytes\n";

/// The `signature` object as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatureConfig {
    /// Environment variable holding the account auth token (HMAC-SHA1 signatures).
    #[serde(default = "default_auth_token_env")]
    pub auth_token_env: String,
    /// Environment variable holding the webhook shared key (HMAC-SHA256 signatures).
    #[serde(default)]
    pub shared_key_env: Option<String>,
    /// The origin Twilio calls (`https://voice.example.com`), not the internal one.
    pub public_base_url: String,
    /// Path prefixes whose requests must be signed. The media path is always checked.
    #[serde(default)]
    pub paths: Vec<String>,
    /// `false`: count and log failures, let the request through.
    #[serde(default = "default_enforce")]
    pub enforce: bool,
    /// Environment variable holding the media key shared with the host service: when set, the
    /// `<Stream>`s in the answer to a signed webhook carry a per-call token (`media_token`).
    #[serde(default)]
    pub media_key_env: Option<String>,
    /// How long a media token stays valid after the webhook, in seconds.
    #[serde(default = "default_media_token_ttl")]
    pub media_token_ttl_seconds: u64,
}

fn default_media_token_ttl() -> u64 {
    300
}

fn default_auth_token_env() -> String {
    DEFAULT_AUTH_TOKEN_ENV.into()
}

fn default_enforce() -> bool {
    true
}

/// The validated `signature` configuration. `keys` is filled from the VM's environment by
/// [`load_keys`] when the plugin is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureConfig {
    pub auth_token_env: String,
    pub shared_key_env: Option<String>,
    /// `public_base_url` without a trailing `/`.
    pub public_base_url: String,
    /// The same origin with `wss://` (or `ws://`) for the media handshake.
    pub public_ws_url: String,
    pub paths: Vec<String>,
    pub enforce: bool,
    pub keys: Keys,
    pub media_key_env: Option<String>,
    pub media_token_ttl_seconds: u64,
    /// The media key, filled by [`load_keys`] when `media_key_env` is set.
    pub media_key: Option<String>,
}

fn bad(message: impl Into<String>) -> ConfigError {
    crate::syntax::bad("signature", message)
}

/// What the signature step needs from the whole configuration.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `None`: no `signature` object, nothing is checked.
    pub signature: Option<&'a SignatureConfig>,
    pub max_body_bytes: usize,
    /// Response headers (and so request headers too) may be held: see `Config::holds_headers`.
    pub holds_headers: bool,
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Check the `signature` object; `None` (absent or `null`) turns validation off.
pub fn validate(raw: Option<RawSignatureConfig>) -> Result<Option<SignatureConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if !env_name_ok(&raw.auth_token_env) {
        return Err(bad(format!(
            "auth_token_env {:?} is not an environment variable name",
            raw.auth_token_env
        )));
    }
    for (key, name) in [
        ("shared_key_env", &raw.shared_key_env),
        ("media_key_env", &raw.media_key_env),
    ] {
        if let Some(name) = name.as_ref().filter(|n| !env_name_ok(n)) {
            return Err(bad(format!(
                "{key} {name:?} is not an environment variable name"
            )));
        }
    }
    if !(1..=3600).contains(&raw.media_token_ttl_seconds) {
        return Err(bad(format!(
            "media_token_ttl_seconds {} is outside 1..=3600",
            raw.media_token_ttl_seconds
        )));
    }
    let base = raw.public_base_url.trim_end_matches('/');
    if !is_absolute_url(base) || base.contains(['?', '#']) {
        return Err(bad(format!(
            "public_base_url {:?} is not an absolute http(s) URL without query",
            raw.public_base_url
        )));
    }
    let public_ws_url = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => return Err(bad("public_base_url has no scheme")),
    };
    for p in &raw.paths {
        if !valid_path(p) {
            return Err(bad(format!(
                "paths: {p:?} is not a path prefix (must start with '/', no query)"
            )));
        }
    }
    Ok(Some(SignatureConfig {
        auth_token_env: raw.auth_token_env,
        shared_key_env: raw.shared_key_env,
        public_base_url: base.to_owned(),
        public_ws_url,
        paths: raw.paths,
        enforce: raw.enforce,
        keys: Keys::default(),
        media_key_env: raw.media_key_env,
        media_token_ttl_seconds: raw.media_token_ttl_seconds,
        media_key: None,
    }))
}

/// Read the secrets named in the configuration from the VM's environment. A missing or empty
/// variable refuses the configuration: a guard that cannot check signatures must not start.
/// The error names the variable and how to provide it, never a value.
pub fn load_keys(
    sc: &mut SignatureConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let read = |name: &str, key: &str| {
        env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(format!(
                "{key}: environment variable {name} is not set in the VM: set {name} in \
                 Envoy's environment and list it in vm_config.environment_variables.host_env_keys \
                 (as envoy.yaml does)"
            ))
        })
    };
    sc.keys.auth_token = Some(read(&sc.auth_token_env, "auth_token_env")?);
    if let Some(name) = &sc.shared_key_env {
        sc.keys.shared_key = Some(read(name, "shared_key_env")?);
    }
    if let Some(name) = &sc.media_key_env {
        sc.media_key = Some(read(name, "media_key_env")?);
    }
    Ok(())
}

/// One line for the configure log: what is checked, no secrets.
pub fn describe<'a>(cfg: impl Into<Scope<'a>>) -> String {
    match cfg.into().signature {
        None => "signature=off".into(),
        Some(sc) => format!(
            "signature=on enforce={} public_base_url={} paths={:?} sha256={} media_token={}",
            sc.enforce,
            sc.public_base_url,
            sc.paths,
            sc.keys.shared_key.is_some(),
            if sc.media_key.is_some() { "on" } else { "off" }
        ),
    }
}

// === requests ===

/// What the shell does with a request after the signature step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Allow,
    /// Hold the request (headers and body) until its body has arrived.
    Hold,
    /// Answer locally; the request never reaches a backend.
    Deny {
        status: u32,
        body: Vec<u8>,
    },
}

/// A signed request waiting for its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending(Option<Held>);

impl Pending {
    /// The body size the last body callback reported: where a body that ends in trailers ends.
    pub fn body_size(&self) -> usize {
        self.0.as_ref().map_or(0, |h| h.size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    url: String,
    signature: Option<String>,
    settings: Option<String>,
    form: bool,
    size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Signature(SignatureError),
    /// The body passed `max_body_bytes` before it could be checked.
    TooLarge(usize),
}

/// A decided check: the shell counts it, logs [`Verdict::log_line`] and applies [`Verdict::gate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub what: &'static str,
    pub result: Result<(), Failure>,
    pub enforce: bool,
    /// The `CallSid` a signed webhook carried (form body or query), when its signature held: the
    /// call its answer's media token is minted for.
    pub call_sid: Option<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    pub fn gate(&self) -> Gate {
        match &self.result {
            Ok(()) => Gate::Allow,
            Err(_) if !self.enforce => Gate::Allow,
            Err(Failure::TooLarge(_)) => Gate::Deny {
                status: 413,
                body: TOO_LARGE_BODY.to_vec(),
            },
            Err(Failure::Signature(_)) => Gate::Deny {
                status: 403,
                body: FORBIDDEN_BODY.to_vec(),
            },
        }
    }

    /// The log line: the kind of request and why it failed; never a secret or a signature.
    pub fn log_line(&self) -> String {
        match &self.result {
            Ok(()) => format!("signature ok what={}", self.what),
            Err(f) => {
                let reason = match f {
                    Failure::Signature(e) => format!("reason={} ({e})", e.kind()),
                    Failure::TooLarge(n) => format!("reason=too_large ({n} bytes)"),
                };
                let action = if self.enforce {
                    "rejected"
                } else {
                    "allowed (enforce=false)"
                };
                format!("signature {action} what={} {reason}", self.what)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not a signed request.
    Pass,
    /// Hold the request, headers included, until its body has arrived.
    Hold,
    /// Let the headers go on and hold only the body: without `allow_on_headers_stop_iteration`
    /// (`reject_style: twiml`) a paused header callback would stall the request for good. A
    /// refused request is then reset before its body reaches the backend.
    HoldBody,
    Decided(Verdict),
}

impl Step {
    fn decided(what: &'static str, sc: &SignatureConfig, result: Result<(), Failure>) -> Step {
        Step::Decided(Verdict {
            what,
            result,
            enforce: sc.enforce,
            call_sid: None,
        })
    }
}

fn signed_path(sc: &SignatureConfig, path: &str) -> bool {
    under_any(path_only(path), &sc.paths)
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The request-header step. `header` reads a request header; `end_of_stream` says the request
/// has no body.
pub fn on_request_headers<'a>(
    cfg: impl Into<Scope<'a>>,
    pending: &mut Pending,
    req: &RequestInfo,
    route: RequestRoute,
    header: &dyn Fn(&str) -> Option<String>,
    end_of_stream: bool,
) -> Step {
    let cfg = cfg.into();
    let Some(sc) = cfg.signature else {
        return Step::Pass;
    };
    let signature = header(sig::SIGNATURE_HEADER);
    let settings = header(sig::SETTINGS_HEADER);
    if route == RequestRoute::MediaUpgrade {
        let url = format!("{}{}", sc.public_ws_url, req.path);
        let result =
            sig::validate_websocket(&url, signature.as_deref(), settings.as_deref(), &sc.keys)
                .map_err(Failure::Signature);
        return Step::decided("media_handshake", sc, result);
    }
    if !signed_path(sc, &req.path) {
        return Step::Pass;
    }
    let url = format!("{}{}", sc.public_base_url, req.path);
    if end_of_stream {
        let result = sig::validate(
            &Request {
                url: &url,
                body: Body::None,
                signature: signature.as_deref(),
                settings: settings.as_deref(),
            },
            &sc.keys,
        )
        .map_err(Failure::Signature);
        return signed_call("webhook", sc, result, query_call_sid(&url));
    }
    let declared = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > cfg.max_body_bytes) {
        return Step::decided("webhook", sc, Err(Failure::TooLarge(n)));
    }
    pending.0 = Some(Held {
        url,
        signature,
        settings,
        form: is_form(header("content-type").as_deref()),
        size: 0,
    });
    if cfg.holds_headers {
        Step::Hold
    } else {
        Step::HoldBody
    }
}

/// The request-body step: hold until the end, then check. `read` returns the buffered body. A
/// body that ends in trailers (HTTP/2, or HTTP/1 with `enable_trailers`) ends in the trailers
/// callback, which calls this with [`Pending::body_size`] and `end_of_stream`: letting the
/// trailers through unchecked would forward the held body unsigned.
pub fn on_request_body<'a>(
    cfg: impl Into<Scope<'a>>,
    pending: &mut Pending,
    body_size: usize,
    end_of_stream: bool,
    read: impl FnOnce(usize) -> Result<Vec<u8>, String>,
) -> Step {
    let cfg = cfg.into();
    let (Some(sc), Some(held)) = (cfg.signature, &mut pending.0) else {
        return Step::Pass;
    };
    if body_size > cfg.max_body_bytes {
        pending.0 = None;
        return Step::decided("webhook", sc, Err(Failure::TooLarge(body_size)));
    }
    if !end_of_stream {
        held.size = body_size;
        return Step::Hold;
    }
    // An unreadable body cannot be shown to be signed.
    let body = read(body_size).unwrap_or_default();
    let params = if held.form {
        sig::parse_form(&body)
    } else {
        Vec::new()
    };
    let call_sid = call_sid_of(&params).or_else(|| query_call_sid(&held.url));
    let body = if held.form {
        Body::Form(&params)
    } else {
        Body::Raw(&body)
    };
    let result = sig::validate(
        &Request {
            url: &held.url,
            body,
            signature: held.signature.as_deref(),
            settings: held.settings.as_deref(),
        },
        &sc.keys,
    )
    .map_err(Failure::Signature);
    pending.0 = None;
    signed_call("webhook", sc, result, call_sid)
}

/// A decided webhook that names its call only when its signature held.
fn signed_call(
    what: &'static str,
    sc: &SignatureConfig,
    result: Result<(), Failure>,
    call_sid: Option<String>,
) -> Step {
    let call_sid = call_sid.filter(|_| result.is_ok());
    Step::Decided(Verdict {
        what,
        result,
        enforce: sc.enforce,
        call_sid,
    })
}

/// A Twilio CallSid: `CA` and 32 hex digits. Anything else gets no media token.
fn plausible_call_sid(value: &str) -> bool {
    value.len() == 34
        && value.starts_with("CA")
        && value.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

fn call_sid_of(params: &[(String, String)]) -> Option<String> {
    params
        .iter()
        .find(|(k, v)| k == "CallSid" && plausible_call_sid(v))
        .map(|(_, v)| v.clone())
}

/// The CallSid of a webhook sent with GET (its parameters in the query string).
fn query_call_sid(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    call_sid_of(&sig::parse_form(query.as_bytes()))
}

#[cfg(test)]
mod tests;
