//! The live calls list (`GET /api/events`, server-sent events): one task waits for the calls'
//! changes (`Calls::changes`; the host's store publishes them as writes commit, on every replica)
//! and, while someone listens, reads the newest calls again and broadcasts the rows that changed;
//! each client gets a snapshot when it connects, then the changes. A client that falls more than
//! `CHANNEL` events behind is disconnected (its `EventSource` reconnects and gets a fresh
//! snapshot) instead of being buffered for.

use crate::host::{Calls, CallsError};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The newest calls watched (and sent as the snapshot).
pub const WATCHED: i64 = 200;
/// Events a client may fall behind before it is dropped.
pub const CHANNEL: usize = 256;
/// What the browser waits before reconnecting.
const RETRY: Duration = Duration::from_millis(1000);

/// One server-sent event: its name and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub name: &'static str,
    pub data: String,
}

impl FeedEvent {
    /// `snapshot`: `{"calls": [...]}`, newest first.
    pub fn snapshot(calls: &[Value]) -> FeedEvent {
        FeedEvent {
            name: "snapshot",
            data: serde_json::json!({ "calls": calls }).to_string(),
        }
    }

    /// `call`: one call's row as the list shows it (the `/api/calls` shape).
    pub fn call(row: &Value) -> FeedEvent {
        FeedEvent {
            name: "call",
            data: row.to_string(),
        }
    }

    fn to_sse(&self) -> Event {
        Event::default().event(self.name).data(&self.data)
    }
}

/// The rows of `now` that are new or differ from `seen`, oldest first (so a client inserting
/// each at the top keeps newest first); `seen` becomes `now`'s rows.
pub fn changes(seen: &mut HashMap<String, Value>, now: &[Value]) -> Vec<FeedEvent> {
    let mut out = Vec::new();
    for row in now.iter().rev() {
        let Some(sid) = row["call_sid"].as_str() else {
            continue;
        };
        if seen.get(sid) != Some(row) {
            seen.insert(sid.to_owned(), row.clone());
            out.push(FeedEvent::call(row));
        }
    }
    // Only what is still watched is remembered: memory stays at `WATCHED` rows.
    if seen.len() > now.len() {
        seen.retain(|sid, _| now.iter().any(|r| r["call_sid"] == sid.as_str()));
    }
    out
}

/// Resolves once the service drains (a closed channel counts: its sender is gone).
async fn drained(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The broadcaster and its task (started by the first client).
pub struct Feed {
    calls: Arc<dyn Calls>,
    shutdown: watch::Receiver<bool>,
    tx: broadcast::Sender<Arc<FeedEvent>>,
    task: OnceLock<()>,
}

impl Feed {
    pub fn new(calls: Arc<dyn Calls>, shutdown: watch::Receiver<bool>) -> Feed {
        let (tx, _) = broadcast::channel(CHANNEL);
        Feed {
            calls,
            shutdown,
            tx,
            task: OnceLock::new(),
        }
    }

    fn start_task(&self) {
        self.task.get_or_init(|| {
            let calls = self.calls.clone();
            let tx = self.tx.clone();
            let mut shutdown = self.shutdown.clone();
            let mut changed = self.calls.changes();
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                loop {
                    tokio::select! {
                        _ = drained(&mut shutdown) => break,
                        got = changed.recv() => match got {
                            // A lag only means several changes: one look covers them all.
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                    }
                    // Changes that came meanwhile are covered by the same look.
                    while !matches!(
                        changed.try_recv(),
                        Err(broadcast::error::TryRecvError::Empty
                            | broadcast::error::TryRecvError::Closed)
                    ) {}
                    if tx.receiver_count() == 0 {
                        continue;
                    }
                    match calls.newest(WATCHED).await {
                        Ok(rows) => {
                            for event in changes(&mut seen, &rows) {
                                let _ = tx.send(Arc::new(event));
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "feed_poll_failed"),
                    }
                }
            });
        });
    }

    /// A client's stream: the snapshot, then changes, until it lags, the service drains or the
    /// client goes away.
    pub async fn subscribe(
        &self,
    ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, CallsError> {
        self.start_task();
        // Subscribed before the snapshot is read: nothing that changes in between is missed
        // (at worst a row comes twice, and rows are replaced whole).
        let rx = self.tx.subscribe();
        let snapshot = FeedEvent::snapshot(&self.calls.newest(WATCHED).await?);
        let changes = futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event.to_sse(), rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "feed_client_lagged");
                    None
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        let mut shutdown = self.shutdown.clone();
        let stream = futures_util::stream::once(async move { snapshot.to_sse().retry(RETRY) })
            .chain(changes)
            .take_until(async move { drained(&mut shutdown).await })
            .map(Ok);
        Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::BodyDataStream;
    use axum::response::IntoResponse;
    use serde_json::json;
    use std::sync::Mutex;

    /// Calls held in memory, with their changes sent by the test.
    struct Fake {
        rows: Mutex<Vec<Value>>,
        changed: broadcast::Sender<Arc<str>>,
    }

    #[async_trait::async_trait]
    impl Calls for Fake {
        async fn newest(&self, limit: i64) -> Result<Vec<Value>, CallsError> {
            let rows = self.rows.lock().unwrap();
            Ok(rows.iter().take(limit as usize).cloned().collect())
        }

        fn changes(&self) -> broadcast::Receiver<Arc<str>> {
            self.changed.subscribe()
        }
    }

    /// The next event's name and data (keep-alive comments skipped); `None` when the stream ends.
    async fn next_event(frames: &mut BodyDataStream, buf: &mut String) -> Option<(String, Value)> {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if frame.starts_with(':') {
                    continue;
                }
                let field = |name: &str| frame.lines().find_map(|l| l.strip_prefix(name));
                let data = serde_json::from_str(field("data: ").unwrap()).unwrap();
                return Some((field("event: ").unwrap().to_owned(), data));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .expect("no event within 10 s")?
                .unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    #[tokio::test]
    async fn a_client_gets_the_snapshot_then_the_changed_rows_until_the_drain() {
        let (changed, _) = broadcast::channel(16);
        let calls = Arc::new(Fake {
            rows: Mutex::new(vec![row("CA1", "in_progress")]),
            changed: changed.clone(),
        });
        let (stop, shutdown) = watch::channel(false);
        let feed = Feed::new(calls.clone(), shutdown);
        let sse = feed.subscribe().await.unwrap().into_response();
        let mut frames = sse.into_body().into_data_stream();
        let mut buf = String::new();
        assert_eq!(
            next_event(&mut frames, &mut buf).await,
            Some((
                "snapshot".to_owned(),
                json!({"calls": [row("CA1", "in_progress")]})
            ))
        );
        *calls.rows.lock().unwrap() = vec![row("CA2", "in_progress"), row("CA1", "completed")];
        changed.send("CA2".into()).unwrap();
        // The feed's first look has seen nothing yet: every watched row comes, oldest first.
        assert_eq!(
            next_event(&mut frames, &mut buf).await,
            Some(("call".to_owned(), row("CA1", "completed")))
        );
        assert_eq!(
            next_event(&mut frames, &mut buf).await,
            Some(("call".to_owned(), row("CA2", "in_progress")))
        );
        stop.send(true).unwrap();
        assert_eq!(next_event(&mut frames, &mut buf).await, None);
    }

    fn row(sid: &str, status: &str) -> Value {
        json!({"call_sid": sid, "status": status, "from": "+15550001", "to": null,
               "created_at_ms": 1, "ended_at_ms": null, "recording_status": "recording"})
    }

    #[test]
    fn only_new_and_changed_rows_become_events_oldest_first() {
        let mut seen = HashMap::new();
        let first = [row("CA2", "in_progress"), row("CA1", "completed")];
        let events = changes(&mut seen, &first);
        assert_eq!(
            events,
            [FeedEvent::call(&first[1]), FeedEvent::call(&first[0])]
        );
        assert_eq!(changes(&mut seen, &first), []);
        let second = [
            row("CA3", "in_progress"),
            row("CA2", "ended"),
            row("CA1", "completed"),
        ];
        let events = changes(&mut seen, &second);
        assert_eq!(
            events,
            [FeedEvent::call(&second[1]), FeedEvent::call(&second[0])]
        );
        assert_eq!(events[0].name, "call");
        let v: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(v["status"], "ended");
        assert_eq!(v["call_sid"], "CA2");
        // A row that leaves the watched window is forgotten.
        changes(&mut seen, &second[..1]);
        assert_eq!(seen.len(), 1);
        assert!(seen.contains_key("CA3"));
    }

    #[test]
    fn the_snapshot_carries_every_row_in_order() {
        let calls = [row("CA2", "failed"), row("CA1", "completed")];
        let e = FeedEvent::snapshot(&calls);
        assert_eq!(e.name, "snapshot");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v, json!({"calls": [calls[0], calls[1]]}));
        assert!(!e.data.contains('\n'), "one data line per event");
    }
}
