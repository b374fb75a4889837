//! Twilio's `X-Twilio-Signature` on webhooks and on the media handshake, checked against the
//! public URL Twilio requested by the core's `twiml::signature`.

use super::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, Uri};

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

pub(super) fn check_signature(
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

pub(super) fn check_websocket_signature(
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
