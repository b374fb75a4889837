//! What the real binary exposes and to whom, over real sockets: it will not listen beyond
//! loopback without an API token, every request body has a deadline (the dashboard's sign-in and
//! the playground's lint included, not only the webhooks), and connections past the cap are
//! closed at once and counted.

use crate::common::poll;
use crate::process::spawn;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "exposure-test-token-0123";

#[test]
fn beyond_loopback_the_service_will_not_start_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-service"))
        .env_clear()
        .env("HOST_SERVICE_LISTEN", "0.0.0.0:0")
        .env("HOST_SERVICE_DATA_DIR", data.path())
        .env("HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service started listening on 0.0.0.0 without an api_token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert_eq!(
        stderr.trim(),
        "host-service: config key api_token: required to listen on 0.0.0.0:0, which is not a \
         loopback address (without a token the API trusts loopback peers only)"
    );
}

/// Send `head` and the start of a body that never comes in full; the answer's first line.
async fn trickle(addr: std::net::SocketAddr, head: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(b"{\"partial\":").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to a stalled body within 20 s");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn stalled_bodies_get_408_and_connections_past_the_cap_are_closed_and_counted() {
    let data = tempfile::tempdir().unwrap();
    let svc = spawn(
        data.path(),
        &[
            ("HOST_SERVICE_API_TOKEN", TOKEN.into()),
            ("HOST_SERVICE_HTTP_BODY_READ_TIMEOUT_MS", "300".into()),
            ("HOST_SERVICE_HTTP_REQUEST_TIMEOUT_MS", "800".into()),
            ("HOST_SERVICE_WEBSOCKET_MAX_SOCKETS", "1".into()),
            ("HOST_SERVICE_HTTP_MAX_CONNECTIONS", "2".into()),
        ],
    );
    let addr = svc.addr;
    for (path, auth) in [
        ("/dashboard/signin", String::new()),
        ("/api/lint", format!("Authorization: Bearer {TOKEN}\r\n")),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n"
        );
        assert_eq!(
            trickle(addr, &head).await,
            "HTTP/1.1 408 Request Timeout",
            "{path}"
        );
    }

    // Two connections held open (the accept loop counts each before it takes the next): the
    // third is closed unanswered.
    let held = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), third.read_to_end(&mut answer))
        .await
        .expect("the connection past the cap was closed");
    assert!(read.is_err() || answer.is_empty(), "{answer:?}");
    drop(held);
    // Scrapes made before the server saw the two close are refused too: counted here.
    let refused_scrapes = std::sync::atomic::AtomicUsize::new(0);
    let client = reqwest::Client::new();
    let metrics = poll(
        "a scrape once the held connections closed",
        Duration::from_secs(20),
        || {
            let request = client.get(svc.url("/metrics")).send();
            let refused = &refused_scrapes;
            async move {
                match request.await {
                    Ok(r) => r.text().await.ok(),
                    Err(_) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        None
                    }
                }
            }
        },
    )
    .await;
    let refused_scrapes = refused_scrapes.into_inner();
    for line in [
        format!(
            "host_http_connections_refused_total {}",
            1 + refused_scrapes
        ),
        "host_http_connections 1".to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
}
