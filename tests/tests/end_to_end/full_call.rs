//! The whole call, end to end: Envoy with the filter in front of the legacy backend (the seed's
//! bug) and the host service, `twilio-sim` placing calls with espeak-ng speech. Rewrite mode
//! fixes the call (stream, recording, transcript, summary); monitor mode shows the `<Record>`
//! loop that the filter is there to prevent; strict mode refuses the legacy TwiML.

use e2e::stack::{speak, Stack, AUTH_TOKEN, PUBLIC_HOST};
use postcall::wer::wer as word_error_rate;
use std::sync::Arc;
use std::time::Duration;
use twilio_sim::report::Outcome;
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

/// What the caller says.
const SPEECH: &str = "Hello, I would like to book an appointment for tomorrow morning. \
                      My name is John Smith. Please call me back.";

/// tiny.en on espeak-ng speech through 8 kHz mu-law: measured 0.10 on this sentence ("book"
/// heard as "welcome", "John" as "Dan");
/// a wrong or missing transcript scores near 1.0.
const MAX_WER: f64 = 0.35;

/// How long the post-call pipeline (Whisper on a loaded 2-core machine) may take.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(180);

fn call_config(stack: &Stack, audio: Vec<u8>) -> CallConfig {
    let mut cfg = CallConfig::new(stack.public_webhook());
    cfg.map = UrlMap::local(&stack.envoy.listener.to_string()).unwrap();
    cfg.auth_token = Some(AUTH_TOKEN.into());
    cfg.audio = Arc::new(audio);
    // Recordings place audio by timestamp, so pacing faster than real time changes nothing
    // the test checks.
    cfg.speed = 8.0;
    cfg.linger = Duration::from_millis(500);
    cfg
}

fn caller_audio(stack: &Stack) -> Vec<u8> {
    let wav = stack.dir.path().join("caller.wav");
    speak(SPEECH, &wav).unwrap();
    twilio_sim::load_audio(&wav).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_mode_the_call_streams_records_and_is_transcribed() {
    let stack = Stack::start(None).await.unwrap();
    let audio = caller_audio(&stack);
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &call_config(&stack, audio.clone())).await;
    let text = report.render();
    assert_eq!(report.outcome, Outcome::StreamRan, "{text}");
    assert_eq!(report.exit_code, 0);

    // The backend still writes the broken TwiML; what reached the simulator had no <Record>.
    let before = stack.backend_twiml(&report.call_sid).await.unwrap();
    assert!(before.contains("<Record "), "{before}");
    let voice = &report.fetches[0];
    assert_eq!(voice.status, Some(200), "{text}");
    assert_eq!(
        voice.guard.as_deref(),
        Some("rewritten; blocks=Connect/Stream"),
        "{text}"
    );
    assert!(!voice.body.contains("<Record"), "{}", voice.body);
    assert_eq!(voice.verbs, vec!["Connect"]);
    assert!(voice.body.contains(&format!(
        "<Stream track=\"inbound_track\" url=\"wss://{PUBLIC_HOST}/ws/twilio-media\">"
    )));

    // The stream ran through Envoy to the host service with the caller's whole audio.
    let frames = audio.len().div_ceil(160) as u64;
    assert_eq!(report.streams.len(), 1);
    let st = &report.streams[0];
    assert!(st.opened && st.error.is_none(), "{text}");
    assert_eq!(st.frames_sent, frames);
    assert_eq!(st.bytes_sent, audio.len() as u64);
    assert!(st.warnings.is_empty(), "{text}");
    assert!(report.problems.is_empty(), "{text}");

    // <Connect action> went through Envoy to the host service, which hung up cleanly.
    assert_eq!(report.fetches.len(), 2, "{text}");
    let ended = &report.fetches[1];
    assert_eq!(
        ended.public_url,
        format!("https://{PUBLIC_HOST}/webhook/stream_ended")
    );
    assert_eq!(ended.status, Some(200), "{text}");
    assert_eq!(ended.verbs, vec!["Hangup"]);

    stack
        .envoy
        .wait_counter("twiml_guard_responses_total{outcome=\"rewritten\"}", 1)
        .await
        .unwrap();

    // The recording is as long as the audio sent, and the transcript matches what was said.
    let call = stack
        .host
        .finished_call(&report.call_sid, PIPELINE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", stack.host.log_text()));
    assert_eq!(call["status"], "completed", "{call:#}");
    assert_eq!(call["recording"]["status"], "saved", "{call:#}");
    let duration = call["recording"]["duration_ms"].as_i64().unwrap();
    let expected = (audio.len() as i64) / 8;
    assert!(
        (duration - expected).abs() <= 20,
        "recording {duration} ms, audio {expected} ms"
    );
    let transcript = call["transcript"]["text"].as_str().unwrap_or_default();
    let wer = word_error_rate(SPEECH, transcript);
    assert!(
        wer <= MAX_WER,
        "WER {wer:.2} > {MAX_WER}: said {SPEECH:?}, transcribed {transcript:?}"
    );
    let summary = call["summary"].as_str().unwrap_or_default();
    assert!(!summary.trim().is_empty(), "{call:#}");
    assert!(summary.to_lowercase().contains("appointment"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_the_legacy_twiml_loops_and_no_stream_opens() {
    let stack = Stack::start(Some(r#"{"mode": "monitor"}"#)).await.unwrap();
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &call_config(&stack, vec![0xFF; 1600])).await;
    let text = report.render();
    assert_eq!(report.outcome, Outcome::Loop, "{text}");
    assert_eq!(report.exit_code, 2);
    let l = report.loop_report.as_ref().unwrap();
    assert_eq!(l.url, stack.public_webhook());
    assert_eq!(l.times, 3);
    assert_eq!(
        l.record,
        r#"<Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false"/>"#
    );
    assert_eq!(report.fetches.len(), 3);
    for f in &report.fetches {
        assert_eq!(
            f.guard.as_deref(),
            Some("detected; blocks=Connect/Stream"),
            "{text}"
        );
        assert!(f.body.contains("<Record "));
    }
    assert!(report.streams.is_empty(), "{text}");
    assert!(report
        .problems
        .iter()
        .any(|p| p.message == "unreachable after <Record>: <Connect>"));
    stack
        .envoy
        .wait_counter("twiml_guard_responses_total{outcome=\"detected\"}", 3)
        .await
        .unwrap();
    assert_eq!(
        stack
            .envoy
            .counter("twiml_guard_ws_upgrades_total")
            .await
            .unwrap_or(0),
        0
    );
    // The host service never heard of the call.
    assert_eq!(stack.host.call(&report.call_sid).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_the_legacy_twiml_is_refused() {
    let stack = Stack::start(Some(r#"{"mode": "strict", "reject_status": 502}"#))
        .await
        .unwrap();
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &call_config(&stack, vec![0xFF; 1600])).await;
    let text = report.render();
    assert_eq!(report.outcome, Outcome::Refused, "{text}");
    assert_eq!(report.exit_code, 3);
    assert_eq!(report.fetches.len(), 1);
    let f = &report.fetches[0];
    assert_eq!(f.status, Some(502));
    assert_eq!(f.guard.as_deref(), Some("rejected; blocks=Connect/Stream"));
    let v: serde_json::Value = serde_json::from_str(&f.body).unwrap();
    assert_eq!(v["error"], "twiml_conflict");
    assert_eq!(report.problems[0].code, Some(11200));
    assert!(report.streams.is_empty());
    stack
        .envoy
        .wait_counter("twiml_guard_responses_total{outcome=\"rejected\"}", 1)
        .await
        .unwrap();
    assert_eq!(stack.host.call(&report.call_sid).await.unwrap(), None);
}
