//! The post-call pipeline: workers take jobs from the database queue and run the stages (recording
//! ready, transcribe, extract). A worker holds a lease it renews while a stage runs; results are
//! written in the transaction that completes the job, so a stage completes exactly once even when
//! a worker dies half way and another one runs it again.

use crate::clock::Clock;
use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::recording::{NotReady, Source};
use crate::store::{Job, Outcome, Stage, StageOutput, Store};
use postcall::{EngineError, Engines, ExtractRequest, TranscribeRequest, Transcript};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What to do after an attempt that produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after the backoff; counts as an attempt.
    Retry,
    /// Fail the call now.
    Fail,
    /// Not an error: something outside the service (Twilio's recording) is not ready yet. Look
    /// again later without using up an attempt.
    Wait,
    /// Not an error: a socket of the call has not finished its recording yet (Twilio's webhook
    /// can come first, and a dead replica's streams wait for their takeover). Look again soon,
    /// or at once when the stream finishes, without using up an attempt.
    WaitForStreams,
}

/// Why an attempt produced nothing, and what to do next.
#[derive(Debug)]
pub struct StageError {
    pub next: Next,
    pub message: String,
}

impl StageError {
    fn retry(message: impl Into<String>) -> Self {
        StageError {
            next: Next::Retry,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        StageError {
            next: Next::Fail,
            message: message.into(),
        }
    }
}

impl From<crate::store::DbError> for StageError {
    fn from(e: crate::store::DbError) -> Self {
        StageError::retry(e.to_string())
    }
}

impl From<NotReady> for StageError {
    fn from(e: NotReady) -> Self {
        let (next, message) = match e {
            NotReady::Retry(m) => (Next::Retry, m),
            NotReady::Fail(m) => (Next::Fail, m),
            NotReady::Wait(m) => (Next::Wait, m),
            NotReady::WaitForStreams(m) => (Next::WaitForStreams, m),
        };
        StageError { next, message }
    }
}

impl From<EngineError> for StageError {
    fn from(e: EngineError) -> Self {
        StageError {
            next: if matches!(e, EngineError::Transient(_)) {
                Next::Retry
            } else {
                Next::Fail
            },
            message: e.to_string(),
        }
    }
}

/// On PostgreSQL, `NOTIFY` wakes idle workers; this bounds only a notification lost with a
/// dropped connection (the listener also wakes everyone when it reconnects).
const POSTGRES_IDLE: Duration = Duration::from_secs(30);

/// What the workers share.
pub struct Pipeline {
    pub store: Store,
    pub engines: Engines,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub config: PipelineConfig,
    /// Where the recording stage gets the call's file.
    pub source: Arc<dyn Source>,
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
        let poll = self.idle_limit();
        let jobs_changed = self.store.jobs_changed();
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Registered before the look, so a job queued between the look and the wait wakes us.
            let woken = jobs_changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = self.clock.now_ms();
            match self.store.claim(&id, now, self.config.lease_ms).await {
                Ok(Some(job)) => {
                    self.run_job(&id, job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = %id, error = %e, "cannot read the job queue"),
            }
            // Sleep until the next job is due or a new one is queued, at most `poll`.
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - now).clamp(1, poll.as_millis() as i64) as u64)
                }
                _ => poll,
            };
            tokio::select! {
                _ = crate::shutdown::wait_true(&mut shutdown) => return,
                _ = tokio::time::sleep(wait) => {}
                _ = &mut woken => {}
            }
        }
    }

    /// The longest an idle worker sleeps with nothing due. New jobs wake it (on PostgreSQL
    /// through `NOTIFY` from any replica), so this only bounds a missed wake-up: `poll_ms` on
    /// SQLite, and on PostgreSQL never shorter than `POSTGRES_IDLE`, so replicas do not poll.
    fn idle_limit(&self) -> Duration {
        let poll = Duration::from_millis(self.config.poll_ms);
        if self.store.dialect().shared() {
            poll.max(POSTGRES_IDLE)
        } else {
            poll
        }
    }

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
            Err(err) if matches!(err.next, Next::Wait | Next::WaitForStreams) => {
                // Looked at again when the wait has passed, or at once when the event it waits
                // for (Twilio's `completed` callback, the stream finishing) moves the job up. A
                // stream finishing between the look and this defer cannot move a running job:
                // the deferral itself makes the job due now when no stream is open any more.
                let deferred = match err.next {
                    Next::WaitForStreams => {
                        let run_at_ms = now + self.config.backoff_base_ms as i64;
                        self.store
                            .defer_for_streams(&job, worker, run_at_ms, &err.message, now)
                            .await
                            .map(|ok| (ok, run_at_ms))
                    }
                    _ => {
                        let run_at_ms = now + self.config.backoff_cap_ms as i64;
                        self.store
                            .defer(&job, worker, run_at_ms, &err.message)
                            .await
                            .map(|ok| (ok, run_at_ms))
                    }
                };
                match deferred.map(|(ok, run_at_ms)| ok.then_some(run_at_ms)) {
                    Ok(Some(run_at_ms)) => {
                        self.metrics.stage_duration(stage, "wait", secs);
                        tracing::info!(
                            call_sid = %call_sid,
                            stage,
                            recheck_in_ms = run_at_ms - now,
                            reason = %err.message,
                            "job_waiting"
                        );
                    }
                    Ok(None) => {
                        tracing::warn!(call_sid = %call_sid, stage, "lease lost before deferring")
                    }
                    Err(e) => {
                        tracing::error!(call_sid = %call_sid, stage, error = %e, "cannot defer job")
                    }
                }
            }
            Err(err) => {
                let outcome = self
                    .store
                    .fail(
                        &job,
                        worker,
                        &err.message,
                        err.next == Next::Retry,
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
        let ready = match self.source.ready(call_sid).await {
            Ok(ready) => ready,
            Err(NotReady::WaitForStreams(m)) => return Err(self.stream_wait(call_sid, m).await?),
            Err(e) => return Err(e.into()),
        };
        Ok(StageOutput::Recording {
            path: ready.path,
            duration_ms: ready.duration_ms,
        })
    }

    /// Waiting for a call's open streams is bounded: a stream whose end never reached the
    /// database (and that no replica takes over) would hold the call forever. Past
    /// `stream_wait_timeout_ms` after the call ended, the call fails naming the streams.
    async fn stream_wait(&self, call_sid: &str, waiting: String) -> Result<StageError, StageError> {
        let (ended_at, open) = self.store.open_streams_since_end(call_sid).await?;
        let now = self.clock.now_ms();
        let waited_ms = now - ended_at.unwrap_or(now);
        let limit_ms = self.config.stream_wait_timeout_ms;
        if waited_ms < limit_ms as i64 || open.is_empty() {
            return Ok(StageError {
                next: Next::WaitForStreams,
                message: waiting,
            });
        }
        Ok(StageError::permanent(format!(
            "{} still open {} s after the call ended (pipeline.stream_wait_timeout_ms {limit_ms}): its end never reached the database",
            open.join(", "),
            waited_ms / 1000
        )))
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

#[cfg(test)]
mod tests;
