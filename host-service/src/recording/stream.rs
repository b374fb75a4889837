//! The `stream` source: each media socket writes its own WAV under the recordings directory, and
//! a call's recording is the longest one its streams saved. Also the repair of the files a dead
//! process left open, since only this source writes files while a socket lives.

use super::recorder::{RecorderLimits, CHANNELS, SAMPLE_RATE};
use super::space::SpaceGuard;
use super::writer::RecordingWriter;
use super::{Failure, NotReady, OpenRecording, Ready, Source, StartedStream};
use crate::clock::Clock;
use crate::store::{CloseReason, DbError, Store, StreamStatus};
use std::path::PathBuf;
use std::sync::Arc;

/// The recording stage's error for a call none of whose streams left a recording.
pub const NO_RECORDING: &str = "no stream of this call was recorded";

pub struct StreamSource {
    pub store: Store,
    pub recordings_dir: PathBuf,
    pub limits: RecorderLimits,
    pub space: Arc<SpaceGuard>,
}

#[async_trait::async_trait]
impl Source for StreamSource {
    fn name(&self) -> &'static str {
        "stream"
    }

    async fn stream_started(
        &self,
        stream: StartedStream<'_>,
    ) -> Result<Option<OpenRecording>, Failure> {
        self.space.check()?;
        // A stream whose number is not known yet is named by its streamSid, unique as well.
        let name = match stream.idx {
            Some(0) => format!("{}.wav", stream.call_sid),
            Some(idx) => format!("{}.{idx}.wav", stream.call_sid),
            None => format!("{}.{}.wav", stream.call_sid, stream.stream_sid),
        };
        let path = self.recordings_dir.join(name);
        let writer = RecordingWriter::create(path.clone(), self.limits);
        let path = path.display().to_string();
        Ok(Some(OpenRecording {
            writer,
            path,
            limits: self.limits,
        }))
    }

    async fn ready(&self, call_sid: &str) -> Result<Ready, NotReady> {
        if self.store.open_streams(call_sid).await? > 0 {
            return Err(NotReady::WaitForStreams(
                "a stream of this call is still open".into(),
            ));
        }
        // Every socket has finished and the call has ended (no stream starts after that): when
        // none left a recording (the handshake never happened, or a replica died before the
        // file was opened), none ever will.
        let Some((path, duration_ms)) = self.store.best_stream_recording(call_sid).await? else {
            // A socket whose recording failed left the reason in the call's errors (stage
            // `stream`): say it.
            let why = self.store.errors_of(call_sid, "stream").await?;
            return Err(NotReady::Fail(match why.last() {
                Some(reason) => format!("{NO_RECORDING}: {reason}"),
                None => NO_RECORDING.into(),
            }));
        };
        let is_file = tokio::fs::metadata(&path)
            .await
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file {
            return Err(NotReady::Fail(format!("recording {path} is missing")));
        }
        Ok(Ready {
            path,
            duration_ms: duration_ms.max(0) as u64,
        })
    }
}

/// Fix recordings a crashed process left open: the header gets the sizes of what is on disk,
/// the audio is kept, and the stream is marked `repaired` so the pipeline can use it. Returns
/// how many were repaired.
pub async fn repair_orphans(store: &Store, alive_since_ms: i64) -> Result<usize, DbError> {
    let mut repaired = 0;
    for taken in store.take_orphaned_streams(alive_since_ms).await? {
        let (stream_sid, path) = (taken.stream_sid, taken.path);
        let ended = |status, frames| {
            store.stream_finished(
                &stream_sid,
                taken.fence,
                status,
                frames,
                (0, 0, 0),
                CloseReason::ProcessDied,
                Clock::new().now_ms(),
            )
        };
        // No file was being written (the `twilio` source, or a socket that had just started), or
        // its writer had not opened it yet (it does so with the first audio): nothing to repair.
        if path.is_empty() || matches!(tokio::fs::try_exists(&path).await, Ok(false)) {
            ended(StreamStatus::NotRecorded, None).await?;
            continue;
        }
        let result = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || -> Result<u64, String> {
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(|e| e.to_string())?;
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                media::wav::repair_header(&mut f, len, CHANNELS, SAMPLE_RATE)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        };
        match result {
            Ok(frames) => {
                tracing::warn!(stream_sid = %stream_sid, path = %path, frames, "recording_repaired");
                ended(StreamStatus::Repaired, Some(frames)).await?;
                repaired += 1;
            }
            Err(e) => {
                tracing::error!(stream_sid = %stream_sid, path = %path, error = %e, "recording_unrepairable");
                ended(StreamStatus::Failed, None).await?;
            }
        }
    }
    Ok(repaired)
}
