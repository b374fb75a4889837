//! The `twilio` recording source and signed webhooks, against a local stand-in for Twilio's REST
//! API that checks every request it gets (Basic auth, form fields) and serves the recording.

use crate::common::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use host_service::config::{Config, RecordingSource};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twiml::signature::{compute, Algorithm};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const SHARED_KEY: &str = "a-webhook-shared-key";
const PUBLIC: &str = "https://voice.example.com";
const RECORDING: &str = "RE0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Seen {
    started: Vec<Vec<(String, String)>>,
    downloads: usize,
    refused: Vec<String>,
}

#[derive(Clone)]
struct StandIn {
    seen: Arc<Mutex<Seen>>,
    wav: Arc<Vec<u8>>,
}

fn basic_ok(headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn start_recording(
    State(s): State<StandIn>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let form = twiml::signature::parse_form(body.as_bytes());
    let mut seen = s.seen.lock().unwrap();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let problem = if !basic_ok(&headers) {
        Some("basic auth")
    } else if account != ACCOUNT || call != CALL {
        Some("path")
    } else if field("RecordingChannels") != Some("dual") {
        Some("RecordingChannels")
    } else if field("RecordingStatusCallback")
        != Some(&format!("{PUBLIC}/webhook/recording_status"))
    {
        Some("RecordingStatusCallback")
    } else if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        Some("content type")
    } else {
        None
    };
    if let Some(p) = problem {
        seen.refused.push(p.to_owned());
        return (StatusCode::BAD_REQUEST, p.to_owned()).into_response();
    }
    seen.started.push(form);
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"sid": RECORDING, "status": "in-progress"})),
    )
        .into_response()
}

async fn download(
    State(s): State<StandIn>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let mut seen = s.seen.lock().unwrap();
    if !basic_ok(&headers) || account != ACCOUNT || file != format!("{RECORDING}.wav") {
        seen.refused.push(format!("download {file}"));
        return (StatusCode::UNAUTHORIZED, Vec::new()).into_response();
    }
    seen.downloads += 1;
    ([("content-type", "audio/x-wav")], s.wav.as_ref().clone()).into_response()
}

async fn stand_in() -> (String, StandIn) {
    let left: Vec<f32> = (0..8000).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let right: Vec<f32> = (0..8000).map(|i| ((i as f32) * 0.11).sin() * 0.2).collect();
    let state = StandIn {
        seen: Default::default(),
        wav: Arc::new(media::wav::encode_i16(&[left, right], 8000).unwrap()),
    };
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings.json",
            post(start_recording),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Recordings/{file}",
            get(download),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

fn sign(path: &str, params: &[(String, String)]) -> String {
    compute(
        &format!("{PUBLIC}{path}"),
        params,
        TOKEN.as_bytes(),
        Algorithm::HmacSha1,
    )
}

struct Svc {
    addr: std::net::SocketAddr,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_service(api_base: &str) -> Svc {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        public_base_url: Some(PUBLIC.into()),
        ..Config::default()
    };
    c.recording.source = RecordingSource::Twilio;
    c.twilio.auth_token = Some(TOKEN.into());
    c.twilio.shared_key = Some(SHARED_KEY.into());
    c.twilio.account_sid = Some(ACCOUNT.into());
    c.twilio.api_base = api_base.into();
    c.pipeline.poll_ms = 20;
    c.pipeline.backoff_base_ms = 20;
    c.pipeline.backoff_cap_ms = 100;
    c.pipeline.max_attempts = 50;
    assert!(c.validate_signatures(), "on by default with a token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engines = test_engines::engines(&Default::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(host_service::run(listener, c, engines, async move {
        let _ = rx.await;
    }));
    poll("healthz", Duration::from_secs(10), || async move {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    Svc {
        addr,
        _data: data,
        _stop: tx,
    }
}

async fn post_signed(
    svc: &Svc,
    path: &str,
    params: &[(String, String)],
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", svc.addr))
        .form(params);
    if let Some(sig) = signature {
        req = req.header("X-Twilio-Signature", sig);
    }
    req.send().await.unwrap()
}

async fn signed_socket(svc: &Svc) -> Ws {
    let mut req = format!("ws://{}/ws/twilio-media", svc.addr)
        .into_client_request()
        .unwrap();
    let sig = compute::<&str, &str>(
        "wss://voice.example.com/ws/twilio-media",
        &[],
        TOKEN.as_bytes(),
        Algorithm::HmacSha1,
    );
    req.headers_mut()
        .insert("x-twilio-signature", sig.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test]
async fn twilio_records_the_call_and_the_service_downloads_it() {
    let (api, stand) = stand_in().await;
    let svc = start_service(&api).await;

    // An unsigned handshake is refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/twilio-media", svc.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("unsigned handshake: {other:?}"),
    }

    let mut ws = signed_socket(&svc).await;
    send(&mut ws, start(CALL, STREAM)).await;
    poll("recording requested", Duration::from_secs(10), || async {
        (!stand.seen.lock().unwrap().started.is_empty()).then_some(())
    })
    .await;
    send(&mut ws, media(STREAM, 2, 0, &frame_audio(0))).await;
    send(&mut ws, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1000));

    let ended = stream_ended_form(CALL);
    // Unsigned, forged and tampered webhooks are refused and change nothing.
    let r = post_signed(&svc, "/webhook/stream_ended", &ended, None).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_signature");
    let r = post_signed(&svc, "/webhook/stream_ended", &ended, Some("AAAA".into())).await;
    assert_eq!(r.status(), 403);
    let mut tampered = ended.clone();
    tampered[5].1 = "+19999999999".into();
    let sig = sign("/webhook/stream_ended", &ended);
    let r = post_signed(&svc, "/webhook/stream_ended", &tampered, Some(sig.clone())).await;
    assert_eq!(r.status(), 403);
    let d: serde_json::Value = reqwest::get(format!("http://{}/api/calls/{CALL}", svc.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["status"], "in_progress");

    let r = post_signed(&svc, "/webhook/stream_ended", &ended, Some(sig)).await;
    assert_eq!(r.status(), 200);
    // The newer HMAC-SHA256 signing with the shared key is accepted too (a replay: no change).
    let sha256 = compute(
        &format!("{PUBLIC}/webhook/stream_ended"),
        &ended,
        SHARED_KEY.as_bytes(),
        Algorithm::HmacSha256,
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/webhook/stream_ended", svc.addr))
        .header("X-Twilio-Signature", sha256)
        .header(
            "X-Twilio-Webhooks-Signature-Settings",
            "key=KS1,algorithm=HMAC_SHA256",
        )
        .form(&ended)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A status callback pointing the download anywhere but Twilio's API is refused, signed or not.
    let evil = form(&[
        ("AccountSid", ACCOUNT),
        ("CallSid", CALL),
        ("RecordingSid", RECORDING),
        ("RecordingStatus", "completed"),
        ("RecordingUrl", "http://169.254.169.254/latest/meta-data"),
    ]);
    let r = post_signed(
        &svc,
        "/webhook/recording_status",
        &evil,
        Some(sign("/webhook/recording_status", &evil)),
    )
    .await;
    assert_eq!(r.status(), 400);

    let url = format!("{api}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}");
    let status = form(&[
        ("AccountSid", ACCOUNT),
        ("CallSid", CALL),
        ("RecordingChannels", "2"),
        ("RecordingDuration", "1"),
        ("RecordingSid", RECORDING),
        ("RecordingSource", "StartCallRecordingAPI"),
        ("RecordingStatus", "completed"),
        ("RecordingUrl", &url),
    ]);
    let sig = sign("/webhook/recording_status", &status);
    let r = post_signed(&svc, "/webhook/recording_status", &status, Some(sig)).await;
    assert_eq!(r.status(), 204);

    let d = poll("call completed", Duration::from_secs(20), || async {
        let d: serde_json::Value = reqwest::get(format!("http://{}/api/calls/{CALL}", svc.addr))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (d["status"] == "completed").then_some(d)
    })
    .await;
    assert_eq!(d["recording"]["source"], "twilio");
    assert_eq!(d["recording"]["twilio_recording_sid"], RECORDING);
    assert_eq!(d["recording"]["duration_ms"], 1000);
    assert_eq!(d["streams"][0]["status"], "not_recorded");
    let wav = reqwest::get(format!(
        "http://{}/api/calls/{CALL}/recording.wav",
        svc.addr
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert!(
        wav[..] == stand.wav[..],
        "the downloaded recording is Twilio's file"
    );
    let seen = stand.seen.lock().unwrap();
    assert_eq!(seen.refused, Vec::<String>::new());
    assert_eq!(seen.started.len(), 1);
    assert_eq!(seen.downloads, 1);
}
