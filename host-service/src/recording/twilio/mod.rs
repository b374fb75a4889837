//! The `twilio` source: when a call's first stream starts, Twilio is asked to record the call
//! (with a status callback to this service); once the call has ended and Twilio says the
//! recording is `completed`, the file is downloaded, checked to decode, and kept.

pub mod rest;

use super::{Failure, NotReady, OpenRecording, Ready, Source, StartedStream};
use crate::clock::Clock;
use crate::store::{within, RecordingStatus, Store};
use media::sid::CallSid;
use rest::TwilioClient;
use std::path::PathBuf;
use std::time::Duration;

/// The webhook Twilio calls with the recording's status.
pub const STATUS_CALLBACK_PATH: &str = "/webhook/recording_status";

pub struct TwilioSource {
    pub store: Store,
    pub clock: Clock,
    /// `None` without credentials: nothing is requested, and the stage fails saying so.
    pub client: Option<TwilioClient>,
    pub public_base_url: Option<String>,
    /// How long after the call's end Twilio's recording may take to complete.
    pub deadline_ms: u64,
    pub recordings_dir: PathBuf,
    /// `database.read_timeout_ms`: the bound on each of its own database calls, so a hung
    /// database holds no task (nor the pipeline's lease) forever.
    pub db_timeout: Duration,
}

#[async_trait::async_trait]
impl Source for TwilioSource {
    fn name(&self) -> &'static str {
        "twilio"
    }

    async fn stream_started(
        &self,
        stream: StartedStream<'_>,
    ) -> Result<Option<OpenRecording>, Failure> {
        // A start the database has not numbered yet is most likely the call's first.
        if stream.idx.unwrap_or(0) == 0 {
            self.request(stream);
        }
        Ok(None)
    }

    async fn ready(&self, call_sid: &str) -> Result<Ready, NotReady> {
        let sid =
            CallSid::parse(call_sid).ok_or_else(|| NotReady::Fail("invalid CallSid".into()))?;
        let rec = within(self.db_timeout, self.store.twilio_recording(call_sid)).await?;
        let url = match (rec.status, rec.url) {
            (RecordingStatus::TwilioCompleted, Some(url)) => url,
            (RecordingStatus::TwilioFailed | RecordingStatus::TwilioAbsent, _) => {
                return Err(NotReady::Fail(format!(
                    "Twilio reports the recording {}",
                    rec.status.as_str()
                )))
            }
            (RecordingStatus::TwilioRequestFailed, _) => {
                return Err(NotReady::Fail("Twilio refused to record the call".into()))
            }
            _ => {
                let since_end = self.clock.now_ms() - rec.ended_at_ms.unwrap_or(i64::MAX);
                if since_end > self.deadline_ms as i64 {
                    return Err(NotReady::Fail(format!(
                        "Twilio's recording did not complete within {} s of the call's end (last status: {})",
                        self.deadline_ms / 1000,
                        rec.status.as_str()
                    )));
                }
                return Err(NotReady::Wait(
                    "waiting for Twilio's recording to complete".into(),
                ));
            }
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| NotReady::Fail("no Twilio credentials configured".into()))?;
        let account = rec.account_sid.unwrap_or_default();
        // The whole file is in memory here (Twilio's WAV of the call, 16-bit: about 1 MB per
        // minute per channel) to check it decodes before it is kept.
        let bytes = client.download_wav(&url, &account).await.map_err(|e| {
            if e.retryable() {
                NotReady::Retry(e.to_string())
            } else {
                NotReady::Fail(e.to_string())
            }
        })?;
        let path = self.recordings_dir.join(format!("{sid}.wav"));
        let tmp = self.recordings_dir.join(format!("{sid}.wav.part"));
        let target = path.clone();
        // Decoding and the file write are blocking work: off the async workers.
        let duration_ms = tokio::task::spawn_blocking(move || -> Result<u64, NotReady> {
            use std::io::Write;
            let pcm = media::wav::decode(&bytes)
                .map_err(|e| NotReady::Retry(format!("downloaded recording: {e}")))?;
            let write = || -> std::io::Result<()> {
                let mut f = crate::fsutil::create_private_file(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &target)
            };
            write().map_err(|e| NotReady::Retry(format!("saving recording: {e}")))?;
            Ok((pcm.duration_secs() * 1000.0).round() as u64)
        })
        .await
        .map_err(|e| NotReady::Retry(format!("saving recording: {e}")))??;
        tracing::info!(call_sid, path = %path.display(), duration_ms, source = "twilio", "recording_saved");
        Ok(Ready {
            path: path.display().to_string(),
            duration_ms,
        })
    }
}

impl TwilioSource {
    /// Ask Twilio to record the call, without holding up the media socket.
    fn request(&self, stream: StartedStream<'_>) {
        let (Some(client), Some(base)) = (self.client.clone(), self.public_base_url.clone()) else {
            return;
        };
        let store = self.store.clone();
        let clock = self.clock.clone();
        let db_timeout = self.db_timeout;
        let call_sid = stream.call_sid.clone();
        let stream_sid = stream.stream_sid.to_owned();
        let account = stream.account_sid.to_owned();
        tokio::spawn(async move {
            let callback = format!("{}{STATUS_CALLBACK_PATH}", base.trim_end_matches('/'));
            let status = match client.start_recording(&account, &call_sid, &callback).await {
                Ok(recording_sid) => {
                    tracing::info!(call_sid = %call_sid, stream_sid = %stream_sid, recording_sid = %recording_sid, "twilio_recording_started");
                    RecordingStatus::TwilioRequested
                }
                Err(e) => {
                    tracing::error!(call_sid = %call_sid, stream_sid = %stream_sid, error = %e, "twilio_recording_failed");
                    let message = e.to_string();
                    let added = within(
                        db_timeout,
                        store.add_error(
                            call_sid.as_str(),
                            "recording",
                            &message,
                            clock.now_ms(),
                            None,
                        ),
                    );
                    if let Err(e) = added.await {
                        tracing::error!(call_sid = %call_sid, error = %e, "cannot store the call's error");
                    }
                    RecordingStatus::TwilioRequestFailed
                }
            };
            let stored = within(
                db_timeout,
                store.set_recording_status(call_sid.as_str(), status),
            );
            if let Err(e) = stored.await {
                tracing::error!(call_sid = %call_sid, error = %e, "cannot store recording status");
            }
        });
    }
}
