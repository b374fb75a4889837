//! The job queue on both engines: claims, leases, backoff, waits, and exactly-once completion.

use super::*;

async fn a_replayed_webhook_queues_nothing_twice(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    assert!(store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap());
    assert!(!store
        .call_ended(CALL, &facts(), "stream", T0 + 5)
        .await
        .unwrap());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let detail = store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(detail.status, CallStatus::Ended);
    assert_eq!(detail.ended_at_ms, Some(T0));
    assert_eq!(detail.from.as_deref(), Some("+15550001111"));
}

async fn stages_run_in_order_and_complete_exactly_once(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let outputs = [
        StageOutput::Recording {
            path: "/r.wav".into(),
            duration_ms: 1200,
        },
        StageOutput::Transcript {
            json: r#"{"text":"hi","segments":[],"engine":"t","model":"m"}"#.into(),
        },
        StageOutput::Extraction {
            summary: "s".into(),
            fields_json: r#"{"a":1}"#.into(),
            engine: "t".into(),
        },
    ];
    for (i, (stage, output)) in Stage::ALL.iter().zip(&outputs).enumerate() {
        let now = T0 + i as i64 * 10;
        let job = store.claim("w1", now, 1000).await.unwrap().unwrap();
        assert_eq!(job.stage, *stage);
        assert_eq!(job.attempts, 1);
        assert_eq!(store.claim("w2", now, 1000).await.unwrap(), None);
        // Another worker cannot complete a job it does not hold.
        assert_eq!(
            store.complete(&job, "w2", output, now + 1).await.unwrap(),
            Outcome::LeaseLost
        );
        assert_eq!(
            store.complete(&job, "w1", output, now + 2).await.unwrap(),
            Outcome::Done
        );
        // Completing again (a replay after a crash) changes nothing.
        assert_eq!(
            store.complete(&job, "w1", output, now + 3).await.unwrap(),
            Outcome::LeaseLost
        );
    }
    assert_eq!(store.claim("w1", T0 + 100, 1000).await.unwrap(), None);
    let d = store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(d.status, CallStatus::Completed);
    assert_eq!(d.recording.status, RecordingStatus::Saved);
    assert_eq!(d.recording.duration_ms, Some(1200));
    assert_eq!(d.transcript.unwrap()["text"], "hi");
    assert_eq!(d.summary.as_deref(), Some("s"));
    assert_eq!(d.fields.unwrap()["a"], 1);
    let stages: Vec<(Stage, JobState, i64)> = d
        .stages
        .iter()
        .map(|j| (j.stage, j.state, j.duration_ms.unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            (Stage::Recording, JobState::Done, 2),
            (Stage::Transcribe, JobState::Done, 2),
            (Stage::Extract, JobState::Done, 2)
        ]
    );
}

async fn an_expired_lease_hands_the_job_to_another_worker(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let a = store.claim("a", T0, 1000).await.unwrap().unwrap();
    assert_eq!(store.claim("b", T0 + 999, 1000).await.unwrap(), None);
    // A renews: still held past the first expiry.
    assert!(store.renew(&a, "a", T0 + 900, 1000).await.unwrap());
    assert_eq!(store.claim("b", T0 + 1500, 1000).await.unwrap(), None);
    // A dies; at T0 + 1900 the lease is gone.
    let b = store.claim("b", T0 + 1900, 1000).await.unwrap().unwrap();
    assert_eq!((b.id, b.attempts), (a.id, 2));
    assert!(!store.renew(&a, "a", T0 + 1901, 1000).await.unwrap());
    let out = StageOutput::Recording {
        path: "/x.wav".into(),
        duration_ms: 1,
    };
    assert_eq!(
        store.complete(&a, "a", &out, T0 + 1950).await.unwrap(),
        Outcome::LeaseLost
    );
    assert_eq!(
        store.complete(&b, "b", &out, T0 + 1960).await.unwrap(),
        Outcome::Done
    );
    assert_eq!(job_row(&store, "recording").await.0, "done");
}

async fn failures_back_off_exponentially_then_fail_the_call(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let mut now = T0;
    let mut delays = Vec::new();
    loop {
        let job = store.claim("w", now, 1000).await.unwrap().unwrap();
        match store
            .fail(&job, "w", "engine busy", true, 4, (100, 250), now)
            .await
            .unwrap()
        {
            Outcome::Retry { run_at_ms } => {
                delays.push(run_at_ms - now);
                // Not due a millisecond early.
                assert_eq!(store.claim("w", run_at_ms - 1, 1000).await.unwrap(), None);
                now = run_at_ms;
            }
            Outcome::Failed => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [100, 200, 250]);
    let (state, attempts, _, error) = job_row(&store, "recording").await;
    assert_eq!((state.as_str(), attempts), ("failed", 4));
    assert_eq!(error.as_deref(), Some("engine busy"));
    let d = store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(d.status, CallStatus::Failed);
    assert_eq!(d.errors.len(), 4);
    assert!(d
        .errors
        .iter()
        .all(|e| e.stage == "recording" && e.message == "engine busy"));
}

async fn a_permanent_error_fails_at_once(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let job = store.claim("w", T0, 1000).await.unwrap().unwrap();
    assert_eq!(
        store
            .fail(&job, "w", "bad audio", false, 5, (100, 1000), T0)
            .await
            .unwrap(),
        Outcome::Failed
    );
    assert_eq!(job_row(&store, "recording").await.0, "failed");
}

async fn waiting_for_twilio_uses_no_attempts_and_the_callback_wakes_the_job(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .stream_started(CALL, "MZa", &facts(), "twilio", T0)
        .await
        .unwrap();
    store
        .call_ended(CALL, &facts(), "twilio", T0)
        .await
        .unwrap();
    let mut now = T0;
    for _ in 0..5 {
        let job = store.claim("w", now, 1000).await.unwrap().unwrap();
        assert_eq!(job.attempts, 1);
        assert!(store
            .defer(&job, "w", now + 60_000, "waiting")
            .await
            .unwrap());
        assert_eq!(
            job_row(&store, "recording").await,
            ("queued".into(), 0, now + 60_000, Some("waiting".into()))
        );
        assert!(store
            .claim("w", now + 59_999, 1000)
            .await
            .unwrap()
            .is_none());
        now += 60_000;
    }
    // The callback comes half way through a wait: the job is due at once.
    let at = now - 30_000;
    assert!(store
        .twilio_recording_status(
            CALL,
            "RE1",
            RecordingStatus::TwilioCompleted,
            Some("https://api.twilio.com/r"),
            at
        )
        .await
        .unwrap());
    assert_eq!(job_row(&store, "recording").await.2, at);
    let job = store.claim("w", at, 1000).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    // A deferral by a worker that lost its lease changes nothing.
    assert!(!store.defer(&job, "other", at + 1, "x").await.unwrap());
    let rec = store.twilio_recording(CALL).await.unwrap();
    assert_eq!(rec.status, RecordingStatus::TwilioCompleted);
    assert_eq!(rec.url.as_deref(), Some("https://api.twilio.com/r"));
    assert_eq!(rec.ended_at_ms, Some(T0));
}

/// The recording stage waits for a stream still open without using an attempt; the stream
/// finishing makes it due at once (and wakes this process's workers).
async fn a_finished_stream_makes_the_waiting_recording_stage_due(backend: Dialect) {
    let (_h, store) = store_on(backend).await;
    ended_with_open_stream(&store, "MZ1").await;
    let job = store.claim("w", T0 + 20, 60_000).await.unwrap().unwrap();
    assert_eq!((job.stage, job.attempts), (Stage::Recording, 1));
    assert!(store
        .defer(
            &job,
            "w",
            T0 + 60_000,
            "a stream of this call is still open"
        )
        .await
        .unwrap());
    assert_eq!(store.claim("w", T0 + 30, 60_000).await.unwrap(), None);
    let finish = |at: i64| {
        let store = store.clone();
        async move {
            store
                .stream_finished(
                    "MZ1",
                    crate::store::FIRST_FENCE,
                    StreamStatus::Saved,
                    Some(800),
                    (800, 0, 0),
                    crate::store::CloseReason::Stopped,
                    at,
                )
                .await
                .unwrap()
        }
    };
    let woken = store.jobs_changed();
    let notified = woken.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    finish(T0 + 40).await;
    if backend == Dialect::Sqlite {
        tokio::time::timeout(std::time::Duration::from_secs(5), notified)
            .await
            .expect("the workers are woken");
    }
    let again = store.claim("w", T0 + 40, 60_000).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (job.id, 1));
    // A stream of a call with no waiting job moves nothing.
    finish(T0 + 50).await;
    assert_eq!(job_row(&store, "recording").await.0, "running");
}

/// A stream that finishes while the recording stage is looking at it (the job running, so the
/// finish moves nothing) leaves the deferral due at once; one still open defers it.
async fn a_stream_finished_during_the_look_leaves_the_wait_due_at_once(backend: Dialect) {
    let (_h, store) = store_on(backend).await;
    ended_with_open_stream(&store, "MZ1").await;
    let job = store.claim("w", T0 + 20, 60_000).await.unwrap().unwrap();
    let waiting = "a stream of this call is still open";
    assert!(store
        .defer_for_streams(&job, "w", T0 + 1_020, waiting, T0 + 20)
        .await
        .unwrap());
    assert_eq!(
        job_row(&store, "recording").await,
        ("queued".into(), 0, T0 + 1_020, Some(waiting.into()))
    );
    let job = store.claim("w", T0 + 1_020, 60_000).await.unwrap().unwrap();
    let moved = store
        .stream_finished(
            "MZ1",
            crate::store::FIRST_FENCE,
            StreamStatus::Saved,
            Some(800),
            (800, 0, 0),
            crate::store::CloseReason::Stopped,
            T0 + 1_030,
        )
        .await
        .unwrap();
    assert!(moved);
    assert_eq!(job_row(&store, "recording").await.0, "running");
    assert!(store
        .defer_for_streams(&job, "w", T0 + 2_040, waiting, T0 + 1_040)
        .await
        .unwrap());
    assert_eq!(
        job_row(&store, "recording").await,
        ("queued".into(), 0, T0 + 1_040, Some(waiting.into()))
    );
    let again = store.claim("w", T0 + 1_040, 60_000).await.unwrap().unwrap();
    assert_eq!(again.id, job.id);
    // A worker that lost its lease defers nothing.
    assert!(!store
        .defer_for_streams(&again, "other", T0 + 3_000, waiting, T0 + 2_000)
        .await
        .unwrap());
}

on_both_engines!(
    a_replayed_webhook_queues_nothing_twice,
    stages_run_in_order_and_complete_exactly_once,
    an_expired_lease_hands_the_job_to_another_worker,
    failures_back_off_exponentially_then_fail_the_call,
    a_permanent_error_fails_at_once,
    waiting_for_twilio_uses_no_attempts_and_the_callback_wakes_the_job,
    a_finished_stream_makes_the_waiting_recording_stage_due,
    a_stream_finished_during_the_look_leaves_the_wait_due_at_once,
);
