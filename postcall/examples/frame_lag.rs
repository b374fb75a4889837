//! Benchmark (not a test): does a Whisper transcription starve media frames? Simulated calls
//! send Twilio `media` messages (20 ms of mu-law each, JSON, one per line) over loopback TCP
//! on a tokio runtime shaped like the host service's (a worker per CPU); the receiving side
//! parses each message and decodes its audio as the host does. Frame lag is when a frame was
//! handled minus when it was due. Measured first on its own, then while the engine transcribes
//! on tokio's blocking pool (as the pipeline does), and printed as one line of JSON per phase.
//! `OMP_WAIT_POLICY` is read by the OpenMP runtime at startup: set it in the environment.
//!
//! Usage: frame_lag [--model DIR] [--threads N] [--calls N] [--seconds S]

use media::audio::{mulaw_to_f32, to_mulaw_8k};
use media::protocol::{parse_twilio, TwilioMessage};
use media::wav::encode_i16;
use postcall::whisper::WhisperEngine;
use postcall::WhisperConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const FRAME: Duration = Duration::from_millis(20);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn media_line(seq: usize, mulaw: &[u8]) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(mulaw);
    format!(
        "{{\"event\":\"media\",\"sequenceNumber\":\"{seq}\",\"streamSid\":\"MZ00000000000000000000000000000001\",\
         \"media\":{{\"track\":\"inbound\",\"chunk\":\"{seq}\",\"timestamp\":\"{}\",\"payload\":\"{payload}\"}}}}\n",
        seq * 20
    )
}

/// One call for `frames` frames: the sender keeps a 20 ms schedule, the receiver handles each
/// frame; the lag of every frame (microseconds) is returned.
async fn call(frames: usize) -> Vec<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let tone: Vec<f32> = (0..160).map(|n| (n as f32 * 0.3).sin() * 0.2).collect();
        let mulaw = to_mulaw_8k(&tone, 8000);
        for i in 0..frames {
            tokio::time::sleep_until((started + FRAME * i as u32).into()).await;
            s.write_all(media_line(i, &mulaw).as_bytes())
                .await
                .expect("send");
        }
    });
    let (sock, _) = listener.accept().await.expect("accept");
    let mut lines = BufReader::new(sock).lines();
    let mut lags = Vec::with_capacity(frames);
    let mut i = 0;
    while let Some(line) = lines.next_line().await.expect("read") {
        let TwilioMessage::Media(m) = parse_twilio(&line).expect("parse") else {
            panic!("not a media message: {line}");
        };
        let samples = mulaw_to_f32(&m.media.audio().expect("payload"));
        assert_eq!(samples.len(), 160);
        let due = started + FRAME * i as u32;
        lags.push(due.elapsed().as_micros() as u64);
        i += 1;
    }
    sender.await.expect("sender");
    lags
}

fn summary(phase: &str, mut lags: Vec<u64>, extra: serde_json::Value) {
    lags.sort_unstable();
    let q = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)] as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "phase": phase, "frames": lags.len(), "lag_ms_p50": q(0.5), "lag_ms_p99": q(0.99),
            "lag_ms_max": q(1.0), "over_20ms": lags.iter().filter(|&&l| l > 20_000).count(),
            "extra": extra,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model =
        PathBuf::from(arg(&args, "--model").unwrap_or_else(|| "models/whisper-tiny.en".into()));
    let threads: usize = arg(&args, "--threads").map_or(0, |v| v.parse().expect("--threads"));
    let calls: usize = arg(&args, "--calls").map_or(20, |v| v.parse().expect("--calls"));
    let seconds: f64 = arg(&args, "--seconds").map_or(10.0, |v| v.parse().expect("--seconds"));
    let frames = (seconds / FRAME.as_secs_f64()) as usize;

    let engine = WhisperEngine::load(&WhisperConfig {
        model_dir: model,
        threads,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // About 20 s of speech: espeak-ng sentences through 8 kHz mu-law, with short pauses.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut audio = Vec::new();
    for line in [
        "Hello, I would like to make an appointment for tomorrow morning.",
        "My car makes a strange noise when I start the engine.",
        "Could someone call me back before noon please?",
        "I will also send the details by email this afternoon.",
    ] {
        let path = dir.path().join("line.wav");
        test_support::speak(line, &path).unwrap_or_else(|e| panic!("{e}"));
        let pcm = media::wav::decode(&std::fs::read(&path).expect("read")).expect("wav");
        audio.extend(to_mulaw_8k(&pcm.to_mono(), pcm.sample_rate));
        audio.extend(vec![0xFFu8; 8000]);
    }
    let audio_s = audio.len() as f64 / 8000.0;
    let audio = mulaw_to_f32(&audio);
    let wav = encode_i16(&[audio], 8000).expect("wav");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let run_calls = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let tasks: Vec<_> = (0..calls).map(|_| tokio::spawn(call(frames))).collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("call"));
            }
            all
        })
    };
    let omp = std::env::var("OMP_WAIT_POLICY").unwrap_or_default();
    summary(
        "idle",
        run_calls(&rt),
        serde_json::json!({"calls": calls, "threads": threads, "omp_wait_policy": omp}),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (stop, done, engine) = (stop.clone(), done.clone(), engine.clone());
        rt.spawn_blocking(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                engine.transcribe_wav(&wav).expect("transcribe");
                done.fetch_add(1, Ordering::Relaxed);
            }
            started.elapsed().as_secs_f64()
        })
    };
    // Let the first window start before the calls do.
    std::thread::sleep(Duration::from_millis(300));
    let lags = run_calls(&rt);
    stop.store(true, Ordering::Relaxed);
    let busy_s = rt.block_on(busy).expect("transcriber");
    let n = done.load(Ordering::Relaxed);
    summary(
        "transcribing",
        lags,
        serde_json::json!({"calls": calls, "threads": threads, "omp_wait_policy": omp,
            "transcriptions": n, "rtf": busy_s / (n.max(1) as f64 * audio_s)}),
    );
}
