//! The few threads that write every stream recording. A recording with queued audio waits in a
//! list; each round (every [`ROUND`]) the threads take the list and place each recording's
//! audio, so a thousand recordings cost a handful of wake-ups a second instead of one thread
//! switch per batch. There are a fixed number of threads whatever the number of streams: a
//! stalled write holds one of them, the others go on with the rest of the round.

use super::Shared;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How often queued audio is handed to the disk: the batch a SIGKILL can lose on top of the
/// reorder window (docs/host-service.md).
pub const ROUND: Duration = Duration::from_millis(200);
/// Writer threads: two, so one stalled write leaves a thread for the other recordings.
pub const THREADS: usize = 2;

struct Pool {
    /// Recordings that queued audio since their last turn (wait for the next round).
    due: Mutex<Vec<Arc<Shared>>>,
    /// This round's recordings, taken one at a time by whichever thread is free.
    round: Mutex<Vec<Arc<Shared>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static POOL: OnceLock<Arc<Pool>> = OnceLock::new();

fn pool() -> &'static Arc<Pool> {
    POOL.get_or_init(|| {
        let pool = Arc::new(Pool {
            due: Mutex::new(Vec::new()),
            round: Mutex::new(Vec::new()),
        });
        for n in 0..THREADS {
            let p = Arc::clone(&pool);
            let spawned = std::thread::Builder::new()
                .name(format!("recording-writer-{n}"))
                .spawn(move || p.work());
            if let Err(e) = spawned {
                // Fewer threads only make rounds slower; with none, every recording's queue
                // fills and fails it (`disk_too_slow`), and the calls go on.
                tracing::error!(error = %e, "cannot start a recording writer thread");
            }
        }
        pool
    })
}

/// Give a recording its turn in the next round.
pub(super) fn submit(recording: Arc<Shared>) {
    lock(&pool().due).push(recording);
}

impl Pool {
    fn work(&self) {
        let mut next = Instant::now() + ROUND;
        loop {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // A round that ran long is not made up with rounds back to back.
            next = (next + ROUND).max(Instant::now());
            {
                let mut due = lock(&self.due);
                let mut round = lock(&self.round);
                round.append(&mut due);
            }
            let mut again = Vec::new();
            loop {
                let Some(recording) = lock(&self.round).pop() else {
                    break;
                };
                if recording.run() {
                    again.push(recording);
                }
            }
            if !again.is_empty() {
                lock(&self.due).append(&mut again);
            }
        }
    }
}
