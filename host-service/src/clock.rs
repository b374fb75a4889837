//! Wall-clock milliseconds for the database, driven by tokio's monotonic clock so tests that
//! pause and advance tokio time move the queue's clock too; tests that cannot pause tokio (the
//! database answers on its own threads) move it with `advance`. Replicas sharing PostgreSQL set
//! it to the database's clock (`set_to`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Clock {
    wall_at_start_ms: i64,
    start: tokio::time::Instant,
    /// Shared by every clone, so the pipeline and the test holding the clock agree.
    skipped_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock::starting_at(wall)
    }

    /// A clock that reads `wall_ms` now (tests use a fixed epoch).
    pub fn starting_at(wall_ms: i64) -> Clock {
        Clock {
            wall_at_start_ms: wall_ms,
            start: tokio::time::Instant::now(),
            skipped_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_at_start_ms
            + self.start.elapsed().as_millis() as i64
            + self.skipped_ms.load(Ordering::SeqCst)
    }

    /// Set this clock and all its clones to read `wall_ms` now: replicas on one database keep
    /// the database's time, so leases and due times mean the same on each whatever their own
    /// clocks say.
    pub fn set_to(&self, wall_ms: i64) {
        self.skipped_ms
            .fetch_add(wall_ms - self.now_ms(), Ordering::SeqCst);
    }

    /// Move this clock and all its clones forward (tests: minutes pass at once).
    pub fn advance(&self, by: Duration) {
        self.skipped_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
