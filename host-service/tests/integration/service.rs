//! How the service starts, admits and lets go: it refuses to start without a signature key, refuses
//! sockets past its limit before the upgrade, cuts off slow headers and bodies, and does not wait
//! past its shutdown deadline for a slow peer.

use crate::common::*;
use crate::server::{metric, quick_config, Server};
use host_service::config::Config;
use std::time::Duration;

#[tokio::test]
async fn without_a_key_or_an_explicit_opt_out_the_service_does_not_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: data.path().join("data"),
        ..Config::default()
    };
    let engines = test_engines::engines(&Default::default());
    let err = host_service::run(listener, config, engines, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("config key twilio.validate_signatures: is on but no key is set"),
        "{err}"
    );
    // Nothing was created before the refusal.
    assert!(!data.path().join("data").exists());
}

#[tokio::test]
async fn sockets_past_the_limit_get_503_before_the_upgrade() {
    let mut config = quick_config();
    config.websocket.max_sockets = 1;
    let server = Server::start(config).await;
    let mut first = connect(server.addr).await;
    send(&mut first, start(CALL, STREAM)).await;
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/twilio-media", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_sockets");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "host_ws_rejected_total{reason=\"too_many_sockets\"} "),
        Some(1.0)
    );
    assert_eq!(metric(&m, "host_active_streams "), Some(1.0));
    send(&mut first, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut first).await.0, Some(1000));
    // The slot is free again once the first socket is gone.
    let mut again = poll("a free slot", Duration::from_secs(10), || async {
        tokio_tungstenite::connect_async(format!("ws://{}/ws/twilio-media", server.addr))
            .await
            .ok()
            .map(|(ws, _)| ws)
    })
    .await;
    send(
        &mut again,
        start(CALL, "MZ2222222222222222222222222222222f"),
    )
    .await;
    send(&mut again, stop(CALL, "MZ2222222222222222222222222222222f")).await;
    assert_eq!(read_until_close(&mut again).await.0, Some(1000));
    server.stop().await;
}

/// Write raw bytes to the service and read until it closes the connection.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the service kept the connection open");
    (tcp, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn slow_headers_and_bodies_are_cut_off() {
    let mut config = quick_config();
    config.http.header_read_timeout_ms = 300;
    config.http.body_read_timeout_ms = 300;
    let server = Server::start(config).await;
    // Headers that never end: the connection is closed without an answer.
    let (_tcp, answer) = raw_exchange(
        server.addr,
        b"POST /webhook/stream_ended HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    assert_eq!(answer, "");
    // A body that never arrives in full: 408.
    let (_tcp, answer) = raw_exchange(
        server.addr,
        b"POST /webhook/stream_ended HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nCallSid=CA",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_past_its_deadline_for_a_slow_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = quick_config();
    // Only the deadline can end this request before the test's own 20 s limit on `stop`.
    config.http.body_read_timeout_ms = 120_000;
    config.http.request_timeout_ms = 240_000;
    config.http.shutdown_timeout_ms = 300;
    let server = Server::start(config).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // One whole request first, so the connection is being served...
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    // ...then one whose body never comes.
    tcp.write_all(
        b"POST /webhook/stream_ended HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nCallSid=CA",
    )
    .await
    .unwrap();
    // A round trip on another connection: the service has read what was sent before it.
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
    // The slow connection was dropped, not left open.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest))
        .await
        .expect("the connection was closed at the deadline")
        .ok();
}
