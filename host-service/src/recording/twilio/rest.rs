//! The two Twilio REST calls the `twilio` recording source needs: start a dual-channel recording
//! of a live call, and download the finished WAV. The API base is configurable so tests point it
//! at a local stand-in that checks what it receives.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    #[error("twilio request failed: {0}")]
    Http(String),
    /// 4xx: retrying the same request will not help.
    #[error("twilio answered {status}: {body}")]
    Refused { status: u16, body: String },
    /// 5xx and 429.
    #[error("twilio answered {status}, worth retrying: {body}")]
    Unavailable { status: u16, body: String },
    #[error("twilio answered something unexpected: {0}")]
    Unexpected(String),
}

impl TwilioError {
    pub fn retryable(&self) -> bool {
        matches!(self, TwilioError::Http(_) | TwilioError::Unavailable { .. })
    }
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    api_base: String,
    account_sid: Option<String>,
    auth_token: String,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, TwilioError> {
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(resp);
    }
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    if status == 429 || status >= 500 {
        Err(TwilioError::Unavailable { status, body })
    } else {
        Err(TwilioError::Refused { status, body })
    }
}

impl TwilioClient {
    pub fn new(
        api_base: &str,
        account_sid: Option<String>,
        auth_token: String,
    ) -> Result<TwilioClient, TwilioError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TwilioError::Http(e.to_string()))?;
        Ok(TwilioClient {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            account_sid,
            auth_token,
        })
    }

    /// The account to act for: the configured one, else the one the stream reported.
    fn account<'a>(&'a self, from_stream: &'a str) -> Result<&'a str, TwilioError> {
        let sid = self.account_sid.as_deref().unwrap_or(from_stream);
        if media::sid::is_account_sid(sid) {
            Ok(sid)
        } else {
            Err(TwilioError::Unexpected(format!(
                "account SID {:?} is not AC + 32 hex",
                sid.chars().take(40).collect::<String>()
            )))
        }
    }

    /// Start recording a live call, both channels, with the status callback at `callback`.
    /// Returns the RecordingSid.
    pub async fn start_recording(
        &self,
        account_sid: &str,
        call_sid: &media::sid::CallSid,
        callback: &str,
    ) -> Result<String, TwilioError> {
        let account = self.account(account_sid)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{account}/Calls/{call_sid}/Recordings.json",
            self.api_base
        );
        let resp = self
            .http
            .post(&url)
            .basic_auth(account, Some(&self.auth_token))
            .form(&[
                ("RecordingChannels", "dual"),
                ("RecordingStatusCallback", callback),
                ("RecordingStatusCallbackMethod", "POST"),
                ("RecordingStatusCallbackEvent", "completed"),
            ])
            .send()
            .await
            .map_err(|e| TwilioError::Http(e.to_string()))?;
        let resp = check(resp).await?;
        let json: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| TwilioError::Unexpected(e.to_string()))?;
        json.get("sid")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .ok_or_else(|| TwilioError::Unexpected("no sid in the answer".into()))
    }

    /// Download a finished recording as WAV (`RecordingUrl` + `.wav`), with Basic auth.
    pub async fn download_wav(
        &self,
        recording_url: &str,
        account_sid: &str,
    ) -> Result<Vec<u8>, TwilioError> {
        let account = self.account(account_sid)?;
        let url = format!("{}.wav", recording_url.trim_end_matches(".wav"));
        let resp = self
            .http
            .get(&url)
            .basic_auth(account, Some(&self.auth_token))
            .send()
            .await
            .map_err(|e| TwilioError::Http(e.to_string()))?;
        let resp = check(resp).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| TwilioError::Http(e.to_string()))?;
        Ok(bytes.to_vec())
    }
}
