//! The Media Streams messages, both directions, exactly as Twilio writes them: JSON text frames
//! tagged by `event`, camelCase names, counters (`sequenceNumber`, `chunk`, `timestamp`) as
//! strings. Parsing reports *why* a frame was refused so the service can count and log it.
//! `media` frames, fifty a second per call, have a borrowed fast path (`parse_frame`) that reads
//! them straight into a struct of slices of the text, with no JSON tree and no copies.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A message Twilio sends to the media WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioMessage {
    Connected(Connected),
    Start(Start),
    Media(Media),
    Dtmf(Dtmf),
    Mark(MarkEvent),
    Stop(Stop),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connected {
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    #[serde(default)]
    pub sequence_number: String,
    pub stream_sid: String,
    pub start: StartMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    #[serde(default)]
    pub tracks: Vec<String>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

impl Default for MediaFormat {
    fn default() -> Self {
        MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: crate::SAMPLE_RATE,
            channels: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    #[serde(default)]
    pub sequence_number: String,
    pub stream_sid: String,
    pub media: MediaPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaPayload {
    /// `inbound` (the caller) or `outbound` (what the server sent).
    #[serde(default = "inbound")]
    pub track: String,
    #[serde(default)]
    pub chunk: String,
    /// Milliseconds since the stream started, as a decimal string.
    pub timestamp: String,
    /// Base64 of raw 8 kHz mu-law.
    pub payload: String,
}

fn inbound() -> String {
    "inbound".into()
}

impl MediaPayload {
    pub fn timestamp_ms(&self) -> Result<u64, ProtocolError> {
        timestamp_ms(&self.timestamp)
    }

    pub fn audio(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        decode_payload(&self.payload, &mut out)?;
        Ok(out)
    }
}

fn timestamp_ms(text: &str) -> Result<u64, ProtocolError> {
    text.trim()
        .parse()
        .map_err(|_| ProtocolError::BadField("media.timestamp"))
}

/// Base64 into `out`, replacing what it held (so a caller can keep one buffer for every frame).
fn decode_payload(payload: &str, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    out.clear();
    base64::engine::general_purpose::STANDARD
        .decode_vec(payload.as_bytes(), out)
        .map_err(|_| {
            out.clear();
            ProtocolError::BadField("media.payload")
        })
}

/// A `media` frame borrowed from its text. It accepts exactly the `media` frames
/// [`parse_twilio`] accepts (the same fields with the same types and defaults), so the two agree;
/// anything else goes the general way.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFrame<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(default, borrow)]
    pub sequence_number: Cow<'a, str>,
    #[serde(borrow)]
    pub stream_sid: Cow<'a, str>,
    #[serde(borrow)]
    pub media: MediaRef<'a>,
}

/// The `media` object of a [`MediaFrame`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MediaRef<'a> {
    #[serde(default = "inbound_ref", borrow)]
    pub track: Cow<'a, str>,
    #[serde(default, borrow)]
    pub chunk: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

fn inbound_ref() -> Cow<'static, str> {
    Cow::Borrowed("inbound")
}

impl MediaRef<'_> {
    pub fn timestamp_ms(&self) -> Result<u64, ProtocolError> {
        timestamp_ms(&self.timestamp)
    }

    /// The mu-law bytes, decoded into `out` (cleared first; empty on an error).
    pub fn audio_into(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        decode_payload(&self.payload, out)
    }
}

/// One text frame from Twilio: a `media` frame borrowed from the text, or any other message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    Media(MediaFrame<'a>),
    Other(TwilioMessage),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dtmf {
    #[serde(default)]
    pub sequence_number: String,
    pub stream_sid: String,
    pub dtmf: DtmfDigit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtmfDigit {
    #[serde(default)]
    pub track: String,
    pub digit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkEvent {
    #[serde(default)]
    pub sequence_number: String,
    pub stream_sid: String,
    pub mark: MarkName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    #[serde(default)]
    pub sequence_number: String,
    pub stream_sid: String,
    pub stop: StopMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    #[serde(default)]
    pub account_sid: String,
    #[serde(default)]
    pub call_sid: String,
}

/// A message the server sends back to Twilio on a bidirectional (`<Connect>`) stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ServerMessage {
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        media: OutboundPayload,
    },
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        mark: MarkName,
    },
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundPayload {
    pub payload: String,
}

impl ServerMessage {
    pub fn media(stream_sid: &str, mulaw: &[u8]) -> Self {
        ServerMessage::Media {
            stream_sid: stream_sid.to_owned(),
            media: OutboundPayload {
                payload: base64::engine::general_purpose::STANDARD.encode(mulaw),
            },
        }
    }

    pub fn mark(stream_sid: &str, name: &str) -> Self {
        ServerMessage::Mark {
            stream_sid: stream_sid.to_owned(),
            mark: MarkName {
                name: name.to_owned(),
            },
        }
    }

    pub fn clear(stream_sid: &str) -> Self {
        ServerMessage::Clear {
            stream_sid: stream_sid.to_owned(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl TwilioMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            TwilioMessage::Connected(_) => None,
            TwilioMessage::Start(m) => Some(&m.stream_sid),
            TwilioMessage::Media(m) => Some(&m.stream_sid),
            TwilioMessage::Dtmf(m) => Some(&m.stream_sid),
            TwilioMessage::Mark(m) => Some(&m.stream_sid),
            TwilioMessage::Stop(m) => Some(&m.stream_sid),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("event {event:?} is missing or has a bad field: {detail}")]
    BadMessage { event: String, detail: String },
    #[error("bad value in {0}")]
    BadField(&'static str),
}

impl ProtocolError {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::InvalidJson(_) => "invalid_json",
            ProtocolError::UnknownEvent(_) => "unknown_event",
            ProtocolError::BadMessage { .. } | ProtocolError::BadField(_) => "bad_message",
        }
    }
}

const KNOWN_EVENTS: [&str; 6] = ["connected", "start", "media", "dtmf", "mark", "stop"];

/// Parse one text frame from Twilio, telling apart bad JSON, an event we do not know, and a known
/// event with missing fields.
pub fn parse_twilio(text: &str) -> Result<TwilioMessage, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let event = value
        .get("event")
        .and_then(|e| e.as_str())
        .ok_or_else(|| ProtocolError::UnknownEvent(String::new()))?
        .to_owned();
    if !KNOWN_EVENTS.contains(&event.as_str()) {
        return Err(ProtocolError::UnknownEvent(event));
    }
    serde_json::from_value(value).map_err(|e| ProtocolError::BadMessage {
        event,
        detail: e.to_string(),
    })
}

/// Parse one text frame from Twilio as [`parse_twilio`] does, with `media` frames read in place.
pub fn parse_frame(text: &str) -> Result<Frame<'_>, ProtocolError> {
    match serde_json::from_str::<MediaFrame<'_>>(text) {
        Ok(m) if m.event == "media" => Ok(Frame::Media(m)),
        _ => parse_twilio(text).map(Frame::Other),
    }
}

/// Parse one text frame the server sent (what `twilio-sim` reads).
pub fn parse_server(text: &str) -> Result<ServerMessage, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let event = value
        .get("event")
        .and_then(|e| e.as_str())
        .unwrap_or_default()
        .to_owned();
    if !["media", "mark", "clear"].contains(&event.as_str()) {
        return Err(ProtocolError::UnknownEvent(event));
    }
    serde_json::from_value(value).map_err(|e| ProtocolError::BadMessage {
        event,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA0123456789abcdef0123456789abcdef","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"To":"+15550001111"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;

    #[test]
    fn parses_twilio_start_exactly() {
        let TwilioMessage::Start(s) = parse_twilio(START).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(s.sequence_number, "1");
        assert_eq!(s.start.call_sid, "CA0123456789abcdef0123456789abcdef");
        assert_eq!(s.start.custom_parameters["To"], "+15550001111");
        assert_eq!(s.start.media_format.sample_rate, 8000);
    }

    #[test]
    fn parses_media_with_string_counters() {
        let text = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8A"},"streamSid":"MZ1"}"#;
        let TwilioMessage::Media(m) = parse_twilio(text).unwrap() else {
            panic!("not media")
        };
        assert_eq!(m.media.timestamp_ms().unwrap(), 5);
        assert_eq!(m.media.audio().unwrap(), vec![0xFF, 0xFF, 0x00]);
    }

    #[test]
    fn tells_bad_json_from_unknown_event_from_bad_fields() {
        assert_eq!(parse_twilio("{").unwrap_err().kind(), "invalid_json");
        assert_eq!(
            parse_twilio(r#"{"event":"hello"}"#).unwrap_err(),
            ProtocolError::UnknownEvent("hello".into())
        );
        assert_eq!(
            parse_twilio(r#"{"event":"media","streamSid":"MZ1"}"#)
                .unwrap_err()
                .kind(),
            "bad_message"
        );
    }

    #[test]
    fn server_messages_serialize_as_twilio_expects() {
        assert_eq!(
            ServerMessage::media("MZ1", &[0xFF]).to_json(),
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/w=="}}"#
        );
        assert_eq!(
            ServerMessage::mark("MZ1", "greeting").to_json(),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting"}}"#
        );
        assert_eq!(
            ServerMessage::clear("MZ1").to_json(),
            r#"{"event":"clear","streamSid":"MZ1"}"#
        );
        let back = parse_server(&ServerMessage::clear("MZ1").to_json()).unwrap();
        assert_eq!(back, ServerMessage::clear("MZ1"));
    }

    /// The fast path and the general parser agree on every `media` frame, bad ones included.
    #[test]
    fn media_frames_read_in_place_agree_with_the_general_parser() {
        let frames = [
            r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8A"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"timestamp":" 7 ","payload":"\/\/8A"},"streamSid":"MZ\u0031","extra":[1,{"a":null}]}"#,
            r#"{"streamSid":"MZ1","media":{"payload":"//8A","timestamp":"5","track":"outbound"},"event":"media"}"#,
            r#"{"event":"media","sequenceNumber":3,"media":{"timestamp":"5","payload":"//8A"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"timestamp":5,"payload":"//8A"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"payload":"//8A"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"timestamp":"5","payload":"//8A"}}"#,
            r#"{"event":"media","media":{"timestamp":"5","payload":"//8A","track":null},"streamSid":"MZ1"}"#,
            r#"{"event":"media","event":"media","media":{"timestamp":"5","payload":"//8A"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"timestamp":"x","payload":"@@"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"timestamp":"5","payload":"//8A"},"streamSid":"MZ1"} x"#,
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"m"}}"#,
            START,
            "{",
        ];
        for text in frames {
            let general = parse_twilio(text);
            match parse_frame(text) {
                Ok(Frame::Media(m)) => {
                    let Ok(TwilioMessage::Media(g)) = &general else {
                        panic!("{text}: fast path accepted what the parser refuses: {general:?}");
                    };
                    assert_eq!(m.stream_sid, g.stream_sid, "{text}");
                    assert_eq!(m.sequence_number, g.sequence_number, "{text}");
                    assert_eq!(m.media.track, g.media.track, "{text}");
                    assert_eq!(m.media.chunk, g.media.chunk, "{text}");
                    assert_eq!(m.media.timestamp_ms(), g.media.timestamp_ms(), "{text}");
                    let mut audio = vec![9; 3];
                    let decoded = m.media.audio_into(&mut audio).map(|()| audio.clone());
                    assert_eq!(decoded, g.media.audio(), "{text}");
                }
                Ok(Frame::Other(msg)) => assert_eq!(Ok(msg), general, "{text}"),
                Err(e) => assert_eq!(Err(e), general, "{text}"),
            }
        }
        let Ok(Frame::Media(m)) = parse_frame(frames[1]) else {
            panic!("not media")
        };
        assert_eq!(m.media.timestamp_ms(), Ok(7));
        assert_eq!(m.stream_sid, "MZ1");
        let mut audio = Vec::new();
        m.media.audio_into(&mut audio).unwrap();
        assert_eq!(audio, vec![0xFF, 0xFF, 0x00]);
        let Ok(Frame::Media(bad)) = parse_frame(frames[9]) else {
            panic!("not media")
        };
        assert_eq!(
            bad.media.audio_into(&mut audio),
            Err(ProtocolError::BadField("media.payload"))
        );
        assert!(audio.is_empty());
    }

    #[test]
    fn round_trips_start() {
        let msg = parse_twilio(START).unwrap();
        assert_eq!(parse_twilio(&msg.to_json()).unwrap(), msg);
    }
}
