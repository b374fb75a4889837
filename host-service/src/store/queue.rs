//! The post-call job queue: claim with a lease, renew, complete (writing the stage's result in
//! the same transaction), defer, fail with backoff. Every transition is guarded by the lease, so
//! a dead worker's late write changes nothing. On PostgreSQL, replicas claim with
//! `FOR UPDATE SKIP LOCKED` (two never wait on, or take, the same job) and a transaction that
//! makes a job due sends `NOTIFY`, which wakes the idle workers of every replica.

use super::status::{
    stored_as_text, CallStatus, JobState, RecordingStatus, StreamStatus, TranscriptionStatus,
};
use super::{Result, Store};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The pipeline's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Recording,
    Transcribe,
    Extract,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Recording, Stage::Transcribe, Stage::Extract];

    pub fn name(self) -> &'static str {
        self.as_str()
    }

    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Recording => Some(Stage::Transcribe),
            Stage::Transcribe => Some(Stage::Extract),
            Stage::Extract => None,
        }
    }
}

stored_as_text!(Stage {
    Recording => "recording",
    Transcribe => "transcribe",
    Extract => "extract",
});

/// The PostgreSQL channel a transaction that makes a job due notifies.
pub const JOBS_CHANNEL: &str = "twiml_guard_jobs";

/// A job a worker holds the lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub call_sid: String,
    pub stage: Stage,
    /// Including this one.
    pub attempts: u32,
}

/// What a stage produced, written in the same transaction that completes its job.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutput {
    Recording {
        path: String,
        duration_ms: u64,
    },
    Transcript {
        json: String,
    },
    TranscriptionSkipped,
    Extraction {
        summary: String,
        fields_json: String,
        engine: String,
    },
    ExtractionSkipped,
}

/// How a finished attempt left a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retry {
        run_at_ms: i64,
    },
    Failed,
    /// The lease was lost (another worker took the job over): nothing was written.
    LeaseLost,
}

impl Store {
    /// Take the next due job: a queued one whose time has come, or a running one whose lease
    /// has expired (its worker died). One statement, so two workers never take the same job.
    pub async fn claim(&self, worker: &str, now: i64, lease_ms: u64) -> Result<Option<Job>> {
        let lock = self.dialect().claim_lock();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = $4, lease_owner = $1, lease_until_ms = $2 + $3,
               attempts = attempts + 1, started_at_ms = $2
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = $5 AND run_at_ms <= $2)
                            OR (state = $4 AND lease_until_ms <= $2)
                         ORDER BY run_at_ms, id LIMIT 1 {lock})
             RETURNING id, call_sid, stage, attempts"
        ))
        .bind(worker)
        .bind(now)
        .bind(lease_ms as i64)
        .bind(JobState::Running)
        .bind(JobState::Queued)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| job_from_row(&r)))
    }

    /// Extend a lease while a long stage runs. False when the lease was lost.
    pub async fn renew(&self, job: &Job, worker: &str, now: i64, lease_ms: u64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_until_ms = $3 + $4
             WHERE id = $1 AND lease_owner = $2 AND state = $5",
        )
        .bind(job.id)
        .bind(worker)
        .bind(now)
        .bind(lease_ms as i64)
        .bind(JobState::Running)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Finish a job and write what it produced, queueing the next stage, all at once; only if
    /// this worker still holds the lease, so a stage completes exactly once.
    pub async fn complete(
        &self,
        job: &Job,
        worker: &str,
        output: &StageOutput,
        now: i64,
    ) -> Result<Outcome> {
        let mut tx = self.write_tx(&job.call_sid).await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = $4, finished_at_ms = $3, duration_ms = $3 - started_at_ms,
               lease_owner = NULL, lease_until_ms = NULL
             WHERE id = $1 AND lease_owner = $2 AND state = $5",
        )
        .bind(job.id)
        .bind(worker)
        .bind(now)
        .bind(JobState::Done)
        .bind(JobState::Running)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Outcome::LeaseLost);
        }
        let sid = job.call_sid.as_str();
        let update = match output {
            StageOutput::Recording { path, duration_ms } => sqlx::query(
                "UPDATE calls SET recording_status = $4, recording_path = $2,
                   recording_duration_ms = $3, status = $5
                 WHERE call_sid = $1",
            )
            .bind(sid)
            .bind(path)
            .bind(*duration_ms as i64)
            .bind(RecordingStatus::Saved)
            .bind(CallStatus::Processing),
            StageOutput::Transcript { json } => sqlx::query(
                "UPDATE calls SET transcription_status = $3, transcript_json = $2
                 WHERE call_sid = $1",
            )
            .bind(sid)
            .bind(json)
            .bind(TranscriptionStatus::Done),
            StageOutput::TranscriptionSkipped => {
                sqlx::query("UPDATE calls SET transcription_status = $2 WHERE call_sid = $1")
                    .bind(sid)
                    .bind(TranscriptionStatus::SkippedEngineNone)
            }
            StageOutput::Extraction {
                summary,
                fields_json,
                engine,
            } => sqlx::query(
                "UPDATE calls SET summary = $2, fields_json = $3, extraction_engine = $4
                 WHERE call_sid = $1",
            )
            .bind(sid)
            .bind(summary)
            .bind(fields_json)
            .bind(engine),
            StageOutput::ExtractionSkipped => sqlx::query(
                "UPDATE calls SET extraction_engine = 'skipped: no transcript' WHERE call_sid = $1",
            )
            .bind(sid),
        };
        update.execute(&mut *tx).await?;
        self.call_changed_in(&mut tx, &job.call_sid).await?;
        match job.stage.next() {
            Some(next) => self.enqueue(&mut tx, &job.call_sid, next, now).await?,
            None => {
                sqlx::query(
                    "UPDATE calls SET status = $3, completed_at_ms = $2 WHERE call_sid = $1",
                )
                .bind(&job.call_sid)
                .bind(now)
                .bind(CallStatus::Completed)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.jobs_committed();
        self.call_committed(&job.call_sid);
        Ok(Outcome::Done)
    }

    /// Put a job back to wait for something outside the service, without counting the attempt:
    /// due again at `run_at_ms` (or earlier, when the awaited event moves it up). False when the
    /// lease was lost.
    pub async fn defer(
        &self,
        job: &Job,
        worker: &str,
        run_at_ms: i64,
        reason: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET state = $5, run_at_ms = $3, last_error = $4,
               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, lease_owner = NULL, lease_until_ms = NULL
             WHERE id = $1 AND lease_owner = $2 AND state = $6",
        )
        .bind(job.id)
        .bind(worker)
        .bind(run_at_ms)
        .bind(reason)
        .bind(JobState::Queued)
        .bind(JobState::Running)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// [`Store::defer`] for the recording stage waiting on the call's open streams, due at
    /// `now` instead when none is open any more: a stream that finished between the stage's
    /// look and this deferral found the job running and could not move it up.
    pub async fn defer_for_streams(
        &self,
        job: &Job,
        worker: &str,
        run_at_ms: i64,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET state = $5, last_error = $4,
               run_at_ms = CASE WHEN EXISTS (SELECT 1 FROM streams
                   WHERE streams.call_sid = jobs.call_sid AND streams.status IN ($7, $8))
                 THEN $3 ELSE $9 END,
               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, lease_owner = NULL, lease_until_ms = NULL
             WHERE id = $1 AND lease_owner = $2 AND state = $6",
        )
        .bind(job.id)
        .bind(worker)
        .bind(run_at_ms)
        .bind(reason)
        .bind(JobState::Queued)
        .bind(JobState::Running)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Record a failed attempt: retry after a backoff while attempts remain and the error is
    /// worth retrying, otherwise fail the job and the call.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        retry: bool,
        max_attempts: u32,
        backoff: (u64, u64),
        now: i64,
    ) -> Result<Outcome> {
        let mut tx = self.write_tx(&job.call_sid).await?;
        let outcome = if retry && job.attempts < max_attempts {
            Outcome::Retry {
                run_at_ms: now.saturating_add(backoff_ms(job.attempts, backoff)),
            }
        } else {
            Outcome::Failed
        };
        let (state, run_at) = match outcome {
            Outcome::Retry { run_at_ms } => (JobState::Queued, run_at_ms),
            _ => (JobState::Failed, now),
        };
        let n = sqlx::query(
            "UPDATE jobs SET state = $3, run_at_ms = $4, last_error = $5, lease_owner = NULL,
               lease_until_ms = NULL, finished_at_ms = $6, duration_ms = $6 - started_at_ms
             WHERE id = $1 AND lease_owner = $2 AND state = $7",
        )
        .bind(job.id)
        .bind(worker)
        .bind(state)
        .bind(run_at)
        .bind(error)
        .bind(now)
        .bind(JobState::Running)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Outcome::LeaseLost);
        }
        sqlx::query(
            "INSERT INTO call_errors (call_sid, at_ms, stage, message) VALUES ($1, $2, $3, $4)",
        )
        .bind(&job.call_sid)
        .bind(now)
        .bind(job.stage.name())
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if outcome == Outcome::Failed {
            sqlx::query("UPDATE calls SET status = $2 WHERE call_sid = $1")
                .bind(&job.call_sid)
                .bind(CallStatus::Failed)
                .execute(&mut *tx)
                .await?;
            self.call_changed_in(&mut tx, &job.call_sid).await?;
        }
        tx.commit().await?;
        if outcome == Outcome::Failed {
            self.call_committed(&job.call_sid);
        }
        Ok(outcome)
    }

    /// Jobs per state, for `/metrics`.
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query("SELECT stage, state, COUNT(*) FROM jobs GROUP BY stage, state")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The earliest time a job becomes due, so idle workers sleep until then.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = $1 THEN run_at_ms ELSE lease_until_ms END)
             FROM jobs WHERE state IN ($1, $2)",
        )
        .bind(JobState::Queued)
        .bind(JobState::Running)
        .fetch_one(self.pool())
        .await?)
    }
}

/// The wait after `attempts` failed attempts: base, 2 base, 4 base, ... up to the cap, by the
/// workspace's one policy.
fn backoff_ms(attempts: u32, (base_ms, cap_ms): (u64, u64)) -> i64 {
    let wait = postcall::retry::exponential(
        attempts.saturating_sub(1),
        Duration::from_millis(base_ms),
        Duration::from_millis(cap_ms),
    );
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Queue a stage (once per call: a replayed webhook queues nothing) and wake the workers
    /// when the transaction commits.
    pub(super) async fn enqueue(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        call_sid: &str,
        stage: Stage,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (call_sid, stage, state, run_at_ms, created_at_ms)
             VALUES ($1, $2, $4, $3, $3)
             ON CONFLICT (call_sid, stage) DO NOTHING",
        )
        .bind(call_sid)
        .bind(stage)
        .bind(now)
        .bind(JobState::Queued)
        .execute(&mut **tx)
        .await?;
        self.jobs_due(tx).await
    }

    /// Jobs became due in `tx`: PostgreSQL delivers `NOTIFY` at commit to every listening
    /// replica, this one included. SQLite has only this process to wake, after the commit
    /// (`jobs_committed`), so the woken worker's look finds the job.
    pub(super) async fn jobs_due(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
        if self.dialect().shared() {
            notify_jobs(&mut **tx).await?;
        }
        Ok(())
    }

    /// Jobs became due outside a transaction: the same wake-up as `jobs_due` plus
    /// `jobs_committed`.
    pub(super) async fn wake_workers(&self) -> Result<()> {
        if self.dialect().shared() {
            notify_jobs(self.pool()).await?;
        } else {
            self.jobs_changed.notify_waiters();
        }
        Ok(())
    }

    /// After committing a transaction that called `jobs_due`.
    pub(super) fn jobs_committed(&self) {
        if !self.dialect().shared() {
            self.jobs_changed.notify_waiters();
        }
    }

    /// Wakes when jobs may have become due; create it before looking at the queue, so a wake-up
    /// between the look and the wait is not lost.
    pub fn jobs_changed(&self) -> Arc<Notify> {
        self.jobs_changed.clone()
    }

    /// PostgreSQL: relay `NOTIFY` on `JOBS_CHANNEL` to this process's workers, and on
    /// `CALLS_CHANNEL` to `call_changes`, until the pool closes. A dropped connection reconnects
    /// and wakes everyone once (a notification may have been missed meanwhile). SQLite: nothing
    /// to listen to.
    pub async fn listen(&self) -> Result<()> {
        if !self.dialect().shared() {
            return Ok(());
        }
        let Some(url) = self.postgres_url() else {
            return Ok(());
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener
            .listen_all([JOBS_CHANNEL, super::CALLS_CHANNEL])
            .await?;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == super::CALLS_CHANNEL => {
                    self.publish_call(n.payload())
                }
                Ok(Some(_)) => self.jobs_changed.notify_waiters(),
                Ok(None) => {
                    tracing::warn!("job notifications: connection lost, reconnecting");
                    self.jobs_changed.notify_waiters();
                    self.publish_call(super::ANY_CALL);
                }
                Err(e) if self.pool().is_closed() => {
                    tracing::debug!(error = %e, "job notifications: store closed");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job notifications: cannot receive; retrying");
                    self.jobs_changed.notify_waiters();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// PostgreSQL: `NOTIFY` the job channel (delivered when `executor`'s transaction commits).
async fn notify_jobs<'e>(executor: impl sqlx::Executor<'e, Database = sqlx::Any>) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(executor)
        .await?;
    Ok(())
}

fn job_from_row(r: &AnyRow) -> Option<Job> {
    Some(Job {
        id: r.get(0),
        call_sid: r.get(1),
        stage: r.try_get(2).ok()?,
        attempts: r.get::<i64, _>(3) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn the_backoff_doubles_from_the_base_up_to_the_cap() {
        let waits: Vec<i64> = (1..=4).map(|a| backoff_ms(a, (1000, 5000))).collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000]);
        let capped: Vec<i64> = (1..=3).map(|a| backoff_ms(a, (1000, 1200))).collect();
        assert_eq!(capped, [1000, 1200, 1200]);
    }
}
