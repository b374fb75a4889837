//! Keeps a stream recording's disk work away from its socket. The socket appends each frame to
//! the recording's queue (a short lock and a copy, no wake-up); each round of the writer threads
//! (`pool`, every 200 ms) places the queued audio with the [`Recorder`] and writes what is due,
//! so a recording costs no thread of its own and a few writes a second. The end of a recording
//! (last writes, header, `fsync`) runs on the blocking pool, a bounded number at once. The socket
//! never waits for the disk: a queue that grows past its bound (the disk stalled) fails the
//! recording, and the call goes on without it.

use crate::recording::recorder::{Recorder, RecorderLimits, RecordingError, RecordingSummary};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Audio queued for the disk before the recording is given up: 10 s of caller audio. Memory per
/// stream stays bounded whatever the disk does.
pub const MAX_QUEUED_BYTES: usize = 10 * 8000;
/// How long the end of a recording (the last writes, the header and the `fsync`) may take.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Recordings ended (written out and synced) at once; the others wait their turn, off the socket.
pub const MAX_FINISHING: usize = 64;

static FINISHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_FINISHING);

mod pool;
pub use pool::ROUND;

/// Why a recording stopped: a fixed label for `host_recording_failures_total{reason}` and a
/// message for the logs and the call's errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }

    fn backlog() -> Failure {
        Failure::new(
            "disk_too_slow",
            format!(
                "the disk fell {} s behind the call",
                MAX_QUEUED_BYTES / 8000
            ),
        )
    }
}

impl From<RecordingError> for Failure {
    fn from(e: RecordingError) -> Failure {
        match e {
            RecordingError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                Failure::new("no_space", "no space left on device")
            }
            RecordingError::Io(io) => Failure::new("io_error", format!("recording i/o: {io}")),
            other => Failure::new("io_error", other.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where a recording's bytes go: a file, or in tests a stand-in for a disk that stalls.
pub trait Storage: Read + Write + Seek + Send {
    fn sync_all(&self) -> io::Result<()>;
}

impl Storage for File {
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
}

type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn Storage>> + Send>;

enum Op {
    Inbound { timestamp_ms: u64, len: usize },
    Outbound { len: usize },
    ClearOutbound,
}

/// What the socket appends to, under a lock it holds for a copy.
#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    audio: Vec<u8>,
    /// The recording waits for its turn in a round, or is having it.
    scheduled: bool,
    failed: Option<Failure>,
}

/// The file's side, owned by whichever writer has the recording (one at a time).
enum Disk {
    Unopened {
        open: Option<Opener>,
        limits: RecorderLimits,
    },
    Open(Recorder<Box<dyn Storage>>),
    Closed,
}

struct Shared {
    queue: Mutex<Queue>,
    disk: Mutex<(Disk, Vec<Op>, Vec<u8>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A job that panicked left plain data behind; the recording fails on its own error.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The socket's handle on its recording.
pub struct RecordingWriter {
    shared: Arc<Shared>,
}

impl RecordingWriter {
    /// Start a recording at `path` (created mode 0600 by the first job, off the socket): a file
    /// that cannot be created fails the recording, reported by the next call.
    pub fn create(path: PathBuf, limits: RecorderLimits) -> RecordingWriter {
        Self::with_storage(
            move || Ok(Box::new(crate::fsutil::create_private_file(&path)?) as Box<dyn Storage>),
            limits,
        )
    }

    /// A recording into whatever `open` returns (opened by the first job).
    pub fn with_storage(
        open: impl FnOnce() -> io::Result<Box<dyn Storage>> + Send + 'static,
        limits: RecorderLimits,
    ) -> RecordingWriter {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                scheduled: true,
                ..Queue::default()
            }),
            disk: Mutex::new((
                Disk::Unopened {
                    open: Some(Box::new(open)),
                    limits,
                },
                Vec::new(),
                Vec::new(),
            )),
        });
        pool::submit(Arc::clone(&shared));
        RecordingWriter { shared }
    }

    /// Queue caller audio.
    pub fn inbound(&self, timestamp_ms: u64, mulaw: &[u8]) -> Result<(), Failure> {
        self.push(
            Op::Inbound {
                timestamp_ms,
                len: mulaw.len(),
            },
            mulaw,
        )
    }

    /// Queue audio the service sent.
    pub fn outbound(&self, mulaw: &[u8]) -> Result<(), Failure> {
        self.push(Op::Outbound { len: mulaw.len() }, mulaw)
    }

    pub fn clear_outbound(&self) -> Result<(), Failure> {
        self.push(Op::ClearOutbound, &[])
    }

    /// Why the recording stopped, if it did.
    pub fn failed(&self) -> Option<Failure> {
        lock(&self.shared.queue).failed.clone()
    }

    fn push(&self, op: Op, audio: &[u8]) -> Result<(), Failure> {
        let mut q = lock(&self.shared.queue);
        if let Some(f) = &q.failed {
            return Err(f.clone());
        }
        if q.audio.len() + audio.len() > MAX_QUEUED_BYTES {
            let f = Failure::backlog();
            q.failed = Some(f.clone());
            q.ops = Vec::new();
            q.audio = Vec::new();
            return Err(f);
        }
        q.audio.extend_from_slice(audio);
        q.ops.push(op);
        if !q.scheduled {
            q.scheduled = true;
            drop(q);
            pool::submit(Arc::clone(&self.shared));
        }
        Ok(())
    }

    /// Write what is queued, complete the header and sync the file. A recording that already
    /// failed answers at once, whatever its last job is still doing.
    pub async fn finish(self) -> Result<RecordingSummary, Failure> {
        if let Some(f) = self.failed() {
            return Err(f);
        }
        let shared = Arc::clone(&self.shared);
        let job = async {
            let permit = FINISHING.acquire().await;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                shared.finish()
            })
            .await
        };
        match tokio::time::timeout(FINISH_TIMEOUT, job).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(Failure::new("io_error", format!("recording job: {e}"))),
            Err(_) => {
                let f = Failure::new(
                    "disk_too_slow",
                    format!(
                        "the disk did not finish the recording within {} s",
                        FINISH_TIMEOUT.as_secs()
                    ),
                );
                lock(&self.shared.queue).failed = Some(f.clone());
                Err(f)
            }
        }
    }
}

impl Shared {
    /// The recording's turn in a round: place what is queued. True when more came meanwhile,
    /// so it keeps its place for the next round.
    fn run(&self) -> bool {
        let mut disk = lock(&self.disk);
        if matches!(disk.0, Disk::Closed) {
            // Finished or failed since it was queued: nothing is written any more.
            lock(&self.queue).scheduled = false;
            return false;
        }
        if let Err(f) = self.drain(&mut disk) {
            self.fail(&mut disk, f);
            return false;
        }
        let mut q = lock(&self.queue);
        q.scheduled = !q.ops.is_empty();
        q.scheduled
    }

    fn finish(&self) -> Result<RecordingSummary, Failure> {
        let mut disk = lock(&self.disk);
        let finished = self.drain(&mut disk).and_then(|()| {
            match std::mem::replace(&mut disk.0, Disk::Closed) {
                Disk::Open(recorder) => {
                    let (summary, file) = recorder.finalize()?;
                    file.sync_all().map_err(RecordingError::from)?;
                    Ok(summary)
                }
                _ => Err(Failure::new("io_error", "the recording was already closed")),
            }
        });
        if let Err(f) = &finished {
            self.fail(&mut disk, f.clone());
        }
        finished
    }

    /// Apply everything queued now, opening the file first if this is the first job.
    fn drain(&self, disk: &mut (Disk, Vec<Op>, Vec<u8>)) -> Result<(), Failure> {
        let (state, ops, audio) = disk;
        if let Disk::Unopened { open, limits } = state {
            let limits = *limits;
            let open = open
                .take()
                .ok_or_else(|| Failure::new("io_error", "the recording could not be opened"))?;
            let file = open().map_err(RecordingError::from)?;
            *state = Disk::Open(Recorder::new(file, limits)?);
        }
        {
            let mut q = lock(&self.queue);
            if let Some(f) = &q.failed {
                return Err(f.clone());
            }
            // Swap, so both sides keep their buffers' capacity and nothing is allocated per job.
            std::mem::swap(&mut q.ops, ops);
            std::mem::swap(&mut q.audio, audio);
        }
        let Disk::Open(recorder) = state else {
            ops.clear();
            audio.clear();
            return Err(Failure::new("io_error", "the recording was already closed"));
        };
        let mut at = 0;
        let mut result = Ok(());
        for op in ops.iter() {
            let written = match *op {
                Op::Inbound { timestamp_ms, len } => {
                    at += len;
                    recorder.push_inbound(timestamp_ms, &audio[at - len..at])
                }
                Op::Outbound { len } => {
                    at += len;
                    recorder.push_outbound(&audio[at - len..at])
                }
                Op::ClearOutbound => {
                    recorder.clear_outbound();
                    Ok(())
                }
            };
            match written {
                // The socket refuses caller audio past the limit before it gets here; agent
                // audio past it is simply not recorded.
                Ok(()) | Err(RecordingError::TooLong { .. }) => {}
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        ops.clear();
        audio.clear();
        result
    }

    /// Stop for good: the queue refuses more, and the file is closed where it stands.
    fn fail(&self, disk: &mut (Disk, Vec<Op>, Vec<u8>), f: Failure) {
        disk.0 = Disk::Closed;
        let mut q = lock(&self.queue);
        q.failed.get_or_insert(f);
        q.scheduled = false;
        q.ops = Vec::new();
        q.audio = Vec::new();
    }
}

#[cfg(test)]
mod tests;
