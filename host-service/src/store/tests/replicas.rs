//! Several replicas on one database: bursts of starts, shared jobs, taking over a dead replica's
//! streams, notifications and the shared recordings directory.

use super::*;

/// A burst of calls starting at once (the pool's connections all writing): every start is
/// recorded. With deferred transactions SQLite refused most of them with SQLITE_BUSY at once.
async fn a_burst_of_stream_starts_is_recorded_in_full(backend: Dialect) {
    let (_dir, store) = store_on(backend).await;
    const CALLS: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let store = store.clone();
        tasks.spawn(async move {
            let (call, stream) = (format!("CA{i:032x}"), format!("MZ{i:032x}"));
            store
                .stream_started(&call, &stream, &facts(), "stream", T0)
                .await
        });
    }
    let mut started = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(StreamStart::Started { idx: 0 }) => started += 1,
            other => panic!("a start was not recorded: {other:?}"),
        }
    }
    assert_eq!(started, CALLS);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, CALLS as i64);
}

/// Replicas racing for the queue: every job is taken exactly once, and never by two at a time.
async fn two_replicas_take_each_job_once(backend: Dialect) {
    let (holder, a) = store_on(backend).await;
    let b = another_replica(&holder, &a).await;
    assert_ne!(a.replica(), b.replica());
    const CALLS: usize = 40;
    for i in 0..CALLS {
        a.call_ended(&format!("CA{i:032x}"), &facts(), "stream", T0)
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = store.claim(&format!("w{n}"), T0, 60_000).await.unwrap() {
                mine.push(job.call_sid);
            }
            mine
        });
    }
    let mut taken = Vec::new();
    while let Some(done) = tasks.join_next().await {
        taken.extend(done.unwrap());
    }
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!((before, taken.len()), (CALLS, CALLS));
}

/// Heartbeats a third of `TIMEOUT` apart; a gap over `GAP` breaks a replica's run.
const TIMEOUT: i64 = 15_000;
const GAP: i64 = TIMEOUT / 2;

/// Say `store` is alive every third of the timeout from `from` to `to` (inclusive), relative to
/// T0.
async fn heartbeats(store: &Store, from: i64, to: i64) {
    let mut t = from;
    while t <= to {
        store.replica_alive(T0 + t, GAP).await.unwrap();
        t += TIMEOUT / 3;
    }
}

/// A replica that died mid-stream: its open streams are taken over by exactly one survivor, not
/// while it is still alive, and its own late end of a stream no longer sticks.
async fn a_dead_replicas_open_streams_are_taken_over_once(backend: Dialect) {
    let (holder, dead) = store_on(backend).await;
    let survivor = another_replica(&holder, &dead).await;
    let late = another_replica(&holder, &dead).await;
    dead.replica_alive(T0, GAP).await.unwrap();
    heartbeats(&survivor, -TIMEOUT, 0).await;
    for (i, path) in [(0, ""), (1, "/rec/b.wav")] {
        let (call, stream) = (format!("CA{i:032x}"), format!("MZ{i:032x}"));
        dead.stream_started(&call, &stream, &facts(), "stream", T0)
            .await
            .unwrap();
        if !path.is_empty() {
            dead.stream_recording_path(&stream, path).await.unwrap();
        }
    }
    // Seen at T0: alive for anyone counting from T0 on.
    assert!(survivor.take_orphaned_streams(T0).await.unwrap().is_empty());
    // A replica never heard from takes nothing, whoever is dead.
    assert!(late.take_orphaned_streams(T0 + 1).await.unwrap().is_empty());
    let mut taken = survivor.take_orphaned_streams(T0 + 1).await.unwrap();
    taken.sort();
    let stream = |i: usize, path: &str, fence: i64| TakenStream {
        stream_sid: format!("MZ{i:032x}"),
        path: path.to_owned(),
        fence,
    };
    assert_eq!(taken, vec![stream(0, "", 1), stream(1, "/rec/b.wav", 1)]);
    // The first owner's end comes too late: the stream moved on to another fencing token.
    let end = |store: Store, fence: i64| async move {
        store
            .stream_finished(
                &format!("MZ{:032x}", 1),
                fence,
                StreamStatus::Saved,
                Some(8000),
                (50, 0, 0),
                CloseReason::Stopped,
                T0 + 2,
            )
            .await
            .unwrap()
    };
    assert!(!end(dead.clone(), FIRST_FENCE).await);
    let status: String = sqlx::query_scalar("SELECT status FROM streams WHERE stream_sid = $1")
        .bind(format!("MZ{:032x}", 1))
        .fetch_one(dead.pool())
        .await
        .unwrap();
    assert_eq!(status, "recording");
    // The dead replica is forgotten once nothing of it is open; the survivor is not.
    survivor.replica_alive(T0 + 10, GAP).await.unwrap();
    assert_eq!(dead.forget_dead_replicas(T0 + 1).await.unwrap(), 0);
    assert!(end(survivor.clone(), 1).await);
    let other = format!("MZ{:032x}", 0);
    assert!(survivor
        .stream_finished(
            &other,
            1,
            StreamStatus::NotRecorded,
            None,
            (0, 0, 0),
            CloseReason::ProcessDied,
            T0 + 2
        )
        .await
        .unwrap());
    assert_eq!(survivor.forget_dead_replicas(T0 + 1).await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas")
        .fetch_all(survivor.pool())
        .await
        .unwrap();
    assert_eq!(left, vec![survivor.replica().to_owned()]);
    // A new stream of the survivor, which is alive: nobody else takes it.
    survivor
        .stream_started(&format!("CA{:032x}", 2), "MZ2", &facts(), "stream", T0)
        .await
        .unwrap();
    heartbeats(&late, -TIMEOUT, 0).await;
    assert!(late.take_orphaned_streams(T0 + 1).await.unwrap().is_empty());
    // A replica that left says so; its streams need no timeout.
    survivor.replica_gone().await.unwrap();
    assert_eq!(
        late.take_orphaned_streams(T0).await.unwrap(),
        vec![TakenStream {
            stream_sid: "MZ2".into(),
            path: String::new(),
            fence: 1
        }]
    );
}

/// An outage cuts every replica off at once: the first one back does not take over the others
/// (they were as silent as it was) until it has itself been heard from for a whole timeout;
/// one that says it is alive within that time keeps its streams.
async fn after_an_outage_every_replica_gets_a_chance_to_say_it_is_alive(backend: Dialect) {
    let (holder, a) = store_on(backend).await;
    let b = another_replica(&holder, &a).await;
    heartbeats(&a, -2 * TIMEOUT, 0).await;
    heartbeats(&b, -2 * TIMEOUT, 0).await;
    b.stream_started(&format!("CA{:032x}", 1), "MZ1", &facts(), "stream", T0)
        .await
        .unwrap();
    // 20 s without the database; a is back first, and finds b silent past the timeout.
    let back = 20_000;
    a.replica_alive(T0 + back, GAP).await.unwrap();
    assert!(a
        .take_orphaned_streams(T0 + back - TIMEOUT)
        .await
        .unwrap()
        .is_empty());
    // b says it is alive a third of a timeout later, and keeps saying so: never taken over.
    heartbeats(&b, back + TIMEOUT / 3, back + 2 * TIMEOUT).await;
    let mut t = back + TIMEOUT / 3;
    while t <= back + 2 * TIMEOUT {
        a.replica_alive(T0 + t, GAP).await.unwrap();
        assert!(
            a.take_orphaned_streams(T0 + t - TIMEOUT)
                .await
                .unwrap()
                .is_empty(),
            "b's live stream taken over {t} ms in"
        );
        t += TIMEOUT / 3;
    }
    // b really dies: a, alive all along, takes its stream once b has been silent a timeout.
    let dead_at = back + 2 * TIMEOUT;
    heartbeats(&a, t, dead_at + TIMEOUT + 1).await;
    let taken = a.take_orphaned_streams(T0 + dead_at + 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].stream_sid.as_str(), taken[0].fence), ("MZ1", 1));
}

#[tokio::test]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn postgres_notify_from_one_replica_wakes_the_workers_of_another() {
    let (holder, a) = store_on(Dialect::Postgres).await;
    let b = another_replica(&holder, &a).await;
    let listening = tokio::spawn({
        let b = b.clone();
        async move { b.listen().await }
    });
    let woken = b.jobs_changed();
    // LISTEN takes effect once the listener's connection has run it: until then a notification
    // can pass unseen, so queue calls until one wakes b (each call queues one job).
    let mut i = 0;
    test_support::poll(std::time::Duration::from_secs(20), "a wake-up on b", || {
        i += 1;
        let (a, woken) = (a.clone(), woken.clone());
        let call = format!("CA{i:032x}");
        async move {
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            a.call_ended(&call, &facts(), "stream", T0).await.unwrap();
            tokio::time::timeout(std::time::Duration::from_millis(500), notified)
                .await
                .ok()
        }
    })
    .await
    .unwrap();
    // A transaction that queues nothing (a replay) sends nothing.
    let notified = woken.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    assert!(!a
        .call_ended(&format!("CA{i:032x}"), &facts(), "stream", T0)
        .await
        .unwrap());
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), notified)
            .await
            .is_err(),
        "a replayed webhook woke the workers"
    );
    listening.abort();
}

#[tokio::test]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn postgres_replicas_must_share_the_recordings_directory() {
    let (holder, a) = store_on(Dialect::Postgres).await;
    let b = another_replica(&holder, &a).await;
    let shared = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    a.check_shared_dir(shared.path()).await.unwrap();
    b.check_shared_dir(shared.path()).await.unwrap();
    let marker = std::fs::read_to_string(
        shared
            .path()
            .join(crate::store::replicas::SHARED_DIR_MARKER),
    )
    .unwrap();
    assert_eq!(marker.len(), 32);
    let err = b.check_shared_dir(other.path()).await.unwrap_err();
    let DbError::SharedDir(message) = err else {
        panic!("{err}")
    };
    assert!(message.contains(&marker), "{message}");
    assert!(
        message.contains("Mount the same shared volume"),
        "{message}"
    );
    // The losing replica's marker stays in its own directory, so a retry fails the same way.
    assert!(b.check_shared_dir(other.path()).await.is_err());
}

/// A dead replica's stream whose recording file was never opened (its writer opens it with the
/// first audio, after the path is stored) left no recording: `not_recorded`, as a stream with
/// no path, not a failed repair.
#[tokio::test]
async fn a_dead_replicas_stream_whose_file_was_never_opened_is_not_recorded() {
    let (holder, dead) = store_on(Dialect::Sqlite).await;
    let survivor = another_replica(&holder, &dead).await;
    dead.replica_alive(T0, GAP).await.unwrap();
    heartbeats(&survivor, -TIMEOUT, 0).await;
    let files = tempfile::tempdir().unwrap();
    let never_opened = files.path().join("CA.wav").display().to_string();
    dead.stream_started(CALL, "MZ1", &facts(), "stream", T0)
        .await
        .unwrap();
    dead.stream_recording_path("MZ1", &never_opened)
        .await
        .unwrap();
    let repaired = crate::recording::stream::repair_orphans(&survivor, T0 + 1)
        .await
        .unwrap();
    assert_eq!(repaired, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM streams WHERE stream_sid = 'MZ1'")
        .fetch_one(dead.pool())
        .await
        .unwrap();
    assert_eq!(status, "not_recorded");
}

#[tokio::test]
async fn sqlite_needs_no_shared_directory() {
    let (_d, store) = store().await;
    let dir = tempfile::tempdir().unwrap();
    store.check_shared_dir(dir.path()).await.unwrap();
    assert!(!dir
        .path()
        .join(crate::store::replicas::SHARED_DIR_MARKER)
        .exists());
}

on_both_engines!(
    a_burst_of_stream_starts_is_recorded_in_full,
    two_replicas_take_each_job_once,
    a_dead_replicas_open_streams_are_taken_over_once,
    after_an_outage_every_replica_gets_a_chance_to_say_it_is_alive,
);
