//! What happens to a call after it ends: turn its recording into a transcript and the transcript
//! into a summary and fields. The host service's pipeline only sees the two traits here; the
//! engines behind them are chosen by configuration.
//!
//! CONTRACT (the host service builds against these names; keep them stable):
//! - `Transcriber` / `Extractor` (async, object-safe via `async_trait`)
//! - `TranscribeRequest`, `Transcript`, `Segment`, `ExtractRequest`, `Extraction`, `EngineError`
//! - `OpenAiConfig`, `TranscriptionConfig`, `ExtractionConfig` (serde, `Default`, unknown keys
//!   refused, `validate` naming the key) and `Engines::from_config(&OpenAiConfig,
//!   &TranscriptionConfig, &ExtractionConfig) -> Result<Engines, EngineError>`
//!
//! Layout: `config` (the `[openai]`, `[transcription]` and `[extraction]` sections and their
//! rules), `audio` (windows, silence, timestamp tokens: pure), `planner` (the same windows
//! found while a channel streams by), `recording` (a call's WAV file: opened, its speakers, which
//! channels hold speech), `windowing` (a recording cut into those windows a block at a time, in
//! bounded memory), `mel` (Whisper's log-mel front end), `decode` (tokens to text
//! and segments, the fallback rules), `whisper` (CTranslate2 engine, feature `whisper`), `openai`
//! (OpenAI-compatible HTTP engines: the shared client, transcription, extraction), `retry` (when and how long to
//! wait), `extract` (deterministic local extraction), `wer` (word error rate, for tests and
//! benchmarks).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub mod audio;
pub mod config;
pub mod decode;
pub mod extract;
pub mod mel;
pub mod openai;
pub mod planner;
pub mod recording;
pub mod retry;
pub mod wer;
#[cfg(feature = "whisper")]
pub mod whisper;
pub mod windowing;

pub use config::{
    ExtractionConfig, ExtractionEngine, Invalid, LocalExtractionConfig, OpenAiConfig,
    OpenAiExtractionConfig, OpenAiTranscriptionConfig, TranscriptionConfig, TranscriptionEngine,
    WhisperConfig,
};

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

// === engines ===

/// The engines a host service runs with. `transcriber` is `None` for engine `none`.
#[derive(Clone)]
pub struct Engines {
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub extractor: Arc<dyn Extractor>,
}

impl Engines {
    /// Build the configured engines once at startup: a bad setting (unknown engine, missing
    /// model, missing API key variable) fails here, naming the key, not on the first call.
    /// `openai` is the client of whichever engine is `openai`.
    pub fn from_config(
        openai: &OpenAiConfig,
        t: &TranscriptionConfig,
        e: &ExtractionConfig,
    ) -> Result<Engines, EngineError> {
        let transcriber: Option<Arc<dyn Transcriber>> = match t.engine {
            TranscriptionEngine::Whisper => Some(whisper_engine(&t.whisper)?),
            TranscriptionEngine::Openai => {
                Some(Arc::new(openai::OpenAiTranscriber::new(openai, &t.openai)?))
            }
            TranscriptionEngine::Off => None,
        };
        let extractor: Arc<dyn Extractor> = match e.engine {
            ExtractionEngine::Local => Arc::new(extract::LocalExtractor::new(&e.local)?),
            ExtractionEngine::Openai => Arc::new(openai::OpenAiExtractor::new(openai, &e.openai)?),
        };
        Ok(Engines {
            transcriber,
            extractor,
        })
    }
}

#[cfg(feature = "whisper")]
fn whisper_engine(cfg: &WhisperConfig) -> Result<Arc<dyn Transcriber>, EngineError> {
    Ok(Arc::new(whisper::WhisperEngine::load(cfg)?))
}

#[cfg(not(feature = "whisper"))]
fn whisper_engine(_cfg: &WhisperConfig) -> Result<Arc<dyn Transcriber>, EngineError> {
    Err(EngineError::Config(
        "transcription.engine: whisper is not built in (cargo feature `whisper` of postcall)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let t: TranscriptionConfig = toml_like(r#"{"engine": "none"}"#);
        assert_eq!(t.whisper, WhisperConfig::default());
        assert_eq!(t.whisper.model_dir, PathBuf::from("models/whisper-tiny.en"));
        let o: OpenAiConfig = toml_like(r#"{"base_url": "http://127.0.0.1:9", "max_retries": 1}"#);
        assert_eq!(o.base_url, "http://127.0.0.1:9");
        assert_eq!(o.max_retries, 1);
        assert_eq!(o.api_key_env, "OPENAI_API_KEY");
        assert_eq!(o.timeout_secs, 300);
        let t: TranscriptionConfig = toml_like(r#"{"openai": {"model": "m"}}"#);
        assert_eq!(t.openai.model, "m");
        for bad in [
            r#"{"engin": "none"}"#,
            r#"{"whisper": {"model": "x"}}"#,
            r#"{"openai": {"base": "x"}}"#,
            // The client's keys live in `[openai]`, once.
            r#"{"openai": {"base_url": "http://127.0.0.1:9"}}"#,
        ] {
            let err = serde_json::from_str::<TranscriptionConfig>(bad).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
        let err =
            serde_json::from_str::<ExtractionConfig>(r#"{"local": {"region": "US"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unknown_engines_are_refused_by_name() {
        let err = serde_json::from_str::<TranscriptionConfig>(r#"{"engine": "wisper"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "unknown variant `wisper`, expected one of `whisper`, `openai`, `none`"
            ),
            "{err}"
        );
        let err = serde_json::from_str::<ExtractionConfig>(r#"{"engine": "gpt"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown variant `gpt`, expected `local` or `openai`"),
            "{err}"
        );
        let t: TranscriptionConfig = toml_like(r#"{"engine": "none"}"#);
        assert_eq!(t.engine, TranscriptionEngine::Off);
        let engines =
            Engines::from_config(&OpenAiConfig::default(), &t, &ExtractionConfig::default())
                .unwrap();
        assert!(engines.transcriber.is_none());
    }
}
