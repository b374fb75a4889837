//! The states a call, a stream, a job and a transcription can be in: Rust enums stored in SQLite
//! as the same text the columns always held (so existing databases read unchanged) and
//! serialized to the API's JSON as that text too.

use serde::Serialize;

/// `calls.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Ended,
    Processing,
    Completed,
    Failed,
}

/// `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

/// `streams.status`: `streaming` until the recording file is open, then `recording`, and how it
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum StreamStatus {
    Streaming,
    Recording,
    Saved,
    /// Left open by a process that died; the header was fixed from the bytes on disk.
    Repaired,
    Failed,
    NotRecorded,
}

/// `calls.transcription_status`. Skipping is a state of its own; its text is the one the API
/// has always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
pub enum TranscriptionStatus {
    #[serde(rename = "done")]
    #[sqlx(rename = "done")]
    Done,
    /// The transcription engine is `none`: nothing to transcribe with, so nothing to extract.
    #[serde(rename = "skipped: transcription engine is none")]
    #[sqlx(rename = "skipped: transcription engine is none")]
    SkippedEngineNone,
}
