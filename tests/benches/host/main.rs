//! `make bench-host`: how many real-time Media Streams the host service holds, and how far
//! behind real time it handles their audio (its own `host_frame_lag_seconds`), through the
//! shipped Envoy config; first one replica on its SQLite database, then two replicas on one
//! PostgreSQL and one shared recordings directory. Each configuration steps up the calls per
//! replica on a fresh stack and stops at the first step where a call fails. With a baseline
//! binary (an earlier release of the host), every step runs it too, right after this build, so
//! the two are compared on the same machine in the same state. A benchmark, not a
//! test: it asserts nothing about speed, and `cargo test` neither builds nor runs it. Prints the
//! table and writes target/bench-host/host.md and host.json.
//!
//! Settings (environment): `BENCH_HOST_STREAMS` the steps, calls per replica (default
//! `250,1000,2000`), `BENCH_HOST_AUDIO_S` seconds of caller audio per call (20),
//! `BENCH_HOST_RAMP_S` seconds over which a step's calls are placed (10; below the audio length,
//! so every stream is open at once at the end of the ramp), `BENCH_HOST_REPLICAS` the
//! configurations to run (`1,2`), `BENCH_HOST_BASELINE` the `host-service` binary to compare with
//! (none: this build only), `BENCH_HOST_ENVOY_WORKERS` Envoy's `--concurrency` (1, as in every
//! end-to-end test), `BENCH_HOST_FLOOR=0` to leave out the floor (a server that only
//! reads and drops the frames, `floor.rs`, run last in every step; `BENCH_HOST_FLOOR_POLL_US` its
//! batched wake-ups), `BENCH_HOST_TRANSCRIPT=0` to skip the last part: `stream_ended` to
//! transcript on one call of held-out speech, against faster-whisper on the same audio
//! (`transcript.rs`).

mod floor;
mod procfs;
mod report;
mod run;
mod transcript;

use e2e::repo_root;
use procfs::load_average;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The hosts' own socket cap, far above what is placed, so the limit found is the machine's.
pub const MAX_SOCKETS: &str = "4000";
/// The legacy bug, so the filter rewrites every answer on the way (the seed's TwiML shape).
pub const LEGACY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
    <Record maxLength=\"60\"/><Connect><Stream url=\"wss://voice.example.com/ws/twilio-media\"/>\
    </Connect></Response>";
/// mu-law silence: the host records and counts audio without looking at it.
pub const MULAW_SILENCE: u8 = 0xFF;
pub const FRAME_MS: u64 = 20;
/// How often the open streams are sampled for the peak.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A handshake or webhook slower than this counts as refused: Twilio gives up sooner.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
pub const SHARED_CPU_NOTE: &str =
    "Both replicas run on the same machine as everything else, so the \
    two-replica row shares the same cores: it measures the balancing and the shared PostgreSQL \
    and recordings directory, not added capacity.";

/// Which host binary a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// This checkout's release build.
    Current,
    /// An earlier release, for the comparison.
    Baseline(PathBuf),
    /// A server that only reads and drops the frames (`floor.rs`): the least a host can pay.
    Floor(PathBuf),
}

impl Build {
    pub fn label(&self) -> &'static str {
        match self {
            Build::Current => "this build",
            Build::Baseline(_) => "baseline",
            Build::Floor(_) => "floor",
        }
    }

    pub fn binary(&self) -> Option<PathBuf> {
        match self {
            Build::Current => None,
            Build::Baseline(p) | Build::Floor(p) => Some(p.clone()),
        }
    }
}

pub struct Settings {
    pub streams_per_replica: Vec<usize>,
    pub audio_s: u64,
    pub ramp_s: f64,
    pub replicas: Vec<usize>,
    pub builds: Vec<Build>,
    /// Measure `stream_ended` to transcript after the steps.
    pub transcript: bool,
    /// Envoy's worker threads.
    pub envoy_workers: u32,
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// A comma-separated list of counts from `min` to `max`.
pub fn env_list(name: &str, default: &str, min: usize, max: usize) -> Result<Vec<usize>, String> {
    let text = std::env::var(name).unwrap_or_else(|_| default.into());
    text.split(',')
        .map(|r| match r.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{name}: {r:?} is not a count from {min} to {max}")),
        })
        .collect()
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let mut s = Settings {
            streams_per_replica: env_list("BENCH_HOST_STREAMS", "250,1000,2000", 1, 100_000)?,
            audio_s: env_or("BENCH_HOST_AUDIO_S", 20)?,
            ramp_s: env_or("BENCH_HOST_RAMP_S", 10.0)?,
            replicas: env_list("BENCH_HOST_REPLICAS", "1,2", 1, 8)?,
            builds: match std::env::var_os("BENCH_HOST_BASELINE").filter(|v| !v.is_empty()) {
                None => vec![Build::Current],
                Some(p) => {
                    let p = PathBuf::from(p);
                    if !p.is_file() {
                        return Err(format!(
                            "BENCH_HOST_BASELINE: {} is not a file (an earlier release's host-service binary, \
                             e.g. built at that commit in a target directory of its own)",
                            p.display()
                        ));
                    }
                    vec![Build::Current, Build::Baseline(p)]
                }
            },
            transcript: env_or("BENCH_HOST_TRANSCRIPT", 1u8)? != 0,
            envoy_workers: env_or("BENCH_HOST_ENVOY_WORKERS", 1)?,
        };
        if env_or("BENCH_HOST_FLOOR", 1u8)? != 0 {
            let exe =
                std::env::current_exe().map_err(|e| format!("the bench's own binary: {e}"))?;
            s.builds.push(Build::Floor(exe));
        }
        if s.envoy_workers == 0 {
            return Err("BENCH_HOST_ENVOY_WORKERS must be at least 1".into());
        }
        if s.audio_s == 0 || s.ramp_s.is_nan() || s.ramp_s <= 0.0 {
            return Err("BENCH_HOST_AUDIO_S and BENCH_HOST_RAMP_S must be above 0".into());
        }
        Ok(s)
    }
}

fn main() -> ExitCode {
    if let Some(code) = floor::serve_if_asked() {
        return code;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench-host: {e}");
            return ExitCode::from(2);
        }
    };
    // The simulated callers run here, on the same cores as Envoy and the hosts (Twilio's side
    // would not): two workers keep them from taking more than their share of a small machine.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-host: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs = Vec::new();
    for &replicas in &settings.replicas {
        // A build stops stepping up at its first failed step: its limit is found, and more
        // calls would only fail more. The other build goes on.
        let mut stopped = vec![false; settings.builds.len()];
        for &per_replica in &settings.streams_per_replica {
            for (b, build) in settings.builds.iter().enumerate() {
                if stopped[b] {
                    continue;
                }
                eprintln!(
                    "bench-host: {}, {replicas} replica(s), {} calls of {} s real-time audio over {} s (load average {})",
                    build.label(),
                    per_replica * replicas,
                    settings.audio_s,
                    settings.ramp_s,
                    load_average()
                );
                match rt.block_on(run::run(&settings, build, replicas, per_replica)) {
                    Ok(r) => {
                        stopped[b] = r.failed > 0;
                        runs.push(r);
                    }
                    Err(e) => {
                        eprintln!("bench-host: {} {replicas} replica(s): {e}", build.label());
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    let latency = if settings.transcript {
        eprintln!(
            "bench-host: stream_ended to transcript (load average {})",
            load_average()
        );
        match rt.block_on(transcript::measure()) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("bench-host: stream_ended to transcript: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let md = format!(
        "# make bench-host\n\n{}\n{}\n{}{}; load average after the runs: {}.\n",
        report::table(&settings, &runs),
        report::details(&runs),
        latency
            .as_ref()
            .map(|l| l.markdown() + "\n")
            .unwrap_or_default(),
        report::machine(),
        load_average()
    );
    print!("{md}");
    let out = repo_root().join("target").join("bench-host");
    let written = std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("host.md"), &md))
        .and_then(|_| {
            let mut json = report::to_json(&settings, &runs);
            if let Some(l) = &latency {
                json["stream_ended_to_transcript"] = serde_json::json!({
                    "audio_s": l.audio_s,
                    "ended_to_transcript_ms": l.ended_to_transcript_ms,
                    "transcribe_stage_ms": l.transcribe_stage_ms,
                    "faster_whisper_s": l.faster_whisper_s,
                    "transcript": l.transcript,
                });
            }
            let json = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
            std::fs::write(out.join("host.json"), json)
        });
    match written {
        Ok(()) => {
            eprintln!("bench-host: wrote {}/host.md and host.json", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-host: writing {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
