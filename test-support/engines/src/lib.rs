//! Deterministic stand-ins for the speech and extraction engines, for tests only (the product
//! has none): the host runs with them through every stage, each call is logged to a file (to
//! count runs across restarts), can be slowed down (to kill the process mid-stage) and can fail
//! its first attempts (to exercise retries). A process gets them from its environment
//! (`TEST_ENGINES_*`, see [`Config::from_env`]).

use postcall::{
    EngineError, Engines, ExtractRequest, Extraction, Extractor, Segment, TranscribeRequest,
    Transcriber, Transcript,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the stand-ins behave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Each engine call takes this long.
    pub delay_ms: u64,
    /// Append one line per engine call (`transcribe CA...` / `extract CA...`).
    pub log: Option<PathBuf>,
    /// The first this many calls of each engine fail with a transient error.
    pub fail_first: u32,
}

/// The variables [`Config::from_env`] reads.
pub const ENV: [&str; 3] = [
    "TEST_ENGINES_DELAY_MS",
    "TEST_ENGINES_LOG",
    "TEST_ENGINES_FAIL_FIRST",
];

impl Config {
    /// From `TEST_ENGINES_DELAY_MS`, `TEST_ENGINES_LOG` and `TEST_ENGINES_FAIL_FIRST` in `vars`
    /// (unset: no delay, no log, no failures); any other `TEST_ENGINES_*` variable, or a number
    /// that does not parse, is an error naming it.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, String> {
        let mut config = Config::default();
        for (name, value) in vars {
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name}: {value:?} is not a whole number"))
            };
            match name.as_str() {
                "TEST_ENGINES_DELAY_MS" => config.delay_ms = number()?,
                "TEST_ENGINES_LOG" => config.log = Some(PathBuf::from(value)),
                "TEST_ENGINES_FAIL_FIRST" => {
                    config.fail_first = u32::try_from(number()?)
                        .map_err(|_| format!("{name}: {value:?} is too large"))?
                }
                other if other.starts_with("TEST_ENGINES_") => {
                    return Err(format!(
                        "unknown variable {other} (known: {})",
                        ENV.join(", ")
                    ))
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// The variables that give a child process this configuration.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (
                "TEST_ENGINES_DELAY_MS".to_owned(),
                self.delay_ms.to_string(),
            ),
            (
                "TEST_ENGINES_FAIL_FIRST".to_owned(),
                self.fail_first.to_string(),
            ),
        ];
        if let Some(log) = &self.log {
            out.push(("TEST_ENGINES_LOG".to_owned(), log.display().to_string()));
        }
        out
    }
}

struct Shared {
    config: Config,
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

/// [`engines`] configured by this process's environment ([`Config::from_env`]): what a binary
/// that runs the service with the stand-ins passes as its engines.
pub fn engines_from_env() -> Result<Engines, EngineError> {
    let config = Config::from_env(std::env::vars()).map_err(EngineError::Config)?;
    Ok(engines(&config))
}

/// A transcriber and an extractor that share `config`; each counts its own calls for
/// `fail_first`.
pub fn engines(config: &Config) -> Engines {
    let shared = Arc::new(Shared {
        config: config.clone(),
    });
    Engines {
        transcriber: Some(Arc::new(TestTranscriber(shared.clone(), AtomicU32::new(0)))),
        extractor: Arc::new(TestExtractor(shared, AtomicU32::new(0))),
    }
}

/// The one contract launchers rely on: what [`Config::to_env`] writes, [`Config::from_env`]
/// reads back.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_round_trips_and_bad_variables_are_named() {
        let config = Config {
            delay_ms: 1500,
            log: Some(PathBuf::from("/tmp/engines.log")),
            fail_first: 2,
        };
        assert_eq!(Config::from_env(config.to_env()), Ok(config));
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            Config::from_env(vars(&[("PATH", "/bin")])),
            Ok(Config::default())
        );
        assert_eq!(
            Config::from_env(vars(&[("TEST_ENGINES_DELAY_MS", "soon")])),
            Err("TEST_ENGINES_DELAY_MS: \"soon\" is not a whole number".to_owned())
        );
        assert!(Config::from_env(vars(&[("TEST_ENGINES_DELAY", "1")]))
            .unwrap_err()
            .starts_with("unknown variable TEST_ENGINES_DELAY "));
    }
}
