//! Writes retried against a real PostgreSQL whose table is locked (a hung server, seen from the
//! client): attempts time out on the server, not before reaching it, and land once the lock goes.

use super::*;
use crate::store::{Location, Stage, StageOutput, StoreOptions};
use std::time::Duration as StdDuration;

const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const T0: i64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 600_000;

async fn cluster() -> (test_support::PgCluster, Store) {
    let cluster = test_support::PgCluster::started().await;
    let url = cluster.database("host_service").unwrap();
    let store = Store::connect(&Location::Postgres(url), &StoreOptions::default())
        .await
        .unwrap();
    (cluster, store)
}

/// Another replica on the same database.
async fn replica(store: &Store) -> Store {
    let url = Location::Postgres(store.postgres_url().unwrap().to_owned());
    Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap()
}

fn writes(store: &Store, clock: Clock) -> Writes {
    let limits = WriteLimits {
        attempt_timeout: StdDuration::from_millis(300),
        max_pending: 100,
        late_start_window_ms: WINDOW_MS,
    };
    Writes::new(store.clone(), Arc::default(), clock, limits)
}

/// Holds `table` locked against every write until committed.
async fn lock(store: &Store, table: &str) -> sqlx::Transaction<'static, sqlx::Any> {
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Statements on `table`'s inserts that the server is running or waiting to run.
async fn inserts_in_flight(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
    )
    .bind(format!("INSERT INTO {table} %"))
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Waits until at least `n` inserts into `table` are on the server, or none when `n` is 0.
async fn until_inserts(store: &Store, table: &str, n: i64) {
    let what = format!("{n} inserts into {table} on the server");
    test_support::poll(StdDuration::from_secs(20), &what, || async {
        let seen = inserts_in_flight(store, table).await;
        (if n == 0 { seen == 0 } else { seen >= n }).then_some(())
    })
    .await
    .unwrap();
}

/// A call's error whose attempt timed out while the server ran it lands once, though the
/// server finishes that attempt and the retry both. The writer has one connection, on which
/// the insert is already prepared: the attempt that times out has reached the server's
/// execution, not only its parsing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn an_error_whose_attempt_timed_out_yet_landed_is_written_once() {
    let (_cluster, store) = cluster().await;
    let url = Location::Postgres(store.postgres_url().unwrap().to_owned());
    let one = StoreOptions { max_connections: 1 };
    let writer = Store::connect(&url, &one).await.unwrap();
    writer
        .add_error(CALL, "setup", "prepared", T0, Some("setup"))
        .await
        .unwrap();
    let writes = writes(&writer, Clock::starting_at(T0));
    let held = lock(&store, "call_errors").await;
    writes
        .call_error(CALL, "stream", "no space left on device".into(), T0)
        .await;
    assert_eq!(writes.pending(), 1);
    until_inserts(&store, "call_errors", 1).await;
    held.commit().await.unwrap();
    tokio::time::timeout(StdDuration::from_secs(20), writes.wait_idle())
        .await
        .expect("the error was stored");
    until_inserts(&store, "call_errors", 0).await;
    assert_eq!(
        store.errors_of(CALL, "stream").await.unwrap(),
        ["no space left on device"]
    );
}

/// Replica `a` holds a stream's start back (the call's earlier write waits for the database);
/// meanwhile the call ends on replica `b`, whose recording stage finishes without the stream.
/// When `a`'s start lands, the stage is queued again and the stages after it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn a_start_held_back_past_the_calls_end_on_another_replica_reopens_its_recording() {
    let (_cluster, b) = cluster().await;
    let a = replica(&b).await;
    let writes = writes(&a, Clock::starting_at(T0 + 5_000));
    let held = lock(&b, "call_errors").await;
    writes
        .call_error(CALL, "stream", "database away".into(), T0)
        .await;
    let begin = StreamBegin {
        call_sid: CALL.into(),
        stream_sid: "MZlate".into(),
        account_sid: None,
        from: None,
        to: None,
        recording_source: "stream",
        at_ms: T0,
        max_open: Some(5),
    };
    assert_eq!(writes.stream_started(begin).await, Written::Queued);
    let facts = CallFacts {
        account_sid: None,
        from: None,
        to: None,
        call_status: Some("completed"),
    };
    assert!(b.call_ended(CALL, &facts, "stream", T0 + 10).await.unwrap());
    let job = b.claim("b-w0", T0 + 10, 60_000).await.unwrap().unwrap();
    let output = StageOutput::Recording {
        path: "/r/other.wav".into(),
        duration_ms: 1,
    };
    b.complete(&job, "b-w0", &output, T0 + 20).await.unwrap();
    held.commit().await.unwrap();
    tokio::time::timeout(StdDuration::from_secs(20), writes.wait_idle())
        .await
        .expect("the start was stored");
    let detail = b.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(detail.streams.len(), 1);
    let stages: Vec<_> = detail.stages.iter().map(|j| (j.stage, j.state)).collect();
    assert_eq!(stages, [(Stage::Recording, crate::store::JobState::Queued)]);
    assert_eq!(b.open_streams(CALL).await.unwrap(), 1);
}
