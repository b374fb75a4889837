//! Writes a socket or a webhook must get into the database even while it is away (a failover, a
//! hung server): a stream's end and a call's end. Each is tried once within
//! `database.write_timeout_ms`; if it does not stick it is kept in memory and retried with
//! backoff until it does, so the caller (the media socket closing, Twilio waiting on its
//! webhook) never waits on the database and the call still finishes once the database is back.
//! At most `database.retry_queue_max` are kept at once; the drain waits for them up to its
//! deadline. Both writes are idempotent (a stream's end is guarded by its fencing token, a call's
//! end by `ended_at_ms`), so an attempt that timed out yet landed later changes nothing.

use crate::metrics::Metrics;
use crate::shutdown::{Tracker, TrackerGuard};
use crate::store::{CallFacts, CloseReason, DbError, Store, StreamStatus};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The first retry waits this long, each later one twice as long up to `BACKOFF_CAP`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// How a stream ended, as its socket reports it.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    pub call_sid: String,
    pub stream_sid: String,
    /// The fencing token the socket holds the stream at.
    pub fence: i64,
    pub status: StreamStatus,
    pub frames: Option<u64>,
    pub counters: (u64, u64, u64),
    pub reason: CloseReason,
    pub at_ms: i64,
}

/// A call's end, from the `<Connect action>` webhook.
#[derive(Debug, Clone)]
pub struct CallEnd {
    pub call_sid: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub call_status: Option<String>,
    pub recording_source: &'static str,
    pub at_ms: i64,
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<T> {
    /// It reached the database at the first attempt; what the store said.
    Stored(T),
    /// Kept in memory; retried until it sticks.
    Queued,
    /// Not stored and not kept: the queue is full.
    Dropped,
}

/// The retrying writer every socket and webhook shares.
#[derive(Clone)]
pub struct Writes {
    store: Store,
    metrics: Arc<Metrics>,
    attempt_timeout: Duration,
    max_pending: usize,
    /// Writes kept for retry now; the drain waits on it.
    pending: Arc<Tracker>,
}

impl Writes {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        attempt_timeout: Duration,
        max_pending: usize,
    ) -> Writes {
        Writes {
            store,
            metrics,
            attempt_timeout,
            max_pending,
            pending: Arc::new(Tracker::default()),
        }
    }

    /// Writes kept for retry now.
    pub fn pending(&self) -> usize {
        self.pending.open()
    }

    /// Resolves when no write is kept for retry (the drain bounds it by its deadline).
    pub async fn wait_idle(&self) {
        self.pending.wait_idle().await
    }

    /// Store how a stream ended. `Stored(false)`: another replica took the stream over
    /// meanwhile (its fencing token moved on), so nothing was written.
    pub async fn stream_finished(&self, end: StreamEnd) -> Written<bool> {
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let attempt = move || {
            let (store, metrics, end) = (store.clone(), metrics.clone(), end.clone());
            async move {
                let stored = store
                    .stream_finished(
                        &end.stream_sid,
                        end.fence,
                        end.status,
                        end.frames,
                        end.counters,
                        end.reason,
                        end.at_ms,
                    )
                    .await?;
                if !stored {
                    metrics.stream_fenced();
                    tracing::error!(
                        call_sid = %end.call_sid,
                        stream_sid = %end.stream_sid,
                        fence = end.fence,
                        "stream_fenced: another replica took this stream over; its end is not stored"
                    );
                }
                Ok(stored)
            }
        };
        self.write("stream_finished", attempt).await
    }

    /// Mark a call ended and queue its pipeline. `Stored(false)`: it had ended already.
    pub async fn call_ended(&self, end: CallEnd) -> Written<bool> {
        let store = self.store.clone();
        let attempt = move || {
            let (store, end) = (store.clone(), end.clone());
            async move {
                let facts = CallFacts {
                    account_sid: end.account_sid.as_deref(),
                    from: end.from.as_deref(),
                    to: end.to.as_deref(),
                    call_status: end.call_status.as_deref(),
                };
                store
                    .call_ended(&end.call_sid, &facts, end.recording_source, end.at_ms)
                    .await
            }
        };
        self.write("call_ended", attempt).await
    }

    /// One attempt now; on failure, keep retrying in the background.
    async fn write<T, F, Fut>(&self, what: &'static str, attempt: F) -> Written<T>
    where
        T: Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send,
    {
        let error = match self.try_once(&attempt).await {
            Ok(v) => return Written::Stored(v),
            Err(e) => e,
        };
        self.metrics.db_write_failed(what);
        if self.pending() >= self.max_pending {
            self.metrics.db_write_dropped(what);
            tracing::error!(write = what, error = %error, pending = self.pending(), "db_write_dropped: the retry queue is full");
            return Written::Dropped;
        }
        tracing::warn!(write = what, error = %error, "db_write_queued: retrying until the database takes it");
        let guard = self.pending.enter();
        let this = self.clone();
        tokio::spawn(async move { this.retry(what, attempt, guard).await });
        Written::Queued
    }

    async fn try_once<T, F, Fut>(&self, attempt: &F) -> Result<T, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        match tokio::time::timeout(self.attempt_timeout, attempt()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.attempt_timeout.as_millis()
            )),
        }
    }

    async fn retry<T, F, Fut>(self, what: &'static str, attempt: F, _pending: TrackerGuard)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut wait = BACKOFF_BASE;
        for tries in 2u64.. {
            tokio::time::sleep(wait).await;
            match self.try_once(&attempt).await {
                Ok(_) => {
                    tracing::info!(write = what, tries, "db_write_stored");
                    return;
                }
                Err(e) => {
                    self.metrics.db_write_failed(what);
                    tracing::debug!(write = what, tries, error = %e, "db_write_retry");
                }
            }
            wait = (wait * 2).min(BACKOFF_CAP);
        }
    }
}
