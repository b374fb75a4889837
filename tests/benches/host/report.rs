//! The bench's report: the Markdown table and details, and the same as JSON.

use crate::run::RunResult;
use crate::{Build, Settings, FRAME_MS, MAX_SOCKETS, SHARED_CPU_NOTE};
use e2e::histogram::Buckets;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub fn ms(s: Option<f64>) -> String {
    match s {
        Some(v) if v.is_infinite() => "> 5000".into(),
        Some(v) => format!("{:.1}", v * 1000.0),
        None => "-".into(),
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1e6)
}

/// `p50 / p99` of a lag histogram, in ms; a quantile in the first bucket reads `< bound`, as
/// the histogram cannot tell more.
pub fn p50_p99(b: Option<&Buckets>) -> String {
    let q = |q: f64| match b {
        Some(b) => match (b.quantile(q), b.0.first()) {
            (Some(v), Some(&(first, _))) if v <= first => format!("< {}", first * 1000.0),
            (v, _) => ms(v),
        },
        None => "-".into(),
    };
    format!("{} / {}", q(0.5), q(0.99))
}

pub fn table(settings: &Settings, runs: &[RunResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| host | replicas | database | calls placed | streams held at once (per replica) | ran fully / failed | frames sent / received by the host | lag p50 / p99 ms, whole run | lag p50 / p99 ms, all streams open | host CPU per frame | frames per core-second | host peak RSS MB (per replica) | RSS per stream | load average at start |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in runs {
        let per: Vec<String> = r.hosts.iter().map(|h| h.peak_streams.to_string()).collect();
        let rss: Vec<String> = r.hosts.iter().map(|h| mb(h.rss_peak)).collect();
        // What a held stream costs: the growth over the idle process, per stream at the peak.
        let kb_per_stream: Vec<String> = r
            .hosts
            .iter()
            .map(|h| match h.peak_streams {
                0 => "-".into(),
                n => format!(
                    "{:.0} KB",
                    h.rss_peak.saturating_sub(h.rss_before) as f64 / 1e3 / n as f64
                ),
            })
            .collect();
        let placed = if r.ramp_stopped {
            format!(
                "{} of {} (stopped at the first failure)",
                r.placed, r.planned
            )
        } else {
            r.placed.to_string()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {placed} | {} ({}) | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            r.build,
            r.replicas,
            r.database,
            r.peak_total,
            per.join(" + "),
            r.ran_fully,
            r.failed,
            r.frames_sent,
            r.frames_in(),
            p50_p99(r.lag().as_ref()),
            p50_p99(r.steady.as_ref().map(|s| &s.1)),
            r.cpu_us_per_frame()
                .map(|v| format!("{v:.1} µs"))
                .unwrap_or_else(|| "-".into()),
            r.cpu_us_per_frame()
                .map(|v| format!("{:.0}", 1e6 / v))
                .unwrap_or_else(|| "-".into()),
            rss.join(" / "),
            kb_per_stream.join(" / "),
            r.load_at_start,
        );
    }
    let _ = writeln!(
        s,
        "\nEach call: a signed voice webhook through Envoy ({} worker thread(s), \
         `--concurrency`; the guard rewrites the legacy TwiML), \
         then one Media Stream carrying {} s of caller audio in real time ({} frames of 20 ms). \
         Each row is a fresh stack whose calls are placed over {} s; the steps are {} calls per \
         replica, and a configuration stops at the first step where a call fails. Each \
         replica's `websocket.max_sockets` is {MAX_SOCKETS}, so no cap of the host's is what \
         stops a step. Lag is the host's `host_frame_lag_seconds` (time since the stream's \
         `start` minus the frame's timestamp), its percentiles estimated from the buckets as \
         Prometheus's `histogram_quantile` does (linear within a bucket); \"all streams open\" \
         is the frames handled from the moment every placed stream was open to the first \
         hang-up. Host CPU per frame is all of the host processes' CPU time during the run \
         (handshakes, recordings and SQLite, which runs inside the host, included; PostgreSQL's \
         own is listed below) over the frames they received, and frames per core-second its \
         inverse; RSS per stream is the peak RSS (`VmHWM`) over the idle process's, per stream \
         held. \"baseline\" rows are the earlier release's binary (`BENCH_HOST_BASELINE`), run \
         right after this build's row of the same step. \"floor\" rows are a server in place \
         of the host that only reads the frames and drops them (tokio and axum's WebSocket, as \
         the host; no database, no recording, so no lag histogram), run last in each step: its \
         CPU per frame is what receiving these frames costs on this machine at all. \
         {SHARED_CPU_NOTE}",
        settings.envoy_workers,
        settings.audio_s,
        settings.audio_s * 1000 / FRAME_MS,
        settings.ramp_s,
        settings
            .streams_per_replica
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    s
}

pub fn details(runs: &[RunResult]) -> String {
    let mut s = String::new();
    for r in runs {
        let _ = writeln!(
            s,
            "\n{}, {} replica(s): {:.1} s from the first call to the last hang-up; time to stream \
             start p50 {} ms, p99 {} ms; CPU seconds: host {:.1}, Envoy {:.1}, callers and \
             legacy backend (this process) {:.1}{}",
            r.build,
            r.replicas,
            r.wall_s,
            r.time_to_stream_ms
                .map(|t| format!("{:.0}", t.0))
                .unwrap_or_else(|| "-".into()),
            r.time_to_stream_ms
                .map(|t| format!("{:.0}", t.1))
                .unwrap_or_else(|| "-".into()),
            r.hosts.iter().map(|h| h.cpu_s).sum::<f64>(),
            r.envoy_cpu_s,
            r.callers_cpu_s,
            r.postgres_cpu_s
                .map(|c| format!(", PostgreSQL {c:.1}"))
                .unwrap_or_default(),
        );
        let lag = r.lag();
        match &lag {
            Some(lag) => {
                let _ = writeln!(
                    s,
                    "  lag, whole run: {} frames, every one within {} ms",
                    lag.count(),
                    ms(lag.all_within())
                );
            }
            None => {
                let _ = writeln!(s, "  no lag histogram (the floor keeps none)");
            }
        }
        match &r.steady {
            _ if lag.is_none() => {}
            Some((span, b)) => {
                let _ = writeln!(
                    s,
                    "  lag, all streams open: {:.1} s, {} frames, every one within {} ms",
                    span.as_secs_f64(),
                    b.count(),
                    ms(b.all_within())
                );
            }
            None => {
                let _ = writeln!(s, "  never were all placed streams open at once");
            }
        }
        if !r.steady_sched.is_empty() {
            let per: Vec<String> = r
                .steady_sched
                .iter()
                .map(|(name, sh)| {
                    format!(
                        "{name} {:.2} CPUs (busiest thread {:.0} %), {:.2} threads waiting for a CPU",
                        sh.cores,
                        sh.busiest * 100.0,
                        sh.waiting
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  all streams open, the machine {} busy; per process: {}",
                r.steady_machine_busy
                    .map(|b| format!("{:.0} %", b * 100.0))
                    .unwrap_or_else(|| "?".into()),
                per.join("; ")
            );
        }
        if r.frames_sent != r.frames_expected {
            let _ = writeln!(
                s,
                "  frames sent: {} of the {} the placed calls carry",
                r.frames_sent, r.frames_expected
            );
        }
        for (i, h) in r.hosts.iter().enumerate() {
            let _ = writeln!(
                s,
                "  replica {i}: peak {} streams, {} frames, {:.1} s CPU, RSS {} MB idle, {} MB \
                 peak, {} refused (too_many_sockets)",
                h.peak_streams,
                h.frames_in,
                h.cpu_s,
                mb(h.rss_before),
                mb(h.rss_peak),
                h.rejected
            );
            for c in &h.closes {
                let _ = writeln!(s, "    {c}");
            }
        }
        for (name, v) in &r.envoy_overflows {
            if v != "0" {
                let _ = writeln!(s, "  envoy {name}: {v}");
            }
        }
        for (p, n) in &r.problems {
            let _ = writeln!(s, "  {n} x {p}");
        }
    }
    s
}

/// A bound as JSON: a number, or "+Inf".
pub fn bound(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!("+Inf")
    }
}

pub fn lag_json(b: Option<&Buckets>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => json!({
            "frames": b.count(),
            "p50_s": b.quantile(0.5),
            "p99_s": b.quantile(0.99),
            "all_within_s": b.all_within().map(bound),
            "buckets": b.0.iter().map(|(le, n)| json!([bound(*le), n])).collect::<Vec<_>>(),
        }),
    }
}

pub fn to_json(settings: &Settings, runs: &[RunResult]) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "host": r.build,
                "replicas": r.replicas,
                "database": r.database,
                "load_average_at_start": r.load_at_start,
                "calls_per_replica": r.planned / r.replicas,
                "calls_planned": r.planned,
                "calls_placed": r.placed,
                "placing_stopped_at_first_failure": r.ramp_stopped,
                "streams_held_at_once": r.peak_total,
                "ran_fully": r.ran_fully,
                "failed": r.failed,
                "frames_sent": r.frames_sent,
                "frames_received": r.frames_in(),
                "frame_lag_whole_run": lag_json(r.lag().as_ref()),
                "frame_lag_all_streams_open": lag_json(r.steady.as_ref().map(|s| &s.1)),
                "all_streams_open_s": r.steady.as_ref().map(|s| s.0.as_secs_f64()),
                "all_streams_open_sched": r.steady_sched.iter().map(|(name, sh)| json!({
                    "process": name,
                    "cpus": sh.cores,
                    "busiest_thread_share": sh.busiest,
                    "threads_waiting_for_a_cpu": sh.waiting,
                })).collect::<Vec<_>>(),
                "all_streams_open_machine_busy": r.steady_machine_busy,
                "host_cpu_us_per_frame": r.cpu_us_per_frame(),
                "frames_per_core_second": r.cpu_us_per_frame().map(|v| 1e6 / v),
                "cpu_s": {
                    "hosts": r.hosts.iter().map(|h| h.cpu_s).sum::<f64>(),
                    "envoy": r.envoy_cpu_s,
                    "callers_and_backend": r.callers_cpu_s,
                    "postgres": r.postgres_cpu_s,
                },
                "time_to_stream_ms": r.time_to_stream_ms.map(|t| json!({"p50": t.0, "p99": t.1})),
                "wall_s": r.wall_s,
                "problems": r.problems.iter().map(|(p, n)| json!({"problem": p, "count": n})).collect::<Vec<_>>(),
                "envoy_overflows": r.envoy_overflows.iter().map(|(k, v)| json!({"stat": k, "value": v})).collect::<Vec<_>>(),
                "hosts": r.hosts.iter().map(|h| json!({
                    "peak_streams": h.peak_streams,
                    "frames_received": h.frames_in,
                    "cpu_s": h.cpu_s,
                    "rss_idle_bytes": h.rss_before,
                    "rss_peak_bytes": h.rss_peak,
                    "rejected_too_many_sockets": h.rejected,
                    "closed": h.closes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "settings": {
            "streams_per_replica": settings.streams_per_replica,
            "audio_s": settings.audio_s,
            "ramp_s": settings.ramp_s,
            "max_sockets_per_replica": MAX_SOCKETS,
            "speed": 1.0,
            "baseline": settings.builds.iter().find_map(|b| match b {
                Build::Baseline(p) => Some(p.display().to_string()),
                _ => None,
            }),
            "floor": settings.builds.iter().any(|b| matches!(b, Build::Floor(_))),
            "envoy_workers": settings.envoy_workers,
        },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "note": SHARED_CPU_NOTE,
        "runs": runs,
    })
}

/// The date, the CPUs and the kernel, for the report.
pub fn machine() -> String {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                Some(
                    l.strip_prefix("model name")?
                        .split_once(':')?
                        .1
                        .trim()
                        .to_string(),
                )
            })
        })
        .unwrap_or_default();
    format!(
        "{}, {} CPUs ({model}), Linux {}",
        out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        out("uname", &["-r"]),
    )
}
