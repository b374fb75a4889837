//! This process as one replica among several on one database: it says it is alive, finishes
//! the recordings of replicas that died mid-stream, and relays job notifications to its workers.
//! On SQLite there is one replica: the recordings a previous run left open are repaired once at
//! start-up, and nothing runs after that.

use crate::clock::Clock;
use crate::recording::stream::repair_orphans;
use crate::shutdown::wait_true;
use crate::store::{DbError, Store};
use std::time::Duration;
use tokio::sync::watch;

/// Before serving: register, then take over the open streams of replicas that are dead (on
/// SQLite: every earlier run). Returns how many recordings were repaired.
pub async fn start(store: &Store, clock: &Clock, timeout_ms: u64) -> Result<usize, DbError> {
    let now = clock.now_ms();
    store.replica_alive(now).await?;
    let alive_since = if store.dialect().shared() {
        now - timeout_ms as i64
    } else {
        i64::MAX
    };
    take_over(store, alive_since).await
}

/// Finish the open streams of replicas not seen since `alive_since`, then forget those
/// replicas. Returns how many recordings were repaired.
async fn take_over(store: &Store, alive_since: i64) -> Result<usize, DbError> {
    let repaired = repair_orphans(store, alive_since).await?;
    store.forget_dead_replicas(alive_since).await?;
    Ok(repaired)
}

/// PostgreSQL: every third of the timeout, say this replica is alive and take over the open
/// streams of replicas that stopped saying so; relay `NOTIFY` to the workers meanwhile. Ends
/// when `stop` turns true; `leave` then removes this replica's row.
pub async fn run(store: Store, clock: Clock, timeout_ms: u64, mut stop: watch::Receiver<bool>) {
    if !store.dialect().shared() {
        return;
    }
    let listener = {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.listen_for_jobs().await {
                tracing::error!(error = %e, "job notifications unavailable; idle workers fall back to their poll interval");
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(timeout_ms / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = wait_true(&mut stop) => break,
            _ = tick.tick() => {}
        }
        let now = clock.now_ms();
        if let Err(e) = store.replica_alive(now).await {
            tracing::error!(error = %e, "cannot tell the database this replica is alive");
            continue;
        }
        match take_over(&store, now - timeout_ms as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(repaired = n, "finished recordings of a replica that died"),
            Err(e) => tracing::error!(error = %e, "cannot take over a dead replica's streams"),
        }
    }
    listener.abort();
}

/// After the drain: this replica's streams are finalized (or dropped at the deadline), so the
/// others need not wait out the timeout to take over what is left.
pub async fn leave(store: &Store) {
    if let Err(e) = store.replica_gone().await {
        tracing::warn!(error = %e, "cannot remove this replica from the database");
    }
}
