//! `stream_ended` to transcript: one call of held-out human speech through the whole stack (Envoy
//! with the guard, the host with its default Whisper engine), timed by the host's own rows (the
//! call's `ended_at_ms`, stamped when the `stream_ended` webhook arrives, to its transcribe
//! stage's `finished_at_ms`), against faster-whisper's own time on the same recording's caller
//! channel, in the same run (`bench/faster_whisper_rtf.py`, as `make bench-whisper` runs it).

use e2e::repo_root;
use e2e::stack::{Stack, AUTH_TOKEN};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twilio_sim::report::Outcome;
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

/// The held-out recording (postcall/tests/data/README.md).
const AUDIO: &str = "postcall/tests/data/jfk-8k-mulaw.wav";
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Latency {
    pub audio_s: f64,
    /// `stream_ended` arriving to the transcript stored.
    pub ended_to_transcript_ms: i64,
    /// The transcribe stage alone (the engine, its file read and the stage's bookkeeping).
    pub transcribe_stage_ms: i64,
    /// faster-whisper's runs on the same audio, after a warm-up.
    pub faster_whisper_s: Vec<f64>,
    pub transcript: String,
}

impl Latency {
    pub fn faster_whisper_median_s(&self) -> f64 {
        let mut runs = self.faster_whisper_s.clone();
        runs.sort_by(f64::total_cmp);
        runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
    }

    pub fn markdown(&self) -> String {
        let fw = self.faster_whisper_median_s();
        format!(
            "`stream_ended` to transcript, one call of {:.1} s of held-out speech ({AUDIO}) \
             through Envoy to the host with its default Whisper engine: {} ms (the transcribe \
             stage {} ms); faster-whisper on the same recording's caller channel, median of {} \
             runs after a warm-up: {:.0} ms; ratio {:.2}x. Transcript: {:?}.\n",
            self.audio_s,
            self.ended_to_transcript_ms,
            self.transcribe_stage_ms,
            self.faster_whisper_s.len(),
            fw * 1000.0,
            self.ended_to_transcript_ms as f64 / 1000.0 / fw,
            self.transcript
        )
    }
}

fn ms_of(v: &Value, what: &str) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("the call has no {what}"))
}

pub async fn measure() -> Result<Latency, String> {
    let stack = Stack::start(None).await.map_err(|e| e.to_string())?;
    let audio = twilio_sim::load_audio(&repo_root().join(AUDIO)).map_err(|e| e.to_string())?;
    let mut cfg = CallConfig::new(stack.public_webhook());
    cfg.map = UrlMap::local(&stack.envoy.listener.to_string()).map_err(|e| e.to_string())?;
    cfg.auth_token = Some(AUTH_TOKEN.into());
    cfg.audio = Arc::new(audio.clone());
    // Paced faster than real time (the recording places audio by timestamp): what is measured
    // starts when the stream has ended.
    cfg.speed = 8.0;
    let client = twilio_sim::call::client().map_err(|e| e.to_string())?;
    // The first call warms the engine up (faster-whisper gets a warm-up run too); the second is
    // measured.
    let mut finished = None;
    for _ in 0..2 {
        let report = twilio_sim::place_call(&client, &cfg).await;
        if report.outcome != Outcome::StreamRan {
            return Err(format!("the call did not stream: {}", report.render()));
        }
        let call = stack
            .host
            .finished_call(&report.call_sid, PIPELINE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        finished = Some((report.call_sid, call));
    }
    let (call_sid, call) = finished.ok_or("no call")?;
    let transcribe = call["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == "transcribe"))
        .ok_or("the call has no transcribe stage")?;
    let ended = ms_of(&call["ended_at_ms"], "ended_at_ms")?;
    let transcribed = ms_of(&transcribe["finished_at_ms"], "transcript time")?;
    let recording = stack
        .host
        .data_dir
        .join("recordings")
        .join(format!("{call_sid}.wav"));
    let caller = stack.dir.path().join("caller.wav");
    caller_channel(&recording, &caller)?;
    Ok(Latency {
        audio_s: audio.len() as f64 / 8000.0,
        ended_to_transcript_ms: transcribed - ended,
        transcribe_stage_ms: ms_of(&transcribe["duration_ms"], "transcribe duration")?,
        faster_whisper_s: faster_whisper(&caller)?,
        transcript: call["transcript"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The recording's left channel (the caller; the right one is silent here) as a mono WAV.
fn caller_channel(recording: &Path, out: &Path) -> Result<(), String> {
    let bytes = std::fs::read(recording).map_err(|e| format!("{}: {e}", recording.display()))?;
    let pcm = media::wav::decode(&bytes).map_err(|e| e.to_string())?;
    let left = pcm.channels.into_iter().next().unwrap_or_default();
    let wav = media::wav::encode_i16(&[left], pcm.sample_rate).map_err(|e| e.to_string())?;
    std::fs::write(out, wav).map_err(|e| format!("{}: {e}", out.display()))
}

fn faster_whisper(audio: &Path) -> Result<Vec<f64>, String> {
    let root = repo_root();
    let venv = std::env::var_os("TWIML_GUARD_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let model = std::env::var_os("TWIML_GUARD_WHISPER_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("models/whisper-tiny.en"));
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg(root.join("bench/faster_whisper_rtf.py"))
        .arg("--model")
        .arg(&model)
        .arg("--audio")
        .arg(audio)
        .output()
        .map_err(|e| format!("running bench/faster_whisper_rtf.py: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bench/faster_whisper_rtf.py (make bench-host installs bench/requirements.txt): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_f64).collect())
        .ok_or_else(|| "bench/faster_whisper_rtf.py printed no runs".into())
}
