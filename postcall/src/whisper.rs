//! The default transcription engine: Whisper on CTranslate2 (`ct2rs`), in process, with no
//! network. The model is loaded once at startup and shared: inference is CPU-bound and blocking,
//! so each call runs on tokio's blocking pool while the async workers stay free.

use crate::audio::{
    merge_by_time, parse_timestamped, to_segments, transcript_text, Piece, WHISPER_RATE,
};
use crate::planner::Window;
use crate::{
    recording, EngineError, Segment, TranscribeRequest, Transcriber, Transcript, WhisperConfig,
};
use ct2rs::Tokenizer as _;
use media::audio::Pcm;
use media::recording::WavStream;
use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Files CTranslate2 and the tokenizer read from a model folder (the front-end settings are
/// Whisper's fixed ones, so `preprocessor_config.json` is not needed).
const MODEL_FILES: [&str; 3] = ["model.bin", "config.json", "tokenizer.json"];

// Whisper's front end: 16 kHz audio, 25 ms FFT every 10 ms, 3000 frames per 30 s window.
const N_FFT: usize = 400;
const HOP: usize = 160;
const FRAMES: usize = 3000;
const WINDOW_SAMPLES: usize = FRAMES * HOP;

/// The model and what turns audio into its input. `ct2rs::Whisper` is not used as is: it
/// always prompts with a language and task token, which English-only models were never trained
/// on (tiny.en then answers with a bare timestamp), and it normalises the spectrogram frame by
/// frame instead of over the window as Whisper does.
struct Model {
    whisper: ct2rs::sys::Whisper,
    tokenizer: ct2rs::tokenizers::hf::Tokenizer,
    /// Mel filter bank, `n_mels` rows of `N_FFT / 2 + 1` weights.
    filters: Vec<Vec<f64>>,
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
        let load_err = |e: String| {
            EngineError::Config(format!(
                "transcription.whisper.model_dir: cannot load {}: {e}",
                dir.display()
            ))
        };
        let whisper =
            ct2rs::sys::Whisper::new(dir, config).map_err(|e| load_err(format!("{e:#}")))?;
        let tokenizer =
            ct2rs::tokenizers::hf::Tokenizer::new(dir).map_err(|e| load_err(format!("{e:#}")))?;
        let filters = mel_spec::mel::mel(
            f64::from(WHISPER_RATE),
            N_FFT,
            whisper.n_mels(),
            None,
            None,
            false,
            true,
        )
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
        let model = Model {
            whisper,
            tokenizer,
            filters,
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
        self.transcribe_walk(channels, |on_window| recording::walk(stream, on_window))
    }

    /// Transcribe a WAV file's bytes. Blocking: call it from a blocking thread.
    pub fn transcribe_wav(&self, wav: &[u8]) -> Result<Transcript, EngineError> {
        let stream = WavStream::new(Cursor::new(wav)).map_err(recording::bad_audio)?;
        let channels = stream.channels();
        self.transcribe_walk(channels, |on_window| recording::walk(stream, on_window))
    }

    /// Transcribe decoded audio. One channel is the caller; two are caller (left) and agent
    /// (right), each transcribed on its own and merged in time order. Silent channels and
    /// silent windows are skipped: Whisper invents words when given only silence.
    pub fn transcribe_pcm(&self, pcm: &Pcm) -> Result<Transcript, EngineError> {
        self.transcribe_walk(pcm.channels.len(), |on_window| {
            recording::walk_channels(&pcm.channels, pcm.sample_rate, on_window)
        })
    }

    /// Decode every window as the walk hands it out; only the transcript grows.
    fn transcribe_walk(
        &self,
        channels: usize,
        walk: impl FnOnce(
            &mut dyn FnMut(usize, Window) -> Result<(), EngineError>,
        ) -> Result<recording::Walked, EngineError>,
    ) -> Result<Transcript, EngineError> {
        let speakers = recording::speakers(channels)?;
        let mut per_speaker: Vec<Vec<Segment>> = vec![Vec::new(); speakers.len()];
        let walked = walk(&mut |channel, window| {
            let speaker = speakers.get(channel).copied().unwrap_or("caller");
            let segments = self.transcribe_window(window, speaker)?;
            if let Some(out) = per_speaker.get_mut(channel) {
                out.extend(segments);
            }
            Ok(())
        })?;
        tracing::debug!(
            channels,
            duration_secs = walked.duration_secs,
            peak_samples = walked.peak_samples,
            "recording walked"
        );
        let segments = merge_by_time(per_speaker);
        if segments.is_empty() {
            return Err(EngineError::Permanent(format!(
                "no speech recognised in {:.1} s of audio ({} silent or unintelligible)",
                walked.duration_secs,
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

    /// One window of one speaker, with times mapped back to the call.
    fn transcribe_window(
        &self,
        window: Window,
        speaker: &str,
    ) -> Result<Vec<Segment>, EngineError> {
        let rate = f64::from(WHISPER_RATE);
        let options = ct2rs::WhisperOptions {
            beam_size: self.beam_size,
            ..Default::default()
        };
        let mut segments = Vec::new();
        let mut queue = VecDeque::from([window]);
        while let Some(window) = queue.pop_front() {
            let audio = window.audio();
            let started = Instant::now();
            let out = self
                .generate(&audio, &options)
                .map_err(|e| EngineError::Transient(format!("whisper inference failed: {e}")))?;
            let window_secs = audio.len() as f64 / rate;
            tracing::debug!(
                speaker,
                parts = window.packed.parts.len(),
                window_secs,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "whisper window"
            );
            let pieces = parse_timestamped(&out, window_secs);
            // Whisper sometimes stops before the end of a window; what it did not reach is
            // decoded again on its own, as Whisper's own sequential decoding does.
            let heard_until = pieces.last().map_or(0.0, |p| p.end);
            if let Some(rest) = window.rest_after((heard_until * rate) as usize) {
                if !pieces.is_empty() {
                    queue.push_front(rest);
                }
            }
            // Whisper's times are in the packed window; map them back to the call.
            let at = |t: f64| (t * rate).round() as usize;
            let pieces = pieces
                .into_iter()
                .map(|p| {
                    let (s, e) = window.packed.place(at(p.start), at(p.end));
                    Piece {
                        start: s as f64 / rate,
                        end: e as f64 / rate,
                        text: p.text,
                    }
                })
                .collect();
            segments.extend(to_segments(pieces, 0.0, speaker));
        }
        Ok(segments)
    }

    /// One window (at most 30 s of 16 kHz audio) to Whisper's output with timestamp tokens.
    fn generate(&self, audio: &[f32], options: &ct2rs::WhisperOptions) -> Result<String, String> {
        let model = &self.model;
        let n_mels = model.filters.len();
        let mut features = log_mel(audio, &model.filters);
        let view =
            ct2rs::sys::StorageView::new(&[1, n_mels, FRAMES], &mut features, Default::default())
                .map_err(|e| format!("{e:#}"))?;
        let mut prompt = vec!["<|startoftranscript|>".to_string()];
        if model.whisper.is_multilingual() {
            let lang = match &self.language {
                Some(l) => format!("<|{l}|>"),
                None => model
                    .whisper
                    .detect_language(&view)
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
        let result = model
            .whisper
            .generate(&view, &[prompt], options)
            .map_err(|e| format!("{e:#}"))?;
        let tokens = result
            .into_iter()
            .next()
            .and_then(|r| r.sequences.into_iter().next())
            .unwrap_or_default();
        model.tokenizer.decode(tokens).map_err(|e| format!("{e:#}"))
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

/// Whisper's log-mel spectrogram of one window, `[n_mels, FRAMES]` row-major: the audio is
/// zero-padded to 30 s, its power spectrum mapped through the mel filters, `log10`, clamped to
/// 8 below the window's maximum and scaled, as in Whisper's reference front end.
fn log_mel(audio: &[f32], filters: &[Vec<f64>]) -> Vec<f32> {
    let n_mels = filters.len();
    let mut padded = audio[..audio.len().min(WINDOW_SAMPLES)].to_vec();
    padded.resize(WINDOW_SAMPLES + N_FFT, 0.0);
    let mut stft = mel_spec::stft::Spectrogram::new(N_FFT, HOP);
    let mut logs = vec![0f64; n_mels * FRAMES];
    let mut frame = 0;
    for hop in padded.chunks(HOP) {
        if frame == FRAMES {
            break;
        }
        let Some(spectrum) = stft.add(hop) else {
            continue;
        };
        // Power of the non-negative frequencies (the last bin, Nyquist, is left out as in
        // Whisper's `stft[..., :-1]` on the frame axis equivalent).
        let mut power: Vec<f64> = spectrum
            .iter()
            .take(N_FFT / 2)
            .map(|c| c.norm_sqr())
            .collect();
        power.push(0.0);
        for (m, weights) in filters.iter().enumerate() {
            let e: f64 = weights.iter().zip(&power).map(|(w, p)| w * p).sum();
            logs[m * FRAMES + frame] = e.max(1e-10).log10();
        }
        frame += 1;
    }
    let floor = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 8.0;
    logs.iter()
        .map(|&x| ((x.max(floor) + 4.0) / 4.0) as f32)
        .collect()
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
