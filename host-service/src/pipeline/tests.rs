//! The workers against a real queue: retries wait the backoff (doubling, capped), and a job whose
//! worker vanished is taken over when its lease runs out, not before. (The queue's arithmetic is
//! tested with explicit times in `db::tests`; SQLite answers on its own thread, which tokio's
//! paused clock cannot account for, so these run on short real durations.)

use super::*;
use crate::config::PipelineConfig;
use crate::recording::recorder::{Recorder, RecorderLimits};
use crate::recording::stream::StreamSource;
use crate::recording::twilio::{rest::TwilioClient, TwilioSource};
use crate::store::{CallFacts, CallStatus};

const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const T0: i64 = 1_700_000_000_000;

async fn setup(
    fail_first: u32,
    delay_ms: u64,
    config: PipelineConfig,
) -> (tempfile::TempDir, Arc<Pipeline>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    let wav = dir.path().join("call.wav");
    let mut rec = Recorder::new(
        crate::fsutil::create_private_file(&wav).unwrap(),
        RecorderLimits::default(),
    )
    .unwrap();
    rec.push_inbound(0, &[0x10; 160]).unwrap();
    let (summary, _) = rec.finalize().unwrap();
    let facts = CallFacts::default();
    store
        .stream_started(CALL, "MZ1", &facts, "stream", T0)
        .await
        .unwrap();
    store
        .stream_recording_path("MZ1", &wav.display().to_string())
        .await
        .unwrap();
    store
        .stream_finished(
            "MZ1",
            crate::store::FIRST_FENCE,
            crate::store::StreamStatus::Saved,
            Some(summary.frames),
            (1, 0, 0),
            crate::store::CloseReason::Stopped,
            T0,
        )
        .await
        .unwrap();
    store.call_ended(CALL, &facts, "stream", T0).await.unwrap();
    let engines = test_engines::engines(&test_engines::Config {
        delay_ms,
        log: None,
        fail_first,
    });
    let pipeline = Arc::new(Pipeline {
        engines,
        clock: Clock::starting_at(T0),
        metrics: Arc::new(Metrics::default()),
        config,
        source: Arc::new(StreamSource {
            store: store.clone(),
            recordings_dir: dir.path().to_owned(),
            limits: RecorderLimits::default(),
            space: Arc::new(crate::recording::space::SpaceGuard::new(
                dir.path().to_owned(),
                0,
            )),
        }),
        store,
    });
    (dir, pipeline)
}

async fn wait_completed(p: &Pipeline) -> crate::store::CallDetail {
    test_support::poll(Duration::from_secs(100), "the call to finish", || async {
        let d = p.store.call_detail(CALL).await.unwrap().unwrap();
        (d.status == CallStatus::Completed || d.status == CallStatus::Failed).then_some(d)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn retries_wait_the_backoff_doubling_up_to_the_cap() {
    let config = PipelineConfig {
        workers: 1,
        backoff_base_ms: 1000,
        backoff_cap_ms: 1200,
        poll_ms: 20,
        lease_ms: 60_000,
        ..PipelineConfig::default()
    };
    let (_d, p) = setup(2, 0, config).await;
    let (_tx, rx) = watch::channel(false);
    let workers = p.spawn(rx);
    let d = wait_completed(&p).await;
    assert_eq!(d.status, CallStatus::Completed);
    assert_eq!(d.errors.len(), 4);
    let transcribe = d
        .stages
        .iter()
        .find(|s| s.stage == Stage::Transcribe)
        .unwrap();
    assert_eq!(transcribe.attempts, 3);
    // Failure at f0; the second attempt comes no sooner than 1 s later and fails at f1; the
    // third no sooner than the cap (1.2 s) after that, and before the uncapped 2 s. Scheduling
    // may add a little, never subtract; the exact waits are `backoff_ms`'s unit test.
    let f: Vec<i64> = d
        .errors
        .iter()
        .filter(|e| e.stage == "transcribe")
        .map(|e| e.at_ms)
        .collect();
    assert!(f[1] - f[0] >= 1000, "{f:?}");
    let third = transcribe.started_at_ms.unwrap() - f[1];
    assert!((1200..2000).contains(&third), "{f:?} then {third} ms");
    // The extraction's engine failed twice too, with the same backoff.
    let extract = d.stages.iter().find(|s| s.stage == Stage::Extract).unwrap();
    assert_eq!(extract.attempts, 3);
    for w in workers {
        w.abort();
    }
}

#[tokio::test]
async fn a_vanished_workers_job_is_taken_over_at_lease_expiry() {
    let config = PipelineConfig {
        workers: 1,
        lease_ms: 1000,
        poll_ms: 20,
        ..PipelineConfig::default()
    };
    let (_d, p) = setup(0, 0, config).await;
    // A worker from a dead process holds the recording job.
    let dead = p
        .store
        .claim("dead", p.clock.now_ms(), 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.stage, Stage::Recording);
    let (_tx, rx) = watch::channel(false);
    let workers = p.spawn(rx);
    let d = wait_completed(&p).await;
    assert_eq!(d.status, CallStatus::Completed);
    let rec = d
        .stages
        .iter()
        .find(|s| s.stage == Stage::Recording)
        .unwrap();
    assert_eq!(rec.attempts, 2);
    // Taken over when the lease ran out, not before.
    let taken = rec.started_at_ms.unwrap() - T0;
    assert!((1000..1600).contains(&taken), "{taken}");
    for w in workers {
        w.abort();
    }
}

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// A stand-in for Twilio's media endpoint: serves a 1 s WAV, checks Basic auth and the path,
/// and counts requests.
async fn wav_stand_in() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let mut wav = media::wav::header_i16(2, 8000, 8000).unwrap();
    wav.resize(44 + 8000 * 4, 0);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let wav = wav.clone();
        let counter = counter.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // base64("AC0123456789abcdef0123456789abcdef:token")
            let want = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0b2tlbg==";
            let path = format!("/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE1.wav");
            if auth != want || uri.path() != path {
                return (StatusCode::FORBIDDEN, Vec::new());
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (StatusCode::OK, wav)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

/// A call of the `twilio` source that has ended, with its recording stage queued at `T0`.
async fn twilio_setup(api: &str) -> (tempfile::TempDir, Arc<Pipeline>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    let facts = CallFacts {
        account_sid: Some(ACCOUNT),
        ..CallFacts::default()
    };
    store
        .stream_started(CALL, "MZ1", &facts, "twilio", T0)
        .await
        .unwrap();
    store
        .stream_finished(
            "MZ1",
            crate::store::FIRST_FENCE,
            crate::store::StreamStatus::NotRecorded,
            None,
            (0, 0, 0),
            crate::store::CloseReason::Stopped,
            T0,
        )
        .await
        .unwrap();
    store.call_ended(CALL, &facts, "twilio", T0).await.unwrap();
    let clock = Clock::starting_at(T0);
    let pipeline = Arc::new(Pipeline {
        engines: test_engines::engines(&Default::default()),
        clock: clock.clone(),
        metrics: Arc::new(Metrics::default()),
        // Two attempts: three waits that counted as attempts would fail the call.
        config: PipelineConfig {
            max_attempts: 2,
            backoff_cap_ms: 120_000,
            ..PipelineConfig::default()
        },
        source: Arc::new(TwilioSource {
            store: store.clone(),
            clock,
            client: Some(TwilioClient::new(api, Some(ACCOUNT.into()), "token".into()).unwrap()),
            public_base_url: None,
            deadline_ms: 3_600_000,
            recordings_dir: dir.path().to_owned(),
            db_timeout: std::time::Duration::from_secs(2),
        }),
        store,
    });
    (dir, pipeline)
}

/// Claim the due job (there must be one) and run it.
async fn run_due(p: &Pipeline) -> Stage {
    let job = p
        .store
        .claim("w", p.clock.now_ms(), 60_000)
        .await
        .unwrap()
        .expect("a due job");
    let stage = job.stage;
    p.run_job("w", job).await;
    stage
}

async fn recording_job(p: &Pipeline) -> (String, i64, i64) {
    use sqlx::Row;
    let r = sqlx::query("SELECT state, attempts, run_at_ms FROM jobs WHERE stage = 'recording'")
        .fetch_one(p.store.pool())
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test]
async fn a_twilio_recording_completed_five_minutes_late_still_completes_the_call() {
    let (api, hits) = wav_stand_in().await;
    let (dir, p) = twilio_setup(&api).await;
    // Waiting at 0, 2 and 4 minutes: each look is put back, no attempt used.
    for k in 0..3 {
        assert_eq!(run_due(&p).await, Stage::Recording);
        let now = p.clock.now_ms();
        let (state, attempts, run_at) = recording_job(&p).await;
        assert_eq!((state.as_str(), attempts), ("queued", 0), "look {k}");
        // Looked at again after the backoff cap (the clock ran on a little since the look).
        assert!(
            (119_000..=120_000).contains(&(run_at - now)),
            "{}",
            run_at - now
        );
        assert!(p.store.claim("w", now, 1).await.unwrap().is_none());
        p.clock
            .advance(Duration::from_secs(if k < 2 { 120 } else { 60 }));
    }
    // Five minutes after the call: not due for another minute, until the callback comes.
    let now = p.clock.now_ms();
    assert!(p.store.claim("w", now, 1).await.unwrap().is_none());
    let url = format!("{api}/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE1");
    assert!(p
        .store
        .twilio_recording_status(
            CALL,
            "RE1",
            crate::store::RecordingStatus::TwilioCompleted,
            Some(&url),
            now,
        )
        .await
        .unwrap());
    assert_eq!(run_due(&p).await, Stage::Recording);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(run_due(&p).await, Stage::Transcribe);
    assert_eq!(run_due(&p).await, Stage::Extract);
    let d = p.store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(d.status, CallStatus::Completed);
    assert_eq!(d.recording.duration_ms, Some(1000));
    let rec = d
        .stages
        .iter()
        .find(|s| s.stage == Stage::Recording)
        .unwrap();
    assert_eq!(rec.attempts, 1);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let saved = std::fs::metadata(dir.path().join(format!("{CALL}.wav"))).unwrap();
    assert_eq!(saved.len(), 44 + 8000 * 4);
}

#[tokio::test]
async fn a_twilio_recording_that_never_completes_fails_the_call_at_the_deadline() {
    let (api, hits) = wav_stand_in().await;
    let (_d, p) = twilio_setup(&api).await;
    assert_eq!(run_due(&p).await, Stage::Recording);
    p.clock.advance(Duration::from_millis(3_599_000));
    // A second before the deadline it is still only waiting.
    assert_eq!(run_due(&p).await, Stage::Recording);
    assert_eq!(recording_job(&p).await.0, "queued");
    p.clock.advance(Duration::from_millis(121_000));
    assert_eq!(run_due(&p).await, Stage::Recording);
    let d = p.store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(d.status, CallStatus::Failed);
    assert_eq!(recording_job(&p).await.0, "failed");
    assert_eq!(
        d.errors.last().map(|e| e.message.as_str()),
        Some("Twilio's recording did not complete within 3600 s of the call's end (last status: pending)")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}
