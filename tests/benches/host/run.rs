//! One configuration of the bench: a fresh stack (the host replicas, a legacy backend, Envoy),
//! the calls placed over the ramp, and what each replica measured of itself.

use crate::procfs::{
    clock_ticks_per_s, cpu_ticks, cpu_ticks_of, load_average, machine_ticks, postgres_pids,
    proc_status_kb, thread_sched, SchedShare,
};
use crate::{
    Build, Settings, CALL_TIMEOUT, FRAME_MS, LEGACY_TWIML, MAX_SOCKETS, MULAW_SILENCE, SAMPLE_EVERY,
};
use e2e::histogram::Buckets;
use e2e::stack::{active_streams, HostOptions, HostService, AUTH_TOKEN, PUBLIC_HOST};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{http_client, poll, Envoy, EnvoySetup};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_sim::report::{Outcome, Report};
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

/// Every replica's `host_frame_lag_seconds` now, added up.
pub async fn lag_now(hosts: &[HostService]) -> Option<Buckets> {
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
pub struct ReplicaResult {
    pub peak_streams: u64,
    pub frames_in: u64,
    pub lag: Option<Buckets>,
    pub rss_before: u64,
    pub rss_peak: u64,
    pub cpu_s: f64,
    pub rejected: u64,
    pub closes: Vec<String>,
}

pub struct RunResult {
    pub build: &'static str,
    pub replicas: usize,
    pub database: &'static str,
    pub load_at_start: String,
    pub placed: usize,
    pub planned: usize,
    pub ramp_stopped: bool,
    pub peak_total: u64,
    pub ran_fully: usize,
    pub failed: usize,
    pub frames_sent: u64,
    pub frames_expected: u64,
    pub time_to_stream_ms: Option<(f64, f64)>,
    pub problems: Vec<(String, usize)>,
    pub wall_s: f64,
    pub envoy_overflows: Vec<(String, String)>,
    /// The lag of the frames handled while every placed stream was open (from the moment the
    /// last one opened to the first hang-up), and how long that lasted.
    pub steady: Option<(Duration, Buckets)>,
    /// Over the same window, where each process's threads spent the time (the hosts, Envoy,
    /// the callers): a frame late while every one ran below a core waited on something else.
    pub steady_sched: Vec<(String, SchedShare)>,
    /// The share of the machine's CPU time that was busy over that window (every process).
    pub steady_machine_busy: Option<f64>,
    /// CPU seconds of Envoy and of this process (the simulated callers and the legacy backend).
    pub envoy_cpu_s: f64,
    pub callers_cpu_s: f64,
    /// CPU seconds of the PostgreSQL server and its backends, when the run has one.
    pub postgres_cpu_s: Option<f64>,
    pub hosts: Vec<ReplicaResult>,
}

impl RunResult {
    pub fn frames_in(&self) -> u64 {
        self.hosts.iter().map(|h| h.frames_in).sum()
    }

    pub fn lag(&self) -> Option<Buckets> {
        let all: Vec<Buckets> = self.hosts.iter().filter_map(|h| h.lag.clone()).collect();
        Buckets::merge(&all)
    }

    pub fn cpu_us_per_frame(&self) -> Option<f64> {
        let cpu: f64 = self.hosts.iter().map(|h| h.cpu_s).sum();
        let frames = self.frames_in();
        (frames > 0).then(|| cpu * 1e6 / frames as f64)
    }
}

/// One configuration: start the stack, place the calls, read what each replica measured.
pub async fn run(
    settings: &Settings,
    build: &Build,
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
    // The connection cap must stay above the socket cap; a release from before
    // `http.max_connections` refuses the key.
    match build {
        Build::Current => {
            env.push(("HOST_SERVICE_HTTP_MAX_CONNECTIONS".into(), "4100".into()));
        }
        Build::Floor(_) => env.push((crate::floor::SERVE_ENV.into(), "1".into())),
        Build::Baseline(_) => {}
    }
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
        binary: build.binary(),
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
    let mut setup = EnvoySetup::new(backend.addr(), hosts[0].addr)
        .auth_token(AUTH_TOKEN)
        .workers(settings.envoy_workers);
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
    let mut watched: Vec<(String, u32)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("host {i}"), h.pid()))
        .collect();
    watched.push(("Envoy".into(), envoy.pid()));
    watched.push(("callers".into(), std::process::id()));
    let window_start = if all_open && finished.load(Ordering::Relaxed) == 0 {
        let sched: Vec<_> = watched.iter().map(|(_, p)| thread_sched(*p)).collect();
        let machine = machine_ticks();
        // The floor keeps no lag histogram; where its time went is still measured.
        Some((Instant::now(), lag_now(&hosts).await, (sched, machine)))
    } else {
        None
    };
    let mut reports: Vec<Report> = Vec::new();
    if let Some(first) = calls.join_next().await {
        reports.push(first.map_err(|e| format!("a call's task: {e}"))?);
    }
    let (steady, steady_sched, steady_machine_busy) = match window_start {
        Some((t, at_start, (sched_start, machine_start))) => {
            let machine_busy = machine_start.zip(machine_ticks()).and_then(|(a, b)| {
                let all = b.1.saturating_sub(a.1);
                (all > 0).then(|| b.0.saturating_sub(a.0) as f64 / all as f64)
            });
            let span = t.elapsed();
            // Shares of a span this short are ratios of scheduler noise, not where time went.
            let measurable = span >= Duration::from_secs(1);
            let machine_busy = machine_busy.filter(|_| measurable);
            let sched = if measurable {
                watched
                    .iter()
                    .zip(&sched_start)
                    .map(|((name, pid), before)| {
                        let share = SchedShare::between(before, &thread_sched(*pid), span);
                        (name.clone(), share)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let lag = match at_start {
                Some(at_start) => lag_now(&hosts).await.and_then(|end| end.since(&at_start)),
                None => None,
            }
            .map(|b| (span, b));
            (lag, sched, machine_busy)
        }
        None => (None, Vec::new(), None),
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
        build: build.label(),
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
        steady_sched,
        steady_machine_busy,
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
pub fn ran_fully(r: &Report, frames: u64) -> bool {
    r.outcome == Outcome::StreamRan
        && r.streams.len() == 1
        && r.streams
            .iter()
            .all(|s| s.frames_sent == frames && s.error.is_none() && !s.closed_by_server)
}
