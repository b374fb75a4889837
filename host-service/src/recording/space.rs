//! The free-space guard: the recordings directory's free space, sampled every few seconds (and
//! shown as `host_recording_free_bytes`), stops new recordings once it falls below
//! `recording.min_free_mb`, so the disk never fills under the recordings already open. Calls go
//! on without a recording; a warning comes first, at twice the floor.

use super::Failure;
use crate::metrics::Metrics;
use crate::shutdown::wait_true;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the free space is looked at.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

pub struct SpaceGuard {
    dir: PathBuf,
    min_free_bytes: u64,
    /// The last sample; `u64::MAX` until the first one (and when it cannot be read).
    free: AtomicU64,
}

/// What a sample says, in order of urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Plenty,
    /// Below twice the floor: time to act.
    Low,
    /// Below the floor: new recordings are stopped.
    Full,
}

impl SpaceGuard {
    pub fn new(dir: PathBuf, min_free_mb: u64) -> SpaceGuard {
        SpaceGuard {
            dir,
            min_free_bytes: min_free_mb.saturating_mul(1 << 20),
            free: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether a new recording may start.
    pub fn check(&self) -> Result<(), Failure> {
        let free = self.free.load(Ordering::Relaxed);
        if free >= self.min_free_bytes {
            return Ok(());
        }
        Err(Failure::new(
            "low_disk_space",
            format!(
                "not enough free space for recordings: {} MB free, recording.min_free_mb is {}",
                free >> 20,
                self.min_free_bytes >> 20
            ),
        ))
    }

    /// Read the free space now (for an unprivileged writer: `f_bavail`) and keep it.
    pub fn sample(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        self.free.store(free, Ordering::Relaxed);
        Ok(free)
    }

    pub fn level(&self, free: u64) -> Level {
        if free < self.min_free_bytes {
            Level::Full
        } else if free < self.min_free_bytes.saturating_mul(2) {
            Level::Low
        } else {
            Level::Plenty
        }
    }
}

/// Sample until the service drains, logging each change of level once.
pub async fn watch(guard: Arc<SpaceGuard>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let mut last = Level::Plenty;
    loop {
        let g = Arc::clone(&guard);
        match tokio::task::spawn_blocking(move || g.sample()).await {
            Ok(Ok(free)) => {
                metrics.recording_free_bytes(free);
                let level = guard.level(free);
                if level != last {
                    let (free_mb, min_free_mb) = (free >> 20, guard.min_free_bytes >> 20);
                    match level {
                        Level::Full => {
                            tracing::error!(free_mb, min_free_mb, dir = %guard.dir.display(), "recording_disk_full: new recordings are stopped")
                        }
                        Level::Low => {
                            tracing::warn!(free_mb, min_free_mb, dir = %guard.dir.display(), "recording_disk_low: under twice recording.min_free_mb")
                        }
                        Level::Plenty => tracing::info!(free_mb, min_free_mb, "recording_disk_ok"),
                    }
                    last = level;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %guard.dir.display(), error = %e, "recording_disk_unreadable")
            }
            Err(e) => tracing::warn!(error = %e, "recording_disk_unreadable"),
        }
        tokio::select! {
            _ = wait_true(&mut stop) => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_new_recordings_below_the_floor_and_warns_at_twice_it() {
        let tmp = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(tmp.path().to_path_buf(), 100);
        assert_eq!(guard.check(), Ok(()), "nothing sampled yet");
        let free = guard.sample().unwrap();
        assert!(free > 0);
        assert_eq!(guard.level(250 << 20), Level::Plenty);
        assert_eq!(guard.level(150 << 20), Level::Low);
        assert_eq!(guard.level(99 << 20), Level::Full);
        guard.free.store(99 << 20, Ordering::Relaxed);
        assert_eq!(
            guard.check(),
            Err(Failure::new(
                "low_disk_space",
                "not enough free space for recordings: 99 MB free, recording.min_free_mb is 100"
            ))
        );
        guard.free.store(100 << 20, Ordering::Relaxed);
        assert_eq!(guard.check(), Ok(()));
    }

    #[test]
    fn a_floor_of_zero_never_stops_recordings() {
        let guard = SpaceGuard::new(PathBuf::from("/no/such/dir"), 0);
        assert!(guard.sample().is_err());
        guard.free.store(0, Ordering::Relaxed);
        assert_eq!(guard.check(), Ok(()));
    }
}
