//! What the HTTP API returns about calls, as JSON: read models built by the call repository,
//! kept apart from the queries so the API's shape is visible in one place.

use super::status::{CallStatus, JobState, RecordingStatus, StreamStatus, TranscriptionStatus};
use super::Stage;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub call_sid: String,
    pub status: CallStatus,
    pub from: Option<String>,
    pub to: Option<String>,
    pub created_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub recording_status: RecordingStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub stream_sid: String,
    pub index: i64,
    pub status: StreamStatus,
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
    pub stage: Stage,
    pub state: JobState,
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
    pub status: CallStatus,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub call_status: Option<String>,
    pub created_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub recording: RecordingDetail,
    pub streams: Vec<StreamRow>,
    pub transcription_status: Option<TranscriptionStatus>,
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
    pub status: RecordingStatus,
    pub duration_ms: Option<i64>,
    pub twilio_recording_sid: Option<String>,
    /// Whether `recording.wav` can be fetched.
    pub available: bool,
}
