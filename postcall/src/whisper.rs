//! The default transcription engine: Whisper on CTranslate2 (`ct2rs`), in process, with no
//! network. The model is loaded once at startup and shared: inference is CPU-bound and blocking,
//! so each call runs on tokio's blocking pool while the async workers stay free.

use crate::audio::{
    has_speech, merge_by_time, parse_timestamped, plan_windows, to_segments, transcript_text,
    MAX_WINDOW_SECS, MIN_WINDOW_SECS, WHISPER_RATE,
};
use crate::{EngineError, Segment, TranscribeRequest, Transcriber, Transcript, WhisperConfig};
use media::audio::{decode_wav, resample, Pcm};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Files CTranslate2 and the tokenizer read from a model folder.
const MODEL_FILES: [&str; 4] = [
    "model.bin",
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
];

/// Whisper, loaded. Cloning shares the model.
#[derive(Clone)]
pub struct WhisperEngine {
    model: Arc<ct2rs::Whisper>,
    /// `None`: a multilingual model detects the language per window.
    language: Option<String>,
    beam_size: usize,
    model_name: String,
}

impl WhisperEngine {
    /// Load the model named by the configuration; every problem is a `Config` error naming the
    /// key to fix.
    pub fn load(cfg: &WhisperConfig) -> Result<Self, EngineError> {
        let dir = &cfg.model_dir;
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(EngineError::Config(format!(
                    "transcription.whisper.model_dir: {} has no {file} (a CTranslate2 Whisper \
                     folder is expected; `make setup` prepares the default one)",
                    dir.display()
                )));
            }
        }
        let compute_type = compute_type(&cfg.compute_type)?;
        if cfg.beam_size == 0 {
            return Err(EngineError::Config(
                "transcription.whisper.beam_size: must be at least 1".into(),
            ));
        }
        let config = ct2rs::Config {
            compute_type,
            num_threads_per_replica: cfg.threads,
            ..Default::default()
        };
        let model = ct2rs::Whisper::new(dir, config).map_err(|e| {
            EngineError::Config(format!(
                "transcription.whisper.model_dir: cannot load {}: {e:#}",
                dir.display()
            ))
        })?;
        let language = match (&cfg.language, model.is_multilingual()) {
            (Some(lang), true) => Some(lang.clone()),
            (None, true) => None,
            (Some(lang), false) if lang != "en" => {
                return Err(EngineError::Config(format!(
                    "transcription.whisper.language: {lang:?} needs a multilingual model; {} is \
                     English-only",
                    dir.display()
                )))
            }
            (_, false) => Some("en".to_string()),
        };
        Ok(WhisperEngine {
            model: Arc::new(model),
            language,
            beam_size: cfg.beam_size,
            model_name: model_name(dir),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Transcribe a WAV file's bytes. Blocking: call it from a blocking thread.
    pub fn transcribe_wav(&self, wav: &[u8]) -> Result<Transcript, EngineError> {
        let pcm = decode_wav(wav).map_err(|e| EngineError::Permanent(format!("recording: {e}")))?;
        self.transcribe_pcm(&pcm)
    }

    /// Transcribe decoded audio. One channel is the caller; two are caller (left) and agent
    /// (right), each transcribed on its own and merged in time order. Silent channels and
    /// silent windows are skipped: Whisper invents words when given only silence.
    pub fn transcribe_pcm(&self, pcm: &Pcm) -> Result<Transcript, EngineError> {
        let speakers: &[&str] = match pcm.channels.len() {
            1 => &["caller"],
            2 => &["caller", "agent"],
            n => {
                return Err(EngineError::Permanent(format!(
                    "recording has {n} channels; expected 1 (caller) or 2 (caller, agent)"
                )))
            }
        };
        let mut per_speaker = Vec::new();
        for (channel, speaker) in pcm.channels.iter().zip(speakers) {
            if !has_speech(channel, pcm.sample_rate) {
                continue;
            }
            let at_16k = resample(channel, pcm.sample_rate, WHISPER_RATE);
            per_speaker.push(self.transcribe_channel(&at_16k, speaker)?);
        }
        let segments = merge_by_time(per_speaker);
        if segments.is_empty() {
            return Err(EngineError::Permanent(format!(
                "no speech recognised in {:.1} s of audio ({} silent or unintelligible)",
                pcm.duration_secs(),
                if pcm.channels.len() == 1 {
                    "the channel is"
                } else {
                    "both channels are"
                }
            )));
        }
        Ok(Transcript {
            text: transcript_text(&segments),
            segments,
            engine: "whisper".into(),
            model: self.model_name.clone(),
        })
    }

    /// One speaker's 16 kHz audio, window by window, with times offset to the call.
    fn transcribe_channel(
        &self,
        samples: &[f32],
        speaker: &str,
    ) -> Result<Vec<Segment>, EngineError> {
        let rate = f64::from(WHISPER_RATE);
        let options = ct2rs::WhisperOptions {
            beam_size: self.beam_size,
            ..Default::default()
        };
        let mut segments = Vec::new();
        for window in plan_windows(samples, WHISPER_RATE, MIN_WINDOW_SECS, MAX_WINDOW_SECS) {
            let audio = &samples[window.clone()];
            if !has_speech(audio, WHISPER_RATE) {
                continue;
            }
            let started = Instant::now();
            let out = self
                .model
                .generate(audio, self.language.as_deref(), true, &options)
                .map_err(|e| EngineError::Transient(format!("whisper inference failed: {e:#}")))?;
            let window_secs = audio.len() as f64 / rate;
            tracing::debug!(
                speaker,
                offset_secs = window.start as f64 / rate,
                window_secs,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "whisper window"
            );
            let pieces = out
                .iter()
                .flat_map(|text| parse_timestamped(text, window_secs))
                .collect();
            segments.extend(to_segments(pieces, window.start as f64 / rate, speaker));
        }
        Ok(segments)
    }
}

#[async_trait::async_trait]
impl Transcriber for WhisperEngine {
    async fn transcribe(&self, req: &TranscribeRequest) -> Result<Transcript, EngineError> {
        let wav = tokio::fs::read(&req.recording).await.map_err(|e| {
            EngineError::Permanent(format!(
                "cannot read recording {}: {e}",
                req.recording.display()
            ))
        })?;
        let engine = self.clone();
        let started = Instant::now();
        let transcript = tokio::task::spawn_blocking(move || engine.transcribe_wav(&wav))
            .await
            .map_err(|e| EngineError::Transient(format!("whisper worker stopped: {e}")))??;
        tracing::info!(
            call_sid = %req.call_sid,
            segments = transcript.segments.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "transcribed"
        );
        Ok(transcript)
    }
}

fn compute_type(name: &str) -> Result<ct2rs::ComputeType, EngineError> {
    use ct2rs::ComputeType as C;
    Ok(match name {
        "int8" => C::INT8,
        "int8_float32" => C::INT8_FLOAT32,
        "int16" => C::INT16,
        "float32" => C::FLOAT32,
        "auto" => C::AUTO,
        "default" => C::DEFAULT,
        other => {
            return Err(EngineError::Config(format!(
                "transcription.whisper.compute_type: unknown {other:?} (expected int8, \
                 int8_float32, int16, float32, auto or default)"
            )))
        }
    })
}

fn model_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}
