//! Edge-proof defaults through a real Envoy: `text/html` TwiML (Flask's `return str(resp)`) is
//! inspected and rewritten while an HTML page streams through unbuffered and byte-identical;
//! repeated `content-type` and stacked `content-encoding` values (deflate, gzip twice) are read
//! and rewritten back into the same codings, or refused, never skipped; `accept-encoding` reaches the backend narrowed to what the filter reads; UTF-16
//! without a byte order mark is judged; and the shipped `envoy.yaml` refuses forged webhooks.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_counters, conflict, gunzip, gzip, post, stripped};
use e2e::upstream::{Body, RawUpstream, Reply, Request};
use e2e::{Envoy, EnvoySetup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use twiml::signature::{compute, Algorithm};

/// UTF-16LE, no byte order mark: no `<Record` bytes for a byte search to find.
fn utf16le(doc: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(doc)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// An HTML page that mentions TwiML in its body: not TwiML, since it does not open with it.
const SMALL_PAGE: &[u8] = b"<!DOCTYPE html>\n<html><body><pre>&lt;Response&gt;</pre>\
<Response><Record/><Connect><Stream url=\"wss://h/ws\"/></Connect></Response></body></html>\n";

fn edge_backend(req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let route = path
        .strip_prefix("/voice")
        .or_else(|| path.strip_prefix("/other"))
        .unwrap_or(path);
    let body = |b: Vec<u8>| Reply::new(200, Body::Length(b));
    match route {
        // Flask: `return str(resp)` with the twilio library's TwiML.
        "/flask" => Reply::ok("text/html; charset=utf-8", conflict()),
        "/page" => Reply::ok("text/html; charset=utf-8", SMALL_PAGE),
        "/two-types" => body(conflict())
            .header("content-type", "text/html")
            .header("content-type", "text/xml"),
        "/joined-types" => Reply::ok("text/plain, application/xml", conflict()),
        "/identity-then-gzip" => body(gzip(&conflict()))
            .header("content-type", "text/xml")
            .header("content-encoding", "identity")
            .header("content-encoding", "gzip"),
        "/gzip-identity" => {
            Reply::ok("text/xml", gzip(&conflict())).header("content-encoding", "gzip, identity")
        }
        "/x-gzip" => Reply::ok("text/xml", gzip(&conflict())).header("content-encoding", "x-gzip"),
        "/deflate" => Reply::ok("text/xml", twiml::gzip::deflate(&conflict()).unwrap())
            .header("content-encoding", "deflate"),
        "/deflate-corrupt" => {
            Reply::ok("text/xml", conflict()).header("content-encoding", "deflate")
        }
        "/gzip-twice" => Reply::ok("text/xml", gzip(&gzip(&conflict())))
            .header("content-encoding", "gzip")
            .header("content-encoding", "gzip"),
        "/utf16" => Reply::ok("text/xml", utf16le(&conflict())),
        _ => Reply::new(404, Body::Length(b"no such scenario\n".to_vec()))
            .header("content-type", "text/plain"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_twiml_headers_and_encodings_are_never_skipped() {
    let backend = RawUpstream::start(edge_backend).await.unwrap();
    let media = e2e::upstream::WsEcho::start().await.unwrap();
    let setup = EnvoySetup::new(backend.addr(), media.addr())
        .plugin_config(r#"{"paths": ["/voice"], "on_malformed": "reject"}"#);
    let envoy = Envoy::start(&setup).await.unwrap();

    // Flask's text/html TwiML is rewritten like text/xml.
    let seen = post(&envoy, "/voice/flask").await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.guard.as_deref(),
        Some("rewritten; blocks=Connect/Stream")
    );
    assert_eq!(seen.body, stripped());

    // An HTML page passes as sent, with its length, uncounted and unmarked.
    let seen = post(&envoy, "/voice/page").await;
    assert_eq!((seen.status, seen.guard.as_deref()), (200, None));
    assert_eq!(seen.body, SMALL_PAGE);
    assert_eq!(
        seen.header("content-length"),
        Some(SMALL_PAGE.len().to_string().as_str())
    );

    // Two content-type values: judged in full, whichever the client goes by.
    for path in ["/voice/two-types", "/voice/joined-types"] {
        let seen = post(&envoy, path).await;
        assert_eq!(
            (seen.status, seen.guard.as_deref()),
            (200, Some("rewritten; blocks=Connect/Stream")),
            "{path}"
        );
        assert_eq!(seen.body, stripped(), "{path}");
    }

    // Stacked and repeated encodings the filter can read are read, and a rewrite goes back into
    // the same codings: gzip, deflate (zlib), and gzip over gzip.
    let inflate = |b: &[u8]| twiml::gzip::inflate(b, 1 << 20).unwrap();
    let twice = |b: &[u8]| gunzip(&gunzip(b));
    for (path, decode) in [
        (
            "/voice/identity-then-gzip",
            &gunzip as &dyn Fn(&[u8]) -> Vec<u8>,
        ),
        ("/voice/gzip-identity", &gunzip),
        ("/voice/x-gzip", &gunzip),
        ("/voice/deflate", &inflate),
        ("/voice/gzip-twice", &twice),
    ] {
        let seen = post(&envoy, path).await;
        assert_eq!(
            (seen.status, seen.guard.as_deref()),
            (200, Some("rewritten; blocks=Connect/Stream")),
            "{path}"
        );
        assert_eq!(decode(&seen.body), stripped(), "{path}");
    }

    // The rest fail closed per on_malformed (here: reject).
    for (path, needle) in [
        ("/voice/deflate-corrupt", "deflate: invalid compressed data"),
        (
            "/voice/utf16",
            "UTF-16 without a byte order mark: only UTF-8 TwiML is supported",
        ),
    ] {
        let seen = post(&envoy, path).await;
        assert_eq!(
            (seen.status, seen.guard.as_deref()),
            (502, Some("malformed")),
            "{path}"
        );
        let v = seen.json();
        assert_eq!(v["error"], "twiml_malformed", "{path}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(needle),
            "{path}: {v}"
        );
    }

    assert_counters(
        &envoy,
        &[
            ("twiml_guard_inspected_total", 10),
            ("twiml_guard_responses_total{outcome=\"rewritten\"}", 8),
            ("twiml_guard_responses_total{outcome=\"malformed\"}", 2),
        ],
    )
    .await;

    // Inspected routes ask the backend only for codings the filter reads; other routes are left
    // alone.
    for (path, want) in [
        ("/voice/page", "gzip;q=0.5"),
        ("/other/page", "br, gzip;q=0.5, zstd"),
    ] {
        let resp = envoy
            .client()
            .get(envoy.url(path))
            .header("accept-encoding", "br, gzip;q=0.5, zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let got = backend
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.path == path)
            .unwrap();
        assert_eq!(got.header("accept-encoding"), Some(want), "{path}");
    }
    let resp = envoy
        .client()
        .get(envoy.url("/voice/page"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let last = backend.requests().pop().unwrap();
    assert_eq!(last.header("accept-encoding"), Some("identity"));
}

/// 1 MiB: four times `max_body_bytes` and Envoy's whole connection buffer.
const PAGE_BYTES: usize = 1 << 20;
const FIRST_BYTES: usize = 4096;

fn big_page() -> Vec<u8> {
    let mut page = b"<!DOCTYPE html>\n<html><head><title>guard</title></head><body>\n".to_vec();
    let tail = b"</body></html>\n";
    let line = b"<p>A web page behind the same Envoy, with <Record> in its text.</p>\n";
    while page.len() + line.len() + tail.len() <= PAGE_BYTES {
        page.extend_from_slice(line);
    }
    page.resize(PAGE_BYTES - tail.len(), b' ');
    page.extend_from_slice(tail);
    assert_eq!(page.len(), PAGE_BYTES);
    page
}

/// An upstream that sends the headers and the first `FIRST_BYTES` of `page`, then waits for
/// `gate` before it sends the rest: a filter that buffered the body would deliver nothing.
async fn gated_upstream(page: Arc<Vec<u8>>, gate: Arc<Notify>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
            page.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
        let _ = conn.write_all(&page[..FIRST_BYTES]).await;
        let _ = conn.flush().await;
        gate.notified().await;
        let _ = conn.write_all(&page[FIRST_BYTES..]).await;
        let _ = conn.flush().await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_streams_through_unbuffered_and_byte_identical() {
    let page = Arc::new(big_page());
    let gate = Arc::new(Notify::new());
    let backend = gated_upstream(Arc::clone(&page), Arc::clone(&gate)).await;
    let media = e2e::upstream::WsEcho::start().await.unwrap();
    // The defaults: text/html inspected, response headers held until a verdict.
    let envoy = Envoy::start(&EnvoySetup::new(backend, media.addr()).plugin_config("{}"))
        .await
        .unwrap();

    let deadline = Duration::from_secs(20);
    let mut resp = tokio::time::timeout(deadline, envoy.client().get(envoy.url("/")).send())
        .await
        .expect("headers came only after the whole body: the page was buffered")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("1048576")
    );
    assert!(resp.headers().get("x-twiml-guard").is_none());
    let first = tokio::time::timeout(deadline, resp.chunk())
        .await
        .expect("the first bytes did not arrive before the rest was sent: the page was buffered")
        .unwrap()
        .unwrap();
    assert!(!first.is_empty() && first.len() <= FIRST_BYTES);
    assert_eq!(&first[..], &page[..first.len()]);

    gate.notify_one();
    let mut got = first.to_vec();
    while let Some(chunk) = tokio::time::timeout(deadline, resp.chunk())
        .await
        .expect("the rest of the page")
        .unwrap()
    {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got.len(), PAGE_BYTES);
    assert!(got == *page, "the page changed on its way through");
    assert_counters(&envoy, &[]).await;
}

const TOKEN: &str = "shipped-config-e2e-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_refuses_forged_webhooks_and_handshakes() {
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", "<Response><Hangup/></Response>"))
        .await
        .unwrap();
    let host = RawUpstream::start(|_| Reply::ok("text/xml", "<Response><Hangup/></Response>"))
        .await
        .unwrap();
    // The shipped envoy.yaml as it is (plugin JSON included), with the token in Envoy's env.
    let envoy = Envoy::start(&EnvoySetup::new(backend.addr(), host.addr()).auth_token(TOKEN))
        .await
        .unwrap();

    let form = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "completed"),
    ];
    let body = "CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=completed";
    let post = |path: &str, signature: Option<String>| {
        let mut req = envoy
            .client()
            .post(envoy.url(path))
            .header("host", "voice.example.com")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(sig) = signature {
            req = req.header("x-twilio-signature", sig);
        }
        req.send()
    };
    let signed = |path: &str| {
        compute(
            &format!("https://voice.example.com{path}"),
            &form,
            TOKEN.as_bytes(),
            Algorithm::HmacSha1,
        )
    };
    // One character changed.
    let good = signed("/webhook/stream_ended");
    let swap = if good.starts_with('A') { "B" } else { "A" };
    let forged = format!("{swap}{}", good.get(1..).unwrap());
    for (path, sig) in [
        ("/webhook/stream_ended", Some(forged.clone())),
        ("/webhook/stream_ended", None),
        ("/webhook/recording_status", Some(forged.clone())),
        ("/webhook/incoming_call", Some(forged)),
    ] {
        let resp = post(path, sig.clone()).await.unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{path} {sig:?}");
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            b"invalid or missing X-Twilio-Signature\n"
        );
    }
    assert!(host.requests().is_empty() && backend.requests().is_empty());

    // A forged media handshake is refused before the upgrade reaches the host service.
    let ws = tokio_tungstenite::connect_async(envoy.ws_url("/ws/twilio-media")).await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("forged handshake: {:?}", other.map(|_| "upgraded")),
    }

    // What Twilio signs goes through.
    let resp = post(
        "/webhook/stream_ended",
        Some(signed("/webhook/stream_ended")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = host.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body.as_bytes());
    envoy
        .wait_counter("twiml_guard_signature_rejected_total", 5)
        .await
        .unwrap();
    envoy
        .wait_counter("twiml_guard_signature_ok_total", 1)
        .await
        .unwrap();
    assert!(!envoy.log().contains(TOKEN));
}
