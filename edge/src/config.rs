//! The plugin configuration: parsed and validated once per plugin (re)configure, so a typo stops
//! Envoy at start-up with a message naming the field instead of running a phone line on a guess.

use serde::Deserialize;
use serde_json::Value;

/// The core's action, read from the configuration as `strip` or `start-recording`.
pub use twiml::RewriteAction;
use twiml::{RealtimeNoun, RewriteOptions, REALTIME_NOUNS};

use crate::route::Matcher;
use crate::signature::{RawSignatureConfig, SignatureConfig};
use crate::syntax::{bad, valid_host_pattern, valid_media_type, valid_path};
pub use crate::syntax::{is_absolute_url, ConfigError};

mod per_route;
pub use per_route::{parse_route_rule, RouteRule};

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

impl Mode {
    /// Every mode, in the order the CLI and the dashboard list them.
    pub const ALL: [Mode; 3] = [Mode::Rewrite, Mode::Strict, Mode::Monitor];

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rewrite => "rewrite",
            Mode::Strict => "strict",
            Mode::Monitor => "monitor",
        }
    }
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
    pub signature: Option<RawSignatureConfig>,
    pub rules: Vec<RawRule>,
    pub config_version: Option<String>,
    /// `Verb/Noun` for each noun that opens a real-time stream (`Connect/Stream`).
    pub realtime_nouns: Vec<String>,
}

/// One staged-rollout override as written: where it applies and what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub mode: Option<Mode>,
    pub rewrite_action: Option<RewriteAction>,
}

/// Longest rule name and `config_version`: both go into log lines and the `x-twiml-guard` header.
pub const MAX_LABEL_LEN: usize = 64;

/// Most rules accepted: each request walks them in order.
pub const MAX_RULES: usize = 64;

pub const DEFAULT_FALLBACK_TWIML: &str =
    "<Response><Say>We are sorry, this line is not available.</Say><Hangup/></Response>";

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            mode: Mode::Rewrite,
            rewrite_action: RewriteAction::Strip,
            recording_status_callback: None,
            paths: Vec::new(),
            content_types: vec![
                "text/xml".into(),
                "application/xml".into(),
                "text/html".into(),
            ],
            max_body_bytes: 262_144,
            on_oversize: Policy::Pass,
            on_malformed: Policy::Pass,
            reject_status: 502,
            reject_style: RejectStyle::Status,
            fallback_twiml: DEFAULT_FALLBACK_TWIML.into(),
            media_path: "/ws/twilio-media".into(),
            log_twiml: false,
            signature: None,
            rules: Vec::new(),
            config_version: None,
            realtime_nouns: REALTIME_NOUNS.iter().map(ToString::to_string).collect(),
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
    pub signature: Option<SignatureConfig>,
    /// Ordered overrides of `mode` and `rewrite_action`; the first that matches a request wins.
    pub rules: Vec<Rule>,
    /// A label for this configuration (the CLI writes the ECDS `version_info` here), logged at
    /// every configure.
    pub config_version: Option<String>,
    /// The nouns that open a real-time stream: a `<Record>` before the first verb holding one
    /// is a conflict.
    pub realtime_nouns: Vec<RealtimeNoun>,
}

/// A validated rule, resolved against the defaults: what a matching request runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// As configured, else `rule<index>` (from 0).
    pub name: String,
    pub matcher: Matcher,
    pub mode: Mode,
    pub rewrite: RewriteOptions,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction; `parse(b"")` is tested to agree.
        let raw = RawConfig::default();
        Config {
            mode: raw.mode,
            rewrite: RewriteOptions {
                action: RewriteAction::Strip,
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
            rules: Vec::new(),
            config_version: None,
            realtime_nouns: REALTIME_NOUNS.to_vec(),
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

    /// The configuration a request matching `rule` runs under: this one with the rule's mode and
    /// rewrite options (and no rules of its own). Built once per configure, not per request.
    pub fn under_rule(&self, rule: &Rule) -> Config {
        Config {
            mode: rule.mode,
            rewrite: rule.rewrite.clone(),
            rules: Vec::new(),
            ..self.clone()
        }
    }

    /// The index of the first rule matching a request to `host` (port dropped, lowercase; see
    /// `route::host_only`) and `path`.
    pub fn rule_for(&self, host: Option<&str>, path: &str) -> Option<usize> {
        crate::route::first_match(self.rules.iter().map(|r| &r.matcher), host, path)
    }

    /// Read the secrets the `signature` object names from `env` (the VM's environment).
    pub fn load_secrets(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        match self.signature.as_mut() {
            Some(sc) => crate::signature::load_keys(sc, env),
            None => Ok(()),
        }
    }
}

impl<'a> From<&'a Config> for crate::signature::Scope<'a> {
    fn from(cfg: &'a Config) -> Self {
        crate::signature::Scope {
            signature: cfg.signature.as_ref(),
            max_body_bytes: cfg.max_body_bytes,
            holds_headers: cfg.holds_headers(),
        }
    }
}

/// An XML media type (`text/xml`, `application/xml`, `*/*+xml`): always TwiML to Twilio when it is
/// listed, so inspected in full. Any other listed type (`text/html` by default) is TwiML only
/// when its body opens with `<Response`, and is sniffed first.
pub fn is_xml_media_type(media_type: &str) -> bool {
    matches!(media_type, "text/xml" | "application/xml") || media_type.ends_with("+xml")
}

/// A short fingerprint of the configuration bytes (FNV-1a, 64 bits, hex) for the configure log
/// line: two configurations with the same `config_version` but different bytes tell apart.
pub fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The one line logged when a configuration is accepted: its version, fingerprint, default mode
/// and every rule in order (`name:mode/action`).
pub fn applied_line(cfg: &Config, digest: &str) -> String {
    let rules: Vec<String> = cfg
        .rules
        .iter()
        .map(|r| format!("{}:{}/{}", r.name, r.mode.as_str(), r.rewrite.action.name()))
        .collect();
    format!(
        "config applied config_version={} digest={digest} mode={} rewrite_action={} rules=[{}]",
        cfg.config_version.as_deref().unwrap_or("none"),
        cfg.mode.as_str(),
        cfg.rewrite.action.name(),
        rules.join(" ")
    )
}

/// What a shim does with the configuration bytes Envoy hands it: parse, validate, and read the
/// secrets the `signature` object names through `env` (the process's or the VM's environment).
pub fn load(bytes: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut cfg = parse(bytes)?;
    cfg.load_secrets(env)?;
    Ok(cfg)
}

/// The lines logged at info when a configuration is accepted: the build, the main settings, the
/// signature checks and [`applied_line`].
pub fn configured_lines(cfg: &Config, bytes: &[u8]) -> [String; 4] {
    [
        format!(
            "twiml_guard version={} commit={}",
            crate::VERSION,
            crate::build_commit()
        ),
        format!(
            "configured mode={:?} reject_style={:?} holds_headers={} max_body_bytes={} \
             content_types={:?}",
            cfg.mode,
            cfg.reject_style,
            cfg.holds_headers(),
            cfg.max_body_bytes,
            cfg.content_types
        ),
        crate::signature::describe(cfg),
        applied_line(cfg, &digest(bytes)),
    ]
}

/// Parse and validate the plugin configuration. Empty (or whitespace-only) means all defaults.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return validate(RawConfig::default());
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(ConfigError::NotObject);
    }
    // From the value first: its errors say what was found (`invalid type: integer `1``) where
    // the byte parser's would only say `expected value`.
    let raw: RawConfig = serde_path_to_error::deserialize(&value).map_err(keyed)?;
    // Then from the bytes, which also refuse a duplicated key: the value kept only its last
    // occurrence.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, RawConfig>(&mut de).map_err(keyed)?;
    validate(raw)
}

/// serde's own messages for a wrong type or an unknown variant do not say which key held it;
/// the path the error was found at does.
fn keyed<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> ConfigError {
    let top = e.path().iter().next().map(|segment| segment.to_string());
    let depth = e.path().iter().count();
    let path = e.path().to_string();
    let message = e.inner().to_string();
    // serde names the key itself in these two, before the path reaches it.
    let named = || message.split('`').nth(1).unwrap_or_default().to_string();
    let unknown = message.starts_with("unknown field `");
    match top {
        Some(_) | None if unknown && depth <= 1 => ConfigError::UnknownField {
            field: named(),
            message,
        },
        None if message.starts_with("duplicate field `") => bad(&named(), message),
        None => ConfigError::Json(message),
        Some(top) if depth == 1 => bad(&top, message),
        Some(top) => bad(&top, format!("{path}: {message}")),
    }
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
    if let Some(v) = &raw.config_version {
        check_label(v).map_err(|why| bad("config_version", why))?;
    }
    let rewrite = RewriteOptions {
        action: raw.rewrite_action,
        recording_status_callback: raw.recording_status_callback,
    };
    let rules = validate_rules(&raw.rules, raw.mode, &rewrite)?;
    let realtime_nouns = realtime_nouns(&raw.realtime_nouns)?;
    Ok(Config {
        mode: raw.mode,
        rewrite,
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
        rules,
        config_version: raw.config_version,
        realtime_nouns,
    })
}

/// `realtime_nouns`: each a `Verb/Noun` of TwiML element names. An empty list is refused, since
/// the guard would then find no stream and pass every `<Record>`.
fn realtime_nouns(raw: &[String]) -> Result<Vec<RealtimeNoun>, ConfigError> {
    if raw.is_empty() {
        return Err(bad(
            "realtime_nouns",
            "must list at least one Verb/Noun (such as \"Connect/Stream\"), or no <Record> would ever conflict",
        ));
    }
    raw.iter()
        .map(|s| {
            s.parse()
                .map_err(|e: twiml::BadNoun| bad("realtime_nouns", e.to_string()))
        })
        .collect()
}

/// A name or version that goes into a header value and a log line: short, printable ASCII, no
/// separators a reader would split on.
fn check_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_LABEL_LEN {
        return Err(format!("{s:?} must be 1 to {MAX_LABEL_LEN} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(format!(
            "{s:?} may only hold letters, digits, '-', '_', '.' and ':'"
        ));
    }
    Ok(())
}

fn validate_rules(
    raw: &[RawRule],
    mode: Mode,
    rewrite: &RewriteOptions,
) -> Result<Vec<Rule>, ConfigError> {
    if raw.len() > MAX_RULES {
        return Err(bad(
            "rules",
            format!("{} rules, at most {MAX_RULES}", raw.len()),
        ));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let at = |why: String| bad("rules", format!("rules[{i}]: {why}"));
        let name = r.name.clone().unwrap_or_else(|| format!("rule{i}"));
        check_label(&name).map_err(|why| at(format!("name: {why}")))?;
        if rules.iter().any(|other| other.name == name) {
            return Err(at(format!("name {name:?} is used twice")));
        }
        if r.hosts.is_empty() && r.paths.is_empty() {
            return Err(at(
                "needs `hosts` or `paths`: a rule for everything is the default".into(),
            ));
        }
        if r.mode.is_none() && r.rewrite_action.is_none() {
            return Err(at(
                "sets neither `mode` nor `rewrite_action`, so it would change nothing".into(),
            ));
        }
        let mut hosts = Vec::with_capacity(r.hosts.len());
        for h in &r.hosts {
            let lower = h.trim().to_ascii_lowercase();
            if !valid_host_pattern(&lower) {
                return Err(at(format!(
                    "hosts: {h:?} is not a host name like \"voice.example.com\" or \
                     \"*.example.com\" (no port)"
                )));
            }
            hosts.push(lower);
        }
        for p in &r.paths {
            if !valid_path(p) {
                return Err(at(format!(
                    "paths: {p:?} is not a path prefix (must start with '/', no query)"
                )));
            }
        }
        rules.push(Rule {
            name,
            matcher: Matcher {
                hosts,
                paths: r.paths.clone(),
            },
            mode: r.mode.unwrap_or(mode),
            rewrite: RewriteOptions {
                action: r.rewrite_action.unwrap_or(rewrite.action),
                recording_status_callback: rewrite.recording_status_callback.clone(),
            },
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests;
