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

/// A replica that died mid-stream: its open streams are taken over by exactly one survivor, and
/// not while it is still alive.
async fn a_dead_replicas_open_streams_are_taken_over_once(backend: Dialect) {
    let (holder, dead) = store_on(backend).await;
    let survivor = another_replica(&holder, &dead).await;
    let late = another_replica(&holder, &dead).await;
    dead.replica_alive(T0).await.unwrap();
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
    let mut taken = survivor.take_orphaned_streams(T0 + 1).await.unwrap();
    taken.sort();
    assert_eq!(
        taken,
        vec![
            (format!("MZ{:032x}", 0), String::new()),
            (format!("MZ{:032x}", 1), "/rec/b.wav".to_owned())
        ]
    );
    // The dead replica is forgotten once nothing of it is open; the survivor is not.
    survivor.replica_alive(T0 + 10).await.unwrap();
    assert_eq!(dead.forget_dead_replicas(T0 + 1).await.unwrap(), 0);
    assert_eq!(survivor.forget_dead_replicas(T0 + 1).await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas")
        .fetch_all(survivor.pool())
        .await
        .unwrap();
    assert_eq!(left, vec![survivor.replica().to_owned()]);
    // Now the survivor's, which is alive: nobody else takes them.
    assert!(late.take_orphaned_streams(T0 + 1).await.unwrap().is_empty());
    // A replica that left says so; its streams need no timeout.
    survivor.replica_gone().await.unwrap();
    assert_eq!(late.take_orphaned_streams(T0).await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_notify_from_one_replica_wakes_the_workers_of_another() {
    let (holder, a) = store_on(Dialect::Postgres).await;
    let b = another_replica(&holder, &a).await;
    let listening = tokio::spawn({
        let b = b.clone();
        async move { b.listen_for_jobs().await }
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
);
