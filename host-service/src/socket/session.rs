//! One Media Streams WebSocket as a state machine: text frames in, events out. No sockets and no
//! clocks, so every rule of the protocol (start first and once, one streamSid per socket, only
//! inbound audio recorded, nothing after stop) is tested on strings.

use media::protocol::{parse_frame, Frame, MediaFrame, ProtocolError, TwilioMessage};
use media::sid::{plausible_stream_sid, CallSid};
use std::collections::BTreeMap;

/// What a `start` told us about the call.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInfo {
    pub call_sid: CallSid,
    pub stream_sid: String,
    pub account_sid: String,
    pub tracks: Vec<String>,
    pub custom_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Connected,
    Started(StartInfo),
    /// Caller audio, mu-law, at `timestamp_ms` from the stream start.
    Audio {
        timestamp_ms: u64,
        mulaw: Vec<u8>,
    },
    Dtmf(String),
    /// Twilio echoed a mark we sent: the audio before it has played.
    Mark(String),
    Stopped,
    /// A frame that was refused; the socket stays open.
    Bad {
        kind: &'static str,
        detail: String,
    },
    /// A frame that is valid but means nothing to a recording (e.g. an outbound track echo).
    Ignored(&'static str),
    /// A frame that makes the stream unusable; the socket is closed.
    Fatal {
        kind: &'static str,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitingStart,
    Streaming { stream_sid: String },
    Stopped,
}

#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// The buffer the next `Audio` event decodes into: the socket hands each event's back
    /// ([`Session::recycle`]), so a stream decodes every frame into the same memory.
    spare: Vec<u8>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

fn bad(kind: &'static str, detail: impl Into<String>) -> Event {
    Event::Bad {
        kind,
        detail: detail.into(),
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            phase: Phase::AwaitingStart,
            spare: Vec::new(),
        }
    }

    pub fn started(&self) -> bool {
        !matches!(self.phase, Phase::AwaitingStart)
    }

    pub fn stream_sid(&self) -> Option<&str> {
        match &self.phase {
            Phase::Streaming { stream_sid } => Some(stream_sid),
            _ => None,
        }
    }

    pub fn on_text(&mut self, text: &str) -> Event {
        let msg = match parse_frame(text) {
            Ok(Frame::Media(m)) => return self.on_media(&m),
            Ok(Frame::Other(m)) => m,
            Err(e) => return bad(e.kind(), e.to_string()),
        };
        if let TwilioMessage::Connected(_) = msg {
            return Event::Connected;
        }
        if let TwilioMessage::Start(start) = msg {
            if self.phase != Phase::AwaitingStart {
                return bad("duplicate_start", "a second start on one socket");
            }
            let meta = start.start;
            let Some(call_sid) = CallSid::parse(&meta.call_sid) else {
                return Event::Fatal {
                    kind: "bad_call_sid",
                    detail: format!("callSid {:?} is not CA + 32 hex", truncate(&meta.call_sid)),
                };
            };
            if !plausible_stream_sid(&start.stream_sid) {
                return Event::Fatal {
                    kind: "bad_stream_sid",
                    detail: format!("streamSid {:?}", truncate(&start.stream_sid)),
                };
            }
            // The backend's TwiML can bind the stream to its call with
            // `<Parameter name="CallSid" value="CA...">`: Twilio passes it through unchanged, so
            // a `start` claiming another call is not the stream that TwiML opened.
            if let Some(bound) = meta.custom_parameters.get("CallSid") {
                if bound != call_sid.as_str() {
                    return Event::Fatal {
                        kind: "call_sid_mismatch",
                        detail: format!(
                            "callSid {} but the CallSid parameter is {:?}",
                            call_sid,
                            truncate(bound)
                        ),
                    };
                }
            }
            let fmt = &meta.media_format;
            if fmt.encoding != "audio/x-mulaw" || fmt.sample_rate != 8000 || fmt.channels != 1 {
                return Event::Fatal {
                    kind: "unsupported_format",
                    detail: format!(
                        "{} at {} Hz, {} channels",
                        truncate(&fmt.encoding),
                        fmt.sample_rate,
                        fmt.channels
                    ),
                };
            }
            self.phase = Phase::Streaming {
                stream_sid: start.stream_sid.clone(),
            };
            return Event::Started(StartInfo {
                call_sid,
                stream_sid: start.stream_sid,
                account_sid: meta.account_sid,
                tracks: meta.tracks,
                custom_parameters: meta.custom_parameters,
            });
        }
        if let Err(refused) = self.check_stream(msg.stream_sid()) {
            return refused;
        }
        match msg {
            TwilioMessage::Media(m) => audio_event(
                &m.media.track,
                m.media.timestamp_ms(),
                &mut self.spare,
                |out| {
                    *out = m.media.audio()?;
                    Ok(())
                },
            ),
            TwilioMessage::Dtmf(d) => Event::Dtmf(d.dtmf.digit),
            TwilioMessage::Mark(m) => Event::Mark(m.mark.name),
            TwilioMessage::Stop(_) => {
                self.phase = Phase::Stopped;
                Event::Stopped
            }
            TwilioMessage::Connected(_) | TwilioMessage::Start(_) => Event::Ignored("unreachable"),
        }
    }
}

impl Session {
    /// A `media` frame read in place: the hot path, fifty times a second per call.
    fn on_media(&mut self, m: &MediaFrame<'_>) -> Event {
        if let Err(refused) = self.check_stream(Some(&m.stream_sid)) {
            return refused;
        }
        audio_event(
            &m.media.track,
            m.media.timestamp_ms(),
            &mut self.spare,
            |out| m.media.audio_into(out),
        )
    }

    /// Take back an `Audio` event's buffer for the next frame.
    pub fn recycle(&mut self, mut mulaw: Vec<u8>) {
        mulaw.clear();
        self.spare = mulaw;
    }

    /// An event after `start` must come on the stream that started, and before `stop`.
    fn check_stream(&self, stream_sid: Option<&str>) -> Result<(), Event> {
        let expected = match &self.phase {
            Phase::AwaitingStart => return Err(bad("before_start", "event before start")),
            Phase::Stopped => return Err(bad("after_stop", "event after stop")),
            Phase::Streaming { stream_sid } => stream_sid,
        };
        if stream_sid != Some(expected.as_str()) {
            return Err(bad(
                "wrong_stream_sid",
                format!("streamSid {:?}", truncate(stream_sid.unwrap_or(""))),
            ));
        }
        Ok(())
    }
}

/// Caller audio becomes an event, decoded into the session's spare buffer; the other track
/// (echoed audio) is not recorded.
fn audio_event(
    track: &str,
    timestamp_ms: Result<u64, ProtocolError>,
    spare: &mut Vec<u8>,
    decode: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Event {
    if track != "inbound" && track != "inbound_track" {
        return Event::Ignored("outbound_track");
    }
    let timestamp_ms = match timestamp_ms {
        Ok(t) => t,
        Err(e) => return bad("bad_message", e.to_string()),
    };
    match decode(spare) {
        Ok(()) => Event::Audio {
            timestamp_ms,
            mulaw: std::mem::take(spare),
        },
        Err(e) => bad("bad_message", e.to_string()),
    }
}

/// Client-controlled strings go into logs shortened.
fn truncate(s: &str) -> String {
    s.chars().take(48).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const CALL: &str = "CA0123456789abcdef0123456789abcdef";
    pub const STREAM: &str = "MZ0123456789abcdef0123456789abcdef";

    fn start(call: &str) -> String {
        format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{STREAM}","start":{{"streamSid":"{STREAM}","accountSid":"AC0123456789abcdef0123456789abcdef","callSid":"{call}","tracks":["inbound"],"customParameters":{{"From":"+15550001111"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        )
    }

    fn media(sid: &str, track: &str, ts: &str, payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{sid}","media":{{"track":"{track}","chunk":"1","timestamp":"{ts}","payload":"{payload}"}}}}"#
        )
    }

    #[test]
    fn a_whole_stream() {
        let mut s = Session::new();
        assert_eq!(
            s.on_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Event::Connected
        );
        let Event::Started(info) = s.on_text(&start(CALL)) else {
            panic!("no start")
        };
        assert_eq!(info.call_sid.as_str(), CALL);
        assert_eq!(info.custom_parameters["From"], "+15550001111");
        assert_eq!(
            s.on_text(&media(STREAM, "inbound", "20", "//8A")),
            Event::Audio {
                timestamp_ms: 20,
                mulaw: vec![0xFF, 0xFF, 0x00]
            }
        );
        assert_eq!(
            s.on_text(&format!(
                r#"{{"event":"dtmf","streamSid":"{STREAM}","sequenceNumber":"3","dtmf":{{"track":"inbound_track","digit":"5"}}}}"#
            )),
            Event::Dtmf("5".into())
        );
        assert_eq!(
            s.on_text(&format!(
                r#"{{"event":"mark","streamSid":"{STREAM}","sequenceNumber":"4","mark":{{"name":"m1"}}}}"#
            )),
            Event::Mark("m1".into())
        );
        assert_eq!(
            s.on_text(&format!(
                r#"{{"event":"stop","streamSid":"{STREAM}","sequenceNumber":"5","stop":{{"accountSid":"AC1","callSid":"{CALL}"}}}}"#
            )),
            Event::Stopped
        );
        assert!(matches!(
            s.on_text(&media(STREAM, "inbound", "40", "//8A")),
            Event::Bad {
                kind: "after_stop",
                ..
            }
        ));
    }

    #[test]
    fn refusals_are_named() {
        let mut s = Session::new();
        let kind = |e: Event| match e {
            Event::Bad { kind, .. } | Event::Fatal { kind, .. } => kind,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(kind(s.on_text("{nope")), "invalid_json");
        assert_eq!(kind(s.on_text(r#"{"event":"hello"}"#)), "unknown_event");
        assert_eq!(
            kind(s.on_text(&media(STREAM, "inbound", "0", ""))),
            "before_start"
        );
        assert_eq!(
            kind(s.on_text(&start("CA../../etc/passwd"))),
            "bad_call_sid"
        );
        assert!(!s.started());
        assert!(matches!(s.on_text(&start(CALL)), Event::Started(_)));
        assert_eq!(kind(s.on_text(&start(CALL))), "duplicate_start");
        assert_eq!(
            kind(s.on_text(&media("MZother", "inbound", "0", ""))),
            "wrong_stream_sid"
        );
        assert_eq!(
            kind(s.on_text(&media(STREAM, "inbound", "x", ""))),
            "bad_message"
        );
        assert_eq!(
            kind(s.on_text(&media(STREAM, "inbound", "0", "%%%"))),
            "bad_message"
        );
        assert_eq!(
            s.on_text(&media(STREAM, "outbound", "0", "//8A")),
            Event::Ignored("outbound_track")
        );
        // Still streaming after all of that.
        assert_eq!(s.stream_sid(), Some(STREAM));
    }

    #[test]
    fn a_call_sid_parameter_must_name_the_same_call() {
        let other = "CAffffffffffffffffffffffffffffffff";
        let bound = |p: &str| {
            start(CALL).replace(r#""From":"+15550001111""#, &format!(r#""CallSid":"{p}""#))
        };
        let mut s = Session::new();
        assert_eq!(
            s.on_text(&bound(other)),
            Event::Fatal {
                kind: "call_sid_mismatch",
                detail: format!("callSid {CALL} but the CallSid parameter is {other:?}"),
            }
        );
        assert!(!s.started());
        let Event::Started(info) = s.on_text(&bound(CALL)) else {
            panic!("refused a matching CallSid parameter")
        };
        assert_eq!(info.custom_parameters["CallSid"], CALL);
    }

    #[test]
    fn refuses_formats_it_cannot_record() {
        let mut s = Session::new();
        let text = start(CALL).replace("8000", "16000");
        assert!(matches!(
            s.on_text(&text),
            Event::Fatal {
                kind: "unsupported_format",
                ..
            }
        ));
    }
}
