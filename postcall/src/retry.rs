//! When to try a remote engine again and how long to wait first: the decisions are pure (status
//! code, `Retry-After` header, attempt number in; a verdict out), so they are tested exactly and
//! the HTTP loop around them stays thin.

use std::time::{Duration, SystemTime};

/// What a response status means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// 408, 409, 429 and 5xx: the server may answer differently later.
    Retry,
    /// Other 4xx (bad key, bad request) and anything unexpected: retrying will not help.
    Fail,
}

pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 409 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

/// The workspace's one backoff policy: `base` before retry 0, doubled for each later retry,
/// never more than `cap`. The HTTP client below and the host service's job queue both use it.
pub fn exponential(retry: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << retry.min(31)).min(cap)
}

/// Backoff when the server gives no `Retry-After`: 0.5 s, 1 s, 2 s, ... capped at 8 s.
pub fn backoff(retry: u32) -> Duration {
    exponential(retry, Duration::from_millis(500), Duration::from_secs(8))
}

/// How long to wait before retry number `retry` (0-based), or why not to retry at all.
pub fn next_delay(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
) -> Result<Duration, String> {
    if retry >= policy.max_retries {
        return Err(format!("gave up after {} attempts", retry + 1));
    }
    match retry_after {
        Some(wait) if wait > policy.max_retry_after => Err(format!(
            "server asked to wait {} s, more than the {} s allowed",
            wait.as_secs_f64(),
            policy.max_retry_after.as_secs()
        )),
        Some(wait) => Ok(wait),
        None => Ok(backoff(retry)),
    }
}

/// The server's wait request: `retry-after-ms` (milliseconds, sent by OpenAI), else
/// `Retry-After` as seconds or an HTTP date. Unparseable values count as absent.
pub fn retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::try_from(now).ok()?;
    let millis = (when.as_millisecond() - now.as_millisecond()).max(0);
    Some(Duration::from_millis(millis as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(200), Verdict::Success);
        assert_eq!(classify(204), Verdict::Success);
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), Verdict::Retry, "{s}");
        }
        for s in [301, 400, 401, 403, 404, 413, 422] {
            assert_eq!(classify(s), Verdict::Fail, "{s}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37Z
        assert_eq!(
            retry_after(None, Some("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after(None, Some(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(Some("1500"), Some("3"), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(None, Some("Sun, 06 Nov 1994 08:49:47 GMT"), now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means now.
        assert_eq!(
            retry_after(None, Some("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(None, Some("soon"), now), None);
        assert_eq!(retry_after(Some("-5"), None, now), None);
        assert_eq!(retry_after(None, None, now), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms =
            |retry| exponential(retry, Duration::from_secs(1), Duration::from_secs(30)).as_millis();
        let got: Vec<u128> = (0..8).map(ms).collect();
        assert_eq!(got, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(ms(199), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
        let got: Vec<Duration> = (0..6).map(backoff).collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 8000].map(Duration::from_millis)
        );
    }

    #[test]
    fn delays_are_bounded() {
        let p = RetryPolicy {
            max_retries: 3,
            max_retry_after: Duration::from_secs(30),
        };
        assert_eq!(next_delay(&p, 0, None), Ok(Duration::from_millis(500)));
        assert_eq!(next_delay(&p, 1, None), Ok(Duration::from_secs(1)));
        assert_eq!(next_delay(&p, 2, None), Ok(Duration::from_secs(2)));
        assert_eq!(
            next_delay(&p, 3, None),
            Err("gave up after 4 attempts".into())
        );
        assert_eq!(
            next_delay(&p, 0, Some(Duration::from_secs(7))),
            Ok(Duration::from_secs(7))
        );
        assert_eq!(
            next_delay(&p, 0, Some(Duration::from_secs(31))),
            Err("server asked to wait 31 s, more than the 30 s allowed".into())
        );
        assert_eq!(backoff(10), Duration::from_secs(8));
    }
}
