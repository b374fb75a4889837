//! The post-call pipeline: workers take jobs from the SQLite queue and run the stages (recording
//! ready, transcribe, extract). A worker holds a lease it renews while a stage runs; results are
//! written in the transaction that completes the job, so a stage completes exactly once even when
//! a worker dies half way and another one runs it again.

use crate::clock::Clock;
use crate::config::{PipelineConfig, RecordingSource};
use crate::db::{Job, Outcome, Stage, StageOutput, Store};
use crate::metrics::Metrics;
use crate::session::StartInfo;
use crate::twilio_api::TwilioClient;
use crate::AppState;
use postcall::{EngineError, Engines, ExtractRequest, TranscribeRequest, Transcript};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Debug)]
pub struct StageError {
    pub retry: bool,
    pub message: String,
}

impl StageError {
    fn retry(message: impl Into<String>) -> Self {
        StageError {
            retry: true,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        StageError {
            retry: false,
            message: message.into(),
        }
    }
}

impl From<crate::db::DbError> for StageError {
    fn from(e: crate::db::DbError) -> Self {
        StageError::retry(e.to_string())
    }
}

impl From<EngineError> for StageError {
    fn from(e: EngineError) -> Self {
        StageError {
            retry: matches!(e, EngineError::Transient(_)),
            message: e.to_string(),
        }
    }
}

/// What the workers share.
pub struct Pipeline {
    pub store: Store,
    pub engines: Engines,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub config: PipelineConfig,
    pub source: RecordingSource,
    pub recordings_dir: PathBuf,
    pub twilio: Option<TwilioClient>,
}

impl Pipeline {
    /// Run `workers` workers until `shutdown` turns true; each finishes its current stage first
    /// (bounded by `drain_timeout_ms`; past that the lease expires and the next start resumes).
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let instance = format!("{}-{}", std::process::id(), self.clock.now_ms());
        (0..self.config.workers)
            .map(|n| {
                let p = self.clone();
                let id = format!("{instance}-w{n}");
                let rx = shutdown.clone();
                tokio::spawn(async move { p.worker(id, rx).await })
            })
            .collect()
    }

    async fn worker(self: Arc<Self>, id: String, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_ms);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = self.clock.now_ms();
            match self.store.claim(&id, now, self.config.lease_ms).await {
                Ok(Some(job)) => {
                    self.run_job(&id, job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = %id, error = %e, "cannot read the job queue"),
            }
            // Sleep until the next job is due, at most one poll interval (new jobs may arrive).
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - now).clamp(1, poll.as_millis() as i64) as u64)
                }
                _ => poll,
            };
            tokio::select! {
                _ = crate::ws::wait_true(&mut shutdown) => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Run one attempt of a job, renewing its lease meanwhile, and record the outcome.
    pub async fn run_job(&self, worker: &str, job: Job) {
        let call_sid = job.call_sid.clone();
        let stage = job.stage.name();
        let started = Instant::now();
        let result = if job.attempts > self.config.max_attempts {
            // Its worker kept dying (lease expired every time): stop trying.
            Err(StageError::permanent(format!(
                "gave up after {} attempts",
                self.config.max_attempts
            )))
        } else {
            tracing::info!(call_sid = %call_sid, stage, attempt = job.attempts, "stage_start");
            let renew_every =
                Duration::from_millis(self.config.lease_ms / 3).max(Duration::from_millis(10));
            let lease_lost = async {
                loop {
                    tokio::time::sleep(renew_every).await;
                    match self
                        .store
                        .renew(&job, worker, self.clock.now_ms(), self.config.lease_ms)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(call_sid = %call_sid, error = %e, "lease renewal failed")
                        }
                    }
                }
            };
            tokio::select! {
                r = self.run_stage(&job) => r,
                _ = lease_lost => {
                    tracing::warn!(call_sid = %call_sid, stage, "lease lost, abandoning the attempt");
                    return;
                }
            }
        };
        let secs = started.elapsed().as_secs_f64();
        let now = self.clock.now_ms();
        match result {
            Ok(output) => match self.store.complete(&job, worker, &output, now).await {
                Ok(Outcome::Done) => {
                    self.metrics.stage_duration(stage, "done", secs);
                    log_done(&call_sid, &output, job.attempts);
                    if job.stage == Stage::Extract {
                        tracing::info!(call_sid = %call_sid, "call_completed");
                    }
                }
                Ok(_) => {
                    tracing::warn!(call_sid = %call_sid, stage, "lease lost before completion; result dropped")
                }
                Err(e) => {
                    tracing::error!(call_sid = %call_sid, stage, error = %e, "cannot complete job")
                }
            },
            Err(err) => {
                let outcome = self
                    .store
                    .fail(
                        &job,
                        worker,
                        &err.message,
                        err.retry,
                        self.config.max_attempts,
                        (self.config.backoff_base_ms, self.config.backoff_cap_ms),
                        now,
                    )
                    .await;
                match outcome {
                    Ok(Outcome::Retry { run_at_ms }) => {
                        self.metrics.stage_duration(stage, "retry", secs);
                        tracing::warn!(
                            call_sid = %call_sid,
                            stage,
                            attempt = job.attempts,
                            retry_in_ms = run_at_ms - now,
                            error = %err.message,
                            "job_failed"
                        );
                    }
                    Ok(Outcome::Failed) => {
                        self.metrics.stage_duration(stage, "failed", secs);
                        tracing::error!(
                            call_sid = %call_sid,
                            stage,
                            attempt = job.attempts,
                            error = %err.message,
                            final_failure = true,
                            "job_failed"
                        );
                    }
                    Ok(_) => {
                        tracing::warn!(call_sid = %call_sid, stage, "lease lost before recording the failure")
                    }
                    Err(e) => {
                        tracing::error!(call_sid = %call_sid, stage, error = %e, "cannot record job failure")
                    }
                }
            }
        }
    }

    async fn run_stage(&self, job: &Job) -> Result<StageOutput, StageError> {
        match job.stage {
            Stage::Recording => self.recording_stage(&job.call_sid).await,
            Stage::Transcribe => self.transcribe_stage(&job.call_sid).await,
            Stage::Extract => self.extract_stage(&job.call_sid).await,
        }
    }

    async fn recording_stage(&self, call_sid: &str) -> Result<StageOutput, StageError> {
        match self.source {
            RecordingSource::Stream => {
                if self.store.open_streams(call_sid).await? > 0 {
                    return Err(StageError::retry("a stream of this call is still open"));
                }
                let Some((path, duration_ms)) = self.store.best_stream_recording(call_sid).await?
                else {
                    return Err(StageError::retry("no saved stream recording for this call"));
                };
                if !std::path::Path::new(&path).is_file() {
                    return Err(StageError::permanent(format!(
                        "recording {path} is missing"
                    )));
                }
                Ok(StageOutput::Recording {
                    path,
                    duration_ms: duration_ms.max(0) as u64,
                })
            }
            RecordingSource::Twilio => self.download_twilio_recording(call_sid).await,
        }
    }

    async fn download_twilio_recording(&self, call_sid: &str) -> Result<StageOutput, StageError> {
        let sid = crate::sid::CallSid::parse(call_sid)
            .ok_or_else(|| StageError::permanent("invalid CallSid"))?;
        let (status, url) = self.store.twilio_recording(call_sid).await?;
        let url = match (status.as_str(), url) {
            ("twilio_completed", Some(url)) => url,
            ("twilio_failed" | "twilio_absent", _) => {
                return Err(StageError::permanent(format!(
                    "Twilio reports the recording {status}"
                )))
            }
            ("twilio_request_failed", _) => {
                return Err(StageError::permanent("Twilio refused to record the call"))
            }
            _ => {
                return Err(StageError::retry(
                    "waiting for Twilio's recording to complete",
                ))
            }
        };
        let client = self
            .twilio
            .as_ref()
            .ok_or_else(|| StageError::permanent("no Twilio credentials configured"))?;
        let account = self
            .store
            .call_detail(call_sid)
            .await?
            .and_then(|c| c.account_sid)
            .unwrap_or_default();
        let bytes = client
            .download_wav(&url, &account)
            .await
            .map_err(|e| StageError {
                retry: e.retryable(),
                message: e.to_string(),
            })?;
        let pcm = media::audio::decode_wav(&bytes)
            .map_err(|e| StageError::retry(format!("downloaded recording: {e}")))?;
        let path = self.recordings_dir.join(format!("{sid}.wav"));
        let tmp = self.recordings_dir.join(format!("{sid}.wav.part"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = crate::fsutil::create_private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| StageError::retry(format!("saving recording: {e}")))?;
        let duration_ms = (pcm.duration_secs() * 1000.0).round() as u64;
        tracing::info!(call_sid, path = %path.display(), duration_ms, source = "twilio", "recording_saved");
        Ok(StageOutput::Recording {
            path: path.display().to_string(),
            duration_ms,
        })
    }

    async fn transcribe_stage(&self, call_sid: &str) -> Result<StageOutput, StageError> {
        let Some(transcriber) = &self.engines.transcriber else {
            return Ok(StageOutput::TranscriptionSkipped);
        };
        let (path, _, _) = self.store.call_for_stage(call_sid).await?;
        let path = path.ok_or_else(|| StageError::permanent("call has no recording"))?;
        let transcript = transcriber
            .transcribe(&TranscribeRequest {
                call_sid: call_sid.to_owned(),
                recording: PathBuf::from(path),
            })
            .await?;
        let json =
            serde_json::to_string(&transcript).map_err(|e| StageError::permanent(e.to_string()))?;
        Ok(StageOutput::Transcript { json })
    }

    async fn extract_stage(&self, call_sid: &str) -> Result<StageOutput, StageError> {
        let (_, transcript, created_at_ms) = self.store.call_for_stage(call_sid).await?;
        let Some(transcript) = transcript else {
            return Ok(StageOutput::ExtractionSkipped);
        };
        let transcript: Transcript = serde_json::from_str(&transcript)
            .map_err(|e| StageError::permanent(format!("stored transcript: {e}")))?;
        let extraction = self
            .engines
            .extractor
            .extract(&ExtractRequest {
                call_sid: call_sid.to_owned(),
                transcript,
                call_started_at_ms: created_at_ms,
            })
            .await?;
        let fields_json = serde_json::to_string(&extraction.fields)
            .map_err(|e| StageError::permanent(e.to_string()))?;
        Ok(StageOutput::Extraction {
            summary: extraction.summary,
            fields_json,
            engine: extraction.engine,
        })
    }
}

fn log_done(call_sid: &str, output: &StageOutput, attempt: u32) {
    match output {
        StageOutput::Recording { path, duration_ms } => {
            tracing::info!(call_sid, path = %path, duration_ms, attempt, "recording_ready")
        }
        StageOutput::Transcript { json } => {
            tracing::info!(call_sid, bytes = json.len(), attempt, "transcript_ready")
        }
        StageOutput::TranscriptionSkipped => {
            tracing::info!(
                call_sid,
                skipped = "transcription engine is none",
                "transcript_ready"
            )
        }
        StageOutput::Extraction { engine, .. } => {
            tracing::info!(call_sid, engine = %engine, attempt, "extraction_ready")
        }
        StageOutput::ExtractionSkipped => {
            tracing::info!(call_sid, skipped = "no transcript", "extraction_ready")
        }
    }
}

/// Ask Twilio to record the call (the `twilio` source), without holding up the media socket.
pub fn request_twilio_recording(state: &AppState, info: &StartInfo) {
    let Some(client) = state.twilio.clone() else {
        return;
    };
    let Some(base) = state.config.public_base_url.clone() else {
        return;
    };
    let store = state.store.clone();
    let clock = state.clock.clone();
    let call_sid = info.call_sid.clone();
    let stream_sid = info.stream_sid.clone();
    let account = info.account_sid.clone();
    tokio::spawn(async move {
        let callback = format!("{}/webhook/recording_status", base.trim_end_matches('/'));
        let status = match client.start_recording(&account, &call_sid, &callback).await {
            Ok(recording_sid) => {
                tracing::info!(call_sid = %call_sid, stream_sid = %stream_sid, recording_sid = %recording_sid, "twilio_recording_started");
                "twilio_requested"
            }
            Err(e) => {
                tracing::error!(call_sid = %call_sid, stream_sid = %stream_sid, error = %e, "twilio_recording_failed");
                let _ = store
                    .add_error(
                        call_sid.as_str(),
                        "recording",
                        &e.to_string(),
                        clock.now_ms(),
                    )
                    .await;
                "twilio_request_failed"
            }
        };
        if let Err(e) = store.set_recording_status(call_sid.as_str(), status).await {
            tracing::error!(call_sid = %call_sid, error = %e, "cannot store recording status");
        }
    });
}

/// Fix recordings a crashed process left open: the header gets the sizes of what is on disk,
/// the audio is kept, and the stream is marked `repaired` so the pipeline can use it.
pub async fn repair_recordings(store: &Store) -> Result<usize, crate::db::DbError> {
    let mut repaired = 0;
    for (stream_sid, path) in store.unfinished_recordings().await? {
        if path.is_empty() {
            // No file was being written (the `twilio` source, or a socket that had just started).
            store
                .stream_finished(
                    &stream_sid,
                    "not_recorded",
                    None,
                    (0, 0, 0),
                    "process_died",
                    Clock::new().now_ms(),
                )
                .await?;
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
                crate::recording::repair(&mut f, len).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        };
        let now = Clock::new().now_ms();
        match result {
            Ok(frames) => {
                tracing::warn!(stream_sid = %stream_sid, path = %path, frames, "recording_repaired");
                store
                    .stream_finished(
                        &stream_sid,
                        "repaired",
                        Some(frames),
                        (0, 0, 0),
                        "process_died",
                        now,
                    )
                    .await?;
                repaired += 1;
            }
            Err(e) => {
                tracing::error!(stream_sid = %stream_sid, path = %path, error = %e, "recording_unrepairable");
                store
                    .stream_finished(&stream_sid, "failed", None, (0, 0, 0), "process_died", now)
                    .await?;
            }
        }
    }
    Ok(repaired)
}

#[cfg(all(test, feature = "test-engines"))]
mod tests;
