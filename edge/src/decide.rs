//! Every decision the filter makes, as plain functions over plain values: which requests and
//! responses are inspected, what a verdict turns into under the configured mode, and what a
//! rejection looks like. The proxy-wasm shell only reads headers, calls these, and applies the
//! result, so all of this is tested natively.

use twiml::{gzip, Verdict};

use crate::config::{is_xml_media_type, Config, Mode, Policy, RejectStyle};

/// The response header carrying the outcome, when response headers are held.
pub const GUARD_HEADER: &str = "x-twiml-guard";

mod coding;
mod media;
pub use media::{stamp_media_token, MediaGrant};
mod outcome;
pub use coding::{decode as decode_body, Coding, Encoding, READABLE_CODINGS};
pub use outcome::{
    guard_header, guard_header_value, reject_body, verdict_line, verdict_line_ruled, Effect, Label,
    Outcome, Problem,
};

// === requests ===

pub use crate::headers::{first_value, joined_values, HeaderPairs};
pub use crate::route::{is_websocket_upgrade, path_only, RequestInfo, RequestRoute};

pub fn route_request(cfg: &Config, req: &RequestInfo) -> RequestRoute {
    let path = path_only(&req.path);
    if path == cfg.media_path {
        return if is_websocket_upgrade(req.upgrade.as_deref()) {
            RequestRoute::MediaUpgrade
        } else {
            RequestRoute::MediaNotUpgrade
        };
    }
    if req.method.eq_ignore_ascii_case("HEAD") {
        return RequestRoute::Skip("head request");
    }
    if !cfg.paths.is_empty() && !crate::route::under_any(path, &cfg.paths) {
        return RequestRoute::Skip("path outside paths");
    }
    RequestRoute::Inspect
}

/// The 426 body for a plain request on the media path.
pub const UPGRADE_REQUIRED_BODY: &str = "this path only accepts WebSocket upgrades\n";

/// The `accept-encoding` to forward on an inspected route, so the backend answers in a coding
/// the filter can read (gzip or none) instead of `br` or `zstd` it cannot see into. `value` is
/// every value the client sent, joined with `,`. Codings the filter reads keep their
/// parameters (`gzip;q=0.8`); the rest, `*` included, are dropped; when nothing is left the
/// answer is `identity` (no `accept-encoding` at all would allow any coding). `None` when the
/// header can stay as it is.
pub fn narrow_accept_encoding(value: Option<&str>) -> Option<String> {
    let Some(value) = value else {
        return Some("identity".into());
    };
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|token| {
            let coding = token.split(';').next().unwrap_or_default().trim();
            READABLE_CODINGS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(coding))
        })
        .collect();
    let narrowed = if kept.is_empty() {
        "identity".to_string()
    } else {
        kept.join(", ")
    };
    let unchanged = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .eq(narrowed.split(", "));
    (!unchanged).then_some(narrowed)
}

// === responses ===

/// The response-header values the candidate check looks at. A header sent more than once is
/// given as all its values joined with `, ` (Envoy's single-value read would return only the
/// first, and a second `content-type` or `content-encoding` must not go unseen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_length: Option<String>,
    /// The headers callback was also the end of the stream: there is no body.
    pub end_of_stream: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStart {
    /// Not a TwiML candidate: pass untouched, unbuffered, uncounted.
    Pass(&'static str),
    /// Buffer the body to the end, then evaluate it.
    Inspect(Encoding),
    /// A type that is TwiML only when its body opens with `<Response` (`text/html`): look at
    /// the first bytes ([`sniff_body`]) before buffering the rest.
    Sniff(Encoding),
    /// Decided from the headers alone (declared length over the limit, or an encoding the filter
    /// cannot read): the outcome is known without buffering.
    Early(Outcome),
}

/// The media type of a `content-type` value: parameters dropped, lowercase.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Every distinct media type in a `content-type` value that may hold several (a repeated header
/// joined with `,`, or a backend writing `text/html, text/xml`). Commas inside a quoted parameter
/// value do not split.
pub fn media_types(content_type: &str) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut push = |part: &str| {
        let t = media_type(part);
        if !t.is_empty() && !types.contains(&t) {
            types.push(t);
        }
    };
    for (i, c) in content_type.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                push(content_type.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    push(content_type.get(start..).unwrap_or_default());
    types
}

pub fn start_response(cfg: &Config, resp: &ResponseInfo) -> ResponseStart {
    if resp.end_of_stream {
        return ResponseStart::Pass("no body");
    }
    let status: u32 = match resp.status.as_deref().map(str::parse) {
        Some(Ok(s)) => s,
        _ => return ResponseStart::Pass("no status"),
    };
    if !(200..=299).contains(&status) || status == 204 || status == 205 {
        return ResponseStart::Pass("status not inspected");
    }
    let Some(ct) = resp.content_type.as_deref() else {
        return ResponseStart::Pass("no content-type");
    };
    let types = media_types(ct);
    if !types.iter().any(|t| cfg.content_types.contains(t)) {
        return ResponseStart::Pass("content-type not inspected");
    }
    // Only a single non-XML type is sniffed. With several types, which one a client goes by is
    // anyone's guess, so the body is judged in full, as the strictest of them would be.
    let sniffed = match types.as_slice() {
        [one] => !is_xml_media_type(one),
        _ => false,
    };
    let length: Option<u64> = resp
        .content_length
        .as_deref()
        .and_then(|l| l.trim().parse().ok());
    if length == Some(0) {
        return ResponseStart::Pass("empty body");
    }
    let enc = match coding::parse(resp.content_encoding.as_deref()) {
        Ok(enc) => enc,
        Err(reason) => return ResponseStart::Early(malformed(cfg, Encoding::Identity, reason)),
    };
    // The compressed bytes are buffered too, so the limit applies to them as well as to what
    // they expand to. A sniffed page over the limit is not refused for its size before its first
    // bytes are seen: most are HTML pages that pass.
    if let Some(len) = length.filter(|l| *l > cfg.max_body_bytes as u64 && !sniffed) {
        return ResponseStart::Early(oversize(
            cfg,
            enc,
            format!(
                "content-length {len} exceeds max_body_bytes {}",
                cfg.max_body_bytes
            ),
        ));
    }
    if sniffed {
        ResponseStart::Sniff(enc)
    } else {
        ResponseStart::Inspect(enc)
    }
}

/// What the first bytes of a sniffed body (as received so far, possibly gzip) say. `complete`:
/// this is the whole body. Corrupt gzip is left to the full evaluation (`Twiml`), which calls it
/// malformed.
pub fn sniff_body(cfg: &Config, received: &[u8], enc: Encoding, complete: bool) -> twiml::Sniff {
    match coding::decode_prefix(enc, received, cfg.max_body_bytes) {
        Ok(plain) => twiml::sniff(&plain, complete),
        Err(_) => twiml::Sniff::Twiml,
    }
}

// === reading headers ===

/// Every request header the guard reads: routing (`request_info`), the rules' host, the
/// `accept-encoding` it narrows, and what a signature check needs. The shims read these and no
/// others.
pub const REQUEST_HEADERS: &[&str] = &[
    ":method",
    ":path",
    "upgrade",
    ":authority",
    "accept-encoding",
    "content-length",
    "content-type",
    twiml::signature::SIGNATURE_HEADER,
    twiml::signature::SETTINGS_HEADER,
];

/// Every response header `response_info` reads.
pub const RESPONSE_HEADERS: &[&str] = &[
    ":status",
    "content-type",
    "content-encoding",
    "content-length",
];

/// What the request-header callback needs from the request's headers.
pub fn request_info(headers: &HeaderPairs) -> RequestInfo {
    RequestInfo {
        method: first_value(headers, ":method")
            .unwrap_or_default()
            .to_string(),
        path: first_value(headers, ":path")
            .unwrap_or_default()
            .to_string(),
        upgrade: first_value(headers, "upgrade").map(str::to_string),
    }
}

/// The response-header values the candidate check looks at.
pub fn response_info(headers: &HeaderPairs, end_of_stream: bool) -> ResponseInfo {
    ResponseInfo {
        status: joined_values(headers, ":status"),
        content_type: joined_values(headers, "content-type"),
        content_encoding: joined_values(headers, "content-encoding"),
        content_length: joined_values(headers, "content-length"),
        end_of_stream,
    }
}

// === logs ===

/// A log line's level, from trace up to critical: the order proxy-wasm and Envoy's dynamic
/// modules both number their levels in (0 to 5), so each shim converts by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// Whether a host at log level `host` keeps a line at `level`.
pub fn keeps_log(host: LogLevel, level: LogLevel) -> bool {
    level >= host
}

/// The first read of a sniffed body: enough for any ordinary prolog (an XML declaration, a
/// doctype, a comment or two).
pub const SNIFF_WINDOW: usize = 1024;

/// [`sniff_body`] on a body of which `size` bytes have arrived, reading only a prefix of them:
/// `read(n)` gives the first `n` bytes. A web page is ruled out from its first kilobyte instead
/// of being copied whole out of the host; the window grows fourfold only while the prefix ends
/// inside the prolog, so the answer is the one the whole received body would give.
pub fn sniff_received<E>(
    cfg: &Config,
    size: usize,
    enc: Encoding,
    complete: bool,
    mut read: impl FnMut(usize) -> Result<Vec<u8>, E>,
) -> Result<twiml::Sniff, E> {
    let mut window = SNIFF_WINDOW.min(size);
    loop {
        let prefix = read(window)?;
        let whole = window >= size;
        let sniff = sniff_body(cfg, &prefix, enc, complete && whole);
        if sniff != twiml::Sniff::NeedMore || whole {
            return Ok(sniff);
        }
        window = window.saturating_mul(4).min(size);
    }
}

/// The refusal for `problem` in the configured style.
pub fn reject(cfg: &Config, enc: Encoding, problem: &Problem) -> Effect {
    match cfg.reject_style {
        RejectStyle::Status => Effect::Reply {
            status: cfg.reject_status,
            content_type: "application/json",
            body: reject_body(problem),
        },
        RejectStyle::Twiml => {
            let plain = cfg.fallback_twiml.as_bytes();
            // Compressing into memory does not fail in practice; if it did, plain TwiML is still a
            // better answer than the blocking one.
            Effect::Replace(coding::encode(enc, plain).unwrap_or_else(|_| plain.to_vec()))
        }
    }
}

/// Oversize, by declared length or by buffered/decoded size.
pub fn oversize(cfg: &Config, enc: Encoding, message: String) -> Outcome {
    let effect = match (cfg.mode, cfg.on_oversize) {
        (Mode::Monitor, _) | (_, Policy::Pass) => Effect::Keep,
        (_, Policy::Reject) => reject(
            cfg,
            enc,
            &Problem::Oversize {
                message: message.clone(),
                limit: cfg.max_body_bytes,
            },
        ),
    };
    Outcome::new(Label::Oversize, effect, message)
}

fn malformed_at(
    cfg: &Config,
    enc: Encoding,
    message: String,
    at: Option<&twiml::Malformed>,
) -> Outcome {
    let effect = match (cfg.mode, cfg.on_malformed) {
        (Mode::Monitor, _) | (_, Policy::Pass) => Effect::Keep,
        (_, Policy::Reject) => reject(
            cfg,
            enc,
            &Problem::Malformed {
                message: message.clone(),
                line: at.map(|m| m.line),
                column: at.map(|m| m.column),
                offset: at.map(|m| m.offset),
            },
        ),
    };
    let detail = match at {
        Some(m) => format!("{message} at line {} column {}", m.line, m.column),
        None => message,
    };
    Outcome::new(Label::Malformed, effect, detail)
}

pub fn malformed(cfg: &Config, enc: Encoding, message: String) -> Outcome {
    malformed_at(cfg, enc, message, None)
}

/// The guard itself failed on this response (a shim caught a panic): refused in the configured
/// style like a failed rewrite, except in monitor mode, which never changes traffic.
pub fn failed(cfg: &Config, enc: Encoding, message: String) -> Outcome {
    let effect = match cfg.mode {
        Mode::Monitor => Effect::Keep,
        Mode::Rewrite | Mode::Strict => reject(cfg, enc, &Problem::Internal(message.clone())),
    };
    Outcome::new(Label::Rejected, effect, message)
}

/// The whole buffered body (as received, possibly gzip) to an outcome.
pub fn evaluate(cfg: &Config, body: &[u8], enc: Encoding) -> Outcome {
    if body.len() > cfg.max_body_bytes {
        return oversize(
            cfg,
            enc,
            format!(
                "body of {} bytes exceeds max_body_bytes {}",
                body.len(),
                cfg.max_body_bytes
            ),
        );
    }
    let plain = match coding::decode(enc, body, cfg.max_body_bytes) {
        Ok(p) => p,
        Err(gzip::GzipError::TooLarge { limit }) => {
            return oversize(
                cfg,
                enc,
                format!("{} body expands beyond max_body_bytes {limit}", enc.name()),
            )
        }
        Err(e) => return malformed(cfg, enc, format!("{}: {e}", enc.name())),
    };
    let verdict = twiml::analyze_with(&plain, &cfg.realtime_nouns);
    let mut out = match verdict {
        Verdict::Clean => Outcome::new(Label::Clean, Effect::Keep, "clean".into()),
        Verdict::NotTwiml => Outcome::new(Label::Clean, Effect::Keep, "not_twiml".into()),
        Verdict::Malformed(m) => {
            let reason = format!("malformed XML: {}", m.reason);
            malformed_at(cfg, enc, reason, Some(&m))
        }
        Verdict::Conflict(conflicts) => on_conflict(cfg, enc, &plain, conflicts),
    };
    if cfg.log_twiml {
        let after = match &out.effect {
            Effect::Keep => Some(plain.to_vec()),
            Effect::Replace(_) if out.label == Label::Rewritten => out.after.take(),
            Effect::Replace(_) => Some(cfg.fallback_twiml.as_bytes().to_vec()),
            Effect::Reply { body, .. } => Some(body.clone()),
        };
        out.before = Some(plain.into_owned());
        out.after = after;
    } else {
        out.after = None;
    }
    out
}

fn on_conflict(
    cfg: &Config,
    enc: Encoding,
    plain: &[u8],
    conflicts: Vec<twiml::Conflict>,
) -> Outcome {
    let where_ = conflicts
        .iter()
        .map(|c| format!("{}:{}", c.line, c.column))
        .collect::<Vec<_>>()
        .join(",");
    let blocks = conflicts.first().map(|c| c.blocks.path());
    let detail = format!(
        "conflict records={} at={where_} blocks={}",
        conflicts.len(),
        blocks.as_deref().unwrap_or("none")
    );
    let mut out = on_conflict_mode(cfg, enc, plain, conflicts, detail);
    out.blocks = blocks;
    out
}

fn on_conflict_mode(
    cfg: &Config,
    enc: Encoding,
    plain: &[u8],
    conflicts: Vec<twiml::Conflict>,
    detail: String,
) -> Outcome {
    match cfg.mode {
        Mode::Monitor => Outcome::new(Label::Detected, Effect::Keep, detail),
        Mode::Strict => Outcome::new(
            Label::Rejected,
            reject(cfg, enc, &Problem::Conflicts(conflicts)),
            detail,
        ),
        Mode::Rewrite => {
            // Uncompressed, the new TwiML is the wire body itself: copied again only when
            // `log_twiml` wants it too.
            let rewritten = twiml::rewrite(plain, &conflicts, &cfg.rewrite)
                .map_err(|e| e.to_string())
                .and_then(|new| match enc {
                    Encoding::Identity => Ok((cfg.log_twiml.then(|| new.clone()), new)),
                    _ => coding::encode(enc, &new).map(|wire| (Some(new), wire)),
                });
            match rewritten {
                Ok((after, wire)) => Outcome {
                    label: Label::Rewritten,
                    effect: Effect::Replace(wire),
                    detail,
                    before: None,
                    after,
                    blocks: None,
                },
                // A conflict left in place would loop the call; refusing is the safer failure.
                Err(e) => {
                    let msg = format!("rewrite failed: {e}");
                    Outcome::new(
                        Label::Rejected,
                        reject(cfg, enc, &Problem::Internal(msg.clone())),
                        format!("{detail} {msg}"),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod coding_tests;
#[cfg(test)]
mod sniff_tests;
#[cfg(test)]
mod tests;
