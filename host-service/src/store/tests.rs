//! Queue and call-state tests with explicit times: replays change nothing, leases expire, backoff
//! doubles up to its cap, a stage completes once. One suite, two engines: each test below
//! `on_both_engines!` runs on a real SQLite file and on a real PostgreSQL (a throwaway cluster
//! in a temp dir); the SQLite-only ones check the file itself.

use super::*;
use sqlx::Row;

const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const T0: i64 = 1_700_000_000_000;

/// What a test's store lives in; dropping it removes the file or stops the cluster.
// Held only to be dropped at the end of the test.
#[allow(dead_code)]
enum Holder {
    File(tempfile::TempDir),
    Cluster(test_support::PgCluster),
}

async fn store_on(backend: Backend) -> (Holder, Store) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db/host.db")).await.unwrap();
            (Holder::File(dir), store)
        }
        Backend::Postgres => {
            let cluster = tokio::task::spawn_blocking(test_support::PgCluster::start)
                .await
                .unwrap()
                .expect("a PostgreSQL cluster for the test (`make setup` installs postgresql)");
            let url = cluster.database("host_service").unwrap();
            let store = Store::connect(&Location::Postgres(url), &StoreOptions::default())
                .await
                .unwrap();
            (Holder::Cluster(cluster), store)
        }
    }
}

/// `CALL` with stream `stream_sid` started at T0 and the call ended at T0 + 10 while the
/// stream is still open.
async fn ended_with_open_stream(store: &Store, stream_sid: &str) {
    store
        .stream_started(CALL, stream_sid, &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .call_ended(CALL, &facts(), "stream", T0 + 10)
        .await
        .unwrap();
}

/// A second replica on the same database, with a name of its own.
async fn another_replica(holder: &Holder, store: &Store) -> Store {
    match holder {
        Holder::File(dir) => Store::open(&dir.path().join("db/host.db")).await.unwrap(),
        Holder::Cluster(_) => Store::connect(
            &Location::Postgres(store.postgres_url().unwrap().to_owned()),
            &StoreOptions::default(),
        )
        .await
        .unwrap(),
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db/host.db")).await.unwrap();
    (dir, store)
}

fn facts() -> CallFacts<'static> {
    CallFacts {
        account_sid: Some("AC0123456789abcdef0123456789abcdef"),
        from: Some("+15550001111"),
        to: Some("+15550002222"),
        call_status: Some("completed"),
    }
}

async fn job_row(store: &Store, stage: &str) -> (String, i64, i64, Option<String>) {
    let r = sqlx::query("SELECT state, attempts, run_at_ms, last_error FROM jobs WHERE stage = $1")
        .bind(stage)
        .fetch_one(store.pool())
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The schema as the service created it before migrations existed: the same statements, run with
/// `raw_sql` at every start, and no `_sqlx_migrations` table. Such a file must open, keep its rows
/// and be recorded as at the latest migration.
const LEGACY_SCHEMA: &str = include_str!("../../migrations/sqlite/0001_initial.sql");

#[tokio::test]
async fn a_database_from_before_migrations_is_adopted_with_its_rows() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let legacy = sqlx::SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(LEGACY_SCHEMA).execute(&legacy).await.unwrap();
    sqlx::query(
        "INSERT INTO calls (call_sid, status, created_at_ms, recording_source, recording_status)
         VALUES ($1, 'ended', $2, 'stream', 'pending')",
    )
    .bind(CALL)
    .bind(T0)
    .execute(&legacy)
    .await
    .unwrap();
    legacy.close().await;

    for _ in 0..2 {
        let store = Store::open(&path).await.unwrap();
        let detail = store.call_detail(CALL).await.unwrap().unwrap();
        assert_eq!(detail.status, CallStatus::Ended);
        assert_eq!(detail.created_at_ms, T0);
        // `success` is a BOOLEAN column, which sqlx's `Any` rows do not carry from SQLite.
        let applied: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, CAST(success AS INTEGER) FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let expected: Vec<(i64, i64)> = MIGRATOR.iter().map(|m| (m.version, 1)).collect();
        assert_eq!(applied, expected);
        assert_eq!(applied.first(), Some(&(1, 1)));
        store.close().await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let (dir, store) = store().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let err = Store::open(&dir.path().join("db/host.db"))
        .await
        .err()
        .expect("a newer schema must not open");
    assert!(
        matches!(
            err,
            DbError::Migrate(sqlx::migrate::MigrateError::VersionMissing(9999))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn database_is_private_and_in_wal_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = store().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // FULL: a commit survives a power cut, not only a crash of the process.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2);
    let meta = std::fs::metadata(dir.path().join("db/host.db")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let meta = std::fs::metadata(dir.path().join("db")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

async fn a_replayed_webhook_queues_nothing_twice(backend: Backend) {
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

async fn stages_run_in_order_and_complete_exactly_once(backend: Backend) {
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
    assert_eq!(d.recording.status, "saved");
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

async fn an_expired_lease_hands_the_job_to_another_worker(backend: Backend) {
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

async fn failures_back_off_exponentially_then_fail_the_call(backend: Backend) {
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

async fn a_permanent_error_fails_at_once(backend: Backend) {
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

async fn calls_list_newest_first_with_a_cursor(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    let sids: Vec<String> = (0..5).map(|i| format!("CA{:032x}", i)).collect();
    for (i, sid) in sids.iter().enumerate() {
        store
            .stream_started(sid, &format!("MZ{i}"), &facts(), "stream", T0 + i as i64)
            .await
            .unwrap();
    }
    let page1 = store.list_calls(2, None).await.unwrap();
    assert_eq!(
        page1
            .iter()
            .map(|c| c.call_sid.as_str())
            .collect::<Vec<_>>(),
        [sids[4].as_str(), sids[3].as_str()]
    );
    let last = page1.last().unwrap();
    let page2 = store
        .list_calls(10, Some((last.created_at_ms, last.call_sid.clone())))
        .await
        .unwrap();
    assert_eq!(
        page2
            .iter()
            .map(|c| c.call_sid.as_str())
            .collect::<Vec<_>>(),
        [sids[2].as_str(), sids[1].as_str(), sids[0].as_str()]
    );
}

async fn a_second_stream_for_a_call_gets_the_next_index(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    assert_eq!(
        store
            .stream_started(CALL, "MZa", &facts(), "stream", T0)
            .await
            .unwrap(),
        StreamStart::Started { idx: 0 }
    );
    assert_eq!(
        store
            .stream_started(CALL, "MZb", &facts(), "stream", T0 + 1)
            .await
            .unwrap(),
        StreamStart::Started { idx: 1 }
    );
    assert_eq!(store.open_streams(CALL).await.unwrap(), 2);
}

async fn a_reused_stream_sid_changes_nothing(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    let other = "CAffffffffffffffffffffffffffffffff";
    store
        .stream_started(CALL, "MZa", &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .stream_recording_path("MZa", "/r/victim.wav")
        .await
        .unwrap();
    // The same streamSid for another call, and again for the same call.
    for call in [other, CALL] {
        assert_eq!(
            store
                .stream_started(call, "MZa", &facts(), "stream", T0 + 5)
                .await
                .unwrap(),
            StreamStart::DuplicateStream
        );
    }
    let row = sqlx::query("SELECT call_sid, idx, path, started_at_ms FROM streams")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].get::<String, _>(0), CALL);
    assert_eq!(row[0].get::<i64, _>(1), 0);
    assert_eq!(row[0].get::<String, _>(2), "/r/victim.wav");
    assert_eq!(row[0].get::<i64, _>(3), T0);
    // The refused start did not create the other call either.
    assert!(store.call_detail(other).await.unwrap().is_none());
}

async fn a_start_after_the_call_ended_changes_nothing(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    ended_with_open_stream(&store, "MZa").await;
    assert_eq!(
        store
            .stream_started(CALL, "MZb", &facts(), "stream", T0 + 20)
            .await
            .unwrap(),
        StreamStart::CallEnded
    );
    assert_eq!(
        store
            .call_detail(CALL)
            .await
            .unwrap()
            .unwrap()
            .streams
            .len(),
        1
    );
}

async fn waiting_for_twilio_uses_no_attempts_and_the_callback_wakes_the_job(backend: Backend) {
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
            "completed",
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
    assert_eq!(rec.status, "twilio_completed");
    assert_eq!(rec.url.as_deref(), Some("https://api.twilio.com/r"));
    assert_eq!(rec.ended_at_ms, Some(T0));
}

async fn expired_calls_are_those_before_the_cutoff_that_nothing_works_on(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    let old = "CA00000000000000000000000000000001";
    let busy = "CA00000000000000000000000000000002";
    let young = "CA00000000000000000000000000000003";
    store
        .stream_started(old, "MZ1", &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .stream_recording_path("MZ1", "/r/old.wav")
        .await
        .unwrap();
    store
        .stream_finished(
            "MZ1",
            StreamStatus::Saved,
            Some(8),
            (1, 0, 0),
            "stopped",
            T0,
        )
        .await
        .unwrap();
    store.call_ended(old, &facts(), "stream", T0).await.unwrap();
    store.add_error(old, "recording", "x", T0).await.unwrap();
    store
        .stream_started(busy, "MZ2", &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .stream_started(young, "MZ3", &facts(), "stream", T0 + 100)
        .await
        .unwrap();
    store
        .stream_finished("MZ3", StreamStatus::Saved, None, (0, 0, 0), "stopped", T0)
        .await
        .unwrap();
    let expired = store.expired_calls(T0 + 100).await.unwrap();
    assert_eq!(
        expired,
        vec![(old.to_string(), vec!["/r/old.wav".to_string()])]
    );
    assert!(store.delete_call(old).await.unwrap());
    assert!(!store.delete_call(old).await.unwrap());
    for table in ["calls", "streams", "jobs", "call_errors"] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE call_sid = $1"))
                .bind(old)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    assert!(store.call_detail(busy).await.unwrap().is_some());
    assert!(store.call_detail(young).await.unwrap().is_some());
}

async fn states_are_stored_as_their_text_and_unknown_text_is_an_error(backend: Backend) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let raw: (String, String, String) = sqlx::query_as(
        "SELECT c.status, j.stage, j.state FROM calls c JOIN jobs j USING (call_sid)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(raw, ("ended".into(), "recording".into(), "queued".into()));
    for (value, text) in [
        (TranscriptionStatus::Done, "done"),
        (
            TranscriptionStatus::SkippedEngineNone,
            "skipped: transcription engine is none",
        ),
    ] {
        sqlx::query("UPDATE calls SET transcription_status = $1")
            .bind(value)
            .execute(store.pool())
            .await
            .unwrap();
        let raw: String = sqlx::query_scalar("SELECT transcription_status FROM calls")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(raw, text);
        assert_eq!(serde_json::to_value(value).unwrap(), text);
        let d = store.call_detail(CALL).await.unwrap().unwrap();
        assert_eq!(d.transcription_status, Some(value));
    }
    // A value this code does not know (a newer version wrote it) is an error, not a panic.
    sqlx::query("UPDATE calls SET status = 'archived'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.call_detail(CALL).await.expect_err("unknown status");
    assert!(
        matches!(err, DbError::Sql(sqlx::Error::ColumnDecode { .. })),
        "{err}"
    );
    assert!(store.list_calls(10, None).await.is_err());
}

/// A burst of calls starting at once (the pool's connections all writing): every start is
/// recorded. With deferred transactions SQLite refused most of them with SQLITE_BUSY at once.
async fn a_burst_of_stream_starts_is_recorded_in_full(backend: Backend) {
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
async fn two_replicas_take_each_job_once(backend: Backend) {
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
async fn a_dead_replicas_open_streams_are_taken_over_once(backend: Backend) {
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
    let (holder, a) = store_on(Backend::Postgres).await;
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
    let (holder, a) = store_on(Backend::Postgres).await;
    let b = another_replica(&holder, &a).await;
    let shared = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    a.check_shared_dir(shared.path()).await.unwrap();
    b.check_shared_dir(shared.path()).await.unwrap();
    let marker = std::fs::read_to_string(shared.path().join(replicas::SHARED_DIR_MARKER)).unwrap();
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
    assert!(!dir.path().join(replicas::SHARED_DIR_MARKER).exists());
}

#[test]
fn database_urls_parse_and_hide_their_password() {
    assert_eq!(
        Location::parse("sqlite:///var/lib/hs/db.sqlite?mode=rwc"),
        Ok(Location::Sqlite("/var/lib/hs/db.sqlite".into()))
    );
    assert_eq!(
        Location::parse("sqlite:data/db"),
        Ok(Location::Sqlite("data/db".into()))
    );
    let pg = Location::parse("postgres://app:s3cret@db.internal:5432/voice").unwrap();
    assert_eq!(pg.redacted(), "postgres://app:***@db.internal:5432/voice");
    assert_eq!(
        format!("{pg:?}"),
        "postgres://app:***@db.internal:5432/voice"
    );
    assert!(Location::parse("postgresql://db/voice").is_ok());
    for bad in [
        "mysql://db/x",
        "sqlite://",
        "sqlite::memory:",
        "postgres:///voice",
        "db.sqlite",
    ] {
        assert!(Location::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Location::from_config(None, std::path::Path::new("/data")),
        Ok(Location::Sqlite("/data/host-service.db".into()))
    );
}

/// The recording stage waits for a stream still open without using an attempt; the stream
/// finishing makes it due at once (and wakes this process's workers).
async fn a_finished_stream_makes_the_waiting_recording_stage_due(backend: Backend) {
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
                    StreamStatus::Saved,
                    Some(800),
                    (800, 0, 0),
                    "stopped",
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
    if backend == Backend::Sqlite {
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

/// Each test on SQLite and on PostgreSQL, under the same name in modules `sqlite` and
/// `postgres`.
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )+
        }
    };
}

on_both_engines!(
    a_replayed_webhook_queues_nothing_twice,
    stages_run_in_order_and_complete_exactly_once,
    an_expired_lease_hands_the_job_to_another_worker,
    failures_back_off_exponentially_then_fail_the_call,
    a_permanent_error_fails_at_once,
    calls_list_newest_first_with_a_cursor,
    a_second_stream_for_a_call_gets_the_next_index,
    a_reused_stream_sid_changes_nothing,
    a_start_after_the_call_ended_changes_nothing,
    waiting_for_twilio_uses_no_attempts_and_the_callback_wakes_the_job,
    expired_calls_are_those_before_the_cutoff_that_nothing_works_on,
    states_are_stored_as_their_text_and_unknown_text_is_an_error,
    a_burst_of_stream_starts_is_recorded_in_full,
    two_replicas_take_each_job_once,
    a_dead_replicas_open_streams_are_taken_over_once,
    a_finished_stream_makes_the_waiting_recording_stage_due,
);
