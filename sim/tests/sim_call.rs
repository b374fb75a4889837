//! `twilio-sim` against an in-test axum server playing both the voice backend and the media
//! WebSocket server: the fixed TwiML streams and hangs up, the legacy TwiML loops without ever
//! opening a socket, an HTTP error is refused. The server checks what Twilio would send.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use twilio_sim::report::Outcome;
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

const TOKEN: &str = "test-auth-token";
const PUBLIC: &str = "https://voice.example.com";

/// One webhook request: route, form, `X-Twilio-Signature`, `Host`.
type Webhook = (
    String,
    HashMap<String, String>,
    Option<String>,
    Option<String>,
);

/// What the server saw, for the test to assert on.
#[derive(Default)]
struct Seen {
    webhooks: Vec<Webhook>,
    ws_connects: usize,
    ws_signature: Option<String>,
    ws_host: Option<String>,
    ws_events: Vec<serde_json::Value>,
}

#[derive(Clone)]
struct App {
    seen: Arc<Mutex<Seen>>,
    /// TwiML for the voice webhook.
    answer: &'static str,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn twiml(body: &'static str) -> Response {
    ([("content-type", "text/xml")], body).into_response()
}

async fn voice(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    app.seen.lock().unwrap().webhooks.push((
        "voice".into(),
        form,
        header(&headers, "x-twilio-signature"),
        header(&headers, "host"),
    ));
    if app.answer.is_empty() {
        return (StatusCode::BAD_GATEWAY, "refused").into_response();
    }
    twiml(app.answer)
}

async fn stream_ended(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    app.seen.lock().unwrap().webhooks.push((
        "stream_ended".into(),
        form,
        header(&headers, "x-twilio-signature"),
        header(&headers, "host"),
    ));
    twiml("<Response><Hangup/></Response>")
}

async fn media(State(app): State<App>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    {
        let mut seen = app.seen.lock().unwrap();
        seen.ws_connects += 1;
        seen.ws_signature = header(&headers, "x-twilio-signature");
        seen.ws_host = header(&headers, "host");
    }
    ws.on_upgrade(move |socket| media_session(app, socket))
}

/// Reads the caller's frames; after the first media frame sends one second of audio and a mark.
async fn media_session(app: App, mut socket: WebSocket) {
    let mut sid = String::new();
    let mut answered = false;
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        if v["event"] == "start" {
            sid = v["streamSid"].as_str().unwrap().to_owned();
        }
        let is_media = v["event"] == "media";
        let is_stop = v["event"] == "stop";
        app.seen.lock().unwrap().ws_events.push(v);
        if is_media && !answered {
            answered = true;
            let audio = media::protocol::ServerMessage::media(&sid, &[0xFFu8; 8000]).to_json();
            let mark = media::protocol::ServerMessage::mark(&sid, "greeting-done").to_json();
            socket.send(Message::Text(audio.into())).await.unwrap();
            socket.send(Message::Text(mark.into())).await.unwrap();
        }
        if is_stop {
            break;
        }
    }
}

async fn serve(answer: &'static str) -> (Arc<Mutex<Seen>>, String) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/webhook/incoming_call", post(voice))
        .route("/webhook/stream_ended", post(stream_ended))
        .route("/webhook/recorded", post(stream_ended))
        .route("/ws/twilio-media", any(media))
        .with_state(App {
            seen: Arc::clone(&seen),
            answer,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, addr)
}

fn config(local: &str) -> CallConfig {
    let mut cfg = CallConfig::new(format!("{PUBLIC}/webhook/incoming_call"));
    cfg.map = UrlMap::local(local).unwrap();
    cfg.auth_token = Some(TOKEN.into());
    // 1.5 s of caller audio (75 frames), streamed 20x faster than real time.
    cfg.audio = Arc::new(vec![0x55; 12_000]);
    cfg.speed = 20.0;
    cfg.dtmf = vec![(Duration::from_millis(500), '7')];
    cfg.keep_outbound = true;
    cfg
}

const FIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://voice.example.com/webhook/stream_ended"><Stream url="wss://voice.example.com/ws/twilio-media"><Parameter name="CallSid" value="x"/><Parameter name="To" value="+15005550001"/></Stream></Connect></Response>"#;

const LEGACY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false" /><Connect action="https://voice.example.com/webhook/stream_ended"><Stream track="inbound_track" url="wss://voice.example.com/ws/twilio-media"><Parameter name="CallSid" value="x" /><Parameter name="To" value="+15005550001" /></Stream></Connect></Response>"#;

#[tokio::test]
async fn fixed_twiml_streams_echoes_the_mark_and_hangs_up() {
    let (seen, addr) = serve(FIXED).await;
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &config(&addr)).await;
    assert_eq!(report.outcome, Outcome::StreamRan, "{}", report.render());
    assert_eq!(report.exit_code, 0);

    let st = &report.streams[0];
    assert_eq!(st.frames_sent, 75);
    assert_eq!(st.bytes_sent, 12_000);
    assert_eq!(st.audio_ms, 1500);
    assert_eq!(st.dtmf_sent, vec!["7"]);
    assert_eq!(st.outbound_messages, 1);
    assert_eq!(st.outbound_bytes, 8000);
    assert_eq!(st.outbound_audio.len(), 8000);
    assert_eq!(st.marks_received, vec!["greeting-done"]);
    assert_eq!(st.marks_echoed, vec!["greeting-done"]);
    assert_eq!(report.fetches.len(), 2);
    assert_eq!(report.fetches[1].verbs, vec!["Hangup"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let seen = seen.lock().unwrap();
    // Webhooks: standard parameters, signed over the public URL, public Host.
    assert_eq!(seen.webhooks.len(), 2);
    for (i, (name, form, sig, host)) in seen.webhooks.iter().enumerate() {
        let path = ["/webhook/incoming_call", "/webhook/stream_ended"][i];
        assert_eq!(name, ["voice", "stream_ended"][i]);
        assert_eq!(form["CallSid"], report.call_sid);
        assert_eq!(form["CallStatus"], ["ringing", "in-progress"][i]);
        assert_eq!(form["AccountSid"], "AC00000000000000000000000000000000");
        assert_eq!(form["Direction"], "inbound");
        assert_eq!(form["ApiVersion"], "2010-04-01");
        assert_eq!(form["From"], "+15005550006");
        assert_eq!(form["To"], "+15005550001");
        let params: Vec<(String, String)> =
            form.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let expected = twiml::signature::compute(
            &format!("{PUBLIC}{path}"),
            &params,
            TOKEN.as_bytes(),
            twiml::signature::Algorithm::HmacSha1,
        );
        assert_eq!(sig.as_deref(), Some(expected.as_str()));
        assert_eq!(host.as_deref(), Some("voice.example.com"));
    }
    assert!(report.call_sid.starts_with("CA") && report.call_sid.len() == 34);

    // The stream: signed handshake over the public wss URL, then Twilio's message sequence.
    assert_eq!(seen.ws_connects, 1);
    let ws_sig = twiml::signature::compute::<&str, &str>(
        "wss://voice.example.com/ws/twilio-media",
        &[],
        TOKEN.as_bytes(),
        twiml::signature::Algorithm::HmacSha1,
    );
    assert_eq!(seen.ws_signature.as_deref(), Some(ws_sig.as_str()));
    assert_eq!(seen.ws_host.as_deref(), Some("voice.example.com"));
    let ev = &seen.ws_events;
    assert_eq!(ev[0]["event"], "connected");
    assert_eq!(ev[0]["protocol"], "Call");
    assert_eq!(ev[0]["version"], "1.0.0");
    assert_eq!(ev[1]["event"], "start");
    let start = &ev[1]["start"];
    assert_eq!(start["callSid"], report.call_sid.as_str());
    assert_eq!(start["customParameters"]["To"], "+15005550001");
    assert_eq!(start["customParameters"]["CallSid"], "x");
    assert_eq!(start["mediaFormat"]["encoding"], "audio/x-mulaw");
    assert_eq!(start["mediaFormat"]["sampleRate"], 8000);
    assert_eq!(ev[1]["sequenceNumber"], "1");
    let media: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "media").collect();
    assert_eq!(media.len(), 75);
    assert_eq!(media[0]["media"]["chunk"], "1");
    assert_eq!(media[0]["media"]["timestamp"], "0");
    assert_eq!(media[74]["media"]["chunk"], "75");
    assert_eq!(media[74]["media"]["timestamp"], "1480");
    assert_eq!(media[1]["sequenceNumber"], "3", "{:?}", &ev[..6]);
    let marks: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "mark").collect();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0]["mark"]["name"], "greeting-done");
    // One second of outbound audio arrived after the first frame: the mark is echoed only once
    // it has played, so after the caller's frame at 1000 ms.
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| ev.iter().position(pred).unwrap();
    let mark_at = pos(&|e| e["event"] == "mark");
    let second = pos(&|e| e["event"] == "media" && e["media"]["timestamp"] == "1000");
    assert!(
        mark_at > second,
        "mark echoed at {mark_at}, before the 1000 ms frame at {second}"
    );
    let dtmf: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "dtmf").collect();
    assert_eq!(dtmf[0]["dtmf"]["digit"], "7");
    assert_eq!(ev.last().unwrap()["event"], "stop");
    assert_eq!(
        ev.last().unwrap()["stop"]["callSid"],
        report.call_sid.as_str()
    );
}

#[tokio::test]
async fn legacy_twiml_loops_and_never_opens_the_stream() {
    let (seen, addr) = serve(LEGACY).await;
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &config(&addr)).await;
    assert_eq!(report.outcome, Outcome::Loop, "{}", report.render());
    assert_eq!(report.exit_code, 2);
    let l = report.loop_report.as_ref().unwrap();
    assert_eq!(l.url, "https://voice.example.com/webhook/incoming_call");
    assert_eq!(l.times, 3);
    assert_eq!(report.sim_duration_ms, 9000);
    assert!(report.streams.is_empty());
    assert!(report
        .problems
        .iter()
        .any(|p| p.message == "unreachable after <Record>: <Connect>"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.webhooks.len(), 3);
    assert_eq!(seen.ws_connects, 0);
}

#[tokio::test]
async fn an_http_error_is_refused() {
    let (_seen, addr) = serve("").await;
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &config(&addr)).await;
    assert_eq!(report.outcome, Outcome::Refused);
    assert_eq!(report.exit_code, 3);
    assert_eq!(report.fetches[0].status, Some(502));
    assert_eq!(report.problems[0].code, Some(11200));
}

#[tokio::test]
async fn an_unreachable_webhook_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &config(&addr)).await;
    assert_eq!(report.outcome, Outcome::Error);
    assert_eq!(report.exit_code, 1);
    assert_eq!(report.fetches[0].status, None);
}

#[tokio::test]
async fn load_runs_calls_concurrently_and_reports_percentiles() {
    let (seen, addr) = serve(FIXED).await;
    let client = twilio_sim::call::client().unwrap();
    let mut cfg = config(&addr);
    cfg.audio = Arc::new(vec![0x55; 1600]);
    cfg.speed = 50.0;
    cfg.dtmf.clear();
    cfg.linger = Duration::from_millis(200);
    let summary = twilio_sim::load::run_load(&client, &cfg, 6, 3).await;
    assert_eq!(summary.calls, 6);
    assert_eq!(summary.outcomes.get("stream_ran"), Some(&6));
    assert_eq!(summary.exit_code(), 0);
    assert_eq!(summary.frames_sent, 60);
    assert_eq!(summary.webhook_latency_ms.as_ref().unwrap().count, 6);
    assert_eq!(summary.all_requests_latency_ms.as_ref().unwrap().count, 12);
    assert_eq!(summary.time_to_stream_ms.as_ref().unwrap().count, 6);
    assert_eq!(seen.lock().unwrap().ws_connects, 6);
}

const FORKED: &str = r#"<Response><Start><Stream url="wss://voice.example.com/ws/twilio-media"><Parameter name="leg" value="fork"/></Stream></Start><Record action="recorded" timeout="2"/><Say>unreachable</Say></Response>"#;

#[tokio::test]
async fn start_stream_forks_and_record_action_is_requested() {
    let (seen, addr) = serve(FORKED).await;
    let client = twilio_sim::call::client().unwrap();
    let mut cfg = config(&addr);
    cfg.dtmf.clear();
    let report = twilio_sim::place_call(&client, &cfg).await;
    let text = report.render();
    assert_eq!(report.outcome, Outcome::StreamRan, "{text}");
    // The beep and two seconds of silence; the stream's time is not the document's.
    assert_eq!(report.sim_duration_ms, 2500);
    assert_eq!(report.fetches.len(), 2);
    assert_eq!(
        report.fetches[1].public_url,
        "https://voice.example.com/webhook/recorded"
    );
    assert_eq!(report.fetches[1].verbs, vec!["Hangup"]);
    let st = &report.streams[0];
    assert_eq!(st.kind, "<Start><Stream>");
    assert_eq!(st.frames_sent, 75);
    assert_eq!(
        st.custom_parameters,
        vec![("leg".to_string(), "fork".to_string())]
    );
    // A forked stream is inbound only: the server's audio and mark are protocol warnings.
    assert_eq!(st.outbound_messages, 0);
    assert!(st.marks_echoed.is_empty());
    assert!(st.warnings.iter().all(|w| w.starts_with("31951")), "{text}");
    assert_eq!(st.warnings.len(), 2, "{text}");
    assert!(report
        .problems
        .iter()
        .any(|p| p.message == "unreachable after <Record>: <Say>"));
    let seen = seen.lock().unwrap();
    let (_, form, _, _) = &seen.webhooks[1];
    assert!(form["RecordingSid"].starts_with("RE"));
    assert_eq!(form["RecordingDuration"], "0");
    let start = seen
        .ws_events
        .iter()
        .find(|e| e["event"] == "start")
        .unwrap();
    assert_eq!(start["start"]["tracks"], serde_json::json!(["inbound"]));
}
