//! The durable state: calls, their streams, errors, and the post-call job queue, in SQLite (WAL).
//! Every state change that must not happen twice (a webhook retry, a stage completing after a
//! crash) is one transaction guarded by a condition, so replays and dead workers change nothing.

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, DbError>;

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
        match self {
            Stage::Recording => "recording",
            Stage::Transcribe => "transcribe",
            Stage::Extract => "extract",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }

    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Recording => Some(Stage::Transcribe),
            Stage::Transcribe => Some(Stage::Extract),
            Stage::Extract => None,
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS calls (
    call_sid TEXT PRIMARY KEY,
    account_sid TEXT,
    from_number TEXT,
    to_number TEXT,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    completed_at_ms INTEGER,
    call_status TEXT,
    recording_source TEXT NOT NULL,
    recording_status TEXT NOT NULL,
    recording_path TEXT,
    recording_duration_ms INTEGER,
    twilio_recording_sid TEXT,
    twilio_recording_url TEXT,
    transcription_status TEXT,
    transcript_json TEXT,
    summary TEXT,
    fields_json TEXT,
    extraction_engine TEXT
);
CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at_ms DESC, call_sid DESC);
CREATE TABLE IF NOT EXISTS streams (
    stream_sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    stopped_at_ms INTEGER,
    path TEXT,
    frames INTEGER,
    duration_ms INTEGER,
    frames_in INTEGER NOT NULL DEFAULT 0,
    frames_out INTEGER NOT NULL DEFAULT 0,
    bad_messages INTEGER NOT NULL DEFAULT 0,
    close_reason TEXT,
    UNIQUE (call_sid, idx)
);
CREATE TABLE IF NOT EXISTS call_errors (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    stage TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_errors_call ON call_errors (call_sid);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    stage TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    duration_ms INTEGER,
    UNIQUE (call_sid, stage)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at_ms);
"#;

const POOL_SIZE: u32 = 4;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

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

/// What became of a stream's `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Recorded as the call's stream number `idx` (0 for the first).
    Started { idx: i64 },
    /// Another socket already used this streamSid: nothing was written.
    DuplicateStream,
    /// The call's `stream_ended` webhook has already come: nothing was written.
    CallEnded,
}

/// What the recording stage of the `twilio` source needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRecording {
    pub status: String,
    pub url: Option<String>,
    pub ended_at_ms: Option<i64>,
    pub account_sid: Option<String>,
}

/// Fields from a webhook or the stream `start` that describe the call.
#[derive(Debug, Clone, Default)]
pub struct CallFacts<'a> {
    pub account_sid: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub call_status: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub call_sid: String,
    pub status: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub created_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub recording_status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub stream_sid: String,
    pub index: i64,
    pub status: String,
    pub started_at_ms: i64,
    pub stopped_at_ms: Option<i64>,
    pub frames: Option<i64>,
    pub duration_ms: Option<i64>,
    pub frames_in: i64,
    pub frames_out: i64,
    pub bad_messages: i64,
    pub close_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub stage: String,
    pub state: String,
    pub attempts: i64,
    pub run_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    pub at_ms: i64,
    pub stage: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallDetail {
    pub call_sid: String,
    pub status: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub call_status: Option<String>,
    pub created_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub recording: RecordingDetail,
    pub streams: Vec<StreamRow>,
    pub transcription_status: Option<String>,
    pub transcript: Option<serde_json::Value>,
    pub summary: Option<String>,
    pub fields: Option<serde_json::Value>,
    pub extraction_engine: Option<String>,
    pub stages: Vec<JobRow>,
    pub errors: Vec<ErrorRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordingDetail {
    pub source: String,
    pub status: String,
    pub duration_ms: Option<i64>,
    pub twilio_recording_sid: Option<String>,
    /// Whether `recording.wav` can be fetched.
    pub available: bool,
}

/// Exponential backoff after `attempts` failed attempts: base, 2 base, 4 base, ... up to `cap`.
pub fn backoff_ms(attempts: u32, base_ms: u64, cap_ms: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(40);
    base_ms.saturating_mul(1u64 << shift).min(cap_ms)
}

impl Store {
    /// Open (creating it readable by this user only) the database at `path`. `synchronous=FULL`:
    /// a commit the service acknowledged (a webhook answered, a stage completed) survives a power
    /// cut, not only a process crash.
    pub async fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_private_dir(dir)?;
        }
        // Before SQLite opens it; SQLite gives its `-wal` and `-shm` files the same permissions.
        crate::fsutil::touch_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // Switching a file to WAL takes an exclusive lock, and SQLite answers a second connection
        // racing for it with SQLITE_BUSY without waiting. One connection makes the file WAL and
        // the schema first; the pool's connections then find it done.
        let first = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&first).await?;
        first.close().await;
        // A local file needs no liveness pings, reaping or lazy connects: every connection is
        // opened up front and kept.
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(POOL_SIZE)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A stream started: create the call if new, record the stream and its index in the call.
    /// A streamSid already seen, or a call already ended, changes nothing: another socket must
    /// never take over a stream's row (and with it its recording) or reopen a finished call.
    pub async fn stream_started(
        &self,
        call_sid: &str,
        stream_sid: &str,
        facts: &CallFacts<'_>,
        recording_source: &str,
        now: i64,
    ) -> Result<StreamStart> {
        let mut tx = self.pool.begin().await?;
        let seen: Option<i64> = sqlx::query_scalar("SELECT 1 FROM streams WHERE stream_sid = ?1")
            .bind(stream_sid)
            .fetch_optional(&mut *tx)
            .await?;
        if seen.is_some() {
            return Ok(StreamStart::DuplicateStream);
        }
        let ended: Option<Option<i64>> =
            sqlx::query_scalar("SELECT ended_at_ms FROM calls WHERE call_sid = ?1")
                .bind(call_sid)
                .fetch_optional(&mut *tx)
                .await?;
        if ended.flatten().is_some() {
            return Ok(StreamStart::CallEnded);
        }
        sqlx::query(
            "INSERT INTO calls (call_sid, account_sid, from_number, to_number, status, created_at_ms,
                                recording_source, recording_status)
             VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5, ?6, 'pending')
             ON CONFLICT (call_sid) DO UPDATE SET
               account_sid = COALESCE(calls.account_sid, excluded.account_sid),
               from_number = COALESCE(calls.from_number, excluded.from_number),
               to_number = COALESCE(calls.to_number, excluded.to_number)",
        )
        .bind(call_sid)
        .bind(facts.account_sid)
        .bind(facts.from)
        .bind(facts.to)
        .bind(now)
        .bind(recording_source)
        .execute(&mut *tx)
        .await?;
        let idx: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(idx), -1) + 1 FROM streams WHERE call_sid = ?1",
        )
        .bind(call_sid)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO streams (stream_sid, call_sid, idx, status, started_at_ms)
             VALUES (?1, ?2, ?3, 'streaming', ?4)",
        )
        .bind(stream_sid)
        .bind(call_sid)
        .bind(idx)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StreamStart::Started { idx })
    }

    pub async fn stream_recording_path(&self, stream_sid: &str, path: &str) -> Result<()> {
        sqlx::query("UPDATE streams SET path = ?2, status = 'recording' WHERE stream_sid = ?1")
            .bind(stream_sid)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A stream's socket is gone: store its counters and how its recording ended.
    #[allow(clippy::too_many_arguments)]
    pub async fn stream_finished(
        &self,
        stream_sid: &str,
        status: &str,
        frames: Option<u64>,
        counters: (u64, u64, u64),
        close_reason: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE streams SET status = ?2, frames = ?3, duration_ms = ?3 / 8, frames_in = ?4,
               frames_out = ?5, bad_messages = ?6, close_reason = ?7, stopped_at_ms = ?8
             WHERE stream_sid = ?1",
        )
        .bind(stream_sid)
        .bind(status)
        .bind(frames.map(|f| f as i64))
        .bind(counters.0 as i64)
        .bind(counters.1 as i64)
        .bind(counters.2 as i64)
        .bind(close_reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Streams whose recordings a previous process left open.
    pub async fn unfinished_recordings(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT stream_sid, path FROM streams WHERE status IN ('streaming', 'recording')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("stream_sid"),
                    r.get::<Option<String>, _>("path").unwrap_or_default(),
                )
            })
            .collect())
    }

    /// The longest saved stream recording of a call.
    pub async fn best_stream_recording(&self, call_sid: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT path, COALESCE(frames, 0) AS frames FROM streams
             WHERE call_sid = ?1 AND status IN ('saved', 'repaired') AND path IS NOT NULL
             ORDER BY frames DESC, idx LIMIT 1",
        )
        .bind(call_sid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get("path"), r.get::<i64, _>("frames") / 8)))
    }

    /// Streams still open for a call (the recording stage waits for them).
    pub async fn open_streams(&self, call_sid: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM streams WHERE call_sid = ?1 AND status IN ('streaming', 'recording')",
        )
        .bind(call_sid)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The `<Connect action>` webhook: mark the call ended and queue its pipeline. Returns
    /// false when this call had already ended (a Twilio retry), in which case nothing changed.
    pub async fn call_ended(
        &self,
        call_sid: &str,
        facts: &CallFacts<'_>,
        recording_source: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO calls (call_sid, account_sid, from_number, to_number, status, created_at_ms,
                                recording_source, recording_status)
             VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5, ?6, 'pending')
             ON CONFLICT (call_sid) DO NOTHING",
        )
        .bind(call_sid)
        .bind(facts.account_sid)
        .bind(facts.from)
        .bind(facts.to)
        .bind(now)
        .bind(recording_source)
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(
            "UPDATE calls SET status = 'ended', ended_at_ms = ?2, call_status = ?3,
               account_sid = COALESCE(account_sid, ?4),
               from_number = COALESCE(from_number, ?5),
               to_number = COALESCE(to_number, ?6)
             WHERE call_sid = ?1 AND ended_at_ms IS NULL",
        )
        .bind(call_sid)
        .bind(now)
        .bind(facts.call_status)
        .bind(facts.account_sid)
        .bind(facts.from)
        .bind(facts.to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            enqueue(&mut tx, call_sid, Stage::Recording, now).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    pub async fn set_recording_status(&self, call_sid: &str, status: &str) -> Result<()> {
        sqlx::query("UPDATE calls SET recording_status = ?2 WHERE call_sid = ?1")
            .bind(call_sid)
            .bind(status)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The Twilio recording status callback. Returns false for an unknown call. `completed`
    /// makes a waiting recording stage due at once.
    pub async fn twilio_recording_status(
        &self,
        call_sid: &str,
        recording_sid: &str,
        status: &str,
        url: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE calls SET twilio_recording_sid = ?2,
               twilio_recording_url = COALESCE(?4, twilio_recording_url),
               recording_status = CASE WHEN recording_status = 'saved' THEN 'saved'
                                       ELSE 'twilio_' || ?3 END
             WHERE call_sid = ?1",
        )
        .bind(call_sid)
        .bind(recording_sid)
        .bind(status)
        .bind(url)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 && status == "completed" {
            sqlx::query(
                "UPDATE jobs SET run_at_ms = MIN(run_at_ms, ?2)
                 WHERE call_sid = ?1 AND stage = 'recording' AND state = 'queued'",
            )
            .bind(call_sid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn twilio_recording(&self, call_sid: &str) -> Result<TwilioRecording> {
        let row = sqlx::query(
            "SELECT recording_status, twilio_recording_url, ended_at_ms, account_sid
             FROM calls WHERE call_sid = ?1",
        )
        .bind(call_sid)
        .fetch_one(&self.pool)
        .await?;
        Ok(TwilioRecording {
            status: row.get(0),
            url: row.get(1),
            ended_at_ms: row.get(2),
            account_sid: row.get(3),
        })
    }

    pub async fn add_error(
        &self,
        call_sid: &str,
        stage: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO call_errors (call_sid, at_ms, stage, message) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(call_sid)
        .bind(now)
        .bind(stage)
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // === the job queue ===

    /// Take the next due job: a queued one whose time has come, or a running one whose lease
    /// has expired (its worker died). One statement, so two workers never take the same job.
    pub async fn claim(&self, worker: &str, now: i64, lease_ms: u64) -> Result<Option<Job>> {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until_ms = ?2 + ?3,
               attempts = attempts + 1, started_at_ms = ?2
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = 'queued' AND run_at_ms <= ?2)
                            OR (state = 'running' AND lease_until_ms <= ?2)
                         ORDER BY run_at_ms, id LIMIT 1)
             RETURNING id, call_sid, stage, attempts",
        )
        .bind(worker)
        .bind(now)
        .bind(lease_ms as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| job_from_row(&r)))
    }

    /// Extend a lease while a long stage runs. False when the lease was lost.
    pub async fn renew(&self, job: &Job, worker: &str, now: i64, lease_ms: u64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_until_ms = ?3 + ?4
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(now)
        .bind(lease_ms as i64)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at_ms = ?3, duration_ms = ?3 - started_at_ms,
               lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Outcome::LeaseLost);
        }
        let sid = job.call_sid.as_str();
        let update = match output {
            StageOutput::Recording { path, duration_ms } => sqlx::query(
                "UPDATE calls SET recording_status = 'saved', recording_path = ?2,
                   recording_duration_ms = ?3, status = 'processing'
                 WHERE call_sid = ?1",
            )
            .bind(sid)
            .bind(path)
            .bind(*duration_ms as i64),
            StageOutput::Transcript { json } => sqlx::query(
                "UPDATE calls SET transcription_status = 'done', transcript_json = ?2
                 WHERE call_sid = ?1",
            )
            .bind(sid)
            .bind(json),
            StageOutput::TranscriptionSkipped => sqlx::query(
                "UPDATE calls SET transcription_status = 'skipped: transcription engine is none'
                 WHERE call_sid = ?1",
            )
            .bind(sid),
            StageOutput::Extraction {
                summary,
                fields_json,
                engine,
            } => sqlx::query(
                "UPDATE calls SET summary = ?2, fields_json = ?3, extraction_engine = ?4
                 WHERE call_sid = ?1",
            )
            .bind(sid)
            .bind(summary)
            .bind(fields_json)
            .bind(engine),
            StageOutput::ExtractionSkipped => sqlx::query(
                "UPDATE calls SET extraction_engine = 'skipped: no transcript' WHERE call_sid = ?1",
            )
            .bind(sid),
        };
        update.execute(&mut *tx).await?;
        match job.stage.next() {
            Some(next) => enqueue(&mut tx, &job.call_sid, next, now).await?,
            None => {
                sqlx::query(
                    "UPDATE calls SET status = 'completed', completed_at_ms = ?2 WHERE call_sid = ?1",
                )
                .bind(&job.call_sid)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
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
            "UPDATE jobs SET state = 'queued', run_at_ms = ?3, last_error = ?4,
               attempts = MAX(attempts - 1, 0), lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(run_at_ms)
        .bind(reason)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let outcome = if retry && job.attempts < max_attempts {
            Outcome::Retry {
                run_at_ms: now + backoff_ms(job.attempts, backoff.0, backoff.1) as i64,
            }
        } else {
            Outcome::Failed
        };
        let (state, run_at) = match outcome {
            Outcome::Retry { run_at_ms } => ("queued", run_at_ms),
            _ => ("failed", now),
        };
        let n = sqlx::query(
            "UPDATE jobs SET state = ?3, run_at_ms = ?4, last_error = ?5, lease_owner = NULL,
               lease_until_ms = NULL, finished_at_ms = ?6, duration_ms = ?6 - started_at_ms
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(state)
        .bind(run_at)
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Outcome::LeaseLost);
        }
        sqlx::query(
            "INSERT INTO call_errors (call_sid, at_ms, stage, message) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&job.call_sid)
        .bind(now)
        .bind(job.stage.name())
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if outcome == Outcome::Failed {
            sqlx::query("UPDATE calls SET status = 'failed' WHERE call_sid = ?1")
                .bind(&job.call_sid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Jobs per state, for `/metrics`.
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query("SELECT stage, state, COUNT(*) FROM jobs GROUP BY stage, state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The earliest time a job becomes due, so idle workers sleep until then.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'queued' THEN run_at_ms ELSE lease_until_ms END)
             FROM jobs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    // === retention ===

    /// Calls created before `cutoff_ms` that nothing is working on (no open stream, no running
    /// stage), with every file they own.
    pub async fn expired_calls(&self, cutoff_ms: i64) -> Result<Vec<(String, Vec<String>)>> {
        let sids: Vec<String> = sqlx::query_scalar(
            "SELECT call_sid FROM calls c WHERE created_at_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.call_sid = c.call_sid
                               AND s.status IN ('streaming', 'recording'))
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.call_sid = c.call_sid
                               AND j.state = 'running')
             ORDER BY created_at_ms",
        )
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            let mut files: Vec<String> = sqlx::query_scalar(
                "SELECT path FROM streams WHERE call_sid = ?1 AND path IS NOT NULL
                 UNION SELECT recording_path FROM calls WHERE call_sid = ?1
                   AND recording_path IS NOT NULL",
            )
            .bind(&sid)
            .fetch_all(&self.pool)
            .await?;
            files.sort();
            out.push((sid, files));
        }
        Ok(out)
    }

    /// Delete a call and everything stored about it (streams, errors, stages), in one
    /// transaction. False when it was gone already.
    pub async fn delete_call(&self, call_sid: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for table in ["streams", "call_errors", "jobs"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE call_sid = ?1"))
                .bind(call_sid)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM calls WHERE call_sid = ?1")
            .bind(call_sid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    // === reads for the API ===

    /// Newest first; `before` is the cursor (`created_at_ms`, `call_sid`) of the last row seen.
    pub async fn list_calls(
        &self,
        limit: i64,
        before: Option<(i64, String)>,
    ) -> Result<Vec<CallSummary>> {
        let (ts, sid) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(
            "SELECT call_sid, status, from_number, to_number, created_at_ms, ended_at_ms,
                    recording_status
             FROM calls
             WHERE created_at_ms < ?1 OR (created_at_ms = ?1 AND call_sid < ?2)
             ORDER BY created_at_ms DESC, call_sid DESC LIMIT ?3",
        )
        .bind(ts)
        .bind(sid)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| CallSummary {
                call_sid: r.get(0),
                status: r.get(1),
                from: r.get(2),
                to: r.get(3),
                created_at_ms: r.get(4),
                ended_at_ms: r.get(5),
                recording_status: r.get(6),
            })
            .collect())
    }

    pub async fn recording_path(&self, call_sid: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT recording_path FROM calls WHERE call_sid = ?1")
                .bind(call_sid)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    pub async fn call_detail(&self, call_sid: &str) -> Result<Option<CallDetail>> {
        let Some(r) = sqlx::query("SELECT * FROM calls WHERE call_sid = ?1")
            .bind(call_sid)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let streams = sqlx::query("SELECT * FROM streams WHERE call_sid = ?1 ORDER BY idx")
            .bind(call_sid)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|s| StreamRow {
                stream_sid: s.get("stream_sid"),
                index: s.get("idx"),
                status: s.get("status"),
                started_at_ms: s.get("started_at_ms"),
                stopped_at_ms: s.get("stopped_at_ms"),
                frames: s.get("frames"),
                duration_ms: s.get("duration_ms"),
                frames_in: s.get("frames_in"),
                frames_out: s.get("frames_out"),
                bad_messages: s.get("bad_messages"),
                close_reason: s.get("close_reason"),
            })
            .collect();
        let mut stages: Vec<JobRow> = sqlx::query("SELECT * FROM jobs WHERE call_sid = ?1")
            .bind(call_sid)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|j| JobRow {
                stage: j.get("stage"),
                state: j.get("state"),
                attempts: j.get("attempts"),
                run_at_ms: j.get("run_at_ms"),
                started_at_ms: j.get("started_at_ms"),
                finished_at_ms: j.get("finished_at_ms"),
                duration_ms: j.get("duration_ms"),
                last_error: j.get("last_error"),
            })
            .collect();
        stages.sort_by_key(|j| Stage::parse(&j.stage).map(|s| s as u8));
        let errors = sqlx::query(
            "SELECT at_ms, stage, message FROM call_errors WHERE call_sid = ?1 ORDER BY id",
        )
        .bind(call_sid)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|e| ErrorRow {
            at_ms: e.get(0),
            stage: e.get(1),
            message: e.get(2),
        })
        .collect();
        let json = |col: &str| {
            r.get::<Option<String>, _>(col)
                .and_then(|s| serde_json::from_str(&s).ok())
        };
        let recording_path: Option<String> = r.get("recording_path");
        Ok(Some(CallDetail {
            call_sid: r.get("call_sid"),
            status: r.get("status"),
            account_sid: r.get("account_sid"),
            from: r.get("from_number"),
            to: r.get("to_number"),
            call_status: r.get("call_status"),
            created_at_ms: r.get("created_at_ms"),
            ended_at_ms: r.get("ended_at_ms"),
            completed_at_ms: r.get("completed_at_ms"),
            recording: RecordingDetail {
                source: r.get("recording_source"),
                status: r.get("recording_status"),
                duration_ms: r.get("recording_duration_ms"),
                twilio_recording_sid: r.get("twilio_recording_sid"),
                available: recording_path.is_some(),
            },
            streams,
            transcription_status: r.get("transcription_status"),
            transcript: json("transcript_json"),
            summary: r.get("summary"),
            fields: json("fields_json"),
            extraction_engine: r.get("extraction_engine"),
            stages,
            errors,
        }))
    }

    pub async fn call_for_stage(
        &self,
        call_sid: &str,
    ) -> Result<(Option<String>, Option<String>, i64)> {
        let r = sqlx::query(
            "SELECT recording_path, transcript_json, created_at_ms FROM calls WHERE call_sid = ?1",
        )
        .bind(call_sid)
        .fetch_one(&self.pool)
        .await?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }
}

async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    call_sid: &str,
    stage: Stage,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (call_sid, stage, state, run_at_ms, created_at_ms)
         VALUES (?1, ?2, 'queued', ?3, ?3)
         ON CONFLICT (call_sid, stage) DO NOTHING",
    )
    .bind(call_sid)
    .bind(stage.name())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn job_from_row(r: &SqliteRow) -> Option<Job> {
    Some(Job {
        id: r.get(0),
        call_sid: r.get(1),
        stage: Stage::parse(r.get::<&str, _>(2))?,
        attempts: r.get::<i64, _>(3) as u32,
    })
}

#[cfg(test)]
mod tests;
