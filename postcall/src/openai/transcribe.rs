//! Transcription through `POST {base_url}/v1/audio/transcriptions`: a recording scanned once,
//! each speaking channel uploaded as its own voice, the `verbose_json` answers merged by time.

use super::client::Api;
use super::upload::Upload;
use crate::audio::{merge_by_time, transcript_text};
use crate::{
    recording, EngineError, OpenAiConfig, OpenAiTranscriptionConfig, Segment, TranscribeRequest,
    Transcriber, Transcript,
};
use serde::Deserialize;
use std::path::Path;

pub struct OpenAiTranscriber {
    api: Api,
    model: String,
    language: Option<String>,
}

impl OpenAiTranscriber {
    /// The `[openai]` client with `[transcription.openai]`'s model and language.
    pub fn new(
        client: &OpenAiConfig,
        cfg: &OpenAiTranscriptionConfig,
    ) -> Result<Self, EngineError> {
        cfg.validate()?;
        Ok(OpenAiTranscriber {
            api: Api::new(client)?,
            model: cfg.model.clone(),
            language: cfg.language.clone(),
        })
    }

    async fn transcribe_upload(
        &self,
        upload: &Upload,
        speaker: &str,
    ) -> Result<Vec<Segment>, EngineError> {
        let body = self
            .api
            .post("audio/transcriptions", |req| {
                let file = upload
                    .part()?
                    .file_name("recording.wav")
                    .mime_str("audio/wav")
                    .map_err(|e| EngineError::Permanent(format!("upload: {e}")))?;
                let mut form = reqwest::multipart::Form::new()
                    .part("file", file)
                    .text("model", self.model.clone())
                    .text("response_format", "verbose_json")
                    .text("timestamp_granularities[]", "segment");
                if let Some(lang) = &self.language {
                    form = form.text("language", lang.clone());
                }
                Ok(req.multipart(form))
            })
            .await?;
        parse_verbose_json(&body, speaker)
    }
}

#[derive(Deserialize)]
struct VerboseJson {
    text: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Option<Vec<VerboseSegment>>,
}

#[derive(Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
}

/// A `verbose_json` answer as segments; a server that sends only `text` gives one segment.
pub fn parse_verbose_json(body: &str, speaker: &str) -> Result<Vec<Segment>, EngineError> {
    let v: VerboseJson = serde_json::from_str(body).map_err(|e| {
        EngineError::Permanent(format!(
            "transcription answer is not verbose_json ({e}): {}",
            body.chars().take(200).collect::<String>()
        ))
    })?;
    let segment = |start: f64, end: f64, text: &str| Segment {
        speaker: speaker.to_string(),
        start,
        end,
        text: text.trim().to_string(),
    };
    let segments: Vec<Segment> = match v.segments {
        Some(s) if !s.is_empty() => s
            .iter()
            .map(|s| segment(s.start, s.end, &s.text))
            .filter(|s| !s.text.is_empty())
            .collect(),
        _ if !v.text.trim().is_empty() => vec![segment(0.0, v.duration.unwrap_or(0.0), &v.text)],
        _ => Vec::new(),
    };
    Ok(segments)
}

/// A recording's shape, from one pass over it: it is a readable WAV file, who speaks, how long.
struct Scan {
    channels: usize,
    sample_rate: u32,
    frames: u64,
    speech: Vec<bool>,
}

fn scan(path: &Path) -> Result<Scan, EngineError> {
    let mut stream = recording::open(path)?;
    let (channels, sample_rate) = (stream.channels(), stream.sample_rate());
    recording::speakers(channels)?;
    let (speech, frames) = recording::channels_with_speech(&mut stream)?;
    Ok(Scan {
        channels,
        sample_rate,
        frames,
        speech,
    })
}

#[async_trait::async_trait]
impl Transcriber for OpenAiTranscriber {
    async fn transcribe(&self, req: &TranscribeRequest) -> Result<Transcript, EngineError> {
        let path = req.recording.clone();
        let shape = tokio::task::spawn_blocking(move || scan(&path))
            .await
            .map_err(|e| EngineError::Transient(format!("recording scan stopped: {e}")))??;
        // The API hears one voice stream; a two-channel call is sent as two so each segment
        // keeps its speaker.
        let mut per_speaker = Vec::new();
        if shape.channels == 1 {
            let upload = Upload::File(req.recording.clone());
            per_speaker.push(self.transcribe_upload(&upload, "caller").await?);
        } else {
            let speakers = recording::speakers(shape.channels)?;
            for (channel, speaker) in speakers.iter().enumerate() {
                if !shape.speech.get(channel).copied().unwrap_or(false) {
                    continue;
                }
                let upload = Upload::Channel {
                    path: req.recording.clone(),
                    channel,
                    sample_rate: shape.sample_rate,
                    frames: shape.frames,
                };
                per_speaker.push(self.transcribe_upload(&upload, speaker).await?);
            }
        }
        let segments = merge_by_time(per_speaker);
        if segments.is_empty() {
            return Err(EngineError::Permanent(format!(
                "no speech recognised in {:.1} s of audio",
                shape.frames as f64 / f64::from(shape.sample_rate)
            )));
        }
        Ok(Transcript {
            text: transcript_text(&segments),
            segments,
            engine: "openai".into(),
            model: self.model.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_json_with_and_without_segments() {
        let body = r#"{"task":"transcribe","language":"english","duration":4.2,"text":"Hi. Bye.",
            "segments":[{"id":0,"start":0.0,"end":1.5,"text":" Hi."},{"id":1,"start":1.5,"end":4.2,"text":" Bye."}]}"#;
        let s = parse_verbose_json(body, "agent").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            Segment {
                speaker: "agent".into(),
                start: 1.5,
                end: 4.2,
                text: "Bye.".into()
            }
        );
        let s = parse_verbose_json(r#"{"text":" Only text ","duration":2.0}"#, "caller").unwrap();
        assert_eq!(s[0].text, "Only text");
        assert_eq!(s[0].end, 2.0);
        assert!(parse_verbose_json(r#"{"text":""}"#, "caller")
            .unwrap()
            .is_empty());
        assert!(matches!(
            parse_verbose_json("Hello there", "caller"),
            Err(EngineError::Permanent(_))
        ));
    }
}
