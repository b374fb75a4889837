//! Deterministic stand-ins for the speech and extraction engines, compiled only with the
//! `test-engines` feature so the process-level tests can drive the real binary through every
//! stage: each call is logged to a file (to count runs across restarts), can be slowed down (to
//! kill the process mid-stage) and can fail its first attempts (to exercise retries).

use postcall::{
    EngineError, Engines, ExtractRequest, Extraction, Extractor, Segment, TranscribeRequest,
    Transcriber, Transcript,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestEnginesConfig {
    /// Each engine call takes this long.
    pub delay_ms: u64,
    /// Append one line per engine call (`transcribe CA...` / `extract CA...`).
    pub log: Option<PathBuf>,
    /// The first this many calls of each engine fail with a transient error.
    pub fail_first: u32,
}

struct Shared {
    config: TestEnginesConfig,
}

impl Shared {
    async fn enter(
        &self,
        what: &str,
        call_sid: &str,
        calls: &AtomicU32,
    ) -> Result<(), EngineError> {
        if let Some(log) = &self.config.log {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| EngineError::Permanent(e.to_string()))?;
            writeln!(f, "{what} {call_sid}").map_err(|e| EngineError::Permanent(e.to_string()))?;
            f.sync_all()
                .map_err(|e| EngineError::Permanent(e.to_string()))?;
        }
        tokio::time::sleep(Duration::from_millis(self.config.delay_ms)).await;
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < self.config.fail_first {
            return Err(EngineError::Transient(format!(
                "{what} failure {} of {}",
                n + 1,
                self.config.fail_first
            )));
        }
        Ok(())
    }
}

struct TestTranscriber(Arc<Shared>, AtomicU32);
struct TestExtractor(Arc<Shared>, AtomicU32);

#[async_trait::async_trait]
impl Transcriber for TestTranscriber {
    async fn transcribe(&self, req: &TranscribeRequest) -> Result<Transcript, EngineError> {
        self.0.enter("transcribe", &req.call_sid, &self.1).await?;
        let bytes =
            std::fs::read(&req.recording).map_err(|e| EngineError::Permanent(e.to_string()))?;
        let pcm = media::wav::decode(&bytes).map_err(|e| EngineError::Permanent(e.to_string()))?;
        let speaking = |ch: usize| {
            pcm.channels
                .get(ch)
                .map(|c| c.iter().filter(|s| s.abs() > 0.0).count())
                .unwrap_or(0)
        };
        let text = format!(
            "{} frames, caller {} non-silent, agent {} non-silent",
            pcm.frames(),
            speaking(0),
            speaking(1)
        );
        Ok(Transcript {
            segments: vec![Segment {
                speaker: "caller".into(),
                start: 0.0,
                end: pcm.duration_secs(),
                text: text.clone(),
            }],
            text,
            engine: "test".into(),
            model: "test".into(),
        })
    }
}

#[async_trait::async_trait]
impl Extractor for TestExtractor {
    async fn extract(&self, req: &ExtractRequest) -> Result<Extraction, EngineError> {
        self.0.enter("extract", &req.call_sid, &self.1).await?;
        Ok(Extraction {
            summary: format!("summary of: {}", req.transcript.text),
            fields: serde_json::json!({"words": req.transcript.text.split_whitespace().count()}),
            engine: "test".into(),
        })
    }
}

pub fn engines(config: &TestEnginesConfig) -> Engines {
    let shared = Arc::new(Shared {
        config: config.clone(),
    });
    Engines {
        transcriber: Some(Arc::new(TestTranscriber(shared.clone(), AtomicU32::new(0)))),
        extractor: Arc::new(TestExtractor(shared, AtomicU32::new(0))),
    }
}
