//! Fuzzes the Media Streams message parsers: any text frame gets a message or a typed error,
//! never a panic, and so do the accessors the host calls on a parsed `media` message. A parsed
//! message written back out parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::protocol::{parse_server, parse_twilio, TwilioMessage};

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
    if let Ok(msg) = parse_server(text) {
        let again = parse_server(&msg.to_json()).expect("a serialised server message parses");
        assert_eq!(again, msg);
    }
});
