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

async fn store_on(backend: Dialect) -> (Holder, Store) {
    match backend {
        Dialect::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db/host.db")).await.unwrap();
            (Holder::File(dir), store)
        }
        Dialect::Postgres => {
            let cluster = test_support::PgCluster::started().await;
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

/// Each test on SQLite and on PostgreSQL, under the same name in modules `sqlite` and
/// `postgres`.
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Dialect::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
                async fn $name() {
                    super::$name(super::Dialect::Postgres).await
                }
            )+
        }
    };
}

mod queue;
mod replicas;
mod schema;
mod starts;

async fn calls_list_newest_first_with_a_cursor(backend: Dialect) {
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

async fn a_second_stream_for_a_call_gets_the_next_index(backend: Dialect) {
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

async fn a_reused_stream_sid_changes_nothing(backend: Dialect) {
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

async fn a_start_after_the_call_ended_changes_nothing(backend: Dialect) {
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

async fn expired_calls_are_those_before_the_cutoff_that_nothing_works_on(backend: Dialect) {
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
            crate::store::FIRST_FENCE,
            StreamStatus::Saved,
            Some(8),
            (1, 0, 0),
            crate::store::CloseReason::Stopped,
            T0,
        )
        .await
        .unwrap();
    store.call_ended(old, &facts(), "stream", T0).await.unwrap();
    store
        .add_error(old, "recording", "x", T0, None)
        .await
        .unwrap();
    // Busy: a stream opened since the cutoff is still open.
    store
        .stream_started(busy, "MZ2", &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .stream_started(busy, "MZ4", &facts(), "stream", T0 + 100)
        .await
        .unwrap();
    // A stream open since before the cutoff is one whose end never reached the database: its
    // call expires all the same.
    let stale = "CA00000000000000000000000000000004";
    store
        .stream_started(stale, "MZ5", &facts(), "stream", T0)
        .await
        .unwrap();
    store
        .stream_started(young, "MZ3", &facts(), "stream", T0 + 100)
        .await
        .unwrap();
    store
        .stream_finished(
            "MZ3",
            crate::store::FIRST_FENCE,
            StreamStatus::Saved,
            None,
            (0, 0, 0),
            CloseReason::Stopped,
            T0,
        )
        .await
        .unwrap();
    let expired = store.expired_calls(T0 + 100).await.unwrap();
    assert_eq!(
        expired,
        vec![
            (old.to_string(), vec!["/r/old.wav".to_string()]),
            (stale.to_string(), vec![])
        ]
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

/// The call PostgreSQL's listener is warmed up with: its changes are not the test's.
const WARM_UP: &str = "CA00000000000000000000000000000009";

/// The next call change heard (past the warm-up's), within 10 s.
async fn next(changes: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<str>>) -> String {
    loop {
        let sid = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
            .await
            .expect("a call change within 10 s")
            .unwrap()
            .to_string();
        if sid != WARM_UP {
            return sid;
        }
    }
}

/// Every write that changes a call's row is published once it commits, on PostgreSQL to every
/// replica through its listener; a write that changes nothing publishes nothing.
async fn call_changes_are_published_as_they_commit(backend: Dialect) {
    let (holder, store) = store_on(backend).await;
    let watcher = match backend {
        Dialect::Sqlite => store.clone(),
        Dialect::Postgres => another_replica(&holder, &store).await,
    };
    let mut changes = watcher.call_changes();
    let listener = {
        let w = watcher.clone();
        tokio::spawn(async move { w.listen().await })
    };
    if backend == Dialect::Postgres {
        // Until the other replica's LISTEN is in place a NOTIFY reaches nobody: repeat a change
        // until one is heard.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            store
                .set_recording_status(WARM_UP, RecordingStatus::Pending)
                .await
                .unwrap();
            let heard =
                tokio::time::timeout(std::time::Duration::from_millis(100), changes.recv()).await;
            if heard.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never heard a change"
            );
        }
    }
    store
        .stream_started(CALL, "MZ1", &facts(), "stream", T0)
        .await
        .unwrap();
    assert_eq!(next(&mut changes).await, CALL);
    assert!(store
        .call_ended(CALL, &facts(), "stream", T0 + 1)
        .await
        .unwrap());
    assert_eq!(next(&mut changes).await, CALL);
    // A replayed webhook changes nothing: the next change heard is the other call's.
    assert!(!store
        .call_ended(CALL, &facts(), "stream", T0 + 2)
        .await
        .unwrap());
    let other = "CA00000000000000000000000000000002";
    store
        .stream_started(other, "MZ2", &facts(), "stream", T0 + 3)
        .await
        .unwrap();
    assert_eq!(next(&mut changes).await, other);
    listener.abort();
}

on_both_engines!(
    call_changes_are_published_as_they_commit,
    calls_list_newest_first_with_a_cursor,
    a_second_stream_for_a_call_gets_the_next_index,
    a_reused_stream_sid_changes_nothing,
    a_start_after_the_call_ended_changes_nothing,
    expired_calls_are_those_before_the_cutoff_that_nothing_works_on,
);
