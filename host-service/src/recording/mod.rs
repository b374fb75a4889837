//! A call's recording, from one of two sources behind the [`Source`] trait: `stream` (the host
//! writes the WAV from the media socket's frames) or `twilio` (Twilio records the call and the
//! pipeline downloads its file). The socket asks the source what to record when a stream starts;
//! the pipeline's first stage asks it for the call's finished file.
//!
//! - `recorder`: the timestamp-placing two-channel recorder (pure, over `Read + Write + Seek`);
//! - `writer`: a recording's queue and its jobs on the blocking pool, so the disk never holds
//!   up a socket;
//! - `space`: the free-space guard that stops new recordings before the disk is full;
//! - `stream`, `twilio`: the two sources (`twilio::rest`, Twilio's REST calls).

pub mod recorder;
pub mod space;
pub mod stream;
pub mod twilio;
pub mod writer;

use crate::clock::Clock;
use crate::config::{Config, RecordingSource};
use crate::store::{DbError, Store};
use media::sid::CallSid;
use recorder::RecorderLimits;
use space::SpaceGuard;
use std::path::PathBuf;
use std::sync::Arc;
pub use writer::Failure;
use writer::RecordingWriter;

/// A stream's own recording while its socket is open (the `stream` source).
pub struct OpenRecording {
    pub writer: RecordingWriter,
    pub path: String,
    pub limits: RecorderLimits,
}

/// A call's finished recording, ready for transcription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub path: String,
    pub duration_ms: u64,
}

/// Why a call's recording is not ready, and what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Try again after the backoff (it counts as an attempt).
    Retry(String),
    /// It never will be.
    Fail(String),
    /// Something outside the service (Twilio's recording) is not done yet: look again later
    /// without using up an attempt.
    Wait(String),
    /// A socket of the call has not finished its recording yet (Twilio's webhook can come
    /// first, and a dead replica's streams wait for their takeover): look again soon, or at once
    /// when the stream finishes.
    WaitForStreams(String),
}

impl From<DbError> for NotReady {
    fn from(e: DbError) -> Self {
        NotReady::Retry(e.to_string())
    }
}

/// The stream that started, as a source needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct StartedStream<'a> {
    pub call_sid: &'a CallSid,
    pub stream_sid: &'a str,
    pub account_sid: &'a str,
    /// 0 for a call's first stream, 1 for the next, ...; `None` when the database did not
    /// take the start in time (it is stored later, and numbered then).
    pub idx: Option<i64>,
}

/// Where a call's recording comes from.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// `recording.source` as configured, and `calls.source` in the database.
    fn name(&self) -> &'static str;

    /// A stream of a call started: what its socket records itself, if anything (the socket
    /// stores its path). A failure leaves the stream unrecorded; its call goes on.
    async fn stream_started(
        &self,
        stream: StartedStream<'_>,
    ) -> Result<Option<OpenRecording>, Failure>;

    /// The call has ended: its finished recording, or why there is none yet.
    async fn ready(&self, call_sid: &str) -> Result<Ready, NotReady>;
}

/// The source `recording.source` names.
pub fn from_config(
    config: &Config,
    store: Store,
    clock: Clock,
    recordings_dir: PathBuf,
    twilio: Option<twilio::rest::TwilioClient>,
    space: Arc<SpaceGuard>,
) -> Arc<dyn Source> {
    let limits = RecorderLimits {
        reorder_window_ms: config.recording.reorder_window_ms,
        max_duration_ms: config.recording.max_duration_s.saturating_mul(1000),
    };
    match config.recording.source {
        RecordingSource::Stream => Arc::new(stream::StreamSource {
            store,
            recordings_dir,
            limits,
            space,
        }),
        RecordingSource::Twilio => Arc::new(twilio::TwilioSource {
            store,
            clock,
            client: twilio,
            public_base_url: config.public_base_url.clone(),
            deadline_ms: config.recording.twilio_deadline_s.saturating_mul(1000),
            recordings_dir,
            db_timeout: std::time::Duration::from_millis(config.database.read_timeout_ms),
        }),
    }
}
