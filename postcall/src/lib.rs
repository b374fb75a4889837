//! What happens to a call after it ends: turn its recording into a transcript and the transcript
//! into a summary and fields. The host service's pipeline only sees the two traits here; the
//! engines behind them are chosen by configuration.
//!
//! CONTRACT (the host service builds against these names; keep them stable):
//! - `Transcriber` / `Extractor` (async, object-safe via `async_trait`)
//! - `TranscribeRequest`, `Transcript`, `Segment`, `ExtractRequest`, `Extraction`, `EngineError`
//! - `TranscriptionConfig`, `ExtractionConfig` (serde, `Default`, unknown keys refused) and
//!   `Engines::from_config(&TranscriptionConfig, &ExtractionConfig) -> Result<Engines, EngineError>`
//!
//! Layout: `audio` (windows, silence, timestamp tokens: pure), `planner` (the same windows
//! found while a channel streams by), `recording` (a call's WAV file: opened, its speakers, which
//! channels hold speech), `windowing` (a recording cut into those windows a block at a time, in
//! bounded memory), `mel` (Whisper's log-mel front end), `decode` (tokens to text
//! and segments, the fallback rules), `whisper` (CTranslate2 engine, feature `whisper`), `openai` (OpenAI-compatible HTTP engines), `retry` (when and how long to
//! wait), `extract` (deterministic local extraction), `wer` (word error rate, for tests and
//! benchmarks).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub mod audio;
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

// === configuration ===

/// `transcription.engine`: a closed set, so a misspelt engine is refused where the config is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptionEngine {
    /// Whisper on CTranslate2, in process (cargo feature `whisper`).
    #[default]
    Whisper,
    /// An OpenAI-compatible transcription API.
    Openai,
    /// No transcriber: the pipeline skips the stage and records that it did.
    #[serde(rename = "none")]
    Off,
}

/// `extraction.engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractionEngine {
    /// The deterministic extractor, no network.
    #[default]
    Local,
    /// An OpenAI-compatible chat API with a JSON schema.
    Openai,
}

/// `[transcription]`: which engine turns recordings into text, and its settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionConfig {
    pub engine: TranscriptionEngine,
    pub whisper: WhisperConfig,
    pub openai: OpenAiTranscriptionConfig,
}

/// `[transcription.whisper]`: Whisper on CTranslate2, in process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// A CTranslate2 Whisper folder (`model.bin`, `config.json`, `vocabulary.txt` or
    /// `vocabulary.json`).
    pub model_dir: PathBuf,
    /// Spoken language (`en`, `he`, ...). English-only models always use `en`; multilingual
    /// models detect the language when this is unset.
    pub language: Option<String>,
    /// `int8` (default: fastest measured on CPU), `int8_float32`, `int16`, `float32`, `auto`.
    pub compute_type: String,
    /// Threads per inference; 0 lets CTranslate2 decide.
    pub threads: usize,
    /// Beam width; 1 is greedy decoding.
    pub beam_size: usize,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            model_dir: PathBuf::from("models/whisper-tiny.en"),
            language: None,
            compute_type: "int8".into(),
            threads: 0,
            beam_size: 5,
        }
    }
}

/// `[transcription.openai]`: `POST {base_url}/v1/audio/transcriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTranscriptionConfig {
    /// Scheme, host and optional path prefix; `/v1/...` is appended.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    pub model: String,
    pub timeout_secs: u64,
    /// Retries after the first attempt, on 429, 5xx and network errors.
    pub max_retries: u32,
    /// Longest wait honoured from a `Retry-After` header; a longer demand ends the attempt as
    /// transient, so the pipeline retries later instead of holding a worker.
    pub max_retry_after_secs: u64,
    pub language: Option<String>,
}

impl Default for OpenAiTranscriptionConfig {
    fn default() -> Self {
        OpenAiTranscriptionConfig {
            base_url: "https://api.openai.com".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            model: "whisper-1".into(),
            timeout_secs: 300,
            max_retries: 3,
            max_retry_after_secs: 30,
            language: None,
        }
    }
}

/// `[extraction]`: which engine turns a transcript into a summary and fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionConfig {
    pub engine: ExtractionEngine,
    pub local: LocalExtractionConfig,
    pub openai: OpenAiExtractionConfig,
}

/// `[extraction.local]`: the deterministic extractor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalExtractionConfig {
    /// ISO 3166 region for numbers said without a country code (`US`, `GB`, `IL`, ...).
    pub default_region: String,
    /// Where callers live, for "tomorrow at nine": `UTC`, a fixed offset (`+02:00`) or an IANA
    /// zone (`America/New_York`, read from the system time zone database).
    pub timezone: String,
    /// Sentences in the extractive summary.
    pub summary_sentences: usize,
}

impl Default for LocalExtractionConfig {
    fn default() -> Self {
        LocalExtractionConfig {
            default_region: "US".into(),
            timezone: "UTC".into(),
            summary_sentences: 3,
        }
    }
}

/// `[extraction.openai]`: chat completions with a JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiExtractionConfig {
    /// Scheme, host and optional path prefix; `/v1/...` is appended.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    pub model: String,
    pub timeout_secs: u64,
    /// Retries after the first attempt, on 429, 5xx and network errors.
    pub max_retries: u32,
    /// Longest wait honoured from a `Retry-After` header; a longer demand ends the attempt as
    /// transient, so the pipeline retries later instead of holding a worker.
    pub max_retry_after_secs: u64,
    /// As for the local engine: relative dates resolve in this zone.
    pub timezone: String,
}

impl Default for OpenAiExtractionConfig {
    fn default() -> Self {
        OpenAiExtractionConfig {
            base_url: "https://api.openai.com".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            model: "gpt-4o-mini".into(),
            timeout_secs: 120,
            max_retries: 3,
            max_retry_after_secs: 30,
            timezone: "UTC".into(),
        }
    }
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
    pub fn from_config(
        t: &TranscriptionConfig,
        e: &ExtractionConfig,
    ) -> Result<Engines, EngineError> {
        let transcriber: Option<Arc<dyn Transcriber>> = match t.engine {
            TranscriptionEngine::Whisper => Some(whisper_engine(&t.whisper)?),
            TranscriptionEngine::Openai => {
                Some(Arc::new(openai::OpenAiTranscriber::new(&t.openai)?))
            }
            TranscriptionEngine::Off => None,
        };
        let extractor: Arc<dyn Extractor> = match e.engine {
            ExtractionEngine::Local => Arc::new(extract::LocalExtractor::new(&e.local)?),
            ExtractionEngine::Openai => Arc::new(openai::OpenAiExtractor::new(&e.openai)?),
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
        let o: OpenAiTranscriptionConfig =
            toml_like(r#"{"base_url": "http://127.0.0.1:9", "model": "m", "max_retries": 1}"#);
        assert_eq!(o.base_url, "http://127.0.0.1:9");
        assert_eq!(o.max_retries, 1);
        assert_eq!(o.api_key_env, "OPENAI_API_KEY");
        for bad in [
            r#"{"engin": "none"}"#,
            r#"{"whisper": {"model": "x"}}"#,
            r#"{"openai": {"base": "x"}}"#,
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
        let engines = Engines::from_config(&t, &ExtractionConfig::default()).unwrap();
        assert!(engines.transcriber.is_none());
    }
}
