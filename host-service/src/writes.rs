//! Writes a socket or a webhook must get into the database even while it is away (a failover, a
//! hung server): a stream's start, its recording's path, a call's error, a stream's end and a
//! call's end. Each is tried once within
//! `database.write_timeout_ms`; if it does not stick it is kept in memory and retried with
//! backoff until it does, so the caller (the media socket closing, Twilio waiting on its
//! webhook) never waits on the database and the call still finishes once the database is back.
//! At most `database.retry_queue_max` are kept at once; the drain waits for them up to its
//! deadline. The writes of one call are kept in order: one waits for the call's earlier writes
//! still kept for retry, so a stream's end never overtakes its start, nor the call's end its
//! streams'. The writes are idempotent (a start seen twice is
//! the same stream, a stream's end is guarded by its fencing token, a call's end by
//! `ended_at_ms`, a call's error by the key all its attempts carry), so an attempt that timed
//! out yet landed later changes nothing.

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::shutdown::{Tracker, TrackerGuard};
use crate::store::{Admit, CallFacts, CloseReason, DbError, Store, StreamStart, StreamStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

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

/// A stream's `start`, as its socket saw it.
#[derive(Debug, Clone)]
pub struct StreamBegin {
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub recording_source: &'static str,
    pub at_ms: i64,
    /// The most streams of the call open at once, counted in the database (on PostgreSQL,
    /// where the call's sockets may be on several replicas); `None` checks no count.
    pub max_open: Option<i64>,
}

/// The last write kept for retry of each call with one: the call's next write waits for it.
/// Each resolves (its sender dropped) once that write is done with; entries go with it.
#[derive(Default)]
struct Chains(std::sync::Mutex<HashMap<String, oneshot::Receiver<()>>>);

impl Chains {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Receiver<()>>> {
        // Every update is one call on the map: a panic cannot leave it half-changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a write of `call` is still waiting for the database.
    fn waiting(&self, call: &str) -> bool {
        let mut chains = self.lock();
        let Some(last) = chains.get_mut(call) else {
            return false;
        };
        let waiting = matches!(last.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        if !waiting {
            chains.remove(call);
        }
        waiting
    }

    /// `landed` becomes the call's last write; the one it replaces is what it waits for.
    fn push(&self, call: &str, landed: oneshot::Receiver<()>) -> Option<oneshot::Receiver<()>> {
        self.lock().insert(call.to_owned(), landed)
    }
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
    chains: Arc<Chains>,
    /// When a retried start lands (the database's time on PostgreSQL).
    clock: Clock,
    /// `pipeline.stream_wait_timeout_ms`: a start landing this long after the call's end
    /// still reopens its recording stage.
    late_start_window_ms: i64,
    /// Numbers the keys of this process's error writes.
    errors_written: Arc<AtomicU64>,
}

/// What bounds the writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// `database.write_timeout_ms`: one attempt's wait.
    pub attempt_timeout: Duration,
    /// `database.retry_queue_max`.
    pub max_pending: usize,
    /// `pipeline.stream_wait_timeout_ms`.
    pub late_start_window_ms: u64,
}

impl Writes {
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Clock, limits: WriteLimits) -> Writes {
        Writes {
            store,
            metrics,
            attempt_timeout: limits.attempt_timeout,
            max_pending: limits.max_pending,
            pending: Arc::new(Tracker::default()),
            chains: Arc::default(),
            clock,
            late_start_window_ms: i64::try_from(limits.late_start_window_ms).unwrap_or(i64::MAX),
            errors_written: Arc::default(),
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
        let call = end.call_sid.clone();
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let attempt = move |_| {
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
        self.write("stream_finished", attempt, &call).await
    }

    /// Store a stream's start. Once it is kept for retry, a later attempt stores it even if the
    /// call's end came meanwhile (the stream did run before it; `Admit::Late`), and finding it
    /// already stored (an attempt that timed out yet landed) is success.
    pub async fn stream_started(&self, begin: StreamBegin) -> Written<StreamStart> {
        let call = begin.call_sid.clone();
        let (store, clock, window) = (
            self.store.clone(),
            self.clock.clone(),
            self.late_start_window_ms,
        );
        let attempt = move |retried: bool| {
            let (store, begin) = (store.clone(), begin.clone());
            let admit = if retried {
                Admit::Late {
                    now: clock.now_ms(),
                    reopen_within_ms: window,
                }
            } else {
                Admit::Live {
                    max_open: begin.max_open,
                }
            };
            async move {
                let facts = CallFacts {
                    account_sid: begin.account_sid.as_deref(),
                    from: begin.from.as_deref(),
                    to: begin.to.as_deref(),
                    call_status: None,
                };
                store
                    .stream_started_as(
                        &begin.call_sid,
                        &begin.stream_sid,
                        &facts,
                        begin.recording_source,
                        begin.at_ms,
                        admit,
                    )
                    .await
            }
        };
        self.write("stream_started", attempt, &call).await
    }

    /// Where a stream's recording is written.
    pub async fn stream_path(&self, call_sid: &str, stream_sid: &str, path: &str) {
        let (store, stream_sid, path) =
            (self.store.clone(), stream_sid.to_owned(), path.to_owned());
        let attempt = move |_| {
            let (store, stream_sid, path) = (store.clone(), stream_sid.clone(), path.clone());
            async move { store.stream_recording_path(&stream_sid, &path).await }
        };
        self.write("stream_path", attempt, call_sid).await;
    }

    /// One of a call's errors (why its recording failed).
    pub async fn call_error(
        &self,
        call_sid: &str,
        stage: &'static str,
        message: String,
        at_ms: i64,
    ) {
        let call = call_sid.to_owned();
        let (store, call_sid) = (self.store.clone(), call_sid.to_owned());
        // One key for every attempt of this write; the replica's name keeps it unique across
        // processes and restarts.
        let n = self.errors_written.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = format!("{}:{n}", self.store.replica()).into();
        let attempt = move |_| {
            let (store, call_sid, message) = (store.clone(), call_sid.clone(), message.clone());
            let key = key.clone();
            async move {
                store
                    .add_error(&call_sid, stage, &message, at_ms, Some(&key))
                    .await
            }
        };
        self.write("call_error", attempt, &call).await;
    }

    /// Mark a call ended and queue its pipeline. `Stored(false)`: it had ended already.
    pub async fn call_ended(&self, end: CallEnd) -> Written<bool> {
        let call = end.call_sid.clone();
        let store = self.store.clone();
        let attempt = move |_| {
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
        self.write("call_ended", attempt, &call).await
    }

    /// One attempt now (none while an earlier write of the call waits); on failure, keep
    /// retrying in the background, after the call's earlier writes.
    async fn write<T, F, Fut>(&self, what: &'static str, attempt: F, call: &str) -> Written<T>
    where
        T: Send + 'static,
        F: Fn(bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send,
    {
        let behind = self.chains.waiting(call);
        let error = if behind {
            "an earlier write of this call is waiting for the database".to_owned()
        } else {
            match self.try_once(&attempt, false).await {
                Ok(v) => return Written::Stored(v),
                Err(e) => {
                    self.metrics.db_write_failed(what);
                    e
                }
            }
        };
        if self.pending() >= self.max_pending {
            self.metrics.db_write_dropped(what);
            tracing::error!(write = what, error = %error, pending = self.pending(), "db_write_dropped: the retry queue is full");
            return Written::Dropped;
        }
        tracing::warn!(write = what, error = %error, "db_write_queued: retrying until the database takes it");
        let guard = self.pending.enter();
        let (done, landed) = oneshot::channel::<()>();
        let after = self.chains.push(call, landed);
        let (this, call) = (self.clone(), call.to_owned());
        tokio::spawn(async move {
            if let Some(after) = after {
                let _ = after.await;
            }
            this.clone().retry(what, attempt, guard, behind).await;
            drop(done);
            // Forgets the call unless a later write of it waits behind this one.
            this.chains.waiting(&call);
        });
        Written::Queued
    }

    /// `retried`: the caller was told the write is kept for retry (it no longer waits on the
    /// answer).
    async fn try_once<T, F, Fut>(&self, attempt: &F, retried: bool) -> Result<T, String>
    where
        F: Fn(bool) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        match tokio::time::timeout(self.attempt_timeout, attempt(retried)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.attempt_timeout.as_millis()
            )),
        }
    }

    /// `now`: the first try is due at once (the write waited behind the call's earlier writes,
    /// not on an error of its own).
    async fn retry<T, F, Fut>(
        self,
        what: &'static str,
        attempt: F,
        _pending: TrackerGuard,
        now: bool,
    ) where
        F: Fn(bool) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut wait = if now { Duration::ZERO } else { BACKOFF_BASE };
        for tries in 2u64.. {
            tokio::time::sleep(wait).await;
            match self.try_once(&attempt, true).await {
                Ok(_) => {
                    tracing::info!(write = what, tries, "db_write_stored");
                    return;
                }
                Err(e) => {
                    self.metrics.db_write_failed(what);
                    tracing::debug!(write = what, tries, error = %e, "db_write_retry");
                }
            }
            wait = (wait * 2).clamp(BACKOFF_BASE, BACKOFF_CAP);
        }
    }
}

#[cfg(test)]
mod tests;
