//! `make bench-host`: how many real-time Media Streams the host service holds, and how far
//! behind real time it handles their audio (its own `host_frame_lag_seconds`), through the
//! shipped Envoy config; first one replica on its SQLite database, then two replicas on one
//! PostgreSQL and one shared recordings directory. Each configuration steps up the calls per
//! replica on a fresh stack and stops at the first step where a call fails. A benchmark, not a
//! test: it asserts nothing about speed, and `cargo test` neither builds nor runs it. Prints the
//! table and writes target/bench-host/host.md and host.json.
//!
//! Settings (environment): `BENCH_HOST_STREAMS` the steps, calls per replica (default
//! `250,500,1000`), `BENCH_HOST_AUDIO_S` seconds of caller audio per call (20),
//! `BENCH_HOST_RAMP_S` seconds over which a step's calls are placed (10; below the audio length,
//! so every stream is open at once at the end of the ramp), `BENCH_HOST_REPLICAS` the
//! configurations to run (`1,2`).

use e2e::histogram::Buckets;
use e2e::stack::{active_streams, HostOptions, HostService, AUTH_TOKEN, PUBLIC_HOST};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{http_client, poll, repo_root, Envoy, EnvoySetup};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_sim::report::{Outcome, Report};
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

/// The hosts' own socket cap, far above what is placed, so the limit found is the machine's.
const MAX_SOCKETS: &str = "4000";
/// The legacy bug, so the filter rewrites every answer on the way (the seed's TwiML shape).
const LEGACY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
    <Record maxLength=\"60\"/><Connect><Stream url=\"wss://voice.example.com/ws/twilio-media\"/>\
    </Connect></Response>";
/// mu-law silence: the host records and counts audio without looking at it.
const MULAW_SILENCE: u8 = 0xFF;
const FRAME_MS: u64 = 20;
/// How often the open streams are sampled for the peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A handshake or webhook slower than this counts as refused: Twilio gives up sooner.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const SHARED_CPU_NOTE: &str = "Both replicas run on the same machine as everything else, so the \
    two-replica row shares the same cores: it measures the balancing and the shared PostgreSQL \
    and recordings directory, not added capacity.";

struct Settings {
    streams_per_replica: Vec<usize>,
    audio_s: u64,
    ramp_s: f64,
    replicas: Vec<usize>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// A comma-separated list of counts from `min` to `max`.
fn env_list(name: &str, default: &str, min: usize, max: usize) -> Result<Vec<usize>, String> {
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
        let s = Settings {
            streams_per_replica: env_list("BENCH_HOST_STREAMS", "250,500,1000", 1, 100_000)?,
            audio_s: env_or("BENCH_HOST_AUDIO_S", 20)?,
            ramp_s: env_or("BENCH_HOST_RAMP_S", 10.0)?,
            replicas: env_list("BENCH_HOST_REPLICAS", "1,2", 1, 8)?,
        };
        if s.audio_s == 0 || s.ramp_s.is_nan() || s.ramp_s <= 0.0 {
            return Err("BENCH_HOST_AUDIO_S and BENCH_HOST_RAMP_S must be above 0".into());
        }
        Ok(s)
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A `kB` line of /proc/<pid>/status (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}

/// User plus system CPU time of a process so far, in clock ticks (/proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The PostgreSQL server whose data directory is under `dir` and its children (one backend per
/// connection; the replicas' pools keep theirs open for the whole run).
fn postgres_pids(dir: &std::path::Path) -> Vec<u32> {
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            Some((pid, ppid, cmdline))
        })
        .collect();
    let dir = dir.display().to_string();
    let Some(server) = procs
        .iter()
        .find(|(_, _, cmd)| cmd.contains("postgres") && cmd.contains(&dir))
        .map(|p| p.0)
    else {
        return Vec::new();
    };
    std::iter::once(server)
        .chain(procs.iter().filter(|p| p.1 == server).map(|p| p.0))
        .collect()
}

/// CPU ticks of each of `pids` so far.
fn cpu_ticks_of(pids: &[u32]) -> Vec<(u32, u64)> {
    pids.iter()
        .filter_map(|&p| Some((p, cpu_ticks(p)?)))
        .collect()
}

fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Every replica's `host_frame_lag_seconds` now, added up.
async fn lag_now(hosts: &[HostService]) -> Option<Buckets> {
    let mut all = Vec::new();
    for h in hosts {
        all.push(Buckets::parse(
            &h.metrics_text().await.ok()?,
            "host_frame_lag_seconds",
        )?);
    }
    Buckets::merge(&all)
}

/// What one replica measured of itself.
struct ReplicaResult {
    peak_streams: u64,
    frames_in: u64,
    lag: Option<Buckets>,
    rss_before: u64,
    rss_peak: u64,
    cpu_s: f64,
    rejected: u64,
    closes: Vec<String>,
}

struct RunResult {
    replicas: usize,
    database: &'static str,
    load_at_start: String,
    placed: usize,
    planned: usize,
    ramp_stopped: bool,
    peak_total: u64,
    ran_fully: usize,
    failed: usize,
    frames_sent: u64,
    frames_expected: u64,
    time_to_stream_ms: Option<(f64, f64)>,
    problems: Vec<(String, usize)>,
    wall_s: f64,
    envoy_overflows: Vec<(String, String)>,
    /// The lag of the frames handled while every placed stream was open (from the moment the
    /// last one opened to the first hang-up), and how long that lasted.
    steady: Option<(Duration, Buckets)>,
    /// CPU seconds of Envoy and of this process (the simulated callers and the legacy backend).
    envoy_cpu_s: f64,
    callers_cpu_s: f64,
    /// CPU seconds of the PostgreSQL server and its backends, when the run has one.
    postgres_cpu_s: Option<f64>,
    hosts: Vec<ReplicaResult>,
}

impl RunResult {
    fn frames_in(&self) -> u64 {
        self.hosts.iter().map(|h| h.frames_in).sum()
    }

    fn lag(&self) -> Option<Buckets> {
        let all: Vec<Buckets> = self.hosts.iter().filter_map(|h| h.lag.clone()).collect();
        Buckets::merge(&all)
    }

    fn cpu_us_per_frame(&self) -> Option<f64> {
        let cpu: f64 = self.hosts.iter().map(|h| h.cpu_s).sum();
        let frames = self.frames_in();
        (frames > 0).then(|| cpu * 1e6 / frames as f64)
    }
}

fn ms(s: Option<f64>) -> String {
    match s {
        Some(v) if v.is_infinite() => "> 5000".into(),
        Some(v) => format!("{:.1}", v * 1000.0),
        None => "-".into(),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1e6)
}

/// One configuration: start the stack, place the calls, read what each replica measured.
async fn run(
    settings: &Settings,
    replicas: usize,
    per_replica: usize,
) -> Result<RunResult, String> {
    let load_at_start = load_average();
    let dir = tempfile::Builder::new()
        .prefix("bench-host-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let mut env: Vec<(String, String)> = [
        ("HOST_SERVICE_WEBSOCKET_MAX_SOCKETS", MAX_SOCKETS),
        // Post-call transcription is not what this measures; the streams and recordings are.
        ("HOST_SERVICE_TRANSCRIPTION_ENGINE", "none"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    // Several replicas share one PostgreSQL and one recordings directory, as deployed; one
    // replica keeps the default SQLite file in its own directory.
    let pg = if replicas > 1 {
        let pg = tokio::task::spawn_blocking(test_support::PgCluster::start)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let url = pg.database("bench").map_err(|e| e.to_string())?;
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
        env.push(("HOST_SERVICE_DATABASE_URL".into(), url));
        env.push(("HOST_SERVICE_DATA_DIR".into(), shared.display().to_string()));
        Some(pg)
    } else {
        None
    };
    let options = HostOptions {
        env,
        ..HostOptions::default()
    };
    let mut hosts = Vec::new();
    // One after the other: the first creates the schema and the shared directory's marker.
    for i in 0..replicas {
        let d = dir.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        hosts.push(
            HostService::start_with(&d, options.clone())
                .await
                .map_err(|e| format!("host service: {e}"))?,
        );
    }
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", LEGACY_TWIML))
        .await
        .map_err(|e| format!("backend: {e}"))?;
    let mut setup = EnvoySetup::new(backend.addr(), hosts[0].addr).auth_token(AUTH_TOKEN);
    for h in &hosts[1..] {
        setup = setup.host_replica(h.addr);
    }
    let envoy = Envoy::start(&setup)
        .await
        .map_err(|e| format!("envoy: {e}"))?;

    let mut cfg = CallConfig::new(format!("https://{PUBLIC_HOST}/webhook/incoming_call"));
    cfg.map = UrlMap::local(&envoy.listener.to_string()).map_err(|e| e.to_string())?;
    cfg.auth_token = Some(AUTH_TOKEN.into());
    cfg.speed = 1.0;
    cfg.audio = Arc::new(vec![MULAW_SILENCE; (settings.audio_s * 8000) as usize]);
    cfg.webhook_timeout = CALL_TIMEOUT;
    cfg.connect_timeout = CALL_TIMEOUT;
    let frames_per_call = settings.audio_s * 1000 / FRAME_MS;

    let rss_before: Vec<u64> = hosts
        .iter()
        .map(|h| proc_status_kb(h.pid(), "VmRSS").unwrap_or(0))
        .collect();
    let cpu_before: Vec<u64> = hosts
        .iter()
        .map(|h| cpu_ticks(h.pid()).unwrap_or(0))
        .collect();
    let envoy_cpu_before = cpu_ticks(envoy.pid()).unwrap_or(0);
    let pg_cpu_before = pg.as_ref().map(|pg| cpu_ticks_of(&postgres_pids(pg.dir())));
    let callers_cpu_before = cpu_ticks(std::process::id()).unwrap_or(0);

    // The peak of open streams, per replica and summed over one sample.
    let peaks: Arc<Vec<AtomicU64>> = Arc::new(hosts.iter().map(|_| AtomicU64::new(0)).collect());
    let peak_total = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peaks, peak_total) = (Arc::clone(&peaks), Arc::clone(&peak_total));
        let addrs: Vec<SocketAddr> = hosts.iter().map(|h| h.addr).collect();
        tokio::spawn(async move {
            let client = http_client();
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                every.tick().await;
                let mut sum = 0;
                for (i, a) in addrs.iter().enumerate() {
                    let open = active_streams(&client, *a).await.unwrap_or(0);
                    peaks[i].fetch_max(open, Ordering::Relaxed);
                    sum += open;
                }
                peak_total.fetch_max(sum, Ordering::Relaxed);
            }
        })
    };

    // Ramp: the calls are spread over ramp_s; the first call that fails (a refused webhook or
    // handshake, a stream cut short) stops the ramp, and what was placed by then is the limit.
    let planned = per_replica * replicas;
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let client = twilio_sim::call::client().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut ramp = tokio::time::interval(Duration::from_secs_f64(settings.ramp_s / planned as f64));
    ramp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..planned {
        ramp.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        placed.fetch_add(1, Ordering::Relaxed);
        let (client, cfg) = (client.clone(), cfg.clone());
        let (stop, finished) = (Arc::clone(&stop), Arc::clone(&finished));
        calls.spawn(async move {
            let report = twilio_sim::place_call(&client, &cfg).await;
            finished.fetch_add(1, Ordering::Relaxed);
            if !ran_fully(&report, frames_per_call) {
                stop.store(true, Ordering::Relaxed);
            }
            report
        });
    }

    // The steady state: every placed stream open, none ended yet. Its lag is what the host
    // does at that many streams, apart from the handshakes of the ramp.
    let placed_n = placed.load(Ordering::Relaxed) as u64;
    let http = http_client();
    let addrs: Vec<SocketAddr> = hosts.iter().map(|h| h.addr).collect();
    let all_open = poll(
        Duration::from_secs(settings.audio_s),
        "every placed stream to be open",
        || async {
            let mut open = 0;
            for a in &addrs {
                open += active_streams(&http, *a).await?;
            }
            (open == placed_n).then_some(())
        },
    )
    .await
    .is_ok();
    let window_start = if all_open && finished.load(Ordering::Relaxed) == 0 {
        lag_now(&hosts).await.map(|b| (Instant::now(), b))
    } else {
        None
    };
    let mut reports: Vec<Report> = Vec::new();
    if let Some(first) = calls.join_next().await {
        reports.push(first.map_err(|e| format!("a call's task: {e}"))?);
    }
    let steady = match window_start {
        Some((t, at_start)) => {
            let span = t.elapsed();
            lag_now(&hosts)
                .await
                .and_then(|end| end.since(&at_start))
                .map(|b| (span, b))
        }
        None => None,
    };
    reports.extend(calls.join_all().await);
    let wall_s = started.elapsed().as_secs_f64();
    let load = twilio_sim::load::LoadReport::summarize(&reports, planned, wall_s * 1000.0);

    // Frames still queued in a replica when a call hung up are counted as they are handled:
    // read the counters once every socket has closed.
    poll(Duration::from_secs(60), "every stream to close", || async {
        let mut open = 0;
        for a in &addrs {
            open += active_streams(&http, *a).await?;
        }
        (open == 0).then_some(())
    })
    .await
    .map_err(|e| e.to_string())?;
    sampler.abort();

    let ticks = clock_ticks_per_s();
    let envoy_cpu_s = cpu_ticks(envoy.pid())
        .unwrap_or(0)
        .saturating_sub(envoy_cpu_before) as f64
        / ticks;
    // A backend that started during the run counts from zero.
    let postgres_cpu_s = pg.as_ref().zip(pg_cpu_before).map(|(pg, before)| {
        cpu_ticks_of(&postgres_pids(pg.dir()))
            .into_iter()
            .map(|(pid, now)| {
                let then = before.iter().find(|b| b.0 == pid).map_or(0, |b| b.1);
                now.saturating_sub(then)
            })
            .sum::<u64>() as f64
            / ticks
    });
    let callers_cpu_s = cpu_ticks(std::process::id())
        .unwrap_or(0)
        .saturating_sub(callers_cpu_before) as f64
        / ticks;
    let mut results = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let text = h.metrics_text().await.map_err(|e| e.to_string())?;
        let value = |name: &str| e2e::prometheus_value(&text, name).unwrap_or(0);
        results.push(ReplicaResult {
            peak_streams: peaks[i].load(Ordering::Relaxed),
            frames_in: value("host_frames_in_total"),
            lag: Buckets::parse(&text, "host_frame_lag_seconds"),
            rss_before: rss_before[i],
            rss_peak: proc_status_kb(h.pid(), "VmHWM").unwrap_or(0),
            cpu_s: cpu_ticks(h.pid())
                .unwrap_or(0)
                .saturating_sub(cpu_before[i]) as f64
                / ticks,
            rejected: value("host_ws_rejected_total{reason=\"too_many_sockets\"}"),
            closes: text
                .lines()
                .filter(|l| l.starts_with("host_ws_closed_total"))
                .map(str::to_string)
                .collect(),
        });
    }
    let mut envoy_overflows = Vec::new();
    for name in [
        "cluster.host_service.upstream_cx_overflow",
        "cluster.host_service.upstream_rq_pending_overflow",
        "cluster.legacy_backend.upstream_cx_overflow",
        "cluster.legacy_backend.upstream_rq_pending_overflow",
    ] {
        let v = envoy.stat(name).await.ok().flatten().unwrap_or_default();
        envoy_overflows.push((name.to_string(), v));
    }
    let ran = reports
        .iter()
        .filter(|r| ran_fully(r, frames_per_call))
        .count();
    let out = RunResult {
        replicas,
        database: if replicas > 1 {
            "PostgreSQL, shared recordings directory"
        } else {
            "SQLite"
        },
        load_at_start,
        placed: placed.load(Ordering::Relaxed),
        planned,
        ramp_stopped: stop.load(Ordering::Relaxed) && reports.len() < planned,
        peak_total: peak_total.load(Ordering::Relaxed),
        ran_fully: ran,
        failed: reports.len() - ran,
        frames_sent: load.frames_sent,
        frames_expected: reports.len() as u64 * frames_per_call,
        time_to_stream_ms: load.time_to_stream_ms.as_ref().map(|p| (p.p50, p.p99)),
        problems: load.problems.into_iter().collect(),
        wall_s,
        envoy_overflows,
        steady,
        envoy_cpu_s,
        callers_cpu_s,
        postgres_cpu_s,
        hosts: results,
    };
    // Envoy first, then what it fronts, then the database.
    drop(envoy);
    drop(backend);
    drop(hosts);
    drop(pg);
    Ok(out)
}

/// The stream opened, carried every frame of the call and was closed by the caller.
fn ran_fully(r: &Report, frames: u64) -> bool {
    r.outcome == Outcome::StreamRan
        && r.streams.len() == 1
        && r.streams
            .iter()
            .all(|s| s.frames_sent == frames && s.error.is_none() && !s.closed_by_server)
}

/// `p50 / p99` of a lag histogram, in ms; a quantile in the first bucket reads `< bound`, as
/// the histogram cannot tell more.
fn p50_p99(b: Option<&Buckets>) -> String {
    let q = |q: f64| match b {
        Some(b) => match (b.quantile(q), b.0.first()) {
            (Some(v), Some(&(first, _))) if v <= first => format!("< {}", first * 1000.0),
            (v, _) => ms(v),
        },
        None => "-".into(),
    };
    format!("{} / {}", q(0.5), q(0.99))
}

fn table(settings: &Settings, runs: &[RunResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| replicas | database | calls placed | streams held at once (per replica) | ran fully / failed | frames sent / received by the host | lag p50 / p99 ms, whole run | lag p50 / p99 ms, all streams open | host CPU per frame | host peak RSS MB (per replica) | RSS per stream | load average at start |"
    );
    let _ = writeln!(
        s,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
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
            "| {} | {} | {placed} | {} ({}) | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} |",
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
            rss.join(" / "),
            kb_per_stream.join(" / "),
            r.load_at_start,
        );
    }
    let _ = writeln!(
        s,
        "\nEach call: a signed voice webhook through Envoy (the guard rewrites the legacy TwiML), \
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
         own is listed below) over the frames they received; RSS per \
         stream is the peak RSS (`VmHWM`) over the idle process's, per stream held. {SHARED_CPU_NOTE}",
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

fn details(runs: &[RunResult]) -> String {
    let mut s = String::new();
    for r in runs {
        let _ = writeln!(
            s,
            "\n{} replica(s): {:.1} s from the first call to the last hang-up; time to stream \
             start p50 {} ms, p99 {} ms; CPU seconds: host {:.1}, Envoy {:.1}, callers and \
             legacy backend (this process) {:.1}{}",
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
        let _ = writeln!(
            s,
            "  lag, whole run: {} frames, every one within {} ms",
            lag.as_ref().map(Buckets::count).unwrap_or(0),
            ms(lag.as_ref().and_then(Buckets::all_within))
        );
        match &r.steady {
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
fn bound(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!("+Inf")
    }
}

fn lag_json(b: Option<&Buckets>) -> Value {
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

fn to_json(settings: &Settings, runs: &[RunResult]) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
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
                "host_cpu_us_per_frame": r.cpu_us_per_frame(),
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
        },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "note": SHARED_CPU_NOTE,
        "runs": runs,
    })
}

/// The date, the CPUs and the kernel, for the report.
fn machine() -> String {
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

fn main() -> ExitCode {
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
        for &per_replica in &settings.streams_per_replica {
            eprintln!(
                "bench-host: {replicas} replica(s), {} calls of {} s real-time audio over {} s (load average {})",
                per_replica * replicas,
                settings.audio_s,
                settings.ramp_s,
                load_average()
            );
            let failed = match rt.block_on(run(&settings, replicas, per_replica)) {
                Ok(r) => {
                    let failed = r.failed > 0;
                    runs.push(r);
                    failed
                }
                Err(e) => {
                    eprintln!("bench-host: {replicas} replica(s): {e}");
                    return ExitCode::FAILURE;
                }
            };
            // The limit is found: more calls would only fail more.
            if failed {
                break;
            }
        }
    }
    let md = format!(
        "# make bench-host\n\n{}\n{}\n{}; load average after the runs: {}.\n",
        table(&settings, &runs),
        details(&runs),
        machine(),
        load_average()
    );
    print!("{md}");
    let out = repo_root().join("target").join("bench-host");
    let written = std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("host.md"), &md))
        .and_then(|_| {
            let json = serde_json::to_string_pretty(&to_json(&settings, &runs))
                .map_err(std::io::Error::other)?;
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
