//! The OpenAI-compatible engines against a local stand-in for the API (no remote service is
//! reachable from tests). The stand-in checks every request the way the real API would (bearer
//! key, multipart fields, JSON schema request) and answers with the API's shapes, including
//! 429 with `Retry-After`.

use crate::common;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{phone_speech, silence, write_wav};
use postcall::openai::OpenAiTranscriber;
use postcall::{
    EngineError, ExtractRequest, Extractor, OpenAiConfig, OpenAiExtractionConfig,
    OpenAiTranscriptionConfig, TranscribeRequest, Transcriber, Transcript,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY_ENV: &str = "TWIML_GUARD_TEST_OPENAI_KEY";
const KEY: &str = "sk-test-0123456789";

/// One planned answer: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, &'static str)>, Value);

/// One multipart field: name, file name, content type, bytes.
type Field = (String, Option<String>, Option<String>, Vec<u8>);

/// What the stand-in saw in one request.
#[derive(Debug, Clone)]
struct Seen {
    auth: Option<String>,
    fields: Vec<Field>,
    json: Option<Value>,
}

#[derive(Default)]
struct Api {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

impl Api {
    fn answer(&self) -> Response {
        let (status, headers, body) = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("more requests than planned answers");
        let mut resp = (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
        for (k, v) in headers {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        resp
    }
}

async fn transcriptions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut fields = Vec::new();
    while let Some(field) = form.next_field().await.expect("well-formed multipart") {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let bytes = field.bytes().await.expect("field body").to_vec();
        fields.push((name, file_name, content_type, bytes));
    }
    api.seen.lock().unwrap().push(Seen {
        auth: auth(&headers),
        fields,
        json: None,
    });
    api.answer()
}

async fn chat(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    api.seen.lock().unwrap().push(Seen {
        auth: auth(&headers),
        fields: Vec::new(),
        json: Some(body),
    });
    api.answer()
}

fn auth(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Start the stand-in with planned answers; returns its base URL.
async fn serve(replies: Vec<Reply>) -> (String, Arc<Api>) {
    let api = Arc::new(Api {
        replies: Mutex::new(replies.into()),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/chat/completions", post(chat))
        // OpenAI takes uploads of up to 25 MB.
        .layer(axum::extract::DefaultBodyLimit::max(25 * 1024 * 1024))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    std::env::set_var(KEY_ENV, KEY);
    (format!("http://{addr}"), api)
}

/// The `[openai]` client of the stand-in at `base_url`.
fn client_cfg(base_url: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: base_url.into(),
        api_key_env: KEY_ENV.into(),
        timeout_secs: 10,
        max_retries: 2,
        max_retry_after_secs: 5,
    }
}

fn transcriber(client: &OpenAiConfig) -> Result<OpenAiTranscriber, EngineError> {
    OpenAiTranscriber::new(
        client,
        &OpenAiTranscriptionConfig {
            model: "whisper-large-v3".into(),
            language: Some("en".into()),
        },
    )
}

fn verbose(text: &str, segments: Value) -> Value {
    json!({"task": "transcribe", "language": "english", "duration": 3.0, "text": text, "segments": segments})
}

fn field<'a>(seen: &'a Seen, name: &str) -> &'a Field {
    seen.fields.iter().find(|f| f.0 == name).unwrap_or_else(|| {
        panic!(
            "no multipart field {name}: {:?}",
            seen.fields.iter().map(|f| &f.0).collect::<Vec<_>>()
        )
    })
}

fn text_field(seen: &Seen, name: &str) -> String {
    String::from_utf8(field(seen, name).3.clone()).unwrap()
}

#[tokio::test]
async fn transcription_retries_429_after_retry_after_then_succeeds() {
    let (url, api) = serve(vec![
        (
            429,
            vec![("retry-after", "1")],
            json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        ),
        (
            200,
            vec![],
            verbose(
                " Hello there.",
                json!([{"id": 0, "start": 0.2, "end": 1.4, "text": " Hello there."}]),
            ),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut audio = silence(0.3);
    audio.extend(phone_speech("Hello there."));
    let path = write_wav(dir.path(), "call.wav", &[audio]);
    let sent = std::fs::read(&path).unwrap();

    let engine = transcriber(&client_cfg(&url)).unwrap();
    let started = Instant::now();
    let t = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA1".into(),
            recording: path,
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After not honoured"
    );
    assert_eq!(
        t,
        Transcript {
            text: "Hello there.".into(),
            segments: vec![postcall::Segment {
                speaker: "caller".into(),
                start: 0.2,
                end: 1.4,
                text: "Hello there.".into()
            }],
            engine: "openai".into(),
            model: "whisper-large-v3".into(),
        }
    );
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.auth.as_deref(), Some(&*format!("Bearer {KEY}")));
        let file = field(s, "file");
        assert_eq!(file.1.as_deref(), Some("recording.wav"));
        assert_eq!(file.2.as_deref(), Some("audio/wav"));
        assert_eq!(file.3, sent, "the recording is uploaded as it is");
        assert_eq!(text_field(s, "model"), "whisper-large-v3");
        assert_eq!(text_field(s, "response_format"), "verbose_json");
        assert_eq!(text_field(s, "timestamp_granularities[]"), "segment");
        assert_eq!(text_field(s, "language"), "en");
    }
}

#[tokio::test]
async fn two_channels_are_sent_separately_and_labelled() {
    let (url, api) = serve(vec![
        (
            200,
            vec![],
            verbose(
                "I want a refund.",
                json!([{"start": 2.0, "end": 3.5, "text": " I want a refund."}]),
            ),
        ),
        (
            200,
            vec![],
            verbose(
                "How can I help?",
                json!([{"start": 0.1, "end": 1.2, "text": " How can I help?"}]),
            ),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let speech = phone_speech("hello");
    let mut left = silence(4.0);
    left[16_000..16_000 + speech.len()].copy_from_slice(&speech);
    let mut right = silence(4.0);
    right[800..800 + speech.len()].copy_from_slice(&speech);
    let path = write_wav(dir.path(), "stereo.wav", &[left, right]);
    let engine = transcriber(&client_cfg(&url)).unwrap();
    let t = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA2".into(),
            recording: path,
        })
        .await
        .unwrap();
    let got: Vec<(&str, f64, &str)> = t
        .segments
        .iter()
        .map(|s| (s.speaker.as_str(), s.start, s.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("agent", 0.1, "How can I help?"),
            ("caller", 2.0, "I want a refund.")
        ]
    );
    assert_eq!(t.text, "agent: How can I help?\ncaller: I want a refund.");
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let pcm = media::wav::decode(&field(s, "file").3).expect("uploaded WAV");
        assert_eq!(pcm.channels.len(), 1, "each upload is one speaker");
        assert_eq!(pcm.sample_rate, 8000);
        assert_eq!(pcm.frames(), 32_000);
    }
}

#[tokio::test]
async fn a_long_two_channel_call_is_streamed_one_exact_channel_per_upload() {
    let answer = || {
        (
            200,
            vec![],
            verbose(
                "Hello.",
                json!([{"start": 1.0, "end": 2.0, "text": " Hello."}]),
            ),
        )
    };
    let (url, api) = serve(vec![answer(), answer()]).await;
    let dir = tempfile::tempdir().unwrap();
    // Three minutes (176 read blocks), speech on each side: every sample must arrive exactly,
    // on its own channel.
    let speech = phone_speech("hello there");
    let mut left = silence(180.0);
    let mut right = silence(180.0);
    let at = |secs: usize| secs * common::RATE as usize;
    left[at(100)..at(100) + speech.len()].copy_from_slice(&speech);
    right[at(3)..at(3) + speech.len()].copy_from_slice(&speech);
    for (i, s) in right.iter_mut().enumerate().skip(at(150)).take(at(1)) {
        *s = (i % 200) as f32 / 400.0 - 0.25;
    }
    let path = write_wav(dir.path(), "long.wav", &[left, right]);
    let recorded = media::wav::decode(&std::fs::read(&path).unwrap()).unwrap();
    // The whole-request timeout covers the upload; a loaded machine must not fail the test.
    let mut cfg = client_cfg(&url);
    cfg.timeout_secs = 120;
    let engine = transcriber(&cfg).unwrap();
    let t = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA7".into(),
            recording: path,
        })
        .await
        .unwrap();
    let speakers: Vec<&str> = t.segments.iter().map(|s| s.speaker.as_str()).collect();
    assert_eq!(speakers, ["caller", "agent"]);
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (s, channel) in seen.iter().zip(&recorded.channels) {
        let file = &field(s, "file").3;
        assert_eq!(file.len(), 44 + 2 * at(180));
        let pcm = media::wav::decode(file).expect("uploaded WAV");
        assert_eq!(pcm.sample_rate, 8000);
        assert_eq!(pcm.channels.len(), 1);
        assert!(pcm.channels[0] == *channel, "the upload is not the channel");
    }
}

#[tokio::test]
async fn client_errors_are_permanent_and_not_retried() {
    let (url, api) = serve(vec![(
        401,
        vec![],
        json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_wav(dir.path(), "c.wav", &[phone_speech("hi there")]);
    let engine = transcriber(&client_cfg(&url)).unwrap();
    let err = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA3".into(),
            recording: path,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::Permanent(format!(
            "POST {url}/v1/audio/transcriptions answered 401: Incorrect API key provided"
        ))
    );
    assert_eq!(api.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_within_bounds_then_transient() {
    let busy = || (503, vec![], json!({"error": {"message": "overloaded"}}));
    let (url, api) = serve(vec![busy(), busy(), busy()]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_wav(dir.path(), "c.wav", &[phone_speech("hi there")]);
    let mut cfg = client_cfg(&url);
    cfg.max_retries = 2;
    let engine = transcriber(&cfg).unwrap();
    let err = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA4".into(),
            recording: path.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::Transient(format!(
            "POST {url}/v1/audio/transcriptions answered 503: overloaded (gave up after 3 attempts)"
        ))
    );
    assert_eq!(api.seen.lock().unwrap().len(), 3);

    // A wait longer than allowed is not slept through: the pipeline retries later instead.
    let (url, api) = serve(vec![(429, vec![("retry-after", "600")], json!({}))]).await;
    let engine = transcriber(&client_cfg(&url)).unwrap();
    let err = engine
        .transcribe(&TranscribeRequest {
            call_sid: "CA5".into(),
            recording: path,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Transient(m) if m.ends_with("(server asked to wait 600 s, more than the 5 s allowed)")),
        "{err}"
    );
    assert_eq!(api.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // Bind then drop: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var(KEY_ENV, KEY);
    let mut cfg = client_cfg(&format!("http://127.0.0.1:{port}"));
    cfg.max_retries = 0;
    let dir = tempfile::tempdir().unwrap();
    let path = write_wav(dir.path(), "c.wav", &[phone_speech("hi")]);
    let err = transcriber(&cfg)
        .unwrap()
        .transcribe(&TranscribeRequest {
            call_sid: "CA6".into(),
            recording: path,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Transient(_)), "{err}");
}

fn call_transcript() -> Transcript {
    let seg = |speaker: &str, start: f64, text: &str| postcall::Segment {
        speaker: speaker.into(),
        start,
        end: start + 2.0,
        text: text.into(),
    };
    Transcript {
        text: String::new(),
        segments: vec![
            seg("agent", 0.0, "Acme plumbing, how can I help?"),
            seg(
                "caller",
                2.5,
                "My sink is leaking. Call me back at 555-234-5678 tomorrow at nine.",
            ),
        ],
        engine: "whisper".into(),
        model: "whisper-tiny.en".into(),
    }
}

#[tokio::test]
async fn extraction_sends_a_json_schema_request_and_retries_429() {
    let fields = json!({
        "summary": "Leaking sink; wants a callback tomorrow at 9.",
        "summary_segments": [1],
        "intent": "plumbing repair",
        "sentiment": "negative",
        "phone_numbers": [{"value": "+15552345678", "text": "555-234-5678", "segment": 1}],
        "emails": [],
        "datetimes": [{"value": "2026-11-20T09:00:00-05:00", "text": "tomorrow at nine", "segment": 1}],
        "callback": {"requested": true, "segment": 1, "at": "2026-11-20T09:00:00-05:00"},
    });
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": fields.to_string(), "refusal": null}}],
    });
    let (url, api) = serve(vec![
        (
            429,
            vec![("retry-after", "1")],
            json!({"error": {"message": "slow down"}}),
        ),
        (200, vec![], completion),
    ])
    .await;
    let engine = postcall::openai::OpenAiExtractor::new(
        &client_cfg(&url),
        &OpenAiExtractionConfig {
            model: "gpt-4o-mini".into(),
            timezone: "America/New_York".into(),
        },
    )
    .unwrap();
    let started = Instant::now();
    let e = engine
        .extract(&ExtractRequest {
            call_sid: "CA7".into(),
            transcript: call_transcript(),
            call_started_at_ms: 1_795_116_600_000, // 2026-11-19T19:30:00Z
        })
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(e.summary, "Leaking sink; wants a callback tomorrow at 9.");
    assert_eq!(e.engine, "openai");
    assert_eq!(e.fields["intent"], "plumbing repair");
    assert_eq!(e.fields["phone_numbers"][0]["value"], "+15552345678");

    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let body = seen[1].json.as_ref().unwrap();
    assert_eq!(seen[1].auth.as_deref(), Some(&*format!("Bearer {KEY}")));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        postcall::openai::schema()
    );
    assert_eq!(body["messages"][0]["role"], "system");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("The call started at 2026-11-19T14:30:00-05:00 (Thursday)."),
        "{user}"
    );
    assert!(
        user.contains("[1] caller 2.5-4.5: My sink is leaking."),
        "{user}"
    );
}

#[tokio::test]
async fn extraction_answers_that_break_the_schema_are_refused() {
    let bad = json!({"choices": [{"message": {"content": "{\"summary\": \"x\"}"}}]});
    let (url, _api) = serve(vec![(200, vec![], bad)]).await;
    let engine = postcall::openai::OpenAiExtractor::new(
        &OpenAiConfig {
            base_url: url,
            api_key_env: KEY_ENV.into(),
            ..Default::default()
        },
        &OpenAiExtractionConfig::default(),
    )
    .unwrap();
    let err = engine
        .extract(&ExtractRequest {
            call_sid: "CA8".into(),
            transcript: call_transcript(),
            call_started_at_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::Transient("extraction answer: no phone_numbers list".into())
    );
}
