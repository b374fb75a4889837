//! Two host-service replicas on one PostgreSQL behind one Envoy, and one of them SIGKILLed while
//! it holds open streams and runs a stage: every call still completes exactly once, the dead
//! replica's recordings are finished by the survivor up to the documented loss bound, and the
//! survivor takes every new call while the other is down and after it is back.

use e2e::stack::{active_streams, HostOptions, HostService};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{http_client, poll};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twilio_sim::report::{Outcome, Report};
use twilio_sim::CallConfig;

/// The legacy bug, with the `<Connect action>` that ends each call at the host service.
const LEGACY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
    <Record maxLength=\"60\"/>\
    <Connect action=\"https://voice.example.com/webhook/stream_ended\">\
    <Stream url=\"wss://voice.example.com/ws/twilio-media\"/></Connect></Response>";

/// Each engine call of the test engines takes this long, so stages are in flight when the kill
/// comes.
const ENGINE_DELAY_MS: u64 = 1500;
/// A replica silent this long is dead (the minimum), and a stage's lease lapses as fast.
const REPLICA_TIMEOUT_MS: &str = "3000";
const LEASE_MS: &str = "3000";
/// `recording.reorder_window_ms` (the default): a SIGKILL loses at most about twice this of the
/// audio still in memory (docs/host-service.md, "Recording").
const REORDER_WINDOW_MS: i64 = 1000;

/// `psql` against the test's database: one value per line, columns split by `|`.
fn sql(url: &str, query: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query])
        .output()
        .expect("psql (Debian postgresql-client)");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn count(url: &str, query: &str) -> i64 {
    sql(url, query).parse().unwrap()
}

fn options(listen: SocketAddr, db: &str, shared: &Path, engine_log: &Path) -> HostOptions {
    HostOptions {
        listen: Some(listen),
        env: [
            ("HOST_SERVICE_DATABASE_URL", db.to_owned()),
            // One shared recordings volume for both replicas, as a Kubernetes RWX claim.
            ("HOST_SERVICE_DATA_DIR", shared.display().to_string()),
            (
                "HOST_SERVICE_DATABASE_REPLICA_TIMEOUT_MS",
                REPLICA_TIMEOUT_MS.into(),
            ),
            ("HOST_SERVICE_PIPELINE_LEASE_MS", LEASE_MS.into()),
            ("HOST_SERVICE_PIPELINE_BACKOFF_BASE_MS", "200".into()),
            ("HOST_SERVICE_PIPELINE_BACKOFF_CAP_MS", "1000".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        test_engines: Some(test_engines::Config {
            delay_ms: ENGINE_DELAY_MS,
            log: Some(engine_log.to_owned()),
            fail_first: 0,
        }),
        ..HostOptions::default()
    }
}

fn place(cfg: &CallConfig, seconds: usize) -> tokio::task::JoinHandle<Report> {
    let mut cfg = cfg.clone();
    // Mu-law silence: the test engines transcribe any audio the same way.
    cfg.audio = Arc::new(vec![0xFF; 8000 * seconds]);
    tokio::spawn(async move {
        let client = twilio_sim::call::client().unwrap();
        twilio_sim::place_call(&client, &cfg).await
    })
}

/// The reports of calls placed with [`place`], once they have all ended.
async fn reports(calls: Vec<tokio::task::JoinHandle<Report>>) -> Vec<Report> {
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Calls placed while both replicas (or the survivor alone) are up must run as if nothing
/// happened.
fn assert_ran(reports: &[Report], when: &str) {
    for r in reports {
        assert_eq!(r.outcome, Outcome::StreamRan, "{when}: {}", r.render());
        assert!(r.problems.is_empty(), "{when}: {}", r.render());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_and_mid_stage_loses_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let pg = tokio::task::spawn_blocking(test_support::PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let db = pg.database("voice").unwrap();
    let shared = dir.path().join("shared");
    let engine_log = dir.path().join("engines.log");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&shared, &a_dir, &b_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (a_addr, b_addr) = (
        e2e::free_local_addr().unwrap(),
        e2e::free_local_addr().unwrap(),
    );
    let (a, b) = tokio::try_join!(
        HostService::start_with(&a_dir, options(a_addr, &db, &shared, &engine_log)),
        HostService::start_with(&b_dir, options(b_addr, &db, &shared, &engine_log))
    )
    .unwrap();
    let mut a = Some(a);
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", LEGACY_TWIML))
        .await
        .unwrap();
    // Envoy lives as long as `_envoy`: to the end of the test.
    let (_envoy, mut cfg) = crate::common::two_replicas(backend.addr(), a_addr, b_addr).await;
    cfg.speed = 1.0;

    // Long calls keep streams open on both replicas; short ones, placed every half second until
    // the kill, keep feeding the pipeline, so a's workers are soon in an engine stage.
    let mut first = Vec::new();
    for _ in 0..6 {
        first.push(place(&cfg, 15));
    }
    let stop_feeding = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = tokio::spawn({
        let (cfg, stop) = (cfg.clone(), Arc::clone(&stop_feeding));
        async move {
            let mut placed = Vec::new();
            let mut every = tokio::time::interval(Duration::from_millis(500));
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                every.tick().await;
                placed.push(place(&cfg, 1));
            }
            placed
        }
    });
    let http = http_client();
    let a_pid = a.as_ref().unwrap().pid();
    let a_name = sql(
        &db,
        &format!("SELECT id FROM replicas WHERE id LIKE '%-{a_pid}-%'"),
    );
    assert!(!a_name.is_empty(), "replica a is not registered");
    // Kill a while it holds a stream and runs an engine stage (its workers are `{pid}-...`).
    let running_on_a = format!(
        "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner LIKE '{a_pid}-%' \
         AND stage IN ('transcribe', 'extract')"
    );
    poll(
        Duration::from_secs(30),
        "replica a streaming and in a stage",
        || async {
            let streams = active_streams(&http, a_addr).await?;
            (streams > 0 && count(&db, &running_on_a) > 0).then_some(())
        },
    )
    .await
    .unwrap();
    a.as_mut().unwrap().kill().unwrap();
    let killed_at_ms = wall_ms();
    let open_on_a = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM streams WHERE replica = '{a_name}' \
             AND status IN ('streaming', 'recording')"
        ),
    );
    assert!(open_on_a > 0);
    stop_feeding.store(true, std::sync::atomic::Ordering::SeqCst);
    first.extend(feeder.await.unwrap());

    // While a is dead: new calls, one every half second, all taken by b (Envoy retries a
    // refused connect on the other replica, then leaves the dead one out).
    let mut during = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(500));
    for _ in 0..4 {
        every.tick().await;
        during.push(place(&cfg, 1));
    }
    // b takes over a's open streams once a has been silent for the timeout.
    poll(
        Duration::from_secs(30),
        "b to finish a's open streams",
        || async {
            let left = count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM streams WHERE replica = '{a_name}' \
                 AND status IN ('streaming', 'recording')"
                ),
            );
            (left == 0).then_some(())
        },
    )
    .await
    .unwrap();
    let during = reports(during).await;
    assert_ran(&during, "while replica a was dead");

    // a comes back on its address, with the same database and volume.
    drop(a.take());
    let a = HostService::start_with(&a_dir, options(a_addr, &db, &shared, &engine_log))
        .await
        .unwrap();
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(place(&cfg, 1));
    }
    let after = reports(after).await;
    assert_ran(&after, "after replica a restarted");
    let first = reports(first).await;
    // Every call reached the host (the killed streams too: their `<Connect action>` webhook
    // ended the call on b).
    let all: Vec<&Report> = first.iter().chain(&during).chain(&after).collect();
    for r in &all {
        assert!(
            r.fetches
                .iter()
                .any(|f| f.public_url.ends_with("/webhook/stream_ended") && f.status == Some(200)),
            "{}",
            r.render()
        );
    }
    let calls = all.len() as i64;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM calls"), calls);

    // A stream a died with before its recording file was open left no recording
    // (`not_recorded`): its call fails at once with that error, which is the loss bound at
    // work, not a lost call. Every other call completes, each stage exactly once.
    poll(Duration::from_secs(120), "every call to finish", || async {
        let open = count(
            &db,
            "SELECT COUNT(*) FROM calls WHERE status NOT IN ('completed', 'failed')",
        );
        (open == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\na:\n{}\nb:\n{}",
            sql(&db, "SELECT call_sid, status, recording_status FROM calls"),
            a.log_text(),
            b.log_text()
        )
    });
    let unrecorded = "SELECT call_sid FROM calls c WHERE NOT EXISTS \
         (SELECT 1 FROM streams s WHERE s.call_sid = c.call_sid AND s.status <> 'not_recorded')";
    assert_eq!(
        sql(
            &db,
            "SELECT call_sid FROM calls WHERE status = 'failed' ORDER BY call_sid"
        ),
        sql(&db, &format!("{unrecorded} ORDER BY call_sid")),
        "only calls without any recording may fail; the failed calls' streams and errors:\n{}\n{}",
        sql(
            &db,
            "SELECT s.call_sid, s.replica, s.status, s.close_reason, s.fence FROM streams s \
             JOIN calls c ON c.call_sid = s.call_sid WHERE c.status = 'failed'"
        ),
        sql(
            &db,
            "SELECT e.call_sid, e.stage, e.message FROM call_errors e \
             JOIN calls c ON c.call_sid = e.call_sid WHERE c.status = 'failed'"
        )
    );
    let failed = count(&db, "SELECT COUNT(*) FROM calls WHERE status = 'failed'");
    let completed = calls - failed;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM streams WHERE status = 'not_recorded' \
             AND close_reason <> 'process_died'"
        ),
        0,
        "a stream left unrecorded by anything but a's death"
    );
    let mut jobs = format!("extract|done|{completed}\nrecording|done|{completed}");
    if failed > 0 {
        jobs.push_str(&format!("\nrecording|failed|{failed}"));
    }
    jobs.push_str(&format!("\ntranscribe|done|{completed}"));
    assert_eq!(
        sql(
            &db,
            "SELECT stage, state, COUNT(*) FROM jobs GROUP BY stage, state ORDER BY stage, state"
        ),
        jobs
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM calls WHERE status = 'completed' AND (transcript_json IS NULL \
             OR summary IS NULL OR recording_status <> 'saved')"
        ),
        0
    );
    // Waiting for the dead replica's streams was not an error: no attempt spent, none recorded;
    // a call without a recording failed at its first attempt.
    assert_eq!(
        sql(
            &db,
            "SELECT COUNT(*), COALESCE(MAX(j.attempts), 0) FROM call_errors e \
             JOIN jobs j ON j.call_sid = e.call_sid AND j.stage = 'recording' \
             WHERE e.message = 'no stream of this call was recorded'"
        ),
        format!("{failed}|{}", i64::from(failed > 0))
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM call_errors"), failed);
    // The engines ran once per attempt, and a's killed stage ran again on b: a result was
    // committed once per stage however many times it ran.
    let engine_runs = std::fs::read_to_string(&engine_log)
        .unwrap()
        .lines()
        .count() as i64;
    assert_eq!(
        count(
            &db,
            "SELECT SUM(attempts) FROM jobs WHERE stage IN ('transcribe', 'extract')"
        ),
        engine_runs
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE attempts > 1 AND stage IN ('transcribe', 'extract')"
        ) >= 1,
        "the stage a was running must have been run again"
    );

    // a's open streams were finished by b: repaired, keeping what a had written (all but at
    // most about twice the reorder window before the kill), or, opened too late for a file,
    // not recorded.
    let repaired = sql(
        &db,
        "SELECT started_at_ms, duration_ms FROM streams WHERE status = 'repaired'",
    );
    let not_recorded = count(
        &db,
        "SELECT COUNT(*) FROM streams WHERE status = 'not_recorded'",
    );
    assert_eq!(
        repaired.lines().count() as i64 + not_recorded,
        open_on_a,
        "{repaired}"
    );
    for line in repaired.lines() {
        let (started, duration) = line.split_once('|').unwrap();
        let (started, duration): (i64, i64) = (started.parse().unwrap(), duration.parse().unwrap());
        let streamed = killed_at_ms - started;
        assert!(
            duration >= streamed - 2 * REORDER_WINDOW_MS - 300,
            "a repaired recording kept {duration} ms of the {streamed} ms streamed before the kill"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM streams WHERE status NOT IN ('saved', 'repaired', 'not_recorded')"
        ),
        0
    );
    // Both replicas served calls once a was back.
    assert!(active_streams(&http, a.addr).await.is_some());
    drop(b);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
