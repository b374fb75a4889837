//! Twilio's webhooks: `stream_ended` (the `<Connect action>` callback: the call is over, its
//! pipeline is queued once) and `recording_status` (the `twilio` source's status callback).
//! Bodies are read within a deadline and a size limit, decoded as Twilio signed them, and
//! signature-checked.

use super::error::ApiError;
use super::signature::check_signature;
use crate::state::AppState;
use crate::store::RecordingStatus;
use crate::writes::{CallEnd, Written};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use media::sid::CallSid;

/// Webhook bodies are a few hundred bytes of form; this is axum's default limit, kept.
const MAX_WEBHOOK_BODY: usize = 2 * 1024 * 1024;
const HANGUP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";

/// The two webhooks Twilio calls.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhook/stream_ended", post(stream_ended))
        .route(
            crate::recording::twilio::STATUS_CALLBACK_PATH,
            post(recording_status),
        )
}

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
/// pipeline once; a retry by Twilio gets the same answer and changes nothing. A database that
/// does not take it in time gets it later (`writes`): the answer does not wait.
async fn stream_ended(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    TimedBody(body): TimedBody,
) -> Result<Response, ApiError> {
    const HOOK: &str = "stream_ended";
    let params = twiml::signature::parse_form(&body);
    check_signature(&state, HOOK, &headers, &uri, &params)?;
    let call_sid =
        call_sid_param(&params).inspect_err(|_| state.metrics.webhook(HOOK, "bad_request"))?;
    let owned = |name| form_value(&params, name).map(str::to_owned);
    // Twilio waits on this answer: one attempt within `database.write_timeout_ms`, then the
    // end is kept and retried until the database takes it.
    let written = state
        .writes
        .call_ended(CallEnd {
            call_sid: call_sid.to_string(),
            account_sid: owned("AccountSid"),
            from: owned("From"),
            to: owned("To"),
            call_status: owned("CallStatus"),
            recording_source: state.recording.name(),
            at_ms: state.clock.now_ms(),
        })
        .await;
    let result = match written {
        Written::Stored(true) => "accepted",
        Written::Stored(false) => "repeat",
        Written::Queued => "queued",
        Written::Dropped => {
            state.metrics.webhook(HOOK, "dropped");
            return Err(ApiError::Internal(
                "the database is unavailable and the retry queue is full".into(),
            ));
        }
    };
    state.metrics.webhook(HOOK, result);
    tracing::info!(call_sid = %call_sid, result, "stream_ended");
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
    let params = twiml::signature::parse_form(&body);
    check_signature(&state, HOOK, &headers, &uri, &params)?;
    let call_sid =
        call_sid_param(&params).inspect_err(|_| state.metrics.webhook(HOOK, "bad_request"))?;
    let status = form_value(&params, "RecordingStatus").unwrap_or_default();
    let Some(recording_status) = RecordingStatus::from_twilio(status) else {
        state.metrics.webhook(HOOK, "bad_request");
        return Err(ApiError::BadRequest(format!(
            "RecordingStatus {:?}",
            status.chars().take(20).collect::<String>()
        )));
    };
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
    if recording_status == RecordingStatus::TwilioCompleted && url.is_none() {
        state.metrics.webhook(HOOK, "bad_request");
        return Err(ApiError::BadRequest(
            "completed without RecordingUrl".into(),
        ));
    }
    // Bounded: past the deadline Twilio gets 503 and retries the callback.
    let known = state
        .db(state.store.twilio_recording_status(
            call_sid.as_str(),
            recording_sid,
            recording_status,
            url,
            state.clock.now_ms(),
        ))
        .await?;
    if !known {
        state.metrics.webhook(HOOK, "unknown_call");
        return Err(ApiError::CallNotFound(call_sid.to_string()));
    }
    state.metrics.webhook(HOOK, "accepted");
    tracing::info!(call_sid = %call_sid, recording_sid, status, "recording_status");
    Ok(StatusCode::NO_CONTENT.into_response())
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
}
