//! The drain: the signal every long-lived task (sockets, workers, the retention sweep) watches,
//! and the counter of open sockets and connections that shutdown waits on, kept apart from the
//! state so those tasks do not depend on each other through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Resolve once the flag is true (a closed channel counts: its sender is gone).
pub async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Counts open sockets (or connections) so shutdown can wait for them.
#[derive(Default)]
pub struct Tracker {
    open: AtomicUsize,
    changed: Notify,
}

/// Held while one socket is open: dropping it (on every way out, a panic included) counts it
/// closed.
pub struct TrackerGuard(Arc<Tracker>);

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.changed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}
