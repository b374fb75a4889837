//! The workers against a real queue: retries wait the backoff (doubling, capped), and a job whose
//! worker vanished is taken over when its lease runs out, not before. (The queue's arithmetic is
//! tested with explicit times in `db::tests`; SQLite answers on its own thread, which tokio's
//! paused clock cannot account for, so these run on short real durations.)

use super::*;
use crate::config::PipelineConfig;
use crate::db::CallFacts;
use crate::recording::{Recorder, RecorderLimits};

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
            "saved",
            Some(summary.frames),
            (1, 0, 0),
            "stopped",
            T0,
        )
        .await
        .unwrap();
    store.call_ended(CALL, &facts, "stream", T0).await.unwrap();
    let engines = crate::test_engines::engines(&crate::test_engines::TestEnginesConfig {
        delay_ms,
        log: None,
        fail_first,
    });
    let pipeline = Arc::new(Pipeline {
        store,
        engines,
        clock: Clock::starting_at(T0),
        metrics: Arc::new(Metrics::default()),
        config,
        source: RecordingSource::Stream,
        recordings_dir: dir.path().to_owned(),
        twilio: None,
    });
    (dir, pipeline)
}

async fn wait_completed(p: &Pipeline) -> crate::db::CallDetail {
    for _ in 0..10_000 {
        let d = p.store.call_detail(CALL).await.unwrap().unwrap();
        if d.status == "completed" || d.status == "failed" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("call never finished");
}

#[tokio::test]
async fn retries_wait_the_backoff_doubling_up_to_the_cap() {
    let config = PipelineConfig {
        workers: 1,
        backoff_base_ms: 1000,
        backoff_cap_ms: 1500,
        poll_ms: 20,
        lease_ms: 60_000,
        ..PipelineConfig::default()
    };
    let (_d, p) = setup(2, 0, config).await;
    let (_tx, rx) = watch::channel(false);
    let workers = p.spawn(rx);
    let d = wait_completed(&p).await;
    assert_eq!(d.status, "completed");
    assert_eq!(d.errors.len(), 4);
    let transcribe = d.stages.iter().find(|s| s.stage == "transcribe").unwrap();
    assert_eq!(transcribe.attempts, 3);
    // Failure at f0; the second attempt 1 s later fails at f1; the third comes 1.5 s (the
    // cap, not 2 s) after that. Scheduling may add a little, never subtract.
    let f: Vec<i64> = d
        .errors
        .iter()
        .filter(|e| e.stage == "transcribe")
        .map(|e| e.at_ms)
        .collect();
    let within = |gap: i64, want: i64| (want..want + 450).contains(&gap);
    assert!(within(f[1] - f[0], 1000), "{f:?}");
    assert!(
        within(transcribe.started_at_ms.unwrap() - f[1], 1500),
        "{f:?} then {:?}",
        transcribe.started_at_ms
    );
    // The extraction's engine failed twice too, with the same backoff.
    let extract = d.stages.iter().find(|s| s.stage == "extract").unwrap();
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
    assert_eq!(d.status, "completed");
    let rec = d.stages.iter().find(|s| s.stage == "recording").unwrap();
    assert_eq!(rec.attempts, 2);
    // Taken over when the lease ran out, not before.
    let taken = rec.started_at_ms.unwrap() - T0;
    assert!((1000..1600).contains(&taken), "{taken}");
    for w in workers {
        w.abort();
    }
}
