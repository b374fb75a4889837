//! Starts on two replicas of one database: a start held back by an outage that lands after
//! the other replica ran the call's recording stage, and the cap on a call's open streams
//! counted across replicas.

use super::*;

const WINDOW: i64 = 600_000;
const ENDED: i64 = T0 + 10;

/// The call ended on replica `b` with no stream stored; its recording stage claimed there.
async fn ended_and_claimed(b: &Store) -> Job {
    assert!(b.call_ended(CALL, &facts(), "stream", ENDED).await.unwrap());
    let job = b.claim("b-w0", ENDED, 60_000).await.unwrap().unwrap();
    assert_eq!(job.stage, Stage::Recording);
    job
}

/// Replica `a`'s start of "MZlate" (its socket opened at T0) landing at `landed`.
async fn late_start(a: &Store, landed: i64) -> StreamStart {
    let admit = Admit::Late {
        now: landed,
        reopen_within_ms: WINDOW,
    };
    a.stream_started_as(CALL, "MZlate", &facts(), "stream", T0, admit)
        .await
        .unwrap()
}

async fn stage(store: &Store, stage: Stage) -> Option<JobRow> {
    let detail = store.call_detail(CALL).await.unwrap().unwrap();
    detail.stages.into_iter().find(|j| j.stage == stage)
}

/// The recording stage failed on `b` (no stream to make a recording of); `a`'s start lands
/// 5 s later: the stage is queued again, due at once, and finds the stream open.
async fn a_late_start_reopens_a_recording_stage_that_failed_without_it(backend: Dialect) {
    let (holder, b) = store_on(backend).await;
    let a = another_replica(&holder, &b).await;
    let job = ended_and_claimed(&b).await;
    let outcome = b
        .fail(&job, "b-w0", "no stream", false, 3, (1, 1), ENDED + 1)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        late_start(&a, ENDED + 5_000).await,
        StreamStart::Started { idx: 0 }
    );
    let row = stage(&b, Stage::Recording).await.unwrap();
    assert_eq!(
        (row.state, row.attempts, row.run_at_ms),
        (JobState::Queued, 0, ENDED + 5_000)
    );
    assert_eq!(
        row.last_error.as_deref(),
        Some("stream MZlate reached the database 5 s after the call ended: waiting for it")
    );
    let detail = b.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(detail.status, CallStatus::Ended);
    assert_eq!(detail.recording.status, RecordingStatus::Pending);
    let again = b
        .claim("b-w1", ENDED + 5_000, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.stage), (job.id, Stage::Recording));
    assert_eq!(b.open_streams(CALL).await.unwrap(), 1);
}

/// The stage is running on `b` when `a`'s start lands: its attempt's result is dropped (it
/// looked before the stream was there) and the stage runs again.
async fn a_late_start_drops_the_result_of_a_running_recording_stage(backend: Dialect) {
    let (holder, b) = store_on(backend).await;
    let a = another_replica(&holder, &b).await;
    let job = ended_and_claimed(&b).await;
    late_start(&a, ENDED + 2_000).await;
    let output = StageOutput::Recording {
        path: "/r/other.wav".into(),
        duration_ms: 1,
    };
    assert_eq!(
        b.complete(&job, "b-w0", &output, ENDED + 3_000)
            .await
            .unwrap(),
        Outcome::LeaseLost
    );
    assert_eq!(
        stage(&b, Stage::Recording).await.unwrap().state,
        JobState::Queued
    );
    assert!(stage(&b, Stage::Transcribe).await.is_none());
}

/// The stage already made the call's recording without the stream, and the next stage is
/// queued: the recording is made again, and what came after it goes to run on the new one.
async fn a_late_start_remakes_a_recording_made_without_it(backend: Dialect) {
    let (holder, b) = store_on(backend).await;
    let a = another_replica(&holder, &b).await;
    let job = ended_and_claimed(&b).await;
    let output = StageOutput::Recording {
        path: "/r/other.wav".into(),
        duration_ms: 1,
    };
    assert_eq!(
        b.complete(&job, "b-w0", &output, ENDED + 1).await.unwrap(),
        Outcome::Done
    );
    assert!(stage(&b, Stage::Transcribe).await.is_some());
    late_start(&a, ENDED + 2_000).await;
    assert_eq!(
        stage(&b, Stage::Recording).await.unwrap().state,
        JobState::Queued
    );
    assert!(stage(&b, Stage::Transcribe).await.is_none());
    let detail = b.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(
        (detail.status, detail.recording.status),
        (CallStatus::Ended, RecordingStatus::Pending)
    );
}

/// Past `pipeline.stream_wait_timeout_ms` the stage's own wait would have been over: the call
/// keeps its outcome, and its errors say why the stream is not in its recording.
async fn a_start_landing_past_the_stream_wait_leaves_the_outcome_and_says_why(backend: Dialect) {
    let (holder, b) = store_on(backend).await;
    let a = another_replica(&holder, &b).await;
    let job = ended_and_claimed(&b).await;
    b.fail(&job, "b-w0", "no stream", false, 3, (1, 1), ENDED + 1)
        .await
        .unwrap();
    assert_eq!(
        late_start(&a, ENDED + WINDOW + 1_000).await,
        StreamStart::Started { idx: 0 }
    );
    assert_eq!(
        stage(&b, Stage::Recording).await.unwrap().state,
        JobState::Failed
    );
    assert_eq!(
        b.errors_of(CALL, "stream").await.unwrap(),
        [
            "stream MZlate started before the call ended but reached the database 601 s after its \
          end, past pipeline.stream_wait_timeout_ms (600000 ms): its recording is not part of \
          the call's"
        ]
    );
    assert_eq!(
        b.call_detail(CALL).await.unwrap().unwrap().status,
        CallStatus::Failed
    );
}

/// A stage still queued will find the stream open by itself: the late start leaves it be.
async fn a_late_start_leaves_a_queued_recording_stage_alone(backend: Dialect) {
    let (holder, b) = store_on(backend).await;
    let a = another_replica(&holder, &b).await;
    assert!(b.call_ended(CALL, &facts(), "stream", ENDED).await.unwrap());
    late_start(&a, ENDED + 2_000).await;
    let row = stage(&b, Stage::Recording).await.unwrap();
    assert_eq!(
        (row.state, row.run_at_ms, row.last_error),
        (JobState::Queued, ENDED, None)
    );
}

/// The cap on a call's open streams holds across replicas: two open on `a` and `b` fill a cap
/// of two for both; one finishing frees a place.
async fn the_open_streams_of_a_call_are_capped_across_replicas(backend: Dialect) {
    let (holder, a) = store_on(backend).await;
    let b = another_replica(&holder, &a).await;
    let live = Admit::Live { max_open: Some(2) };
    let start = |store: &Store, sid: &'static str| {
        let store = store.clone();
        async move {
            store
                .stream_started_as(CALL, sid, &facts(), "stream", T0, live)
                .await
                .unwrap()
        }
    };
    assert_eq!(start(&a, "MZ1").await, StreamStart::Started { idx: 0 });
    assert_eq!(start(&b, "MZ2").await, StreamStart::Started { idx: 1 });
    assert_eq!(
        start(&a, "MZ3").await,
        StreamStart::TooManyStreams { open: 2 }
    );
    assert_eq!(
        start(&b, "MZ3").await,
        StreamStart::TooManyStreams { open: 2 }
    );
    assert!(a
        .stream_finished(
            "MZ1",
            FIRST_FENCE,
            StreamStatus::Saved,
            Some(8),
            (1, 0, 0),
            CloseReason::Stopped,
            T0 + 1
        )
        .await
        .unwrap());
    assert_eq!(start(&b, "MZ3").await, StreamStart::Started { idx: 2 });
    assert_eq!(b.open_streams(CALL).await.unwrap(), 2);
}

on_both_engines!(
    a_late_start_reopens_a_recording_stage_that_failed_without_it,
    a_late_start_drops_the_result_of_a_running_recording_stage,
    a_late_start_remakes_a_recording_made_without_it,
    a_start_landing_past_the_stream_wait_leaves_the_outcome_and_says_why,
    a_late_start_leaves_a_queued_recording_stage_alone,
    the_open_streams_of_a_call_are_capped_across_replicas,
);
