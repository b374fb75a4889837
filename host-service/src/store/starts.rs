//! A stream's `start` reaching the database: the call's row, the stream's number in it, the
//! per-call cap on open streams counted across replicas, and a start held back by a database
//! outage that lands after the call's end (another replica may have run the call's recording
//! stage without it meanwhile).

use super::calls::CallFacts;
use super::queue::Stage;
use super::status::{CallStatus, JobState, RecordingStatus, StreamStatus};
use super::{Result, Store};

/// What became of a stream's `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Recorded as the call's stream number `idx` (0 for the first).
    Started { idx: i64 },
    /// Another socket already used this streamSid: nothing was written.
    DuplicateStream,
    /// The call's `stream_ended` webhook has already come: nothing was written.
    CallEnded,
    /// The call already has this many streams open (on any replica): nothing was written.
    TooManyStreams { open: i64 },
}

/// How a stream's start is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A socket's start as it comes: refused once the call has ended, or when the call already
    /// has `max_open` streams open in the database (set on PostgreSQL, where several replicas
    /// hold the call's sockets; SQLite's one process counts its own).
    Live { max_open: Option<i64> },
    /// The start of a stream whose socket was accepted while the database was away, landing at
    /// `now`: stored even if the call's end came meanwhile (the stream ran before it). When the
    /// call's recording stage already ran without it (failed, or running now), the stage is
    /// queued again to wait for this stream, if the call ended at most `reopen_within_ms` ago
    /// (`pipeline.stream_wait_timeout_ms`, the stage's own wait for streams); past that the
    /// call's errors say why the stream is not part of its recording.
    Late { now: i64, reopen_within_ms: i64 },
}

/// The source whose recording is made of the call's streams.
const STREAM_SOURCE: &str = "stream";

impl Store {
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
        let admit = Admit::Live { max_open: None };
        self.stream_started_as(call_sid, stream_sid, facts, recording_source, now, admit)
            .await
    }

    /// `stream_started`, admitted as `admit` says. `now` is when the socket saw the start.
    pub async fn stream_started_as(
        &self,
        call_sid: &str,
        stream_sid: &str,
        facts: &CallFacts<'_>,
        recording_source: &str,
        now: i64,
        admit: Admit,
    ) -> Result<StreamStart> {
        // One writer per call at a time (on every replica): the count of open streams and the
        // next index are read and written under the same lock.
        let mut tx = self.write_tx(call_sid).await?;
        let seen: Option<i64> = sqlx::query_scalar("SELECT 1 FROM streams WHERE stream_sid = $1")
            .bind(stream_sid)
            .fetch_optional(&mut *tx)
            .await?;
        if seen.is_some() {
            return Ok(StreamStart::DuplicateStream);
        }
        let ended: Option<i64> = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT ended_at_ms FROM calls WHERE call_sid = $1",
        )
        .bind(call_sid)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        if let Admit::Live { max_open } = admit {
            if ended.is_some() {
                return Ok(StreamStart::CallEnded);
            }
            if let Some(max) = max_open {
                let open = self.open_streams_in(&mut tx, call_sid).await?;
                if open >= max {
                    return Ok(StreamStart::TooManyStreams { open });
                }
            }
        }
        self.upsert_call(&mut tx, call_sid, facts, recording_source, now)
            .await?;
        let idx: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(idx), -1) + 1 FROM streams WHERE call_sid = $1",
        )
        .bind(call_sid)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO streams (stream_sid, call_sid, idx, status, started_at_ms, replica)
             VALUES ($1, $2, $3, $6, $4, $5)",
        )
        .bind(stream_sid)
        .bind(call_sid)
        .bind(idx)
        .bind(now)
        .bind(self.replica())
        .bind(StreamStatus::Streaming)
        .execute(&mut *tx)
        .await?;
        if let (
            Admit::Late {
                now: landed,
                reopen_within_ms,
            },
            Some(ended),
        ) = (admit, ended)
        {
            self.late_after_end(
                &mut tx,
                call_sid,
                stream_sid,
                ended,
                landed,
                reopen_within_ms,
            )
            .await?;
        }
        self.call_changed_in(&mut tx, call_sid).await?;
        tx.commit().await?;
        self.jobs_committed();
        self.call_committed(call_sid);
        Ok(StreamStart::Started { idx })
    }

    /// Streams of the call open now, on any replica.
    async fn open_streams_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        call_sid: &str,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM streams WHERE call_sid = $1 AND status IN ($2, $3)",
        )
        .bind(call_sid)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .fetch_one(&mut **tx)
        .await?)
    }

    /// A late start stored after the call's end (at `ended`): the recording stage must not keep
    /// a conclusion it reached without this stream. A queued stage will see the stream open and
    /// wait for it. One that ran or is running (whose look may have missed it) is queued again
    /// within `reopen_within_ms` of the call's end: a running attempt's lease is taken, so its
    /// result is dropped, and the stages after it go, to run again on the new recording. Past
    /// that the stage's own wait for streams would be over: the call keeps its outcome and its
    /// errors say why.
    async fn late_after_end(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        call_sid: &str,
        stream_sid: &str,
        ended: i64,
        now: i64,
        reopen_within_ms: i64,
    ) -> Result<()> {
        let source: Option<String> =
            sqlx::query_scalar("SELECT recording_source FROM calls WHERE call_sid = $1")
                .bind(call_sid)
                .fetch_optional(&mut **tx)
                .await?;
        let stage: Option<JobState> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE call_sid = $1 AND stage = $2")
                .bind(call_sid)
                .bind(Stage::Recording)
                .fetch_optional(&mut **tx)
                .await?;
        let concluded = matches!(
            stage,
            Some(JobState::Failed | JobState::Running | JobState::Done)
        );
        if source.as_deref() != Some(STREAM_SOURCE) || !concluded {
            return Ok(());
        }
        let late_s = (now - ended).max(0) / 1000;
        if now - ended > reopen_within_ms {
            let message = format!(
                "stream {stream_sid} started before the call ended but reached the database \
                 {late_s} s after its end, past pipeline.stream_wait_timeout_ms \
                 ({reopen_within_ms} ms): its recording is not part of the call's"
            );
            tracing::error!(call_sid, stream_sid, late_s, "stream_start_too_late");
            sqlx::query(
                "INSERT INTO call_errors (call_sid, at_ms, stage, message) VALUES ($1, $2, $3, $4)",
            )
            .bind(call_sid)
            .bind(now)
            .bind("stream")
            .bind(&message)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE jobs SET state = $3, run_at_ms = $4, attempts = 0, lease_owner = NULL,
               lease_until_ms = NULL, finished_at_ms = NULL, duration_ms = NULL, last_error = $5
             WHERE call_sid = $1 AND stage = $2",
        )
        .bind(call_sid)
        .bind(Stage::Recording)
        .bind(JobState::Queued)
        .bind(now)
        .bind(format!(
            "stream {stream_sid} reached the database {late_s} s after the call ended: waiting for it"
        ))
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE call_sid = $1 AND stage <> $2")
            .bind(call_sid)
            .bind(Stage::Recording)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE calls SET status = $2, recording_status = $3, completed_at_ms = NULL
             WHERE call_sid = $1",
        )
        .bind(call_sid)
        .bind(CallStatus::Ended)
        .bind(RecordingStatus::Pending)
        .execute(&mut **tx)
        .await?;
        tracing::warn!(call_sid, stream_sid, late_s, "recording_stage_reopened");
        self.jobs_due(tx).await
    }
}
