//! The API's access rules and error shapes, driven through the router with `oneshot`: a bearer
//! token when one is configured, loopback clients only when none is (not through a proxy, and
//! only by loopback host names), stable JSON error codes.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use host_service::config::Config;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use tower::ServiceExt;

const TOKEN: &str = "a-long-enough-api-token";

async fn router(token: Option<&str>) -> (Fixture, axum::Router) {
    router_for(token, "").await
}

async fn router_for(token: Option<&str>, allowed_hosts: &str) -> (Fixture, axum::Router) {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        api_token: token.map(str::to_owned),
        ..Config::default()
    };
    c.http.allowed_hosts = allowed_hosts.to_owned();
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
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    get_with(app, path, peer, &headers).await
}

async fn get_with(
    app: &axum::Router,
    path: &str,
    peer: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
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

#[tokio::test]
async fn without_a_token_a_proxied_or_sidecar_loopback_peer_is_refused() {
    let (_d, app) = router(None).await;
    let local = [("host", "127.0.0.1:7000")];
    let (s, _) = get_with(&app, "/api/calls", "127.0.0.1:5000", &local).await;
    assert_eq!(s, StatusCode::OK);
    // Envoy, nginx or a mesh in front: the peer is the proxy on loopback, the client anyone.
    for forwarding in [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "203.0.113.7"),
    ] {
        let (s, body) = get_with(
            &app,
            "/api/calls",
            "127.0.0.1:5000",
            &[local[0], forwarding],
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{forwarding:?}");
        assert_eq!(body["error"]["code"], "loopback_only", "{forwarding:?}");
    }
    // Istio's sidecar hands every inbound connection over from 127.0.0.6.
    let (s, body) = get_with(&app, "/api/calls", "127.0.0.6:5000", &local).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "loopback_only");
}

#[tokio::test]
async fn only_allowed_host_names_reach_the_api_and_the_dashboard() {
    // No token: loopback names only, so a page whose name was rebound to 127.0.0.1 reads nothing.
    let (_d, app) = router(None).await;
    for (host, want) in [
        ("localhost:7000", StatusCode::OK),
        ("127.0.0.1:7000", StatusCode::OK),
        ("[::1]:7000", StatusCode::OK),
        ("rebound.attacker.example:7000", StatusCode::FORBIDDEN),
    ] {
        let (s, body) = get_with(&app, "/api/calls", "127.0.0.1:5000", &[("host", host)]).await;
        assert_eq!(s, want, "{host} {body}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "host_not_allowed");
            let (s, body) =
                get_with(&app, "/dashboard/", "127.0.0.1:5000", &[("host", host)]).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{host}");
            assert_eq!(body["error"]["code"], "host_not_allowed");
        }
    }
    // Webhooks and probes are not the API's: Twilio and the kubelet use other names.
    let (s, _) = get_with(&app, "/livez", "10.0.0.1:1", &[("host", "10.0.0.9:7000")]).await;
    assert_eq!(s, StatusCode::OK);

    // With a token and a list, only the listed names, whatever the token.
    let (_d, app) = router_for(Some(TOKEN), "voice.example.com").await;
    let bearer = format!("Bearer {TOKEN}");
    for (host, want) in [
        ("voice.example.com", StatusCode::OK),
        ("VOICE.example.com:443", StatusCode::OK),
        ("other.example.com", StatusCode::FORBIDDEN),
    ] {
        let headers = [("host", host), ("authorization", bearer.as_str())];
        let (s, _) = get_with(&app, "/api/calls", "10.0.0.1:1", &headers).await;
        assert_eq!(s, want, "{host}");
    }
}
