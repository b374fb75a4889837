//! What happens to a call after it ends: turn its recording into a transcript and the transcript
//! into a summary and fields. The host service's pipeline only sees the two traits here; the
//! engines behind them are chosen by configuration.
//!
//! CONTRACT (the host service builds against these names; keep them stable):
//! - `Transcriber` / `Extractor` (async, object-safe via `async_trait`)
//! - `TranscribeRequest`, `Transcript`, `Segment`, `ExtractRequest`, `Extraction`, `EngineError`
//! - `TranscriptionConfig`, `ExtractionConfig` (serde, `Default`, unknown keys refused) and
//!   `Engines::from_config(&TranscriptionConfig, &ExtractionConfig) -> Result<Engines, EngineError>`

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Transcribe one call's recording.
#[derive(Debug, Clone)]
pub struct TranscribeRequest {
    pub call_sid: String,
    /// A WAV file, 8 kHz or more, one or two channels. With two: left is the caller, right is
    /// the agent (what the service sent).
    pub recording: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// `caller` or `agent` (`caller` for mono recordings).
    pub speaker: String,
    /// Seconds from the start of the recording.
    pub start: f64,
    pub end: f64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub engine: String,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct ExtractRequest {
    pub call_sid: String,
    pub transcript: Transcript,
    /// When the call started, Unix milliseconds (UTC): relative dates resolve against it.
    pub call_started_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub summary: String,
    /// Engine-specific but stable JSON object; every field names the segment it came from.
    pub fields: serde_json::Value,
    pub engine: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Worth retrying later (timeouts, 429, 5xx, a busy engine).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying will not help (bad audio, bad config, 4xx).
    #[error("permanent: {0}")]
    Permanent(String),
    #[error("configuration: {0}")]
    Config(String),
}

#[async_trait::async_trait]
pub trait Transcriber: Send + Sync {
    async fn transcribe(&self, req: &TranscribeRequest) -> Result<Transcript, EngineError>;
}

#[async_trait::async_trait]
pub trait Extractor: Send + Sync {
    async fn extract(&self, req: &ExtractRequest) -> Result<Extraction, EngineError>;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionConfig {
    /// `whisper` (default), `openai` or `none`.
    pub engine: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionConfig {
    /// `local` (default) or `openai`.
    pub engine: Option<String>,
}

/// The engines a host service runs with. `transcriber` is `None` for engine `none`.
#[derive(Clone)]
pub struct Engines {
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub extractor: Arc<dyn Extractor>,
}

impl Engines {
    pub fn from_config(
        _t: &TranscriptionConfig,
        _e: &ExtractionConfig,
    ) -> Result<Engines, EngineError> {
        Err(EngineError::Config("engines not built yet".into()))
    }
}
