//! The engines' configuration: `[openai]` (the one client every OpenAI-compatible engine
//! shares), `[transcription]` and `[extraction]` (which engine, and each engine's own keys, such
//! as its `model`). Types refuse unknown keys; each section's `validate` checks what types
//! cannot say, naming the key, before anything is built.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A key whose value breaks a rule, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// The dotted key, section included (`openai.base_url`).
    pub key: &'static str,
    pub message: String,
}

impl From<Invalid> for crate::EngineError {
    fn from(e: Invalid) -> Self {
        crate::EngineError::Config(e.to_string())
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> Result<(), Invalid> {
    Err(Invalid {
        key,
        message: message.into(),
    })
}

fn at_least_one(key: &'static str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        return invalid(key, "must be at least 1");
    }
    Ok(())
}

fn not_empty(key: &'static str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return invalid(key, "must not be empty");
    }
    Ok(())
}

/// `[openai]`: the client of every engine that speaks OpenAI's HTTP API (`transcription.engine`
/// or `extraction.engine` = `openai`): where, with which key, how long and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Scheme, host and optional path prefix; `/v1/...` is appended.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key itself); empty: no
    /// key is sent (self-hosted servers).
    pub api_key_env: String,
    /// One request, whole (connect: at most 10 s of it).
    pub timeout_secs: u64,
    /// Retries after the first attempt, on 429, 5xx and network errors.
    pub max_retries: u32,
    /// Longest wait honoured from a `Retry-After` header; a longer demand ends the attempt as
    /// transient, so the pipeline retries later instead of holding a worker.
    pub max_retry_after_secs: u64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_secs: 300,
            max_retries: 3,
            max_retry_after_secs: 30,
        }
    }
}

impl OpenAiConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = &self.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return invalid("openai.base_url", format!("{url:?} is not an http(s) URL"));
        }
        at_least_one("openai.timeout_secs", self.timeout_secs)
    }
}

/// `transcription.engine`: a closed set, so a misspelt engine is refused where the config is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptionEngine {
    /// Whisper on CTranslate2, in process (cargo feature `whisper`).
    #[default]
    Whisper,
    /// An OpenAI-compatible transcription API (`[openai]`).
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
    /// An OpenAI-compatible chat API with a JSON schema (`[openai]`).
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

impl TranscriptionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.whisper.validate()?;
        self.openai.validate()
    }
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

impl WhisperConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one("transcription.whisper.beam_size", self.beam_size as u64)
    }
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

/// `[transcription.openai]`: `POST {openai.base_url}/v1/audio/transcriptions` with this model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTranscriptionConfig {
    pub model: String,
    /// Spoken language, sent as the request's `language`; unset: the server detects it.
    pub language: Option<String>,
}

impl OpenAiTranscriptionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        not_empty("transcription.openai.model", &self.model)
    }
}

impl Default for OpenAiTranscriptionConfig {
    fn default() -> Self {
        OpenAiTranscriptionConfig {
            model: "whisper-1".into(),
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

impl ExtractionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.local.validate()?;
        self.openai.validate()
    }
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

impl LocalExtractionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one(
            "extraction.local.summary_sentences",
            self.summary_sentences as u64,
        )
    }
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

/// `[extraction.openai]`: chat completions with a JSON schema, with this model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiExtractionConfig {
    pub model: String,
    /// As for the local engine: relative dates resolve in this zone.
    pub timezone: String,
}

impl OpenAiExtractionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        not_empty("extraction.openai.model", &self.model)
    }
}

impl Default for OpenAiExtractionConfig {
    fn default() -> Self {
        OpenAiExtractionConfig {
            model: "gpt-4o-mini".into(),
            timezone: "UTC".into(),
        }
    }
}
