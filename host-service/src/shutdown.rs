//! The drain signal every long-lived task (sockets, workers, the retention sweep) watches, kept
//! apart from the state so those tasks do not depend on each other through it.

use tokio::sync::watch;

/// Resolve once the flag is true (a closed channel counts: its sender is gone).
pub async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
