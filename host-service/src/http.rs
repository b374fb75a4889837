//! The HTTP surface: the Media Streams upgrade, Twilio's webhooks (signature-checked when a token
//! is configured), the calls API (bearer token, or loopback clients only) and health and metrics.

use crate::error::ApiError;
use crate::sid::CallSid;
use crate::ws::{serve_socket, WsIn, WsOut};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;

pub const MEDIA_PATH: &str = "/ws/twilio-media";
const HANGUP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";

/// The router. Tests drive it with `oneshot`; `run` serves it.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{call_sid}", get(get_call))
        .route("/api/calls/{call_sid}/recording.wav", get(get_recording))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_access,
        ));
    Router::new()
        .route(MEDIA_PATH, get(media_socket))
        .route("/webhook/stream_ended", post(stream_ended))
        .route("/webhook/recording_status", post(recording_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
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
        .on_upgrade(move |socket| serve_axum_socket(state, socket)))
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
    body: Bytes,
) -> Result<Response, ApiError> {
    const HOOK: &str = "stream_ended";
    let params = twiml::signature::parse_form(&body);
    check_signature(&state, HOOK, &headers, &uri, &params)?;
    let call_sid =
        call_sid_param(&params).inspect_err(|_| state.metrics.webhook(HOOK, "bad_request"))?;
    let facts = crate::db::CallFacts {
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
            crate::ws::source_name(state.config.recording.source),
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
    body: Bytes,
) -> Result<Response, ApiError> {
    const HOOK: &str = "recording_status";
    let params = twiml::signature::parse_form(&body);
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
        if !u.starts_with(&api_base) || u.contains("..") || u.contains('?') || u.contains('#') {
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
        .twilio_recording_status(call_sid.as_str(), recording_sid, status, url)
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

/// With a token configured, `/api` needs `Authorization: Bearer <token>` (compared in constant
/// time); without one, only loopback clients are answered.
async fn require_api_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.config.api_token {
        Some(token) => {
            let given = header_str(request.headers(), "authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !twiml::signature::constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::Unauthorized);
            }
        }
        None => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            if !peer.is_some_and(|ip| ip.is_loopback()) {
                return Err(ApiError::LoopbackOnly);
            }
        }
    }
    Ok(next.run(request).await)
}

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
) -> Result<Json<crate::db::CallDetail>, ApiError> {
    let sid = path_call_sid(&call_sid)?;
    state
        .store
        .call_detail(sid.as_str())
        .await?
        .map(Json)
        .ok_or(ApiError::CallNotFound(sid.to_string()))
}

async fn get_recording(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
) -> Result<Response, ApiError> {
    let sid = path_call_sid(&call_sid)?;
    let path = state
        .store
        .recording_path(sid.as_str())
        .await?
        .ok_or_else(|| ApiError::RecordingNotFound(sid.to_string()))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::RecordingNotFound(sid.to_string()))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
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
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&jobs),
    )
        .into_response())
}
