//! The HTTP surface: the Media Streams upgrade, Twilio's webhooks (signature-checked when a token
//! is configured), the calls API (bearer token or dashboard session, or loopback clients only),
//! the dashboard (`crate::dashboard`) and health and metrics.

pub mod auth;
pub mod error;

use crate::sid::CallSid;
use crate::socket::{serve_socket, WsIn, WsOut};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use futures_util::{SinkExt, StreamExt};

pub const MEDIA_PATH: &str = "/ws/twilio-media";
/// Webhook bodies are a few hundred bytes of form; this is axum's default limit, kept.
const MAX_WEBHOOK_BODY: usize = 2 * 1024 * 1024;
const HANGUP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";

/// The router. Tests drive it with `oneshot`; `run` serves it.
pub fn app(state: AppState) -> Router {
    let dashboard = crate::dashboard::Dashboard::new(&state);
    let api = Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{call_sid}", get(get_call))
        .route("/api/calls/{call_sid}/recording.wav", get(get_recording))
        .merge(dashboard.api_routes())
        .route_layer(middleware::from_fn_with_state(
            dashboard.access.clone(),
            crate::dashboard::require_api_access,
        ));
    Router::new()
        .route(MEDIA_PATH, get(media_socket))
        .route("/webhook/stream_ended", post(stream_ended))
        .route("/webhook/recording_status", post(recording_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(dashboard.page_routes())
        .fallback(|| async { ApiError::BadRequest("no such endpoint".into()) })
        .with_state(state)
}

// === the media socket ===

async fn media_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::ShuttingDown);
    }
    if state.config.validate_signatures() {
        check_websocket_signature(&state, &headers, &uri)?;
    }
    // The slot is taken before the upgrade and held by the socket's task until it ends.
    let slot = state
        .socket_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            state.metrics.ws_rejected("too_many_sockets");
            tracing::warn!(
                max_sockets = state.config.websocket.max_sockets,
                "ws_rejected"
            );
            ApiError::TooManySockets
        })?;
    // The transport allows more than the protocol limit so the handler sees the oversize frame
    // and closes with 1009 itself.
    let limit = state
        .config
        .websocket
        .max_frame_bytes
        .saturating_mul(4)
        .max(1 << 20);
    Ok(ws
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            serve_axum_socket(state, socket).await
        }))
}

async fn serve_axum_socket(state: AppState, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: WsOut| async move {
        Ok::<_, axum::Error>(match out {
            WsOut::Text(t) => Message::Text(t.into()),
            WsOut::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        })
    });
    let stream = stream.map(|m| match m {
        // The transport stops reading a message past its limit; it is still a frame too big,
        // and the peer is told so (1009).
        Err(e) if e.to_string().contains("Message too long") => Ok(WsIn::Oversize),
        m => m.map(|m| match m {
            Message::Text(t) => WsIn::Text(t.to_string()),
            Message::Binary(b) => WsIn::Binary(b.len()),
            Message::Close(_) => WsIn::Close,
            Message::Ping(_) | Message::Pong(_) => WsIn::Control,
        }),
    });
    serve_socket(state, Box::pin(sink), Box::pin(stream)).await;
}

// === webhooks ===

/// A webhook body read in full within `http.body_read_timeout_ms` (a peer trickling its body
/// gets 408) and at most `MAX_WEBHOOK_BODY` bytes (413).
struct TimedBody(Bytes);

impl FromRequest<AppState> for TimedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let timeout = std::time::Duration::from_millis(state.config.http.body_read_timeout_ms);
        let read = axum::body::to_bytes(req.into_body(), MAX_WEBHOOK_BODY);
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(bytes)) => Ok(TimedBody(bytes)),
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    Err(ApiError::BodyTooLarge(MAX_WEBHOOK_BODY))
                } else {
                    Err(ApiError::BadRequest(format!("reading the body: {e}")))
                }
            }
            Err(_) => {
                tracing::warn!(timeout_ms = timeout.as_millis() as u64, "body_timeout");
                Err(ApiError::BodyTimeout)
            }
        }
    }
}

/// An `application/x-www-form-urlencoded` body as name/value pairs, in order, repeats kept:
/// exactly what Twilio signed.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Where a `RecordingUrl` may point: the download carries our credentials, so only below the
/// configured API base (same scheme, host and port), with no user info, query or fragment, and a
/// path that is already in its normal form (no `.`/`..` segment, plain or percent-encoded, and no
/// encoded byte at all: Twilio's recording paths are letters, digits and `/`).
pub fn recording_url_allowed(api_base: &str, candidate: &str) -> bool {
    let (Ok(base), Ok(url)) = (url::Url::parse(api_base), url::Url::parse(candidate)) else {
        return false;
    };
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || candidate.contains('%')
    {
        return false;
    }
    // The parser resolves dot segments; a URL that changed under it had some.
    if url.path() != candidate_path(candidate) {
        return false;
    }
    let base_segments: Vec<&str> = base
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let Some(segments) = url.path_segments().map(|s| s.collect::<Vec<_>>()) else {
        return false;
    };
    segments.len() > base_segments.len()
        && segments.starts_with(&base_segments)
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
}

/// The path of an absolute URL as written (between the authority and `?`/`#`).
fn candidate_path(candidate: &str) -> &str {
    let after_scheme = candidate.split_once("://").map(|(_, r)| r).unwrap_or("");
    let path_start = after_scheme.find('/').unwrap_or(after_scheme.len());
    let path = &after_scheme[path_start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn keys(state: &AppState) -> twiml::signature::Keys {
    twiml::signature::Keys {
        auth_token: state.config.twilio.auth_token.clone(),
        shared_key: state.config.twilio.shared_key.clone(),
    }
}

/// The URL Twilio requested: the configured public base plus the path and query it asked for.
fn public_url(state: &AppState, uri: &Uri) -> String {
    let base = state
        .config
        .public_base_url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{base}{pq}")
}

fn check_signature(
    state: &AppState,
    hook: &'static str,
    headers: &HeaderMap,
    uri: &Uri,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    if !state.config.validate_signatures() {
        return Ok(());
    }
    let url = public_url(state, uri);
    let request = twiml::signature::Request {
        url: &url,
        body: twiml::signature::Body::Form(params),
        signature: header_str(headers, "x-twilio-signature"),
        settings: header_str(headers, "x-twilio-webhooks-signature-settings"),
    };
    twiml::signature::validate(&request, &keys(state)).map_err(|e| {
        state.metrics.webhook(hook, "bad_signature");
        tracing::warn!(hook, kind = e.kind(), "signature_rejected");
        ApiError::Signature(e.kind())
    })
}

fn check_websocket_signature(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), ApiError> {
    let url = public_url(state, uri);
    let url = url
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            url.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or(url);
    twiml::signature::validate_websocket(
        &url,
        header_str(headers, "x-twilio-signature"),
        header_str(headers, "x-twilio-webhooks-signature-settings"),
        &keys(state),
    )
    .map_err(|e| {
        state.metrics.bad_message("bad_signature");
        tracing::warn!(kind = e.kind(), "signature_rejected");
        ApiError::Signature(e.kind())
    })
}

fn form_value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn call_sid_param(params: &[(String, String)]) -> Result<CallSid, ApiError> {
    let raw = form_value(params, "CallSid").unwrap_or_default();
    CallSid::parse(raw).ok_or_else(|| ApiError::BadCallSid(raw.chars().take(40).collect()))
}

/// The `<Connect action>` callback: the stream is over. Marks the call ended and queues its
/// pipeline once; a retry by Twilio gets the same answer and changes nothing.
async fn stream_ended(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    TimedBody(body): TimedBody,
) -> Result<Response, ApiError> {
    const HOOK: &str = "stream_ended";
    let params = parse_form(&body);
    check_signature(&state, HOOK, &headers, &uri, &params)?;
    let call_sid =
        call_sid_param(&params).inspect_err(|_| state.metrics.webhook(HOOK, "bad_request"))?;
    let facts = crate::store::CallFacts {
        account_sid: form_value(&params, "AccountSid"),
        from: form_value(&params, "From"),
        to: form_value(&params, "To"),
        call_status: form_value(&params, "CallStatus"),
    };
    let first = state
        .store
        .call_ended(
            call_sid.as_str(),
            &facts,
            crate::socket::source_name(state.config.recording.source),
            state.clock.now_ms(),
        )
        .await?;
    state
        .metrics
        .webhook(HOOK, if first { "accepted" } else { "repeat" });
    tracing::info!(call_sid = %call_sid, repeat = !first, "stream_ended");
    Ok(([(header::CONTENT_TYPE, "text/xml")], HANGUP).into_response())
}

/// Twilio's recording status callback (the `twilio` source).
async fn recording_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    TimedBody(body): TimedBody,
) -> Result<Response, ApiError> {
    const HOOK: &str = "recording_status";
    let params = parse_form(&body);
    check_signature(&state, HOOK, &headers, &uri, &params)?;
    let call_sid =
        call_sid_param(&params).inspect_err(|_| state.metrics.webhook(HOOK, "bad_request"))?;
    let status = form_value(&params, "RecordingStatus").unwrap_or_default();
    if !["in-progress", "completed", "absent", "failed"].contains(&status) {
        state.metrics.webhook(HOOK, "bad_request");
        return Err(ApiError::BadRequest(format!(
            "RecordingStatus {:?}",
            status.chars().take(20).collect::<String>()
        )));
    }
    let recording_sid = form_value(&params, "RecordingSid").unwrap_or_default();
    let url = form_value(&params, "RecordingUrl");
    // The download carries our credentials: only ever to Twilio's API.
    let api_base = format!("{}/", state.config.twilio.api_base.trim_end_matches('/'));
    if let Some(u) = url {
        if !recording_url_allowed(&state.config.twilio.api_base, u) {
            state.metrics.webhook(HOOK, "bad_request");
            return Err(ApiError::BadRequest(format!(
                "RecordingUrl must be under {api_base}"
            )));
        }
    }
    if status == "completed" && url.is_none() {
        state.metrics.webhook(HOOK, "bad_request");
        return Err(ApiError::BadRequest(
            "completed without RecordingUrl".into(),
        ));
    }
    let known = state
        .store
        .twilio_recording_status(
            call_sid.as_str(),
            recording_sid,
            status,
            url,
            state.clock.now_ms(),
        )
        .await?;
    if !known {
        state.metrics.webhook(HOOK, "unknown_call");
        return Err(ApiError::CallNotFound(call_sid.to_string()));
    }
    state.metrics.webhook(HOOK, "accepted");
    tracing::info!(call_sid = %call_sid, recording_sid, status, "recording_status");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === API ===

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_calls(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1..=500".into()));
    }
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let (ts, sid) = c
                .split_once('_')
                .and_then(|(ts, sid)| Some((ts.parse::<i64>().ok()?, CallSid::parse(sid)?)))
                .ok_or_else(|| ApiError::BadRequest("bad cursor".into()))?;
            Some((ts, sid.to_string()))
        }
    };
    let calls = state.store.list_calls(limit, before).await?;
    let next_cursor = (calls.len() as i64 == limit)
        .then(|| {
            calls
                .last()
                .map(|c| format!("{}_{}", c.created_at_ms, c.call_sid))
        })
        .flatten();
    Ok(Json(
        serde_json::json!({"calls": calls, "next_cursor": next_cursor}),
    ))
}

fn path_call_sid(raw: &str) -> Result<CallSid, ApiError> {
    CallSid::parse(raw).ok_or_else(|| ApiError::BadCallSid(raw.chars().take(40).collect()))
}

async fn get_call(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
) -> Result<Json<crate::store::CallDetail>, ApiError> {
    let sid = path_call_sid(&call_sid)?;
    state
        .store
        .call_detail(sid.as_str())
        .await?
        .map(Json)
        .ok_or(ApiError::CallNotFound(sid.to_string()))
}

/// The recording, with `Range` support (`tower_http`'s `ServeFile`): a browser's `<audio>` seeks
/// with range requests.
async fn get_recording(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let sid = path_call_sid(&call_sid)?;
    let path = state
        .store
        .recording_path(sid.as_str())
        .await?
        .ok_or_else(|| ApiError::RecordingNotFound(sid.to_string()))?;
    if tokio::fs::metadata(&path).await.is_err() {
        return Err(ApiError::RecordingNotFound(sid.to_string()));
    }
    let serve = tower_http::services::ServeFile::new_with_mime(
        &path,
        &"audio/wav"
            .parse()
            .map_err(|_| ApiError::Internal("mime".into()))?,
    );
    let response = serve
        .oneshot(request)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::RecordingNotFound(sid.to_string()));
    }
    Ok(response.map(Body::new))
}

async fn healthz(State(state): State<AppState>) -> Response {
    let db_ok = sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
        .is_ok();
    let draining = *state.shutdown.borrow();
    let body = serde_json::json!({
        "status": if db_ok && !draining { "ok" } else { "unavailable" },
        "database": db_ok,
        "draining": draining,
        "active_streams": state.tracker.open(),
    });
    let code = if db_ok && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs = state.store.job_counts().await?;
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(state.tracker.open(), &jobs),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://api.twilio.com";
    const REC: &str =
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE0123456789abcdef0123456789abcdef";

    #[test]
    fn recording_urls_stay_below_the_api_base() {
        assert!(recording_url_allowed(BASE, REC));
        assert!(recording_url_allowed("https://api.twilio.com/", REC));
        assert!(recording_url_allowed(
            "http://127.0.0.1:9000/prefix",
            "http://127.0.0.1:9000/prefix/2010-04-01/Recordings/RE1.wav"
        ));
        for bad in [
            "https://api.twilio.com/2010-04-01/../../etc/passwd",
            "https://api.twilio.com/2010-04-01/%2e%2e/%2e%2e/x",
            "https://api.twilio.com/2010-04-01/%2E%2e/x",
            "https://api.twilio.com/2010-04-01/./x",
            "https://api.twilio.com/a%2Fb",
            "https://api.twilio.com/x?y=1",
            "https://api.twilio.com/x#f",
            "https://user:pw@api.twilio.com/x",
            "https://api.twilio.com:8443/x",
            "http://api.twilio.com/x",
            "https://api.twilio.com.evil.example/x",
            "https://evil.example/api.twilio.com/x",
            "https://api.twilio.com",
            "https://api.twilio.com/",
            "https://api.twilio.com//x",
            "not a url",
        ] {
            assert!(!recording_url_allowed(BASE, bad), "{bad}");
        }
        // Below a base with a path, not beside it.
        assert!(!recording_url_allowed(
            "http://127.0.0.1:9000/prefix",
            "http://127.0.0.1:9000/prefix2/x"
        ));
        assert!(!recording_url_allowed(
            "http://127.0.0.1:9000/prefix",
            "http://127.0.0.1:9000/prefix/../x"
        ));
    }

    #[test]
    fn forms_decode_as_twilio_encodes_them() {
        assert_eq!(
            parse_form(b"CallSid=CA1&From=%2B1555+0001&Empty=&Flag&&A=1&A=2&Bad=%zz"),
            [
                ("CallSid", "CA1"),
                ("From", "+1555 0001"),
                ("Empty", ""),
                ("Flag", ""),
                ("A", "1"),
                ("A", "2"),
                ("Bad", "%zz"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
