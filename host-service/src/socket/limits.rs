//! What keeps one caller (or one captured handshake) from holding the service's sockets: the
//! per-call media token, a cap on a call's open streams, and a frame-rate limit. Pure state over
//! plain values, so each rule is tested without a socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Check a `start`'s media token (`customParameters.twiml_guard_token`) for `call_sid` with the
/// key shared with the edge filter, at `now_s` (Unix seconds).
pub fn check_media_token(
    key: &[u8],
    call_sid: &str,
    custom_parameters: &std::collections::BTreeMap<String, String>,
    now_s: u64,
) -> Result<(), twiml::media_token::TokenError> {
    let token = custom_parameters
        .get(twiml::media_token::PARAMETER)
        .map(String::as_str);
    twiml::media_token::verify(key, call_sid, token, now_s)
}

/// The open streams of each call on this replica.
#[derive(Debug, Default)]
pub struct CallStreams {
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of a call; dropping it frees its place.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<CallStreams>,
    call_sid: String,
}

impl CallStreams {
    /// A place for one more stream of `call_sid`, or `None` when it already has `max` open.
    pub fn enter(self: &Arc<Self>, call_sid: &str, max: usize) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(call_sid.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            streams: self.clone(),
            call_sid: call_sid.to_owned(),
        })
    }

    /// Streams of `call_sid` open now.
    pub fn open(&self, call_sid: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(call_sid).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.call_sid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.call_sid);
            }
        }
    }
}

/// Frames in the current one-second window: a fixed window is enough to stop a flood, and lets a
/// peer that fell behind catch up with a burst of up to a second's allowance.
#[derive(Debug)]
pub struct FrameRate {
    max_per_s: u32,
    window_start: Instant,
    in_window: u32,
}

impl FrameRate {
    pub fn new(max_per_s: u32, now: Instant) -> FrameRate {
        FrameRate {
            max_per_s,
            window_start: now,
            in_window: 0,
        }
    }

    /// Count one frame at `now`; `false` once the window holds more than the limit.
    pub fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window <= self.max_per_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = "CA0123456789abcdef0123456789abcdef";

    #[test]
    fn a_call_gets_max_streams_and_a_closed_one_frees_its_place() {
        let streams = Arc::new(CallStreams::default());
        let a = streams.enter(CALL, 2).unwrap();
        let _b = streams.enter(CALL, 2).unwrap();
        assert!(streams.enter(CALL, 2).is_none());
        assert!(streams.enter("CAother", 2).is_some());
        assert_eq!(streams.open(CALL), 2);
        drop(a);
        assert_eq!(streams.open(CALL), 1);
        assert!(streams.enter(CALL, 2).is_some());
    }

    #[test]
    fn frames_past_the_limit_in_one_second_are_refused() {
        let t0 = Instant::now();
        let mut rate = FrameRate::new(3, t0);
        assert!(rate.admit(t0));
        assert!(rate.admit(t0));
        assert!(rate.admit(t0 + Duration::from_millis(999)));
        assert!(!rate.admit(t0 + Duration::from_millis(999)));
        assert!(rate.admit(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_media_token_must_be_for_this_call() {
        let key = b"0123456789abcdef";
        let token = twiml::media_token::mint(key, CALL, 100);
        let mut params = std::collections::BTreeMap::new();
        assert_eq!(
            check_media_token(key, CALL, &params, 0),
            Err(twiml::media_token::TokenError::Missing)
        );
        params.insert("twiml_guard_token".to_owned(), token);
        assert_eq!(check_media_token(key, CALL, &params, 100), Ok(()));
        assert_eq!(
            check_media_token(key, "CAffffffffffffffffffffffffffffffff", &params, 0),
            Err(twiml::media_token::TokenError::Mismatch)
        );
    }
}
