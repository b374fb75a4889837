//! Call data is personal data and the disk is finite: calls older than `retention.days`
//! (their rows, stage results, errors and recordings) are deleted by a periodic sweep.

use crate::clock::Clock;
use crate::config::RetentionConfig;
use crate::metrics::Metrics;
use crate::shutdown::wait_true;
use crate::store::{DbError, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub calls: u64,
    pub files: u64,
}

/// Delete every call created more than `days` before `now_ms` that nothing is working on. Files
/// go first, then the rows: a crash in between leaves rows whose files are gone, which the next
/// sweep deletes, never files nobody knows about.
pub async fn sweep(store: &Store, days: u64, now_ms: i64) -> Result<Swept, DbError> {
    let mut swept = Swept::default();
    if days == 0 {
        return Ok(swept);
    }
    let cutoff = now_ms.saturating_sub((days as i64).saturating_mul(DAY_MS));
    for (call_sid, files) in store.expired_calls(cutoff).await? {
        let removed = tokio::task::spawn_blocking(move || remove_files(&files))
            .await
            .unwrap_or(0);
        swept.files += removed;
        if store.delete_call(&call_sid).await? {
            swept.calls += 1;
        }
    }
    Ok(swept)
}

fn remove_files(files: &[String]) -> u64 {
    let mut removed = 0;
    for path in files {
        match std::fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path, error = %e, "retention_file_not_removed"),
        }
    }
    removed
}

/// Sweep now and then every `interval_s` until shutdown.
pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    config: RetentionConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_s);
    loop {
        match sweep(&store, config.days, clock.now_ms()).await {
            Ok(s) => {
                metrics.retention_deleted(s.calls, s.files);
                if s.calls > 0 || s.files > 0 {
                    tracing::info!(
                        calls = s.calls,
                        files = s.files,
                        days = config.days,
                        "retention_deleted"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "retention_failed"),
        }
        tokio::select! {
            _ = wait_true(&mut shutdown) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CallFacts;

    const T0: i64 = 1_700_000_000_000;

    #[tokio::test]
    async fn deletes_exactly_the_calls_past_the_retention_and_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        let facts = CallFacts::default();
        let mut files = Vec::new();
        // Created 31 days, 30 days + 1 ms, exactly 30 days, and 1 day before `now`.
        let ages = [31 * DAY_MS, 30 * DAY_MS + 1, 30 * DAY_MS, DAY_MS];
        let now = T0 + 40 * DAY_MS;
        for (i, age) in ages.iter().enumerate() {
            let call = format!("CA{:032x}", i);
            let stream = format!("MZ{i}");
            let wav = dir.path().join(format!("{call}.wav"));
            std::fs::write(&wav, b"RIFF").unwrap();
            let path = wav.display().to_string();
            store
                .stream_started(&call, &stream, &facts, "stream", now - age)
                .await
                .unwrap();
            store.stream_recording_path(&stream, &path).await.unwrap();
            store
                .stream_finished(
                    &stream,
                    crate::store::FIRST_FENCE,
                    crate::store::StreamStatus::Saved,
                    Some(1),
                    (1, 0, 0),
                    crate::store::CloseReason::Stopped,
                    now,
                )
                .await
                .unwrap();
            files.push(wav);
        }
        assert_eq!(sweep(&store, 0, now).await.unwrap(), Swept::default());
        assert!(files.iter().all(|f| f.exists()));

        let swept = sweep(&store, 30, now).await.unwrap();
        assert_eq!(swept, Swept { calls: 2, files: 2 });
        let exists: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(exists, [false, false, true, true]);
        let left: Vec<String> = sqlx::query_scalar("SELECT call_sid FROM calls ORDER BY call_sid")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(left, [format!("CA{:032x}", 2), format!("CA{:032x}", 3)]);
        let streams: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(streams, 2);
        // Nothing more is due.
        assert_eq!(sweep(&store, 30, now).await.unwrap(), Swept::default());
    }
}
