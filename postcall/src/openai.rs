//! The production engines: any server that speaks OpenAI's HTTP API, for transcription
//! (`/v1/audio/transcriptions`) and extraction (`/v1/chat/completions` with a JSON schema).
//! Both share one client that retries 429 and 5xx within bounds, honouring `Retry-After`, and
//! maps failures to transient or permanent errors for the pipeline's own retries.

use crate::audio::{merge_by_time, transcript_text};
use crate::extract::{resolve_timezone, segment_listing};
use crate::retry::{classify, next_delay, retry_after, RetryPolicy, Verdict};
use crate::{
    recording, EngineError, ExtractRequest, Extraction, Extractor, OpenAiExtractionConfig,
    OpenAiTranscriptionConfig, Segment, TranscribeRequest, Transcriber, Transcript,
};
use media::wav::{header_i16, pcm16_le};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;

// === impl Api ===

/// One OpenAI-compatible endpoint with its key and retry rules.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base_url: String,
    key: Option<String>,
    policy: RetryPolicy,
}

impl Api {
    /// `section` names the config table in errors (`transcription.openai`).
    fn new(
        section: &str,
        base_url: &str,
        api_key_env: &str,
        timeout_secs: u64,
        max_retries: u32,
        max_retry_after_secs: u64,
    ) -> Result<Api, EngineError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(EngineError::Config(format!(
                "{section}.base_url: {base_url:?} is not an http(s) URL"
            )));
        }
        if timeout_secs == 0 {
            return Err(EngineError::Config(format!(
                "{section}.timeout_secs: must be at least 1"
            )));
        }
        // An empty variable name means the server needs no key (self-hosted servers).
        let key = if api_key_env.is_empty() {
            None
        } else {
            match std::env::var(api_key_env) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => {
                    return Err(EngineError::Config(format!(
                        "{section}.api_key_env: environment variable {api_key_env} is not set"
                    )))
                }
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout_secs))
            .connect_timeout(Duration::from_secs(timeout_secs.min(10)))
            .build()
            .map_err(|e| EngineError::Config(format!("{section}: http client: {e}")))?;
        Ok(Api {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
            policy: RetryPolicy {
                max_retries,
                max_retry_after: Duration::from_secs(max_retry_after_secs),
            },
        })
    }

    /// POST to `/v1/{path}`; `build` adds the body afresh for every attempt (a multipart form
    /// cannot be replayed, and a streamed upload starts again from its first byte).
    async fn post<F>(&self, path: &str, build: F) -> Result<String, EngineError>
    where
        F: Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, EngineError>,
    {
        let url = format!("{}/v1/{path}", self.base_url);
        let mut retry = 0;
        loop {
            let mut req = self.client.post(&url);
            if let Some(key) = &self.key {
                req = req.bearer_auth(key);
            }
            let (why, wait) = match build(req)?.send().await {
                Err(e) => (format!("POST {url}: {e}"), None),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = |name: &str| {
                        resp.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let wait = retry_after(
                        header("retry-after-ms").as_deref(),
                        header("retry-after").as_deref(),
                        SystemTime::now(),
                    );
                    let body = resp.text().await;
                    match (classify(status), body) {
                        (Verdict::Success, Ok(body)) => return Ok(body),
                        (Verdict::Success, Err(e)) => {
                            (format!("POST {url}: reading the answer: {e}"), None)
                        }
                        (Verdict::Fail, body) => {
                            return Err(EngineError::Permanent(format!(
                                "POST {url} answered {status}: {}",
                                error_message(&body.unwrap_or_default())
                            )))
                        }
                        (Verdict::Retry, body) => (
                            format!(
                                "POST {url} answered {status}: {}",
                                error_message(&body.unwrap_or_default())
                            ),
                            wait,
                        ),
                    }
                }
            };
            match next_delay(&self.policy, retry, wait) {
                Ok(delay) => {
                    tracing::warn!(
                        retry,
                        delay_ms = delay.as_millis() as u64,
                        error = %why,
                        "remote engine busy, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                Err(give_up) => return Err(EngineError::Transient(format!("{why} ({give_up})"))),
            }
        }
    }
}

/// The API's `{"error": {"message": ...}}`, else the start of the body.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    body.chars().take(300).collect()
}

// === impl OpenAiTranscriber ===

pub struct OpenAiTranscriber {
    api: Api,
    model: String,
    language: Option<String>,
}

impl OpenAiTranscriber {
    pub fn new(cfg: &OpenAiTranscriptionConfig) -> Result<Self, EngineError> {
        if cfg.model.is_empty() {
            return Err(EngineError::Config(
                "transcription.openai.model: must not be empty".into(),
            ));
        }
        Ok(OpenAiTranscriber {
            api: Api::new(
                "transcription.openai",
                &cfg.base_url,
                &cfg.api_key_env,
                cfg.timeout_secs,
                cfg.max_retries,
                cfg.max_retry_after_secs,
            )?,
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

/// What is sent as the `file` field, streamed from the recording a block at a time: the memory
/// an upload holds does not depend on the call's length.
enum Upload {
    /// A one-channel recording, as it is.
    File(PathBuf),
    /// One channel of a two-channel recording, as a one-channel 16-bit WAV file.
    Channel {
        path: PathBuf,
        channel: usize,
        sample_rate: u32,
        frames: u64,
    },
}

/// Chunks of a file upload.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Blocks a channel upload reads ahead of the socket.
const UPLOAD_QUEUE: usize = 4;

type Chunk = Result<Vec<u8>, std::io::Error>;

impl Upload {
    /// A fresh body for one attempt.
    fn part(&self) -> Result<reqwest::multipart::Part, EngineError> {
        match self {
            Upload::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    EngineError::Permanent(format!("cannot read recording {}: {e}", path.display()))
                })?;
                let len = file
                    .metadata()
                    .map_err(|e| EngineError::Permanent(format!("recording: {e}")))?
                    .len();
                let body = reqwest::Body::wrap_stream(file_chunks(tokio::fs::File::from_std(file)));
                Ok(reqwest::multipart::Part::stream_with_length(body, len))
            }
            Upload::Channel {
                path,
                channel,
                sample_rate,
                frames,
            } => {
                let header = header_i16(1, *sample_rate, *frames)
                    .map_err(|e| EngineError::Permanent(format!("recording: {e}")))?;
                let len = header.len() as u64 + 2 * frames;
                let chunks = channel_chunks(path.clone(), *channel, *frames, header);
                Ok(reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(chunks),
                    len,
                ))
            }
        }
    }
}

/// A file as a stream of chunks; it ends at the first error.
fn file_chunks(file: tokio::fs::File) -> impl futures_util::Stream<Item = Chunk> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// One channel of a recording as a one-channel WAV file: `header`, then the channel's samples
/// as 16-bit PCM, exactly `frames` of them, read on a blocking thread a block ahead of the
/// socket (silence stands in for frames a file cut short since it was scanned no longer has).
fn channel_chunks(
    path: PathBuf,
    channel: usize,
    frames: u64,
    header: Vec<u8>,
) -> impl futures_util::Stream<Item = Chunk> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(UPLOAD_QUEUE);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(header)).is_err() {
            return;
        }
        let mut stream = match recording::open(&path) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut block = Vec::new();
        let mut left = frames;
        while left > 0 {
            let mut bytes = Vec::new();
            match stream.read_block(recording::BLOCK_FRAMES, &mut block) {
                Ok(0) => {
                    let n = left.min(recording::BLOCK_FRAMES as u64);
                    bytes.resize(2 * n as usize, 0);
                    left -= n;
                }
                Ok(_) => {
                    let samples = block.get(channel).map_or(&[][..], Vec::as_slice);
                    let n = samples
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    pcm16_le(&samples[..n], &mut bytes);
                    left -= n as u64;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
            // The request is gone (answered, failed or cancelled): stop reading.
            if tx.blocking_send(Ok(bytes)).is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
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

// === impl OpenAiExtractor ===

pub struct OpenAiExtractor {
    api: Api,
    model: String,
    tz: jiff::tz::TimeZone,
}

impl OpenAiExtractor {
    pub fn new(cfg: &OpenAiExtractionConfig) -> Result<Self, EngineError> {
        if cfg.model.is_empty() {
            return Err(EngineError::Config(
                "extraction.openai.model: must not be empty".into(),
            ));
        }
        Ok(OpenAiExtractor {
            api: Api::new(
                "extraction.openai",
                &cfg.base_url,
                &cfg.api_key_env,
                cfg.timeout_secs,
                cfg.max_retries,
                cfg.max_retry_after_secs,
            )?,
            model: cfg.model.clone(),
            tz: resolve_timezone(&cfg.timezone, "extraction.openai.timezone")?,
        })
    }

    /// The chat completion request body (public so its shape is tested without a server).
    pub fn request_body(&self, req: &ExtractRequest) -> Value {
        let started = jiff::Timestamp::from_millisecond(req.call_started_at_ms)
            .map(|t| {
                t.to_zoned(self.tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z (%A)")
                    .to_string()
            })
            .unwrap_or_else(|_| "unknown".into());
        json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": format!(
                    "The call started at {started}.\nTranscript segments (index, speaker, \
                     seconds, text):\n{}",
                    segment_listing(&req.transcript.segments)
                )},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "call_fields", "strict": true, "schema": schema()},
            },
        })
    }
}

const SYSTEM_PROMPT: &str = "You extract facts from a phone call transcript for the business \
that took the call. Use only what the transcript says. Phone numbers in E.164. Dates and times \
in ISO 8601 with the UTC offset of the call's start time, relative ones (\"tomorrow at nine\") \
resolved against it. Every item names the index of the segment it came from. The summary is at \
most three sentences.";

/// The answer's JSON schema: every field of the local engine plus intent and sentiment.
pub fn schema() -> Value {
    let item = |extra: Value| {
        let mut props = json!({
            "value": {"type": "string"},
            "text": {"type": "string"},
            "segment": {"type": "integer"},
        });
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let required: Vec<&String> = props
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "summary": {"type": "string"},
            "summary_segments": {"type": "array", "items": {"type": "integer"}},
            "intent": {"type": "string"},
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "phone_numbers": {"type": "array", "items": item(json!({}))},
            "emails": {"type": "array", "items": item(json!({}))},
            "datetimes": {"type": "array", "items": item(json!({}))},
            "callback": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "requested": {"type": "boolean"},
                    "segment": {"type": ["integer", "null"]},
                    "at": {"type": ["string", "null"]},
                },
                "required": ["requested", "segment", "at"],
            },
        },
        "required": ["summary", "summary_segments", "intent", "sentiment", "phone_numbers",
                     "emails", "datetimes", "callback"],
    })
}

/// Check a model's answer against what the schema promised: a model can still break it, and
/// a segment index outside the transcript would send a reader to the wrong line.
pub fn parse_answer(body: &str, segments: usize) -> Result<Extraction, EngineError> {
    let bad = |why: String| EngineError::Transient(format!("extraction answer: {why}"));
    let outer: Value = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    let content = outer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            match outer
                .pointer("/choices/0/message/refusal")
                .and_then(Value::as_str)
            {
                Some(r) => EngineError::Permanent(format!("extraction refused: {r}")),
                None => bad("no choices[0].message.content".into()),
            }
        })?;
    let mut fields: Value = serde_json::from_str(content).map_err(|e| bad(e.to_string()))?;
    let summary = fields
        .get("summary")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no summary".into()))?
        .to_string();
    for key in ["phone_numbers", "emails", "datetimes"] {
        let items = fields
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("no {key} list")))?;
        for item in items {
            check_segment(item.get("segment"), segments).map_err(|e| bad(format!("{key}: {e}")))?;
        }
    }
    let callback = fields
        .get("callback")
        .ok_or_else(|| bad("no callback".into()))?;
    if !callback.get("requested").is_some_and(Value::is_boolean) {
        return Err(bad("callback.requested is not a boolean".into()));
    }
    if let Some(seg) = callback.get("segment").filter(|v| !v.is_null()) {
        check_segment(Some(seg), segments).map_err(|e| bad(format!("callback: {e}")))?;
    }
    if let Some(obj) = fields.as_object_mut() {
        obj.remove("summary");
    }
    Ok(Extraction {
        summary,
        fields,
        engine: "openai".into(),
    })
}

fn check_segment(v: Option<&Value>, segments: usize) -> Result<(), String> {
    match v.and_then(Value::as_u64) {
        Some(i) if (i as usize) < segments => Ok(()),
        Some(i) => Err(format!("segment {i} does not exist ({segments} segments)")),
        None => Err("segment index missing".into()),
    }
}

#[async_trait::async_trait]
impl Extractor for OpenAiExtractor {
    async fn extract(&self, req: &ExtractRequest) -> Result<Extraction, EngineError> {
        let body = self.request_body(req);
        let answer = self
            .api
            .post("chat/completions", |r| Ok(r.json(&body)))
            .await?;
        parse_answer(&answer, req.transcript.segments.len())
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

    fn answer(content: &Value) -> String {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}}]})
            .to_string()
    }

    fn good_fields() -> Value {
        json!({
            "summary": "Caller wants a callback.",
            "summary_segments": [0],
            "intent": "callback",
            "sentiment": "neutral",
            "phone_numbers": [{"value": "+15551234567", "text": "555 123 4567", "segment": 1}],
            "emails": [],
            "datetimes": [],
            "callback": {"requested": true, "segment": 0, "at": null},
        })
    }

    #[test]
    fn answers_are_checked() {
        let e = parse_answer(&answer(&good_fields()), 2).unwrap();
        assert_eq!(e.summary, "Caller wants a callback.");
        assert_eq!(e.engine, "openai");
        assert_eq!(e.fields["intent"], "callback");
        assert!(e.fields.get("summary").is_none());

        let err = parse_answer(&answer(&good_fields()), 1).unwrap_err();
        assert_eq!(
            err,
            EngineError::Transient(
                "extraction answer: phone_numbers: segment 1 does not exist (1 segments)".into()
            )
        );
        let mut f = good_fields();
        f["callback"]["requested"] = json!("yes");
        assert!(parse_answer(&answer(&f), 2).is_err());
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "no"}}]});
        assert_eq!(
            parse_answer(&refusal.to_string(), 2).unwrap_err(),
            EngineError::Permanent("extraction refused: no".into())
        );
        assert!(parse_answer("not json", 2).is_err());
    }

    #[test]
    fn schema_is_strict() {
        let s = schema();
        assert_eq!(s["additionalProperties"], false);
        let props = s["properties"].as_object().unwrap();
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // Strict mode requires every property to be listed as required.
        assert_eq!(props.len(), required.len());
        for k in props.keys() {
            assert!(required.contains(&k.as_str()), "{k}");
        }
        assert_eq!(
            s["properties"]["phone_numbers"]["items"]["required"],
            json!(["segment", "text", "value"])
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg = OpenAiTranscriptionConfig {
            api_key_env: "TWIML_GUARD_TEST_SURELY_UNSET_KEY".into(),
            ..Default::default()
        };
        assert_eq!(
            OpenAiTranscriber::new(&cfg).err().unwrap(),
            EngineError::Config(
                "transcription.openai.api_key_env: environment variable \
                 TWIML_GUARD_TEST_SURELY_UNSET_KEY is not set"
                    .into()
            )
        );
        let cfg = OpenAiExtractionConfig {
            base_url: "ftp://x".into(),
            api_key_env: String::new(),
            ..Default::default()
        };
        assert_eq!(
            OpenAiExtractor::new(&cfg).err().unwrap(),
            EngineError::Config(
                "extraction.openai.base_url: \"ftp://x\" is not an http(s) URL".into()
            )
        );
    }
}
