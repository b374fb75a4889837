//! Keeps a stream recording's disk writes off the async workers: every open recording has its own
//! thread that owns the file, fed through a bounded channel, so a socket that outruns the disk
//! waits for it instead of blocking a tokio worker (and every other socket on it).

use crate::recording::recorder::{Recorder, RecorderLimits, RecordingError, RecordingSummary};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Frames queued for the writer before the socket waits (at 50 frames/s, about 1.3 s of audio).
const QUEUE_FRAMES: usize = 64;

enum Command {
    Inbound { timestamp_ms: u64, mulaw: Vec<u8> },
    Outbound(Vec<u8>),
    ClearOutbound,
}

/// The socket's handle on its recording thread.
pub struct RecordingWriter {
    tx: mpsc::Sender<Command>,
    done: oneshot::Receiver<Result<RecordingSummary, RecordingError>>,
}

impl RecordingWriter {
    /// Create the file (mode 0600) on a new thread and start writing; a file that cannot be
    /// created is reported here.
    pub async fn create(
        path: PathBuf,
        limits: RecorderLimits,
    ) -> Result<RecordingWriter, RecordingError> {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || {
                let opened = crate::fsutil::create_private_file(&path)
                    .map_err(RecordingError::from)
                    .and_then(|f| Recorder::new(f, limits));
                match opened {
                    Ok(recorder) => {
                        let _ = ready_tx.send(Ok(()));
                        let _ = done_tx.send(write_all(recorder, rx));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        ready_rx.await.map_err(|_| RecordingError::WriterGone)??;
        Ok(RecordingWriter { tx, done: done_rx })
    }

    /// Queue caller audio; fails once the writer has stopped on an error (`finish` tells which).
    pub async fn inbound(&self, timestamp_ms: u64, mulaw: Vec<u8>) -> Result<(), RecordingError> {
        self.send(Command::Inbound {
            timestamp_ms,
            mulaw,
        })
        .await
    }

    pub async fn outbound(&self, mulaw: Vec<u8>) -> Result<(), RecordingError> {
        self.send(Command::Outbound(mulaw)).await
    }

    pub async fn clear_outbound(&self) -> Result<(), RecordingError> {
        self.send(Command::ClearOutbound).await
    }

    async fn send(&self, command: Command) -> Result<(), RecordingError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| RecordingError::WriterGone)
    }

    /// Write what is queued, complete the header, sync the file, and stop the thread.
    pub async fn finish(self) -> Result<RecordingSummary, RecordingError> {
        drop(self.tx);
        self.done.await.map_err(|_| RecordingError::WriterGone)?
    }
}

fn write_all(
    mut recorder: Recorder<std::fs::File>,
    mut rx: mpsc::Receiver<Command>,
) -> Result<RecordingSummary, RecordingError> {
    while let Some(command) = rx.blocking_recv() {
        let written = match command {
            Command::Inbound {
                timestamp_ms,
                mulaw,
            } => recorder.push_inbound(timestamp_ms, &mulaw),
            Command::Outbound(mulaw) => recorder.push_outbound(&mulaw),
            Command::ClearOutbound => {
                recorder.clear_outbound();
                Ok(())
            }
        };
        match written {
            // The socket refuses caller audio past the limit before it gets here; agent audio
            // past it is simply not recorded.
            Ok(()) | Err(RecordingError::TooLong { .. }) => {}
            // Dropping `rx` tells the socket, whose next send fails.
            Err(e) => return Err(e),
        }
    }
    let (summary, file) = recorder.finalize()?;
    file.sync_all()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_on_its_own_thread_and_reports_the_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.wav");
        let w = RecordingWriter::create(path.clone(), RecorderLimits::default())
            .await
            .unwrap();
        w.inbound(0, vec![0xFF; 160]).await.unwrap();
        w.inbound(40, vec![0x00; 160]).await.unwrap();
        let summary = w.finish().await.unwrap();
        assert_eq!(summary.frames, 480);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 480 * 4);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_created_is_an_error_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let err = RecordingWriter::create(tmp.path().join("no/such/dir.wav"), Default::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, RecordingError::Io(_)), "{err}");
    }
}
