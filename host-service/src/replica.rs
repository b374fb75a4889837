//! This process as one replica among several on one database: it says it is alive, finishes
//! the recordings of replicas that died mid-stream, and relays job notifications to its workers.
//! On SQLite there is one replica: the recordings a previous run left open are repaired once at
//! start-up, and nothing runs after that.
//!
//! Who is alive is decided by the database's clock, never a replica's own, and this process's
//! clock is set to the database's at every heartbeat (leases and due times then agree across
//! replicas). A replica takes over another's streams only after it has itself been heard from
//! without a break for `database.replica_timeout_ms`: after an outage every replica first gets
//! the chance to say it is alive again.

use crate::clock::Clock;
use crate::recording::stream::repair_orphans;
use crate::shutdown::wait_true;
use crate::store::{DbError, Store};
use std::time::Duration;
use tokio::sync::watch;

/// Before serving: register, then, on SQLite, repair what earlier runs left open. On PostgreSQL
/// nothing is taken over yet: this replica has not been alive for a whole timeout, and the run
/// loop does it once it has. Returns how many recordings were repaired.
pub async fn start(store: &Store, clock: &Clock, timeout_ms: u64) -> Result<usize, DbError> {
    let now = heartbeat(store, clock, timeout_ms).await?;
    if store.dialect().shared() {
        take_over(store, now - timeout_ms as i64).await
    } else {
        take_over(store, i64::MAX).await
    }
}

/// Say this replica is alive at the database's time, and set the clock to it. A heartbeat later
/// than half the timeout after the previous one starts a new unbroken run (the replica was cut
/// off); they come every third of it.
async fn heartbeat(store: &Store, clock: &Clock, timeout_ms: u64) -> Result<i64, DbError> {
    let now = if store.dialect().shared() {
        let now = store.db_now_ms().await?;
        clock.set_to(now);
        now
    } else {
        clock.now_ms()
    };
    store.replica_alive(now, timeout_ms as i64 / 2).await?;
    Ok(now)
}

/// Finish the open streams of replicas not seen since `alive_since`, then forget those
/// replicas. Returns how many recordings were repaired.
async fn take_over(store: &Store, alive_since: i64) -> Result<usize, DbError> {
    let repaired = repair_orphans(store, alive_since).await?;
    store.forget_dead_replicas(alive_since).await?;
    Ok(repaired)
}

/// PostgreSQL: every third of the timeout, say this replica is alive and take over the open
/// streams of replicas that stopped saying so; relay `NOTIFY` meanwhile (jobs to the workers,
/// call changes to `Store::call_changes`). A heartbeat has a third of the timeout to finish, so a
/// hung database never stops the loop. Ends
/// when `stop` turns true; `leave` then removes this replica's row.
pub async fn run(store: Store, clock: Clock, timeout_ms: u64, mut stop: watch::Receiver<bool>) {
    if !store.dialect().shared() {
        return;
    }
    let listener = {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.listen().await {
                tracing::error!(error = %e, "job notifications unavailable; idle workers fall back to their poll interval");
            }
        })
    };
    let every = Duration::from_millis(timeout_ms / 3);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = wait_true(&mut stop) => break,
            _ = tick.tick() => {}
        }
        let now = match tokio::time::timeout(every, heartbeat(&store, &clock, timeout_ms)).await {
            Ok(Ok(now)) => now,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "replica_heartbeat_failed");
                continue;
            }
            Err(_) => {
                tracing::error!(
                    timeout_ms = every.as_millis() as u64,
                    "replica_heartbeat_failed: the database did not answer in time"
                );
                continue;
            }
        };
        // Not cut short: a stream taken over is finished in the same round.
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
