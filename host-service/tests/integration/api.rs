//! The API's access rules and error shapes, driven through the router with `oneshot`: a bearer
//! token when one is configured, loopback clients only when none is, stable JSON error codes.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use host_service::config::Config;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use tower::ServiceExt;

const TOKEN: &str = "a-long-enough-api-token";

async fn router(token: Option<&str>) -> (Fixture, axum::Router) {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        api_token: token.map(str::to_owned),
        ..Config::default()
    };
    c.twilio.validate_signatures = false;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let state = host_service::open(c, rx).await.unwrap();
    (
        Fixture {
            _data: data,
            _stop: tx,
        },
        host_service::app(state),
    )
}

/// Keeps the data directory and the (never sent) shutdown signal alive for the test.
struct Fixture {
    _data: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn get(
    app: &axum::Router,
    path: &str,
    peer: &str,
    auth: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn without_a_token_only_loopback_clients_get_the_api() {
    let (_d, app) = router(None).await;
    let (s, body) = get(&app, "/api/calls", "10.1.2.3:5000", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "loopback_only");
    let (s, body) = get(&app, "/api/calls", "127.0.0.1:5000", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["calls"], serde_json::json!([]));
    let (s, _) = get(&app, "/api/calls", "[::1]:5000", None).await;
    assert_eq!(s, StatusCode::OK);
    // Health and metrics are not behind the API rule.
    let (s, _) = get(&app, "/healthz", "10.1.2.3:5000", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn with_a_token_every_client_needs_it() {
    let (_d, app) = router(Some(TOKEN)).await;
    for auth in [None, Some("Bearer wrong"), Some(TOKEN), Some("Basic YTpi")] {
        let (s, body) = get(&app, "/api/calls", "127.0.0.1:1", auth).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let bearer = format!("Bearer {TOKEN}");
    let (s, _) = get(&app, "/api/calls", "10.9.9.9:1", Some(&bearer)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = get(
        &app,
        "/api/calls/CA0123456789abcdef0123456789abcdef",
        "10.9.9.9:1",
        Some(&bearer),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "call_not_found");
    let (s, body) = get(
        &app,
        "/api/calls/CA0123456789abcdef0123456789abcdef/recording.wav",
        "10.9.9.9:1",
        Some(&bearer),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "recording_not_found");
}

#[tokio::test]
async fn path_tricks_in_a_call_sid_are_refused() {
    let (_d, app) = router(None).await;
    for path in [
        "/api/calls/..%2F..%2Fetc%2Fpasswd",
        "/api/calls/CA0123456789abcdef0123456789abcde%2F/recording.wav",
        "/api/calls/CA0123456789abcdef0123456789abcdeg",
    ] {
        let (s, body) = get(&app, path, "127.0.0.1:1", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["error"]["code"], "bad_call_sid", "{path}");
    }
    let (s, body) = get(&app, "/api/calls?limit=0", "127.0.0.1:1", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    let (s, body) = get(&app, "/api/calls?cursor=nope", "127.0.0.1:1", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn webhooks_refuse_a_missing_or_bad_call_sid() {
    let (_d, app) = router(None).await;
    for body in ["", "CallSid=..%2F..%2Fx", "CallSid=CA123"] {
        let req = Request::post("/webhook/stream_ended")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "bad_call_sid");
    }
}
