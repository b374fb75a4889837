//! The one client of every OpenAI-compatible engine (`[openai]`): its key, a POST that retries
//! 429 and 5xx within bounds honouring `Retry-After`, and failures mapped to transient or
//! permanent errors for the pipeline's own retries.

use crate::retry::{classify, next_delay, retry_after, RetryPolicy, Verdict};
use crate::{EngineError, OpenAiConfig};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// One OpenAI-compatible endpoint with its key and retry rules.
#[derive(Clone)]
pub(super) struct Api {
    client: reqwest::Client,
    base_url: String,
    key: Option<String>,
    policy: RetryPolicy,
}

impl Api {
    /// The `[openai]` client: its rules checked, its key read from the environment.
    pub(super) fn new(cfg: &OpenAiConfig) -> Result<Api, EngineError> {
        cfg.validate()?;
        // An empty variable name means the server needs no key (self-hosted servers).
        let key = if cfg.api_key_env.is_empty() {
            None
        } else {
            match std::env::var(&cfg.api_key_env) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => {
                    return Err(EngineError::Config(format!(
                        "openai.api_key_env: environment variable {} is not set",
                        cfg.api_key_env
                    )))
                }
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs.min(10)))
            .build()
            .map_err(|e| EngineError::Config(format!("openai: http client: {e}")))?;
        Ok(Api {
            client,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            key,
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                max_retry_after: Duration::from_secs(cfg.max_retry_after_secs),
            },
        })
    }

    /// POST to `/v1/{path}`; `build` adds the body afresh for every attempt (a multipart form
    /// cannot be replayed, and a streamed upload starts again from its first byte).
    pub(super) async fn post<F>(&self, path: &str, build: F) -> Result<String, EngineError>
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let cfg = OpenAiConfig {
            api_key_env: "TWIML_GUARD_TEST_SURELY_UNSET_KEY".into(),
            ..Default::default()
        };
        assert_eq!(
            Api::new(&cfg).err().unwrap(),
            EngineError::Config(
                "openai.api_key_env: environment variable \
                 TWIML_GUARD_TEST_SURELY_UNSET_KEY is not set"
                    .into()
            )
        );
        let cfg = OpenAiConfig {
            base_url: "ftp://x".into(),
            api_key_env: String::new(),
            ..Default::default()
        };
        assert_eq!(
            Api::new(&cfg).err().unwrap(),
            EngineError::Config("openai.base_url: \"ftp://x\" is not an http(s) URL".into())
        );
        let cfg = OpenAiConfig {
            timeout_secs: 0,
            api_key_env: String::new(),
            ..Default::default()
        };
        assert_eq!(
            Api::new(&cfg).err().unwrap(),
            EngineError::Config("openai.timeout_secs: must be at least 1".into())
        );
    }
}
