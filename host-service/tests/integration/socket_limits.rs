//! What one caller, or one captured handshake, can hold of the service: a `start` needs the
//! edge's media token for its own call, a call's streams are capped (across replicas on
//! PostgreSQL), pings and refused frames do not keep a socket alive, sockets have a lifetime
//! and a frame rate, and DTMF digits never reach the log. Real sockets against the service in
//! process.

use crate::common::*;
use crate::server::{metric, quick_config, Server};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use twiml::signature::{compute, Algorithm};

const OTHER_CALL: &str = "CAffffffffffffffffffffffffffffffff";
const MEDIA_KEY: &str = "media-key-0123456789";
const AUTH_TOKEN: &str = "auth-token-123";

/// Read until the server closes: the close code and reason.
async fn close_of<S>(ws: &mut S) -> Option<(u16, String)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let fut = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("server closed the socket in time")
}

/// Run `send` while reading for the server's close. A send can fail on the closed connection
/// before its close frame is read: the frame is still there to read.
async fn close_while<S>(
    rx: &mut S,
    send: impl std::future::Future<Output = ()>,
) -> Option<(u16, String)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let closed = close_of(rx);
    tokio::pin!(closed);
    tokio::select! {
        c = &mut closed => c,
        _ = send => closed.await,
    }
}

fn start_with_token(call: &str, stream: &str, token: &str) -> String {
    start(call, stream).replace(
        r#""customParameters":{"#,
        &format!(r#""customParameters":{{"twiml_guard_token":"{token}","#),
    )
}

/// A handshake as Twilio signs it: the URL only, the same for every call.
async fn signed_socket(server: &Server) -> Ws {
    let mut req = format!("ws://{}/ws/twilio-media", server.addr)
        .into_client_request()
        .unwrap();
    let sig = compute::<&str, &str>(
        "wss://voice.example.com/ws/twilio-media",
        &[],
        AUTH_TOKEN.as_bytes(),
        Algorithm::HmacSha1,
    );
    req.headers_mut()
        .insert("x-twilio-signature", sig.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test]
async fn a_captured_handshake_and_token_are_worth_nothing_for_another_call() {
    let mut config = quick_config();
    config.twilio.validate_signatures = true;
    config.twilio.auth_token = Some(AUTH_TOKEN.into());
    config.public_base_url = Some("https://voice.example.com".into());
    config.twilio.media_key = Some(MEDIA_KEY.into());
    let server = Server::start(config).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token_a = twiml::media_token::mint(MEDIA_KEY.as_bytes(), CALL, now_s + 60);

    // Call A with its own token streams.
    let mut a = signed_socket(&server).await;
    send(&mut a, start_with_token(CALL, STREAM, &token_a)).await;
    send(&mut a, media(STREAM, 2, 0, &frame_audio(0))).await;
    send(&mut a, stop(CALL, STREAM)).await;
    assert_eq!(close_of(&mut a).await, Some((1000, "stopped".into())));

    // The same handshake and token replayed for call B; B without a token; an expired token.
    let expired = twiml::media_token::mint(MEDIA_KEY.as_bytes(), OTHER_CALL, now_s - 1);
    let other_stream = "MZ1111111111111111111111111111111f";
    for start_text in [
        start_with_token(OTHER_CALL, other_stream, &token_a),
        start(OTHER_CALL, other_stream),
        start_with_token(OTHER_CALL, other_stream, &expired),
    ] {
        let mut b = signed_socket(&server).await;
        send(&mut b, start_text).await;
        assert_eq!(
            close_of(&mut b).await,
            Some((1008, "media_token_refused".into()))
        );
    }
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "host_bad_messages_total{kind=\"media_token_refused\"} "),
        Some(3.0)
    );
    // Nothing of the refused starts was stored.
    let b = server
        .http
        .get(format!("http://{}/api/calls/{OTHER_CALL}", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 404);
    server.stop().await;
}

/// Streams 1 and 2 of `CALL`, opened on `on[0]` and `on[1]`, fill a cap of two: stream 3 is
/// refused on each, and once stream 1 stops `on[1]` takes it.
async fn two_streams_fill_the_cap_until_one_closes(on: [&Server; 2]) {
    let streams = [
        "MZ1000000000000000000000000000000f",
        "MZ2000000000000000000000000000000f",
        "MZ3000000000000000000000000000000f",
    ];
    let mut open = Vec::new();
    for (server, s) in on.iter().zip(streams) {
        let mut ws = connect(server.addr).await;
        send(&mut ws, start(CALL, s)).await;
        send(&mut ws, media(s, 2, 0, &frame_audio(0))).await;
        open.push(ws);
    }
    // Both starts were taken: the API shows two open streams.
    poll("two streams open", Duration::from_secs(10), || async {
        let v = on[0].call_json(CALL).await;
        (v["streams"].as_array()?.len() == 2).then_some(())
    })
    .await;
    for server in on {
        let mut third = connect(server.addr).await;
        send(&mut third, start(CALL, streams[2])).await;
        assert_eq!(
            close_of(&mut third).await,
            Some((1008, "too_many_streams".into()))
        );
    }
    // A stream that ends frees its place.
    send(&mut open[0], stop(CALL, streams[0])).await;
    assert_eq!(close_of(&mut open[0]).await.map(|c| c.0), Some(1000));
    let mut again = connect(on[1].addr).await;
    send(&mut again, start(CALL, streams[2])).await;
    send(&mut again, stop(CALL, streams[2])).await;
    assert_eq!(close_of(&mut again).await, Some((1000, "stopped".into())));
    send(&mut open[1], stop(CALL, streams[1])).await;
    assert_eq!(close_of(&mut open[1]).await.map(|c| c.0), Some(1000));
    let streams = on[0].call_json(CALL).await["streams"]
        .as_array()
        .map(Vec::len);
    assert_eq!(streams, Some(3));
}

#[tokio::test]
async fn socket_n_plus_one_of_a_call_is_refused_until_one_closes() {
    let mut config = quick_config();
    config.websocket.max_streams_per_call = 2;
    let server = Server::start(config).await;
    two_streams_fill_the_cap_until_one_closes([&server, &server]).await;
    server.stop().await;
}

/// Replicas on one PostgreSQL hold sockets of the same call: the cap counts the call's open
/// streams on all of them, not each replica's own (one stream on each fills a cap of two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn socket_n_plus_one_of_a_call_is_refused_across_replicas() {
    let pg = test_support::PgCluster::started().await;
    let mut config = quick_config();
    config.websocket.max_streams_per_call = 2;
    config.database.url = Some(pg.database("host_service").unwrap());
    let a = Server::start(config.clone()).await;
    let b = Server::replica_of(&a, config).await;
    two_streams_fill_the_cap_until_one_closes([&a, &b]).await;
    b.stop().await;
    a.stop().await;
}

fn nth_sid(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:032x}")
}

#[tokio::test]
async fn three_hundred_pinging_sockets_are_closed_by_the_idle_timeout() {
    const N: usize = 300;
    let mut config = quick_config();
    config.websocket.idle_timeout_ms = 500;
    config.websocket.start_timeout_ms = 30_000;
    config.websocket.max_sockets = N + 10;
    let server = Server::start(config).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let (call, stream) = (nth_sid("CA", i), nth_sid("MZ", i));
        let mut ws = connect(server.addr).await;
        tasks.push(tokio::spawn(async move {
            send(&mut ws, start(&call, &stream)).await;
            // Pings every 100 ms, and a frame the stream refuses (a stranger's streamSid): neither
            // is activity.
            let (mut tx, mut rx) = ws.split();
            let pinger = async {
                let mut pace = tokio::time::interval(Duration::from_millis(100));
                for k in 0.. {
                    pace.tick().await;
                    let msg = if k % 3 == 0 {
                        Message::Text(media("MZ0", k, 0, &[0xFF]).into())
                    } else {
                        Message::Ping(vec![1].into())
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            };
            close_while(&mut rx, pinger).await
        }));
    }
    let closes = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
    .await
    .expect("every pinging socket closed by the deadline");
    let idle = closes
        .iter()
        .filter(|c| c.as_ref() == Some(&(1008, "idle_timeout".to_string())))
        .count();
    assert_eq!(idle, N);
    let m = poll("closes counted", Duration::from_secs(10), || async {
        let m = server.metrics().await;
        (metric(&m, "host_ws_closed_total{reason=\"idle_timeout\"} ") == Some(N as f64))
            .then_some(m)
    })
    .await;
    assert_eq!(
        metric(&m, "host_bad_messages_total{kind=\"wrong_stream_sid\"} ").map(|v| v >= N as f64),
        Some(true)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_socket_is_closed_at_its_lifetime_and_past_its_frame_rate() {
    let mut config = quick_config();
    config.websocket.max_lifetime_s = 1;
    config.websocket.max_frames_per_s = 40;
    let server = Server::start(config).await;

    // Streaming at 20 frames a second, within the rate, until the lifetime ends.
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    let (mut tx, mut rx) = ws.split();
    let feeder = async {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for k in 0..200u64 {
            pace.tick().await;
            let msg = Message::Text(media(STREAM, k as usize + 2, k * 50, &frame_audio(0)).into());
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    };
    let close = close_while(&mut rx, feeder).await;
    assert_eq!(close, Some((1008, "max_lifetime".into())));

    // 60 pings at once: past 40 a second.
    let mut flood = connect(server.addr).await;
    for _ in 0..60 {
        if flood.send(Message::Ping(vec![].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(
        close_of(&mut flood).await,
        Some((1008, "frame_rate".into()))
    );
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "host_ws_closed_total{reason=\"frame_rate\"} "),
        Some(1.0)
    );
    server.stop().await;
}

/// Collects the service's log lines in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn dtmf_digits_never_reach_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test runtime is single-threaded: the service's tasks log through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Server::start(quick_config()).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    for digit in ["4", "7", "#"] {
        send(&mut ws, dtmf(STREAM, digit)).await;
    }
    send(&mut ws, stop(CALL, STREAM)).await;
    assert_eq!(close_of(&mut ws).await.map(|c| c.0), Some(1000));
    server.stop().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let dtmf_lines: Vec<&str> = log.lines().filter(|l| l.contains(" dtmf")).collect();
    assert_eq!(dtmf_lines.len(), 3, "{log}");
    for line in dtmf_lines {
        assert!(!line.contains("digit"), "{line}");
        assert!(line.contains(CALL), "{line}");
    }
}
