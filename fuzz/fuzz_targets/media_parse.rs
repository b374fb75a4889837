//! Fuzzes the Media Streams message parsers: any text frame gets a message or a typed error,
//! never a panic, and so do the accessors the host calls on a parsed `media` message. A parsed
//! message written back out parses to the same message, and the borrowed fast path for `media`
//! frames accepts exactly what the general parser accepts, with the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::protocol::{parse_frame, parse_server, parse_twilio, Frame, TwilioMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_twilio(text) {
        Ok(msg) => {
            if let TwilioMessage::Media(m) = &msg {
                let _ = m.media.timestamp_ms();
                let _ = m.media.audio();
            }
            let again = parse_twilio(&msg.to_json()).expect("a serialised message parses");
            assert_eq!(again, msg);
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
    match (parse_frame(text), parse_twilio(text)) {
        (Ok(Frame::Media(fast)), Ok(TwilioMessage::Media(m))) => {
            assert_eq!(fast.stream_sid, m.stream_sid);
            assert_eq!(fast.sequence_number, m.sequence_number);
            assert_eq!(fast.media.track, m.media.track);
            assert_eq!(fast.media.chunk, m.media.chunk);
            assert_eq!(fast.media.timestamp, m.media.timestamp);
            assert_eq!(fast.media.payload, m.media.payload);
        }
        (Ok(Frame::Media(_)), other) => panic!("fast path accepted {other:?}"),
        (Ok(Frame::Other(a)), b) => assert_eq!(Ok(a), b),
        (a, b) => assert_eq!(a.err(), b.err()),
    }
    if let Ok(msg) = parse_server(text) {
        let again = parse_server(&msg.to_json()).expect("a serialised server message parses");
        assert_eq!(again, msg);
    }
});
