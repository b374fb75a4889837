//! Parsing tests: the seed's legacy document, Twilio's defaults, and documents Twilio refuses.

use super::*;

/// The seed's broken document, as the `twilio` library wrote it.
pub(crate) const SEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false" />
  <Connect action="https://prosaas.pro/webhook/stream_ended">
    <Stream track="inbound_track" url="wss://prosaas.pro/ws/twilio-media">
      <Parameter name="CallSid" value="CA19ccfe8b0c90c3b22c9fb591bf36aa25" />
      <Parameter name="To" value="+97233762734" />
    </Stream>
  </Connect>
</Response>"#;

#[test]
fn parses_the_seed_document() {
    let doc = parse(SEED.as_bytes()).unwrap();
    assert_eq!(doc.verbs.len(), 2);
    let Verb::Record(rec) = &doc.verbs[0] else {
        panic!("first verb is {:?}", doc.verbs[0])
    };
    assert_eq!(rec.action, None);
    assert_eq!(rec.timeout, 3);
    assert_eq!(rec.max_length, 600);
    assert!(!rec.play_beep);
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.attributes.len(), 5);
    assert_eq!(
        doc.verbs[1],
        Verb::Connect {
            action: Some("https://prosaas.pro/webhook/stream_ended".into()),
            method: Method::Post,
            stream: Some(StreamSpec {
                url: "wss://prosaas.pro/ws/twilio-media".into(),
                name: None,
                track: "inbound_track".into(),
                status_callback: None,
                parameters: vec![
                    (
                        "CallSid".into(),
                        "CA19ccfe8b0c90c3b22c9fb591bf36aa25".into()
                    ),
                    ("To".into(), "+97233762734".into()),
                ],
            }),
            other: None,
        }
    );
}

#[test]
fn fills_twilio_defaults() {
    let doc = parse(b"<Response><Record/><Pause/><Say>Hi &amp; bye</Say></Response>").unwrap();
    let Verb::Record(rec) = &doc.verbs[0] else {
        panic!()
    };
    assert_eq!(
        (rec.timeout, rec.max_length, rec.play_beep),
        (5, 3600, true)
    );
    assert_eq!(doc.verbs[1], Verb::Pause { length: 1 });
    assert_eq!(
        doc.verbs[2],
        Verb::Say {
            text: "Hi & bye".into(),
            loops: 1
        }
    );
}

#[test]
fn start_stream_redirect_hangup() {
    let doc = parse(
        br#"<Response><Start><Stream url="wss://a/b" track="both_tracks"/></Start><Redirect method="GET">/next</Redirect><Hangup/></Response>"#,
    )
    .unwrap();
    let Verb::Start {
        stream: Some(s),
        recording: false,
    } = &doc.verbs[0]
    else {
        panic!("{:?}", doc.verbs[0])
    };
    assert_eq!(s.track, "both_tracks");
    assert_eq!(
        doc.verbs[1],
        Verb::Redirect {
            url: "/next".into(),
            method: Method::Get
        }
    );
    assert_eq!(doc.verbs[2], Verb::Hangup);
}

#[test]
fn refuses_what_twilio_refuses() {
    assert_eq!(parse(b""), Err(DocError::Empty));
    assert_eq!(
        parse(b"<html><body/></html>"),
        Err(DocError::NotTwiml("html".into()))
    );
    assert!(matches!(parse(b"<Response><Say>"), Err(DocError::Xml(_))));
    assert!(matches!(parse(b"<Response></Say>"), Err(DocError::Xml(_))));
    assert_eq!(
        parse(b"<Response><Shout/></Response>"),
        Err(DocError::UnknownVerb("Shout".into()))
    );
    assert_eq!(
        parse(br#"<Response><Pause length="two"/></Response>"#),
        Err(DocError::BadAttribute {
            verb: "Pause".into(),
            attribute: "length",
            value: "two".into()
        })
    );
    assert_eq!(
        parse(br#"<Response><Connect><Stream/></Connect></Response>"#),
        Err(DocError::Missing {
            verb: "Stream".into(),
            what: "its url"
        })
    );
    assert!(matches!(
        parse(b"<Response/><Response/>"),
        Err(DocError::Xml(_))
    ));
}

#[test]
fn every_prefix_of_the_seed_is_refused_or_parsed_without_panic() {
    for end in 0..SEED.len() {
        let _ = parse(&SEED.as_bytes()[..end]);
    }
}
