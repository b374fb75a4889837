//! The host service on a real PostgreSQL that stops answering (the whole cluster SIGSTOPped, as a
//! hung server or a stalled failover looks to its clients) while calls stream at real time: the
//! liveness probe never depends on the database, readiness says why it is out, the call's socket
//! stays open, and once the database is back the call completes with all its audio. With two
//! replicas, the one that comes back first never repairs the other's live stream, whatever its
//! own clock says. A stream whose `start` finds the database stopped is accepted and kept: its
//! rows land once the database is back, in order.

use e2e::stack::{HostOptions, HostService, AUTH_TOKEN, PUBLIC_HOST};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{http_client, poll, Envoy, EnvoySetup};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::PgCluster;
use twilio_sim::report::{Outcome, Report};

/// A voice backend that hands every call to the host service, whose `<Connect action>` ends it.
const TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
    <Connect action=\"https://voice.example.com/webhook/stream_ended\">\
    <Stream url=\"wss://voice.example.com/ws/twilio-media\"/></Connect></Response>";

/// Debian's libfaketime (the `faketime` package), for code with threads.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

fn host_options(listen: SocketAddr, db: &str, shared: &std::path::Path) -> HostOptions {
    HostOptions {
        listen: Some(listen),
        env: [
            ("HOST_SERVICE_DATABASE_URL", db.to_owned()),
            ("HOST_SERVICE_DATA_DIR", shared.display().to_string()),
            ("HOST_SERVICE_PIPELINE_BACKOFF_BASE_MS", "200".into()),
            ("HOST_SERVICE_PIPELINE_BACKOFF_CAP_MS", "1000".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        test_engines: Some(test_engines::Config::default()),
        ..HostOptions::default()
    }
}

/// A PostgreSQL cluster started off the runtime's threads, with one database.
async fn postgres() -> (PgCluster, String) {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let db = pg.database("voice").unwrap();
    (pg, db)
}

/// Envoy with the filter in front of the voice backend and the one host service `host`.
async fn envoy_to(host: SocketAddr) -> (Envoy, RawUpstream, twilio_sim::CallConfig) {
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", TWIML))
        .await
        .unwrap();
    let envoy = Envoy::start(&EnvoySetup::new(backend.addr(), host).auth_token(AUTH_TOKEN))
        .await
        .unwrap();
    let mut cfg =
        twilio_sim::CallConfig::new(format!("https://{PUBLIC_HOST}/webhook/incoming_call"));
    cfg.map = twilio_sim::urls::UrlMap::local(&envoy.listener.to_string()).unwrap();
    cfg.auth_token = Some(AUTH_TOKEN.into());
    cfg.speed = 1.0;
    (envoy, backend, cfg)
}

/// One host service on its own PostgreSQL, with Envoy and the voice backend in front.
struct OneHost {
    pg: PgCluster,
    addr: SocketAddr,
    host: HostService,
    cfg: twilio_sim::CallConfig,
    _parts: (Envoy, RawUpstream, tempfile::TempDir),
}

async fn one_host() -> OneHost {
    let dir = tempfile::tempdir().unwrap();
    let (pg, db) = postgres().await;
    let addr = e2e::free_local_addr().unwrap();
    let shared = dir.path().join("data");
    let host = HostService::start_with(dir.path(), host_options(addr, &db, &shared))
        .await
        .unwrap();
    let (envoy, backend, cfg) = envoy_to(addr).await;
    OneHost {
        pg,
        addr,
        host,
        cfg,
        _parts: (envoy, backend, dir),
    }
}

/// Place a call of `seconds` of caller audio (mu-law silence), at real time.
fn place(cfg: &twilio_sim::CallConfig, seconds: usize) -> tokio::task::JoinHandle<Report> {
    let mut cfg = cfg.clone();
    cfg.audio = Arc::new(vec![0xFF; 8000 * seconds]);
    tokio::spawn(async move {
        let client = twilio_sim::call::client().unwrap();
        twilio_sim::place_call(&client, &cfg).await
    })
}

/// `/livez`'s `active_streams`, asked with a 1 s deadline.
async fn streams_open(client: &reqwest::Client, addr: SocketAddr) -> Option<u64> {
    let r = client
        .get(format!("http://{addr}/livez"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?;
    r.json::<serde_json::Value>().await.ok()?["active_streams"].as_u64()
}

/// What the probes said while the database was paused.
#[derive(Debug, Default)]
struct Probes {
    livez: usize,
    readyz_503: usize,
    reasons: Vec<String>,
    failures: Vec<String>,
}

/// Ask `/livez` (1 s deadline, must be 200) and `/readyz` (2 s deadline, any answer) every
/// 250 ms until `stop` turns true.
fn watch_probes(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Probes> {
    tokio::spawn(async move {
        let client = http_client();
        let mut seen = Probes::default();
        let mut every = tokio::time::interval(Duration::from_millis(250));
        while !stop.load(Ordering::SeqCst) {
            every.tick().await;
            let live = client
                .get(format!("http://{addr}/livez"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            match live {
                Ok(r) if r.status() == 200 => seen.livez += 1,
                Ok(r) => seen
                    .failures
                    .push(format!("/livez answered {}", r.status())),
                Err(e) => seen.failures.push(format!("/livez: {e}")),
            }
            let ready = client
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            match ready {
                Ok(r) if r.status() == 503 => {
                    seen.readyz_503 += 1;
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    for reason in body["reasons"].as_array().into_iter().flatten() {
                        let reason = reason.as_str().unwrap_or_default().to_owned();
                        if !seen.reasons.contains(&reason) {
                            seen.reasons.push(reason);
                        }
                    }
                }
                Ok(r) if r.status() == 200 => {}
                Ok(r) => seen
                    .failures
                    .push(format!("/readyz answered {}", r.status())),
                Err(e) => seen.failures.push(format!("/readyz: {e}")),
            }
        }
        seen
    })
}

/// The one stream of a call that ran without a hitch as the simulator saw it.
fn ran_whole(report: &Report) -> u64 {
    assert_eq!(report.outcome, Outcome::StreamRan, "{}", report.render());
    assert!(report.problems.is_empty(), "{}", report.render());
    let [stream] = report.streams.as_slice() else {
        panic!("{}", report.render())
    };
    assert!(!stream.closed_by_server, "{}", report.render());
    assert!(
        report
            .fetches
            .iter()
            .any(|f| f.public_url.ends_with("/webhook/stream_ended") && f.status == Some(200)),
        "{}",
        report.render()
    );
    stream.audio_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rides_out_a_paused_database() {
    // Dropped in reverse: the host first, Envoy and the directory last.
    let OneHost {
        _parts,
        pg,
        addr,
        host,
        cfg,
    } = one_host().await;
    let http = http_client();

    // 12 s of audio; the database stops once the stream runs and stays stopped 15 s, so the
    // caller's `stop` and the `stream_ended` webhook both come while it answers nothing.
    let call = place(&cfg, 12);
    // Frames counted: the stream's start is stored and its recording open.
    poll(
        Duration::from_secs(30),
        "the stream to carry audio",
        || async {
            let metrics = host.metrics_text().await.ok()?;
            let frames: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("host_frames_in_total "))?
                .parse()
                .ok()?;
            (frames >= 50).then_some(())
        },
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let probes = watch_probes(addr, stop.clone());
    pg.pause().unwrap();
    let paused_at = Instant::now();
    let report = call.await.unwrap();
    assert!(
        paused_at.elapsed() < Duration::from_secs(15),
        "the call must end while the database is paused; it took {:?}\n{}\n{}",
        paused_at.elapsed(),
        report.render(),
        host.log_text()
    );
    let audio_ms = ran_whole(&report);
    assert_eq!(audio_ms, 12_000);
    let paused_for = Duration::from_secs(15).saturating_sub(paused_at.elapsed());
    poll(
        paused_for + Duration::from_secs(1),
        "15 s of pause",
        || async { (paused_at.elapsed() >= Duration::from_secs(15)).then_some(()) },
    )
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let probes = probes.await.unwrap();
    pg.resume().unwrap();
    assert!(probes.failures.is_empty(), "{probes:?}");
    assert!(probes.livez >= 10, "{probes:?}");
    assert!(probes.readyz_503 >= 1, "{probes:?}");
    assert!(
        probes
            .reasons
            .contains(&"database: no answer within 500 ms".to_owned()),
        "{probes:?}"
    );

    // Back: the stream's and the call's ends reach the database, and the call completes with
    // the whole recording.
    let finished = host
        .finished_call(&report.call_sid, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", host.log_text()));
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(finished["recording"]["status"], "saved", "{finished:#}");
    assert_eq!(finished["recording"]["duration_ms"], 12_000, "{finished:#}");
    assert_eq!(finished["streams"][0]["status"], "saved", "{finished:#}");
    assert_eq!(
        finished["streams"][0]["close_reason"], "stopped",
        "{finished:#}"
    );
    let metrics = host.metrics_text().await.unwrap();
    for line in [
        "host_webhooks_total{hook=\"stream_ended\",result=\"queued\"} 1",
        "host_db_writes_pending 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("host_db_write_failures_total{write=\"stream_finished\"}")),
        "{metrics}"
    );
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_starts_while_the_database_is_paused_is_kept() {
    // Dropped in reverse: the host first, Envoy and the directory last.
    let OneHost {
        _parts,
        pg,
        addr,
        host,
        cfg,
    } = one_host().await;
    let http = http_client();

    // The database stops before the call comes: its stream's `start` finds no database.
    pg.pause().unwrap();
    let paused_at = Instant::now();
    let call = place(&cfg, 10);
    poll(Duration::from_secs(20), "the stream to open", || async {
        (streams_open(&http, addr).await? == 1).then_some(())
    })
    .await
    .unwrap();
    // Requests that read the database answer within their deadline all the same.
    let asked = Instant::now();
    let calls = http
        .get(format!("http://{addr}/api/calls"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(calls.status(), 503);
    let body: serde_json::Value = calls.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    assert_eq!(
        body["error"]["message"], "database: no answer within 2000 ms",
        "{body}"
    );
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(!metrics.contains("host_jobs{"), "{metrics}");
    assert!(metrics.contains("host_db_writes_pending 2"), "{metrics}");
    poll(Duration::from_secs(10), "6 s of pause", || async {
        (paused_at.elapsed() >= Duration::from_secs(6)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(streams_open(&http, addr).await, Some(1));
    pg.resume().unwrap();

    // The socket carried the whole call; the start, the path and the end landed in order.
    let report = call.await.unwrap();
    assert_eq!(ran_whole(&report), 10_000);
    let finished = host
        .finished_call(&report.call_sid, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", host.log_text()));
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(finished["recording"]["status"], "saved", "{finished:#}");
    assert_eq!(finished["recording"]["duration_ms"], 10_000, "{finished:#}");
    let stream = &finished["streams"][0];
    assert_eq!(stream["status"], "saved", "{finished:#}");
    assert_eq!(stream["close_reason"], "stopped", "{finished:#}");
    assert_eq!(stream["duration_ms"], 10_000, "{finished:#}");
    assert_eq!(finished["streams"].as_array().map(Vec::len), Some(1));
    let log = host.log_text();
    assert!(log.contains("stream_start_deferred"), "{log}");
    assert!(!log.contains("stream_fenced"), "{log}");
    let metrics = host.metrics_text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "host_db_writes_pending 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("host_db_write_failures_total{write=\"stream_started\"}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_is_never_repaired_after_an_outage_or_under_a_skewed_clock() {
    assert!(
        std::path::Path::new(LIBFAKETIME).is_file(),
        "{LIBFAKETIME} is missing: `make setup` installs Debian's faketime"
    );
    let dir = tempfile::tempdir().unwrap();
    let (pg, db) = postgres().await;
    let shared = dir.path().join("shared");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&shared, &a_dir, &b_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (a_addr, b_addr) = (
        e2e::free_local_addr().unwrap(),
        e2e::free_local_addr().unwrap(),
    );
    // The shortest timeout: a replica silent 3 s is dead, so the 20 s pause is far past it.
    let timeout = (
        "HOST_SERVICE_DATABASE_REPLICA_TIMEOUT_MS".to_owned(),
        "3000".to_owned(),
    );
    let mut a_options = host_options(a_addr, &db, &shared);
    a_options.env.push(timeout.clone());
    // a's clock runs 30 s ahead: by it, b's heartbeats are always older than the timeout.
    for (k, v) in [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "+30s"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ] {
        a_options.env.push((k.to_owned(), v.to_owned()));
    }
    let mut b_options = host_options(b_addr, &db, &shared);
    b_options.env.push(timeout);
    let ahead_from = utc_in(25);
    let (a, b) = tokio::try_join!(
        HostService::start_with(&a_dir, a_options),
        HostService::start_with(&b_dir, b_options)
    )
    .unwrap();
    // a's clock is really off: its log's first line is stamped 25 to 40 s ahead of this
    // machine's clock (which it read before a started and after).
    let first_line = a.log_text().lines().next().unwrap_or_default().to_owned();
    let logged = first_line.split('.').next().unwrap_or_default();
    assert!(
        (ahead_from.as_str()..=utc_in(40).as_str()).contains(&logged),
        "a's clock is not 30 s ahead ({ahead_from} ..): {first_line}"
    );

    // Every call goes to b; a shares the database, the volume and the pipeline.
    let (_envoy, _backend, cfg) = envoy_to(b_addr).await;
    let http = http_client();
    let call = place(&cfg, 30);
    poll(Duration::from_secs(30), "b's stream to open", || async {
        (streams_open(&http, b_addr).await? == 1).then_some(())
    })
    .await
    .unwrap();
    // Streaming on b for a few heartbeats with a's clock skewed, then 20 s without the
    // database, then the rest of the call with it.
    let b_alive = || {
        let http = http.clone();
        async move { streams_open(&http, b_addr).await }
    };
    let started = Instant::now();
    poll(Duration::from_secs(10), "3 s of streaming", || async {
        (started.elapsed() >= Duration::from_secs(3)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(b_alive().await, Some(1));
    pg.pause().unwrap();
    let paused_at = Instant::now();
    poll(Duration::from_secs(25), "20 s of pause", || async {
        (paused_at.elapsed() >= Duration::from_secs(20)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        b_alive().await,
        Some(1),
        "b's socket closed during the pause"
    );
    pg.resume().unwrap();
    let report = call.await.unwrap();
    let audio_ms = ran_whole(&report);
    assert_eq!(audio_ms, 30_000);
    let finished = b
        .finished_call(&report.call_sid, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\na:\n{}\nb:\n{}", a.log_text(), b.log_text()));
    // b's stream was never taken from it: saved by b with every frame, never repaired.
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(finished["streams"][0]["status"], "saved", "{finished:#}");
    assert_eq!(
        finished["streams"][0]["close_reason"], "stopped",
        "{finished:#}"
    );
    assert_eq!(
        finished["streams"][0]["duration_ms"], 30_000,
        "{finished:#}"
    );
    assert_eq!(finished["recording"]["duration_ms"], 30_000, "{finished:#}");
    for (name, host) in [("a", &a), ("b", &b)] {
        let log = host.log_text();
        for event in [
            "recording_repaired",
            "stream_fenced",
            "finished recordings of a replica",
        ] {
            assert!(!log.contains(event), "{name} logged {event}:\n{log}");
        }
    }
    // Each stage ran once: a's clock did not make b's leases look expired.
    let stages = finished["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "{finished:#}");
    for stage in stages {
        assert_eq!(stage["attempts"], 1, "{finished:#}");
        assert_eq!(stage["state"], "done", "{finished:#}");
    }
}

/// The UTC time `secs` from now by this machine's clock, as tracing stamps its lines
/// (`2026-12-07T02:10:11`, which sorts as it reads), from GNU date.
fn utc_in(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{secs:+} seconds"),
            "+%Y-%m-%dT%H:%M:%S",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
