//! Benchmark (not a test): real-time factor of the default Whisper engine on this machine, side
//! by side in one run with Python's `faster-whisper` on the same model folder and the same
//! telephone audio, and the word error rate of both on each clip: the espeak-ng call below and
//! a real human voice (`postcall/tests/data/jfk-8k-mulaw.wav`, held out from tuning). `make
//! bench` runs it; it prints a table and each transcript.
//!
//! Usage: whisper_rtf [--model DIR] [--runs N] [--python PATH] [--threads N] [--compute int8,float32]

use media::audio::{mulaw_to_f32, to_mulaw_8k};
use media::wav::{self, encode_i16};
use postcall::wer::wer;
use postcall::whisper::WhisperEngine;
use postcall::WhisperConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SCRIPT: [&str; 8] = [
    "Hello, thank you for calling the service desk.",
    "I would like to book an appointment for tomorrow morning.",
    "My car makes a strange noise when I start the engine.",
    "Could someone call me back before noon please?",
    "The best number to reach me is my mobile phone.",
    "I will also send the details by email this afternoon.",
    "Please let me know if you need anything else from me.",
    "Thank you very much and have a nice day.",
];

const JFK: &str = "And so, my fellow Americans, ask not what your country can do for you, ask \
                   what you can do for your country.";

/// A clip: its name, WAV file, length and what was said.
struct Clip {
    name: &'static str,
    path: PathBuf,
    secs: f64,
    said: String,
}

struct Row {
    clip: &'static str,
    engine: String,
    compute: String,
    load_s: f64,
    median_s: f64,
    rtf: f64,
    wer: f64,
    text: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// About a minute of call audio: the script spoken by espeak-ng with pauses, through 8 kHz
/// mu-law, written as the 8 kHz WAV the host service records.
fn call_audio(dir: &std::path::Path) -> (PathBuf, f64) {
    let mut audio = Vec::new();
    for line in SCRIPT {
        let wav = dir.join("line.wav");
        let ok = Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&wav)
            .arg(line)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "espeak-ng is needed (make setup installs it)");
        let pcm = wav::decode(&std::fs::read(&wav).unwrap()).unwrap();
        audio.extend(mulaw_to_f32(&to_mulaw_8k(&pcm.to_mono(), pcm.sample_rate)));
        audio.extend(vec![0.0; 8000 * 4]);
    }
    let secs = audio.len() as f64 / 8000.0;
    let path = dir.join("call.wav");
    std::fs::write(&path, encode_i16(&[audio], 8000).unwrap()).unwrap();
    (path, secs)
}

/// Our engine: load, one warm-up, `runs` timed transcriptions.
fn time_ours(model: &Path, compute: &str, threads: usize, runs: usize, clip: &Clip) -> Row {
    let wav = std::fs::read(&clip.path).unwrap();
    let wav = wav.as_slice();
    let started = Instant::now();
    let engine = WhisperEngine::load(&WhisperConfig {
        model_dir: model.to_path_buf(),
        compute_type: compute.into(),
        threads,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let load_s = started.elapsed().as_secs_f64();
    let mut text = engine.transcribe_wav(wav).unwrap().text;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        text = engine.transcribe_wav(wav).unwrap().text;
        times.push(t.elapsed().as_secs_f64());
    }
    let m = median(times);
    Row {
        clip: clip.name,
        engine: "postcall whisper (ct2rs)".into(),
        compute: compute.into(),
        load_s,
        median_s: m,
        rtf: m / clip.secs,
        wer: wer(&clip.said, &text),
        text,
    }
}

/// faster-whisper on the same file and settings (`bench/faster_whisper_rtf.py`); `None` when
/// it cannot run.
fn time_faster_whisper(
    python: &str,
    model: &Path,
    clip: &Clip,
    compute: &str,
    threads: usize,
    runs: usize,
) -> Option<Row> {
    let out = Command::new(python)
        .arg("bench/faster_whisper_rtf.py")
        .arg("--model")
        .arg(model)
        .arg("--audio")
        .arg(&clip.path)
        .args(["--compute-type", compute])
        .args(["--threads", &threads.to_string()])
        .args(["--runs", &runs.to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value =
                serde_json::from_slice(&o.stdout).expect("faster-whisper JSON");
            let times: Vec<f64> = v["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t.as_f64())
                .collect();
            let m = median(times);
            let text = v["text"].as_str().unwrap_or("").to_string();
            Some(Row {
                clip: clip.name,
                engine: format!("faster-whisper {}", v["version"].as_str().unwrap_or("?")),
                compute: compute.into(),
                load_s: v["load_s"].as_f64().unwrap_or(f64::NAN),
                median_s: m,
                rtf: m / clip.secs,
                wer: wer(&clip.said, &text),
                text,
            })
        }
        Ok(o) => {
            eprintln!(
                "faster-whisper failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("cannot run {python}: {e} (make bench installs faster-whisper)");
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model =
        PathBuf::from(arg(&args, "--model").unwrap_or_else(|| "models/whisper-tiny.en".into()));
    let runs: usize = arg(&args, "--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let threads: usize = arg(&args, "--threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let python = arg(&args, "--python").unwrap_or_else(|| ".venv/bin/python".into());

    let dir = tempfile::tempdir().unwrap();
    let (wav_path, audio_s) = call_audio(dir.path());
    let jfk = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jfk-8k-mulaw.wav");
    let clips = [
        Clip {
            name: "espeak call",
            path: wav_path,
            secs: audio_s,
            said: SCRIPT.join(" "),
        },
        Clip {
            name: "human (JFK)",
            secs: media::wav::decode(&std::fs::read(&jfk).unwrap())
                .unwrap()
                .duration_secs(),
            path: jfk,
            said: JFK.into(),
        },
    ];
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "clips: {audio_s:.1} s of 8 kHz mu-law espeak-ng speech ({} sentences), {:.1} s of a \
         human voice (8 kHz mu-law); {runs} timed runs after one warm-up; beam 5; threads \
         {threads} (0 = engine default); {cores} CPUs; load average {}",
        SCRIPT.len(),
        clips[1].secs,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let mut rows = Vec::new();
    let computes = arg(&args, "--compute").unwrap_or_else(|| "int8,float32".into());
    for compute in computes.split(',') {
        for clip in &clips {
            rows.push(time_ours(&model, compute, threads, runs, clip));
            rows.extend(time_faster_whisper(
                &python, &model, clip, compute, threads, runs,
            ));
        }
    }
    // This process's peak resident memory: the model (both compute types loaded in turn) and
    // one transcription's working set.
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        .unwrap_or_default();

    println!(
        "\n| {:<11} | {:<26} | {:<7} | {:>7} | {:>12} | {:>6} | {:>5} |",
        "clip", "engine", "compute", "load s", "transcribe s", "RTF", "WER"
    );
    println!(
        "|{:-<13}|{:-<28}|{:-<9}|{:->9}|{:->14}|{:->8}|{:->7}|",
        "", "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<11} | {:<26} | {:<7} | {:>7.2} | {:>12.2} | {:>6.3} | {:>5.3} |",
            r.clip, r.engine, r.compute, r.load_s, r.median_s, r.rtf, r.wer
        );
    }
    println!("\npeak RSS of the Rust side: {hwm}\n");
    for r in &rows {
        println!(
            "{} / {} / {}: {}",
            r.clip,
            r.engine,
            r.compute,
            r.text.trim()
        );
    }
}
