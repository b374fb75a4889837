//! The default transcription engine: Whisper on CTranslate2 (`ct2rs`), in process, with no
//! network. The model is loaded once at startup and shared: inference is CPU-bound and blocking,
//! so each call runs on tokio's blocking pool while the async workers stay free.

use crate::audio::{merge_by_time, to_segments, transcript_text, Piece, WHISPER_RATE};
use crate::decode::{self, Judged};
use crate::mel::{LogMel, FRAMES};
use crate::planner::Window;
use crate::{
    recording, windowing, EngineError, Segment, TranscribeRequest, Transcriber, Transcript,
    WhisperConfig,
};
use media::wav::{Pcm, WavStream};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Files CTranslate2 reads from a model folder besides its vocabulary (`vocabulary.txt` or
/// `vocabulary.json`). The front-end settings are Whisper's fixed ones and tokens come back as
/// strings, so neither `preprocessor_config.json` nor `tokenizer.json` is needed.
const MODEL_FILES: [&str; 2] = ["model.bin", "config.json"];

/// Tokens faster-whisper suppresses on top of the model's own list (`config.json`'s
/// `suppress_ids`, CTranslate2's `-1`): the task and prompt markers and no-speech.
const SUPPRESSED_SPECIALS: [&str; 7] = [
    "<|transcribe|>",
    "<|translate|>",
    "<|startoftranscript|>",
    "<|startofprev|>",
    "<|startoflm|>",
    "<|nocaptions|>",
    "<|nospeech|>",
];

/// Sampling at temperatures above 0 is seeded once, so a transcription repeats exactly.
const RANDOM_SEED: u32 = 0;

/// The model and what turns audio into its input. `ct2rs::Whisper` is not used as is: it
/// always prompts with a language and task token, which English-only models were never trained
/// on (tiny.en then answers with a bare timestamp), and it has none of faster-whisper's
/// decoding (previous text as prompt, temperature fallback, no-speech skip).
struct Model {
    whisper: ct2rs::sys::Whisper,
    mel: LogMel,
    /// `suppress_tokens` for every decode: `-1` (the model's list) and `SUPPRESSED_SPECIALS`.
    suppress: Vec<i32>,
}

/// Whisper, loaded. Cloning shares the model.
#[derive(Clone)]
pub struct WhisperEngine {
    model: Arc<Model>,
    /// `None`: a multilingual model detects the language per window.
    language: Option<String>,
    beam_size: usize,
    model_name: String,
}

/// What one window's decode gave, after the temperature fallback.
struct Decoded {
    tokens: Vec<String>,
    temperature: f32,
    judged: Judged,
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
        cfg.validate()?;
        let config = ct2rs::Config {
            compute_type,
            num_threads_per_replica: cfg.threads,
            ..Default::default()
        };
        let load_err = |e: String| {
            EngineError::Config(format!(
                "transcription.whisper.model_dir: cannot load {}: {e}",
                dir.display()
            ))
        };
        let whisper =
            ct2rs::sys::Whisper::new(dir, config).map_err(|e| load_err(format!("{e:#}")))?;
        let vocabulary = vocabulary(dir).map_err(load_err)?;
        let mut suppress = vec![-1];
        suppress.extend(
            SUPPRESSED_SPECIALS
                .iter()
                .filter_map(|t| vocabulary.iter().position(|v| v == t))
                .filter_map(|id| i32::try_from(id).ok()),
        );
        ct2rs::set_random_seed(RANDOM_SEED);
        let model = Model {
            mel: LogMel::new(whisper.n_mels()),
            whisper,
            suppress,
        };
        let language = match (&cfg.language, model.whisper.is_multilingual()) {
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

    /// Transcribe a WAV file, reading it a block at a time. Blocking: call it from a blocking
    /// thread.
    pub fn transcribe_file(&self, path: &Path) -> Result<Transcript, EngineError> {
        let stream = recording::open(path)?;
        let channels = stream.channels();
        self.transcribe_windows(channels, |on_window| {
            windowing::window_stream(stream, on_window)
        })
    }

    /// Transcribe a WAV file's bytes. Blocking: call it from a blocking thread.
    pub fn transcribe_wav(&self, wav: &[u8]) -> Result<Transcript, EngineError> {
        let stream = WavStream::new(Cursor::new(wav)).map_err(recording::bad_audio)?;
        let channels = stream.channels();
        self.transcribe_windows(channels, |on_window| {
            windowing::window_stream(stream, on_window)
        })
    }

    /// Transcribe decoded audio. One channel is the caller; two are caller (left) and agent
    /// (right), each transcribed on its own and merged in time order. Silent channels and
    /// silent windows are skipped: Whisper invents words when given only silence.
    pub fn transcribe_pcm(&self, pcm: &Pcm) -> Result<Transcript, EngineError> {
        self.transcribe_windows(pcm.channels.len(), |on_window| {
            windowing::window_channels(&pcm.channels, pcm.sample_rate, on_window)
        })
    }

    /// Decode every window as windowing hands it out; only the transcript grows.
    fn transcribe_windows(
        &self,
        channels: usize,
        windows: impl FnOnce(
            &mut dyn FnMut(usize, Window) -> Result<(), EngineError>,
        ) -> Result<windowing::Windowed, EngineError>,
    ) -> Result<Transcript, EngineError> {
        let speakers = recording::speakers(channels)?;
        let mut per_speaker: Vec<Vec<Segment>> = vec![Vec::new(); speakers.len()];
        // Each speaker's text so far, the prompt for its next window (as faster-whisper's
        // `condition_on_previous_text`).
        let mut history: Vec<Vec<String>> = vec![Vec::new(); speakers.len()];
        let windowed = windows(&mut |channel, window| {
            let speaker = speakers.get(channel).copied().unwrap_or("caller");
            let mut none = Vec::new();
            let prev = history.get_mut(channel).unwrap_or(&mut none);
            let segments = self.transcribe_window(window, speaker, prev)?;
            if let Some(out) = per_speaker.get_mut(channel) {
                out.extend(segments);
            }
            Ok(())
        })?;
        tracing::debug!(
            channels,
            duration_secs = windowed.duration_secs,
            peak_samples = windowed.peak_samples,
            "recording windowed"
        );
        let segments = merge_by_time(per_speaker);
        if segments.is_empty() {
            return Err(EngineError::Permanent(format!(
                "no speech recognised in {:.1} s of audio ({} silent or unintelligible)",
                windowed.duration_secs,
                if channels == 1 {
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

    /// One window of one speaker, with times mapped back to the call. `history` is the
    /// speaker's text so far (tokens); what this window adds to it is appended.
    fn transcribe_window(
        &self,
        window: Window,
        speaker: &str,
        history: &mut Vec<String>,
    ) -> Result<Vec<Segment>, EngineError> {
        let rate = f64::from(WHISPER_RATE);
        let at = |t: f64| (t * rate).round() as usize;
        let mut pieces = Vec::new();
        let mut next = Some(window);
        while let Some(window) = next.take() {
            let audio = window.audio();
            let window_secs = audio.len() as f64 / rate;
            let started = Instant::now();
            let decoded = self
                .decode(&audio, history)
                .map_err(|e| EngineError::Transient(format!("whisper inference failed: {e}")))?;
            tracing::debug!(
                speaker,
                parts = window.packed.parts.len(),
                window_secs,
                temperature = decoded.temperature,
                avg_logprob = decoded.judged.avg_logprob,
                no_speech_prob = decoded.judged.no_speech_prob,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "whisper window"
            );
            if decoded.judged.is_silence() {
                continue;
            }
            let split = decode::split(&decoded.tokens, window_secs);
            // Whisper stopped in the middle of a sentence: the rest is decoded again from the
            // last complete one, as faster-whisper's sequential decoding does.
            if let Some(t) = split.resume_at {
                next = window.from_time(at(t));
            }
            for span in split.spans {
                let text = decode::text(&span.tokens);
                if span.start >= span.end || text.trim().is_empty() {
                    continue;
                }
                history.extend(span.tokens);
                // Whisper's times are in the packed window; map them back to the call.
                let (s, e) = window
                    .packed
                    .place(at(span.start), at(span.end.min(window_secs)));
                pieces.push(Piece {
                    start: s as f64 / rate,
                    end: e as f64 / rate,
                    text: text.trim().to_string(),
                });
            }
            if decoded.temperature > decode::PROMPT_RESET_ON_TEMPERATURE {
                history.clear();
            }
        }
        Ok(to_segments(pieces, 0.0, speaker))
    }

    /// One window (at most 30 s of 16 kHz audio): encoded once, then decoded at rising
    /// temperatures until the output neither loops nor is unsure (faster-whisper's
    /// `generate_with_fallback`).
    fn decode(&self, audio: &[f32], history: &[String]) -> Result<Decoded, String> {
        let model = &self.model;
        let n_mels = model.mel.n_mels();
        let mut features = model.mel.features(audio);
        let view =
            ct2rs::sys::StorageView::new(&[1, n_mels, FRAMES], &mut features, Default::default())
                .map_err(|e| format!("{e:#}"))?;
        let encoded = model
            .whisper
            .encode(&view, false)
            .map_err(|e| format!("{e:#}"))?;
        let mut prompt = Vec::new();
        if !history.is_empty() {
            prompt.push("<|startofprev|>".to_string());
            let keep = decode::MAX_LENGTH / 2 - 1;
            prompt.extend_from_slice(&history[history.len().saturating_sub(keep)..]);
        }
        prompt.push("<|startoftranscript|>".to_string());
        if model.whisper.is_multilingual() {
            let lang = match &self.language {
                Some(l) => format!("<|{l}|>"),
                None => model
                    .whisper
                    .detect_language(&encoded)
                    .map_err(|e| format!("{e:#}"))?
                    .into_iter()
                    .next()
                    .and_then(|r| r.into_iter().next())
                    .map(|d| d.language)
                    .unwrap_or_else(|| "<|en|>".into()),
            };
            prompt.push(lang);
            prompt.push("<|transcribe|>".into());
        }
        let mut tried: Vec<Decoded> = Vec::new();
        for temperature in decode::TEMPERATURES {
            let sampling = temperature > 0.0;
            let options = ct2rs::sys::WhisperOptions {
                beam_size: if sampling { 1 } else { self.beam_size },
                num_hypotheses: if sampling { decode::BEST_OF } else { 1 },
                sampling_topk: if sampling { 0 } else { 1 },
                sampling_temperature: if sampling { temperature } else { 1.0 },
                max_length: decode::MAX_LENGTH,
                return_scores: true,
                return_no_speech_prob: true,
                suppress_tokens: model.suppress.clone(),
                ..Default::default()
            };
            let result = model
                .whisper
                .generate(&encoded, std::slice::from_ref(&prompt), &options)
                .map_err(|e| format!("{e:#}"))?
                .into_iter()
                .next()
                .ok_or("no result")?;
            let score = result.scores.first().copied().unwrap_or(f32::NEG_INFINITY);
            let tokens = result.sequences.into_iter().next().unwrap_or_default();
            let decoded = Decoded {
                judged: Judged {
                    avg_logprob: decode::avg_logprob(score, tokens.len()),
                    compression_ratio: decode::compression_ratio(decode::text(&tokens).trim()),
                    no_speech_prob: f64::from(result.no_speech_prob),
                },
                tokens,
                temperature,
            };
            if !decoded.judged.needs_fallback() {
                return Ok(decoded);
            }
            tried.push(decoded);
        }
        // Every temperature failed: the surest decode that does not loop, else the surest,
        // reported at the last temperature (so the prompt is reset after it).
        let not_looping = tried
            .iter()
            .any(|d| d.judged.compression_ratio <= decode::COMPRESSION_RATIO_THRESHOLD);
        let mut best = tried
            .into_iter()
            .filter(|d| {
                !not_looping || d.judged.compression_ratio <= decode::COMPRESSION_RATIO_THRESHOLD
            })
            .max_by(|a, b| a.judged.avg_logprob.total_cmp(&b.judged.avg_logprob))
            .ok_or("no decode")?;
        best.temperature = decode::TEMPERATURES.last().copied().unwrap_or(1.0);
        Ok(best)
    }
}

#[async_trait::async_trait]
impl Transcriber for WhisperEngine {
    async fn transcribe(&self, req: &TranscribeRequest) -> Result<Transcript, EngineError> {
        let engine = self.clone();
        let path = req.recording.clone();
        let started = Instant::now();
        let transcript = tokio::task::spawn_blocking(move || engine.transcribe_file(&path))
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

/// The model's vocabulary, one token per id: `vocabulary.json` (a JSON list) or
/// `vocabulary.txt` (one per line), as CTranslate2 reads it.
fn vocabulary(dir: &Path) -> Result<Vec<String>, String> {
    let json = dir.join("vocabulary.json");
    if json.is_file() {
        let bytes = std::fs::read(&json).map_err(|e| format!("{}: {e}", json.display()))?;
        return serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", json.display()));
    }
    let txt = dir.join("vocabulary.txt");
    std::fs::read_to_string(&txt)
        .map(|s| s.lines().map(str::to_string).collect())
        .map_err(|e| format!("no vocabulary.json, and {}: {e}", txt.display()))
}
