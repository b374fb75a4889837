//! The call repository: calls, their streams and errors, as webhooks and sockets report them,
//! plus the retention sweep's deletes and the reads behind the API.

use super::queue::Stage;
use super::status::{CallStatus, CloseReason, JobState, RecordingStatus, StreamStatus};
use super::views::{CallDetail, CallSummary, ErrorRow, JobRow, RecordingDetail, StreamRow};
use super::{Result, Store};
use sqlx::Row;

/// What the recording stage of the `twilio` source needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRecording {
    pub status: RecordingStatus,
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

impl Store {
    pub async fn stream_recording_path(&self, stream_sid: &str, path: &str) -> Result<()> {
        sqlx::query("UPDATE streams SET path = $2, status = $3 WHERE stream_sid = $1")
            .bind(stream_sid)
            .bind(path)
            .bind(StreamStatus::Recording)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A stream's socket is gone: store its counters and how its recording ended, only if the
    /// stream is still held at `fence` (the token its owner started with, or took it over at).
    /// False when another replica has taken the stream over meanwhile: nothing was written.
    #[allow(clippy::too_many_arguments)]
    pub async fn stream_finished(
        &self,
        stream_sid: &str,
        fence: i64,
        status: StreamStatus,
        frames: Option<u64>,
        counters: (u64, u64, u64),
        close_reason: CloseReason,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE streams SET status = $2, frames = $3, duration_ms = $3 / 8, frames_in = $4,
               frames_out = $5, bad_messages = $6, close_reason = $7, stopped_at_ms = $8
             WHERE stream_sid = $1 AND fence = $9",
        )
        .bind(stream_sid)
        .bind(status)
        .bind(frames.map(|f| f as i64))
        .bind(counters.0 as i64)
        .bind(counters.1 as i64)
        .bind(counters.2 as i64)
        .bind(close_reason)
        .bind(now)
        .bind(fence)
        .execute(self.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        // The call's recording stage may be waiting for this stream: due now.
        let moved = sqlx::query(
            "UPDATE jobs SET run_at_ms = CASE WHEN run_at_ms < $2 THEN run_at_ms ELSE $2 END
             WHERE stage = $3 AND state = $4
               AND call_sid = (SELECT call_sid FROM streams WHERE stream_sid = $1)",
        )
        .bind(stream_sid)
        .bind(now)
        .bind(Stage::Recording)
        .bind(JobState::Queued)
        .execute(self.pool())
        .await?
        .rows_affected();
        if moved > 0 {
            self.wake_workers().await?;
        }
        Ok(true)
    }

    /// The longest saved stream recording of a call.
    pub async fn best_stream_recording(&self, call_sid: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT path, COALESCE(frames, 0) AS frames FROM streams
             WHERE call_sid = $1 AND status IN ($2, $3) AND path IS NOT NULL
             ORDER BY frames DESC, idx LIMIT 1",
        )
        .bind(call_sid)
        .bind(StreamStatus::Saved)
        .bind(StreamStatus::Repaired)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| (r.get("path"), r.get::<i64, _>("frames") / 8)))
    }

    /// Streams still open for a call (the recording stage waits for them).
    pub async fn open_streams(&self, call_sid: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM streams WHERE call_sid = $1 AND status IN ($2, $3)",
        )
        .bind(call_sid)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .fetch_one(self.pool())
        .await?)
    }

    /// When the call ended (`None`: not yet) and which of its streams are still open, for the
    /// recording stage's bounded wait.
    pub async fn open_streams_since_end(
        &self,
        call_sid: &str,
    ) -> Result<(Option<i64>, Vec<String>)> {
        let ended: Option<Option<i64>> =
            sqlx::query_scalar("SELECT ended_at_ms FROM calls WHERE call_sid = $1")
                .bind(call_sid)
                .fetch_optional(self.pool())
                .await?;
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT stream_sid FROM streams WHERE call_sid = $1 AND status IN ($2, $3)
             ORDER BY idx",
        )
        .bind(call_sid)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .fetch_all(self.pool())
        .await?;
        Ok((ended.flatten(), open))
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
        let mut tx = self.write_tx(call_sid).await?;
        self.upsert_call(&mut tx, call_sid, facts, recording_source, now)
            .await?;
        let changed = sqlx::query(
            "UPDATE calls SET status = $7, ended_at_ms = $2, call_status = $3,
               account_sid = COALESCE(account_sid, $4),
               from_number = COALESCE(from_number, $5),
               to_number = COALESCE(to_number, $6)
             WHERE call_sid = $1 AND ended_at_ms IS NULL",
        )
        .bind(call_sid)
        .bind(now)
        .bind(facts.call_status)
        .bind(facts.account_sid)
        .bind(facts.from)
        .bind(facts.to)
        .bind(CallStatus::Ended)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            self.enqueue(&mut tx, call_sid, Stage::Recording, now)
                .await?;
            self.call_changed_in(&mut tx, call_sid).await?;
        }
        tx.commit().await?;
        self.jobs_committed();
        if changed == 1 {
            self.call_committed(call_sid);
        }
        Ok(changed == 1)
    }

    /// The call's row, created at `now` if new; facts it lacks are filled in, none replaced.
    pub(super) async fn upsert_call(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        call_sid: &str,
        facts: &CallFacts<'_>,
        recording_source: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO calls (call_sid, account_sid, from_number, to_number, status, created_at_ms,
                                recording_source, recording_status)
             VALUES ($1, $2, $3, $4, $7, $5, $6, $8)
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
        .bind(CallStatus::InProgress)
        .bind(RecordingStatus::Pending)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn set_recording_status(
        &self,
        call_sid: &str,
        status: RecordingStatus,
    ) -> Result<()> {
        sqlx::query("UPDATE calls SET recording_status = $2 WHERE call_sid = $1")
            .bind(call_sid)
            .bind(status)
            .execute(self.pool())
            .await?;
        self.call_changed(call_sid).await
    }

    /// The Twilio recording status callback. Returns false for an unknown call. `completed`
    /// makes a waiting recording stage due at once.
    pub async fn twilio_recording_status(
        &self,
        call_sid: &str,
        recording_sid: &str,
        status: RecordingStatus,
        url: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write_tx(call_sid).await?;
        let n = sqlx::query(
            "UPDATE calls SET twilio_recording_sid = $2,
               twilio_recording_url = COALESCE($4, twilio_recording_url),
               recording_status = CASE WHEN recording_status = $5 THEN $5 ELSE $3 END
             WHERE call_sid = $1",
        )
        .bind(call_sid)
        .bind(recording_sid)
        .bind(status)
        .bind(url)
        .bind(RecordingStatus::Saved)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 && status == RecordingStatus::TwilioCompleted {
            sqlx::query(
                "UPDATE jobs SET run_at_ms = CASE WHEN run_at_ms < $2 THEN run_at_ms ELSE $2 END
                 WHERE call_sid = $1 AND stage = $3 AND state = $4",
            )
            .bind(call_sid)
            .bind(now)
            .bind(Stage::Recording)
            .bind(JobState::Queued)
            .execute(&mut *tx)
            .await?;
            self.jobs_due(&mut tx).await?;
        }
        if n == 1 {
            self.call_changed_in(&mut tx, call_sid).await?;
        }
        tx.commit().await?;
        self.jobs_committed();
        if n == 1 {
            self.call_committed(call_sid);
        }
        Ok(n == 1)
    }

    pub async fn twilio_recording(&self, call_sid: &str) -> Result<TwilioRecording> {
        let row = sqlx::query(
            "SELECT recording_status, twilio_recording_url, ended_at_ms, account_sid
             FROM calls WHERE call_sid = $1",
        )
        .bind(call_sid)
        .fetch_one(self.pool())
        .await?;
        Ok(TwilioRecording {
            status: row.try_get(0)?,
            url: row.get(1),
            ended_at_ms: row.get(2),
            account_sid: row.get(3),
        })
    }

    /// The messages of the call's errors at `stage`, oldest first.
    pub async fn errors_of(&self, call_sid: &str, stage: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT message FROM call_errors WHERE call_sid = $1 AND stage = $2 ORDER BY id",
        )
        .bind(call_sid)
        .bind(stage)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// One of the call's errors. A write retried until it sticks passes the same `key` each
    /// time: an attempt that timed out yet landed and its retry leave one row.
    pub async fn add_error(
        &self,
        call_sid: &str,
        stage: &str,
        message: &str,
        now: i64,
        key: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO call_errors (call_sid, at_ms, stage, message, write_key)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (write_key) DO NOTHING",
        )
        .bind(call_sid)
        .bind(now)
        .bind(stage)
        .bind(message)
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    // === retention ===

    /// Calls created before `cutoff_ms` that nothing is working on (no stream open since the
    /// cutoff, no running stage), with every file they own. A stream still open from before
    /// the cutoff is one whose end never reached the database: it holds nothing back.
    pub async fn expired_calls(&self, cutoff_ms: i64) -> Result<Vec<(String, Vec<String>)>> {
        let sids: Vec<String> = sqlx::query_scalar(
            "SELECT call_sid FROM calls c WHERE created_at_ms < $1
               AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.call_sid = c.call_sid
                               AND s.status IN ($2, $3) AND s.started_at_ms >= $1)
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.call_sid = c.call_sid
                               AND j.state = $4)
             ORDER BY created_at_ms, call_sid",
        )
        .bind(cutoff_ms)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .bind(JobState::Running)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            let mut files: Vec<String> = sqlx::query_scalar(
                "SELECT path FROM streams WHERE call_sid = $1 AND path IS NOT NULL
                 UNION SELECT recording_path FROM calls WHERE call_sid = $1
                   AND recording_path IS NOT NULL",
            )
            .bind(&sid)
            .fetch_all(self.pool())
            .await?;
            files.sort();
            out.push((sid, files));
        }
        Ok(out)
    }

    /// Delete a call and everything stored about it (streams, errors, stages), in one
    /// transaction. False when it was gone already.
    pub async fn delete_call(&self, call_sid: &str) -> Result<bool> {
        let mut tx = self.write_tx(call_sid).await?;
        for table in ["streams", "call_errors", "jobs"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE call_sid = $1"))
                .bind(call_sid)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM calls WHERE call_sid = $1")
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
             WHERE created_at_ms < $1 OR (created_at_ms = $1 AND call_sid < $2)
             ORDER BY created_at_ms DESC, call_sid DESC LIMIT $3",
        )
        .bind(ts)
        .bind(sid)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CallSummary {
                    call_sid: r.get(0),
                    status: r.try_get(1)?,
                    from: r.get(2),
                    to: r.get(3),
                    created_at_ms: r.get(4),
                    ended_at_ms: r.get(5),
                    recording_status: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub async fn recording_path(&self, call_sid: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT recording_path FROM calls WHERE call_sid = $1")
                .bind(call_sid)
                .fetch_optional(self.pool())
                .await?
                .flatten(),
        )
    }

    pub async fn call_detail(&self, call_sid: &str) -> Result<Option<CallDetail>> {
        let Some(r) = sqlx::query("SELECT * FROM calls WHERE call_sid = $1")
            .bind(call_sid)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let streams = sqlx::query("SELECT * FROM streams WHERE call_sid = $1 ORDER BY idx")
            .bind(call_sid)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|s| {
                Ok(StreamRow {
                    stream_sid: s.get("stream_sid"),
                    index: s.get("idx"),
                    status: s.try_get("status")?,
                    started_at_ms: s.get("started_at_ms"),
                    stopped_at_ms: s.get("stopped_at_ms"),
                    frames: s.get("frames"),
                    duration_ms: s.get("duration_ms"),
                    frames_in: s.get("frames_in"),
                    frames_out: s.get("frames_out"),
                    bad_messages: s.get("bad_messages"),
                    close_reason: s.get("close_reason"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stages: Vec<JobRow> = sqlx::query("SELECT * FROM jobs WHERE call_sid = $1")
            .bind(call_sid)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|j| {
                Ok(JobRow {
                    stage: j.try_get("stage")?,
                    state: j.try_get("state")?,
                    attempts: j.get("attempts"),
                    run_at_ms: j.get("run_at_ms"),
                    started_at_ms: j.get("started_at_ms"),
                    finished_at_ms: j.get("finished_at_ms"),
                    duration_ms: j.get("duration_ms"),
                    last_error: j.get("last_error"),
                })
            })
            .collect::<Result<_>>()?;
        stages.sort_by_key(|j| j.stage as u8);
        let errors = sqlx::query(
            "SELECT at_ms, stage, message FROM call_errors WHERE call_sid = $1 ORDER BY id",
        )
        .bind(call_sid)
        .fetch_all(self.pool())
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
            status: r.try_get("status")?,
            account_sid: r.get("account_sid"),
            from: r.get("from_number"),
            to: r.get("to_number"),
            call_status: r.get("call_status"),
            created_at_ms: r.get("created_at_ms"),
            ended_at_ms: r.get("ended_at_ms"),
            completed_at_ms: r.get("completed_at_ms"),
            recording: RecordingDetail {
                source: r.get("recording_source"),
                status: r.try_get("recording_status")?,
                duration_ms: r.get("recording_duration_ms"),
                twilio_recording_sid: r.get("twilio_recording_sid"),
                available: recording_path.is_some(),
            },
            streams,
            transcription_status: r.try_get("transcription_status")?,
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
            "SELECT recording_path, transcript_json, created_at_ms FROM calls WHERE call_sid = $1",
        )
        .bind(call_sid)
        .fetch_one(self.pool())
        .await?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }
}
