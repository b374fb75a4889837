//! The service in process on a real socket: a real WebSocket client streams a generated call, the
//! WAV on disk is checked sample by sample, the webhook is replayed, the pipeline runs with the
//! test engines, and misbehaving sockets are closed with the right codes without disturbing
//! other calls.

use crate::common::*;
use crate::server::{metric, quick_config, EngineChoice, Server};
use host_service::config::AppKind;
use std::time::Duration;

#[tokio::test]
async fn a_streamed_call_is_recorded_sample_by_sample_and_processed_once() {
    let server = Server::start(quick_config()).await;
    let call = GeneratedCall::new(100, 30..45);
    let mut ws = connect(server.addr).await;
    send(&mut ws, connected()).await;
    send(&mut ws, start(CALL, STREAM)).await;
    // Frames out of order: swap each pair, and one frame arrives 1.5 s late.
    let mut order: Vec<usize> = (0..call.frames.len()).collect();
    for pair in order.chunks_mut(2) {
        pair.reverse();
    }
    let late = order.remove(3);
    order.push(late);
    for (seq, &k) in order.iter().enumerate() {
        let (ts, audio) = &call.frames[k];
        send(&mut ws, media(STREAM, seq + 2, *ts, audio)).await;
    }
    send(&mut ws, stop(CALL, STREAM)).await;
    let (code, texts) = read_until_close(&mut ws).await;
    assert_eq!(code, Some(1000));
    assert!(texts.is_empty(), "listen-only sends nothing: {texts:?}");

    // The webhook, twice (Twilio retries): same answer, one pipeline.
    for _ in 0..2 {
        let resp = server
            .http
            .post(server.url("/webhook/stream_ended"))
            .form(&stream_ended_form(CALL))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/xml");
        assert_eq!(
            resp.text().await.unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>"
        );
    }

    let detail = server.wait_status(CALL, "completed").await;
    let path = server
        .data
        .path()
        .join(format!("data/recordings/{CALL}.wav"));
    let (left, right) = read_stereo_wav(&path);
    let expected = call.expected_left();
    assert_eq!(left.len(), expected.len());
    for (i, (got, want)) in left.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "caller sample {i}");
    }
    assert!(right.iter().all(|&s| s == 0));
    // 30..45 is the gap: silence.
    assert!(left[30 * 160..45 * 160].iter().all(|&s| s == 0));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    assert_eq!(detail["from"], "+15550001111");
    assert_eq!(detail["to"], "+15550002222");
    assert_eq!(detail["recording"]["status"], "saved");
    assert_eq!(detail["recording"]["duration_ms"], 2000);
    assert_eq!(detail["streams"][0]["stream_sid"], STREAM);
    assert_eq!(detail["streams"][0]["frames_in"], 85);
    assert_eq!(detail["streams"][0]["close_reason"], "stopped");
    let text = format!(
        "16000 frames, caller {} non-silent, agent 0 non-silent",
        expected.iter().filter(|&&s| s != 0).count()
    );
    assert_eq!(detail["transcript"]["text"], text);
    assert_eq!(detail["summary"], format!("summary of: {text}"));
    assert_eq!(detail["fields"]["words"], 8);
    let stages: Vec<(String, String, i64)> = detail["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
                s["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("recording".into(), "done".into(), 1),
            ("transcribe".into(), "done".into(), 1),
            ("extract".into(), "done".into(), 1)
        ]
    );

    // The recording over the API is the file on disk.
    let wav = server
        .http
        .get(server.url(&format!("/api/calls/{CALL}/recording.wav")))
        .send()
        .await
        .unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    assert_eq!(wav.headers()["accept-ranges"], "bytes");
    let file = std::fs::read(&path).unwrap();
    assert_eq!(wav.bytes().await.unwrap().to_vec(), file);
    // A browser seeks with ranges: the bytes asked for, and 416 past the end.
    let part = server
        .http
        .get(server.url(&format!("/api/calls/{CALL}/recording.wav")))
        .header("range", "bytes=44-143")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 44-143/{}", file.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().to_vec(), file[44..144].to_vec());
    let past = server
        .http
        .get(server.url(&format!("/api/calls/{CALL}/recording.wav")))
        .header("range", format!("bytes={}-", file.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);

    let list: serde_json::Value = server
        .http
        .get(server.url("/api/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["calls"][0]["call_sid"], CALL);

    let m = server.metrics().await;
    assert_eq!(metric(&m, "host_frames_in_total "), Some(85.0));
    assert_eq!(metric(&m, "host_active_streams "), Some(0.0));
    assert_eq!(
        metric(
            &m,
            "host_webhooks_total{hook=\"stream_ended\",result=\"repeat\"} "
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "host_jobs{stage=\"extract\",state=\"done\"} "),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_own_socket() {
    let server = Server::start(quick_config()).await;
    // A healthy call runs alongside the bad sockets.
    let mut good = connect(server.addr).await;
    send(&mut good, start(CALL, STREAM)).await;
    send(&mut good, media(STREAM, 2, 0, &frame_audio(0))).await;

    // Binary frame: 1003.
    let mut ws = connect(server.addr).await;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap();
    assert_eq!(read_until_close(&mut ws).await.0, Some(1003));

    // Over 64 KiB: 1009.
    let mut ws = connect(server.addr).await;
    send(
        &mut ws,
        format!("{{\"event\":\"media\",\"x\":\"{}\"}}", "a".repeat(70_000)),
    )
    .await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1009));

    // Far over, past what the transport buffers (1 MiB): still 1009.
    let mut ws = connect(server.addr).await;
    send(&mut ws, "b".repeat(3 << 20)).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1009));

    // No start within the timeout: 1008.
    let mut ws = connect(server.addr).await;
    send(&mut ws, connected()).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1008));

    // A start with a CallSid that could steer a file name: refused, 1008.
    let mut ws = connect(server.addr).await;
    send(&mut ws, start("CA../../../../../../tmp/evil0000000", "MZ1")).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1008));

    // Garbage inside a good call is counted and skipped.
    send(&mut good, "{not json".into()).await;
    send(&mut good, r#"{"event":"hello"}"#.into()).await;
    send(&mut good, media("MZ9", 3, 20, &frame_audio(1))).await;
    send(&mut good, media(STREAM, 4, 20, &frame_audio(1))).await;
    send(&mut good, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut good).await.0, Some(1000));
    let path = server
        .data
        .path()
        .join(format!("data/recordings/{CALL}.wav"));
    let (left, _) = read_stereo_wav(&path);
    assert_eq!(left, GeneratedCall::new(2, 0..0).expected_left());

    let m = server.metrics().await;
    for (kind, n) in [
        ("binary_frame", 1.0),
        ("frame_too_big", 2.0),
        ("bad_call_sid", 1.0),
        ("invalid_json", 1.0),
        ("unknown_event", 1.0),
        ("wrong_stream_sid", 1.0),
    ] {
        assert_eq!(
            metric(&m, &format!("host_bad_messages_total{{kind=\"{kind}\"}} ")),
            Some(n),
            "{kind} in\n{m}"
        );
    }
    assert_eq!(
        metric(&m, "host_ws_closed_total{reason=\"start_timeout\"} "),
        Some(1.0)
    );
    let detail = server.call_json(CALL).await;
    assert_eq!(detail["streams"][0]["bad_messages"], 3);
    server.stop().await;
}

#[tokio::test]
async fn a_second_socket_for_the_same_call_is_recorded_too() {
    let server = Server::start(quick_config()).await;
    let second = "MZ1111111111111111111111111111111f";
    let mut a = connect(server.addr).await;
    let mut b = connect(server.addr).await;
    send(&mut a, start(CALL, STREAM)).await;
    // The first socket's start is in before the second's, so the file names are known.
    poll("first stream", Duration::from_secs(10), || async {
        let d = server.call_json(CALL).await;
        d["streams"].as_array().filter(|s| s.len() == 1).map(|_| ())
    })
    .await;
    send(&mut b, start(CALL, second)).await;
    for k in 0..10 {
        send(&mut a, media(STREAM, k + 2, k as u64 * 20, &frame_audio(k))).await;
    }
    for k in 0..5 {
        send(
            &mut b,
            media(second, k + 2, k as u64 * 20, &frame_audio(k + 50)),
        )
        .await;
    }
    send(&mut a, stop(CALL, STREAM)).await;
    send(&mut b, stop(CALL, second)).await;
    assert_eq!(read_until_close(&mut a).await.0, Some(1000));
    assert_eq!(read_until_close(&mut b).await.0, Some(1000));
    let dir = server.data.path().join("data/recordings");
    let (l0, _) = read_stereo_wav(&dir.join(format!("{CALL}.wav")));
    let (l1, _) = read_stereo_wav(&dir.join(format!("{CALL}.1.wav")));
    assert_eq!(l0.len(), 1600);
    assert_eq!(l1.len(), 800);
    assert_eq!(
        l1[..160],
        GeneratedCall::new(51, 0..50).expected_left()[50 * 160..]
    );
    let d = server.call_json(CALL).await;
    assert_eq!(d["streams"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_greeting_plays_with_marks_and_a_key_clears_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 s of a 440 Hz tone at 16 kHz, stereo: the app converts it.
    let wav = tmp.path().join("greeting.wav");
    let tone: Vec<f32> = (0..32000)
        .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin() * 0.5)
        .collect();
    std::fs::write(
        &wav,
        media::wav::encode_i16(&[tone.clone(), tone.clone()], 16000).unwrap(),
    )
    .unwrap();
    let pcm = media::wav::decode(&std::fs::read(&wav).unwrap()).unwrap();
    let expected = media::audio::to_mulaw_8k(&pcm.to_mono(), 16000);
    let mut config = quick_config();
    config.app.kind = AppKind::Greeting;
    config.app.greeting_wav = Some(wav);
    config.app.mark_every_ms = 500;
    let server = Server::start(config).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;

    // Collect what the app sends for a while, echoing marks as Twilio would.
    use futures_util::StreamExt;
    let mut audio = Vec::new();
    let mut marks = Vec::new();
    let started = tokio::time::Instant::now();
    while marks.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("app keeps sending")
            .unwrap()
            .unwrap();
        let text = msg.into_text().unwrap();
        match media::protocol::parse_server(&text).unwrap() {
            media::protocol::ServerMessage::Media { stream_sid, media } => {
                assert_eq!(stream_sid, STREAM);
                use base64::Engine as _;
                audio.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(media.payload)
                        .unwrap(),
                );
            }
            media::protocol::ServerMessage::Mark { mark: m, .. } => {
                send(&mut ws, mark(STREAM, &m.name)).await;
                marks.push(m.name);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Paced: two marks (1 s of audio) took real time, minus the 100 ms lead.
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(marks, ["greeting-1", "greeting-2"]);
    assert!(
        audio[..] == expected[..audio.len()],
        "the greeting as converted"
    );
    assert!(audio.len() >= 8000);

    send(&mut ws, dtmf(STREAM, "5")).await;
    send(&mut ws, stop(CALL, STREAM)).await;
    let (code, rest) = read_until_close(&mut ws).await;
    assert_eq!(code, Some(1000));
    assert!(
        rest.iter()
            .any(|t| t == &format!(r#"{{"event":"clear","streamSid":"{STREAM}"}}"#)),
        "{rest:?}"
    );
    // After the clear nothing more is sent.
    let clear_at = rest.iter().position(|t| t.contains("clear")).unwrap();
    assert_eq!(clear_at, rest.len() - 1);
    let m = server.metrics().await;
    assert!(metric(&m, "host_frames_out_total ").unwrap() >= 50.0);
    server.stop().await;
}

#[tokio::test]
async fn sigterm_style_shutdown_finalizes_open_recordings() {
    let server = Server::start(quick_config()).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    for k in 0..25 {
        send(
            &mut ws,
            media(STREAM, k + 2, k as u64 * 20, &frame_audio(k)),
        )
        .await;
    }
    poll("frames arrive", Duration::from_secs(10), || async {
        let m = server.metrics().await;
        (metric(&m, "host_frames_in_total ") == Some(25.0)).then_some(())
    })
    .await;
    let path = server
        .data
        .path()
        .join(format!("data/recordings/{CALL}.wav"));
    let stop = server.stop();
    let (data, (code, _)) = tokio::join!(stop, read_until_close(&mut ws));
    assert_eq!(code, Some(1001));
    assert!(path.starts_with(data.path()));
    let (left, _) = read_stereo_wav(&path);
    assert_eq!(left, GeneratedCall::new(25, 0..0).expected_left());
}

#[tokio::test]
async fn transcription_engine_none_skips_the_stages_and_says_so() {
    // The production engines, as configured: no transcriber, the local extractor.
    let mut config = quick_config();
    config.transcription.engine = postcall::TranscriptionEngine::Off;
    let server = Server::start_with(config, EngineChoice::FromConfig).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    send(&mut ws, media(STREAM, 2, 0, &frame_audio(0))).await;
    send(&mut ws, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1000));
    let resp = server
        .http
        .post(server.url("/webhook/stream_ended"))
        .form(&stream_ended_form(CALL))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let d = server.wait_status(CALL, "completed").await;
    assert_eq!(
        d["transcription_status"],
        "skipped: transcription engine is none"
    );
    assert_eq!(d["transcript"], serde_json::Value::Null);
    assert_eq!(d["extraction_engine"], "skipped: no transcript");
    assert_eq!(d["recording"]["duration_ms"], 20);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_socket_is_closed_and_its_recording_finalized() {
    let mut config = quick_config();
    config.websocket.idle_timeout_ms = 300;
    let server = Server::start(config).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    send(&mut ws, media(STREAM, 2, 0, &frame_audio(0))).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1008));
    let d = poll("stream closed", Duration::from_secs(10), || async {
        let d = server.call_json(CALL).await;
        (d["streams"][0]["close_reason"] == "idle_timeout").then_some(d)
    })
    .await;
    assert_eq!(d["streams"][0]["status"], "saved");
    let (left, _) = read_stereo_wav(
        &server
            .data
            .path()
            .join(format!("data/recordings/{CALL}.wav")),
    );
    assert_eq!(left, GeneratedCall::new(1, 0..0).expected_left());
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "host_ws_closed_total{reason=\"idle_timeout\"} "),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_frame_stamped_far_in_the_future_is_refused_and_never_written() {
    let server = Server::start(quick_config()).await;
    let mut ws = connect(server.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    send(&mut ws, media(STREAM, 2, 0, &frame_audio(0))).await;
    // Four hours minus 100 ms: before the limit, 14,399,900 ms of silence (460 MB) were written.
    send(&mut ws, media(STREAM, 3, 14_399_900, &frame_audio(1))).await;
    send(&mut ws, media(STREAM, 4, 20, &frame_audio(1))).await;
    send(&mut ws, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1000));
    let path = server
        .data
        .path()
        .join(format!("data/recordings/{CALL}.wav"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 320 * 4);
    let (left, _) = read_stereo_wav(&path);
    assert_eq!(left, GeneratedCall::new(2, 0..0).expected_left());
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "host_bad_messages_total{kind=\"timestamp_too_far\"} "),
        Some(1.0)
    );
    let d = server.call_json(CALL).await;
    assert_eq!(d["streams"][0]["bad_messages"], 1);
    assert_eq!(d["streams"][0]["frames_in"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_reused_stream_sid_is_refused_and_the_first_recording_kept() {
    let server = Server::start(quick_config()).await;
    let intruder_call = "CAffffffffffffffffffffffffffffffff";
    let mut victim = connect(server.addr).await;
    send(&mut victim, start(CALL, STREAM)).await;
    for k in 0..5 {
        send(
            &mut victim,
            media(STREAM, k + 2, k as u64 * 20, &frame_audio(k)),
        )
        .await;
    }
    poll("victim's stream", Duration::from_secs(10), || async {
        let d = server.call_json(CALL).await;
        d["streams"].as_array().filter(|s| s.len() == 1).map(|_| ())
    })
    .await;
    for call in [intruder_call, CALL] {
        let mut intruder = connect(server.addr).await;
        send(&mut intruder, start(call, STREAM)).await;
        send(&mut intruder, media(STREAM, 2, 0, &frame_audio(40))).await;
        assert_eq!(read_until_close(&mut intruder).await.0, Some(1008));
    }
    send(&mut victim, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut victim).await.0, Some(1000));
    let (left, _) = read_stereo_wav(
        &server
            .data
            .path()
            .join(format!("data/recordings/{CALL}.wav")),
    );
    assert_eq!(left, GeneratedCall::new(5, 0..0).expected_left());
    let d = server.call_json(CALL).await;
    let streams = d["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["close_reason"], "stopped");
    assert_eq!(streams[0]["frames_in"], 5);
    let none = server
        .http
        .get(server.url(&format!("/api/calls/{intruder_call}")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "host_bad_messages_total{kind=\"duplicate_stream_sid\"} "
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "host_ws_closed_total{reason=\"duplicate_stream_sid\"} "),
        Some(2.0)
    );
    server.stop().await;
}
